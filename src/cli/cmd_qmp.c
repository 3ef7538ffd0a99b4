/* cmd_qmp.c — `smmuctl qmp COMMAND [JSON-ARGS]`: raw passthrough. */
#include <errno.h>
#include <string.h>

#include "cli/cli.h"

int cmd_qmp(struct cli *cli)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    json_t *args = NULL, *ret = NULL;
    int r;

    if (cli->nargs < 1 || cli->nargs > 2)
        return cli_usage_error(cli, "qmp", "usage: smmuctl qmp COMMAND [JSON-ARGS] (got %d arguments)", cli->nargs);
    if (cli->nargs == 2) {
        json_error_t je;
        args = json_loads(cli->args[1], 0, &je);
        if (!args)
            return cli_usage_error(cli, "qmp", "JSON-ARGS: %s at column %d", je.text, je.column);
        if (!json_is_object(args)) {
            json_decref(args);
            return cli_usage_error(cli, "qmp", "JSON-ARGS must be a JSON object like '{\"path\":\"/machine\"}'");
        }
    }
    smmu_journal *j;
    if ((r = cli_connect(cli, "qmp", &j)) != 0) {
        json_decref(args);
        return r;
    }
    r = cli_call_wait(cli, cli->args[0], args, &ret, &e);
    if (j)
        smmu_journal_close(j);
    if (r == -EIO) {
        json_t *extra = json_pack("{s:s}", "execute", cli->args[0]);
        if (!cli->json) {
            char desc[4 * sizeof(e.qmp_desc)];
            cli_escape(e.qmp_desc, desc, sizeof(desc));
            fprintf(stderr, "smmuctl: qmp %s: QEMU error %s: %s\n", cli->args[0], e.qmp_class, desc);
            json_decref(extra);
            return EXIT_FAILED;
        }
        return cli_fail(cli, "qmp", EXIT_FAILED, &e, extra);
    }
    if (r < 0)
        return cli_fail(cli, "qmp", EXIT_UNREACHABLE, &e, NULL);
    if (cli->json) {
        json_t *o = json_pack("{s:b,s:s,s:s,s:o}", "ok", 1, "command", "qmp", "execute", cli->args[0], "return", ret);
        cli_print_json(cli, o);
    } else {
        cli_print_json(cli, ret);
    }
    return EXIT_DONE;
}
