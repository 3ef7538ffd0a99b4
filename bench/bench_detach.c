/* bench_detach.c — detach of N devices takes about one guest unplug delay, not N: smmuctl's parallel detach
 * (`smmuctl detach DEV1 … DEVN`, every device_del sent at once, all DEVICE_DELETED awaited together) versus
 * the naive baseline of N sequential `smmuctl detach DEV` runs (one device_del, wait for its event, next),
 * in one run against qmp-sim whose guest releases each device D ms after device_del.
 *
 * VM: qmp-sim with four accel vSMMUs x two root ports (simh_start_vm), --dev-iommu, and a fake host sysfs with
 * eight vfio-pci devices, two behind each of four host SMMUs. Before every timed detach the N devices are
 * attached (not timed). Per N = 1, 2, 4, 8 it prints the median wall time of each mode, their ratio, parallel
 * time / D, and the QMP commands each mode sent (qmp-sim's command_count, qmp_capabilities and discovery
 * included), then the fixed cost of one smmuctl detach when the guest releases at once (D = 0), which is what
 * parallel time exceeds D by. Exits 1 if any attach or detach fails or leaves a device or unplug behind.
 *
 * Usage: bench_detach [REPETITIONS [DELAY_MS]]   (default 5 and 500, SMMUCTL_BENCH_QUICK=1: 3 and 100; qmp-sim
 * and smmuctl from the build)
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bench_util.h"
#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define NDEV 8
#define MAXREPS 20
/* Two devices per host SMMU, alternating, so every prefix of N >= 4 spans all four vSMMUs. */
static const char *const BDF[NDEV] = {"0009:01:00.0", "000a:01:00.0", "000b:01:00.0", "000c:01:00.0",
                                      "0009:02:00.0", "000a:02:00.0", "000b:02:00.0", "000c:02:00.0"};
static const char *const SMMU[4] = {"smmu3.0x0000000016000000", "smmu3.0x0000000017000000",
                                    "smmu3.0x0000000018000000", "smmu3.0x0000000019000000"};

struct bench {
    char *tmp;
    struct fakesys *fs;
    struct simh *sim;
    char dev[4096], state[4096];
};

static struct bench B;

static void bench_cleanup(void)
{
    simh_stop(B.sim);
    B.sim = NULL;
    fakesys_free(B.fs);
    B.fs = NULL;
    if (B.tmp)
        smmu_test_rmtree(B.tmp);
    free(B.tmp);
    B.tmp = NULL;
}

