/* test_replay_harness.c — self-tests of the QMP replay server with a raw socket client (no smmuctl client).
 *
 * The raw client plays the "ideal client": it sends each C: line's bytes (with its !fds) and checks that each
 * S: line arrives byte for byte with CRLF. Failures are provoked on purpose and their reports checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "replay/replay_fixture.h"
#include "replay/replay_match.h"
#include "replay/replay_proc.h"
#include "replay/replay_server.h"
#include "support/testutil.h"

#define IO_TIMEOUT_MS 5000

/* ---------- helpers ---------- */

struct ctx {
    char *dir;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    c->dir = smmu_test_mkdtemp("replay");
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    smmu_test_rmtree(c->dir);
    free(c->dir);
    free(c);
    return 0;
}

/* Write a fixture file named `name` in the test dir; returns its path (caller frees). */
static char *fixture(struct ctx *c, const char *name, const char *text)
{
    char *path;
    FILE *f;
    assert_true(asprintf(&path, "%s/%s", c->dir, name) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static struct replay_server *start_pair(const char *path, int *fd, int line_timeout_ms)
{
    struct replay_opts o = REPLAY_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct replay_server *s = NULL;
    o.line_timeout_ms = line_timeout_ms;
    int r = replay_server_start_opts(&s, path, NULL, fd, &o, &err);
    if (r < 0)
        fail_msg("replay_server_start %s: %s", path, err.message);
    return s;
}

/* Send bytes, with `nfds` fds (of /dev/null) attached via SCM_RIGHTS when nfds > 0. */
static void raw_send(int fd, const char *data, size_t len, int nfds)
{
    size_t off = 0;
    if (nfds > 0) {
        int fds[16];
        union {
            char b[CMSG_SPACE(sizeof(fds))];
            struct cmsghdr align;
        } cb;
        struct iovec iov = {(void *)data, len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b,
                            .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
        struct cmsghdr *cm;
        assert_true(nfds <= 16);
        memset(&cb, 0, sizeof(cb));
        for (int i = 0; i < nfds; i++)
            assert_true((fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        assert_true(n > 0);
        off = (size_t)n;
    }
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

static void raw_send_str(int fd, const char *s)
{
    raw_send(fd, s, strlen(s), 0);
}

/* Read exactly n bytes (bounded); returns the number read before EOF. */
static size_t raw_read(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, IO_TIMEOUT_MS);
        assert_true(r == 1);
        ssize_t k = read(fd, buf + got, n - got);
        assert_true(k >= 0);
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return got;
}

static void raw_expect(int fd, const char *expected)
{
    size_t n = strlen(expected);
    char *buf = malloc(n + 1);
    size_t got = raw_read(fd, buf, n);
    buf[got] = '\0';
    if (got != n || memcmp(buf, expected, n))
        fail_msg("expected from the server:\n%s\ngot:\n%s", expected, buf);
    free(buf);
}

static void raw_expect_eof(int fd)
{
    char c;
    assert_int_equal(raw_read(fd, &c, 1), 0);
}

static int raw_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Play a fixture as the ideal client. fd: connected client end, or -1 to connect to `sock` first. */
static void raw_play(const char *fixture_path, int fd, const char *sock)
{
    struct replay_fixture *fx;
    struct smmu_error err = SMMU_ERROR_INIT;
    if (replay_fixture_load(&fx, fixture_path, &err) < 0)
        fail_msg("%s", err.message);
    if (fd < 0)
        fd = raw_connect(sock);
    for (size_t i = 0; i < fx->n; i++) {
        const struct replay_item *it = &fx->items[i];
        char *buf;
        switch (it->kind) {
        case REPLAY_ITEM_EXPECT:
            buf = malloc(it->len + 1);
            memcpy(buf, it->text, it->len);
            buf[it->len] = '\n';
            raw_send(fd, buf, it->len + (it->exact ? 0 : 1), it->nfds);
            free(buf);
            break;
        case REPLAY_ITEM_SEND:
            buf = malloc(it->len + 3);
            memcpy(buf, it->text, it->len);
            memcpy(buf + it->len, "\r\n", 3);
            {
                size_t want = it->len + (it->raw ? 0 : 2);
                char *got = malloc(want + 1);
                size_t n = raw_read(fd, got, want);
                if (n != want || memcmp(got, buf, want))
                    fail_msg("%s:%d: the S: line did not arrive byte for byte (%zu of %zu bytes)", fixture_path,
                             it->line, n, want);
                free(got);
            }
            free(buf);
            break;
        case REPLAY_ITEM_EXPECT_CLOSE:
            close(fd);
            fd = -1;
            break;
        case REPLAY_ITEM_CLOSE:
            raw_expect_eof(fd);
            break;
        case REPLAY_ITEM_ACCEPT:
            if (fd >= 0)
                close(fd);
            fd = raw_connect(sock);
            break;
        case REPLAY_ITEM_DELAY:
        case REPLAY_ITEM_TIMEOUT:
            break;
        }
    }
    if (fd >= 0)
        close(fd);
    replay_fixture_free(fx);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected to find \"%s\" in:\n%s", needle, hay);
}

#define GREETING "S: {\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 1, \"major\": 11}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\n"
#define GREETING_WIRE "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 1, \"major\": 11}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"

static const char *SIMPLE =
    "# synthetic: harness self-test\n"
    GREETING
    "C: {\"execute\": \"qmp_capabilities\", \"id\": \"1\"}\n"
    "S: {\"return\": {}, \"id\": \"1\"}\n"
    "\n"
    "C: {\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic0\"}, \"id\": \"2\"}\n"
    "S: {\"return\": {}, \"id\": \"2\"}\n";

/* ---------- tests ---------- */

static void test_exact_session_passes(void **state)
{
    char *path = fixture(*state, "simple.txt", SIMPLE);
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);

    raw_expect(fd, GREETING_WIRE);
    raw_send_str(fd, "{\"execute\": \"qmp_capabilities\", \"id\": \"1\"}\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"1\"}\r\n");
    raw_send_str(fd, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic0\"}, \"id\": \"2\"}\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"2\"}\r\n");
    assert_int_equal(replay_server_wait_played(s, IO_TIMEOUT_MS), 0);
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    assert_string_equal(replay_server_report(s), "");
    assert_int_equal(replay_server_failure(s), REPLAY_OK);
    replay_server_free(s);
    free(path);
}

/* Key order, whitespace, and a missing newline do not matter for JSON C: lines; two messages may share a write. */
static void test_key_order_and_whitespace_pass(void **state)
{
    char *path = fixture(*state, "order.txt",
                         "C: {\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic0\", \"x\": [1, {\"a\": 1, \"b\": 2}]}}\n"
                         "C: {\"execute\": \"query-status\"}\n"
                         "S: {\"return\": {}}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_send_str(fd, "  {\"arguments\":{\"x\":[1,{\"b\":2,\"a\":1}],\"id\":\"nic0\"},\n\"execute\":\"device_del\"}"
                     "{ \"execute\" : \"query-status\" }");
    raw_expect(fd, "{\"return\": {}}\r\n");
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);
    free(path);
}

static void test_changed_line_fails_with_diff(void **state)
{
    char *path = fixture(*state, "changed.txt", SIMPLE);
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);

    raw_expect(fd, GREETING_WIRE);
    raw_send_str(fd, "{\"execute\": \"qmp_capabilities\", \"id\": \"1\"}\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"1\"}\r\n");
    raw_send_str(fd, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic1\"}, \"id\": \"2\"}\n");
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), -EBADMSG);
    close(fd);
    const char *rep = replay_server_report(s);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_UNEXPECTED);
    assert_int_equal(replay_server_failure_line(s), 6);
    assert_contains(rep, "changed.txt:6: unexpected message from the client");
    assert_contains(rep, "expected C: {\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic0\"}, \"id\": \"2\"}");
    assert_contains(rep, "actual   C: {\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic1\"}, \"id\": \"2\"}");
    assert_contains(rep, "difference: .arguments.id: expected \"nic0\", got \"nic1\"");
    assert_contains(rep, "line 4 S: {\"return\": {}, \"id\": \"1\"}");   /* context before the failure */
    replay_server_free(s);
    free(path);
}

