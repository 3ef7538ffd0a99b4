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
    int request_timeout_ms;
    int txn_reconnect_ms;
    size_t queue_max;
    struct event *tick; /* wakes the loop now and then, so conditions on a simulator's state are re-checked */
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

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
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
    w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    struct timeval tv = {0, 5000};
    evtimer_add(w->tick, &tv);
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
    o.txn_reconnect_ms = w->txn_reconnect_ms ? w->txn_reconnect_ms : 200;
    o.request_timeout_ms = w->request_timeout_ms;
    o.queue_max = w->queue_max;
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
    event_free(w->tick);
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

/* vfio-pci devices in the simulated VM */
static size_t sim_devices(struct simh *h)
{
    json_t *d = dump(h), *e;
    size_t i, n = 0;
    json_array_foreach(json_object_get(d, "devices"), i, e) {
        const char *drv = json_string_value(json_object_get(e, "driver"));
        if (drv && !strcmp(drv, "vfio-pci"))
            n++;
    }
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

/* ---- many VMs at once ---- */

enum sc { SC_ATTACH, SC_ROLLBACK, SC_PENDING, SC_DETACH, SC_N };

#define NVM 20
static const char FAULT_B[] = "{\"kind\":\"fail\",\"command\":\"device_add\",\"arg\":{\"id\":\"hostdev-0009-02-00.0\"},"
                              "\"desc\":\"injected failure\"}";

static json_t *cli_json(struct world *w, struct simh *h, const char *vm, const char *const *cmd, int want)
{
    const char *common[] = {"--qmp", simh_qmp_path(h), "--vm", vm, "--state-dir", w->state, "--sysfs",
                            fakesys_root(w->fs), "--json", NULL};
    struct smmu_run r;
    smmu_run_cli_with(&r, common, cmd, 60000);
    if (r.status != want)
        fail_msg("%s: exit %d, want %d: %s", cmd[0], r.status, want, r.err);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    smmu_run_free(&r);
    return o;
}

static void expect_same_json(const char *what, json_t *got, json_t *want)
{
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS), *x = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("%s differs from the CLI's --json:\n  got  %s\n  want %s", what, g, x);
    }
}

