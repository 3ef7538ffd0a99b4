/* qemu.c — start and stop real QEMU 11 for tests; see qemu.h for the contract. */
#define _GNU_SOURCE
#include "qemu.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define QEMU_START_TIMEOUT_MS 10000
#define QEMU_STOP_TIMEOUT_MS 5000
#define QEMU_LOG_EXCERPT 4000
/* install-qemu11 writes this only after both binaries answered --version with 11.x. */
#define QEMU_STAMP ".smmuctl-qemu11-installed"

struct smmu_qemu {
    pid_t pid;
    int pidfd;                /* -1 when pidfd_open is unavailable */
    char *tmpdir;
    char *sock;
    char *log;
    struct smmu_qemu *next;   /* registry of running instances */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smmu_qemu *registry;
static int atexit_done;
static char last_error[QEMU_LOG_EXCERPT + 1024];

static void qemu_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void qemu_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    /* A test helper: the person reading a failed test needs this even if the test drops the code. */
    fprintf(stderr, "smmu_qemu: %s\n", last_error);
}

const char *smmu_qemu_last_error(void)
{
    return last_error;
}

const char *smmu_qemu_dir(void)
{
    static char dir[4096];
    const char *env = getenv("SMMUCTL_QEMU_DIR");
    const char *home;
    if (env && *env) {
        snprintf(dir, sizeof(dir), "%s", env);
        return dir;
    }
    home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : "/";
    }
    snprintf(dir, sizeof(dir), "%s/.cache/smmuctl/qemu11", home);
    return dir;
}