static void test_text_line_mismatch(void **state)
{
    char *path = fixture(*state, "text.txt", "C: this is not json\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_send_str(fd, "this is not JSON\n");
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), -EBADMSG);
    close(fd);
    assert_contains(replay_server_report(s), "text.txt:1: unexpected message");
    assert_contains(replay_server_report(s), "compared as text");
    replay_server_free(s);
    free(path);
}

static void test_missing_message_client_closes(void **state)
{
    char *path = fixture(*state, "missing.txt", SIMPLE);
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);

    raw_expect(fd, GREETING_WIRE);
    raw_send_str(fd, "{\"execute\": \"qmp_capabilities\", \"id\": \"1\"}\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"1\"}\r\n");
    raw_send_str(fd, "{\"execute\": \"device_del\", ");   /* half a message, then gone */
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), -EBADMSG);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_MISSING);
    assert_int_equal(replay_server_failure_line(s), 6);
    assert_contains(replay_server_report(s), "missing.txt:6: missing: the client closed the connection");
    assert_contains(replay_server_report(s), "received so far (incomplete): {\"execute\": \"device_del\",");
    replay_server_free(s);
    free(path);
}

static void test_missing_message_timeout(void **state)
{
    char *path = fixture(*state, "silent.txt", "C: {\"execute\": \"query-status\"}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 100);
    /* the client stays connected and silent: the per-line bound ends the wait */
    assert_int_equal(replay_server_wait(s, -1), -EBADMSG);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_MISSING);
    assert_contains(replay_server_report(s), "silent.txt:1: missing: this C: line did not come within 100 ms");
    close(fd);
    replay_server_free(s);
    free(path);
}

