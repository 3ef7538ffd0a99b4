/* bench_vmcost.c — what a VM pays for each smmuctl command (issue 13.3): QEMU's own CPU per `smmuctl topology`,
 * `plan` of 4 devices and `attach` of 4 devices on real QEMU 11 with a 4-vSMMU topology (4 pxb-pcie x 2 root
 * ports, one cold NIC), and the QMP commands and bytes each run sends and receives, broken down per QMP command
 * (from the run's own --record file, exact).
 *
 * What cannot be measured here, and what is measured instead: no vfio-pci device can be realized on this machine
 * (no VFIO devices, TCG). So on real QEMU `attach --fd-pass` of 4 devices runs up to QEMU's refusal — discovery,
 * getfd + object-add of the iommufd object (QEMU accepts any fd), getfd + the first device_add, which QEMU
 * refuses ("error bind device fd=… to iommufd=…"), and the rollback (object-del) — and is reported as that; and
 * `detach` has no device to remove. A complete attach of 4 and detach of 4 run on qmp-sim (same topology,
 * --dev-iommu), for their commands and bytes; qmp-sim's CPU says nothing about QEMU's and is not reported.
 *
 * The cut the QMP allows that matters most (bench/README.md "Performance" has the others, measured): the daemon
 * keeps the topology it discovered once per connection exact from QEMU's confirmed replies and events, so
 * `plan` and `topology` through `smmuctl serve` send nothing — measured here on the same real QEMU, through the
 * API (POST /v1/vms/vm/plan, GET …/topology), next to the CLI.
 *
 * QEMU's CPU is utime+stime of its PID (/proc/PID/stat) over K runs of the command, minus what it used while
 * idle over an interval as long (measured right after), divided by K.
 *
 * Usage: bench_vmcost [REPS [K]]   (defaults 5 and 10; SMMUCTL_BENCH_QUICK=1: 3 and 4) */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bench_util.h"
#include "support/fakesys.h"
#include "support/qemu.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define NDEV 4
#define MAXREPS 31
#define MAXKINDS 24
static const char *const BDF[NDEV] = {"0009:01:00.0", "000a:01:00.0", "000b:01:00.0", "000c:01:00.0"};
static const char *const SMMU[NDEV] = {"smmu3.0x0000000016000000", "smmu3.0x0000000017000000",
                                       "smmu3.0x0000000018000000", "smmu3.0x0000000019000000"};

static struct bench_stat g_cpu_topology, g_cpu_plan; /* the CLI's, for the daemon's figures */
static char g_tmp[4096], g_state[4200], g_dev[4200], g_rec[4200];
static struct fakesys *g_fs;

/* Per QMP command of one recorded run. */
struct kind {
    char name[32];
    int count;
    size_t sent, recvd;
};
struct breakdown {
    struct kind k[MAXKINDS];
    int n;
    size_t cmds, sent, recvd;
    char refusal[256]; /* the first error QEMU answered, if any */
};

static struct kind *kind_of(struct breakdown *b, const char *name)
{
    for (int i = 0; i < b->n; i++)
        if (!strcmp(b->k[i].name, name))
            return &b->k[i];
    if (b->n == MAXKINDS)
        return &b->k[MAXKINDS - 1];
    snprintf(b->k[b->n].name, sizeof(b->k[b->n].name), "%s", name);
    return &b->k[b->n++];
}

/* Read a --record file: C: lines (sent with LF) by "execute"; S: lines (received with CRLF) by the id they
 * answer, the greeting and events on their own. */