static void test_many_vms(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    static char names[NVM][16];
    const char *pn[NVM];
    struct opx att[NVM], det[NVM];
    long before[NVM];
    (void)state;
    memset(att, 0, sizeof(att));
    memset(det, 0, sizeof(det));
    /* NVM VMs for the daemon, two twins for the CLI's reference runs */
    assert_int_equal(simh_start_vms(&h, NVM + 2, sim_args(w, NULL)), 0);
    backend_open(w);
    for (int i = 0; i < NVM; i++) {
        snprintf(names[i], sizeof(names[i]), "vm%d", i);
        pn[i] = names[i];
        if (i % SC_N == SC_ROLLBACK)
            assert_int_equal(simh_fault(simh_vm(h, i), FAULT_B), 0);
        if (i % SC_N == SC_PENDING)
            assert_int_equal(simh_unplug(simh_vm(h, i), "{\"mode\":\"never\"}"), 0);
        reg(w, names[i], simh_qmp_path(simh_vm(h, i)));
    }
    wait_connected(w, NVM, pn);
    for (int i = 0; i < NVM; i++) {
        before[i] = command_count(simh_vm(h, i));
        assert_int_equal(smmu_vm_discoveries(sv_backend_engine_vm(w->b, names[i])), 1); /* after the connect */
    }
    /* everything submitted before the loop runs again: the VMs proceed together */
    for (int i = 0; i < NVM; i++) {
        submit(w, names[i], SV_VERB_ATTACH, "{\"devices\":[\"0009:01:00.0\",\"0009:02:00.0\"]}", &att[i]);
        if (i % SC_N == SC_PENDING)
            submit(w, names[i], SV_VERB_DETACH, "{\"devices\":[\"0009:01:00.0\",\"0009:02:00.0\"],\"unplug_timeout\":0}",
                   &det[i]);
        else if (i % SC_N == SC_DETACH)
            submit(w, names[i], SV_VERB_DETACH, "{\"devices\":[\"hostdev-0009-01-00.0\",\"0009:02:00.0\"]}", &det[i]);
    }
    for (int i = 0; i < NVM; i++) {
        wait_op(w, &att[i], 1);
        if (i % SC_N >= SC_PENDING)
            wait_op(w, &det[i], 1);
    }

    /* the CLI's objects for the same runs on the twins */
    assert_int_equal(simh_fault(simh_vm(h, NVM + 1), FAULT_B), 0);
    json_t *ref_ok = cli_json(w, simh_vm(h, NVM), "twin0", (const char *[]){"attach", BDF, BDF2, NULL}, 0);
    json_t *ref_rb = cli_json(w, simh_vm(h, NVM + 1), "twin1", (const char *[]){"attach", BDF, BDF2, NULL}, 1);

    for (int i = 0; i < NVM; i++) {
        enum sc sc = (enum sc)(i % SC_N);
        struct simh *v = simh_vm(h, i);
        assert_int_equal(att[i].calls, 1);
        if (sc == SC_ROLLBACK) {
            if (att[i].last.state != SV_OP_ROLLED_BACK)
                fail_msg("%s: state %s: %s", names[i], sv_op_state_name(att[i].last.state), att[i].msg);
            assert_int_equal(att[i].last.exit_code, 1);
            assert_false(att[i].last.sent_nothing);
            expect_same_json("a rolled-back attach", att[i].json, ref_rb);
            assert_int_equal(sim_devices(v), 0);
            assert_int_equal(journal_devices(w, names[i]), 0);
            continue;
        }
        if (att[i].last.state != SV_OP_DONE)
            fail_msg("%s: state %s: %s", names[i], sv_op_state_name(att[i].last.state), att[i].msg);
        assert_int_equal(att[i].last.exit_code, 0);
        expect_same_json("an attach", att[i].json, ref_ok);
        assert_int_equal(count_ev(w, names[i], "device.attached", DEVID), 1);
        assert_int_equal(count_ev(w, names[i], "device.attached", DEVID2), 1);
        if (sc == SC_ATTACH) {
            /* the kept facts: the attach sent exactly its own steps (object-add, 2 × device_add), no discovery */
            size_t steps = json_array_size(json_object_get(att[i].json, "steps"));
            assert_int_equal(steps, 3);
            assert_int_equal(command_count(v) - before[i], (long)steps);
            assert_int_equal(smmu_vm_discoveries(sv_backend_engine_vm(w->b, names[i])), 1);
            assert_true(sim_has(v, DEVID) && sim_has(v, DEVID2));
        }
        if (sc == SC_DETACH) {
            assert_int_equal(det[i].last.state, SV_OP_DONE);
            assert_int_equal(det[i].last.exit_code, 0);
            assert_int_equal(count_ev(w, names[i], "device.detached", DEVID), 1);
            assert_int_equal(sim_devices(v), 0);
        }
        if (sc == SC_PENDING) {
            assert_int_equal(det[i].calls, 1);
            if (det[i].last.state != SV_OP_PENDING)
                fail_msg("%s: detach state %s: %s", names[i], sv_op_state_name(det[i].last.state), det[i].msg);
            assert_int_equal(det[i].last.exit_code, 4);
            assert_int_equal(count_ev(w, names[i], "device.unplug-pending", DEVID), 1);
            assert_int_equal(count_ev(w, names[i], "device.unplug-pending", DEVID2), 1);
            assert_true(sim_has(v, DEVID) && sim_has(v, DEVID2)); /* the guest holds them */
        }
    }
    /* the guests release their devices now: each pending detach is done, reported once more */
    for (int i = SC_PENDING; i < NVM; i += SC_N) {
        assert_int_equal(simh_unplug(simh_vm(h, i), "{\"id\":\"hostdev-0009-01-00.0\",\"mode\":\"event\",\"delay_ms\":1}"), 0);
        assert_int_equal(simh_unplug(simh_vm(h, i), "{\"id\":\"hostdev-0009-02-00.0\",\"mode\":\"event\",\"delay_ms\":1}"), 0);
    }
    for (int i = SC_PENDING; i < NVM; i += SC_N) {
        wait_op(w, &det[i], 2);
        assert_int_equal(det[i].last.state, SV_OP_DONE);
        assert_int_equal(det[i].last.exit_code, 0);
        assert_true(json_is_true(json_object_get(det[i].json, "ok")));
        assert_int_equal(json_integer_value(json_object_get(det[i].json, "exit_code")), 0);
        assert_int_equal(count_ev(w, names[i], "device.detached", DEVID), 1);
        assert_int_equal(count_ev(w, names[i], "device.detached", DEVID2), 1);
        assert_int_equal(sim_devices(simh_vm(h, i)), 0);
        assert_int_equal(journal_devices(w, names[i]), 0);
    }
    assert_true(w->round_trips > 0);
    /* the daemon's kept topology equals a fresh discovery, after each kind of history */
    for (int i = 0; i < SC_N; i++) {
        char *d = daemon_topology(w, names[i]);
        unregister(w, names[i]); /* lets go of the lock and the one QMP connection */
        char *c = cli_topology(w, simh_vm(h, i), names[i]);
        if (strcmp(d, c))
            fail_msg("%s: the kept topology differs from a discovery:\n  kept %s\n  disc %s", names[i], d, c);
        free(d);
        free(c);
    }
    for (int i = 0; i < NVM; i++) {
        opx_fini(&att[i]);
        opx_fini(&det[i]);
    }
    json_decref(ref_ok);
    json_decref(ref_rb);
    backend_close(w);
    simh_stop(h);
    world_free(w);
}

