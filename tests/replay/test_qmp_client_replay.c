/* test_qmp_client_replay.c — the real QMP client (src/qmp/client.c) against replayed QEMU transcripts.
 *
 * Recorded fixtures (a64-*) check that the client speaks to QEMU 11 exactly as the transcripts show; synthetic
 * ones (syn-*) provoke what QEMU cannot be made to do here (reordering, silence, disconnects, junk). Every test
 * ends with the replay server's verdict: the client sent exactly the fixture's C: lines and nothing else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"
#include "replay/replay_fixture.h"
#include "replay/replay_server.h"
#include "support/testutil.h"

#define PUMP_MS 5000

struct rig {
    struct event_base *base;
    qmp_client *c;
    struct replay_server *s;
    char fixture[512];
    bool state_done;
    int state_calls, state_err;
    struct smmu_error state_e;
    char log[8192];
    int seq;                 /* callback order */
};

struct call {
    struct rig *rig;
    bool done;
    int err, order;
    json_t *ret;
    struct smmu_error e;
};

static void rig_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    struct rig *r = payload;
    (void)c;
    r->state_done = true;
    r->state_calls++;
    r->state_err = err;
    smmu_error_copy(&r->state_e, e);
}

static void rig_log(int level, const char *msg, void *payload)
{
    struct rig *r = payload;
    size_t l = strlen(r->log);
    snprintf(r->log + l, sizeof(r->log) - l, "[%d] %s\n", level, msg);
}

static void rig_start(struct rig *r, const char *name, const struct qmp_client_opts *opts)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    int fd;

    memset(r, 0, sizeof(*r));
    if (opts)
        o = *opts;
    o.log = rig_log;
    o.log_payload = r;
    if (name[0] == '/')
        snprintf(r->fixture, sizeof(r->fixture), "%s", name);
    else
        snprintf(r->fixture, sizeof(r->fixture), "%s/%s", SMMU_FIXTURES_DIR, name);
    if (replay_server_start_opts(&r->s, r->fixture, NULL, &fd, NULL, &err) < 0)
        fail_msg("%s", err.message);
    assert_non_null(r->base = event_base_new());
    assert_int_equal(qmp_client_new(&r->c, r->base, &o), 0);
    assert_int_equal(qmp_client_connect_fd(r->c, fd, rig_state_cb, r), 0);
}

static void rig_pump(struct rig *r, const bool *flag)
{
    if (qmp_pump_until(r->base, flag, PUMP_MS) < 0)
        fail_msg("%s: the awaited outcome did not come within %d ms; replay server says:\n%s", r->fixture, PUMP_MS,
                 replay_server_wait(r->s, 0) ? replay_server_report(r->s) : "(matched so far)");
}

static void rig_connect(struct rig *r)
{
    rig_pump(r, &r->state_done);
    if (r->state_err)
        fail_msg("connect: %s (%d)", r->state_e.message, r->state_err);
    assert_int_equal(qmp_client_state(r->c), QMP_STATE_READY);
    r->state_done = false;
}

/* Free the client (closing its socket) and require the replay to have matched exactly. */
static void rig_finish(struct rig *r)
{
    /* let the server deliver trailing S: lines (events after the last reply) before the client goes away */
    replay_server_wait_played(r->s, PUMP_MS);
    qmp_client_free(r->c);
    r->c = NULL;
    if (replay_server_wait(r->s, PUMP_MS) != 0)
        fail_msg("%s", replay_server_report(r->s));
    replay_server_free(r->s);
    event_base_free(r->base);
}

/* qmp_call_sync that must succeed; on failure shows the client's error and the replay server's report. */
static json_t *rig_call_ok(struct rig *r, const char *cmd, json_t *args)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    json_t *ret = NULL;
    if (qmp_call_sync(r->c, cmd, args, NULL, 0, &ret, &err) < 0)
        fail_msg("%s: %s\nreplay server: %s", cmd, err.message,
                 replay_server_wait(r->s, 0) ? replay_server_report(r->s) : "matched so far");
    return ret;
}

