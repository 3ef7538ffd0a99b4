/* run.c — run a child process, capture stdout/stderr, bounded in time. */
#define _GNU_SOURCE
#include "run.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *smmu_run_smmuctl(void)
{
    static char path[4096];
    const char *e = getenv("SMMUCTL_BIN");
    if (e && *e)
        return e;
    snprintf(path, sizeof(path), "%s/smmuctl", SMMU_BINARY_DIR);
    return path;
}

static void run_append(char **buf, size_t *len, const char *data, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb)
        abort();
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = 0;
    *buf = nb;
}

static long run_ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

int smmu_run(struct smmu_run *r, const char *const *argv, const char *const *env, int timeout_ms)
{
    int po[2], pe[2];
    size_t lo = 0, le = 0;
    struct timespec t0;
    memset(r, 0, sizeof(*r));
    r->out = calloc(1, 1);
    r->err = calloc(1, 1);
    r->status = -1;
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    bool killed = false;
    while (open_fds > 0) {
        long left = timeout_ms - run_ms_since(&t0);
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = true;
            left = 1000;
        }
        if (poll(pf, 2, (int)(left > 0 ? left : 0)) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[8192];
            ssize_t n = read(pf[i].fd, buf, sizeof(buf));
            if (n <= 0) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                run_append(&r->out, &lo, buf, (size_t)n);
            } else {
                run_append(&r->err, &le, buf, (size_t)n);
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    int st = 0;
    waitpid(pid, &st, 0);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    return r->status;
}

void smmu_run_free(struct smmu_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
