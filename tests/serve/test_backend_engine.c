/* test_backend_engine.c — the daemon's real backend (serve/backend_engine.h) against qmp-sim, many VMs on one
 * loop. Every wait is for a condition (a callback fired, a state reached); no wall-clock bound decides a result.
 *
 * - registrations persist in <state>/vms/<vm>.json, PUT semantics (same → created false; other → -EEXIST), a
 *   new backend on the same state dir takes them back in registration order;
 * - 20 VMs at once: attach (the JSON and exit code exactly the CLI's on a twin VM), rollback (fault), a detach
 *   left pending that the guest's later release completes (done fires again; device.detached);
 * - the kept topology: an attach sends only its own commands (qmp-sim's command count), and the topology the
 *   daemon holds equals a fresh `smmuctl topology --json` after attach, rollback and a late DEVICE_DELETED;
 * - the lock names the daemon: a direct CLI fails at once, exit 2, naming the pid and --server;
 * - QEMU killed mid-attach and started again: the VM reconnects, reconciles and ends as before;
 * - a backend restarted on the same state dir recovers an interrupted attach from the journal, no request;
 * - a VM whose QEMU stalls does not delay another VM's operation;
 * - the desired-state verb converges, a repeat sends nothing, and a device smmuctl did not plug stays. */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wunused-function" /* TEMP */
#pragma GCC diagnostic ignored "-Wunused-const-variable" /* TEMP */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "serve/backend_engine.h"
#include "smmuctl/engine.h"
#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"


static const char BDF[] = "0009:01:00.0";
static const char BDF2[] = "0009:02:00.0"; /* same host SMMU: shares the vSMMU */
static const char DEVID[] = "hostdev-0009-01-00.0";
static const char DEVID2[] = "hostdev-0009-02-00.0";

/* ---- the world: fake sysfs, a state dir, one loop, the backend and what it reported ---- */

#define MAX_EV 4096

struct ev {
    char vm[32], type[40], device[64];
};

struct world {
    char *tmp;
    char state[4200], api[4200];
    struct fakesys *fs;
    struct event_base *base;
    struct sv_backend *b;
    struct ev ev[MAX_EV];
    int nev;
    int round_trips, reconnects;
};

struct opx { /* one operation */
    struct world *w;
    int calls;
    struct sv_op_result last;
    json_t *json;   /* the last result's JSON (own reference) */
    char msg[1024];
};

static void on_vm_state(void *arg, const char *vm, enum sv_vm_state st)
{
    (void)arg; (void)vm; (void)st;
}

static void on_event(void *arg, const char *vm, const char *type, const json_t *data)
{
    struct world *w = arg;
    if (w->nev >= MAX_EV)
        return;
    struct ev *e = &w->ev[w->nev++];
    snprintf(e->vm, sizeof(e->vm), "%s", vm);
    snprintf(e->type, sizeof(e->type), "%s", type);
    const char *d = json_string_value(json_object_get(data, "device"));
    snprintf(e->device, sizeof(e->device), "%s", d ? d : "");
}

static void on_rtt(void *arg, const char *vm, double s)
{
    struct world *w = arg;
    (void)vm;
    assert_true(s >= 0);
    w->round_trips++;
}

static void on_reconnect(void *arg, const char *vm)
{
    struct world *w = arg;
    (void)vm;
    w->reconnects++;
}

static int count_ev(struct world *w, const char *vm, const char *type, const char *device)
{
    int n = 0;
    for (int i = 0; i < w->nev; i++)
        if ((!vm || !strcmp(w->ev[i].vm, vm)) && !strcmp(w->ev[i].type, type) &&
            (!device || !strcmp(w->ev[i].device, device)))
            n++;
    return n;
}