/* ---- the lock names the daemon ---- */

static void test_cli_told_about_daemon(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    const char *names[] = {"vm0"};
    char pid[32], server[4300];
    (void)state;
    assert_int_equal(simh_start_vms(&h, 1, sim_args(w, NULL)), 0);
    backend_open(w);
    reg(w, "vm0", simh_qmp_path(h));
    wait_connected(w, 1, names);
    snprintf(pid, sizeof(pid), "pid %d", (int)getpid());
    snprintf(server, sizeof(server), "--server %s", w->api);
    const char *common[] = {"--qmp", simh_qmp_path(h), "--vm", "vm0", "--state-dir", w->state, "--sysfs",
                            fakesys_root(w->fs), NULL};
    const char *const cmds[][4] = {{"attach", BDF, NULL}, {"status", NULL}, {"--json", "detach", BDF, NULL}};
    for (int i = 0; i < 3; i++) {
        struct smmu_run r;
        /* the CLI waits up to 60 s for a lock another smmuctl holds; this one must not wait at all */
        smmu_run_cli_with(&r, common, cmds[i], 30000);
        assert_false(r.timed_out);
        assert_int_equal(r.status, 2);
        const char *text = i == 2 ? r.out : r.err;
        if (!strstr(text, pid) || !strstr(text, server) || !strstr(text, "smmuctl serve") || !strstr(text, "--vm vm0"))
            fail_msg("%s: the message does not name the daemon (%s, %s): %s", cmds[i][0], pid, server, text);
        if (i == 2) {
            json_t *o = smmu_run_json(&r);
            assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")), "EBUSY");
            json_decref(o);
        }
        smmu_run_free(&r);
    }
    /* without --vm the CLI names the VM after the address: that name is the daemon's too */
    const char *by_addr[] = {"--qmp", simh_qmp_path(h), "--state-dir", w->state, "--sysfs", fakesys_root(w->fs),
                             NULL};
    {
        struct smmu_run r;
        smmu_run_cli_with(&r, by_addr, (const char *[]){"status", NULL}, 30000);
        assert_false(r.timed_out);
        if (r.status != 2 || !strstr(r.err, pid) || !strstr(r.err, server) || !strstr(r.err, "--vm vm0"))
            fail_msg("status without --vm: exit %d, want 2 naming the daemon (%s, %s): %s", r.status, pid, server,
                     r.err);
        smmu_run_free(&r);
    }
    backend_close(w);
    /* the daemon is gone: the lock file's note died with it, the CLI works directly again */
    struct smmu_run r;
    smmu_run_cli_with(&r, common, (const char *[]){"status", NULL}, 60000);
    assert_int_equal(r.status, 0);
    smmu_run_free(&r);
    simh_stop(h);
    world_free(w);
}

/* ---- QEMU killed mid-attach and started again ---- */

struct vmstate {
    struct world *w;
    const char *vm;
    enum smmu_vm_state st;
    int reconciled;
};

static bool vm_reached(void *arg)
{
    struct vmstate *s = arg;
    smmu_vm *vm = sv_backend_engine_vm(s->w->b, s->vm);
    return vm && smmu_vm_state(vm) == s->st && count_ev(s->w, s->vm, "vm.reconciled", NULL) >= s->reconciled;
}

struct simwait {
    struct simh *h;
    const char *id;
};

static bool sim_has_cond(void *arg)
{
    struct simwait *s = arg;
    return sim_has(s->h, s->id);
}

