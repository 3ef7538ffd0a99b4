/* cmd_plan.c — `smmuctl plan DEV...`: where each device would go and the exact QMP commands attach would
 * send. Changes nothing: only qom-list/qom-list-get(/qom-get) go to QEMU.
 *
 * Exit 0 with a plan; 2 for bad input or a refusal (the planner's reason); 3 when QEMU cannot be read.
 * --json prints {"ok":true,"command":"plan", <docs/plan-json.md members>, "warnings":[…]}; a device whose port's
 * windows do not fit its BARs is a warning (--require-fit: a refusal, exit 2). */
#include <errno.h>

#include "cli/cli.h"
#include "cli/render.h"
#include "smmuctl/reply_json.h"

/* Every DEV must be a PCI address here (detach also takes QEMU ids): say so before talking to QEMU. */
static int plan_check_bdfs(struct cli *cli, char *const *devs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct smmu_error e = SMMU_ERROR_INIT;
        char bdf[SMMU_BDF_LEN + 1];
        if (smmu_bdf_parse(devs[i], bdf, &e) < 0)
            return cli_fail(cli, "plan", EXIT_USAGE, &e, NULL);
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
    if ((r = cli_devices(cli, "plan", &devs, &n)) != 0)
        return r;
    if ((r = plan_check_bdfs(cli, devs, n)) != 0 || (r = cli_read_facts(cli, "plan", &f)) != 0) {
        cli_devices_free(devs);
        return r;
    }
    opts.fd_pass = cli->fd_pass;
    opts.allow_mismatch = cli->allow_mismatch;
    opts.iommufd_id = cli->iommufd_id;
    opts.device_id = cli->device_id;
    opts.dev_root = cli->dev;
    opts.require_fit = cli->require_fit;
    opts.domain = cli->domain;
    opts.domain_file = cli->domain_path;
    opts.force = cli->force;
    size_t ndis = 0;
    json_t *dom = cli_domain_report(cli, &f.topo, NULL, &ndis);
    r = smmu_facts_plan(&f, cli->sysfs, (const char *const *)devs, n, &opts, &plan, &e);
    cli_devices_free(devs);
    if (r < 0) {
        /* a refusal (a disagreement with --domain among them), or a device that cannot be used: nothing sent */
        if (ndis)
            json_decref(cli_domain_report(cli, &f.topo, stderr, &ndis));
        smmu_facts_free(&f);
        return cli_fail(cli, "plan", r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE, &e,
                        dom ? json_pack("{s:o}", "domain", dom) : NULL);
    }
    if (cli->json) {
        json_t *o = smmu_plan_reply_json(&f, plan); /* with the fit warnings */
        if (ndis)
            json_array_append_new(json_object_get(o, "warnings"),
                                  json_sprintf("--force: %zu disagreement(s) with %s ignored", ndis, cli->domain_path));
        if (dom)
            json_object_set(o, "domain", dom);
        cli_print_json(cli, o);
    } else {
        render_plan(stdout, &f.topo, plan);
        if (cli->domain) {
            fputc('\n', stdout);
            json_decref(cli_domain_report(cli, &f.topo, stdout, &ndis));
            if (ndis)
                printf("--force: planned despite %s disagreement%s\n", ndis == 1 ? "this" : "these", ndis == 1 ? "" : "s");
        }
        fflush(stdout);
        for (size_t i = 0; i < plan->n_placements; i++)
            if (!plan->placements[i].fits)
                cli_info(cli, "warning: %s", plan->placements[i].fit);
    }
    json_decref(dom);
    smmu_plan_free(plan);
    smmu_facts_free(&f);
    return EXIT_DONE;
}
