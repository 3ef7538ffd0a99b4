/* bench_discovery.c — what topology discovery costs the VM (issue 13.3), against real QEMU 11 in one run:
 *
 *   batched         smmuctl's discovery through the library (three pipelined qom-list, two qom-list-get);
 *   per-property    qom-list + one qom-get per wanted property (what QEMU < 10.1 forces; SMMU_VM_NO_QOM_LIST_GET),
 *                   the baseline of a controller without qom-list-get;
 *   raw replay      the batched discovery's own commands replayed byte for byte by a minimal blocking client,
 *                   and the same with every "/machine/peripheral/ID" path written as the QOM partial path
 *                   "peripheral/ID" (QEMU resolves partial paths; the replies are checked identical): QEMU reads
 *                   QMP input one byte per read(), so bytes sent are what a cut can save. This candidate is
 *                   measured here, not used by discover.c (see bench/README.md);
 *   connect         connect + greeting + qmp_capabilities alone, the floor of any CLI run;
 *   per command     each command of the batched discovery replayed alone, its QEMU CPU per call, with its bytes.
 *
 * QEMU's CPU is utime+stime of its PID from /proc/PID/stat, idle-corrected (the idle rate is measured over an
 * interval as long as the runs); commands and bytes from the client's recorder (exact). Both library modes must
 * give the same topology (exit 1 otherwise). VM: four arm-smmuv3, each on its own pxb-pcie with two root ports,
 * one cold-plugged NIC (16 topology objects).
 *
 * Usage: bench_discovery [REPS [ITERATIONS]]   (defaults 5 and 10; SMMUCTL_BENCH_QUICK=1: 3 and 4) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "smmuctl/qmp.h"
#include "smmuctl/topology.h"
#include "smmuctl/vm.h"
#include "support/qemu.h"
#include "support/qmp_sync.h"

#define MAXREPS 31
#define MAXCMDS 16


struct rec {
    char *cmd[MAXCMDS]; /* the C: lines of one batched discovery */
    size_t ncmd, sent[MAXCMDS], recvd[MAXCMDS], sent_total, recvd_total, commands;
};

/* Parse a recording of `iters` identical discoveries: commands and bytes per discovery (C: lines sent with
 * their LF, S: lines received with their CRLF); with keep, the first discovery's C: lines into r->cmd with
 * each one's bytes sent and its reply's bytes received (replies come in command order). */
static void parse_rec(const char *text, int iters, struct rec *r, int keep)
{
    size_t sent = 0, recvd = 0, cmds = 0, replies = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > 3 && !strncmp(line, "C: ", 3)) {
            if (keep && cmds < MAXCMDS) {
                r->cmd[cmds] = strndup(line + 3, len - 3);
                r->sent[cmds] = len - 3 + 1;
            }
            cmds++;
            sent += len - 3 + 1;
        } else if (len > 3 && !strncmp(line, "S: ", 3)) {
            if (keep && replies < MAXCMDS && (strstr(line, "\"return\"") || strstr(line, "\"error\"")))
                r->recvd[replies++] = len - 3 + 2;
            recvd += len - 3 + 2;
        }
        line = nl ? nl + 1 : NULL;
    }
    r->commands = cmds / (size_t)iters;
    r->sent_total = sent / (size_t)iters;
    r->recvd_total = recvd / (size_t)iters;
    if (keep) {
        for (size_t k = r->commands; k < MAXCMDS; k++) {
            free(r->cmd[k]);
            r->cmd[k] = NULL;
        }
        r->ncmd = r->commands < MAXCMDS ? r->commands : MAXCMDS;
    }
}

struct run {
    double wall_ms, cpu_ms; /* per discovery */
};