static void point(const char *link, const char *target)
{
    char tmp[4400];
    snprintf(tmp, sizeof(tmp), "%s.new", link);
    unlink(tmp);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(rename(tmp, link), 0);
}

/* A VM whose monitor is the symlink `link` (a path a restarted QEMU listens on again, as an orchestrator names
 * it) registered and connected, with an attach whose second device_add QEMU executed and never answered. */
static struct simh *attach_held(struct world *w, char *link, size_t len, struct opx *att)
{
    struct simh *h = NULL;
    const char *stall[] = {"--fault", "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":\"hostdev-0009-02-00.0\"}}",
                           NULL};
    assert_int_equal(simh_start(&h, sim_args(w, stall)), 0);
    snprintf(link, len, "%s/vm0.qmp", w->tmp);
    point(link, simh_qmp_path(h));
    backend_open(w);
    reg(w, "vm0", link);
    wait_connected(w, 1, (const char *[]){"vm0"});
    submit(w, "vm0", SV_VERB_ATTACH, "{\"devices\":[\"0009:01:00.0\",\"0009:02:00.0\"]}", att);
    run_until(w, sim_has_cond, &(struct simwait){h, DEVID2});
    return h;
}

static void test_qemu_killed_mid_attach(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL, *h2 = NULL;
    struct opx att = {0};
    char link[4300];
    (void)state;
    h = attach_held(w, link, sizeof(link), &att);
    assert_int_equal(att.calls, 0);
    kill(simh_pid(h), SIGKILL); /* QEMU dies with the reply outstanding */
    wait_op(w, &att, 1);
    /* the transaction could not reach QEMU again: it ends with the journal holding it (exit 4, as the CLI) */
    assert_int_equal(att.last.state, SV_OP_INCOMPLETE);
    assert_int_equal(att.last.exit_code, 4);
    assert_true(journal_has_txn(w, "vm0"));
    simh_stop(h);
    run_until(w, vm_reached, &(struct vmstate){w, "vm0", SMMU_VM_LOST, 1});
    assert_true(count_ev(w, "vm0", "vm.disconnected", NULL) >= 1);
    /* QEMU starts again on the same monitor path: the VM reconnects, reconciles, and is as before the attach */
    assert_int_equal(simh_start(&h2, sim_args(w, NULL)), 0);
    point(link, simh_qmp_path(h2));
    run_until(w, vm_reached, &(struct vmstate){w, "vm0", SMMU_VM_READY, 2});
    assert_int_equal(w->reconnects, 1);
    assert_int_equal(count_ev(w, "vm0", "vm.connected", NULL), 2);
    assert_false(journal_has_txn(w, "vm0"));
    assert_int_equal(journal_devices(w, "vm0"), 0);
    assert_int_equal(sim_devices(h2), 0);
    assert_int_equal(count_ev(w, "vm0", "device.vanished", DEVID), 1); /* the old QEMU's devices, forgotten */
    /* and it works: an attach on the new QEMU */
    submit(w, "vm0", SV_VERB_ATTACH, "{\"devices\":[\"0009:01:00.0\"]}", &att);
    wait_op(w, &att, 2);
    assert_int_equal(att.last.state, SV_OP_DONE);
    assert_true(sim_has(h2, DEVID));
    opx_fini(&att);
    backend_close(w);
    simh_stop(h2);
    world_free(w);
}

/* QEMU restarts while the transaction is still trying to reach it again: the new QEMU is not the
 * transaction's (DESIGN §5 "Whose journal is it"), nothing is undone there; the VM's connect voids it. */
static void test_qemu_restarted_during_txn_reconnect(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL, *h2 = NULL;
    struct opx att = {0};
    char link[4300];
    (void)state;
    w->txn_reconnect_ms = 600000; /* the transaction would keep trying: it is the peer check that ends it */
    h = attach_held(w, link, sizeof(link), &att);
    /* the new QEMU listens before the old one dies: the transaction's first reconnect reaches it */
    assert_int_equal(simh_start(&h2, sim_args(w, NULL)), 0);
    point(link, simh_qmp_path(h2));
    kill(simh_pid(h), SIGKILL);
    wait_op(w, &att, 1);
    if (att.last.state != SV_OP_INCOMPLETE)
        fail_msg("attach: %s (exit %d): %s", sv_op_state_name(att.last.state), att.last.exit_code, att.msg);
    assert_int_equal(att.last.exit_code, 4);
    simh_stop(h);
    run_until(w, vm_reached, &(struct vmstate){w, "vm0", SMMU_VM_READY, 2});
    assert_false(journal_has_txn(w, "vm0"));
    assert_int_equal(journal_devices(w, "vm0"), 0);
    assert_int_equal(sim_devices(h2), 0);
    assert_int_equal(count_ev(w, "vm0", "device.vanished", DEVID), 1);
    opx_fini(&att);
    backend_close(w);
    simh_stop(h2);
    world_free(w);
}

