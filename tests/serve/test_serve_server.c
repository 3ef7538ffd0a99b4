/* test_serve_server.c — the daemon's HTTP transport (src/serve/server.c) over a real unix socket against the
 * fake backend: every route and status code of DESIGN §7, ?wait= 200 vs 202 + Location, operations polled
 * and long-polled, Idempotency-Key (also across a restart on the same state dir), the event stream (resume
 * without loss or repeat, ?vm=, events.lost, keep-alives), /metrics, limits (413, a stalled client delays
 * nobody and is cut, bounded connections), peer credentials in the log, the socket (mode, live refused,
 * stale replaced) and shutdown. Everything waits for conditions by pumping the loop; no sleeps. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake_backend.h"
#include "serve/server.h"
#include "support/http_client.h"
#include "support/testutil.h"

#define BOUND 20.0 /* seconds: a failure bound, never a measurement */

struct T {
    struct event_base *base;
    struct fake_backend *fb;
    struct sv_server *s;
    struct sv_server_opts o;
    char *dir;
    char sock[256];
    char log[16384];
};

static void test_log(void *arg, int prio, const char *text)
{
    struct T *t = arg;
    size_t n = strlen(t->log);
    snprintf(t->log + n, sizeof(t->log) - n, "%s\n", text);
}

static void start_server(struct T *t)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = sv_server_new(&t->s, t->base, fake_backend_sv(t->fb), &t->o, &e);
    if (r < 0)
        fail_msg("sv_server_new: %s", e.message);
}

static struct T *setup_with(void (*tweak)(struct sv_server_opts *o))
{
    struct T *t = calloc(1, sizeof(*t));
    t->base = event_base_new();
    t->fb = fake_backend_new(t->base);
    t->dir = smmu_test_mkdtemp("serve");
    snprintf(t->sock, sizeof(t->sock), "%s/api.sock", t->dir);
    sv_server_opts_default(&t->o);
    t->o.listen_path = t->sock;
    t->o.state_dir = t->dir;
    t->o.log = test_log;
    t->o.log_arg = t;
    if (tweak)
        tweak(&t->o);
    start_server(t);
    return t;
}

static int setup(void **state)
{
    *state = setup_with(NULL);
    return 0;
}

static int teardown(void **state)
{
    struct T *t = *state;
    sv_server_free(t->s);
    fake_backend_free(t->fb);
    event_base_free(t->base);
    smmu_test_rmtree(t->dir);
    free(t->dir);
    free(t);
    return 0;
}

/* One request on its own connection; returns the status, r filled. */
static int req(struct T *t, const char *method, const char *target, const char *extra, const char *body,
               struct htc_resp *r)
{
    int rc = htc_request(t->base, t->sock, method, target, extra, body, r);
    if (rc < 0)
        fail_msg("%s %s: %s", method, target, strerror(-rc));
    return rc;
}

static json_t *body_json(const struct htc_resp *r)
{
    json_error_t je;
    json_t *j = json_loads(r->body, 0, &je);
    if (!j)
        fail_msg("not JSON (%s): %s", je.text, r->body);
    return j;
}

static const char *jstr(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_string_value(v);
}

static void register_vm(struct T *t, const char *vm)
{
    struct htc_resp r;
    char target[128];
    snprintf(target, sizeof(target), "/v1/vms/%s", vm);
    assert_int_equal(req(t, "PUT", target, NULL, "{\"qmp\":\"unix:/run/x.qmp\"}", &r), 201);
    htc_resp_free(&r);
}

/* Pump until the server counts n connections (the count must not leak: it bounds them). */
static void await_connections(struct T *t, int n)
{
    for (int i = 0; i < 500 && sv_server_connections(t->s) != n; i++)
        htc_pump(t->base);
    assert_int_equal(sv_server_connections(t->s), n);
}

static void emit(struct T *t, const char *vm, const char *type, json_t *data /* stolen */)
{
    fake_backend_emit(t->fb, vm, type, data);
    json_decref(data);
}

/* ---- routes and status codes ---- */