static int qemu_wrapper_path(char *buf, size_t len, const char *arch)
{
    int n = snprintf(buf, len, "%s/bin/qemu-system-%s", smmu_qemu_dir(), arch);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int smmu_qemu_available(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/" QEMU_STAMP, smmu_qemu_dir());
    if (access(path, R_OK) != 0)
        return 0;
    if (qemu_wrapper_path(path, sizeof(path), "aarch64") < 0 || access(path, X_OK) != 0)
        return 0;
    if (qemu_wrapper_path(path, sizeof(path), "x86_64") < 0 || access(path, X_OK) != 0)
        return 0;
    return 1;
}

void smmu_qemu_require(void)
{
    const char *env = getenv("SMMUCTL_SKIP_E2E");
    if (smmu_qemu_available())
        return;
    if (env && strcmp(env, "1") == 0) {
        fprintf(stderr, "smmu_qemu: QEMU 11 not installed in %s; skipping (SMMUCTL_SKIP_E2E=1)\n",
                smmu_qemu_dir());
        skip();
    }
    fail_msg("QEMU 11 is not installed in %s: run scripts/install-qemu11 (or set SMMUCTL_QEMU_DIR to "
             "where it is installed; SMMUCTL_SKIP_E2E=1 skips end-to-end tests)", smmu_qemu_dir());
}

const char *const *smmu_qemu_facts_topology(void)
{
    static const char *const topo[] = {
        "-device", "pxb-pcie,id=pcie.1,bus_nr=252,bus=pcie.0",
        "-device", "pcie-root-port,id=rp1a,bus=pcie.1,chassis=1,port=1",
        "-device", "pcie-root-port,id=rp1b,bus=pcie.1,chassis=2,port=2",
        "-device", "pxb-pcie,id=pcie.2,bus_nr=248,bus=pcie.0",
        "-device", "pcie-root-port,id=rp2a,bus=pcie.2,chassis=3,port=3",
        "-device", "pcie-root-port,id=rp2b,bus=pcie.2,chassis=4,port=4",
        "-device", "arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1",
        "-device", "arm-smmuv3,primary-bus=pcie.2,id=smmuv3.2",
        NULL,
    };
    return topo;
}

const char *smmu_qemu_socket_path(const struct smmu_qemu *q) { return q->sock; }
pid_t smmu_qemu_pid(const struct smmu_qemu *q) { return q->pid; }
const char *smmu_qemu_log_path(const struct smmu_qemu *q) { return q->log; }
const char *smmu_qemu_tmpdir(const struct smmu_qemu *q) { return q->tmpdir; }

char *smmu_qemu_read_log(const struct smmu_qemu *q)
{
    return smmu_test_read_file(q->log, NULL);
}

static long qemu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int qemu_connect_path(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int smmu_qemu_connect(const struct smmu_qemu *q)
{
    return qemu_connect_path(q->sock);
}

/* Wait up to timeout_ms for q to exit; reaps it. Returns 1 when reaped, 0 on timeout. */
static int qemu_wait_exit(struct smmu_qemu *q, int timeout_ms, int *status)
{
    long deadline = qemu_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(q->pid, status, WNOHANG);
        long left;
        if (r == q->pid || (r < 0 && errno == ECHILD))
            return 1;
        left = deadline - qemu_now_ms();
        if (left <= 0)
            return 0;
        if (q->pidfd >= 0) {
            struct pollfd p = { .fd = q->pidfd, .events = POLLIN };
            poll(&p, 1, (int)left);
        } else {
            /* No pidfd (old kernel): bounded polling of waitpid is the only portable way. */
            struct timespec ts = { 0, 10 * 1000000L };
            nanosleep(&ts, NULL);
        }
    }
}

static void qemu_registry_remove(struct smmu_qemu *q)
{
    pthread_mutex_lock(&registry_lock);
    for (struct smmu_qemu **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Kill and reap without touching the registry or the temp dir. */
static void qemu_kill(struct smmu_qemu *q)
{
    int status;
    if (q->pid <= 0)
        return;
    if (kill(q->pid, SIGTERM) == 0 && qemu_wait_exit(q, QEMU_STOP_TIMEOUT_MS, &status))
        goto reaped;
    kill(q->pid, SIGKILL);
    while (waitpid(q->pid, &status, 0) < 0 && errno == EINTR)
        ;
reaped:
    q->pid = 0;
}

static void qemu_free(struct smmu_qemu *q)
{
    if (q->pidfd >= 0)
        close(q->pidfd);
    if (q->tmpdir)
        smmu_test_rmtree(q->tmpdir);
    free(q->tmpdir);
    free(q->sock);
    free(q->log);
    free(q);
}

void smmu_qemu_stop(struct smmu_qemu *q)
{
    if (!q)
        return;
    qemu_registry_remove(q);
    qemu_kill(q);
    qemu_free(q);
}

void smmu_qemu_stop_all(void)
{
    for (;;) {
        struct smmu_qemu *q;
        pthread_mutex_lock(&registry_lock);
        q = registry;
        pthread_mutex_unlock(&registry_lock);
        if (!q)
            return;
        smmu_qemu_stop(q);
    }
}

int smmu_qemu_teardown(void **state)
{
    (void)state;
    smmu_qemu_stop_all();
    return 0;
}

/* In the child: never returns. Errors go to the log (already stderr) and exit 127. */
static void qemu_child(const char *wrapper, char *const *argv, const char *log, pid_t parent)
{
    int fd;
    /* Die with the test process even if it is SIGKILLed (e.g. a ctest timeout); survives execve. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        _exit(127);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
        _exit(127);
    /* Keep the test's own sockets and pipes out of QEMU. */
    for (int i = 3; i < 1024; i++)
        close(i);
    /* Tests may block signals or ignore SIGPIPE/SIGTERM; QEMU needs default dispositions. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    execv(wrapper, argv);
    fprintf(stderr, "exec %s: %s\n", wrapper, strerror(errno));
    _exit(127);
}

/* Append the log's text (bounded) to a message about q's failed start. */
static void qemu_fail_with_log(struct smmu_qemu *q, const char *what)
{
    char *text = smmu_qemu_read_log(q);
    size_t len = text ? strlen(text) : 0;
    const char *excerpt = text && len > QEMU_LOG_EXCERPT ? text + len - QEMU_LOG_EXCERPT : text;
    while (text && len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = 0;
    qemu_set_error("%s (QEMU log %s:%s%s)", what, q->log, excerpt && *excerpt ? "\n" : " empty",
                   excerpt ? excerpt : "");
    free(text);
}

/* Read one line (the greeting) from fd until deadline; returns length, or negative errno. */
static int qemu_read_line(int fd, char *buf, size_t len, long deadline)
{
    size_t n = 0;
    while (n + 1 < len) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        long left = deadline - qemu_now_ms();
        ssize_t r;
        if (left <= 0)
            return -ETIMEDOUT;
        if (poll(&p, 1, (int)left) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        r = read(fd, buf + n, len - 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ECONNRESET;
        n += (size_t)r;
        buf[n] = 0;
        if (memchr(buf, '\n', n))
            return (int)n;
    }
    return -EMSGSIZE;
}

static const char *qemu_status_text(char *buf, size_t len, int status)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "QEMU exited with status %d during start-up", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "QEMU died of signal %d during start-up", WTERMSIG(status));
    else
        snprintf(buf, len, "QEMU ended during start-up (wait status 0x%x)", (unsigned)status);
    return buf;
}

/* QEMU greets as soon as its monitor exists, BEFORE it parses -device and builds the machine (a bad
 * -device makes it exit right after greeting). Commands run only from the main loop, once start-up is
 * over: a query-status reply means QEMU is up for good. Returns 0, -ECONNRESET when QEMU hung up
 * (it is exiting), -EPROTO on an error reply, -ETIMEDOUT. */
static int qemu_handshake(int fd, long deadline)
{
    static const char cmds[] =
        "{\"execute\":\"qmp_capabilities\",\"id\":\"smmu-qemu-1\"}\n"
        "{\"execute\":\"query-status\",\"id\":\"smmu-qemu-2\"}\n";
    char line[8192];
    size_t off = 0;
    while (off < sizeof(cmds) - 1) {
        ssize_t w = send(fd, cmds + off, sizeof(cmds) - 1 - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno == EPIPE ? -ECONNRESET : -errno;
        off += (size_t)w;
    }
    /* Replies are small and come in order; read line by line (a read may carry several lines). */
    size_t have = 0;
    for (;;) {
        char *nl;
        while ((nl = memchr(line, '\n', have)) != NULL) {
            size_t n = (size_t)(nl - line) + 1;
            *nl = 0;
            if (strstr(line, "\"smmu-qemu-2\""))
                return strstr(line, "\"return\"") ? 0 : -EPROTO;
            memmove(line, line + n, have - n);
            have -= n;
        }
        if (have + 1 >= sizeof(line))
            return -EMSGSIZE;
        int r = qemu_read_line(fd, line + have, sizeof(line) - have, deadline);
        if (r == -EPIPE)
            r = -ECONNRESET;
        if (r < 0)
            return r;
        have += (size_t)r;
    }
}

/* Wait until the QMP socket accepts a client and sends its greeting, QEMU exits, or the bound passes. */
static int qemu_wait_greeting(struct smmu_qemu *q, int inotify_fd)
{
    long deadline = qemu_now_ms() + QEMU_START_TIMEOUT_MS;
    char greeting[4096], what[128];
    for (;;) {
        int status, fd, r;
        long left;
        pid_t w = waitpid(q->pid, &status, WNOHANG);
        if (w == q->pid) {
            q->pid = 0;
            qemu_fail_with_log(q, qemu_status_text(what, sizeof(what), status));
            return -ECHILD;
        }
        fd = qemu_connect_path(q->sock);
        if (fd >= 0) {
            r = qemu_read_line(fd, greeting, sizeof(greeting), deadline);
            if (r > 0 && strncmp(greeting, "{\"QMP\":", 7) != 0) {
                close(fd);
                qemu_fail_with_log(q, "the QMP socket did not greet with {\"QMP\": …}");
                return -EPROTO;
            }
            if (r > 0)
                r = qemu_handshake(fd, deadline);
            close(fd);
            if (r == 0)
                return 0;
            if (r == -ECONNRESET && qemu_wait_exit(q, QEMU_STOP_TIMEOUT_MS, &status)) {
                q->pid = 0;
                qemu_fail_with_log(q, qemu_status_text(what, sizeof(what), status));
                return -ECHILD;
            }
            if (r == -EPROTO) {
                qemu_fail_with_log(q, "QEMU answered query-status with an error");
                return r;
            }
            if (r != -ECONNRESET) {
                qemu_fail_with_log(q, r == -ETIMEDOUT ? "no QMP greeting within 10 s"
                                                      : "reading the QMP greeting failed");
                return r;
            }
            /* Reset before greeting: QEMU may still be starting; retry. */
        } else if (fd != -ENOENT && fd != -ECONNREFUSED) {
            qemu_set_error("connect %s: %s", q->sock, strerror(-fd));
            return fd;
        }
        left = deadline - qemu_now_ms();
        if (left <= 0) {
            qemu_fail_with_log(q, "QMP socket did not come up within 10 s");
            return -ETIMEDOUT;
        }
        /* Sleep until the socket file appears or QEMU exits; short ticks cover what neither reports
         * (the socket exists but is not listening yet). */
        struct pollfd p[2];
        int np = 0;
        if (inotify_fd >= 0)
            p[np++] = (struct pollfd){ .fd = inotify_fd, .events = POLLIN };
        if (q->pidfd >= 0)
            p[np++] = (struct pollfd){ .fd = q->pidfd, .events = POLLIN };
        poll(p, (nfds_t)np, left < 20 ? (int)left : 20);
        if (inotify_fd >= 0 && np > 0 && (p[0].revents & POLLIN)) {
            char ev[4096];
            while (read(inotify_fd, ev, sizeof(ev)) > 0)
                ;
        }
    }
}

static void qemu_register(struct smmu_qemu *q)
{
    pthread_mutex_lock(&registry_lock);
    q->next = registry;
    registry = q;
    if (!atexit_done) {
        atexit(smmu_qemu_stop_all);
        atexit_done = 1;
    }
    pthread_mutex_unlock(&registry_lock);
}

int smmu_qemu_start(struct smmu_qemu **out, const char *arch, const char *const *args)
{
    char wrapper[4200], qmp_arg[256];
    const char *machine;
    const char **argv = NULL;
    size_t nargs = 0, i = 0;
    struct smmu_qemu *q;
    int inotify_fd, r;
    pid_t parent = getpid();

    *out = NULL;
    last_error[0] = 0;
    if (!arch || (strcmp(arch, "aarch64") != 0 && strcmp(arch, "x86_64") != 0)) {
        qemu_set_error("unsupported arch '%s' (want aarch64 or x86_64)", arch ? arch : "(null)");
        return -EINVAL;
    }
    machine = strcmp(arch, "aarch64") == 0 ? "virt" : "q35";
    if (qemu_wrapper_path(wrapper, sizeof(wrapper), arch) < 0 || access(wrapper, X_OK) != 0) {
        qemu_set_error("QEMU 11 is not installed (%s missing): run scripts/install-qemu11", wrapper);
        return -ENOENT;
    }

    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->pidfd = -1;
    q->tmpdir = smmu_test_mkdtemp("qemu");
    if (asprintf(&q->sock, "%s/qmp.sock", q->tmpdir) < 0 || asprintf(&q->log, "%s/qemu.log", q->tmpdir) < 0) {
        q->sock = q->log = NULL;
        qemu_free(q);
        return -ENOMEM;
    }
    if (strlen(q->sock) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
        snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", q->sock) >= (int)sizeof(qmp_arg)) {
        qemu_set_error("socket path %s too long for a unix socket (set TMPDIR shorter)", q->sock);
        qemu_free(q);
        return -ENAMETOOLONG;
    }

    while (args && args[nargs])
        nargs++;
    argv = calloc(nargs + 16, sizeof(*argv));
    if (!argv) {
        qemu_free(q);
        return -ENOMEM;
    }
    argv[i++] = wrapper;
    argv[i++] = "-nodefaults";
    argv[i++] = "-display";
    argv[i++] = "none";
    argv[i++] = "-S";
    argv[i++] = "-qmp";
    argv[i++] = qmp_arg;
    argv[i++] = "-M";
    argv[i++] = machine;
    for (size_t k = 0; k < nargs; k++)
        argv[i++] = args[k];
    argv[i] = NULL;

    /* Watch the temp dir before QEMU can create the socket, so its creation wakes us. */
    inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd >= 0 && inotify_add_watch(inotify_fd, q->tmpdir, IN_CREATE) < 0) {
        close(inotify_fd);
        inotify_fd = -1;
    }

    fflush(NULL);
    q->pid = fork();
    if (q->pid < 0) {
        r = -errno;
        qemu_set_error("fork: %s", strerror(-r));
        q->pid = 0;
        goto fail;
    }
    if (q->pid == 0)
        qemu_child(wrapper, (char *const *)argv, q->log, parent);

    q->pidfd = (int)syscall(SYS_pidfd_open, q->pid, 0);
    if (q->pidfd >= 0)
        fcntl(q->pidfd, F_SETFD, FD_CLOEXEC);
    else
        q->pidfd = -1;
    qemu_register(q);

    r = qemu_wait_greeting(q, inotify_fd);
    if (r < 0) {
        smmu_qemu_stop(q);
        q = NULL;
        goto out;
    }
    *out = q;
    q = NULL;
    r = 0;
    goto out;
fail:
    qemu_free(q);
out:
    if (inotify_fd >= 0)
        close(inotify_fd);
    free(argv);
    return r;
}

int smmu_qemu_start_facts(struct smmu_qemu **out, const char *const *extra)
{
    const char *const *facts = smmu_qemu_facts_topology();
    const char *args[128];
    size_t n = 0;
    for (; facts[n] && n < 64; n++)
        args[n] = facts[n];
    for (size_t i = 0; extra && extra[i] && n < 127; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return smmu_qemu_start(out, "aarch64", args);
}