/* ---- a restarted daemon recovers an interrupted transaction, with no request ---- */

static void test_backend_restart_recovers(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    struct opx att = {0};
    (void)state;
    assert_int_equal(simh_start_vms(&h, 2, sim_args(w, NULL)), 0);
    assert_int_equal(simh_fault(simh_vm(h, 0), "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":"
                                               "\"hostdev-0009-02-00.0\"}}"), 0);
    backend_open(w);
    reg(w, "vm0", simh_qmp_path(simh_vm(h, 0)));
    reg(w, "vm1", simh_qmp_path(simh_vm(h, 1)));
    wait_connected(w, 2, (const char *[]){"vm0", "vm1"});
    submit(w, "vm0", SV_VERB_ATTACH, "{\"devices\":[\"0009:01:00.0\",\"0009:02:00.0\"]}", &att);
    run_until(w, sim_has_cond, &(struct simwait){simh_vm(h, 0), DEVID2});
    /* the daemon goes away mid-transaction (the journal is what kill -9 would leave: the txn, steps sent) */
    backend_close(w);
    assert_true(journal_has_txn(w, "vm0"));
    assert_true(sim_has(simh_vm(h, 0), DEVID) && sim_has(simh_vm(h, 0), DEVID2));
    json_decref(simh_control(simh_vm(h, 0), "{\"cmd\":\"clear-faults\"}"));
    w->nev = 0;
    backend_open(w);
    wait_connected(w, 2, (const char *[]){"vm0", "vm1"});
    /* no request: the reconcile of the connect rolled the interrupted attach back */
    assert_false(journal_has_txn(w, "vm0"));
    assert_int_equal(journal_devices(w, "vm0"), 0);
    assert_int_equal(sim_devices(simh_vm(h, 0)), 0);
    assert_int_equal(count_ev(w, "vm0", "vm.reconciled", NULL), 1);
    opx_fini(&att);
    backend_close(w);
    simh_stop(h);
    world_free(w);
}

/* ---- one VM's stalled QEMU delays no other VM ---- */

static bool others_done(void *arg)
{
    struct opx *x = arg;
    for (int i = 1; i < 5; i++)
        if (x[i].calls < 1)
            return false;
    return true;
}

static void shutdown_done(void *arg)
{
    ++*(int *)arg;
}

static bool int_set(void *arg)
{
    return *(int *)arg > 0;
}

static void test_stall_isolated(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    struct opx x[5];
    static const char *names[] = {"vm0", "vm1", "vm2", "vm3", "vm4"};
    (void)state;
    memset(x, 0, sizeof(x));
    assert_int_equal(simh_start_vms(&h, 5, sim_args(w, NULL)), 0);
    assert_int_equal(simh_fault(simh_vm(h, 0), "{\"kind\":\"stall\",\"command\":\"device_add\"}"), 0);
    backend_open(w);
    for (int i = 0; i < 5; i++)
        reg(w, names[i], simh_qmp_path(simh_vm(h, i)));
    wait_connected(w, 5, names);
    for (int i = 0; i < 5; i++)
        submit(w, names[i], SV_VERB_ATTACH, "{\"devices\":[\"0009:01:00.0\"]}", &x[i]);
    run_until(w, others_done, x);
    struct smmu_error ue = SMMU_ERROR_INIT;
    assert_int_equal(w->b->ops->vm_unregister(w->b, "vm0", &ue), -EBUSY); /* its attach runs */
    /* VM 0's device_add reached QEMU and its reply is still outstanding; the others are done */
    assert_int_equal(x[0].calls, 0);
    assert_true(sim_has(simh_vm(h, 0), DEVID));
    for (int i = 1; i < 5; i++) {
        assert_int_equal(x[i].last.state, SV_OP_DONE);
        assert_true(sim_has(simh_vm(h, i), DEVID));
    }
    /* and VM 1 takes another request meanwhile */
    submit(w, "vm1", SV_VERB_DETACH, "{\"devices\":[\"0009:01:00.0\"]}", &x[1]);
    wait_op(w, &x[1], 2);
    assert_int_equal(x[1].last.state, SV_OP_DONE);
    assert_int_equal(x[0].calls, 0);
    /* SIGTERM: nothing new starts; the stalled attach is ended at the deadline with its journal kept */
    struct smmu_error e = SMMU_ERROR_INIT;
    int quiet = 0;
    w->b->ops->shutdown(w->b, 50, shutdown_done, &quiet);
    assert_int_equal(w->b->ops->op_submit(w->b, "vm2", SV_VERB_RECOVER, NULL, 9, op_done, &x[2], &e), -ESHUTDOWN);
    run_until(w, int_set, &quiet);
    assert_int_equal(x[0].calls, 1);
    assert_int_equal(x[0].last.state, SV_OP_INCOMPLETE);
    assert_true(journal_has_txn(w, "vm0"));
    backend_close(w);
    for (int i = 0; i < 5; i++)
        opx_fini(&x[i]);
    simh_stop(h);
    world_free(w);
}