static void call_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct call *k = payload;
    (void)c;
    assert_false(k->done);   /* exactly one callback per call */
    k->done = true;
    k->err = err;
    k->order = ++k->rig->seq;
    k->ret = ret ? json_incref(ret) : NULL;
    smmu_error_copy(&k->e, e);
}

static void call_start(struct rig *r, struct call *k, const char *cmd, json_t *args, int timeout_ms)
{
    memset(k, 0, sizeof(*k));
    k->rig = r;
    assert_int_equal(qmp_call(r->c, cmd, args, NULL, 0, timeout_ms, call_cb, k), 0);
}

static void call_clear(struct call *k)
{
    json_decref(k->ret);
    k->ret = NULL;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected to find \"%s\" in:\n%s", needle, hay);
}

/* JSON equality where numbers compare by value (the client reads QEMU's uint64 values as reals). */
static bool json_same(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *v;
        if (json_object_size(a) != json_object_size(b))
            return false;
        json_object_foreach(a, k, v)
            if (!json_object_get(b, k) || !json_same(v, json_object_get(b, k)))
                return false;
        return true;
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!json_same(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    return json_equal(a, b);
}

/* ---------- recorded transcripts ---------- */

static void test_greeting_and_negotiation(void **state)
{
    struct rig r;
    json_t *ret;
    (void)state;

    rig_start(&r, "a64-01c-client-session.txt", NULL);
    assert_int_equal(qmp_client_state(r.c), QMP_STATE_GREETING);
    rig_connect(&r);
    const struct qmp_greeting *g = qmp_client_greeting(r.c);
    assert_int_equal(g->major, 11);
    assert_int_equal(g->minor, 1);
    assert_int_equal(g->micro, 3);
    assert_string_equal(g->package, "Debian 1:11.1.3+ds-1~bpo13+1");
    assert_true(g->oob);

    ret = rig_call_ok(&r, "query-version", NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ret, "qemu"), "major")), 11);
    json_decref(ret);
    ret = rig_call_ok(&r, "query-status", NULL);
    assert_string_equal(json_string_value(json_object_get(ret, "status")), "prelaunch");
    json_decref(ret);
    ret = rig_call_ok(&r, "query-target", NULL);
    assert_string_equal(json_string_value(json_object_get(ret, "arch")), "aarch64");
    json_decref(ret);
    ret = rig_call_ok(&r, "query-name", NULL);
    assert_int_equal(json_object_size(ret), 0);
    json_decref(ret);
    json_decref(rig_call_ok(&r, "query-uuid", NULL));
    assert_int_equal(qmp_client_pending(r.c), 0);
    rig_finish(&r);
}

static void test_oob_negotiation(void **state)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    json_t *ret;
    struct rig r;
    (void)state;

    o.negotiate_oob = true;
    rig_start(&r, "a64-13a-oob-negotiation.txt", &o);
    rig_connect(&r);
    ret = rig_call_ok(&r, "query-status", NULL);
    assert_false(json_is_true(json_object_get(ret, "running")));
    json_decref(ret);
    rig_finish(&r);
}

/* Drive the client through every C: line of a recorded transcript (one call at a time, fds as the fixture's
 * !fds say) and check each outcome against the S: reply that follows it. */
