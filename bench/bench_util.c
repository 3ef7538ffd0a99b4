/* bench_util.c — see bench_util.h. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "support/http_client.h"
#include "support/runcli.h"

double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double bench_self_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

double bench_proc_cpu_ms(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

double bench_proc_idle_ms(pid_t pid, double wall_ms)
{
    double c0 = bench_proc_cpu_ms(pid), t0 = bench_now_ms();
    usleep((useconds_t)(wall_ms * 1e3));
    double slept = bench_now_ms() - t0;
    return (bench_proc_cpu_ms(pid) - c0) * (slept > 0 ? wall_ms / slept : 1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct bench_stat bench_stat_of(double *v, int n)
{
    struct bench_stat s = {0, 0, 0, n};
    if (n <= 0)
        return s;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    s.min = v[0];
    s.max = v[n - 1];
    return s;
}

struct bench_stat bench_exact(double v)
{
    struct bench_stat s = {v, v, v, 1};
    return s;
}

bool bench_quick(void)
{
    const char *q = getenv("SMMUCTL_BENCH_QUICK");
    return q && !strcmp(q, "1");
}

static json_t *stat_json(struct bench_stat s)
{
    return json_pack("{s:f,s:f,s:f,s:i}", "median", s.med, "min", s.min, "max", s.max, "n", s.n);
}

static void append_json(json_t *o)
{
    const char *path = getenv("SMMUCTL_BENCH_JSON");
    if (path && *path) {
        FILE *f = fopen(path, "a");
        if (f) {
            char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
            if (s)
                fprintf(f, "%s\n", s);
            free(s);
            fclose(f);
        }
    }
    json_decref(o);
}

int bench_figure(const struct bench_fig *f)
{
    double ratio = f->base_what && f->base.med != 0 ? f->value.med / f->base.med : 0;
    int met = 1;
    if (f->goal_kind == BENCH_GOAL_RATIO_LE)
        met = f->base_what && ratio <= f->goal;
    else if (f->goal_kind == BENCH_GOAL_VALUE_LE)
        met = f->value.med <= f->goal;
    printf("  %-58s %10.3f %-6s", f->what, f->value.med, f->unit);
    if (f->value.n > 1)
        printf(" [%.3f..%.3f n=%d]", f->value.min, f->value.max, f->value.n);
    if (f->base_what)
        printf("  vs %s %.3f → %.2fx", f->base_what, f->base.med, ratio);
    if (f->goal_kind != BENCH_GOAL_NONE)
        printf("  goal %s ≤ %.2f: %s", f->goal_kind == BENCH_GOAL_RATIO_LE ? "ratio" : "value", f->goal,
               met ? "met" : "NOT met");
    printf("\n");
    fflush(stdout);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o}", "item", f->item, "id", f->id, "what", f->what, "unit", f->unit,
                          "value", stat_json(f->value));
    if (f->base_what) {
        json_object_set_new(o, "baseline", json_pack("{s:s,s:o}", "what", f->base_what, "value", stat_json(f->base)));
        json_object_set_new(o, "ratio", json_real(ratio));
    }
    if (f->goal_kind != BENCH_GOAL_NONE) {
        json_object_set_new(o, "goal", json_pack("{s:s,s:f}", "of", f->goal_kind == BENCH_GOAL_RATIO_LE ? "ratio" : "value",
                                                 "max", f->goal));
        json_object_set_new(o, "met", json_boolean(met));
    }
    if (f->note)
        json_object_set_new(o, "note", json_string(f->note));
    append_json(o);
    return met;
}

void bench_note(const char *id, const char *text)
{
    printf("  %s: %s\n", id, text);
    append_json(json_pack("{s:s,s:s}", "note_id", id, "text", text));
}

int bench_mini_line(struct bench_mini *m, char **line)
{
    for (;;) {
        char *nl = m->len ? memmem(m->buf, m->len, "\r\n", 2) : NULL;
        if (nl) {
            size_t used = (size_t)(nl + 2 - m->buf);
            if (line)
                *line = strndup(m->buf, used - 2);
            memmove(m->buf, m->buf + used, m->len - used);
            m->len -= used;
            return 0;
        }
        if (m->len == sizeof(m->buf))
            m->len = 0; /* longer than the buffer: only a copy-less caller gets here sensibly */
        ssize_t n = read(m->fd, m->buf + m->len, sizeof(m->buf) - m->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        m->len += (size_t)n;
    }
}

