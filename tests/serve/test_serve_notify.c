/* test_serve_notify.c — sd_notify datagrams to a fake NOTIFY_SOCKET (path and abstract), the watchdog
 * interval, JOURNAL_STREAM detection and the "<N>" log prefix. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "serve/notify.h"
#include "support/testutil.h"

static int dgram_bind(const char *name, bool abstract)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (abstract) {
        memcpy(a.sun_path + 1, name, strlen(name));
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
    } else {
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", name);
        len = sizeof(a);
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&a, len), 0);
    return fd;
}

static void expect_dgram(int fd, const char *want)
{
    char buf[512];
    struct pollfd p = { fd, POLLIN, 0 };
    ssize_t n;
    assert_int_equal(poll(&p, 1, 10000), 1);
    n = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n >= 0);
    buf[n] = 0;
    assert_string_equal(buf, want);
}

static void test_notify_path_and_abstract(void **state)
{
    char *dir = smmu_test_mkdtemp("notify"), path[512], abs_name[64];
    int fd;
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sv_notify("READY=1"), 0); /* not under systemd */
    snprintf(path, sizeof(path), "%s/notify", dir);
    fd = dgram_bind(path, false);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(sv_notify("READY=1\nSTATUS=2 VMs"), 1);
    expect_dgram(fd, "READY=1\nSTATUS=2 VMs");
    close(fd);
    snprintf(abs_name, sizeof(abs_name), "smmuctl-test-%d", (int)getpid());
    fd = dgram_bind(abs_name, true);
    snprintf(path, sizeof(path), "@%s", abs_name);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(sv_notify("STOPPING=1"), 1);
    expect_dgram(fd, "STOPPING=1");
    close(fd);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(sv_notify("READY=1"), -EINVAL);
    snprintf(path, sizeof(path), "%s/nobody", dir);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(sv_notify("READY=1"), -ENOENT);
    unsetenv("NOTIFY_SOCKET");
    smmu_test_rmtree(dir);
    free(dir);
}

static void test_watchdog(void **state)
{
    char pid[32];
    (void)state;
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(sv_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "3000000", 1);
    assert_int_equal(sv_notify_watchdog_usec(), 3000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sv_notify_watchdog_usec(), 3000000);
    setenv("WATCHDOG_PID", "1", 1); /* another process's watchdog */
    assert_int_equal(sv_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "3s", 1);
    assert_int_equal(sv_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "-5", 1);
    assert_int_equal(sv_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}

static void test_journal_stream_and_prefix(void **state)
{
    char *dir = smmu_test_mkdtemp("journal"), path[512], js[64], *txt;
    struct stat st;
    int saved = dup(2), fd;
    (void)state;
    snprintf(path, sizeof(path), "%s/stderr", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    dup2(fd, 2);
    fstat(2, &st);
    unsetenv("JOURNAL_STREAM");
    assert_false(sv_journal_stderr());
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    assert_true(sv_journal_stderr());
    sv_log_line(sv_journal_stderr(), SV_LOG_WARNING, "vm1: QEMU gone\nreconnecting");
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", js, 1);
    assert_false(sv_journal_stderr()); /* stderr redirected elsewhere: no prefixes */
    sv_log_line(sv_journal_stderr(), SV_LOG_INFO, "plain\x01");
    setenv("JOURNAL_STREAM", "garbage", 1);
    assert_false(sv_journal_stderr());
    unsetenv("JOURNAL_STREAM");
    dup2(saved, 2);
    close(saved);
    close(fd);
    txt = smmu_test_read_file(path, NULL);
    assert_string_equal(txt, "<4>vm1: QEMU gone\\nreconnecting\nsmmuctl serve: plain\\x01\n");
    free(txt);
    smmu_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_path_and_abstract),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_journal_stream_and_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