static void test_wait_timeout_stops_replay(void **state)
{
    char *path = fixture(*state, "stop.txt", "C: {\"execute\": \"query-status\"}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    assert_int_equal(replay_server_wait_played(s, 10), -ETIMEDOUT);   /* does not stop it */
    assert_int_equal(replay_server_wait(s, 20), -ETIMEDOUT);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_MISSING);
    assert_contains(replay_server_report(s), "stop.txt:1: missing: this C: line");
    assert_contains(replay_server_report(s), "stopped by replay_server_wait()");
    assert_int_equal(replay_server_wait(s, 20), -ETIMEDOUT);   /* again: same result */
    close(fd);
    replay_server_free(s);
    free(path);
}

static void test_extra_message_fails(void **state)
{
    char *path = fixture(*state, "extra.txt", SIMPLE);
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);

    raw_expect(fd, GREETING_WIRE);
    raw_send_str(fd, "{\"execute\": \"qmp_capabilities\", \"id\": \"1\"}\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"1\"}\r\n");
    raw_send_str(fd, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic0\"}, \"id\": \"2\"}\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"2\"}\r\n");
    raw_send_str(fd, "{\"execute\": \"query-status\", \"id\": \"3\"}\n");
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), -EBADMSG);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_EXTRA);
    assert_contains(replay_server_report(s), "extra message from the client after the end of the fixture (last line 7)");
    assert_contains(replay_server_report(s), "actual   C: {\"execute\": \"query-status\", \"id\": \"3\"}");
    replay_server_free(s);
    free(path);
}

/* An extra message already sent when replay_server_wait() stops a server that is still watching. */
static void test_extra_message_seen_by_wait(void **state)
{
    char *path = fixture(*state, "extra2.txt", "C: {\"execute\": \"a\"}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_send_str(fd, "{\"execute\": \"a\"}\n{\"execute\": \"b\"}\n");
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), -EBADMSG);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_EXTRA);
    close(fd);
    replay_server_free(s);
    free(path);
}