static void parse_record(const char *path, struct breakdown *b)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    struct {
        char id[16], cmd[32];
    } ids[256];
    int nid = 0;
    memset(b, 0, sizeof(*b));
    if (!f)
        return;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = 0;
        if (len < 4 || line[1] != ':' || line[2] != ' ' || (line[0] != 'C' && line[0] != 'S'))
            continue;
        json_t *m = json_loads(line + 3, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
        const char *id = json_string_value(json_object_get(m, "id"));
        if (line[0] == 'C') {
            const char *ex = json_string_value(json_object_get(m, "execute")) ?: "?";
            struct kind *k = kind_of(b, ex);
            k->count++;
            k->sent += (size_t)len - 3 + 1;
            b->cmds++;
            b->sent += (size_t)len - 3 + 1;
            if (id && nid < 256) {
                snprintf(ids[nid].cmd, sizeof(ids[nid].cmd), "%s", ex);
                snprintf(ids[nid].id, sizeof(ids[nid].id), "%s", id);
                nid++;
            }
        } else {
            const char *to = json_object_get(m, "QMP") ? "greeting" : json_object_get(m, "event") ? "events" : "?";
            for (int i = 0; id && i < nid; i++)
                if (!strcmp(ids[i].id, id))
                    to = ids[i].cmd;
            kind_of(b, to)->recvd += (size_t)len - 3 + 2;
            b->recvd += (size_t)len - 3 + 2;
            json_t *e = json_object_get(m, "error");
            if (e && !b->refusal[0])
                snprintf(b->refusal, sizeof(b->refusal), "%s: %s", to,
                         json_string_value(json_object_get(e, "desc")) ?: "?");
        }
        json_decref(m);
    }
    free(line);
    fclose(f);
}

static int cli(const char *qmp, const char *const *cmd, bool record, int *status)
{
    const char *argv[32] = {"--qmp", qmp, "--state-dir", g_state, "--vm", "vm", "--sysfs", fakesys_root(g_fs),
                            "--dev", g_dev, "--json"};
    size_t n = 11;
    if (record) {
        unlink(g_rec);
        argv[n++] = "--record";
        argv[n++] = g_rec;
    }
    for (size_t i = 0; cmd[i]; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    struct smmu_run r;
    int rc = smmu_run_cli(&r, argv, 60000);
    *status = rc;
    if (rc != 0 && rc != 1)
        fprintf(stderr, "bench_vmcost: smmuctl %s: exit %d\n%s%s\n", cmd[0], rc, r.out, r.err);
    smmu_run_free(&r);
    return rc;
}

static void report_breakdown(const char *key, const char *label, const struct breakdown *b)
{
    char id[96], what[160], text[2048];
    size_t o = 0;
    for (int i = 0; i < b->n; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "%s%s x%d: %zu B sent, %zu B received", i ? "; " : "",
                              b->k[i].name, b->k[i].count, b->k[i].sent, b->k[i].recvd);
    snprintf(id, sizeof(id), "vmcost.%s.per_command", key);
    bench_note(id, text);
    if (b->refusal[0]) {
        snprintf(id, sizeof(id), "vmcost.%s.refusal", key);
        bench_note(id, b->refusal);
    }
    static const char *const sfx[3] = {"commands", "sent", "received"};
    static const char *const txt[3] = {"QMP commands", "bytes sent", "bytes received"};
    const char *unit[3] = {"cmds", "bytes", "bytes"};
    double v[3] = {(double)b->cmds, (double)b->sent, (double)b->recvd};
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "vmcost.%s.%s", key, sfx[i]);
        snprintf(what, sizeof(what), "%s: %s", label, txt[i]);
        bench_figure(&(struct bench_fig){"3", id, what, unit[i], bench_exact(v[i]), NULL, bench_exact(0),
                                         BENCH_GOAL_NONE, 0, NULL});
    }
}

