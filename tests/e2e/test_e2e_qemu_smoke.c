/* test_e2e_qemu_smoke.c — the test harness itself against real QEMU 11: smmu_qemu_start() yields a
 * QEMU whose PID is ours to stop, whose QMP socket greets a new client with version 11, and whose QOM
 * shows the FACTS topology (aarch64 virt) or a q35 root port (x86_64). Speaks QMP over a raw socket on
 * purpose: this checks the peer, not smmuctl's client. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "support/qemu.h"
#include "support/testutil.h"

#define IO_TIMEOUT_MS 10000

/* A raw QMP line reader: QEMU ends every message with CRLF. */
struct raw_qmp {
    int fd;
    char buf[1 << 16];
    size_t len;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Next message as JSON (caller decrefs); fails the test on timeout, EOF or bad JSON. */
static json_t *raw_read(struct raw_qmp *c)
{
    long deadline = now_ms() + IO_TIMEOUT_MS;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            json_error_t jerr;
            size_t linelen = (size_t)(nl - c->buf) + 1;
            json_t *msg = json_loadb(c->buf, linelen, 0, &jerr);
            if (!msg)
                fail_msg("QEMU sent a line that is not JSON (%s): %.*s", jerr.text, (int)linelen, c->buf);
            memmove(c->buf, c->buf + linelen, c->len - linelen);
            c->len -= linelen;
            return msg;
        }
        assert_true(c->len < sizeof(c->buf) - 1);
        long left = deadline - now_ms();
        if (left <= 0)
            fail_msg("no message from QEMU within %d ms", IO_TIMEOUT_MS);
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        assert_true(pr >= 0);
        if (pr == 0)
            continue;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            fail_msg("QMP connection closed by QEMU (read: %s)", r < 0 ? strerror(errno) : "EOF");
        c->len += (size_t)r;
    }
}

static void raw_send(struct raw_qmp *c, const char *line)
{
    size_t len = strlen(line), off = 0;
    while (off < len) {
        ssize_t w = write(c->fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        off += (size_t)w;
    }
}

/* Send `line` (a command with "id": id) and return the reply carrying that id, skipping events. */
static json_t *raw_call(struct raw_qmp *c, const char *line, json_int_t id)
{
    raw_send(c, line);
    for (;;) {
        json_t *msg = raw_read(c);
        json_t *mid = json_object_get(msg, "id");
        if (json_is_integer(mid) && json_integer_value(mid) == id) {
            if (json_object_get(msg, "error")) {
                char *text = json_dumps(msg, JSON_COMPACT);
                fail_msg("QEMU refused %s: %s", line, text);
            }
            assert_non_null(json_object_get(msg, "return"));
            return msg;
        }
        json_decref(msg); /* an event */
    }
}

/* Connect, check the greeting names QEMU 11, negotiate capabilities. */
static void raw_open(struct raw_qmp *c, const struct smmu_qemu *q)
{
    c->len = 0;
    c->fd = smmu_qemu_connect(q);
    assert_true(c->fd >= 0);
    json_t *greeting = raw_read(c);
    json_t *qemu = json_object_get(json_object_get(json_object_get(greeting, "QMP"), "version"), "qemu");
    assert_non_null(qemu);
    assert_int_equal(json_integer_value(json_object_get(qemu, "major")), 11);
    json_decref(greeting);
    json_decref(raw_call(c, "{\"execute\":\"qmp_capabilities\",\"id\":1}\r\n", 1));
}

/* Type of child `name` in a qom-list reply, or NULL. */
static const char *qom_child_type(json_t *reply, const char *name)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(reply, "return"), i, entry) {
        if (strcmp(json_string_value(json_object_get(entry, "name")) ?: "", name) == 0)
            return json_string_value(json_object_get(entry, "type"));
    }
    return NULL;
}

static void assert_child(json_t *reply, const char *name, const char *type)
{
    const char *got = qom_child_type(reply, name);
    if (!got || strcmp(got, type) != 0)
        fail_msg("/machine/peripheral/%s: expected %s, got %s", name, type, got ? got : "(absent)");
}

/* The PID we hold is QEMU itself (the wrapper exec'd it), not a shell around it. */
static void assert_pid_is_qemu(const struct smmu_qemu *q, const char *arch)
{
    char path[64], want[64];
    size_t len;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)smmu_qemu_pid(q));
    snprintf(want, sizeof(want), "/usr/bin/qemu-system-%s", arch);
    char *cmdline = smmu_test_read_file(path, &len);
    assert_non_null(cmdline);
    /* The wrapper's own path also ends in bin/qemu-system-<arch>; what counts is the program run:
     * argv[0] must not be a shell, and the QEMU binary under usr/bin must be in the command line. */
    int found = 0;
    size_t a0 = strlen(cmdline);
    if (a0 >= 2 && strcmp(cmdline + a0 - 2, "sh") == 0)
        fail_msg("PID %d is a shell (%s), not QEMU: the wrapper did not exec", (int)smmu_qemu_pid(q), cmdline);
    for (size_t off = 0; off < len; off += strlen(cmdline + off) + 1) {
        size_t alen = strlen(cmdline + off), wlen = strlen(want);
        if (alen >= wlen && strcmp(cmdline + off + alen - wlen, want) == 0)
            found = 1;
    }
    free(cmdline);
    if (!found)
        fail_msg("PID %d is not QEMU (%s not in its command line)", (int)smmu_qemu_pid(q), want);
}