static const char *FDS =
    "C: {\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}\n"
    "S: {\"return\": {}}\n"
    "# two fds with the next line\n"
    "!fds 2\n"
    "C: {\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"b\"}}\n"
    "S: {\"return\": {}}\n";

static void play_fds(struct ctx *c, int first, int second, int want_rc, int want_line)
{
    char *path = fixture(c, "fds.txt", FDS);
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    const char *a = "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}\n";
    const char *b = "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"b\"}}\n";
    raw_send(fd, a, strlen(a), first);
    if (want_rc == 0 || want_line != 1) {
        raw_expect(fd, "{\"return\": {}}\r\n");
        raw_send(fd, b, strlen(b), second);
    }
    if (want_rc == 0)
        raw_expect(fd, "{\"return\": {}}\r\n");
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), want_rc);
    if (want_rc) {
        char where[64];
        assert_int_equal(replay_server_failure(s), REPLAY_FAIL_FDS);
        assert_int_equal(replay_server_failure_line(s), want_line);
        snprintf(where, sizeof(where), "fds.txt:%d: wrong fd count", want_line);
        assert_contains(replay_server_report(s), where);
    }
    replay_server_free(s);
    free(path);
}

static void test_fd_counts(void **state)
{
    play_fds(*state, 0, 2, 0, 0);             /* as the fixture says */
    play_fds(*state, 0, 1, -EBADMSG, 5);      /* one fd short */
    play_fds(*state, 0, 0, -EBADMSG, 5);      /* none */
    play_fds(*state, 1, 2, -EBADMSG, 1);      /* an fd where none was expected */
}

/* A plain message and an fd-carrying one written back to back (possibly read in one go): the fds belong to
 * the second. The server starts with a delay so that both are queued before it reads. */
static void test_fds_pipelined(void **state)
{
    char *path = fixture(*state, "pipe.txt",
                         "!delay 50\n"
                         "C: {\"execute\": \"a\"}\n"
                         "!fds 1\n"
                         "C: {\"execute\": \"b\"}\n"
                         "C: {\"execute\": \"c\"}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_send_str(fd, "{\"execute\": \"a\"}\n");
    raw_send(fd, "{\"execute\": \"b\"}\n", strlen("{\"execute\": \"b\"}\n"), 1);
    raw_send_str(fd, "{\"execute\": \"c\"}\n");
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);
    free(path);
}

static void test_ids_mapped(void **state)
{
    char *path = fixture(*state, "ids.txt",
                         "C: {\"execute\": \"device_del\", \"arguments\": {\"id\": \"nic0\"}, \"id\": \"e1\"}\n"
                         "C: {\"execute\": \"query-status\", \"id\": {\"seq\": 7}}\n"
                         "C: {\"execute\": \"query-name\", \"id\": \"same\"}\n"
                         "C: {\"execute\": \"query-uuid\", \"id\": \"gone\"}\n"
                         "S: {\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"nic0\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n"
                         "S: {\"return\": {}, \"id\": \"e1\"}\n"
                         "S: {\"id\": {\"seq\": 7}, \"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\n"
                         "S: {\"return\":{},   \"id\": \"same\"}\n"
                         "S: {\"return\": {}, \"id\": \"gone\"}\n"
                         "S: {\"return\": {}, \"id\": \"unknown\"}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_send_str(fd, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"nic0\"},\"id\":\"17\"}"
                     "{\"execute\":\"query-status\",\"id\":42}"
                     "{\"execute\":\"query-name\",\"id\":\"same\"}"
                     "{\"execute\":\"query-uuid\"}");
    /* events are sent verbatim, replies carry the client's ids, members stay in order */
    raw_expect(fd, "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"nic0\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"17\"}\r\n");
    raw_expect(fd, "{\"id\": 42, \"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\r\n");
    raw_expect(fd, "{\"return\":{},   \"id\": \"same\"}\r\n");   /* same id: byte for byte */
    raw_expect(fd, "{\"return\": {}}\r\n");                   /* the client sent no id: none in the reply */
    raw_expect(fd, "{\"return\": {}, \"id\": \"unknown\"}\r\n"); /* never mapped: verbatim */
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);
    free(path);
}