/* QEMU CPU per run of `cmd`: reps x (K runs, then an idle interval as long). */
static int qemu_cost(struct smmu_qemu *q, const char *key, const char *label, const char *const *cmd, int want,
                     int reps, int k)
{
    double cpu[MAXREPS], wall[MAXREPS];
    pid_t pid = smmu_qemu_pid(q);
    int st;
    struct breakdown b;
    if (cli(smmu_qemu_socket_path(q), cmd, true, &st) != want)
        return -1;
    parse_record(g_rec, &b);
    for (int r = 0; r < reps; r++) {
        double c0 = bench_proc_cpu_ms(pid), t0 = bench_now_ms();
        for (int i = 0; i < k; i++)
            if (cli(smmu_qemu_socket_path(q), cmd, false, &st) != want)
                return -1;
        double w = bench_now_ms() - t0, c1 = bench_proc_cpu_ms(pid);
        cpu[r] = (c1 - c0 - bench_proc_idle_ms(pid, w)) / k;
        wall[r] = w / k;
    }
    char id[96], what[160], idw[96], whatw[160];
    snprintf(id, sizeof(id), "vmcost.%s.qemu_cpu", key);
    snprintf(what, sizeof(what), "%s: QEMU CPU per run", label);
    snprintf(idw, sizeof(idw), "vmcost.%s.wall", key);
    snprintf(whatw, sizeof(whatw), "%s: smmuctl process wall", label);
    struct bench_stat sc = bench_stat_of(cpu, reps);
    if (!strcmp(key, "topology"))
        g_cpu_topology = sc;
    else if (!strcmp(key, "plan"))
        g_cpu_plan = sc;
    bench_figure(&(struct bench_fig){"3", id, what, "ms", sc, NULL, bench_exact(0), BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"3", idw, whatw, "ms", bench_stat_of(wall, reps), NULL, bench_exact(0),
                                     BENCH_GOAL_NONE, 0, NULL});
    report_breakdown(key, label, &b);
    return 0;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 3 : 5);
    int k = argc > 2 ? atoi(argv[2]) : (bench_quick() ? 4 : 10);
    int rc = 0, st;
    if (reps < 1 || reps > MAXREPS || k < 1) {
        fprintf(stderr, "usage: bench_vmcost [REPS 1..%d [K]]\n", MAXREPS);
        return 2;
    }
    char *tmp = smmu_test_mkdtemp("bench-vmcost");
    snprintf(g_tmp, sizeof(g_tmp), "%s", tmp);
    snprintf(g_state, sizeof(g_state), "%s/state", g_tmp);
    snprintf(g_dev, sizeof(g_dev), "%s/dev", g_tmp);
    snprintf(g_rec, sizeof(g_rec), "%s/record.txt", g_tmp);
    g_fs = fakesys_new(NULL);
    for (int i = 0; i < NDEV; i++) {
        char group[8], cdev[16];
        snprintf(group, sizeof(group), "%d", 10 + i);
        snprintf(cdev, sizeof(cdev), "vfio%d", i);
        fakesys_add_dev(g_fs, &(struct fakesys_dev){.bdf = BDF[i], .smmu = SMMU[i], .driver = "vfio-pci",
                                                    .group = group, .cdev = cdev, .numa_node = "0"});
    }
    fakesys_write_dev_tree(g_fs, g_dev);
    const char *plan[] = {"plan", BDF[0], BDF[1], BDF[2], BDF[3], NULL};
    const char *attach[] = {"attach", "--fd-pass", BDF[0], BDF[1], BDF[2], BDF[3], NULL};
    const char *detach[] = {"detach", "--unplug-timeout", "5", BDF[0], BDF[1], BDF[2], BDF[3], NULL};

    struct smmu_qemu *q = NULL;
    int r = smmu_qemu_start(&q, "aarch64", bench_topology(4, 2, true, false));
    if (r == 0) {
        printf("real QEMU 11, 4 vSMMUs x 2 root ports + cold NIC; %d runs of %d smmuctl processes each\n", reps, k);
        if (qemu_cost(q, "topology", "topology (real QEMU)", (const char *[]){"topology", NULL}, 0, reps, k) < 0 ||
            qemu_cost(q, "plan", "plan of 4 (real QEMU)", plan, 0, reps, k) < 0 ||
            qemu_cost(q, "attach_refused", "attach --fd-pass of 4, to QEMU's refusal + rollback (real QEMU)", attach,
                      1, reps, k) < 0)
            rc = 1;
        /* the daemon's kept topology: the same plan and topology through smmuctl serve */
        char sock[4300], log[4300], sstate[4300];
        snprintf(sock, sizeof(sock), "%s/api.sock", g_tmp);
        snprintf(log, sizeof(log), "%s/serve.log", g_tmp);
        snprintf(sstate, sizeof(sstate), "%s/serve-state", g_tmp);
        pid_t d = bench_serve_start(sock, sstate, fakesys_root(g_fs), g_dev, log);
        if (d < 0 || bench_serve_add_vm(sock, "vm", smmu_qemu_socket_path(q)) < 0) {
            fprintf(stderr, "bench_vmcost: smmuctl serve did not take the VM\n");
            rc = 1;
        } else {
            static const char body[] = "{\"devices\":[\"0009:01:00.0\",\"000a:01:00.0\",\"000b:01:00.0\","
                                       "\"000c:01:00.0\"]}";
            const char *what[2] = {"plan of 4 through smmuctl serve (kept topology): QEMU CPU per request",
                                   "topology through smmuctl serve (kept topology): QEMU CPU per request"};
            const char *ids[2] = {"vmcost.serve.plan.qemu_cpu", "vmcost.serve.topology.qemu_cpu"};
            for (int w = 0; w < 2 && rc == 0; w++) {
                double cpu[MAXREPS];
                pid_t pid = smmu_qemu_pid(q);
                for (int rr = 0; rr < reps && rc == 0; rr++) {
                    double c0 = bench_proc_cpu_ms(pid), t0 = bench_now_ms();
                    for (int i = 0; i < k; i++) {
                        int code = w ? bench_http(sock, "GET", "/v1/vms/vm/topology", NULL, NULL)
                                     : bench_http(sock, "POST", "/v1/vms/vm/plan", body, NULL);
                        if (code != 200) {
                            fprintf(stderr, "bench_vmcost: through serve: HTTP %d\n", code);
                            rc = 1;
                            break;
                        }
                    }
                    double wl = bench_now_ms() - t0, c1 = bench_proc_cpu_ms(pid);
                    cpu[rr] = (c1 - c0 - bench_proc_idle_ms(pid, wl)) / k;
                }
                if (rc == 0)
                    bench_figure(&(struct bench_fig){"3", ids[w], what[w], "ms", bench_stat_of(cpu, reps),
                                                     w ? "smmuctl topology process" : "smmuctl plan process",
                                                     w ? g_cpu_topology : g_cpu_plan, BENCH_GOAL_NONE, 0, NULL});
            }
        }
        bench_serve_stop(d);
        bench_note("vmcost.detach.qemu", "not measurable on real QEMU here: no vfio-pci device can be realized "
                                         "(no VFIO devices, TCG); see the qmp-sim detach breakdown");
        smmu_qemu_stop(q);
    } else {
        bench_note("vmcost.qemu", r == -ENOENT ? "skipped: QEMU 11 not installed" : smmu_qemu_last_error());
    }

    /* complete attach and detach on qmp-sim: their QMP commands and bytes */
    const char *const *topo = bench_topology(4, 2, true, true);
    const char *sargs[128];
    size_t n = 0;
    for (size_t i = 0; topo[i]; i++)
        sargs[n++] = topo[i];
    sargs[n++] = "--sysfs";
    sargs[n++] = fakesys_root(g_fs);
    sargs[n++] = "--dev-iommu";
    sargs[n] = NULL;
    struct simh *h = NULL;
    if (simh_start(&h, sargs) < 0 || simh_unplug(h, "{\"mode\":\"event\",\"delay_ms\":0}") < 0) {
        fprintf(stderr, "bench_vmcost: cannot start qmp-sim\n");
        rc = 1;
    } else {
        struct breakdown b;
        const char *attach_host[] = {"attach", BDF[0], BDF[1], BDF[2], BDF[3], NULL};
        if (cli(simh_qmp_path(h), attach_host, true, &st) != 0)
            rc = 1;
        parse_record(g_rec, &b);
        report_breakdown("attach_sim", "attach of 4 (qmp-sim, completes)", &b);
        if (cli(simh_qmp_path(h), detach, true, &st) != 0)
            rc = 1;
        parse_record(g_rec, &b);
        report_breakdown("detach_sim", "detach of 4 (qmp-sim, completes)", &b);
        simh_stop(h);
    }
    fakesys_free(g_fs);
    smmu_test_rmtree(tmp);
    free(tmp);
    return rc;
}