/* A failed step makes the numbers meaningless: say what and stop with exit 1. */
static void __attribute__((noreturn, format(printf, 1, 2))) bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_detach: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    bench_cleanup();
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Run smmuctl against the VM with `extra` (NULL-terminated) after the common options; fills *r. */
static int bench_smmuctl(struct smmu_run *r, const char *const *extra)
{
    const char *argv[32] = {"--qmp", simh_qmp_path(B.sim), "--state-dir", B.state, "--vm", "vm", "--sysfs",
                            fakesys_root(B.fs), "--dev", B.dev, "--timeout", "2"};
    size_t n = 12;
    for (size_t i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return smmu_run_cli(r, argv, 60000);
}

static long sim_command_count(void)
{
    json_t *d = simh_dump(B.sim);
    if (!d)
        bench_fail("no state dump from qmp-sim");
    long n = (long)json_integer_value(json_object_get(d, "command_count"));
    json_decref(d);
    return n;
}

/* After a detach: no vfio-pci device left, no unplug pending, no accel violation. */
static void check_all_gone(const char *what)
{
    json_t *d = simh_dump(B.sim);
    if (!d)
        bench_fail("%s: no state dump from qmp-sim", what);
    size_t i, left = 0;
    json_t *dv;
    json_array_foreach(json_object_get(d, "devices"), i, dv) {
        if (!strcmp(json_string_value(json_object_get(dv, "driver")) ?: "", "vfio-pci"))
            left++;
    }
    size_t pending = json_array_size(json_object_get(d, "pending_unplugs"));
    size_t viol = json_array_size(json_object_get(d, "violations"));
    json_decref(d);
    if (left || pending || viol)
        bench_fail("%s: %zu vfio-pci devices left, %zu unplugs pending, %zu violations", what, left, pending, viol);
}

static void attach_first(int n)
{
    const char *argv[NDEV + 2] = {"attach"};
    for (int i = 0; i < n; i++)
        argv[1 + i] = BDF[i];
    argv[1 + n] = NULL;
    struct smmu_run r;
    if (bench_smmuctl(&r, argv) != 0)
        bench_fail("attach of %d devices: exit %d\n%s%s", n, r.status, r.out, r.err);
    smmu_run_free(&r);
}

/* One `smmuctl --json detach` of BDF[first … first+n-1]; fails unless every device's outcome is "done". */
static void detach_range(int first, int n)
{
    const char *argv[NDEV + 6] = {"--json", "detach", "--unplug-timeout", "5"};
    size_t a = 4;
    for (int i = first; i < first + n; i++)
        argv[a++] = BDF[i];
    argv[a] = NULL;
    struct smmu_run r;
    if (bench_smmuctl(&r, argv) != 0)
        bench_fail("detach of %d device(s) from %s: exit %d\n%s%s", n, BDF[first], r.status, r.out, r.err);
    json_t *o = smmu_run_json(&r);
    json_t *devs = json_object_get(o, "devices");
    if (json_array_size(devs) != (size_t)n)
        bench_fail("detach of %d device(s): %zu in the report\n%s", n, json_array_size(devs), r.out);
    size_t i;
    json_t *dv;
    json_array_foreach(devs, i, dv) {
        if (strcmp(json_string_value(json_object_get(dv, "outcome")) ?: "", "done"))
            bench_fail("detach of %d device(s): device %zu not done\n%s", n, i, r.out);
    }
    json_decref(o);
    smmu_run_free(&r);
}

struct sample {
    double ms;
    long commands;
};

/* Attach N (untimed), then detach them in one call (parallel) or one call per device (sequential). */
static struct sample measure(int n, int sequential)
{
    attach_first(n);
    long c0 = sim_command_count();
    double t0 = now_ms();
    if (sequential) {
        for (int i = 0; i < n; i++)
            detach_range(i, 1);
    } else {
        detach_range(0, n);
    }
    struct sample s = {now_ms() - t0, sim_command_count() - c0};
    check_all_gone(sequential ? "sequential detach" : "parallel detach");
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void set_guest_delay(int delay_ms)
{
    char rule[96];
    snprintf(rule, sizeof(rule), "{\"mode\":\"event\",\"delay_ms\":%d}", delay_ms);
    if (simh_unplug(B.sim, rule) < 0)
        bench_fail("qmp-sim refused the unplug rule %s", rule);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 3 : 5);
    int delay = argc > 2 ? atoi(argv[2]) : (bench_quick() ? 100 : 500);
    static const int NS[] = {1, 2, 4, 8};
    if (reps < 1)
        reps = 1;
    if (reps > MAXREPS)
        reps = MAXREPS;
    if (delay < 1)
        delay = 1;

    B.tmp = smmu_test_mkdtemp("bench-detach");
    B.fs = fakesys_new(NULL);
    for (int i = 0; i < NDEV; i++) {
        char group[8], cdev[16];
        snprintf(group, sizeof(group), "%d", 10 + i);
        snprintf(cdev, sizeof(cdev), "vfio%d", i);
        fakesys_add_dev(B.fs, &(struct fakesys_dev){.bdf = BDF[i], .smmu = SMMU[i % 4], .driver = "vfio-pci",
                                                    .group = group, .cdev = cdev, .numa_node = "0"});
    }
    snprintf(B.dev, sizeof(B.dev), "%s/dev", B.tmp);
    fakesys_write_dev_tree(B.fs, B.dev);
    snprintf(B.state, sizeof(B.state), "%s/state", B.tmp);
    if (simh_start_vm(&B.sim, 4, 2, 1, (const char *[]){"--sysfs", fakesys_root(B.fs), "--dev-iommu", NULL}) < 0)
        bench_fail("cannot start qmp-sim (build the qmp-sim target, or set QMP_SIM_BIN)");

    /* D = 0 first: the fixed cost of one smmuctl detach call (process, connect, discovery, journal), and a
     * warm-up of the page cache for the binary. */
    set_guest_delay(0);
    double fixed[MAXREPS];
    measure(1, 0);
    for (int r = 0; r < reps; r++)
        fixed[r] = measure(1, 0).ms;

    set_guest_delay(delay);
    double par[4][MAXREPS], seq[4][MAXREPS];
    long par_cmd[4], seq_cmd[4];
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < 4; k++) {
            /* alternate which mode goes first, so drift in the machine's load hits both alike */
            for (int m = 0; m < 2; m++) {
                int sequential = (m + r) % 2;
                struct sample s = measure(NS[k], sequential);
                if (sequential) {
                    seq[k][r] = s.ms;
                    seq_cmd[k] = s.commands;
                } else {
                    par[k][r] = s.ms;
                    par_cmd[k] = s.commands;
                }
            }
        }
    }

    printf("qmp-sim, 4 accel vSMMUs x 2 root ports, vfio-pci devices 2 per host SMMU, guest unplug delay D = %d ms,"
           " median of %d\n", delay, reps);
    printf("%3s %12s %14s %8s %12s %10s %12s\n", "N", "parallel ms", "sequential ms", "seq/par", "parallel/D",
           "par cmds", "seq cmds");
    for (int k = 0; k < 4; k++) {
        double p = median(par[k], reps), s = median(seq[k], reps);
        printf("%3d %12.1f %14.1f %7.2fx %12.2f %10ld %12ld\n", NS[k], p, s, s / p, p / delay, par_cmd[k],
               seq_cmd[k]);
    }
    printf("fixed cost of one smmuctl detach (D = 0, 1 device): %.1f ms\n", median(fixed, reps));
    /* the figures: wall / D of the parallel detach (goal <= 1.2) next to the one-at-a-time controller's */
    for (int k = 0; k < 4; k++) {
        double pd[MAXREPS], sd[MAXREPS];
        char id[48], what[128];
        for (int r = 0; r < reps; r++) {
            pd[r] = par[k][r] / delay;
            sd[r] = seq[k][r] / delay;
        }
        snprintf(id, sizeof(id), "detach.parallel.n%d", NS[k]);
        snprintf(what, sizeof(what), "detach of %d device%s, guest delay D=%d ms: wall / D", NS[k], NS[k] > 1 ? "s" : "",
                 delay);
        bench_figure(&(struct bench_fig){"5", id, what, "D", bench_stat_of(pd, reps), "one at a time (N runs)",
                                         bench_stat_of(sd, reps), BENCH_GOAL_VALUE_LE, 1.2, NULL});
    }
    {
        /* what is left of parallel/D once one call's fixed cost is taken off: the unplugs themselves */
        double f = median(fixed, reps), pd[MAXREPS];
        for (int r = 0; r < reps; r++)
            pd[r] = (par[3][r] - f) / delay;
        bench_figure(&(struct bench_fig){"5", "detach.parallel.n8.net", "detach of 8, wall minus the D=0 fixed cost: / D",
                                         "D", bench_stat_of(pd, reps), NULL, bench_exact(0), BENCH_GOAL_NONE, 0, NULL});
    }
    bench_figure(&(struct bench_fig){"5", "detach.fixed", "one smmuctl detach with D = 0 (process, discovery, journal)",
                                     "ms", bench_stat_of(fixed, reps), NULL, bench_exact(0), BENCH_GOAL_NONE, 0, NULL});
    bench_cleanup();
    return 0;
}