/* A pending unplug released while the kept topology is not known (an event the daemon cannot follow made it
 * forget it): the release is settled on a discovery made for it, with no request. */
static void test_settle_without_kept_topology(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    struct opx x = {0};
    (void)state;
    assert_int_equal(simh_start_vms(&h, 1, sim_args(w, NULL)), 0);
    assert_int_equal(simh_unplug(h, "{\"mode\":\"never\"}"), 0);
    backend_open(w);
    reg(w, "vm0", simh_qmp_path(h));
    wait_connected(w, 1, (const char *[]){"vm0"});
    smmu_vm *vm = sv_backend_engine_vm(w->b, "vm0");
    submit(w, "vm0", SV_VERB_ATTACH, "{\"devices\":[\"0009:01:00.0\"]}", &x);
    wait_op(w, &x, 1);
    assert_int_equal(x.last.state, SV_OP_DONE);
    submit(w, "vm0", SV_VERB_DETACH, "{\"devices\":[\"0009:01:00.0\"],\"unplug_timeout\":0}", &x);
    wait_op(w, &x, 2);
    assert_int_equal(x.last.state, SV_OP_PENDING);
    /* a DEVICE_DELETED for a root port: not something the kept topology can follow */
    json_decref(simh_control(h, "{\"cmd\":\"event\",\"event\":\"DEVICE_DELETED\",\"data\":{\"device\":\"rp1b\","
                                "\"path\":\"/machine/peripheral/rp1b\"}}"));
    while (smmu_vm_topology(vm))
        if (event_base_loop(w->base, EVLOOP_ONCE) != 0)
            fail_msg("loop ran dry");
    unsigned long disc = smmu_vm_discoveries(vm);
    assert_int_equal(simh_unplug(h, "{\"id\":\"hostdev-0009-01-00.0\",\"mode\":\"event\",\"delay_ms\":1}"), 0);
    wait_op(w, &x, 3);
    assert_int_equal(x.last.state, SV_OP_DONE);
    assert_int_equal(smmu_vm_discoveries(vm), disc + 1);
    assert_non_null(smmu_vm_topology(vm)); /* known again, from that discovery */
    assert_int_equal(journal_devices(w, "vm0"), 0);
    assert_int_equal(count_ev(w, "vm0", "device.detached", DEVID), 1);
    char *d = daemon_topology(w, "vm0");
    unregister(w, "vm0");
    char *c = cli_topology(w, h, "vm0");
    assert_string_equal(d, c);
    free(d);
    free(c);
    opx_fini(&x);
    backend_close(w);
    simh_stop(h);
    world_free(w);
}

/* ---- the desired-state verb ---- */

struct opfinal {
    struct opx *x;
    int after;   /* calls before the operation was submitted */
};

static bool op_final(void *arg)
{
    struct opfinal *f = arg;
    return f->x->calls > f->after && f->x->last.state != SV_OP_PENDING;
}