static void test_health_ready_and_routing(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    char buf[128];
    json_t *j;
    assert_int_equal(req(t, "GET", "/healthz", NULL, NULL, &r), 200);
    htc_resp_free(&r);
    fake_backend_set_ready(t->fb, false);
    assert_int_equal(req(t, "GET", "/readyz", NULL, NULL, &r), 503);
    j = body_json(&r);
    assert_false(json_is_true(json_object_get(j, "ok")));
    assert_string_equal(jstr(j, "error", "code"), "EAGAIN");
    json_decref(j);
    htc_resp_free(&r);
    fake_backend_set_ready(t->fb, true);
    assert_int_equal(req(t, "GET", "/readyz", NULL, NULL, &r), 200);
    htc_resp_free(&r);
    /* 404 and 405 + Allow, as JSON errors */
    assert_int_equal(req(t, "GET", "/v2/nothing", NULL, NULL, &r), 404);
    j = body_json(&r);
    assert_string_equal(jstr(j, "error", "code"), "ENOENT");
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(req(t, "POST", "/v1/vms/a", NULL, "{}", &r), 405);
    assert_non_null(htc_header(&r, "Allow", buf, sizeof(buf)));
    assert_string_equal(buf, "PUT, GET, DELETE");
    htc_resp_free(&r);
    assert_int_equal(req(t, "HEAD", "/healthz", NULL, NULL, &r), 405);
    htc_resp_free(&r);
    /* unknown query parameters and malformed ?wait */
    assert_int_equal(req(t, "GET", "/healthz?x=1", NULL, NULL, &r), 400);
    htc_resp_free(&r);
    register_vm(t, "a");
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach?wait=abc", NULL, "{\"devices\":[\"0009:01:00.0\"]}", &r), 400);
    htc_resp_free(&r);
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach?wait=-1", NULL, "{\"devices\":[\"0009:01:00.0\"]}", &r), 400);
    htc_resp_free(&r);
    assert_int_equal(fake_backend_submitted(t->fb), 0);
    /* every request had its own connection, closed after the reply: none stays counted */
    await_connections(t, 0);
}

static void test_vm_registration(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    json_t *j;
    assert_int_equal(req(t, "PUT", "/v1/vms/vm1", NULL, "{\"qmp\":\"unix:/run/vm1.qmp\",\"fd_pass\":false}", &r), 201);
    j = body_json(&r);
    assert_string_equal(jstr(j, "name", NULL), "vm1");
    assert_string_equal(jstr(j, "state", NULL), "connecting");
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/vm1", NULL, "{\"qmp\":\"unix:/run/vm1.qmp\"}", &r), 200);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/vm1", NULL, "{\"qmp\":\"unix:/run/other.qmp\"}", &r), 409);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/vm2", NULL, "{\"qmp\":\"bad:x\"}", &r), 422);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/vm2", NULL, "{}", &r), 400);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/vm2", NULL, "{\"qmp\":\"unix:/x\",\"fdpass\":true}", &r), 400);
    j = body_json(&r);
    assert_non_null(strstr(jstr(j, "error", "message"), "unknown member 'fdpass'"));
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/vm2", NULL, "{\"qmp\":\"unix:/x\",\"fd_pass\":1}", &r), 400);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/vm2", NULL, "{\"qmp\":", &r), 400);
    htc_resp_free(&r);
    /* the list, one entry with its status, and removal */
    assert_int_equal(req(t, "GET", "/v1/vms", NULL, NULL, &r), 200);
    j = body_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "vms")), 1);
    assert_string_equal(jstr(json_array_get(json_object_get(j, "vms"), 0), "name", NULL), "vm1");
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(req(t, "GET", "/v1/vms/vm1", NULL, NULL, &r), 200);
    j = body_json(&r);
    assert_true(json_is_object(json_object_get(j, "status")));
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(req(t, "GET", "/v1/vms/nope", NULL, NULL, &r), 404);
    htc_resp_free(&r);
    assert_int_equal(req(t, "GET", "/v1/vms/vm1/topology", NULL, NULL, &r), 200);
    htc_resp_free(&r);
    assert_int_equal(req(t, "GET", "/v1/vms/nope/topology", NULL, NULL, &r), 404);
    htc_resp_free(&r);
    fake_backend_set_state(t->fb, "vm1", SV_VM_DISCONNECTED);
    assert_int_equal(req(t, "GET", "/v1/vms/vm1/topology", NULL, NULL, &r), 503);
    htc_resp_free(&r);
    fake_backend_set_busy(t->fb, true);
    assert_int_equal(req(t, "DELETE", "/v1/vms/vm1", NULL, NULL, &r), 409);
    htc_resp_free(&r);
    fake_backend_set_busy(t->fb, false);
    assert_int_equal(req(t, "DELETE", "/v1/vms/vm1", NULL, NULL, &r), 200);
    htc_resp_free(&r);
    assert_int_equal(req(t, "DELETE", "/v1/vms/vm1", NULL, NULL, &r), 404);
    htc_resp_free(&r);
}

