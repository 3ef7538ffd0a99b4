/* bench_cli.c — what one smmuctl process costs (issue 13.4): process start to exit of `smmuctl attach` of 4
 * devices and `smmuctl detach` of them against qmp-sim with zero delays (the guest releases at once), median and
 * spread, and the share of it spent in the journal's fsyncs.
 *
 * The fsync share is measured two ways in the same run: (1) the same runs under `strace -f -T -e
 * trace=fsync,fdatasync` (only those syscalls are stopped on; their summed durations over the plain runs'
 * median wall), and (2) the state dir on tmpfs (/dev/shm, like production's /run, where fsync is nearly free)
 * next to the state dir on the disk under $TMPDIR — the baseline of the ratio.
 *
 * Through smmuctl serve: the same attach of 4 and detach of 4 to a daemon holding the same qmp-sim VM, as
 * `smmuctl --server unix:… --vm vm attach|detach` processes (start to exit, next to the direct CLI's) and as bare
 * HTTP requests (POST /v1/vms/vm/attach?wait, …/detach?wait: request to reply).
 *
 * Usage: bench_cli [REPS]   (default 15; SMMUCTL_BENCH_QUICK=1: 5) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define NDEV 4
#define MAXREPS 61
static const char *const BDF[NDEV] = {"0009:01:00.0", "000a:01:00.0", "000b:01:00.0", "000c:01:00.0"};
static const char *const SMMU[NDEV] = {"smmu3.0x0000000016000000", "smmu3.0x0000000017000000",
                                       "smmu3.0x0000000018000000", "smmu3.0x0000000019000000"};

static struct fakesys *g_fs;
static struct simh *g_sim;
static char g_dev[4200], g_strace[4200];

/* One smmuctl run; with strace, the summed fsync/fdatasync durations (ms) and count. Returns the exit code. */
static int run(const char *state, const char *const *cmd, bool traced, double *wall, double *fs_ms, int *nfs)
{
    const char *argv[40];
    size_t n = 0;
    if (traced) {
        argv[n++] = "strace";
        argv[n++] = "-f";
        argv[n++] = "-qq";
        argv[n++] = "-T";
        argv[n++] = "-e";
        argv[n++] = "trace=fsync,fdatasync";
        argv[n++] = "-o";
        argv[n++] = g_strace;
        argv[n++] = smmu_run_cli_path();
    } else {
        argv[n++] = smmu_run_cli_path();
    }
    const char *common[] = {"--qmp", simh_qmp_path(g_sim), "--state-dir", state, "--vm", "vm", "--sysfs",
                            fakesys_root(g_fs), "--dev", g_dev, "--json", NULL};
    for (size_t i = 0; common[i]; i++)
        argv[n++] = common[i];
    for (size_t i = 0; cmd[i]; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    struct smmu_run r;
    double t0 = bench_now_ms();
    int rc = smmu_run_prog(&r, traced ? "/usr/bin/strace" : smmu_run_cli_path(), argv, 60000);
    *wall = bench_now_ms() - t0;
    if (rc != 0)
        fprintf(stderr, "bench_cli: smmuctl %s: exit %d\n%s%s\n", cmd[0], rc, r.out, r.err);
    smmu_run_free(&r);
    if (traced) {
        FILE *f = fopen(g_strace, "r");
        char line[512];
        *fs_ms = 0;
        *nfs = 0;
        while (f && fgets(line, sizeof(line), f)) {
            char *lt = strrchr(line, '<');
            if (lt && (strstr(line, "fsync(") || strstr(line, "fdatasync("))) {
                *fs_ms += atof(lt + 1) * 1e3;
                ++*nfs;
            }
        }
        if (f)
            fclose(f);
        unlink(g_strace);
    }
    return rc;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 5 : 15);
    int rc = 0;
    if (reps < 1 || reps > MAXREPS) {
        fprintf(stderr, "usage: bench_cli [REPS 1..%d]\n", MAXREPS);
        return 2;
    }
    char *tmp = smmu_test_mkdtemp("bench-cli");
    char disk[4200], shm[128];
    snprintf(disk, sizeof(disk), "%s/state", tmp);
    snprintf(g_dev, sizeof(g_dev), "%s/dev", tmp);
    snprintf(g_strace, sizeof(g_strace), "%s/strace.txt", tmp);
    snprintf(shm, sizeof(shm), "/dev/shm/smmuctl-bench-cli.%d", (int)getpid());
    bool have_shm = mkdir(shm, 0700) == 0;
    bool have_strace = access("/usr/bin/strace", X_OK) == 0;
    g_fs = fakesys_new(NULL);
    for (int i = 0; i < NDEV; i++) {
        char group[8], cdev[16];
        snprintf(group, sizeof(group), "%d", 10 + i);
        snprintf(cdev, sizeof(cdev), "vfio%d", i);
        fakesys_add_dev(g_fs, &(struct fakesys_dev){.bdf = BDF[i], .smmu = SMMU[i], .driver = "vfio-pci",
                                                    .group = group, .cdev = cdev, .numa_node = "0"});
    }
    fakesys_write_dev_tree(g_fs, g_dev);
    if (simh_start_vm(&g_sim, 4, 2, 0, (const char *[]){"--sysfs", fakesys_root(g_fs), "--dev-iommu", NULL}) < 0 ||
        simh_unplug(g_sim, "{\"mode\":\"event\",\"delay_ms\":0}") < 0) {
        fprintf(stderr, "bench_cli: cannot start qmp-sim\n");
        return 1;
    }
    const char *attach[] = {"attach", BDF[0], BDF[1], BDF[2], BDF[3], NULL};
    const char *detach[] = {"detach", "--unplug-timeout", "5", BDF[0], BDF[1], BDF[2], BDF[3], NULL};
    double aw[MAXREPS], dw[MAXREPS], as[MAXREPS], ds[MAXREPS], af[MAXREPS], df[MAXREPS];
    int anf = 0, dnf = 0, ns = 0, nt = 0;
    double x, y;
    int z;
    /* warm-up: page cache, the journal's directory */
    if (run(disk, attach, false, &x, &y, &z) || run(disk, detach, false, &x, &y, &z))
        rc = 1;
    for (int r = 0; r < reps && rc == 0; r++) {
        if (run(disk, attach, false, &aw[r], &y, &z) || run(disk, detach, false, &dw[r], &y, &z))
            rc = 1;
        if (have_shm && rc == 0) {
            if (run(shm, attach, false, &as[ns], &y, &z) || run(shm, detach, false, &ds[ns], &y, &z))
                rc = 1;
            ns++;
        }
        if (have_strace && rc == 0) {
            if (run(disk, attach, true, &x, &af[nt], &anf) || run(disk, detach, true, &x, &df[nt], &dnf))
                rc = 1;
            nt++;
        }
    }
    if (rc == 0) {
        printf("smmuctl processes against qmp-sim (4 vSMMUs x 2 root ports), zero guest delay, %d runs\n", reps);
        struct bench_stat sa = bench_stat_of(aw, reps), sd = bench_stat_of(dw, reps);
        bench_figure(&(struct bench_fig){"4", "cli.attach.wall", "smmuctl attach of 4: process start to exit "
                                         "(state on disk)", "ms", sa, have_shm ? "state on tmpfs" : NULL,
                                         have_shm ? bench_stat_of(as, ns) : bench_exact(0), BENCH_GOAL_NONE, 0, NULL});
        bench_figure(&(struct bench_fig){"4", "cli.detach.wall", "smmuctl detach of 4: process start to exit "
                                         "(state on disk)", "ms", sd, have_shm ? "state on tmpfs" : NULL,
                                         have_shm ? bench_stat_of(ds, ns) : bench_exact(0), BENCH_GOAL_NONE, 0, NULL});
        if (have_strace) {
            struct bench_stat fa = bench_stat_of(af, nt), fd = bench_stat_of(df, nt);
            char note[128];
            snprintf(note, sizeof(note), "%d fsyncs per attach; share = fsync time / plain median wall", anf);
            bench_figure(&(struct bench_fig){"4", "cli.attach.fsync", "attach of 4: time in journal fsyncs (strace -T)",
                                             "ms", fa, "whole process (plain run)", sa, BENCH_GOAL_NONE, 0, note});
            snprintf(note, sizeof(note), "%d fsyncs per detach; share = fsync time / plain median wall", dnf);
            bench_figure(&(struct bench_fig){"4", "cli.detach.fsync", "detach of 4: time in journal fsyncs (strace -T)",
                                             "ms", fd, "whole process (plain run)", sd, BENCH_GOAL_NONE, 0, note});
        } else {
            bench_note("cli.fsync", "strace not installed: no fsync share");
        }
        /* the same through the daemon (it takes the VM's one QMP connection: after the CLI runs) */
        char sock[4300], log[4300], sstate[4300];
        snprintf(sock, sizeof(sock), "%s/api.sock", tmp);
        snprintf(log, sizeof(log), "%s/serve.log", tmp);
        snprintf(sstate, sizeof(sstate), "%s/serve-state", tmp);
        pid_t d = bench_serve_start(sock, sstate, fakesys_root(g_fs), g_dev, log);
        if (d < 0 || bench_serve_add_vm(sock, "vm", simh_qmp_path(g_sim)) < 0) {
            fprintf(stderr, "bench_cli: smmuctl serve did not take the VM\n");
            rc = 1;
        } else {
            static const char att[] = "{\"devices\":[\"0009:01:00.0\",\"000a:01:00.0\",\"000b:01:00.0\","
                                      "\"000c:01:00.0\"]}";
            static const char det[] = "{\"devices\":[\"0009:01:00.0\",\"000a:01:00.0\",\"000b:01:00.0\","
                                      "\"000c:01:00.0\"],\"unplug_timeout\":5}";
            double sa_ms[MAXREPS], sd_ms[MAXREPS];
            for (int r = -1; r < reps && rc == 0; r++) { /* r = -1: warm-up */
                double t0 = bench_now_ms();
                int s1 = bench_http(sock, "POST", "/v1/vms/vm/attach?wait=20", att, NULL);
                double t1 = bench_now_ms();
                int s2 = bench_http(sock, "POST", "/v1/vms/vm/detach?wait=20", det, NULL);
                double t2 = bench_now_ms();
                if (s1 != 200 || s2 != 200) {
                    fprintf(stderr, "bench_cli: through serve: attach HTTP %d, detach HTTP %d\n", s1, s2);
                    rc = 1;
                } else if (r >= 0) {
                    sa_ms[r] = t1 - t0;
                    sd_ms[r] = t2 - t1;
                }
            }
            /* the CLI through the daemon: smmuctl --server */
            double ca_ms[MAXREPS], cd_ms[MAXREPS];
            char srv[4400];
            snprintf(srv, sizeof(srv), "unix:%s", sock);
            for (int r = -1; r < reps && rc == 0; r++) {
                const char *a[] = {"--server", srv, "--vm", "vm", "--json", "attach", BDF[0], BDF[1], BDF[2], BDF[3],
                                   NULL};
                const char *dd[] = {"--server", srv, "--vm", "vm", "--json", "detach", "--unplug-timeout", "5",
                                    BDF[0], BDF[1], BDF[2], BDF[3], NULL};
                struct smmu_run ra, rd;
                double t0 = bench_now_ms();
                int s1 = smmu_run_cli(&ra, a, 60000);
                double t1 = bench_now_ms();
                int s2 = smmu_run_cli(&rd, dd, 60000);
                double t2 = bench_now_ms();
                if (s1 != 0 || s2 != 0) {
                    fprintf(stderr, "bench_cli: smmuctl --server: attach exit %d %s, detach exit %d %s\n", s1, ra.err,
                            s2, rd.err);
                    rc = 1;
                } else if (r >= 0) {
                    ca_ms[r] = t1 - t0;
                    cd_ms[r] = t2 - t1;
                }
                smmu_run_free(&ra);
                smmu_run_free(&rd);
            }
            if (rc == 0) {
                bench_figure(&(struct bench_fig){"4", "cli.server.attach", "smmuctl --server attach of 4: process start "
                                                 "to exit (daemon's state on disk)", "ms", bench_stat_of(ca_ms, reps),
                                                 "direct smmuctl attach process", sa, BENCH_GOAL_NONE, 0, NULL});
                bench_figure(&(struct bench_fig){"4", "cli.server.detach", "smmuctl --server detach of 4: process start "
                                                 "to exit (daemon's state on disk)", "ms", bench_stat_of(cd_ms, reps),
                                                 "direct smmuctl detach process", sd, BENCH_GOAL_NONE, 0, NULL});
            }
            if (rc == 0) {
                bench_figure(&(struct bench_fig){"4", "cli.serve.attach", "attach of 4 through smmuctl serve "
                                                 "(HTTP request to reply, state on disk)", "ms",
                                                 bench_stat_of(sa_ms, reps), "smmuctl attach process", sa,
                                                 BENCH_GOAL_NONE, 0, NULL});
                bench_figure(&(struct bench_fig){"4", "cli.serve.detach", "detach of 4 through smmuctl serve "
                                                 "(HTTP request to reply, state on disk)", "ms",
                                                 bench_stat_of(sd_ms, reps), "smmuctl detach process", sd,
                                                 BENCH_GOAL_NONE, 0, NULL});
            }
        }
        bench_serve_stop(d);
    }
    simh_stop(g_sim);
    fakesys_free(g_fs);
    if (have_shm)
        smmu_test_rmtree(shm);
    smmu_test_rmtree(tmp);
    free(tmp);
    return rc;
}