static struct world *world_new(void)
{
    struct world *w = calloc(1, sizeof(*w));
    w->tmp = smmu_test_mkdtemp("backend-engine");
    snprintf(w->state, sizeof(w->state), "%s/state", w->tmp);
    snprintf(w->api, sizeof(w->api), "unix:%s/api.sock", w->tmp);
    w->fs = fakesys_new(NULL);
    fakesys_add_dev(w->fs, &(struct fakesys_dev){.bdf = BDF, .smmu = "smmu3.0x0000000016000000",
                                                 .driver = "vfio-pci", .group = "10", .cdev = "vfio0",
                                                 .numa_node = "0"});
    fakesys_add_dev(w->fs, &(struct fakesys_dev){.bdf = BDF2, .smmu = "smmu3.0x0000000016000000",
                                                 .driver = "vfio-pci", .group = "11", .cdev = "vfio1",
                                                 .numa_node = "0"});
    w->base = event_base_new();
    return w;
}

static struct sv_backend *backend_open(struct world *w)
{
    struct sv_engine_opts o = {0};
    struct smmu_error e = SMMU_ERROR_INIT;
    o.state_dir = w->state;
    o.sysfs_root = fakesys_root(w->fs);
    o.server = w->api;
    o.connect_timeout_ms = 60000;
    o.command_timeout_ms = 600000; /* far away: a held reply is a held reply */
    o.txn_reconnect_ms = 200;
    struct sv_backend *b = sv_backend_engine_new(w->base, &o, &e);
    if (!b)
        fail_msg("sv_backend_engine_new: %s", e.message);
    b->events.vm_state = on_vm_state;
    b->events.event = on_event;
    b->events.qmp_round_trip = on_rtt;
    b->events.reconnect = on_reconnect;
    b->events.arg = w;
    w->b = b;
    return b;
}

static void backend_close(struct world *w)
{
    if (w->b)
        w->b->ops->free(w->b);
    w->b = NULL;
}

static void world_free(struct world *w)
{
    backend_close(w);
    event_base_free(w->base);
    fakesys_free(w->fs);
    smmu_test_rmtree(w->tmp);
    free(w->tmp);
    free(w);
}

/* Run the loop until cond(arg) holds (each call has its own timeout, so a dry loop is a failure). */
static void run_until(struct world *w, bool (*cond)(void *), void *arg)
{
    while (!cond(arg))
        if (event_base_loop(w->base, EVLOOP_ONCE) != 0)
            fail_msg("the loop ran dry before the condition held");
}

struct vmset {
    struct world *w;
    int n;
    const char *const *names;
};

static bool all_connected(void *arg)
{
    struct vmset *s = arg;
    if (!s->w->b->ops->ready(s->w->b))
        return false;
    for (int i = 0; i < s->n; i++) {
        smmu_vm *vm = sv_backend_engine_vm(s->w->b, s->names[i]);
        if (!vm || smmu_vm_state(vm) != SMMU_VM_READY)
            return false;
    }
    return true;
}

static void wait_connected(struct world *w, int n, const char *const *names)
{
    struct vmset s = {w, n, names};
    run_until(w, all_connected, &s);
}

static void op_done(void *arg, uint64_t op, const struct sv_op_result *r)
{
    struct opx *x = arg;
    (void)op;
    x->calls++;
    x->last = *r;
    x->last.json = NULL;
    x->last.error = NULL;
    json_decref(x->json);
    x->json = r->json ? json_deep_copy(r->json) : NULL;
    snprintf(x->msg, sizeof(x->msg), "%s", r->error ? r->error->message : "");
}

struct opwait {
    struct opx *x;
    int calls;
};

static bool op_has(void *arg)
{
    struct opwait *o = arg;
    return o->x->calls >= o->calls;
}

static void wait_op(struct world *w, struct opx *x, int calls)
{
    struct opwait o = {x, calls};
    run_until(w, op_has, &o);
}

static void submit(struct world *w, const char *vm, enum sv_verb verb, const char *body, struct opx *x)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    json_error_t je;
    json_t *args = json_loads(body, 0, &je);
    if (!args)
        fail_msg("bad test body %s: %s", body, je.text);
    x->w = w;
    int calls = x->calls;
    assert_int_equal(w->b->ops->op_submit(w->b, vm, verb, args, 1, op_done, x, &e), 0);
    assert_int_equal(x->calls, calls); /* never from inside the call */
    json_decref(args);
}

