/* test_serve_process.c — the `smmuctl serve` process (DESIGN §7 "Process") with a fake systemd: a unix
 * datagram socket the test binds is $NOTIFY_SOCKET. READY=1 comes only once the API socket accepts (the test
 * connects the moment it arrives), STATUS= counts the VMs, WATCHDOG=1 with $WATCHDOG_USEC, SIGHUP reopens
 * --log, SIGTERM sends STOPPING=1 and exits 0 with the socket removed; a second daemon on a live socket is
 * refused (exit 2), a stale socket file is replaced. The daemon runs the real engine backend with no VM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/http_client.h"
#include "support/runcli.h"
#include "support/testutil.h"

#define BOUND_MS 30000

struct P {
    char *dir;
    char sock[300], notify[300], state[300], log[300];
    int nfd;        /* the fake systemd's datagram socket */
    pid_t pid;
    char got[8192]; /* every datagram received, "\n---\n"-separated */
};

static int setup(void **state)
{
    struct P *p = calloc(1, sizeof(*p));
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    p->dir = smmu_test_mkdtemp("serveproc");
    snprintf(p->sock, sizeof(p->sock), "%s/api.sock", p->dir);
    snprintf(p->notify, sizeof(p->notify), "%s/notify", p->dir);
    snprintf(p->state, sizeof(p->state), "%s/state", p->dir);
    snprintf(p->log, sizeof(p->log), "%s/serve.log", p->dir);
    p->nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->notify);
    assert_int_equal(bind(p->nfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct P *p = *state;
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    close(p->nfd);
    smmu_test_rmtree(p->dir);
    free(p->dir);
    free(p);
    return 0;
}

/* Start smmuctl serve with NOTIFY_SOCKET (and extra environment "K=V", may be NULL) and args after
 * --listen/--state-dir. */
static pid_t start(struct P *p, const char *env, const char *const *extra)
{
    const char *argv[32];
    int n = 0;
    pid_t pid;
    argv[n++] = smmu_run_cli_path();
    argv[n++] = "serve";
    argv[n++] = "--listen";
    static char listen[320];
    snprintf(listen, sizeof(listen), "unix:%s", p->sock);
    argv[n++] = listen;
    argv[n++] = "--state-dir";
    argv[n++] = p->state;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        setenv("NOTIFY_SOCKET", p->notify, 1);
        unsetenv("WATCHDOG_USEC");
        unsetenv("JOURNAL_STREAM");
        if (env)
            putenv((char *)env);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Receive datagrams until one contains needle; returns that datagram's text (static) or fails. */
static const char *await_notify(struct P *p, const char *needle)
{
    static char buf[2048];
    long end = now_ms() + BOUND_MS;
    while (now_ms() < end) {
        struct pollfd pf = { .fd = p->nfd, .events = POLLIN };
        ssize_t n;
        if (poll(&pf, 1, 100) <= 0)
            continue;
        n = recv(p->nfd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = 0;
        snprintf(p->got + strlen(p->got), sizeof(p->got) - strlen(p->got), "%s\n---\n", buf);
        if (strstr(buf, needle))
            return buf;
    }
    fail_msg("no datagram with '%s' within the bound; got:\n%s", needle, p->got);
    return NULL;
}

static int await_exit(pid_t pid)
{
    long end = now_ms() + BOUND_MS;
    int st;
    while (now_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        poll(NULL, 0, 20);
    }
    fail_msg("pid %d did not exit within the bound", (int)pid);
    return -1;
}

/* The moment READY=1 arrives the socket must accept and answer. */
static void ready_and_answering(struct P *p)
{
    struct htc_resp r;
    const char *d = await_notify(p, "READY=1");
    struct htc *c = htc_connect(NULL, p->sock);
    assert_non_null(c); /* no retry: READY=1 comes after listen() */
    assert_non_null(strstr(d, "STATUS=0 VMs"));
    htc_close(c);
    assert_int_equal(htc_request(NULL, p->sock, "GET", "/healthz", NULL, NULL, &r), 200);
    htc_resp_free(&r);
}

static void test_ready_after_listen_then_sigterm(void **state)
{
    struct P *p = *state;
    struct stat st;
    p->pid = start(p, NULL, NULL);
    ready_and_answering(p);
    assert_int_equal(stat(p->sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(kill(p->pid, SIGTERM), 0);
    await_notify(p, "STOPPING=1");
    assert_int_equal(await_exit(p->pid), 0);
    p->pid = 0;
    assert_int_equal(stat(p->sock, &st), -1); /* the socket file is gone */
    assert_null(strstr(p->got, "WATCHDOG=1")); /* no WATCHDOG_USEC, no watchdog */
}

static void test_live_refused_stale_replaced(void **state)
{
    struct P *p = *state;
    struct smmu_run r;
    char other[320], listen[320];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;
    p->pid = start(p, NULL, NULL);
    ready_and_answering(p);
    /* a second daemon (its own state dir) on the live socket */
    snprintf(other, sizeof(other), "%s/state2", p->dir);
    snprintf(listen, sizeof(listen), "unix:%s", p->sock);
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"serve", "--listen", listen, "--state-dir", other, NULL},
                                  BOUND_MS), 2);
    assert_non_null(strstr(r.err, "another daemon is accepting"));
    smmu_run_free(&r);
    {
        struct htc_resp h;
        assert_int_equal(htc_request(NULL, p->sock, "GET", "/healthz", NULL, NULL, &h), 200); /* untouched */
        htc_resp_free(&h);
    }
    kill(p->pid, SIGKILL); /* dies without removing its socket: a stale file */
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);
    p->pid = start(p, NULL, NULL);
    ready_and_answering(p);
    kill(p->pid, SIGINT);
    assert_int_equal(await_exit(p->pid), 0);
    p->pid = 0;
}

static void test_watchdog_and_sighup(void **state)
{
    struct P *p = *state;
    char moved[320];
    char *txt = NULL;
    long end;
    p->pid = start(p, "WATCHDOG_USEC=200000", (const char *[]){"--log", p->log, NULL});
    ready_and_answering(p);
    await_notify(p, "WATCHDOG=1");
    /* logrotate: move the file away, SIGHUP, a new file is written */
    snprintf(moved, sizeof(moved), "%s.1", p->log);
    assert_int_equal(rename(p->log, moved), 0);
    kill(p->pid, SIGHUP);
    for (end = now_ms() + BOUND_MS; now_ms() < end; poll(NULL, 0, 20)) {
        free(txt);
        txt = smmu_test_read_file(p->log, NULL);
        if (txt && strstr(txt, "log reopened"))
            break;
    }
    assert_non_null(txt);
    assert_non_null(strstr(txt, "log reopened"));
    free(txt);
    txt = smmu_test_read_file(moved, NULL);
    assert_non_null(strstr(txt, "listening on unix:"));
    free(txt);
    kill(p->pid, SIGTERM);
    assert_int_equal(await_exit(p->pid), 0);
    p->pid = 0;
}

static void test_usage(void **state)
{
    struct smmu_run r;
    (void)state;
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"serve", NULL}, BOUND_MS), 2);
    assert_non_null(strstr(r.err, "--listen unix:PATH is required"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"serve", "--listen", "unix:/x", "--qmp", "/a", NULL}, BOUND_MS), 2);
    assert_non_null(strstr(r.err, "in pairs"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"serve", "--help", NULL}, BOUND_MS), 0);
    assert_non_null(strstr(r.out, "Usage: smmuctl serve --listen unix:PATH"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"--help", NULL}, BOUND_MS), 0);
    assert_non_null(strstr(r.out, "  serve --listen unix:PATH"));
    smmu_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_after_listen_then_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_refused_stale_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watchdog_and_sighup, setup, teardown),
        cmocka_unit_test(test_usage),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
