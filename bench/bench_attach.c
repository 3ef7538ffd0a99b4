/* bench_attach.c — journal writes, fsyncs and wall time per attach of 4 devices (issue 9.5), in one run:
 * "before" = one journal write per step state (what the engine did before issue 9: planned, then sent and done
 * of every step each on its own; smmu_txn_opts.fsync_each_state) versus "after" (a step's done written with the
 * next step's sent, one atomic write; the default).
 *
 * VM: qmp-sim with four vSMMUs x two root ports, --dev-iommu, and a fake host sysfs with four vfio-pci devices
 * behind four host SMMUs, so an attach is object-add + 4 device_add. Driven through the library on one event
 * loop (tests/support/qmp_sync runs each machine to completion). Each round attaches the 4 devices (timed:
 * the transaction only, facts and plan before it are not) and detaches them (not timed); modes alternate.
 * Prints per mode the journal writes and fsyncs per attach and the median wall time. Exits 1 on any failure.
 *
 * Usage: bench_attach [ROUNDS]   (default 20; qmp-sim from the build)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "bench_util.h"
#include "smmuctl/journal.h"
#include "smmuctl/txn.h"
#include "support/fakesys.h"
#include "support/qmp_sync.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define NDEV 4
#define MAXROUNDS 200
static const char *const BDF[NDEV] = {"0009:01:00.0", "000a:01:00.0", "000b:01:00.0", "000c:01:00.0"};
static const char *const SMMU[NDEV] = {"smmu3.0x0000000016000000", "smmu3.0x0000000017000000",
                                       "smmu3.0x0000000018000000", "smmu3.0x0000000019000000"};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct mode_stats {
    unsigned long writes, fsyncs;
    double ms[MAXROUNDS];
    int n;
};

static int one_round(struct event_base *base, const char *sock, const char *state, const char *root, bool before,
                     struct mode_stats *st)
{
    struct qmp_client_opts co = QMP_CLIENT_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_plan_opts po = SMMU_PLAN_OPTS_INIT;
    struct smmu_txn_opts to = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_facts f;
    struct smmu_plan *p = NULL;
    smmu_journal *j = NULL;
    qmp_client *c = NULL;
    unsigned long w0, f0, w1, f1;
    int rc = -1;
    to.sysfs_root = root;
    to.fsync_each_state = before;
    if (qmp_client_new(&c, base, &co) < 0 || qmp_client_connect_sync(c, sock, &e) < 0 ||
        smmu_journal_open(state, "vm", "", 2000, &j, &e) < 0 || smmu_facts_gather(c, root, j, &f, &e) < 0) {
        fprintf(stderr, "bench_attach: setup: %s\n", e.message);
        goto out;
    }
    if (smmu_facts_plan(&f, root, BDF, NDEV, &po, &p, &e) < 0) {
        fprintf(stderr, "bench_attach: plan: %s\n", e.message);
        smmu_facts_free(&f);
        goto out;
    }
    smmu_journal_counters(j, &w0, &f0);
    double t0 = now_ms();
    smmu_txn_attach(&c, j, &f, p, &to, &res);
    double took = now_ms() - t0;
    smmu_journal_counters(j, &w1, &f1);
    smmu_facts_free(&f);
    if (res.outcome != SMMU_OUTCOME_DONE) {
        fprintf(stderr, "bench_attach: attach: %s\n", res.error.message);
        smmu_result_fini(&res);
        goto out;
    }
    smmu_result_fini(&res);
    st->writes += w1 - w0;
    st->fsyncs += f1 - f0;
    st->ms[st->n++] = took;
    /* reset: detach everything (not timed) */
    if (smmu_facts_gather(c, root, j, &f, &e) < 0) {
        fprintf(stderr, "bench_attach: facts: %s\n", e.message);
        goto out;
    }
    to.unplug_timeout_ms = 5000;
    smmu_txn_detach(&c, j, &f, BDF, NDEV, &to, &res);
    smmu_facts_free(&f);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fprintf(stderr, "bench_attach: detach: %s\n", res.error.message);
    else
        rc = 0;
    smmu_result_fini(&res);
out:
    smmu_plan_free(p);
    smmu_journal_close(j);
    qmp_client_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 6 : 20);
    struct mode_stats st[2];
    struct simh *sim = NULL;
    char *tmp = smmu_test_mkdtemp("bench-attach");
    char state[4200];
    int rc = 0;
    if (rounds < 1 || rounds > MAXROUNDS) {
        fprintf(stderr, "usage: bench_attach [ROUNDS 1..%d]\n", MAXROUNDS);
        return 2;
    }
    memset(st, 0, sizeof(st));
    snprintf(state, sizeof(state), "%s/state", tmp);
    struct fakesys *fs = fakesys_new(NULL);
    for (int i = 0; i < NDEV; i++) {
        char group[8], cdev[16];
        snprintf(group, sizeof(group), "%d", 10 + i);
        snprintf(cdev, sizeof(cdev), "vfio%d", i);
        fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = BDF[i], .smmu = SMMU[i], .driver = "vfio-pci",
                                                  .group = group, .cdev = cdev, .numa_node = "0"});
    }
    if (simh_start_vm(&sim, 4, 2, 0, (const char *[]){"--sysfs", fakesys_root(fs), "--dev-iommu", NULL}) < 0) {
        fprintf(stderr, "bench_attach: cannot start qmp-sim\n");
        return 1;
    }
    struct event_base *base = event_base_new();
    for (int r = 0; r < 2 * rounds && rc == 0; r++) {
        bool before = (r % 2) == (r / 2 % 2); /* alternate which mode goes first */
        if (one_round(base, simh_qmp_path(sim), state, fakesys_root(fs), before, &st[before ? 0 : 1]) < 0)
            rc = 1;
    }
    if (rc == 0) {
        static const char *const names[2] = {"before (a write per state)", "after (done merged with next sent)"};
        printf("attach of %d devices (object-add + %d device_add), %d rounds per mode, qmp-sim\n", NDEV, NDEV, rounds);
        printf("%-36s %14s %14s %14s\n", "mode", "writes/attach", "fsyncs/attach", "median ms");
        for (int m = 0; m < 2; m++) {
            qsort(st[m].ms, (size_t)st[m].n, sizeof(double), cmp_double);
            printf("%-36s %14.1f %14.1f %14.2f\n", names[m], (double)st[m].writes / st[m].n,
                   (double)st[m].fsyncs / st[m].n, st[m].ms[st[m].n / 2]);
        }
        bench_figure(&(struct bench_fig){"4", "attach.journal.fsyncs", "attach of 4 (library): journal fsyncs",
                                         "fsyncs", bench_exact((double)st[1].fsyncs / st[1].n),
                                         "a write per step state", bench_exact((double)st[0].fsyncs / st[0].n),
                                         BENCH_GOAL_NONE, 0, NULL});
        bench_figure(&(struct bench_fig){"4", "attach.journal.wall", "attach of 4 (library, transaction only): wall",
                                         "ms", bench_stat_of(st[1].ms, st[1].n), "a write per step state",
                                         bench_stat_of(st[0].ms, st[0].n), BENCH_GOAL_NONE, 0, NULL});
    }
    event_base_free(base);
    simh_stop(sim);
    fakesys_free(fs);
    smmu_test_rmtree(tmp);
    free(tmp);
    return rc;
}