static void test_bodies_checked_nothing_submitted(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    static const struct { const char *target, *body; int code; } cases[] = {
        {"/v1/vms/a/attach", "{\"devices\":\"0009:01:00.0\"}", 400},
        {"/v1/vms/a/attach", "{\"devices\":[1]}", 400},
        {"/v1/vms/a/attach", "{\"devices\":[{\"xml\":1}]}", 400},
        {"/v1/vms/a/attach", "{\"devices\":[],\"fd_pass\":true}", 422},
        {"/v1/vms/a/attach", "{\"devices\":[\"x\"],\"ids\":[\"a\",\"b\"]}", 422},
        {"/v1/vms/a/attach", "{\"devices\":[\"x\"],\"iommufd\":3}", 400},
        {"/v1/vms/a/attach", "{\"devices\":[\"x\"],\"bogus\":3}", 400},
        {"/v1/vms/a/attach", "[]", 400},
        {"/v1/vms/a/detach", "{\"devices\":[\"hostdev0\"],\"unplug_timeout\":0}", 422},
        {"/v1/vms/a/detach", "{\"devices\":[\"hostdev0\"],\"unplug_timeout\":\"5\"}", 400},
        {"/v1/vms/a/detach", "{}", 400},
        {"/v1/vms/a/plan", "{\"devices\":[]}", 422},
        {"/v1/vms/nope/attach", "{\"devices\":[\"0009:01:00.0\"]}", 404},
    };
    register_vm(t, "a");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int code = req(t, "POST", cases[i].target, NULL, cases[i].body, &r);
        if (code != cases[i].code)
            fail_msg("%s %s: %d, expected %d: %s", cases[i].target, cases[i].body, code, cases[i].code, r.body);
        htc_resp_free(&r);
    }
    assert_int_equal(req(t, "PUT", "/v1/vms/a/devices", NULL, "{\"devices\":[{\"host\":\"x\",\"idx\":\"y\"}]}", &r), 400);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/a/devices", NULL, "{\"devices\":[\"x\"]}", &r), 400);
    htc_resp_free(&r);
    assert_int_equal(fake_backend_submitted(t->fb), 0);
    /* a valid desired-state PUT (an empty set is valid: detach everything smmuctl plugged) */
    assert_int_equal(req(t, "PUT", "/v1/vms/a/devices", NULL, "{\"devices\":[]}", &r), 200);
    htc_resp_free(&r);
    assert_int_equal(fake_backend_submitted(t->fb), 1);
}

static void test_outcome_status_codes(void **state)
{
    struct T *t = *state;
    static const struct { enum fake_outcome o; int code; const char *err; } cases[] = {
        {FAKE_DONE, 200, NULL},
        {FAKE_REFUSED, 502, "EIO"},
        {FAKE_UNREACHABLE, 503, "ECONNREFUSED"},
        {FAKE_BAD_INPUT, 422, "EINVAL"},
        {FAKE_QUEUE_FULL, 429, "EAGAIN"},
        {FAKE_INCOMPLETE, 202, NULL},
    };
    register_vm(t, "a");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct htc_resp r;
        char loc[128];
        json_t *j;
        fake_backend_next(t->fb, cases[i].o);
        assert_int_equal(req(t, "POST", "/v1/vms/a/attach", NULL, "{\"devices\":[\"0009:01:00.0\"]}", &r),
                         cases[i].code);
        j = body_json(&r);
        if (cases[i].err)
            assert_string_equal(jstr(j, "error", "code"), cases[i].err);
        if (cases[i].code == 200) {
            assert_true(json_is_true(json_object_get(j, "ok")));
            assert_string_equal(jstr(j, "command", NULL), "attach");
        }
        if (cases[i].code == 202) {
            assert_non_null(htc_header(&r, "Location", loc, sizeof(loc)));
            assert_string_equal(jstr(j, "state", NULL), "incomplete");
        }
        json_decref(j);
        htc_resp_free(&r);
    }
    assert_int_equal(fake_backend_submitted(t->fb), 6);
}

/* ?wait: done within the wait → 200; not done → 202 + Location, then GET the operation. */
static void test_wait_200_vs_202(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *c;
    char loc[128], target[160], opid[80];
    uint64_t h;
    json_t *j;
    register_vm(t, "a");
    /* held past ?wait=0.1: 202 + Location */
    fake_backend_next(t->fb, FAKE_HOLD);
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach?wait=0.1", NULL, "{\"devices\":[\"0009:01:00.0\"]}", &r), 202);
    assert_non_null(htc_header(&r, "Location", loc, sizeof(loc)));
    assert_non_null(htc_header(&r, "Smmuctl-Operation", opid, sizeof(opid)));
    snprintf(target, sizeof(target), "/v1/operations/%s", opid);
    assert_string_equal(loc, target);
    j = body_json(&r);
    assert_string_equal(jstr(j, "state", NULL), "running");
    assert_string_equal(jstr(j, "verb", NULL), "attach");
    assert_string_equal(jstr(j, "vm", NULL), "a");
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(req(t, "GET", loc, NULL, NULL, &r), 202); /* still running */
    htc_resp_free(&r);
    /* a long-poll woken by the end */
    c = htc_connect(t->base, t->sock);
    snprintf(target, sizeof(target), "%s?wait=30", loc);
    assert_int_equal(htc_send_request(c, "GET", target, NULL, NULL), 0);
    h = fake_backend_held(t->fb);
    assert_true(h != 0);
    fake_backend_finish(t->fb, h, SV_OP_DONE);
    assert_int_equal(htc_read_response(c, &r, BOUND), 0);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "state", NULL), "done");
    assert_true(json_is_true(json_object_get(json_object_get(j, "result"), "ok")));
    json_decref(j);
    htc_resp_free(&r);
    htc_close(c);
    /* finished while the POST waits (default 30 s): 200 with the CLI's JSON */
    fake_backend_next(t->fb, FAKE_HOLD);
    c = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(c, "POST", "/v1/vms/a/detach", NULL, "{\"devices\":[\"hostdev0\"]}"), 0);
    while (!(h = fake_backend_held(t->fb)))
        htc_pump(t->base);
    fake_backend_finish(t->fb, h, SV_OP_DONE);
    assert_int_equal(htc_read_response(c, &r, BOUND), 0);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "command", NULL), "detach");
    json_decref(j);
    htc_resp_free(&r);
    htc_close(c);
    assert_int_equal(req(t, "GET", "/v1/operations/nope-1", NULL, NULL, &r), 404);
    htc_resp_free(&r);
}

