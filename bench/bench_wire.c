/* bench_wire.c — what one QMP round trip costs through libsmmuctl's client, next to the limit: a minimal
 * blocking C client (write the command, read to CRLF), in one run, against real QEMU 11 and against qmp-sim
 * (issue 13.2).
 *
 * Workload: N `query-status` round trips on one connection with the oob capability negotiated (what smmuctl's
 * CLI and daemon do), sequential (one in flight) and pipelined (K in flight: K commands queued, then the K
 * replies awaited, repeated). Both clients send the same bytes per command ({"execute":"query-status","id":"N"}
 * and a newline; QEMU reads its input one byte per read(), so equal bytes matter). Per round trip: wall time,
 * this process's CPU (getrusage), and the peer's CPU (/proc/PID/stat, idle-corrected). Each repetition runs both
 * clients, alternating which goes first; figures are medians over repetitions with min..max.
 *
 * Usage: bench_wire [REPS [N]]   (defaults 7 and 2000; SMMUCTL_BENCH_QUICK=1: 3 and 384; qmp-sim gets 8 N)
 * Needs QEMU 11 (scripts/install-qemu11) and qmp-sim from the build; a missing QEMU skips its figures. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bench_util.h"
#include "smmuctl/qmp.h"
#include "support/qemu.h"
#include "support/qmp_sync.h"
#include "support/sim_harness.h"

#define K_INFLIGHT 32
#define MAXREPS 31

/* ---- the limit: bench_util.h's minimal blocking client ---- */

/* n round trips, k in flight (k = 1: sequential). */
static int mini_run(struct bench_mini *m, int n, int k)
{
    char out[K_INFLIGHT * 48];
    for (int done = 0; done < n; done += k) {
        size_t len = 0;
        for (int i = 0; i < k; i++)
            len += (size_t)snprintf(out + len, sizeof(out) - len, "{\"execute\":\"query-status\",\"id\":\"%lu\"}\n",
                                    ++m->id);
        if (bench_mini_write(m, out, len) < 0)
            return -1;
        for (int i = 0; i < k; i++)
            if (bench_mini_line(m, NULL) < 0)
                return -1;
    }
    return 0;
}

/* ---- libsmmuctl's client ---- */

struct lib {
    struct event_base *base;
    qmp_client *c;
    int answered, failed;
};

static void lib_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct lib *l = payload;
    (void)c; (void)ret; (void)e;
    l->answered++;
    l->failed += err < 0;
}

static int lib_open(struct lib *l, const char *path)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    memset(l, 0, sizeof(*l));
    o.negotiate_oob = true;
    l->base = event_base_new();
    if (!l->base || qmp_client_new(&l->c, l->base, &o) < 0 || qmp_client_connect_sync(l->c, path, &e) < 0) {
        fprintf(stderr, "bench_wire: libsmmuctl connect: %s\n", e.message);
        return -1;
    }
    return 0;
}

static int lib_run(struct lib *l, int n, int k)
{
    for (int done = 0; done < n; done += k) {
        int want = l->answered + k;
        for (int i = 0; i < k; i++)
            if (qmp_call(l->c, "query-status", NULL, NULL, 0, 0, lib_cb, l) < 0)
                return -1;
        while (l->answered < want)
            if (event_base_loop(l->base, EVLOOP_ONCE) < 0)
                return -1;
    }
    return l->failed ? -1 : 0;
}

static void lib_close(struct lib *l)
{
    qmp_client_free(l->c);
    event_base_free(l->base);
}

/* ---- measuring ---- */

struct sample {
    double wall_us, self_us, peer_us; /* per round trip */
};

/* One measured run of one client: connect, warm up, N round trips, disconnect. */
static int one_run(int use_lib, const char *path, pid_t peer, int n, int k, struct sample *s)
{
    static struct bench_mini m;
    struct lib l;
    int r;
    if (use_lib ? lib_open(&l, path) : bench_mini_open(&m, path, true))
        return -1;
    r = use_lib ? lib_run(&l, 64, k) : mini_run(&m, 64, k); /* warm-up */
    double t0 = bench_now_ms(), c0 = bench_self_cpu_ms(), p0 = bench_proc_cpu_ms(peer);
    if (r == 0)
        r = use_lib ? lib_run(&l, n, k) : mini_run(&m, n, k);
    double wall = bench_now_ms() - t0;
    s->wall_us = wall * 1e3 / n;
    s->self_us = (bench_self_cpu_ms() - c0) * 1e3 / n;
    double p1 = bench_proc_cpu_ms(peer);
    if (use_lib)
        lib_close(&l);
    else
        bench_mini_close(&m);
    s->peer_us = (p1 - p0 - bench_proc_idle_ms(peer, wall)) * 1e3 / n;
    return r;
}