static void drive_transcript_rec(const char *name, FILE *record)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct replay_fixture *fx;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct rig r;
    bool negotiated = false;
    int calls = 0;

    char path[512];
    if (name[0] == '/')
        snprintf(path, sizeof(path), "%s", name);
    else
        snprintf(path, sizeof(path), "%s/%s", SMMU_FIXTURES_DIR, name);
    if (replay_fixture_load(&fx, path, &err) < 0)
        fail_msg("%s", err.message);
    o.record = record;
    rig_start(&r, name, &o);
    rig_connect(&r);
    for (size_t i = 0; i < fx->n; i++) {
        const struct replay_item *it = &fx->items[i];
        if (it->kind != REPLAY_ITEM_EXPECT)
            continue;
        json_t *cmd = it->json;
        const char *ex = json_string_value(json_object_get(cmd, "execute"));
        assert_non_null(ex);
        if (!negotiated && !strcmp(ex, "qmp_capabilities")) {
            negotiated = true;   /* the client did that while connecting */
            continue;
        }
        json_t *reply = NULL;
        for (size_t j = i + 1; j < fx->n && !reply; j++) {
            json_t *m = fx->items[j].json;
            if (fx->items[j].kind == REPLAY_ITEM_SEND && m &&
                (json_object_get(m, "return") || json_object_get(m, "error")))
                reply = m;
        }
        assert_non_null(reply);

        int fds[16];
        assert_true(it->nfds <= 16);
        for (int k = 0; k < it->nfds; k++)
            assert_true((fds[k] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
        json_t *args = json_object_get(cmd, "arguments");
        json_t *ret = NULL;
        smmu_error_clear(&err);
        int rc = qmp_call_sync(r.c, ex, args ? json_deep_copy(args) : NULL, fds, (size_t)it->nfds, &ret, &err);
        for (int k = 0; k < it->nfds; k++)
            close(fds[k]);
        json_t *error = json_object_get(reply, "error");
        if (error) {
            if (rc != -EIO)
                fail_msg("%s:%d: %s: expected QEMU's error, got %d (%s)", name, it->line, ex, rc, err.message);
            assert_string_equal(err.qmp_class, json_string_value(json_object_get(error, "class")));
            assert_string_equal(err.qmp_desc, json_string_value(json_object_get(error, "desc")));
        } else {
            if (rc != 0)
                fail_msg("%s:%d: %s failed: %s\nreplay server: %s", name, it->line, ex, err.message,
                         replay_server_wait(r.s, 0) ? replay_server_report(r.s) : "matched so far");
            if (!json_same(ret, json_object_get(reply, "return")))
                fail_msg("%s:%d: %s: the client returned something else than the fixture's reply", name, it->line, ex);
        }
        json_decref(ret);
        calls++;
    }
    assert_true(calls > 0);
    rig_finish(&r);
    replay_fixture_free(fx);
}

static void drive_transcript(const char *name)
{
    drive_transcript_rec(name, NULL);
}

static void test_fd_passing_a64_08(void **state)
{
    (void)state;
    drive_transcript("a64-08-fd-passing.txt");
}

/* QOM discovery replies with QEMU's uint64 values (18446744073709551615) and the device_del/event session. */
static void test_recorded_sessions(void **state)
{
    (void)state;
    drive_transcript("a64-15-topology-discovery.txt");
    drive_transcript("a64-10-device-del-events.txt");
}

/* What the client's recorder (--record) writes is a fixture: replaying it against the client matches exactly. */
static void test_recorder_round_trip(void **state)
{
    char *dir = smmu_test_mkdtemp("record"), path[512];
    FILE *rec;
    (void)state;

    snprintf(path, sizeof(path), "%s/a64-08-recorded.txt", dir);
    assert_non_null(rec = fopen(path, "w"));
    drive_transcript_rec("a64-08-fd-passing.txt", rec);
    fclose(rec);
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_true(getdelim(&text, &len, '\0', f) > 0);
    fclose(f);
    assert_non_null(strstr(text, "!fds 2\nC: {\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"two\"}"));
    free(text);
    drive_transcript(path);
    smmu_test_rmtree(dir);
    free(dir);
}

struct ev_seen {
    struct rig *rig;
    int order, count, disconnects;
    char device[64];
};

static void ev_cb(qmp_client *c, const char *event, json_t *data, json_t *msg, void *payload)
{
    struct ev_seen *e = payload;
    (void)c; (void)msg;
    if (!event) {
        e->disconnects++;
        return;
    }
    e->count++;
    e->order = ++e->rig->seq;
    snprintf(e->device, sizeof(e->device), "%s", json_string_value(json_object_get(data, "device")) ?: "");
}

/* Recorded: DEVICE_DELETED before the device_del reply. The subscription made before sending sees it. */
static void test_event_before_reply(void **state)
{
    struct ev_seen seen = {0}, other = {0};
    struct call del;
    struct rig r;
    (void)state;

    rig_start(&r, "a64-16a-event-before-reply.txt", NULL);
    rig_connect(&r);
    seen.rig = other.rig = &r;
    json_decref(rig_call_ok(&r, "netdev_add", json_pack("{s:s,s:s}", "type", "user", "id", "hn0")));
    json_decref(rig_call_ok(&r, "device_add", json_pack("{s:s,s:s,s:s,s:s,s:s}", "driver", "e1000e", "netdev", "hn0",
                                                        "bus", "rp1a", "addr", "0x0", "id", "np32")));
    assert_int_equal(qmp_subscribe(r.c, "DEVICE_DELETED", "np32", ev_cb, &seen, NULL), 0);
    assert_int_equal(qmp_subscribe(r.c, "DEVICE_DELETED", "np31", ev_cb, &other, NULL), 0);
    call_start(&r, &del, "device_del", json_pack("{s:s}", "id", "np32"), 0);
    rig_pump(&r, &del.done);
    assert_int_equal(del.err, 0);
    assert_int_equal(seen.count, 1);
    assert_string_equal(seen.device, "np32");
    assert_true(seen.order < del.order);   /* the event was delivered first, as it arrived */
    assert_int_equal(other.count, 0);      /* filtered by data.device */
    call_clear(&del);
    rig_finish(&r);
}

/* a64-02: a monitor held by another client accepts the connection and stays silent. */
static void test_silent_monitor(void **state)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct rig r;
    (void)state;

    o.connect_timeout_ms = 100;
    rig_start(&r, "a64-02c-silent-monitor.txt", &o);
    rig_pump(&r, &r.state_done);
    assert_int_equal(r.state_err, -ETIMEDOUT);
    assert_contains(r.state_e.message, "another client");
    assert_int_equal(qmp_client_state(r.c), QMP_STATE_CLOSED);
    rig_finish(&r);
}

