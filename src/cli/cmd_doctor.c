/* cmd_doctor.c — `smmuctl doctor [DEV...]`: host and VM readiness (DESIGN §8). Changes nothing.
 *
 * Host checks always (under --sysfs and --dev); with --qmp (or SMMUCTL_QMP) the VM checks too, from exactly the
 * discovery `topology` does (qom-list / qom-list-get only). Exit 0 every finding ok, 5 a warning, 6 a failure,
 * 2 usage, 3 QEMU unreachable or unreadable. --json: {"ok","command","exit_code","findings":[…],"summary":{…}}. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/render.h"
#include "smmuctl/doctor.h"

enum { EXIT_DOCTOR_WARN = 5, EXIT_DOCTOR_FAIL = 6 };

static void doctor_text(const struct smmu_doctor *d)
{
    static const char *const label[] = {"ok  ", "WARN", "FAIL"};
    for (size_t i = 0; i < d->n; i++) {
        const struct smmu_finding *f = &d->f[i];
        char what[2048];
        cli_escape(f->what, what, sizeof(what));
        printf("%s  %-14s %s: %s\n", label[f->status], f->check, f->subject, what);
        if (f->status != SMMU_FINDING_OK && f->why[0])
            printf("      why: %s\n", f->why);
        if (f->status != SMMU_FINDING_OK && f->fix[0])
            printf("      fix: %s\n", f->fix);
    }
    printf("doctor: %zu ok, %zu warning%s, %zu failure%s\n", d->counts[SMMU_FINDING_OK],
           d->counts[SMMU_FINDING_WARN], d->counts[SMMU_FINDING_WARN] == 1 ? "" : "s", d->counts[SMMU_FINDING_FAIL],
           d->counts[SMMU_FINDING_FAIL] == 1 ? "" : "s");
}

int cmd_doctor(struct cli *cli)
{
    struct smmu_doctor d = {0};
    struct smmu_host_dev *hosts = NULL, *ready = NULL;
    struct smmu_facts f;
    struct smmu_error e = SMMU_ERROR_INIT;
    bool *ok = NULL, have_facts = false;
    char **devs = NULL;
    size_t n = 0, nready = 0;
    int r = 0, code;

    if (cli->nargs > 0 && (r = cli_devices(cli, "doctor", &devs, &n)) != 0)
        return r;
    hosts = calloc(n ? n : 1, sizeof(*hosts));
    ready = calloc(n ? n : 1, sizeof(*ready));
    ok = calloc(n ? n : 1, sizeof(*ok));
    if (!hosts || !ready || !ok ||
        smmu_doctor_host(&d, cli->sysfs, cli->dev, (const char *const *)devs, n, hosts, ok) < 0) {
        smmu_error_set(&e, -ENOMEM, "out of memory");
        r = cli_fail(cli, "doctor", EXIT_FAILED, &e, NULL);
        goto out;
    }
    if (cli->qmp_addr && *cli->qmp_addr) {
        if ((r = cli_read_facts(cli, "doctor", &f)) != 0)
            goto out; /* printed: QEMU unreachable or unreadable (3), or a busy/corrupt journal (2) */
        have_facts = true;
        for (size_t i = 0; i < n; i++)
            if (ok[i])
                ready[nready++] = hosts[i]; /* the VM checks place only devices attach would accept */
        if (smmu_doctor_vm(&d, &f, ready, nready) < 0) {
            smmu_error_set(&e, -ENOMEM, "out of memory");
            r = cli_fail(cli, "doctor", EXIT_FAILED, &e, NULL);
            goto out;
        }
    }
    code = smmu_doctor_exit_code(&d);
    if (cli->json) {
        json_t *o = json_pack("{s:b,s:s,s:i}", "ok", code == 0, "command", "doctor", "exit_code", code);
        json_object_update_new(o, smmu_doctor_to_json(&d));
        cli_print_json(cli, o);
    } else {
        doctor_text(&d);
        fflush(stdout);
    }
    r = code;
out:
    if (have_facts)
        smmu_facts_free(&f);
    smmu_doctor_free(&d);
    free(hosts);
    free(ready);
    free(ok);
    cli_devices_free(devs);
    return r;
}
