/* domain.c — `--domain FILE` for topology, plan and attach: load the libvirt definition, report how it
 * disagrees with the live VM (DESIGN §9). The matching itself is the planner's (smmu_domain_check). */
#include <stdlib.h>

#include "cli/cli.h"
#include "smmuctl/plan.h"

int cli_load_domain(struct cli *cli, const char *command)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    if (!cli->domain_path)
        return 0;
    if (!*cli->domain_path)
        return cli_usage_error(cli, command, "--domain: empty file name");
    if (smmu_xml_domain_file(cli->domain_path, &cli->domain, &e) < 0)
        return cli_fail(cli, command, EXIT_USAGE, &e, NULL);
    return 0;
}

json_t *cli_domain_report(struct cli *cli, const struct smmu_topology *t, FILE *text, size_t *ndis)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_domain_issue *v = NULL;
    size_t n = 0;
    json_t *o;
    char esc[1400];

    *ndis = 0;
    if (!cli->domain)
        return NULL;
    if (smmu_domain_check(cli->domain, t, &v, &n, &e) < 0)
        return NULL;
    *ndis = smmu_domain_disagreements(v, n);
    o = smmu_domain_check_json(cli->domain_path, v, n);
    if (text && !cli->json) {
        cli_escape(cli->domain_path, esc, sizeof(esc));
        if (*ndis)
            fprintf(text, "Domain %s: %zu disagreement%s with the live VM:\n", esc, *ndis, *ndis == 1 ? "" : "s");
        else
            fprintf(text, "Domain %s agrees with the live VM (%zu controllers, %zu <iommu>, %zu hostdevs).\n", esc,
                    cli->domain->n_ctrls, cli->domain->n_iommus, cli->domain->n_hostdevs);
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < n; i++) {
                if (v[i].note != (pass == 1))
                    continue;
                cli_escape(v[i].message, esc, sizeof(esc));
                if (v[i].line > 0)
                    fprintf(text, "  %sline %ld: %s\n", v[i].note ? "note: " : "", v[i].line, esc);
                else
                    fprintf(text, "  %s%s\n", v[i].note ? "note: " : "", esc);
            }
    }
    free(v);
    return o;
}