static void test_desired_state(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    struct opx x = {0};
    (void)state;
    /* a device smmuctl did not plug: cold-plugged on rp1a */
    const char *cold[] = {"-device", "vfio-pci,host=0009:01:00.0,bus=rp1a,id=cold0", NULL};
    assert_int_equal(simh_start_vms(&h, 1, sim_args(w, cold)), 0);
    backend_open(w);
    reg(w, "vm0", simh_qmp_path(h));
    wait_connected(w, 1, (const char *[]){"vm0"});
    /* converge: BDF2 is missing */
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"0009:02:00.0\"}]}", &x);
    wait_op(w, &x, 1);
    if (x.last.state != SV_OP_DONE)
        fail_msg("devices: %s: %s", sv_op_state_name(x.last.state), x.msg);
    assert_int_equal(json_array_size(json_object_get(x.json, "attach")), 1);
    assert_true(json_is_null(json_object_get(x.json, "detach")) || !json_object_get(x.json, "detach"));
    assert_true(sim_has(h, DEVID2));
    /* the same set again: nothing sent */
    long n = command_count(h);
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"0009:02:00.0\"}]}", &x);
    wait_op(w, &x, 2);
    assert_int_equal(x.last.state, SV_OP_DONE);
    assert_int_equal(x.last.exit_code, 0);
    assert_int_equal(json_array_size(json_object_get(x.json, "attach")), 0);
    assert_int_equal(command_count(h), n);
    /* the cold-plugged device listed: it is there, nothing is plugged twice */
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"0009:02:00.0\"},{\"host\":\"0009:01:00.0\"}]}", &x);
    wait_op(w, &x, 3);
    assert_int_equal(x.last.state, SV_OP_DONE);
    assert_int_equal(command_count(h), n);
    /* the empty set: BDF2 (smmuctl's) goes, cold0 (not smmuctl's) stays */
    int before = x.calls;
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[]}", &x);
    run_until(w, op_final, &(struct opfinal){&x, before});
    if (x.last.state != SV_OP_DONE)
        fail_msg("devices []: %s: %s", sv_op_state_name(x.last.state), x.msg);
    assert_false(sim_has(h, DEVID2));
    assert_true(sim_has(h, "cold0"));
    assert_int_equal(journal_devices(w, "vm0"), 0);
    assert_int_equal(count_ev(w, "vm0", "device.detached", DEVID2), 1);
    /* GET /v1/vms/vm0's status (no QMP): the device smmuctl did not plug is "unknown" */
    json_t *info = w->b->ops->vm_info(w->b, "vm0", true);
    json_t *unk = json_object_get(json_object_get(info, "status"), "unknown");
    assert_int_equal(json_array_size(unk), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(unk, 0), "id")), "cold0");
    assert_int_equal(json_integer_value(json_object_get(info, "attached")), 0);
    json_decref(info);
    /* plan and recover from the kept facts: nothing sent, the CLI's objects */
    n = command_count(h);
    submit(w, "vm0", SV_VERB_PLAN, "{\"devices\":[\"0009:02:00.0\"]}", &x);
    wait_op(w, &x, x.calls + 1);
    assert_int_equal(x.last.state, SV_OP_DONE);
    assert_string_equal(json_string_value(json_object_get(x.json, "command")), "plan");
    assert_non_null(json_object_get(x.json, "steps"));
    submit(w, "vm0", SV_VERB_RECOVER, "{}", &x);
    wait_op(w, &x, x.calls + 1);
    assert_int_equal(x.last.state, SV_OP_DONE);
    assert_string_equal(json_string_value(json_object_get(x.json, "command")), "recover");
    assert_int_equal(json_array_size(json_object_get(x.json, "unknown")), 1);
    assert_int_equal(command_count(h), n);
    /* a bad element: refused, nothing sent */
    n = command_count(h);
    int calls = x.calls;
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"nonsense\"}]}", &x);
    wait_op(w, &x, calls + 1);
    assert_int_equal(x.last.state, SV_OP_FAILED);
    assert_true(x.last.sent_nothing);
    assert_int_equal(x.last.exit_code, 2);
    assert_int_equal(command_count(h), n);
    opx_fini(&x);
    backend_close(w);
    simh_stop(h);
    world_free(w);
}

/* ---- an unreachable QEMU: readyz does not wait for it, requests fail 503 at their deadline ---- */

