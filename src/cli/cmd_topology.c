/* cmd_topology.c — `smmuctl topology`: what the VM looks like to smmuctl. Changes nothing.
 *
 * Discovery plus the facts that complete it (host SMMUs of vfio-pci hosts from --sysfs, bindings from the
 * journal when one exists: a read-only command never creates one). --json prints
 * {"ok":true,"command":"topology", <docs/topology-json.md members>, "warnings":[…]}. */
#include <errno.h>

#include "cli/cli.h"
#include "cli/render.h"

int cli_read_facts(struct cli *cli, const char *command, struct smmu_facts *f)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_journal *j = NULL;
    int r;
    /* DESIGN §5 "Locks before sockets": QEMU serves one monitor client and listens with a backlog of 1, so
     * wait for whoever holds the VM before connecting */
    if ((r = cli_open_journal(cli, command, true, &j)) != 0)
        return r;
    if ((r = cli_connect(cli, command)) != 0) {
        if (j)
            smmu_journal_close(j);
        return r;
    }
    r = cli_facts_wait(cli, j, f, &e);
    if (j)
        smmu_journal_close(j);
    if (r < 0) {
        smmu_error_prefix(&e, "discovering the topology");
        /* a VM we cannot read is a VM we cannot reach: nothing was changed */
        return cli_fail(cli, command, r == -ENOMEM ? EXIT_FAILED : EXIT_UNREACHABLE, &e, NULL);
    }
    if (f->warnings[0] && !cli->json)
        cli_info(cli, "warning: %s", f->warnings);
    return 0;
}

int cmd_topology(struct cli *cli)
{
    struct smmu_facts f;
    int r;

    if (cli->nargs != 0)
        return cli_usage_error(cli, "topology", "topology takes no arguments (got '%s')", cli->args[0]);
    if ((r = cli_read_facts(cli, "topology", &f)) != 0)
        return r;
    if (cli->json) {
        json_t *o = json_pack("{s:b,s:s}", "ok", 1, "command", "topology");
        json_t *w = json_array();
        json_object_update_new(o, smmu_topology_to_json(&f.topo));
        if (f.warnings[0])
            json_array_append_new(w, json_string(f.warnings));
        json_object_set_new(o, "warnings", w);
        cli_print_json(cli, o);
    } else {
        render_topology(stdout, &f.topo);
        fflush(stdout);
    }
    smmu_facts_free(&f);
    return EXIT_DONE;
}