/* Expected lines without ids (as QEMU transcripts have them) against a client that sends ids: FIFO. */
static void test_ids_fifo(void **state)
{
    char *path = fixture(*state, "fifo.txt",
                         GREETING
                         "C: {\"execute\": \"qmp_capabilities\"}\n"
                         "C: {\"execute\": \"query-status\"}\n"
                         "C: {\"execute\": \"query-name\"}\n"
                         "S: {\"return\": {}}\n"
                         "S: {\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n"
                         "S: {\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"x\"}}\n"
                         "S: {\"return\": {\"name\": \"vm\"}}\n"
                         "S: {\"return\": {\"extra\": 1}}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_expect(fd, GREETING_WIRE);
    raw_send_str(fd, "{\"execute\": \"qmp_capabilities\", \"id\": \"1\"}\n"
                     "{\"execute\": \"query-status\", \"id\": [\"2\"]}\n"
                     "{\"execute\": \"query-name\"}\n");
    raw_expect(fd, "{\"return\": {}, \"id\": \"1\"}\r\n");
    raw_expect(fd, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n");
    raw_expect(fd, "{\"id\": [\"2\"], \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"x\"}}\r\n");
    raw_expect(fd, "{\"return\": {\"name\": \"vm\"}}\r\n");   /* that command had no id */
    raw_expect(fd, "{\"return\": {\"extra\": 1}}\r\n");       /* queue empty: verbatim */
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);
    free(path);
}

static void splice_is(const char *text, json_t *id, const char *want)
{
    char *out = replay_splice_id(text, strlen(text), id);
    json_decref(id);
    if (!want) {
        assert_null(out);
        return;
    }
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

/* Id substitution touches only the id's bytes: QEMU's uint64 values and formatting survive. */
static void test_splice_id(void **state)
{
    const char *big = "{\"return\": [{\"value\": 18446744073709551615}], \"id\": \"a\"}";
    splice_is(big, json_string("7"), "{\"return\": [{\"value\": 18446744073709551615}], \"id\": \"7\"}");
    splice_is(big, NULL, "{\"return\": [{\"value\": 18446744073709551615}]}");
    splice_is("{\"id\": \"e1\", \"error\": {\"class\": \"X\", \"desc\": \"}\\\"id\\\"\"}}", NULL,
              "{\"error\": {\"class\": \"X\", \"desc\": \"}\\\"id\\\"\"}}");
    splice_is("{\"error\": {\"class\": \"X\", \"desc\": \"d\"}}", json_integer(3),
              "{\"id\": 3, \"error\": {\"class\": \"X\", \"desc\": \"d\"}}");
    splice_is("{\"return\": {\"id\": \"inner\"}}", json_pack("{s:i}", "seq", 1),
              "{\"return\": {\"id\": \"inner\"}, \"id\": {\"seq\": 1}}");
    splice_is("{\"id\":1}", NULL, "{}");
    splice_is("{}", json_string("x"), "{\"id\": \"x\"}");
    splice_is("[1]", json_string("x"), NULL);
    splice_is("{\"return\": {}, ", json_string("x"), NULL);
    (void)state;
}

static void test_raw_bytes_verbatim(void **state)
{
    char *path = fixture(*state, "raw.txt",
                         "!raw \"{\\\"return\\\": {}, \\\"id\\\": \\\"1\\\"}\\n{\\\"ret\"\n"
                         "!raw-hex ff 00 0d0a\n"
                         "S: {\"return\": {\"a\": \"caf\\u00E9\"},\"id\":1}\n"
                         "!close\n");
    int fd;
    char buf[4];
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_expect(fd, "{\"return\": {}, \"id\": \"1\"}\n{\"ret");
    assert_int_equal(raw_read(fd, buf, 4), 4);
    assert_memory_equal(buf, "\xff\x00\r\n", 4);
    raw_expect(fd, "{\"return\": {\"a\": \"caf\\u00E9\"},\"id\":1}\r\n");
    raw_expect_eof(fd);   /* !close */
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);
    free(path);
}

static void test_no_newline_and_escaped(void **state)
{
    char *path = fixture(*state, "frag.txt",
                         "!no-newline\n"
                         "C: {\"execute\": \"query-st\n"
                         "C: atus\", \"id\": \"split\"}\n"
                         "!escaped\n"
                         "C: \\xff\n"
                         "!escaped\n"
                         "!fds 1\n"
                         "C: {\"id\": \"bad\\xc3\"}\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_send_str(fd, "{\"execute\": \"query-st");
    raw_send_str(fd, "atus\", \"id\": \"split\"}\n\xff\n");
    raw_send(fd, "{\"id\": \"bad\xc3\"}\n", 15, 1);
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);
    free(path);
}

static void test_expect_close(void **state)
{
    char *path = fixture(*state, "close.txt", "C: {\"execute\": \"a\"}\n!expect-close\n");
    int fd;
    struct replay_server *s = start_pair(path, &fd, 0);
    raw_send_str(fd, "{\"execute\": \"a\"}\n");
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);

    s = start_pair(path, &fd, 0);
    raw_send_str(fd, "{\"execute\": \"a\"}\n{\"execute\": \"b\"}\n");
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), -EBADMSG);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_UNEXPECTED);
    assert_contains(replay_server_report(s), "close.txt:2: the client sent a message where it should close");
    close(fd);
    replay_server_free(s);

    s = start_pair(path, &fd, 50);
    raw_send_str(fd, "{\"execute\": \"a\"}\n");   /* and stays connected */
    assert_int_equal(replay_server_wait(s, -1), -EBADMSG);
    assert_int_equal(replay_server_failure(s), REPLAY_FAIL_MISSING);
    assert_contains(replay_server_report(s), "close.txt:2: missing: the client's close did not come within 50 ms");
    close(fd);
    replay_server_free(s);
    free(path);
}

