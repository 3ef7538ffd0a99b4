/* bench_util.h — what every benchmark under bench/ shares: clocks, CPU time of this process and of another
 * (QEMU, qmp-sim) from /proc/PID/stat, median and spread, and the figures scripts/bench collects.
 *
 * A figure is one measured value, optionally next to a baseline measured in the same run, their ratio, and the
 * goal the ratio (or the value) should meet. bench_figure() prints it as one line and, when the environment
 * names a file in SMMUCTL_BENCH_JSON, appends it there as one JSON object per line; scripts/bench turns those
 * lines into bench/results.json and its table. */
#ifndef SMMU_BENCH_UTIL_H
#define SMMU_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in ms. */
double bench_now_ms(void);
/* This process's user+system CPU (getrusage RUSAGE_SELF), in ms. */
double bench_self_cpu_ms(void);
/* Another process's user+system CPU from /proc/PID/stat (fields 14+15, clock ticks: 10 ms resolution with
 * the usual USER_HZ 100 — measure intervals of a second or more), in ms; -1 when unreadable. */
double bench_proc_cpu_ms(pid_t pid);

/* Idle correction: sleep as long as the interval just measured (wall_ms) and return the CPU ms `pid` used
 * meanwhile, with nobody talking to it — subtract it from the interval's CPU. */
double bench_proc_idle_ms(pid_t pid, double wall_ms);

/* Median and spread of n samples (sorts v). */
struct bench_stat {
    double med, min, max;
    int n;
};
struct bench_stat bench_stat_of(double *v, int n);
/* A single exact value (counts: commands, bytes): med = min = max = v, n = 1. */
struct bench_stat bench_exact(double v);

/* The goal a figure is judged by. BENCH_GOAL_NONE: informational. RATIO_LE: ratio (value / baseline) <= goal.
 * VALUE_LE: value <= goal. */
enum bench_goal_kind { BENCH_GOAL_NONE, BENCH_GOAL_RATIO_LE, BENCH_GOAL_VALUE_LE };

struct bench_fig {
    const char *item;      /* the item ("2", "3", …) */
    const char *id;        /* stable key, e.g. "wire.qemu.seq.wall" */
    const char *what;      /* one line of text */
    const char *unit;      /* "us", "ms", "bytes", … */
    struct bench_stat value;
    const char *base_what; /* NULL: no baseline */
    struct bench_stat base;
    enum bench_goal_kind goal_kind;
    double goal;
    const char *note;      /* optional */
};
/* Print and record one figure; returns 1 when its goal is met (or it has none), 0 when not. */
int bench_figure(const struct bench_fig *f);
/* Record a free-form fact about the run (string value), e.g. the topology used. */
void bench_note(const char *id, const char *text);

/* Repetitions and sizes: true when SMMUCTL_BENCH_QUICK=1 (scripts/bench --quick). */
bool bench_quick(void);

/* A Grace-Blackwell-like VM as -device arguments (NULL-terminated, static storage valid until the next call):
 * nvsmmu arm-smmuv3 vsmmuI (non-accel: TCG), each on its own pxb-pcie pxbI with `ports` root ports rpI_P
 * (chassis I+1, slot and port P+1), I and P from 0; with coldnic a cold-plugged e1000e "coldnic" on the last
 * root port. More than 24 expanders go onto pcie.0 as multifunction functions. for_sim: starts with
 * "-M virt -S" (qmp-sim's form; the QEMU helper adds its own). Real QEMU's virt fits at most 16 vSMMUs
 * ("Platform Bus: Can not fit IRQ line"). */
const char *const *bench_topology(int nvsmmu, int ports, bool coldnic, bool for_sim);

/* `smmuctl serve` as a direct child: --listen unix:sock --state-dir state --sysfs sysfs --dev dev, its stdout
 * and stderr into log. Returns its pid once /healthz answers 200 (bounded, ~10 s), or -1 with nothing left. */
pid_t bench_serve_start(const char *sock, const char *state, const char *sysfs, const char *dev, const char *log);
/* SIGTERM, bounded wait (~15 s), SIGKILL if needed, reaped. pid <= 0: nothing. */
void bench_serve_stop(pid_t pid);
/* One HTTP request to the daemon at sock on its own connection: the status (or a negative errno), the body
 * into *out when out != NULL (malloc'ed, may be NULL). body != NULL is sent as application/json. */
int bench_http(const char *sock, const char *method, const char *target, const char *body, char **out);
/* Register vm at qmp (PUT /v1/vms/{vm}) and wait until it is connected (bounded, ~60 s). 0 or -1. */
int bench_serve_add_vm(const char *sock, const char *vm, const char *qmp);
/* VmRSS of pid in KiB, -1 when unreadable. */
long bench_rss_kib(pid_t pid);

/* A copy of a command text with every "/machine/peripheral/X" string written as the QOM partial path
 * "peripheral/X" (QEMU resolves a partial path by searching the whole composition tree). Caller frees. */
char *bench_partial_paths(const char *cmd);
/* Replay `n` command texts `iters` times on a raw connection to sock; the QEMU (pid) CPU per iteration,
 * idle-corrected, in ms; -1 on failure. */
double bench_replay_cpu(pid_t pid, const char *sock, char **cmds, size_t n, int iters);

/* A minimal blocking QMP client (the limit the library's client is measured against, and a raw replayer):
 * write, read to CRLF, nothing parsed. */
struct bench_mini {
    int fd;
    char buf[1 << 20]; /* a 64-vSMMU qom-list-get reply is ~700 KB: declare instances static */
    size_t len;
    unsigned long id; /* the last id sent by bench_mini_cmd ("N" strings, as libsmmuctl sends) */
};
/* Connect, read the greeting, negotiate (with oob when `oob`). 0, or -1 with nothing left open. */
int bench_mini_open(struct bench_mini *m, const char *path, bool oob);
/* Read up to and including the next CRLF. line != NULL: *line = a malloc'ed copy without the CRLF. 0 or -1. */
int bench_mini_line(struct bench_mini *m, char **line);
int bench_mini_write(struct bench_mini *m, const char *s, size_t len);
/* Send `json` (an object text, "\n" appended) and read lines until one holds "return" or "error" (events
 * skipped); *reply (optional) = that line. 0 or -1. */
int bench_mini_cmd(struct bench_mini *m, const char *json, char **reply);
void bench_mini_close(struct bench_mini *m);

#endif
