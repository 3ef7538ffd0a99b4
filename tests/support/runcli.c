/* runcli.c — run smmuctl (or any program) as a bounded child process; see runcli.h. */
#define _GNU_SOURCE
#include <stdbool.h>

#include "support/runcli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *smmu_run_cli_path(void)
{
    static char buf[4096];
    const char *b = getenv("SMMUCTL_BIN");
    if (b && *b)
        return b;
#ifdef SMMU_BINARY_DIR
    snprintf(buf, sizeof(buf), "%s/smmuctl", SMMU_BINARY_DIR);
#else
    snprintf(buf, sizeof(buf), "smmuctl");
#endif
    return buf;
}

static long run_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

struct run_buf {
    char *data;
    size_t len, cap;
};

static void run_buf_add(struct run_buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *nd = realloc(b->data, nc);
        if (!nd)
            return;
        b->data = nd;
        b->cap = nc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

static char *run_buf_take(struct run_buf *b)
{
    if (!b->data)
        return strdup("");
    return b->data;
}

int smmu_run_prog(struct smmu_run *r, const char *path, const char *const *argv, int timeout_ms)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    struct run_buf out = {0}, err = {0};
    pid_t pid;
    int st = 0;

    memset(r, 0, sizeof(*r));
    r->status = -1;
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        char m[128];
        snprintf(m, sizeof(m), "pipe: %s", strerror(errno));
        run_buf_add(&err, m, strlen(m));
        goto done;
    }
    pid = fork();
    if (pid < 0) {
        char m[128];
        snprintf(m, sizeof(m), "fork: %s", strerror(errno));
        run_buf_add(&err, m, strlen(m));
        goto done;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(path, (char *const *)argv);
        dprintf(2, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    {
        long deadline = run_now_ms() + timeout_ms;
        struct pollfd p[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        int open_fds = 2;
        while (open_fds > 0) {
            long left = deadline - run_now_ms();
            if (left <= 0) {
                r->timed_out = true;
                kill(pid, SIGKILL);
                break;
            }
            int n = poll(p, 2, (int)left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            for (int i = 0; i < 2; i++) {
                if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                char buf[8192];
                ssize_t k = read(p[i].fd, buf, sizeof(buf));
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0) {
                    p[i].fd = -1;
                    open_fds--;
                    continue;
                }
                run_buf_add(i == 0 ? &out : &err, buf, (size_t)k);
            }
        }
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st))
        r->status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        r->status = 128 + WTERMSIG(st);
done:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    r->out = run_buf_take(&out);
    r->err = run_buf_take(&err);
    return r->status;
}

int smmu_run_cli(struct smmu_run *r, const char *const *args, int timeout_ms)
{
    size_t n = 0;
    while (args && args[n])
        n++;
    const char **argv = calloc(n + 2, sizeof(*argv));
    const char *bin = smmu_run_cli_path();
    if (!argv) {
        memset(r, 0, sizeof(*r));
        r->status = -1;
        r->out = strdup("");
        r->err = strdup("out of memory");
        return -1;
    }
    argv[0] = bin;
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = args[i];
    const char *vg = getenv("SMMU_TEST_CLI_VALGRIND");
    if (vg && *vg && strcmp(vg, "0")) {
        /* scripts/check's memcheck stage: smmuctl itself runs under valgrind too (errors and definite leaks
         * exit 99, which no test expects) */
        static const char *const pre[] = {"/usr/bin/valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                                          "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite"};
        const size_t np = sizeof(pre) / sizeof(pre[0]);
        const char **vargv = calloc(n + 2 + np, sizeof(*vargv));
        if (vargv) {
            for (size_t i = 0; i < np; i++)
                vargv[i] = pre[i];
            for (size_t i = 0; i <= n; i++)
                vargv[np + i] = argv[i];
            int st = smmu_run_prog(r, pre[0], vargv, timeout_ms * 20);
            free(vargv);
            free(argv);
            return st;
        }
    }
    int st = smmu_run_prog(r, bin, argv, timeout_ms);
    free(argv);
    return st;
}

json_t *smmu_run_json(const struct smmu_run *r)
{
    json_error_t je;
    return r->out ? json_loads(r->out, 0, &je) : NULL;
}

void smmu_run_free(struct smmu_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

int smmu_run_cli_with(struct smmu_run *r, const char *const *common, const char *const *extra, int timeout_ms)
{
    size_t nc = 0, ne = 0;
    while (common && common[nc])
        nc++;
    while (extra && extra[ne])
        ne++;
    const char **args = calloc(nc + ne + 1, sizeof(*args));
    if (!args) {
        memset(r, 0, sizeof(*r));
        r->status = -1;
        r->out = strdup("");
        r->err = strdup("out of memory");
        return -1;
    }
    for (size_t i = 0; i < nc; i++)
        args[i] = common[i];
    for (size_t i = 0; i < ne; i++)
        args[nc + i] = extra[i];
    int st = smmu_run_cli(r, args, timeout_ms);
    free(args);
    return st;
}