/* A detach whose guest has not released the device: pending (202) until DEVICE_DELETED, then done. */
static void test_pending_then_done(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *ev;
    char loc[128];
    json_t *j;
    register_vm(t, "a");
    ev = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(ev, "GET", "/v1/events", NULL, NULL), 0);
    assert_int_equal(htc_read_head(ev, &r, BOUND), 0);
    htc_resp_free(&r);
    fake_backend_next(t->fb, FAKE_PENDING);
    assert_int_equal(req(t, "POST", "/v1/vms/a/detach?wait=0.1", NULL, "{\"devices\":[\"hostdev0\"]}", &r), 202);
    assert_non_null(htc_header(&r, "Location", loc, sizeof(loc)));
    j = body_json(&r);
    assert_string_equal(jstr(j, "state", NULL), "pending");
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(req(t, "GET", loc, NULL, NULL, &r), 202);
    htc_resp_free(&r);
    emit(t, "a", "device.detached", json_pack("{s:s}", "device", "hostdev0"));
    fake_backend_finish(t->fb, fake_backend_held(t->fb), SV_OP_DONE);
    assert_int_equal(htc_wait_body(ev, "event: operation.finished", BOUND), 0);
    assert_non_null(strstr(htc_body(ev), "event: device.detached"));
    assert_non_null(strstr(htc_body(ev), "\"state\":\"done\""));
    assert_int_equal(req(t, "GET", loc, NULL, NULL, &r), 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "state", NULL), "done");
    json_decref(j);
    htc_resp_free(&r);
    htc_close(ev);
}

/* ---- Idempotency-Key ---- */

