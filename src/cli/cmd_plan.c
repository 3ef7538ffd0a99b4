/* cmd_plan.c — `smmuctl plan DEV...`: where each device would go and the exact QMP commands attach would
 * send. Changes nothing: only qom-list/qom-list-get(/qom-get) go to QEMU.
 *
 * Exit 0 with a plan; 2 for bad input or a refusal (the planner's reason); 3 when QEMU cannot be read.
 * --json prints {"ok":true,"command":"plan", <docs/plan-json.md members>, "warnings":[…]}. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/render.h"
#include "smmuctl/xml.h"

void cli_free_devs(char **devs, size_t n)
{
    for (size_t i = 0; devs && i < n; i++)
        free(devs[i]);
    free(devs);
}

static int devs_push(char ***devs, size_t *n, const char *bdf)
{
    char **nd = realloc(*devs, (*n + 1) * sizeof(**devs));
    if (!nd)
        return -ENOMEM;
    *devs = nd;
    if (!(nd[*n] = strdup(bdf)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

int cli_collect_devs(struct cli *cli, const char *command, char *const *args, int nargs, char ***devs, size_t *n)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = 0;
    *devs = NULL;
    *n = 0;
    for (int i = 0; i < nargs && r == 0; i++) {
        if (args[i][0] == '@') {
            struct smmu_xml_hostdev *hd = NULL;
            size_t nh = 0;
            if (!args[i][1]) {
                r = smmu_error_set(&e, -EINVAL, "'@' needs a file name: @FILE names a libvirt XML file");
                break;
            }
            if ((r = smmu_xml_hostdevs_file(args[i] + 1, &hd, &nh, &e)) < 0)
                break;
            for (size_t k = 0; k < nh && r == 0; k++)
                r = devs_push(devs, n, hd[k].bdf);
            smmu_xml_hostdevs_free(hd);
        } else {
            char bdf[SMMU_BDF_LEN + 1];
            if ((r = smmu_bdf_parse(args[i], bdf, &e)) == 0)
                r = devs_push(devs, n, bdf);
        }
    }
    if (r == -ENOMEM && !e.message[0])
        smmu_error_set(&e, r, "out of memory");
    if (r < 0) {
        cli_free_devs(*devs, *n);
        *devs = NULL;
        *n = 0;
        return cli_fail(cli, command, r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE, &e, NULL);
    }
    return 0;
}

int cmd_plan(struct cli *cli)
{
    struct smmu_plan_opts opts = SMMU_PLAN_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_facts f;
    struct smmu_plan *plan = NULL;
    char **devs = NULL;
    size_t n = 0;
    int r;

    if (cli->nargs == 0)
        return cli_usage_error(cli, "plan", "usage: smmuctl plan DEV... (a PCI address like 0009:01:00.0, or @FILE "
                               "with libvirt <hostdev> XML)");
    if ((r = cli_collect_devs(cli, "plan", cli->args, cli->nargs, &devs, &n)) != 0)
        return r;
    if ((r = cli_read_facts(cli, "plan", &f)) != 0) {
        cli_free_devs(devs, n);
        return r;
    }
    opts.fd_pass = cli->fd_pass;
    opts.allow_mismatch = cli->allow_mismatch;
    opts.iommufd_id = cli->iommufd_id;
    opts.device_id = cli->device_id;
    opts.dev_root = cli->dev;
    r = smmu_facts_plan(&f, cli->sysfs, (const char *const *)devs, n, &opts, &plan, &e);
    cli_free_devs(devs, n);
    if (r < 0) {
        smmu_facts_free(&f);
        /* a refusal, or a device that cannot be used: nothing was sent */
        return cli_fail(cli, "plan", r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE, &e, NULL);
    }
    if (cli->json) {
        json_t *o = json_pack("{s:b,s:s}", "ok", 1, "command", "plan");
        json_t *w = json_array();
        json_object_update_new(o, smmu_plan_to_json(&f.topo, plan));
        if (f.warnings[0])
            json_array_append_new(w, json_string(f.warnings));
        json_object_set_new(o, "warnings", w);
        cli_print_json(cli, o);
    } else {
        render_plan(stdout, &f.topo, plan);
        fflush(stdout);
    }
    smmu_plan_free(plan);
    smmu_facts_free(&f);
    return EXIT_DONE;
}