static void opx_fini(struct opx *x)
{
    json_decref(x->json);
    x->json = NULL;
}

/* ---- simulators ---- */

static const char *const *sim_args(struct world *w, const char *const *extra)
{
    static const char *args[64];
    const char *const *topo = simh_topology(1, 2, 0);
    int k = 0;
    for (; topo[k]; k++)
        args[k] = topo[k];
    args[k++] = "--sysfs";
    args[k++] = fakesys_root(w->fs);
    args[k++] = "--dev-iommu";
    for (int i = 0; extra && extra[i]; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    return args;
}

static json_t *dump(struct simh *h)
{
    json_t *d = simh_dump(h);
    assert_non_null(d);
    return d;
}

static long command_count(struct simh *h)
{
    json_t *d = dump(h);
    long n = (long)json_integer_value(json_object_get(d, "command_count"));
    json_decref(d);
    return n;
}

static size_t sim_devices(struct simh *h)
{
    json_t *d = dump(h);
    size_t n = json_array_size(json_object_get(d, "devices"));
    json_decref(d);
    return n;
}

static bool sim_has(struct simh *h, const char *id)
{
    json_t *d = dump(h);
    bool r = simh_dump_device(d, id) != NULL;
    json_decref(d);
    return r;
}

static json_t *journal(struct world *w, const char *vm)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s.json", w->state, vm);
    return json_load_file(path, 0, NULL);
}

static size_t journal_devices(struct world *w, const char *vm)
{
    json_t *j = journal(w, vm);
    size_t n = j ? json_array_size(json_object_get(j, "devices")) : 0;
    json_decref(j);
    return n;
}

static bool journal_has_txn(struct world *w, const char *vm)
{
    json_t *j = journal(w, vm);
    bool r = j && json_is_object(json_object_get(j, "txn"));
    json_decref(j);
    return r;
}

/* A topology object made comparable: vfio devices and iommufd objects sorted (their order is QOM's). */
static char *topo_canon(json_t *o)
{
    json_object_del(o, "ok");
    json_object_del(o, "command");
    json_object_del(o, "warnings");
    json_object_del(o, "exit_code");
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    return s;
}

static int cmp_json_str(const void *a, const void *b)
{
    char *x = json_dumps(*(json_t *const *)a, JSON_COMPACT | JSON_SORT_KEYS);
    char *y = json_dumps(*(json_t *const *)b, JSON_COMPACT | JSON_SORT_KEYS);
    int r = strcmp(x, y);
    free(x);
    free(y);
    return r;
}

static void sort_arrays(json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (json_is_array(v) && json_array_size(v) > 1) {
            size_t n = json_array_size(v);
            json_t **items = calloc(n, sizeof(*items));
            for (size_t i = 0; i < n; i++)
                items[i] = json_incref(json_array_get(v, i));
            qsort(items, n, sizeof(*items), cmp_json_str);
            json_array_clear(v);
            for (size_t i = 0; i < n; i++)
                json_array_append_new(v, items[i]);
            free(items);
        }
        if (json_is_object(v))
            sort_arrays(v);
    }
}

/* The daemon's kept topology of vm equals a fresh discovery by the CLI (run once the daemon let go). */
static char *daemon_topology(struct world *w, const char *vm)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    json_t *t = w->b->ops->vm_topology(w->b, vm, &e);
    if (!t)
        fail_msg("vm_topology %s: %s", vm, e.message);
    sort_arrays(t);
    char *s = topo_canon(t);
    json_decref(t);
    return s;
}

static char *cli_topology(struct world *w, struct simh *h, const char *vm)
{
    struct smmu_run r;
    smmu_run_cli(&r, (const char *[]){"--qmp", simh_qmp_path(h), "--vm", vm, "--state-dir", w->state, "--sysfs",
                                      fakesys_root(w->fs), "--json", "topology", NULL}, 60000);
    if (r.status != 0)
        fail_msg("topology: exit %d: %s", r.status, r.err);
    json_t *t = smmu_run_json(&r);
    assert_non_null(t);
    smmu_run_free(&r);
    sort_arrays(t);
    char *s = topo_canon(t);
    json_decref(t);
    return s;
}

