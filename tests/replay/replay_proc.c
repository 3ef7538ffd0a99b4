/* replay_proc.c — qmp-replay as a child process (see replay_proc.h). Every wait is bounded: the child's exit
 * is reaped with bounded waitpid polling, its "listening" line read through a pipe with poll(). */
#define _GNU_SOURCE
#include "replay_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RP_MAX_ARGS 32
#define RP_LISTEN_MS 5000

struct replay_proc {
    pid_t pid;
    int err_fd;        /* unlinked temp file holding the child's stderr */
    bool reaped;
    int status;
    char *report;
};

const char *replay_proc_binary(void)
{
    const char *env = getenv("SMMU_QMP_REPLAY");
    return env && *env ? env : SMMU_BINARY_DIR "/tests/qmp-replay";
}

pid_t replay_proc_pid(const struct replay_proc *p)
{
    return p->pid;
}

/* Wait for the child, bounded (timeout_ms < 0: no bound). waitpid(WNOHANG) in 2 ms steps rather than a
 * pidfd: valgrind 3.19 (Debian 12) does not know pidfd_open, and the memcheck stage runs these tests. */
static int rp_reap(struct replay_proc *p, int timeout_ms)
{
    int st;
    pid_t w;
    if (p->reaped)
        return 0;
    for (long waited = 0;; waited += 2) {
        w = waitpid(p->pid, &st, WNOHANG);
        if (w == p->pid)
            break;
        if (w < 0 && errno != EINTR)
            return -errno;
        if (timeout_ms >= 0 && waited >= timeout_ms)
            return -ETIMEDOUT;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    p->reaped = true;
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 0;
}

static void rp_kill(struct replay_proc *p)
{
    if (p->reaped)
        return;
    kill(p->pid, SIGTERM);
    if (rp_reap(p, 2000) < 0) {
        kill(p->pid, SIGKILL);
        rp_reap(p, -1);
    }
}

/* Read the child's stdout until the "listening" line, bounded. */
static int rp_wait_listening(int fd)
{
    char line[512];
    size_t n = 0;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, RP_LISTEN_MS);
        ssize_t k;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -ETIMEDOUT;
        k = read(fd, line + n, sizeof(line) - 1 - n);
        if (k <= 0)
            return -ECHILD;   /* it exited before listening (bad fixture, bad socket path) */
        n += (size_t)k;
        line[n] = '\0';
        if (strstr(line, "listening "))
            return 0;
        if (n == sizeof(line) - 1)
            return -EPROTO;
    }
}

int replay_proc_start(struct replay_proc **out, const char *fixture, const char *socket_path,
                      const char *const *extra_args, struct smmu_error *err)
{
    char errpath[] = "/tmp/smmu-qmp-replay-stderr-XXXXXX";
    const char *argv[RP_MAX_ARGS + 4];
    struct replay_proc *p;
    int out_pipe[2], n = 0, r;

    argv[n++] = replay_proc_binary();
    /* The smmuctl these tests run goes under valgrind in the memcheck pass (SMMU_TEST_CLI_VALGRIND): on a
     * loaded machine it can take longer than the default 5 s to connect or send its next line. Waits are
     * bounds, not expectations, so widen them there (a test's own --timeout comes later and wins). */
    const char *vg = getenv("SMMU_TEST_CLI_VALGRIND");
    if (vg && *vg) {
        argv[n++] = "--timeout";
        argv[n++] = "60000";
        argv[n++] = "--end-timeout";
        argv[n++] = "60000";
    }
    for (size_t i = 0; extra_args && extra_args[i]; i++) {
        if (n >= RP_MAX_ARGS)
            return smmu_error_set(err, -E2BIG, "qmp-replay: too many arguments");
        argv[n++] = extra_args[i];
    }
    argv[n++] = fixture;
    argv[n++] = socket_path;
    argv[n] = NULL;

    if (!(p = calloc(1, sizeof(*p))))
        return smmu_error_set(err, -ENOMEM, "out of memory");
    p->err_fd = mkostemp(errpath, O_CLOEXEC);
    if (p->err_fd < 0) {
        free(p);
        return smmu_error_set(err, -errno, "%s: %s", errpath, strerror(errno));
    }
    unlink(errpath);
    if (pipe2(out_pipe, O_CLOEXEC) < 0) {
        r = smmu_error_set(err, -errno, "pipe: %s", strerror(errno));
        close(p->err_fd);
        free(p);
        return r;
    }
    p->pid = fork();
    if (p->pid < 0) {
        r = smmu_error_set(err, -errno, "fork: %s", strerror(errno));
        close(out_pipe[0]);
        close(out_pipe[1]);
        close(p->err_fd);
        free(p);
        return r;
    }
    if (p->pid == 0) {
        dup2(out_pipe[1], 1);
        dup2(p->err_fd, 2);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "qmp-replay: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(2);
    }
    close(out_pipe[1]);
    r = rp_wait_listening(out_pipe[0]);
    close(out_pipe[0]);   /* it prints nothing else; a closed stdout does not bother it */
    if (r < 0) {
        replay_proc_wait(p, 2000);
        smmu_error_set(err, r, "%s did not start listening on %s: %s", argv[0], socket_path,
                       p->report && *p->report ? p->report : strerror(-r));
        replay_proc_free(p);
        return r;
    }
    *out = p;
    return 0;
}

int replay_proc_wait(struct replay_proc *p, int timeout_ms)
{
    int r = rp_reap(p, timeout_ms);
    if (r == -ETIMEDOUT)
        rp_kill(p);
    if (!p->report) {
        off_t len = lseek(p->err_fd, 0, SEEK_END);
        p->report = calloc(1, len > 0 ? (size_t)len + 1 : 1);
        if (p->report && len > 0 && pread(p->err_fd, p->report, (size_t)len, 0) < 0)
            p->report[0] = '\0';
    }
    return r < 0 ? r : p->status;
}

const char *replay_proc_report(const struct replay_proc *p)
{
    return p->report ? p->report : "";
}

void replay_proc_free(struct replay_proc *p)
{
    if (!p)
        return;
    rp_kill(p);
    close(p->err_fd);
    free(p->report);
    free(p);
}