static void test_idempotency_key(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *c;
    char id1[80], id2[80], loc[128];
    const char *body = "{\"devices\":[\"0009:01:00.0\"]}";
    const char *same = "{ \"devices\" : [ \"0009:01:00.0\" ] }"; /* the same JSON value */
    register_vm(t, "a");
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", "Idempotency-Key: k1\r\n", body, &r), 200);
    assert_non_null(htc_header(&r, "Smmuctl-Operation", id1, sizeof(id1)));
    htc_resp_free(&r);
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", "Idempotency-Key: k1\r\n", same, &r), 200);
    assert_non_null(htc_header(&r, "Smmuctl-Operation", id2, sizeof(id2)));
    htc_resp_free(&r);
    assert_string_equal(id1, id2);
    assert_int_equal(fake_backend_submitted(t->fb), 1);
    /* the key with another body, or on another route */
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", "Idempotency-Key: k1\r\n", "{\"devices\":[\"0009:02:00.0\"]}", &r), 422);
    htc_resp_free(&r);
    assert_int_equal(req(t, "POST", "/v1/vms/a/detach", "Idempotency-Key: k1\r\n", body, &r), 422);
    htc_resp_free(&r);
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", "Idempotency-Key: \001\r\n", body, &r), 400);
    htc_resp_free(&r);
    /* on the registration PUT (idempotent by itself) the key is kept too: it cannot name another request */
    assert_int_equal(req(t, "PUT", "/v1/vms/b", "Idempotency-Key: r1\r\n", "{\"qmp\":\"unix:/b\"}", &r), 201);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/b", "Idempotency-Key: r1\r\n", "{\"qmp\":\"unix:/b\"}", &r), 200);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/b", "Idempotency-Key: r1\r\n", "{\"qmp\":\"unix:/c\"}", &r), 422);
    htc_resp_free(&r);
    assert_int_equal(req(t, "PUT", "/v1/vms/b", "Idempotency-Key: k1\r\n", "{\"qmp\":\"unix:/b\"}", &r), 422);
    htc_resp_free(&r);
    assert_int_equal(req(t, "POST", "/v1/vms/b/attach", "Idempotency-Key: r1\r\n", body, &r), 422);
    htc_resp_free(&r);
    assert_int_equal(fake_backend_submitted(t->fb), 1);
    /* two requests with one key while the first still runs: one operation */
    fake_backend_next(t->fb, FAKE_HOLD);
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach?wait=0", "Idempotency-Key: k2\r\n", body, &r), 202);
    assert_non_null(htc_header(&r, "Location", loc, sizeof(loc)));
    htc_resp_free(&r);
    c = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(c, "POST", "/v1/vms/a/attach", "Idempotency-Key: k2\r\n", body), 0);
    for (int i = 0; i < 5; i++)
        htc_pump(t->base); /* it waits on the first operation */
    fake_backend_finish(t->fb, fake_backend_held(t->fb), SV_OP_DONE);
    assert_int_equal(htc_read_response(c, &r, BOUND), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(htc_header(&r, "Smmuctl-Operation", id2, sizeof(id2)));
    assert_string_equal(loc + strlen("/v1/operations/"), id2);
    htc_resp_free(&r);
    htc_close(c);
    assert_int_equal(fake_backend_submitted(t->fb), 2);

    /* a restart on the same state dir: the key still names the first operation; nothing runs again */
    sv_server_free(t->s);
    fake_backend_free(t->fb);
    t->fb = fake_backend_new(t->base);
    start_server(t);
    register_vm(t, "a");
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", "Idempotency-Key: k1\r\n", body, &r), 200);
    assert_non_null(htc_header(&r, "Smmuctl-Operation", id2, sizeof(id2)));
    assert_string_equal(id1, id2);
    htc_resp_free(&r);
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", "Idempotency-Key: k1\r\n", "{\"devices\":[]}", &r), 422);
    htc_resp_free(&r);
    snprintf(loc, sizeof(loc), "/v1/operations/%s", id1);
    assert_int_equal(req(t, "GET", loc, NULL, NULL, &r), 200);
    {
        json_t *j = body_json(&r);
        assert_string_equal(jstr(j, "state", NULL), "done");
        json_decref(j);
    }
    htc_resp_free(&r);
    assert_int_equal(fake_backend_submitted(t->fb), 0);
}

/* ---- events ---- */

static void test_events_resume(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *c;
    char ct[64];
    register_vm(t, "a");
    c = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(c, "GET", "/v1/events", NULL, NULL), 0);
    assert_int_equal(htc_read_head(c, &r, BOUND), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(htc_header(&r, "Content-Type", ct, sizeof(ct)), "text/event-stream");
    htc_resp_free(&r);
    emit(t, "a", "vm.connected", NULL);
    emit(t, "a", "device.attached", json_pack("{s:s}", "device", "d1"));
    emit(t, "a", "device.attached", json_pack("{s:s}", "device", "d2"));
    assert_int_equal(htc_wait_body(c, "id: 3\n", BOUND), 0);
    assert_non_null(strstr(htc_body(c), "id: 1\nevent: vm.connected\ndata: {\"vm\":\"a\",\"time\":"));
    htc_close(c);
    /* missed while away: 4 and 5, nothing else, in order */
    emit(t, "a", "device.detached", json_pack("{s:s}", "device", "d1"));
    emit(t, "a", "device.detached", json_pack("{s:s}", "device", "d2"));
    c = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(c, "GET", "/v1/events", "Last-Event-ID: 3\r\n", NULL), 0);
    assert_int_equal(htc_read_head(c, &r, BOUND), 0);
    htc_resp_free(&r);
    assert_int_equal(htc_wait_body(c, "id: 5\n", BOUND), 0);
    emit(t, "a", "vm.disconnected", NULL);
    assert_int_equal(htc_wait_body(c, "id: 6\n", BOUND), 0);
    {
        const char *b = htc_body(c), *p4 = strstr(b, "id: 4\n"), *p5 = strstr(b, "id: 5\n"), *p6 = strstr(b, "id: 6\n");
        assert_null(strstr(b, "id: 3\n"));
        assert_null(strstr(b, "id: 1\n"));
        assert_null(strstr(b, "events.lost"));
        assert_true(p4 && p5 && p6 && p4 < p5 && p5 < p6);
        assert_null(strstr(p4 + 1, "id: 4\n")); /* once each */
        assert_null(strstr(p5 + 1, "id: 5\n"));
    }
    htc_close(c);
    /* malformed Last-Event-ID */
    assert_int_equal(req(t, "GET", "/v1/events", "Last-Event-ID: x\r\n", NULL, &r), 400);
    htc_resp_free(&r);
}

static void tweak_small_ring(struct sv_server_opts *o)
{
    o->events_ring = 4;
    o->keepalive_s = 0.05;
}