static void test_listen_accept_reconnect(void **state)
{
    struct ctx *c = *state;
    char *path = fixture(c, "re.txt",
                         GREETING
                         "C: {\"execute\": \"qmp_capabilities\"}\n"
                         "S: {\"return\": {}}\n"
                         "!expect-close\n"
                         "!accept\n"
                         GREETING
                         "!close\n"
                         "!accept\n"
                         GREETING);
    char *sock;
    struct replay_server *s = NULL;
    struct smmu_error err = SMMU_ERROR_INIT;
    int fd;

    assert_true(asprintf(&sock, "%s/qmp.sock", c->dir) > 0);
    /* socketpair mode cannot reconnect */
    assert_int_equal(replay_server_start_opts(&s, path, NULL, &fd, NULL, &err), -EINVAL);
    assert_contains(err.message, "needs a listening socket");

    assert_int_equal(replay_server_start_opts(&s, path, sock, NULL, NULL, &err), 0);
    fd = raw_connect(sock);
    raw_expect(fd, GREETING_WIRE);
    raw_send_str(fd, "{\"execute\": \"qmp_capabilities\"}\n");
    raw_expect(fd, "{\"return\": {}}\r\n");
    close(fd);
    fd = raw_connect(sock);
    raw_expect(fd, GREETING_WIRE);
    raw_expect_eof(fd);
    close(fd);
    fd = raw_connect(sock);
    raw_expect(fd, GREETING_WIRE);
    close(fd);
    assert_int_equal(replay_server_wait(s, IO_TIMEOUT_MS), 0);
    replay_server_free(s);
    assert_int_equal(access(sock, F_OK), -1);   /* the socket file is removed */
    free(sock);
    free(path);
}