static void test_unreachable(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    struct opx x = {0};
    char link[4300];
    (void)state;
    w->request_timeout_ms = 100;
    w->queue_max = 2;
    snprintf(link, sizeof(link), "%s/vm0.qmp", w->tmp); /* nothing listens there yet */
    backend_open(w);
    reg(w, "vm0", link);
    run_until(w, vm_reached, &(struct vmstate){w, "vm0", SMMU_VM_LOST, 0});
    assert_true(w->b->ops->ready(w->b)); /* found unreachable */
    json_t *info = w->b->ops->vm_info(w->b, "vm0", false);
    assert_string_equal(json_string_value(json_object_get(info, "state")), "disconnected");
    json_decref(info);
    struct smmu_error e = SMMU_ERROR_INIT;
    assert_null(w->b->ops->vm_topology(w->b, "vm0", &e));
    assert_int_equal(e.code, -ENOTCONN);
    submit(w, "vm0", SV_VERB_ATTACH, "{\"devices\":[\"0009:01:00.0\"]}", &x);
    wait_op(w, &x, 1);
    assert_int_equal(x.last.state, SV_OP_FAILED);
    assert_true(x.last.unreachable);
    assert_int_equal(x.last.exit_code, 3);
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"0009:01:00.0\"}]}", &x);
    wait_op(w, &x, 2);
    assert_true(x.last.unreachable);
    /* the VM's queue holds queue_max (2): a third is refused at once (429), nothing queued */
    struct opx q[3];
    memset(q, 0, sizeof(q));
    for (int i = 0; i < 3; i++)
        submit(w, "vm0", SV_VERB_RECOVER, "{}", &q[i]);
    wait_op(w, &q[2], 1);
    assert_true(q[2].last.queue_full);
    assert_int_equal(q[0].calls + q[1].calls, 0);
    for (int i = 0; i < 2; i++) {
        wait_op(w, &q[i], 1);
        assert_true(q[i].last.unreachable);
    }
    for (int i = 0; i < 3; i++)
        opx_fini(&q[i]);
    /* QEMU appears: the VM connects; the requests that gave up were never sent */
    assert_int_equal(simh_start(&h, sim_args(w, NULL)), 0);
    point(link, simh_qmp_path(h));
    run_until(w, vm_reached, &(struct vmstate){w, "vm0", SMMU_VM_READY, 1});
    assert_int_equal(sim_devices(h), 0);
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"0009:01:00.0\"}]}", &x);
    wait_op(w, &x, 3);
    assert_int_equal(x.last.state, SV_OP_DONE);
    assert_true(sim_has(h, DEVID));
    assert_int_equal(x.calls, 3);
    opx_fini(&x);
    backend_close(w);
    simh_stop(h);
    world_free(w);
}

/* The desired set swaps a device: the detach (left pending: no wait) is settled by DEVICE_DELETED while the
 * attach runs; the operation ends done. */
static void test_desired_state_swap(void **state)
{
    struct world *w = world_new();
    struct simh *h = NULL;
    struct opx x = {0};
    (void)state;
    assert_int_equal(simh_start_vms(&h, 1, sim_args(w, NULL)), 0);
    backend_open(w);
    reg(w, "vm0", simh_qmp_path(h));
    wait_connected(w, 1, (const char *[]){"vm0"});
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"0009:02:00.0\"}]}", &x);
    wait_op(w, &x, 1);
    assert_int_equal(x.last.state, SV_OP_DONE);
    int before = x.calls;
    submit(w, "vm0", SV_VERB_DEVICES, "{\"devices\":[{\"host\":\"0009:01:00.0\",\"id\":\"gpu0\"}]}", &x);
    run_until(w, op_final, &(struct opfinal){&x, before});
    if (x.last.state != SV_OP_DONE)
        fail_msg("swap: %s (exit %d): %s", sv_op_state_name(x.last.state), x.last.exit_code, x.msg);
    assert_int_equal(x.last.exit_code, 0);
    assert_true(json_is_true(json_object_get(x.json, "ok")));
    assert_true(sim_has(h, "gpu0"));
    assert_false(sim_has(h, DEVID2));
    assert_int_equal(journal_devices(w, "vm0"), 1);
    assert_int_equal(count_ev(w, "vm0", "device.detached", DEVID2), 1);
    assert_int_equal(count_ev(w, "vm0", "device.attached", "gpu0"), 1);
    opx_fini(&x);
    backend_close(w);
    simh_stop(h);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registrations_persist),
        cmocka_unit_test(test_many_vms),
        cmocka_unit_test(test_cli_told_about_daemon),
        cmocka_unit_test(test_qemu_killed_mid_attach),
        cmocka_unit_test(test_qemu_restarted_during_txn_reconnect),
        cmocka_unit_test(test_backend_restart_recovers),
        cmocka_unit_test(test_stall_isolated),
        cmocka_unit_test(test_desired_state),
        cmocka_unit_test(test_desired_state_swap),
        cmocka_unit_test(test_settle_without_kept_topology),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