/* ---------- synthetic fixtures ---------- */

static void test_out_of_order_replies(void **state)
{
    struct call a, b;
    struct rig r;
    (void)state;

    rig_start(&r, "syn-out-of-order-replies.txt", NULL);
    rig_connect(&r);
    call_start(&r, &a, "query-status", NULL, 0);
    call_start(&r, &b, "query-name", NULL, 0);
    assert_int_equal(qmp_client_pending(r.c), 2);
    rig_pump(&r, &a.done);
    assert_true(b.done);
    assert_int_equal(a.err, 0);
    assert_int_equal(b.err, 0);
    assert_true(b.order < a.order);
    assert_string_equal(json_string_value(json_object_get(b.ret, "name")), "vm1");
    assert_string_equal(json_string_value(json_object_get(a.ret, "status")), "running");
    call_clear(&a);
    call_clear(&b);
    rig_finish(&r);
}

static void test_command_timeout_and_late_reply(void **state)
{
    struct call slow, next;
    struct rig r;
    (void)state;

    rig_start(&r, "syn-command-timeout.txt", NULL);
    rig_connect(&r);
    call_start(&r, &slow, "query-status", NULL, 50);
    rig_pump(&r, &slow.done);
    assert_int_equal(slow.err, -ETIMEDOUT);
    assert_null(slow.ret);
    assert_contains(slow.e.message, "query-status");
    assert_int_equal(qmp_client_pending(r.c), 0);
    call_start(&r, &next, "query-name", NULL, 0);
    rig_pump(&r, &next.done);
    assert_int_equal(next.err, 0);   /* the late reply to "slow" did not satisfy this call */
    assert_string_equal(json_string_value(json_object_get(next.ret, "name")), "vm1");
    assert_contains(r.log, "unknown id");
    assert_int_equal(qmp_client_state(r.c), QMP_STATE_READY);
    call_clear(&next);
    rig_finish(&r);
}

static void test_unknown_reply_id_dropped(void **state)
{
    struct call q;
    struct rig r;
    (void)state;

    rig_start(&r, "syn-unknown-reply-id.txt", NULL);
    rig_connect(&r);
    call_start(&r, &q, "query-status", NULL, 0);
    rig_pump(&r, &q.done);
    assert_int_equal(q.err, 0);
    assert_string_equal(json_string_value(json_object_get(q.ret, "status")), "running");
    assert_contains(r.log, "unknown id \"not-ours\"");
    call_clear(&q);
    rig_finish(&r);
}