static void replay_real(struct ctx *c, const char *name, bool listen)
{
    char *path, *sock = NULL;
    struct replay_server *s = NULL;
    struct smmu_error err = SMMU_ERROR_INIT;
    int fd = -1;

    assert_true(asprintf(&path, "%s/%s", SMMU_FIXTURES_DIR, name) > 0);
    if (listen)
        assert_true(asprintf(&sock, "%s/qmp.sock", c->dir) > 0);
    if (replay_server_start_opts(&s, path, sock, listen ? NULL : &fd, NULL, &err) < 0)
        fail_msg("%s", err.message);
    raw_play(path, fd, sock);
    if (replay_server_wait(s, IO_TIMEOUT_MS) != 0)
        fail_msg("%s", replay_server_report(s));
    replay_server_free(s);
    free(path);
    free(sock);
}

static void test_real_a64_01(void **state)
{
    replay_real(*state, "a64-01-greeting-capabilities.txt", true);
    replay_real(*state, "a64-01a-greeting-capabilities-session1.txt", false);
    replay_real(*state, "a64-01b-greeting-capabilities-session2.txt", false);
}

static void test_real_a64_12(void **state)
{
    replay_real(*state, "a64-12-malformed-json-and-ids.txt", false);
}

static void test_real_a64_08_with_fds(void **state)
{
    replay_real(*state, "a64-08-fd-passing.txt", false);
}

/* Every fixture in qmp-fixtures/ parses, states its provenance, and replays against the ideal client. */
static void test_all_fixtures(void **state)
{
    glob_t g;
    assert_int_equal(glob(SMMU_FIXTURES_DIR "/*.txt", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 10);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct replay_fixture *fx;
        struct smmu_error err = SMMU_ERROR_INIT;
        const char *name = strrchr(g.gl_pathv[i], '/') + 1;
        char *text = smmu_test_read_file(g.gl_pathv[i], NULL);
        assert_non_null(text);
        if (!strcasestr(text, "recorded from real QEMU") && !strcasestr(text, "synthetic"))
            fail_msg("%s: the header says neither 'recorded from real QEMU' nor 'synthetic'", name);
        free(text);
        if (replay_fixture_load(&fx, g.gl_pathv[i], &err) < 0)
            fail_msg("%s", err.message);
        bool listen = fx->needs_listener;
        replay_fixture_free(fx);
        replay_real(*state, name, listen);
    }
    globfree(&g);
}

static void bad(const char *text, const char *want)
{
    struct replay_fixture *fx = NULL;
    struct smmu_error err = SMMU_ERROR_INIT;
    int r = replay_fixture_parse(&fx, "bad.txt", text, strlen(text), &err);
    if (r != -EINVAL)
        fail_msg("fixture accepted (r=%d):\n%s", r, text);
    assert_null(fx);
    assert_contains(err.message, want);
}

static void test_bad_fixtures(void **state)
{
    bad("# x\nS: {\"return\": \n", "bad.txt:2: S: line is not a JSON object");
    bad("S: [1]\n", "bad.txt:1: S: line is not a JSON object");
    bad("\n\n!frobnicate\n", "bad.txt:3: unknown directive '!frobnicate'");
    bad("!fds two\nC: {}\n", "bad.txt:1: !fds needs a count from 0 to 253, got 'two'");
    bad("!fds 300\nC: {}\n", "bad.txt:1: !fds needs a count");
    bad("!fds 1\nS: {}\n", "bad.txt:1: !fds must be followed by a C: line (found S: at line 2)");
    bad("!fds 1\n!delay 5\nC: {}\n", "bad.txt:1: !fds must be followed by a C: line (found !delay at line 2)");
    bad("C: {}\n!no-newline\n# end\n", "bad.txt:2: !no-newline must be followed by a C: line (found the end of the file)");
    bad("!fds 1\n!fds 2\nC: {}\n", "bad.txt:2: a second !fds");
    bad("!delay soon\n", "bad.txt:1: !delay needs milliseconds");
    bad("!timeout 0\n", "bad.txt:1: !timeout needs milliseconds");
    bad("!raw {\"a\": 1}\n", "bad.txt:1: !raw needs a non-empty JSON string");
    bad("!raw \"unterminated\n", "bad.txt:1: !raw needs a non-empty JSON string");
    bad("!raw-hex f\n", "bad.txt:1: !raw-hex needs pairs of hex digits");
    bad("!close now\n", "bad.txt:1: !close takes no argument");
    bad("C:\n", "bad.txt:1: empty C: line");
    bad("S:{\"return\": {}}\n", "bad.txt:1: expected 'S: ', 'C: ', '#', '!' or a blank line");
    bad("c: {}\n", "bad.txt:1: expected 'S: ', 'C: '");

    /* a missing file names the path; CRLF line ends and blank/indented comment lines are fine */
    struct replay_server *s = NULL;
    struct smmu_error err = SMMU_ERROR_INIT;
    int fd;
    assert_int_equal(replay_server_start_opts(&s, "/nonexistent/x.txt", NULL, &fd, NULL, &err), -ENOENT);
    assert_contains(err.message, "/nonexistent/x.txt: No such file or directory");

    struct replay_fixture *fx;
    const char *ok = "# header\r\n  # indented comment\r\n\r\nS: {\"return\": {}}\r\n!fds 0\r\nC: {}\r\n";
    assert_int_equal(replay_fixture_parse(&fx, "ok.txt", ok, strlen(ok), &err), 0);
    assert_int_equal(fx->n, 2);
    assert_string_equal(fx->items[0].text, "{\"return\": {}}");
    assert_int_equal(fx->items[1].line, 6);
    replay_fixture_free(fx);
    (void)state;
}