/* `iters` discoveries through the library on one connection. */
static struct run lib_mode(pid_t pid, const char *sock, unsigned flags, int iters, char **topo, struct rec *r)
{
    struct event_base *base = event_base_new();
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    char *text = NULL;
    size_t textlen = 0;
    FILE *mem = open_memstream(&text, &textlen);
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct run res;
    o.record = mem;
    o.negotiate_oob = true;
    if (qmp_client_new(&c, base, &o) < 0 || qmp_client_connect_sync(c, sock, &err) < 0) {
        fprintf(stderr, "bench_discovery: connect: %s\n", err.message);
        exit(1);
    }
    fflush(mem);
    long start_off = ftell(mem);
    double cpu0 = bench_proc_cpu_ms(pid), t0 = bench_now_ms();
    for (int i = 0; i < iters; i++) {
        struct smmu_topology t;
        if (smmu_vm_discover_ex(c, flags, &t, &err) < 0) {
            fprintf(stderr, "bench_discovery: discover: %s\n", err.message);
            exit(1);
        }
        if (i == 0 && topo && !*topo) {
            json_t *j = smmu_topology_to_json(&t);
            *topo = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
            json_decref(j);
        }
        smmu_topology_free(&t);
    }
    double wall = bench_now_ms() - t0;
    res.wall_ms = wall / iters;
    res.cpu_ms = (bench_proc_cpu_ms(pid) - cpu0 - bench_proc_idle_ms(pid, wall)) / iters;
    fflush(mem);
    if (r)
        parse_rec(text + start_off, iters, r, r->ncmd == 0 && flags == 0);
    qmp_client_free(c);
    fclose(mem);
    free(text);
    event_base_free(base);
    return res;
}

/* Replay the given commands `iters` times on a raw connection; replies[i] (when given) keeps the last reply
 * of command i without its id. */
static struct run raw_mode(pid_t pid, const char *sock, char **cmds, size_t n, int iters, char **replies)
{
    static struct bench_mini m;
    struct run res;
    if (bench_mini_open(&m, sock, true) < 0) {
        fprintf(stderr, "bench_discovery: raw connect failed\n");
        exit(1);
    }
    double cpu0 = bench_proc_cpu_ms(pid), t0 = bench_now_ms();
    for (int i = 0; i < iters; i++)
        for (size_t k = 0; k < n; k++) {
            char *reply = NULL;
            if (bench_mini_cmd(&m, cmds[k], &reply) < 0) {
                fprintf(stderr, "bench_discovery: raw replay: no reply to %s\n", cmds[k]);
                exit(1);
            }
            if (replies && i == iters - 1) {
                char *id = strstr(reply, ", \"id\": ");
                if (id)
                    *id = 0; /* QEMU puts the id last */
                free(replies[k]);
                replies[k] = reply;
            } else {
                free(reply);
            }
        }
    double wall = bench_now_ms() - t0;
    res.wall_ms = wall / iters;
    res.cpu_ms = (bench_proc_cpu_ms(pid) - cpu0 - bench_proc_idle_ms(pid, wall)) / iters;
    bench_mini_close(&m);
    return res;
}

static struct run connect_mode(pid_t pid, const char *sock, int iters)
{
    static struct bench_mini m;
    struct run res;
    double cpu0 = bench_proc_cpu_ms(pid), t0 = bench_now_ms();
    for (int i = 0; i < iters; i++) {
        if (bench_mini_open(&m, sock, true) < 0) {
            fprintf(stderr, "bench_discovery: connect failed\n");
            exit(1);
        }
        bench_mini_close(&m);
        /* QEMU notices the close in its main loop; the next connect waits for that */
    }
    double wall = bench_now_ms() - t0;
    res.wall_ms = wall / iters;
    res.cpu_ms = (bench_proc_cpu_ms(pid) - cpu0 - bench_proc_idle_ms(pid, wall)) / iters;
    return res;
}