static void test_disconnect_with_calls_pending(void **state)
{
    struct ev_seen all = {0};
    struct call d1, d2;
    struct rig r;
    (void)state;

    rig_start(&r, "syn-disconnect-pending.txt", NULL);
    rig_connect(&r);
    all.rig = &r;
    assert_int_equal(qmp_subscribe(r.c, NULL, NULL, ev_cb, &all, NULL), 0);
    call_start(&r, &d1, "device_del", json_pack("{s:s}", "id", "hostdev0"), 0);
    call_start(&r, &d2, "query-status", NULL, 0);
    rig_pump(&r, &d2.done);
    assert_true(d1.done);
    assert_int_equal(d1.err, -ECONNRESET);
    assert_int_equal(d2.err, -ECONNRESET);
    assert_string_equal(d1.e.step, "device_del");
    assert_int_equal(all.disconnects, 1);   /* subscribers are told, once */
    assert_int_equal(r.state_err, -ECONNRESET);
    assert_int_equal(qmp_client_state(r.c), QMP_STATE_CLOSED);
    assert_int_equal(qmp_call(r.c, "query-status", NULL, NULL, 0, 0, call_cb, &d1), -ENOTCONN);
    rig_finish(&r);
}

static void test_idless_error_fails_pending(void **state)
{
    struct call p1, p2;
    struct rig r;
    (void)state;

    rig_start(&r, "syn-idless-error.txt", NULL);
    rig_connect(&r);
    call_start(&r, &p1, "query-status", NULL, 0);
    call_start(&r, &p2, "query-name", NULL, 0);
    rig_pump(&r, &p2.done);
    assert_true(p1.done);
    assert_int_equal(p1.err, -EPROTO);
    assert_int_equal(p2.err, -EPROTO);
    assert_contains(p1.e.message, "JSON parse error, expecting value");
    /* the connection itself survives; the late reply to p1 is dropped */
    assert_int_equal(qmp_client_state(r.c), QMP_STATE_READY);
    call_start(&r, &p1, "query-uuid", NULL, 0);
    rig_pump(&r, &p1.done);
    assert_int_equal(p1.err, 0);
    assert_string_equal(json_string_value(json_object_get(p1.ret, "UUID")), "00000000-0000-0000-0000-000000000000");
    assert_contains(r.log, "unknown id");
    call_clear(&p1);
    rig_finish(&r);
}

static void test_not_qmp_greeting(void **state)
{
    struct rig r;
    (void)state;

    rig_start(&r, "syn-not-qmp-greeting.txt", NULL);
    rig_pump(&r, &r.state_done);
    assert_int_equal(r.state_err, -EPROTO);
    assert_contains(r.state_e.message, "not a QMP monitor");
    assert_int_equal(qmp_client_state(r.c), QMP_STATE_CLOSED);
    rig_finish(&r);
}

static void test_oversize_message(void **state)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct call big;
    struct rig r;
    (void)state;

    o.max_message = 1024;
    rig_start(&r, "syn-oversize-message.txt", &o);
    rig_connect(&r);
    call_start(&r, &big, "qom-list", json_pack("{s:s}", "path", "/machine/peripheral"), 0);
    rig_pump(&r, &big.done);
    assert_int_equal(big.err, -EMSGSIZE);
    assert_contains(big.e.message, "1024");
    assert_int_equal(qmp_client_state(r.c), QMP_STATE_CLOSED);
    assert_int_equal(r.state_err, -EMSGSIZE);
    rig_finish(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_and_negotiation),
        cmocka_unit_test(test_oob_negotiation),
        cmocka_unit_test(test_fd_passing_a64_08),
        cmocka_unit_test(test_recorded_sessions),
        cmocka_unit_test(test_recorder_round_trip),
        cmocka_unit_test(test_event_before_reply),
        cmocka_unit_test(test_silent_monitor),
        cmocka_unit_test(test_out_of_order_replies),
        cmocka_unit_test(test_command_timeout_and_late_reply),
        cmocka_unit_test(test_unknown_reply_id_dropped),
        cmocka_unit_test(test_disconnect_with_calls_pending),
        cmocka_unit_test(test_idless_error_fails_pending),
        cmocka_unit_test(test_not_qmp_greeting),
        cmocka_unit_test(test_oversize_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
