/* test_review_qmp.c — QMP client defects found in review: the duplicates of fds passed with SCM_RIGHTS must
 * not leak when the connection fails or the client is freed with them still queued.
 *
 * The peer is the other end of a socketpair driven by hand from the test (no thread): the client's bytes are
 * read with a bounded poll, QEMU's are written in exactly the chunks a test needs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "smmuctl/qmp.h"

#define PUMP_MS 5000

static const char GREETING[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 1, \"major\": 11}, \"package\": \"\"}, "
    "\"capabilities\": [\"oob\"]}}\r\n";

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

static void peer_write(int fd, const char *text)
{
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
}

/* One line the client sent (bounded wait); returns its "id" (static buffer). */
static const char *peer_read_id(int fd)
{
    static char id[64];
    char buf[8192];
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        assert_int_equal(poll(&p, 1, PUMP_MS), 1);
        ssize_t r = read(fd, buf + n, 1);
        assert_true(r == 1);
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = 0;
    json_t *j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")) ?: "");
    json_decref(j);
    return id;
}

struct st {
    bool done;
    int calls, err;
    char msg[1024];
};

static void state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    struct st *s = payload;
    (void)c;
    s->done = true;
    s->calls++;
    s->err = err;
    snprintf(s->msg, sizeof(s->msg), "%s", e ? e->message : "");
}

/* A READY client on a socketpair; *peer gets QEMU's end. */
static qmp_client *ready_client(struct event_base *base, int *peer, struct st *st)
{
    int sv[2];
    qmp_client *c = NULL;
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    char reply[128];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(qmp_client_new(&c, base, &o), 0);
    memset(st, 0, sizeof(*st));
    assert_int_equal(qmp_client_connect_fd(c, sv[0], state_cb, st), 0);
    peer_write(sv[1], GREETING);
    bool sent = false;
    /* the greeting is read from the loop; qmp_capabilities goes out */
    while (!sent) {
        struct pollfd p = {sv[1], POLLIN, 0};
        event_base_loop(base, EVLOOP_NONBLOCK);
        sent = poll(&p, 1, 10) == 1;
    }
    snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": \"%s\"}\r\n", peer_read_id(sv[1]));
    peer_write(sv[1], reply);
    assert_int_equal(qmp_pump_until(base, &st->done, PUMP_MS), 0);
    assert_int_equal(st->err, 0);
    assert_int_equal(qmp_client_state(c), QMP_STATE_READY);
    *peer = sv[1];
    return c;
}

struct call {
    bool done;
    int err;
};

static void call_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct call *k = payload;
    (void)c; (void)ret; (void)e;
    k->done = true;
    k->err = err;
}

/* getfd on a connection whose peer is gone: the write fails, the call fails — and the duplicate of the fd
 * the client made for SCM_RIGHTS must be closed, not leaked (a vfio cdev or /dev/iommu held open). */
static void test_fd_not_leaked_when_write_fails(void **state)
{
    struct event_base *base = event_base_new();
    struct st st;
    struct call k = {0};
    int peer;
    (void)state;
    qmp_client *c = ready_client(base, &peer, &st);
    close(peer); /* QEMU went away */
    int before = count_fds();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int r = qmp_call(c, "getfd", json_pack("{s:s}", "fdname", "x"), &fd, 1, 0, call_cb, &k);
    if (r == 0)
        assert_int_equal(qmp_pump_until(base, &k.done, PUMP_MS), 0);
    assert_true(k.done);
    assert_int_equal(k.err, -ECONNRESET);
    assert_int_equal(qmp_client_state(c), QMP_STATE_CLOSED);
    close(fd);
    assert_int_equal(count_fds(), before - 1); /* the client's socket is closed too */
    qmp_client_free(c);
    event_base_free(base);
}

/* getfd queued behind a big command the peer does not read, then the client is freed: the queued fd must be
 * closed with the queue. */
static void test_fd_not_leaked_when_queued_at_free(void **state)
{
    struct event_base *base = event_base_new();
    struct st st;
    struct call k1 = {0}, k2 = {0};
    int peer;
    (void)state;
    qmp_client *c = ready_client(base, &peer, &st);
    int before = count_fds();
    size_t big = 8u << 20; /* far more than a socket buffer: stays queued */
    char *s = malloc(big + 1);
    memset(s, 'a', big);
    s[big] = 0;
    assert_int_equal(qmp_call(c, "echo", json_pack("{s:s}", "data", s), NULL, 0, 0, call_cb, &k1), 0);
    free(s);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(qmp_call(c, "getfd", json_pack("{s:s}", "fdname", "x"), &fd, 1, 0, call_cb, &k2), 0);
    close(fd);
    assert_false(k2.done);
    qmp_client_free(c);
    assert_true(k1.done && k2.done);
    assert_int_equal(k2.err, -ECANCELED);
    close(peer);
    assert_int_equal(count_fds(), before - 2); /* the client's socket and the peer's end are closed too */
    event_base_free(base);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a peer write to a closed client fails with EPIPE instead */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_not_leaked_when_write_fails),
        cmocka_unit_test(test_fd_not_leaked_when_queued_at_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
