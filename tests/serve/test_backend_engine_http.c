/* test_backend_engine_http.c — the whole daemon in one process: the HTTP transport (serve/server.h) on the real
 * engine backend (serve/backend_engine.h) against qmp-sim, driven over its unix socket. What the transport
 * tests prove with the fake backend, here once with the engine: registration, /readyz after the reconcile,
 * attach → 200 with the CLI's JSON and events on the stream, a refused plan → 422 with nothing sent, an
 * Idempotency-Key repeat that sends nothing — also after both the server and the backend are restarted on
 * the same state dir (the VM taken back from <state>/vms/) — and detach. Waits are for conditions. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "serve/backend_engine.h"
#include "serve/server.h"
#include "support/fakesys.h"
#include "support/http_client.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define BOUND 60.0

static const char BDF[] = "0009:01:00.0";

struct W {
    char *tmp;
    char state[4200], sock[4200], api[4300];
    struct fakesys *fs;
    struct event_base *base;
    struct simh *h;
    struct sv_backend *b;
    struct sv_server *s;
};

static void quiet(void *arg, int prio, const char *text)
{
    (void)arg;
    (void)prio;
    (void)text;
}

static void open_daemon(struct W *w)
{
    struct sv_engine_opts eo = {0};
    struct sv_server_opts so;
    struct smmu_error e = SMMU_ERROR_INIT;
    eo.state_dir = w->state;
    eo.sysfs_root = fakesys_root(w->fs);
    eo.server = w->api;
    w->b = sv_backend_engine_new(w->base, &eo, &e);
    if (!w->b)
        fail_msg("sv_backend_engine_new: %s", e.message);
    sv_server_opts_default(&so);
    so.listen_path = w->sock;
    so.state_dir = w->state;
    so.log = quiet;
    if (sv_server_new(&w->s, w->base, w->b, &so, &e) < 0)
        fail_msg("sv_server_new: %s", e.message);
}

static void close_daemon(struct W *w)
{
    sv_server_free(w->s);
    w->s = NULL;
    w->b->ops->free(w->b);
    w->b = NULL;
}

static int setup(void **state)
{
    struct W *w = calloc(1, sizeof(*w));
    const char *const *topo = simh_topology(1, 2, 0);
    const char *args[64];
    int k = 0;
    w->tmp = smmu_test_mkdtemp("engine-http");
    snprintf(w->state, sizeof(w->state), "%s/state", w->tmp);
    snprintf(w->sock, sizeof(w->sock), "%s/api.sock", w->tmp);
    snprintf(w->api, sizeof(w->api), "unix:%s", w->sock);
    w->fs = fakesys_new(NULL);
    fakesys_add_dev(w->fs, &(struct fakesys_dev){.bdf = BDF, .smmu = "smmu3.0x0000000016000000",
                                                 .driver = "vfio-pci", .group = "10", .cdev = "vfio0",
                                                 .numa_node = "0"});
    for (; topo[k]; k++)
        args[k] = topo[k];
    args[k++] = "--sysfs";
    args[k++] = fakesys_root(w->fs);
    args[k++] = "--dev-iommu";
    args[k] = NULL;
    assert_int_equal(simh_start(&w->h, args), 0);
    w->base = event_base_new();
    open_daemon(w);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct W *w = *state;
    if (w->s)
        close_daemon(w);
    event_base_free(w->base);
    simh_stop(w->h);
    fakesys_free(w->fs);
    smmu_test_rmtree(w->tmp);
    free(w->tmp);
    free(w);
    return 0;
}

static int req(struct W *w, const char *method, const char *target, const char *extra, const char *body,
               struct htc_resp *r)
{
    int rc = htc_request(w->base, w->sock, method, target, extra, body, r);
    if (rc < 0)
        fail_msg("%s %s: %s", method, target, strerror(-rc));
    return rc;
}

static void await_ready(struct W *w)
{
    for (int i = 0; i < 3000; i++) {
        struct htc_resp r;
        int code = req(w, "GET", "/readyz", NULL, NULL, &r);
        htc_resp_free(&r);
        if (code == 200)
            return;
        htc_pump(w->base);
    }
    fail_msg("not ready within the bound");
}

static long commands(struct W *w)
{
    json_t *d = simh_dump(w->h);
    long n = (long)json_integer_value(json_object_get(d, "command_count"));
    json_decref(d);
    return n;
}

static int vfio_devices(struct W *w)
{
    json_t *d = simh_dump(w->h), *v;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(d, "devices"), i, v)
        if (!strcmp(json_string_value(json_object_get(v, "driver")) ?: "", "vfio-pci"))
            n++;
    json_decref(d);
    return n;
}

static void test_attach_idempotent_across_restart(void **state)
{
    struct W *w = *state;
    struct htc_resp r;
    struct htc *ev;
    char body[256], id1[80], id2[80];
    long before;
    json_t *j;
    snprintf(body, sizeof(body), "{\"qmp\":\"unix:%s\"}", simh_qmp_path(w->h));
    assert_int_equal(req(w, "PUT", "/v1/vms/vm1", NULL, body, &r), 201);
    htc_resp_free(&r);
    await_ready(w);
    ev = htc_connect(w->base, w->sock);
    assert_int_equal(htc_send_request(ev, "GET", "/v1/events?vm=vm1", NULL, NULL), 0);
    assert_int_equal(htc_read_head(ev, &r, BOUND), 0);
    htc_resp_free(&r);

    /* refused before anything is sent: 422 */
    before = commands(w);
    assert_int_equal(req(w, "POST", "/v1/vms/vm1/attach", NULL, "{\"devices\":[\"0000:99:00.0\"]}", &r), 422);
    j = json_loads(r.body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 2);
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(commands(w), before);

    /* attach: 200 with the CLI's JSON, the events on the stream */
    snprintf(body, sizeof(body), "{\"devices\":[\"%s\"]}", BDF);
    assert_int_equal(req(w, "POST", "/v1/vms/vm1/attach", "Idempotency-Key: k1\r\n", body, &r), 200);
    assert_non_null(htc_header(&r, "Smmuctl-Operation", id1, sizeof(id1)));
    j = json_loads(r.body, 0, NULL);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_string_equal(json_string_value(json_object_get(j, "command")), "attach");
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 0);
    json_decref(j);
    htc_resp_free(&r);
    assert_int_equal(vfio_devices(w), 1);
    assert_int_equal(htc_wait_body(ev, "event: operation.finished", BOUND), 0);
    assert_non_null(strstr(htc_body(ev), "event: device.attached"));
    htc_close(ev);

    /* the repeat: the first operation, nothing sent */
    before = commands(w);
    assert_int_equal(req(w, "POST", "/v1/vms/vm1/attach", "Idempotency-Key: k1\r\n", body, &r), 200);
    assert_non_null(htc_header(&r, "Smmuctl-Operation", id2, sizeof(id2)));
    assert_string_equal(id1, id2);
    htc_resp_free(&r);
    assert_int_equal(commands(w), before);

    /* both restarted on the same state dir: the VM comes back by itself, the key still names the attach */
    close_daemon(w);
    open_daemon(w);
    await_ready(w);
    assert_int_equal(req(w, "POST", "/v1/vms/vm1/attach", "Idempotency-Key: k1\r\n", body, &r), 200);
    assert_non_null(htc_header(&r, "Smmuctl-Operation", id2, sizeof(id2)));
    assert_string_equal(id1, id2);
    htc_resp_free(&r);
    assert_int_equal(vfio_devices(w), 1); /* not plugged twice */

    /* detach through the restarted daemon */
    assert_int_equal(req(w, "POST", "/v1/vms/vm1/detach", NULL, "{\"devices\":[\"hostdev-0009-01-00.0\"]}", &r), 200);
    htc_resp_free(&r);
    assert_int_equal(vfio_devices(w), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_idempotent_across_restart, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