static int setup_small_ring(void **state)
{
    *state = setup_with(tweak_small_ring);
    return 0;
}

static void test_events_filter_lost_keepalive(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *c;
    c = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(c, "GET", "/v1/events?vm=a", NULL, NULL), 0);
    assert_int_equal(htc_read_head(c, &r, BOUND), 0);
    htc_resp_free(&r);
    emit(t, "b", "vm.connected", NULL);
    emit(t, "a", "vm.connected", NULL);
    assert_int_equal(htc_wait_body(c, "id: 2\n", BOUND), 0);
    assert_null(strstr(htc_body(c), "id: 1\n"));
    assert_int_equal(htc_wait_body(c, ": keep-alive\n\n", BOUND), 0);
    htc_close(c);
    for (int i = 0; i < 8; i++)
        emit(t, "a", "device.attached", NULL); /* ids 3..10; the ring keeps 7..10 */
    c = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(c, "GET", "/v1/events", "Last-Event-ID: 2\r\n", NULL), 0);
    assert_int_equal(htc_read_head(c, &r, BOUND), 0);
    htc_resp_free(&r);
    assert_int_equal(htc_wait_body(c, "id: 10\n", BOUND), 0);
    {
        const char *b = htc_body(c), *lost = strstr(b, "event: events.lost"), *first = strstr(b, "id: 7\n");
        assert_non_null(lost);
        assert_non_null(first);
        assert_true(lost < first);
        assert_null(strstr(b, "id: 6\n"));
    }
    htc_close(c);
}

/* ---- metrics and the log ---- */

static void test_metrics_and_peer_log(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    char ct[128], line[128];
    register_vm(t, "a");
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", NULL, "{\"devices\":[\"0009:01:00.0\"]}", &r), 200);
    htc_resp_free(&r);
    fake_backend_next(t->fb, FAKE_REFUSED);
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", NULL, "{\"devices\":[\"0009:01:00.0\"]}", &r), 502);
    htc_resp_free(&r);
    assert_int_equal(req(t, "GET", "/metrics", NULL, NULL, &r), 200);
    assert_non_null(htc_header(&r, "Content-Type", ct, sizeof(ct)));
    assert_non_null(strstr(ct, "text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body, "smmuctl_vms{state=\"connecting\"} 1\n"));
    assert_non_null(strstr(r.body, "smmuctl_transactions_total{verb=\"attach\",outcome=\"done\"} 1\n"));
    assert_non_null(strstr(r.body, "smmuctl_transactions_total{verb=\"attach\",outcome=\"rolled-back\"} 1\n"));
    assert_non_null(strstr(r.body, "smmuctl_rollbacks_total 1\n"));
    assert_non_null(strstr(r.body, "smmuctl_api_requests_total{route=\"/v1/vms/{vm}\",code=\"201\"} 1\n"));
    assert_non_null(strstr(r.body, "smmuctl_api_requests_total{route=\"/v1/vms/{vm}/attach\",code=\"502\"} 1\n"));
    assert_non_null(strstr(r.body, "smmuctl_build_info{version=\""));
    htc_resp_free(&r);
    snprintf(line, sizeof(line), "POST /v1/vms/a/attach from uid %ld pid %ld", (long)getuid(), (long)getpid());
    assert_non_null(strstr(t->log, line));
    snprintf(line, sizeof(line), "PUT /v1/vms/a from uid %ld pid %ld", (long)getuid(), (long)getpid());
    assert_non_null(strstr(t->log, line));
    assert_null(strstr(t->log, "GET /metrics from")); /* only mutating requests */
}

/* ---- limits ---- */

static void test_body_too_large(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    size_t n = 1024 * 1024 + 1;
    char *big = malloc(n + 1);
    register_vm(t, "a");
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = 0;
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", NULL, big, &r), 413);
    htc_resp_free(&r);
    big[n - 2] = '}';
    big[n - 1] = 0; /* exactly 1 MiB: accepted (and refused for its content) */
    assert_int_equal(req(t, "POST", "/v1/vms/a/attach", NULL, big, &r), 400);
    htc_resp_free(&r);
    free(big);
    assert_int_equal(fake_backend_submitted(t->fb), 0);
    /* headers over 16 KiB: refused (400, libevent's reply) without reaching a route */
    {
        size_t hn = 20 * 1024;
        char *hdr = malloc(hn + 32);
        struct htc *c = htc_connect(t->base, t->sock);
        snprintf(hdr, 32, "X-Pad: ");
        memset(hdr + 7, 'a', hn);
        memcpy(hdr + 7 + hn, "\r\n", 3);
        assert_int_equal(htc_send_request(c, "PUT", "/v1/vms/x", hdr, "{\"qmp\":\"unix:/x\"}"), 0);
        assert_int_equal(htc_read_response(c, &r, BOUND), 0);
        assert_int_equal(r.status, 400);
        htc_resp_free(&r);
        htc_close(c);
        free(hdr);
    }
    /* garbage instead of a request line: 400, and the server goes on */
    {
        struct htc *c = htc_connect(t->base, t->sock);
        assert_int_equal(htc_send(c, "\001\002 nonsense\r\n\r\n", 16), 0);
        assert_int_equal(htc_read_response(c, &r, BOUND), 0);
        assert_int_equal(r.status, 400);
        htc_resp_free(&r);
        htc_close(c);
    }
    assert_int_equal(req(t, "GET", "/v1/vms/x", NULL, NULL, &r), 404); /* the PUT never ran */
    htc_resp_free(&r);
}

