/* test_review_qmp_reentry.c — QMP client reentrancy found in review: a callback that closes the connection
 * and connects again while a chunk of the old connection is still being decoded; a call made from a callback
 * while the pending calls are being failed.
 *
 * The peer is the other end of a socketpair driven by hand from the test (no thread): the client's bytes are
 * read with a bounded poll, QEMU's are written in exactly the chunks a test needs.
 */
#define _GNU_SOURCE
#include <errno.h>
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




/* A reply callback closes the connection and connects again (a daemon's reconnect). The rest of the old
 * connection's chunk (here an event) must not be decoded as the new connection's greeting. */
struct reconnect {
    struct qmp_peer_state st2;
    int newfd;
    bool replied;
};

static void reconnect_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct reconnect *rc = payload;
    (void)ret; (void)e;
    rc->replied = true;
    assert_int_equal(err, 0);
    qmp_client_close(c);
    assert_int_equal(qmp_client_connect_fd(c, rc->newfd, qmp_peer_state_cb, &rc->st2), 0);
}

static void test_reconnect_from_callback_drops_old_bytes(void **state)
{
    struct event_base *base = event_base_new();
    struct qmp_peer_state st;
    struct reconnect rc;
    int peer, sv[2];
    char chunk[512];
    (void)state;
    memset(&rc, 0, sizeof(rc));
    qmp_client *c = qmp_peer_ready_client(base, &peer, &st);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    rc.newfd = sv[0];
    assert_int_equal(qmp_call(c, "query-status", NULL, NULL, 0, 0, reconnect_cb, &rc), 0);
    const char *id = qmp_peer_read_id(peer);
    /* reply and an event in ONE chunk from the old connection */
    snprintf(chunk, sizeof(chunk),
             "{\"return\": {}, \"id\": \"%s\"}\r\n{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
             "\"event\": \"RESUME\"}\r\n", id);
    qmp_peer_write(peer, chunk);
    assert_int_equal(qmp_pump_until(base, &rc.replied, QMP_PEER_MS), 0);
    if (rc.st2.done)
        fail_msg("the new connection failed on the old connection's bytes: %s", rc.st2.msg);
    /* the new QEMU greets; the client negotiates on the new connection */
    qmp_peer_write(sv[1], QMP_PEER_GREETING);
    bool sent = false;
    for (int i = 0; i < 500 && !sent && !rc.st2.done; i++) {
        struct pollfd p = {sv[1], POLLIN, 0};
        event_base_loop(base, EVLOOP_NONBLOCK);
        sent = poll(&p, 1, 10) == 1;
    }
    if (rc.st2.done)
        fail_msg("the new connection failed before its greeting was read: %s", rc.st2.msg);
    assert_true(sent);
    char reply[128];
    snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": \"%s\"}\r\n", qmp_peer_read_id(sv[1]));
    qmp_peer_write(sv[1], reply);
    assert_int_equal(qmp_pump_until(base, &rc.st2.done, QMP_PEER_MS), 0);
    if (rc.st2.err != 0)
        fail_msg("new connection: %d %s", rc.st2.err, rc.st2.msg);
    assert_int_equal(qmp_client_state(c), QMP_STATE_READY);
    qmp_client_free(c);
    close(peer);
    close(sv[1]);
    event_base_free(base);
}

/* QEMU answers an unparsable command with an id-less error: every call pending at that moment fails with
 * -EPROTO. A call made by one of those callbacks (the next step, an undo) was sent after the bad input and is
 * not affected: it must not be failed too (its command went out; QEMU runs it and its reply would be dropped). */
struct chain {
    qmp_client *c;
    bool a_done, b_done;
    int a_err, b_err;
};

static void chain_b_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct chain *ch = payload;
    (void)c; (void)ret; (void)e;
    ch->b_done = true;
    ch->b_err = err;
}

static void chain_a_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct chain *ch = payload;
    (void)ret; (void)e;
    ch->a_done = true;
    ch->a_err = err;
    assert_int_equal(qmp_call(c, "query-status", NULL, NULL, 0, 0, chain_b_cb, ch), 0);
}

static void test_call_from_fail_all_callback_survives(void **state)
{
    struct event_base *base = event_base_new();
    struct qmp_peer_state st;
    struct chain ch;
    int peer;
    (void)state;
    memset(&ch, 0, sizeof(ch));
    qmp_client *c = qmp_peer_ready_client(base, &peer, &st);
    assert_int_equal(qmp_call(c, "query-status", NULL, NULL, 0, 0, chain_a_cb, &ch), 0);
    (void)qmp_peer_read_id(peer);
    qmp_peer_write(peer, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n");
    assert_int_equal(qmp_pump_until(base, &ch.a_done, QMP_PEER_MS), 0);
    assert_int_equal(ch.a_err, -EPROTO);
    if (ch.b_done)
        fail_msg("the call made from the callback was failed too (%d) although its command was sent", ch.b_err);
    char reply[128];
    snprintf(reply, sizeof(reply), "{\"return\": {\"status\": \"running\"}, \"id\": \"%s\"}\r\n", qmp_peer_read_id(peer));
    qmp_peer_write(peer, reply);
    assert_int_equal(qmp_pump_until(base, &ch.b_done, QMP_PEER_MS), 0);
    assert_int_equal(ch.b_err, 0);
    qmp_client_free(c);
    close(peer);
    event_base_free(base);
}

/* A subscriber closes the connection while an event is being dispatched. The others are told of the disconnect
 * (event NULL) right then; they must not receive the old connection's event after that notice. */
struct order {
    char seen[8][32];
    int n;
};

static void closer_cb(qmp_client *c, const char *event, json_t *data, json_t *msg, void *payload)
{
    (void)data; (void)msg; (void)payload;
    if (event)
        qmp_client_close(c);
}

static void order_cb(qmp_client *c, const char *event, json_t *data, json_t *msg, void *payload)
{
    struct order *o = payload;
    (void)c; (void)data; (void)msg;
    if (o->n < 8)
        snprintf(o->seen[o->n++], sizeof(o->seen[0]), "%s", event ? event : "(disconnect)");
}

static void test_no_event_after_disconnect_notice(void **state)
{
    struct event_base *base = event_base_new();
    struct qmp_peer_state st;
    struct order o;
    int peer;
    (void)state;
    memset(&o, 0, sizeof(o));
    qmp_client *c = qmp_peer_ready_client(base, &peer, &st);
    assert_int_equal(qmp_subscribe(c, "RESUME", NULL, closer_cb, NULL, NULL), 0);
    assert_int_equal(qmp_subscribe(c, NULL, NULL, order_cb, &o, NULL), 0);
    qmp_peer_write(peer, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"RESUME\"}\r\n");
    for (int i = 0; i < 500 && qmp_client_state(c) == QMP_STATE_READY; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(qmp_client_state(c), QMP_STATE_CLOSED);
    assert_true(o.n >= 1);
    assert_string_equal(o.seen[o.n - 1], "(disconnect)");
    qmp_client_free(c);
    close(peer);
    event_base_free(base);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a peer write to a closed client fails with EPIPE instead */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconnect_from_callback_drops_old_bytes),
        cmocka_unit_test(test_call_from_fail_all_callback_survives),
        cmocka_unit_test(test_no_event_after_disconnect_notice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