static void fig(const char *id, const char *what, const char *unit, double *v, int n, const char *bwhat, double *b,
                const char *note)
{
    bench_figure(&(struct bench_fig){"3", id, what, unit, bench_stat_of(v, n), bwhat,
                                     b ? bench_stat_of(b, n) : bench_exact(0), BENCH_GOAL_NONE, 0, note});
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 3 : 5);
    int iters = argc > 2 ? atoi(argv[2]) : (bench_quick() ? 4 : 10);
    struct smmu_qemu *q;
    const char *args[64];
    size_t n = 0;
    static char bufs[32][128];
    int b = 0;
    if (reps < 1 || reps > MAXREPS || iters < 1) {
        fprintf(stderr, "usage: bench_discovery [REPS 1..%d [ITERATIONS]]\n", MAXREPS);
        return 2;
    }
    for (int k = 0; k < 4; k++) {
        snprintf(bufs[b], 128, "pxb-pcie,id=pxb%d,bus_nr=%d,bus=pcie.0", k, 250 - 8 * k);
        args[n++] = "-device"; args[n++] = bufs[b++];
        for (int p = 0; p < 2; p++) {
            snprintf(bufs[b], 128, "pcie-root-port,id=rp%d%c,bus=pxb%d,chassis=%d,port=%d", k, 'a' + p, k,
                     1 + 2 * k + p, 1 + 2 * k + p);
            args[n++] = "-device"; args[n++] = bufs[b++];
        }
        snprintf(bufs[b], 128, "arm-smmuv3,primary-bus=pxb%d,id=vsmmu%d", k, k);
        args[n++] = "-device"; args[n++] = bufs[b++];
    }
    args[n++] = "-netdev"; args[n++] = "user,id=cold0";
    args[n++] = "-device"; args[n++] = "e1000e,netdev=cold0,bus=rp3b,id=coldnic";
    args[n] = NULL;
    if (smmu_qemu_start(&q, "aarch64", args) < 0) {
        fprintf(stderr, "cannot start QEMU 11: %s\n(run scripts/install-qemu11 first)\n", smmu_qemu_last_error());
        bench_note("discovery", "skipped: QEMU 11 not installed");
        return 0;
    }
    pid_t pid = smmu_qemu_pid(q);
    const char *sock = smmu_qemu_socket_path(q);
    struct rec rb = {0}, rs = {0};
    char *topo_b = NULL, *topo_s = NULL;
    lib_mode(pid, sock, 0, 2, NULL, NULL); /* warm-up */
    double bw[MAXREPS], bc[MAXREPS], sw[MAXREPS], sc[MAXREPS], rc[MAXREPS], pc[MAXREPS], cc[MAXREPS];
    char *full_rep[MAXCMDS] = {0}, *part_rep[MAXCMDS] = {0}, *part[MAXCMDS] = {0};
    for (int r = 0; r < reps; r++) {
        struct run x;
        x = lib_mode(pid, sock, 0, iters, &topo_b, &rb);
        bw[r] = x.wall_ms, bc[r] = x.cpu_ms;
        x = lib_mode(pid, sock, SMMU_VM_NO_QOM_LIST_GET, iters, &topo_s, &rs);
        sw[r] = x.wall_ms, sc[r] = x.cpu_ms;
        if (r == 0)
            for (size_t k = 0; k < rb.ncmd; k++)
                part[k] = bench_partial_paths(rb.cmd[k]);
        x = raw_mode(pid, sock, rb.cmd, rb.ncmd, iters, full_rep);
        rc[r] = x.cpu_ms;
        x = raw_mode(pid, sock, part, rb.ncmd, iters, part_rep);
        pc[r] = x.cpu_ms;
        x = connect_mode(pid, sock, iters);
        cc[r] = x.cpu_ms;
    }
    int same = topo_b && topo_s && !strcmp(topo_b, topo_s);
    int same_replies = 1;
    size_t part_sent = 0, full_sent = 0;
    for (size_t k = 0; k < rb.ncmd; k++) {
        same_replies &= full_rep[k] && part_rep[k] && !strcmp(full_rep[k], part_rep[k]);
        part_sent += strlen(part[k]) + 1;
        full_sent += rb.sent[k];
    }
    printf("QEMU 11 aarch64 virt, 4 vSMMUs x 2 root ports + 1 NIC, %d discoveries per run, %d runs per mode, QEMU CPU"
           " idle-corrected after each run\n", iters, reps);
    fig("discovery.batched.qemu_cpu", "topology discovery (batched): QEMU CPU", "ms", bc, reps,
        "per-property qom-get", sc, NULL);
    fig("discovery.batched.wall", "topology discovery (batched): wall", "ms", bw, reps, "per-property qom-get", sw, NULL);
    bench_figure(&(struct bench_fig){"3", "discovery.batched.commands", "topology discovery (batched): commands",
                                     "cmds", bench_exact((double)rb.commands), "per-property qom-get",
                                     bench_exact((double)rs.commands), BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"3", "discovery.batched.sent", "topology discovery (batched): bytes sent",
                                     "bytes", bench_exact((double)rb.sent_total), "per-property qom-get",
                                     bench_exact((double)rs.sent_total), BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"3", "discovery.batched.received",
                                     "topology discovery (batched): bytes received", "bytes",
                                     bench_exact((double)rb.recvd_total), "per-property qom-get",
                                     bench_exact((double)rs.recvd_total), BENCH_GOAL_NONE, 0, NULL});
    fig("discovery.partial.qemu_cpu", "discovery replayed with partial paths: QEMU CPU", "ms", pc, reps,
        "replayed as sent", rc, same_replies ? "replies identical to the full paths'" : "REPLIES DIFFER");
    bench_figure(&(struct bench_fig){"3", "discovery.partial.sent", "discovery replayed with partial paths: bytes sent",
                                     "bytes", bench_exact((double)part_sent), "replayed as sent",
                                     bench_exact((double)full_sent), BENCH_GOAL_NONE, 0, NULL});
    fig("discovery.connect.qemu_cpu", "connect + greeting + qmp_capabilities: QEMU CPU", "ms", cc, reps, NULL, NULL,
        NULL);
    /* per command: each of the batched discovery's commands alone */
    printf("per command of one batched discovery (each replayed alone, %d times per run):\n", 4 * iters);
    for (size_t k = 0; k < rb.ncmd; k++) {
        double kc[MAXREPS];
        for (int r = 0; r < reps; r++)
            kc[r] = raw_mode(pid, sock, &rb.cmd[k], 1, 4 * iters, NULL).cpu_ms;
        char id[64], what[200], cmdname[64] = "?", note[96];
        const char *e = strstr(rb.cmd[k], "\"execute\":\"");
        if (e)
            sscanf(e + 11, "%63[^\"]", cmdname);
        const char *p = strstr(rb.cmd[k], "\"path\":\"");
        char arg[64] = "";
        if (p)
            sscanf(p + 8, "%63[^\"]", arg);
        if (strstr(rb.cmd[k], "\"paths\"")) {
            size_t np = 1;
            for (const char *s = strstr(rb.cmd[k], "\"paths\""); s && *s && *s != ']'; s++)
                np += *s == ',';
            snprintf(arg, sizeof(arg), "of %zu paths", np);
        }
        snprintf(id, sizeof(id), "discovery.cmd%zu.qemu_cpu", k + 1);
        snprintf(what, sizeof(what), "  %zu. %s %s: QEMU CPU", k + 1, cmdname, arg);
        snprintf(note, sizeof(note), "%zu bytes sent, %zu received", rb.sent[k], rb.recvd[k]);
        fig(id, what, "ms", kc, reps, NULL, NULL, note);
    }
    printf("same topology from both library modes: %s; partial-path replies identical: %s\n", same ? "yes" : "NO",
           same_replies ? "yes" : "NO");
    for (size_t k = 0; k < MAXCMDS; k++) {
        free(rb.cmd[k]);
        free(rs.cmd[k]);
        free(full_rep[k]);
        free(part_rep[k]);
        free(part[k]);
    }
    free(topo_b);
    free(topo_s);
    smmu_qemu_stop(q);
    return same && same_replies ? 0 : 1;
}