static void tweak_short_timeouts(struct sv_server_opts *o)
{
    o->idle_timeout_s = 0.3;
    o->max_connections = 3;
}

static int setup_short(void **state)
{
    *state = setup_with(tweak_short_timeouts);
    return 0;
}

/* A client that sends half a request delays nobody and is cut by the idle timeout. */
static void test_stalled_client(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *slow = htc_connect(t->base, t->sock), *fast;
    const char *half = "POST /v1/vms/a/attach HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"dev";
    assert_int_equal(htc_send(slow, half, strlen(half)), 0);
    for (int i = 0; i < 3; i++)
        htc_pump(t->base); /* the server reads the half request */
    fast = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(fast, "GET", "/healthz", NULL, NULL), 0);
    assert_int_equal(htc_read_response(fast, &r, BOUND), 0);
    assert_int_equal(r.status, 200);
    htc_resp_free(&r);
    assert_string_equal(htc_body(slow), ""); /* nothing for the stalled one yet */
    /* keep-alive: the fast client's second request on the same connection */
    assert_int_equal(htc_send_request(fast, "GET", "/v1/vms", NULL, NULL), 0);
    assert_int_equal(htc_read_response(fast, &r, BOUND), 0);
    assert_int_equal(r.status, 200);
    htc_resp_free(&r);
    assert_int_equal(htc_wait_closed(slow, BOUND), 0);
    htc_close(slow);
    await_connections(t, 1); /* the fast one, kept alive */
    assert_int_equal(htc_wait_closed(fast, BOUND), 0); /* and cut once idle */
    await_connections(t, 0);
    htc_close(fast);
    assert_int_equal(fake_backend_submitted(t->fb), 0);
}

/* At max_connections (connections with a request in progress, kept alive or streaming), a request on a
 * further connection is answered 503 and that connection closed; once one leaves, a new one is served. */
static void test_connection_bound(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *c[3], *extra;
    char buf[64];
    for (int i = 0; i < 3; i++) {
        c[i] = htc_connect(t->base, t->sock);
        assert_int_equal(htc_send_request(c[i], "GET", i == 0 ? "/v1/events" : "/healthz", NULL, NULL), 0);
        assert_int_equal(i == 0 ? htc_read_head(c[i], &r, BOUND) : htc_read_response(c[i], &r, BOUND), 0);
        assert_int_equal(r.status, 200);
        htc_resp_free(&r);
    }
    assert_int_equal(sv_server_connections(t->s), 3);
    extra = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(extra, "GET", "/healthz", NULL, NULL), 0);
    assert_int_equal(htc_read_response(extra, &r, BOUND), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(htc_header(&r, "Connection", buf, sizeof(buf)), "close");
    htc_resp_free(&r);
    assert_int_equal(htc_wait_closed(extra, BOUND), 0);
    htc_close(extra);
    /* the stream's client leaves: noticed on the next write (an event here), and the slot is free again */
    htc_close(c[0]);
    emit(t, NULL, "vm.connected", NULL);
    while (sv_server_connections(t->s) > 2)
        htc_pump(t->base);
    assert_int_equal(req(t, "GET", "/healthz", NULL, NULL, &r), 200);
    htc_resp_free(&r);
    htc_close(c[1]); /* kept-alive clients leaving */
    htc_close(c[2]);
    await_connections(t, 0);
}

/* ---- the socket ---- */

