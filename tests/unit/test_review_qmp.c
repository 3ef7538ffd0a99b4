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
#include "support/qmp_sync.h"
#include "support/qmp_peer.h"




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
    struct qmp_peer_state st;
    struct call k = {0};
    int peer;
    (void)state;
    qmp_client *c = qmp_peer_ready_client(base, &peer, &st);
    close(peer); /* QEMU went away */
    int before = qmp_peer_count_fds();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int r = qmp_call(c, "getfd", json_pack("{s:s}", "fdname", "x"), &fd, 1, 0, call_cb, &k);
    if (r == 0)
        assert_int_equal(qmp_pump_until(base, &k.done, QMP_PEER_MS), 0);
    assert_true(k.done);
    assert_int_equal(k.err, -ECONNRESET);
    assert_int_equal(qmp_client_state(c), QMP_STATE_CLOSED);
    close(fd);
    assert_int_equal(qmp_peer_count_fds(), before - 1); /* the client's socket is closed too */
    qmp_client_free(c);
    event_base_free(base);
}

/* getfd queued behind a big command the peer does not read, then the client is freed: the queued fd must be
 * closed with the queue. */
static void test_fd_not_leaked_when_queued_at_free(void **state)
{
    struct event_base *base = event_base_new();
    struct qmp_peer_state st;
    struct call k1 = {0}, k2 = {0};
    int peer;
    (void)state;
    qmp_client *c = qmp_peer_ready_client(base, &peer, &st);
    int before = qmp_peer_count_fds();
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
    assert_int_equal(qmp_peer_count_fds(), before - 2); /* the client's socket and the peer's end are closed too */
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
