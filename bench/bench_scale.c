/* bench_scale.c — discovery as the VM grows (issue 13.6): 4, 16 and 64 vSMMUs with 8 root ports each, on
 * qmp-sim and on real QEMU 11 where it boots that many (virt's platform bus fits 16 arm-smmuv3: the 64-vSMMU VM
 * is refused at launch, which is noted). Per size: wall per discovery through the library, round trips, bytes
 * sent and received (the client's recorder, exact), and the peer's CPU per discovery (idle-corrected).
 *
 * Usage: bench_scale [REPS [ITERATIONS]]   (defaults 5 and 10; SMMUCTL_BENCH_QUICK=1: 3 and 2) */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "smmuctl/qmp.h"
#include "smmuctl/topology.h"
#include "smmuctl/vm.h"
#include "support/qemu.h"
#include "support/qmp_sync.h"
#include "support/sim_harness.h"

#define MAXREPS 31

struct counts {
    size_t cmds, sent, recvd, ports;
    char *lg[2]; /* the two qom-list-get texts of one discovery */
};

/* `iters` discoveries on one connection: wall and peer CPU per discovery; counts of one. */
static int run(const char *sock, pid_t peer, int iters, double *wall, double *cpu, double *self, struct counts *k)
{
    struct event_base *base = event_base_new();
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    char *text = NULL;
    size_t textlen = 0;
    FILE *mem = open_memstream(&text, &textlen);
    qmp_client *c = NULL;
    int rc = 0;
    o.record = mem;
    o.negotiate_oob = true;
    if (qmp_client_new(&c, base, &o) < 0 || qmp_client_connect_sync(c, sock, &err) < 0) {
        fprintf(stderr, "bench_scale: connect: %s\n", err.message);
        rc = -1;
        goto out;
    }
    fflush(mem);
    long off = ftell(mem);
    double t0 = bench_now_ms(), c0 = bench_proc_cpu_ms(peer), s0 = bench_self_cpu_ms();
    for (int i = 0; i < iters && rc == 0; i++) {
        struct smmu_topology t;
        if (smmu_vm_discover(c, &t, &err) < 0) {
            fprintf(stderr, "bench_scale: discover: %s\n", err.message);
            rc = -1;
            break;
        }
        k->ports = t.n_ports;
        smmu_topology_free(&t);
    }
    double w = bench_now_ms() - t0, c1 = bench_proc_cpu_ms(peer);
    *self = (bench_self_cpu_ms() - s0) / iters;
    *wall = w / iters;
    *cpu = (c1 - c0 - bench_proc_idle_ms(peer, w)) / iters;
    fflush(mem);
    k->cmds = k->sent = k->recvd = 0;
    free(k->lg[0]);
    free(k->lg[1]);
    k->lg[0] = k->lg[1] = NULL;
    for (const char *line = text + off; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > 3 && !strncmp(line, "C: ", 3)) {
            if (k->cmds < 5 && strstr(line, "\"qom-list-get\"")) {
                int slot = k->lg[0] ? 1 : 0;
                free(k->lg[slot]);
                k->lg[slot] = strndup(line + 3, len - 3);
            }
            k->cmds++;
            k->sent += len - 3 + 1;
        } else if (len > 3 && !strncmp(line, "S: ", 3)) {
            k->recvd += len - 3 + 2;
        }
        line = nl ? nl + 1 : NULL;
    }
    k->cmds /= (size_t)iters;
    k->sent /= (size_t)iters;
    k->recvd /= (size_t)iters;
out:
    qmp_client_free(c);
    fclose(mem);
    free(text);
    event_base_free(base);
    return rc;
}

/* QEMU only: the discovery's two qom-list-get replayed as sent and with QOM partial paths (the only way the QMP
 * offers to send shorter paths), QEMU CPU per discovery. */
static void partial_paths(const char *sock, pid_t pid, int nv, int reps, int iters, struct counts *k)
{
    double full[MAXREPS], part[MAXREPS];
    char *pp[2] = {bench_partial_paths(k->lg[0]), bench_partial_paths(k->lg[1])};
    for (int r = 0; r < reps; r++) {
        full[r] = bench_replay_cpu(pid, sock, k->lg, 2, iters);
        part[r] = bench_replay_cpu(pid, sock, pp, 2, iters);
    }
    char id[64], what[160];
    snprintf(id, sizeof(id), "scale.QEMU.v%d.partial_paths", nv);
    snprintf(what, sizeof(what), "QEMU, %d vSMMUs: the 2 qom-list-get with partial paths: QEMU CPU", nv);
    bench_figure(&(struct bench_fig){"6", id, what, "ms", bench_stat_of(part, reps), "full paths, as sent",
                                     bench_stat_of(full, reps), BENCH_GOAL_NONE, 0,
                                     "ratio > 1: QEMU's partial-path search costs more than the bytes it saves"});
    free(pp[0]);
    free(pp[1]);
}