int bench_mini_write(struct bench_mini *m, const char *s, size_t len)
{
    while (len) {
        ssize_t n = write(m->fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

int bench_mini_open(struct bench_mini *m, const char *path, bool oob)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    static const char caps_oob[] = "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]},\"id\":\"1\"}\n";
    static const char caps[] = "{\"execute\":\"qmp_capabilities\",\"id\":\"1\"}\n";
    memset(m, 0, sizeof(*m));
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    m->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    m->id = 1;
    if (m->fd < 0 || connect(m->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || bench_mini_line(m, NULL) < 0 ||
        bench_mini_write(m, oob ? caps_oob : caps, oob ? sizeof(caps_oob) - 1 : sizeof(caps) - 1) < 0 ||
        bench_mini_line(m, NULL) < 0) {
        if (m->fd >= 0)
            close(m->fd);
        m->fd = -1;
        return -1;
    }
    return 0;
}

int bench_mini_cmd(struct bench_mini *m, const char *json, char **reply)
{
    size_t len = strlen(json);
    char *line = NULL;
    if (bench_mini_write(m, json, len) < 0 || bench_mini_write(m, "\n", 1) < 0)
        return -1;
    for (;;) {
        if (bench_mini_line(m, &line) < 0)
            return -1;
        if (strstr(line, "\"return\"") || strstr(line, "\"error\"")) {
            if (reply)
                *reply = line;
            else
                free(line);
            return 0;
        }
        free(line);
    }
}

void bench_mini_close(struct bench_mini *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
}

const char *const *bench_topology(int nvsmmu, int ports, bool coldnic, bool for_sim)
{
    enum { MAXARGS = 2 * (64 * 10 + 4) + 8 };
    static char bufs[MAXARGS / 2][128];
    static const char *args[MAXARGS];
    int n = 0, b = 0;
    if (for_sim) {
        args[n++] = "-M";
        args[n++] = "virt";
        args[n++] = "-S";
    }
    for (int i = 0; i < nvsmmu && i < 64; i++) {
        if (nvsmmu > 24)
            snprintf(bufs[b], 128, "pxb-pcie,id=pxb%d,bus_nr=%d,bus=pcie.0,addr=0x%x.%x%s", i, 4 + 3 * i, 1 + i / 8,
                     i % 8, i % 8 ? "" : ",multifunction=on");
        else
            snprintf(bufs[b], 128, "pxb-pcie,id=pxb%d,bus_nr=%d,bus=pcie.0", i, 250 - 10 * i);
        args[n++] = "-device";
        args[n++] = bufs[b++];
        for (int p = 0; p < ports && p < 8; p++) {
            snprintf(bufs[b], 128, "pcie-root-port,id=rp%d_%d,bus=pxb%d,chassis=%d,slot=%d,port=%d", i, p, i, i + 1,
                     p + 1, p + 1);
            args[n++] = "-device";
            args[n++] = bufs[b++];
        }
        snprintf(bufs[b], 128, "arm-smmuv3,primary-bus=pxb%d,id=vsmmu%d", i, i);
        args[n++] = "-device";
        args[n++] = bufs[b++];
    }
    if (coldnic && nvsmmu > 0 && ports > 0) {
        args[n++] = "-netdev";
        args[n++] = "user,id=cold0";
        snprintf(bufs[b], 128, "e1000e,netdev=cold0,bus=rp%d_%d,id=coldnic", nvsmmu - 1, ports - 1);
        args[n++] = "-device";
        args[n++] = bufs[b++];
    }
    args[n] = NULL;
    return args;
}

long bench_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

int bench_http(const char *sock, const char *method, const char *target, const char *body, char **out)
{
    struct htc_resp r = {0};
    int st = htc_request(NULL, sock, method, target, body ? "Content-Type: application/json\r\n" : NULL, body, &r);
    if (out)
        *out = r.body ? strdup(r.body) : NULL;
    htc_resp_free(&r);
    return st;
}

void bench_serve_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 300 && waitpid(pid, NULL, WNOHANG) == 0; i++)
        usleep(50000);
    if (waitpid(pid, NULL, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

pid_t bench_serve_start(const char *sock, const char *state, const char *sysfs, const char *dev, const char *log)
{
    char listen[4200];
    snprintf(listen, sizeof(listen), "unix:%s", sock);
    char *argv[] = {(char *)smmu_run_cli_path(), "serve", "--listen", listen, "--state-dir", (char *)state,
                    "--sysfs", (char *)sysfs, "--dev", (char *)dev, "--quiet", NULL};
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (access(sock, F_OK) == 0 && bench_http(sock, "GET", "/healthz", NULL, NULL) == 200)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(50000);
    }
    fprintf(stderr, "bench: smmuctl serve did not answer /healthz (log: %s)\n", log);
    bench_serve_stop(pid);
    return -1;
}

int bench_serve_add_vm(const char *sock, const char *vm, const char *qmp)
{
    char target[256], body[4400];
    snprintf(target, sizeof(target), "/v1/vms/%s", vm);
    snprintf(body, sizeof(body), "{\"qmp\":\"unix:%s\"}", qmp);
    int st = bench_http(sock, "PUT", target, body, NULL);
    if (st != 200 && st != 201)
        return -1;
    for (int i = 0; i < 600; i++) {
        char *out = NULL;
        if (bench_http(sock, "GET", target, NULL, &out) == 200 && out && strstr(out, "\"state\":\"connected\"")) {
            free(out);
            return 0;
        }
        free(out);
        usleep(100000);
    }
    return -1;
}

char *bench_partial_paths(const char *cmd)
{
    char *out = malloc(strlen(cmd) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *s = cmd; *s;) {
        if (!strncmp(s, "\"/machine/peripheral/", 21)) {
            memcpy(o, "\"peripheral/", 12);
            o += 12;
            s += 21;
        } else {
            *o++ = *s++;
        }
    }
    *o = 0;
    return out;
}

double bench_replay_cpu(pid_t pid, const char *sock, char **cmds, size_t n, int iters)
{
    static struct bench_mini m;
    if (bench_mini_open(&m, sock, true) < 0)
        return -1;
    double c0 = bench_proc_cpu_ms(pid), t0 = bench_now_ms();
    for (int i = 0; i < iters; i++)
        for (size_t k = 0; k < n; k++)
            if (bench_mini_cmd(&m, cmds[k], NULL) < 0) {
                bench_mini_close(&m);
                return -1;
            }
    double wall = bench_now_ms() - t0, c1 = bench_proc_cpu_ms(pid);
    bench_mini_close(&m);
    return (c1 - c0 - bench_proc_idle_ms(pid, wall)) / iters;
}