static void unregister(struct world *w, const char *vm)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    if (w->b->ops->vm_unregister(w->b, vm, &e) < 0)
        fail_msg("unregister %s: %s", vm, e.message);
}

static void reg(struct world *w, const char *vm, const char *qmp)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    bool created = false;
    if (w->b->ops->vm_register(w->b, vm, qmp, false, &created, &e) < 0)
        fail_msg("register %s: %s", vm, e.message);
    assert_true(created);
}

/* ---- tests ---- */

static void test_registrations_persist(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    struct smmu_error e = SMMU_ERROR_INIT;
    bool created = true;
    (void)state;
    assert_int_equal(simh_start_vms(&h, 3, sim_args(w, NULL)), 0);
    backend_open(w);
    const char *names[] = {"vm-b", "vm-a", "vm-c"};
    for (int i = 0; i < 3; i++)
        reg(w, names[i], simh_qmp_path(simh_vm(h, i)));
    /* PUT again: the same body is 0 with created false; another address or fd_pass is -EEXIST */
    assert_int_equal(w->b->ops->vm_register(w->b, "vm-a", simh_qmp_path(simh_vm(h, 1)), false, &created, &e), 0);
    assert_false(created);
    assert_int_equal(w->b->ops->vm_register(w->b, "vm-a", simh_qmp_path(simh_vm(h, 2)), false, &created, &e),
                     -EEXIST);
    assert_int_equal(w->b->ops->vm_register(w->b, "vm-a", simh_qmp_path(simh_vm(h, 1)), true, &created, &e),
                     -EEXIST);
    assert_int_equal(w->b->ops->vm_register(w->b, "bad/name", simh_qmp_path(simh_vm(h, 1)), false, &created, &e),
                     -EINVAL);
    wait_connected(w, 3, names);
    char path[4400];
    snprintf(path, sizeof(path), "%s/vms/vm-a.json", w->state);
    json_t *doc = json_load_file(path, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "qmp")), simh_qmp_path(simh_vm(h, 1)));
    json_decref(doc);
    json_t *info = w->b->ops->vm_info(w->b, "vm-a", true);
    assert_string_equal(json_string_value(json_object_get(info, "state")), "connected");
    assert_string_equal(json_string_value(json_object_get(info, "qemu")), "11.1.3");
    assert_int_equal(json_integer_value(json_object_get(info, "attached")), 0);
    assert_non_null(json_object_get(json_object_get(info, "status"), "attached"));
    json_decref(info);
    assert_int_equal(count_ev(w, NULL, "vm.connected", NULL), 3);
    assert_int_equal(count_ev(w, NULL, "vm.reconciled", NULL), 3);
    assert_int_equal(w->b->ops->vm_unregister(w->b, "vm-c", &e), 0);
    assert_int_equal(w->b->ops->vm_unregister(w->b, "vm-c", &e), -ENOENT);
    backend_close(w);

    /* a restart on the same state dir takes them back, in registration order */
    backend_open(w);
    json_t *list = w->b->ops->vm_list(w->b);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(json_string_value(json_array_get(list, 0)), "vm-b");
    assert_string_equal(json_string_value(json_array_get(list, 1)), "vm-a");
    json_decref(list);
    wait_connected(w, 2, names);
    assert_int_equal(w->b->ops->vm_register(w->b, "vm-a", simh_qmp_path(simh_vm(h, 1)), false, &created, &e), 0);
    assert_false(created);
    backend_close(w);

    /* a registration file that is not ours stops the start (never guessed at, never rewritten) */
    snprintf(path, sizeof(path), "%s/vms/junk.json", w->state);
    FILE *f = fopen(path, "w");
    fputs("{\"version\":7}\n", f);
    fclose(f);
    struct sv_engine_opts o = {0};
    o.state_dir = w->state;
    assert_null(sv_backend_engine_new(w->base, &o, &e));
    assert_int_equal(e.code, -EINVAL);
    assert_non_null(strstr(e.message, "junk.json"));
    unlink(path);
    simh_stop(h);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registrations_persist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