static int bench_target(const char *name, const char *label, const char *path, pid_t peer, int reps, int n)
{
    static const int KS[2] = {1, K_INFLIGHT};
    static const char *const MODE[2] = {"seq", "pipe"};
    int met = 1;
    printf("%s: %d query-status round trips per run, oob negotiated, %d runs per client, peer CPU"
           " idle-corrected after each run\n", label, n, reps);
    for (int mode = 0; mode < 2; mode++) {
        double w[2][MAXREPS], c[2][MAXREPS], p[2][MAXREPS];
        for (int r = 0; r < reps; r++)
            for (int j = 0; j < 2; j++) {
                int use_lib = (j + r) % 2;
                struct sample s;
                if (one_run(use_lib, path, peer, n, KS[mode], &s) < 0) {
                    fprintf(stderr, "bench_wire: %s %s run failed\n", label, use_lib ? "libsmmuctl" : "minimal");
                    return -1;
                }
                w[use_lib][r] = s.wall_us;
                c[use_lib][r] = s.self_us;
                p[use_lib][r] = s.peer_us;
            }
        char id[3][64], what[3][160];
        const char *mtext = mode ? "pipelined, 32 in flight" : "sequential";
        snprintf(id[0], 64, "wire.%s.%s.wall", name, MODE[mode]);
        snprintf(what[0], 160, "%s, %s: wall per round trip", label, mtext);
        snprintf(id[1], 64, "wire.%s.%s.client_cpu", name, MODE[mode]);
        snprintf(what[1], 160, "%s, %s: client CPU per round trip", label, mtext);
        snprintf(id[2], 64, "wire.%s.%s.peer_cpu", name, MODE[mode]);
        snprintf(what[2], 160, "%s, %s: %s CPU per round trip", label, mtext, name);
        met &= bench_figure(&(struct bench_fig){"2", id[0], what[0], "us", bench_stat_of(w[1], reps),
                                                "minimal C client", bench_stat_of(w[0], reps), BENCH_GOAL_RATIO_LE,
                                                1.1, NULL});
        met &= bench_figure(&(struct bench_fig){"2", id[1], what[1], "us", bench_stat_of(c[1], reps),
                                                "minimal C client", bench_stat_of(c[0], reps), BENCH_GOAL_RATIO_LE,
                                                2.0, NULL});
        bench_figure(&(struct bench_fig){"2", id[2], what[2], "us", bench_stat_of(p[1], reps), "minimal C client",
                                         bench_stat_of(p[0], reps), BENCH_GOAL_NONE, 0,
                                         "same bytes per command from both clients"});
    }
    return met;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 3 : 7);
    int n = argc > 2 ? atoi(argv[2]) : (bench_quick() ? 384 : 2000);
    int rc = 0;
    if (reps < 1 || reps > MAXREPS || n < K_INFLIGHT) {
        fprintf(stderr, "usage: bench_wire [REPS 1..%d [N >= %d]]\n", MAXREPS, K_INFLIGHT);
        return 2;
    }
    n -= n % K_INFLIGHT;
    struct smmu_qemu *q = NULL;
    if (smmu_qemu_start(&q, "aarch64", NULL) == 0) {
        if (bench_target("qemu", "QEMU 11", smmu_qemu_socket_path(q), smmu_qemu_pid(q), reps, n) < 0)
            rc = 1;
        smmu_qemu_stop(q);
    } else {
        bench_note("wire.qemu", "skipped: QEMU 11 not installed (scripts/install-qemu11)");
    }
    struct simh *h = NULL;
    if (simh_start(&h, NULL) < 0) {
        fprintf(stderr, "bench_wire: cannot start qmp-sim\n");
        return 1;
    }
    /* qmp-sim answers ~10x faster than QEMU: more round trips, so its CPU time (10 ms ticks) resolves */
    if (bench_target("sim", "qmp-sim", simh_qmp_path(h), simh_pid(h), reps, 8 * n) < 0)
        rc = 1;
    simh_stop(h);
    return rc;
}