/* Stop by PID and check the process is gone and reaped. */
static void stop_and_check(struct smmu_qemu *q)
{
    pid_t pid = smmu_qemu_pid(q);
    char *dir = strdup(smmu_qemu_tmpdir(q));
    smmu_qemu_stop(q);
    errno = 0;
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(access(dir, F_OK), -1);
    free(dir);
}

static void test_aarch64_facts_topology(void **state)
{
    struct smmu_qemu *q = NULL;
    struct raw_qmp *c = calloc(1, sizeof(*c));
    (void)state;
    smmu_qemu_require();
    assert_int_equal(smmu_qemu_start(&q, "aarch64", smmu_qemu_facts_topology()), 0);
    assert_pid_is_qemu(q, "aarch64");
    raw_open(c, q);
    json_t *reply = raw_call(c, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral\"},\"id\":2}\r\n", 2);
    assert_child(reply, "smmuv3.1", "child<arm-smmuv3>");
    assert_child(reply, "smmuv3.2", "child<arm-smmuv3>");
    assert_child(reply, "pcie.1", "child<pxb-pcie>");
    assert_child(reply, "pcie.2", "child<pxb-pcie>");
    assert_child(reply, "rp1a", "child<pcie-root-port>");
    assert_child(reply, "rp1b", "child<pcie-root-port>");
    assert_child(reply, "rp2a", "child<pcie-root-port>");
    assert_child(reply, "rp2b", "child<pcie-root-port>");
    json_decref(reply);
    close(c->fd);
    free(c);
    stop_and_check(q);
}

/* The helper disconnected after the greeting, so the socket serves the next client; and after that
 * client leaves, another one is greeted again (QEMU serves one client at a time). */
static void test_socket_serves_successive_clients(void **state)
{
    struct smmu_qemu *q = NULL;
    struct raw_qmp *c = calloc(1, sizeof(*c));
    (void)state;
    smmu_qemu_require();
    assert_int_equal(smmu_qemu_start(&q, "aarch64", NULL), 0);
    for (int i = 0; i < 2; i++) {
        raw_open(c, q);
        json_decref(raw_call(c, "{\"execute\":\"query-status\",\"id\":3}\r\n", 3));
        close(c->fd);
    }
    free(c);
    stop_and_check(q);
}

static void test_x86_64_q35_root_port(void **state)
{
    static const char *const args[] = {
        "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,port=1", NULL,
    };
    struct smmu_qemu *q = NULL;
    struct raw_qmp *c = calloc(1, sizeof(*c));
    (void)state;
    smmu_qemu_require();
    assert_int_equal(smmu_qemu_start(&q, "x86_64", args), 0);
    assert_pid_is_qemu(q, "x86_64");
    raw_open(c, q);
    json_t *reply = raw_call(c, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral\"},\"id\":2}\r\n", 2);
    assert_child(reply, "rp0", "child<pcie-root-port>");
    assert_null(qom_child_type(reply, "smmuv3.1"));
    json_decref(reply);
    close(c->fd);
    free(c);
    stop_and_check(q);
}

/* A command line QEMU rejects: start fails, leaves no process, and the error carries QEMU's words. */
static void test_start_failure_reports_log(void **state)
{
    static const char *const args[] = { "-device", "no-such-device-model,id=x", NULL };
    struct smmu_qemu *q = (struct smmu_qemu *)1;
    (void)state;
    smmu_qemu_require();
    assert_true(smmu_qemu_start(&q, "aarch64", args) < 0);
    assert_null(q);
    assert_non_null(strstr(smmu_qemu_last_error(), "no-such-device-model"));
    assert_non_null(strstr(smmu_qemu_last_error(), "exited with status"));
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_unknown_arch_is_refused(void **state)
{
    struct smmu_qemu *q = NULL;
    (void)state;
    assert_int_equal(smmu_qemu_start(&q, "riscv64", NULL), -EINVAL);
    assert_null(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_aarch64_facts_topology, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_socket_serves_successive_clients, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_x86_64_q35_root_port, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_start_failure_reports_log, smmu_qemu_teardown),
        cmocka_unit_test(test_unknown_arch_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