/* The qmp-replay program (through replay_proc): exit 0 on an exact match, 1 with the report on stderr otherwise,
 * 2 for a bad fixture. */
static int run_qmp_replay(struct ctx *c, const char *fixture_path, const char *client_text, struct replay_proc **pp)
{
    static const char *const args[] = {"--end-timeout", "2000", NULL};
    struct smmu_error err = SMMU_ERROR_INIT;
    char *sock;
    assert_true(asprintf(&sock, "%s/prog.sock", c->dir) > 0);
    if (replay_proc_start(pp, fixture_path, sock, args, &err) < 0)
        fail_msg("%s", err.message);
    int fd = raw_connect(sock);
    raw_expect(fd, GREETING_WIRE);
    raw_send_str(fd, client_text);
    close(fd);
    free(sock);
    return replay_proc_wait(*pp, IO_TIMEOUT_MS);
}

static void test_qmp_replay_program(void **state)
{
    struct ctx *c = *state;
    char *path = fixture(c, "prog.txt", GREETING "C: {\"execute\": \"qmp_capabilities\"}\n");
    char *badpath = fixture(c, "bad.txt", "# x\nC: {}\n!nonsense\n");
    struct smmu_error err = SMMU_ERROR_INIT;
    struct replay_proc *p;
    char *sock;

    assert_int_equal(run_qmp_replay(c, path, "{\"execute\": \"qmp_capabilities\"}\n", &p), 0);
    assert_string_equal(replay_proc_report(p), "");
    replay_proc_free(p);
    assert_int_equal(run_qmp_replay(c, path, "{\"execute\": \"quit\"}\n", &p), 1);
    assert_contains(replay_proc_report(p), "prog.txt:2: unexpected message from the client");
    replay_proc_free(p);

    assert_true(asprintf(&sock, "%s/bad.sock", c->dir) > 0);
    assert_int_equal(replay_proc_start(&p, badpath, sock, NULL, &err), -ECHILD);
    assert_contains(err.message, "bad.txt:3: unknown directive '!nonsense'");
    free(sock);
    free(badpath);
    free(path);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact_session_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_order_and_whitespace_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_line_fails_with_diff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_line_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_message_client_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_message_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_timeout_stops_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extra_message_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extra_message_seen_by_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fds_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_mapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_fifo, setup, teardown),
        cmocka_unit_test(test_splice_id),
        cmocka_unit_test_setup_teardown(test_raw_bytes_verbatim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_newline_and_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_accept_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_a64_01, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_a64_12, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_a64_08_with_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_fixtures, setup, teardown),
        cmocka_unit_test(test_bad_fixtures),
        cmocka_unit_test_setup_teardown(test_qmp_replay_program, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