static void test_socket_mode_live_stale(void **state)
{
    struct T *t = *state;
    struct stat st;
    struct sv_server *s2 = NULL;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;
    assert_int_equal(stat(t->sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* live: refused, and the running server keeps its socket */
    assert_int_equal(sv_server_new(&s2, t->base, fake_backend_sv(t->fb), &t->o, &e), -EADDRINUSE);
    assert_non_null(strstr(e.message, "another daemon is accepting"));
    assert_int_equal(stat(t->sock, &st), 0);
    assert_ptr_equal(fake_backend_sv(t->fb)->events.arg, t->s); /* the refused one took nothing */
    /* stale: a socket file nobody accepts on is replaced */
    sv_server_free(t->s);
    t->s = NULL;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->sock);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(stat(t->sock, &st), 0);
    start_server(t);
    {
        struct htc_resp r;
        assert_int_equal(req(t, "GET", "/healthz", NULL, NULL, &r), 200);
        htc_resp_free(&r);
    }
    /* --group: 0660 and the group (one that exists here: our own), an unknown group refused */
    {
        struct sv_server_opts o = t->o;
        struct group *gr = getgrgid(getegid());
        struct fake_backend *fb2 = fake_backend_new(t->base); /* its own: a server takes its backend's events */
        char gsock[300];
        assert_non_null(gr);
        snprintf(gsock, sizeof(gsock), "%s/group.sock", t->dir);
        o.listen_path = gsock;
        o.group = gr->gr_name;
        assert_int_equal(sv_server_new(&s2, t->base, fake_backend_sv(fb2), &o, &e), 0);
        assert_int_equal(stat(gsock, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0660);
        assert_int_equal(st.st_gid, gr->gr_gid);
        sv_server_free(s2);
        s2 = NULL;
        assert_int_equal(stat(gsock, &st), -1); /* removed when the server goes */
        o.group = "no-such-group-smmuctl";
        assert_int_equal(sv_server_new(&s2, t->base, fake_backend_sv(fb2), &o, &e), -EINVAL);
        assert_non_null(strstr(e.message, "--group no-such-group-smmuctl: no such group"));
        fake_backend_free(fb2);
    }
    /* not a socket: left alone */
    {
        char other[300];
        struct sv_server_opts o = t->o;
        FILE *f;
        snprintf(other, sizeof(other), "%s/file", t->dir);
        f = fopen(other, "w");
        fclose(f);
        o.listen_path = other;
        assert_int_equal(sv_server_new(&s2, t->base, fake_backend_sv(t->fb), &o, &e), -EEXIST);
        assert_int_equal(stat(other, &st), 0);
        assert_true(S_ISREG(st.st_mode));
    }
}

/* ---- shutdown ---- */

static void on_done(void *arg)
{
    *(bool *)arg = true;
}

static void test_shutdown(void **state)
{
    struct T *t = *state;
    struct htc_resp r;
    struct htc *waiting, *keep;
    struct stat st;
    bool done = false;
    int deadline = 0;
    register_vm(t, "a");
    keep = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(keep, "GET", "/healthz", NULL, NULL), 0);
    assert_int_equal(htc_read_response(keep, &r, BOUND), 0);
    htc_resp_free(&r);
    fake_backend_next(t->fb, FAKE_HOLD);
    waiting = htc_connect(t->base, t->sock);
    assert_int_equal(htc_send_request(waiting, "POST", "/v1/vms/a/attach", NULL, "{\"devices\":[\"x\"]}"), 0);
    while (!fake_backend_held(t->fb))
        htc_pump(t->base);
    sv_server_shutdown(t->s, on_done, &done);
    assert_int_equal(fake_backend_shutdowns(t->fb, &deadline), 1);
    assert_int_equal(deadline, 10000);
    assert_int_equal(stat(t->sock, &st), -1); /* no new connections */
    assert_int_equal(errno, ENOENT);
    /* an open connection may still ask, but nothing new starts */
    assert_int_equal(htc_send_request(keep, "POST", "/v1/vms/a/attach", NULL, "{\"devices\":[\"x\"]}"), 0);
    assert_int_equal(htc_read_response(keep, &r, BOUND), 0);
    assert_int_equal(r.status, 503);
    htc_resp_free(&r);
    assert_int_equal(htc_send_request(keep, "GET", "/readyz", NULL, NULL), 0); /* not ready while stopping */
    assert_int_equal(htc_read_response(keep, &r, BOUND), 0);
    assert_int_equal(r.status, 503);
    htc_resp_free(&r);
    assert_false(done);
    /* the in-flight operation finishes: its waiter gets 200, then the server is done */
    fake_backend_finish(t->fb, fake_backend_held(t->fb), SV_OP_DONE);
    assert_int_equal(htc_read_response(waiting, &r, BOUND), 0);
    assert_int_equal(r.status, 200);
    htc_resp_free(&r);
    while (!done)
        htc_pump(t->base);
    assert_int_equal(fake_backend_submitted(t->fb), 1);
    htc_close(waiting);
    htc_close(keep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_ready_and_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vm_registration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bodies_checked_nothing_submitted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcome_status_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_200_vs_202, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_then_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_filter_lost_keepalive, setup_small_ring, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_and_peer_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_client, setup_short, teardown),
        cmocka_unit_test_setup_teardown(test_connection_bound, setup_short, teardown),
        cmocka_unit_test_setup_teardown(test_socket_mode_live_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN); /* as the daemon: a client gone mid-stream is a write error, not a signal */
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