static int measure(const char *peer_name, const char *sock, pid_t pid, int nv, int reps, int iters)
{
    double w[MAXREPS], c[MAXREPS], me[MAXREPS];
    struct counts k = {0};
    char id[6][64], what[6][128];
    run(sock, pid, 1, &w[0], &c[0], &me[0], &k); /* warm-up */
    for (int r = 0; r < reps; r++)
        if (run(sock, pid, iters, &w[r], &c[r], &me[r], &k) < 0)
            return -1;
    if (k.ports != (size_t)nv * 8) {
        fprintf(stderr, "bench_scale: %s with %d vSMMUs: discovered %zu root ports, not %d\n", peer_name, nv, k.ports,
                nv * 8);
        return -1;
    }
    static const char *const key[6] = {"wall", "cpu", "cmds", "sent", "received", "client_cpu"};
    static const char *const txt[6] = {"wall", "CPU", "round trips", "bytes sent", "bytes received", "client CPU"};
    for (int i = 0; i < 6; i++) {
        snprintf(id[i], 64, "scale.%s.v%d.%s", peer_name, nv, key[i]);
        snprintf(what[i], 128, "discovery, %s, %d vSMMUs x 8 root ports: %s%s", peer_name, nv,
                 i == 1 ? peer_name : "", i == 1 ? " CPU" : txt[i]);
    }
    bench_figure(&(struct bench_fig){"6", id[0], what[0], "ms", bench_stat_of(w, reps), NULL, bench_exact(0),
                                     BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"6", id[1], what[1], "ms", bench_stat_of(c, reps), NULL, bench_exact(0),
                                     BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"6", id[2], what[2], "cmds", bench_exact((double)k.cmds), NULL, bench_exact(0),
                                     BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"6", id[3], what[3], "bytes", bench_exact((double)k.sent), NULL, bench_exact(0),
                                     BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"6", id[4], what[4], "bytes", bench_exact((double)k.recvd), NULL,
                                     bench_exact(0), BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"6", id[5], what[5], "ms", bench_stat_of(me, reps), NULL, bench_exact(0),
                                     BENCH_GOAL_NONE, 0, NULL});
    if (!strcmp(peer_name, "QEMU") && k.lg[0] && k.lg[1])
        partial_paths(sock, pid, nv, reps, iters, &k);
    free(k.lg[0]);
    free(k.lg[1]);
    return 0;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 3 : 5);
    int iters = argc > 2 ? atoi(argv[2]) : (bench_quick() ? 2 : 10);
    static const int NV[3] = {4, 16, 64};
    int rc = 0;
    if (reps < 1 || reps > MAXREPS || iters < 1) {
        fprintf(stderr, "usage: bench_scale [REPS 1..%d [ITERATIONS]]\n", MAXREPS);
        return 2;
    }
    printf("discovery through libsmmuctl, %d discoveries per run, %d runs\n", iters, reps);
    for (int s = 0; s < 3; s++) {
        struct simh *h = NULL;
        if (simh_start(&h, bench_topology(NV[s], 8, false, true)) < 0) {
            fprintf(stderr, "bench_scale: qmp-sim refused the %d-vSMMU VM\n", NV[s]);
            rc = 1;
            continue;
        }
        if (measure("qmp-sim", simh_qmp_path(h), simh_pid(h), NV[s], reps, iters) < 0)
            rc = 1;
        simh_stop(h);
    }
    for (int s = 0; s < 3; s++) {
        struct smmu_qemu *q = NULL;
        int r = smmu_qemu_start(&q, "aarch64", bench_topology(NV[s], 8, false, false));
        if (r == -ENOENT) {
            bench_note("scale.qemu", "skipped: QEMU 11 not installed");
            break;
        }
        if (r < 0) {
            char id[32], text[512];
            const char *why = strstr(smmu_qemu_last_error(), "Can not fit IRQ line") ? "Platform Bus: Can not fit IRQ line"
                                                                                     : smmu_qemu_last_error();
            snprintf(id, sizeof(id), "scale.qemu.v%d", NV[s]);
            snprintf(text, sizeof(text), "real QEMU 11 does not boot %d vSMMUs on virt: %.400s", NV[s], why);
            bench_note(id, text);
            continue;
        }
        if (measure("QEMU", smmu_qemu_socket_path(q), smmu_qemu_pid(q), NV[s], reps, iters) < 0)
            rc = 1;
        smmu_qemu_stop(q);
    }
    return rc;
}
