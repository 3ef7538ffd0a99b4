/* test_engine_many.c — many VMs on ONE event loop through the library's VM handle (smmuctl/engine.h).
 *
 * 1. Fifty qmp-sim VMs, one smmu_vm handle each, all on one event_base, all started at once: 30 attach two
 *    devices, 10 attach with the second device_add refused (rollback), 10 attach and then detach with a guest
 *    that never releases (pending unplug; two requests queued back-to-back on one handle). Every VM must end
 *    exactly as a lone `smmuctl` run of the same scenario leaves its own simulator: the same qmp-sim state
 *    dump and the same journal (less the VM's name, address, pid and time).
 * 2. Isolation by ordering, not timing: VM 0's device_add is executed but never answered (qmp-sim `stall`);
 *    the other VMs' attaches all complete while that reply is still outstanding (VM 0's callback has not
 *    fired, and its device_add is in its simulator). Freeing VM 0's handle then ends its attach: the callback
 *    fires exactly once, before smmu_vm_free returns, and the journal keeps the transaction for recover.
 * No wall-clock bound anywhere: the loop runs until the callbacks fired; command timeouts are far away.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "smmuctl/engine.h"
#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define NVM 50

static const char BDF[] = "0009:01:00.0";
static const char BDF2[] = "0009:02:00.0"; /* same host SMMU: shares the vSMMU */
static const char DEVID2[] = "hostdev-0009-02-00.0";
static const char FAULT_B[] = "{\"kind\":\"fail\",\"command\":\"device_add\",\"arg\":{\"id\":\"hostdev-0009-02-00.0\"},"
                              "\"desc\":\"injected failure\"}";
static const char UNPLUG_NEVER[] = "{\"mode\":\"never\"}";

enum scenario { SC_ATTACH, SC_ROLLBACK, SC_PENDING };

struct world {
    char *tmp;
    char state[4200];
    struct fakesys *fs;
    struct event_base *base;
};

struct vmx {
    struct world *w;
    enum scenario sc;
    struct simh *sim;
    smmu_vm *vm;
    char name[32];
    int replies;            /* callbacks fired */
    int expect;             /* callbacks expected */
    enum smmu_outcome last;
    enum smmu_req_stage last_stage;
    char last_msg[1024];
};

static struct world *world_new(void)
{
    struct world *w = calloc(1, sizeof(*w));
    w->tmp = smmu_test_mkdtemp("engine-many");
    snprintf(w->state, sizeof(w->state), "%s/state", w->tmp);
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

static void world_free(struct world *w)
{
    event_base_free(w->base);
    fakesys_free(w->fs);
    smmu_test_rmtree(w->tmp);
    free(w->tmp);
    free(w);
}

static struct simh *sim_for(struct world *w, enum scenario sc, const char *stall_fault)
{
    struct simh *h = NULL;
    const char *extra[8] = {"--sysfs", fakesys_root(w->fs), "--dev-iommu", NULL, NULL, NULL, NULL, NULL};
    int k = 3;
    if (sc == SC_ROLLBACK) {
        extra[k++] = "--fault";
        extra[k++] = FAULT_B;
    } else if (sc == SC_PENDING) {
        extra[k++] = "--unplug";
        extra[k++] = UNPLUG_NEVER;
    }
    if (stall_fault) {
        extra[k++] = "--fault";
        extra[k++] = stall_fault;
    }
    if (simh_start_vm(&h, 1, 2, 0, extra) < 0)
        fail_msg("cannot start qmp-sim");
    return h;
}

/* What a run leaves behind, comparable across VMs: the simulator's state and the journal. */
static char *sim_state(struct simh *h)
{
    json_t *d = simh_dump(h);
    assert_non_null(d);
    json_object_del(d, "kept_fds");
    json_object_del(d, "command_count");
    json_object_del(d, "vclock_ms");
    char *out = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    return out;
}

static char *journal_state(const char *state_dir, const char *vm)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s.json", state_dir, vm);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j)
        fail_msg("no journal %s", path);
    json_object_del(j, "vm");
    json_object_del(j, "qmp");
    json_object_del(j, "qemu"); /* each VM's own QEMU instance (pid, start time) */
    json_t *txn = json_object_get(j, "txn");
    if (json_is_object(txn)) {
        json_object_del(txn, "pid");
        json_object_del(txn, "started");
    }
    char *out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return out;
}

/* A lone CLI run of scenario sc on its own simulator: the reference. */
static void reference(struct world *w, enum scenario sc, char **sim_out, char **journal_out)
{
    static const char *const names[] = {"ref-attach", "ref-rollback", "ref-pending"};
    struct simh *h = sim_for(w, sc, NULL);
    struct smmu_run r;
    const char *sock = simh_qmp_path(h);
    const char *root = fakesys_root(w->fs);
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--vm", names[sc], "--state-dir", w->state, "--sysfs", root,
                                      "--json", "attach", BDF, BDF2, NULL}, 60000);
    assert_int_equal(r.status, sc == SC_ROLLBACK ? 1 : 0);
    smmu_run_free(&r);
    if (sc == SC_PENDING) {
        smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--vm", names[sc], "--state-dir", w->state, "--sysfs",
                                          root, "--json", "detach", "--no-wait", BDF, BDF2, NULL}, 60000);
        assert_int_equal(r.status, 4);
        smmu_run_free(&r);
    }
    *sim_out = sim_state(h);
    *journal_out = journal_state(w->state, names[sc]);
    simh_stop(h);
}

static void vmx_done(smmu_vm *vm, const struct smmu_reply *rep, void *payload)
{
    struct vmx *x = payload;
    (void)vm;
    x->replies++;
    x->last_stage = rep->stage;
    x->last = rep->result.outcome;
    snprintf(x->last_msg, sizeof(x->last_msg), "%s", rep->stage == SMMU_STAGE_TXN ? rep->result.error.message
                                                                                   : rep->error.message);
}

static void vmx_open(struct vmx *x, int i, int command_timeout_ms)
{
    struct smmu_vm_opts o = SMMU_VM_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    snprintf(x->name, sizeof(x->name), "vm%d", i);
    o.qmp_addr = simh_qmp_path(x->sim);
    o.vm_name = x->name;
    o.state_dir = x->w->state;
    o.sysfs_root = fakesys_root(x->w->fs);
    o.connect_timeout_ms = 60000;
    o.command_timeout_ms = command_timeout_ms;
    o.lock_wait_ms = 60000;
    if (smmu_vm_new(x->w->base, &o, &x->vm, &e) < 0)
        fail_msg("smmu_vm_new: %s", e.message);
}

static void vmx_submit(struct vmx *x, enum smmu_req_kind kind, bool no_wait)
{
    static const char *const devs[] = {BDF, BDF2};
    struct smmu_request req = {kind, devs, 2, SMMU_PLAN_OPTS_INIT, 0, no_wait};
    assert_int_equal(smmu_vm_submit(x->vm, &req, vmx_done, x, NULL), 0);
    x->expect++;
}

static bool all_replied(struct vmx *xs, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++)
        if (xs[i].replies < xs[i].expect)
            return false;
    return true;
}

/* Run the one loop until the VMs [from, n) have every reply (no wall-clock bound: each call has a timeout). */
static void run_until_replied(struct world *w, struct vmx *xs, size_t from, size_t n)
{
    while (!all_replied(xs, from, n))
        if (event_base_loop(w->base, EVLOOP_ONCE) != 0)
            fail_msg("the loop ran dry with replies outstanding");
}

static void test_fifty_vms_one_loop(void **state)
{
    struct world *w = world_new();
    struct vmx *xs = calloc(NVM, sizeof(*xs));
    char *ref_sim[3], *ref_journal[3];
    (void)state;
    for (int sc = 0; sc < 3; sc++)
        reference(w, (enum scenario)sc, &ref_sim[sc], &ref_journal[sc]);

    for (int i = 0; i < NVM; i++) {
        struct vmx *x = &xs[i];
        x->w = w;
        x->sc = i % 5 < 3 ? SC_ATTACH : i % 5 == 3 ? SC_ROLLBACK : SC_PENDING;
        x->sim = sim_for(w, x->sc, NULL);
        vmx_open(x, i, 600000);
    }
    /* everything queued before the loop runs once: all fifty proceed together */
    for (int i = 0; i < NVM; i++) {
        vmx_submit(&xs[i], SMMU_REQ_ATTACH, false);
        if (xs[i].sc == SC_PENDING)
            vmx_submit(&xs[i], SMMU_REQ_DETACH, true); /* runs after the attach, on the same handle */
    }
    run_until_replied(w, xs, 0, NVM);

    for (int i = 0; i < NVM; i++) {
        struct vmx *x = &xs[i];
        enum smmu_outcome want = x->sc == SC_ATTACH ? SMMU_OUTCOME_DONE
                                 : x->sc == SC_ROLLBACK ? SMMU_OUTCOME_ROLLED_BACK : SMMU_OUTCOME_INCOMPLETE;
        if (x->last_stage != SMMU_STAGE_TXN || x->last != want)
            fail_msg("%s (scenario %d): stage %d outcome %d, want outcome %d: %s", x->name, x->sc, x->last_stage,
                     x->last, want, x->last_msg);
        assert_int_equal(x->replies, x->expect);
        char *s = sim_state(x->sim), *j = journal_state(w->state, x->name);
        if (strcmp(s, ref_sim[x->sc]))
            fail_msg("%s: simulator differs from a lone CLI run:\n  got  %s\n  want %s", x->name, s, ref_sim[x->sc]);
        if (strcmp(j, ref_journal[x->sc]))
            fail_msg("%s: journal differs from a lone CLI run:\n  got  %s\n  want %s", x->name, j,
                     ref_journal[x->sc]);
        free(s);
        free(j);
    }
    for (int i = 0; i < NVM; i++) {
        smmu_vm_free(xs[i].vm);
        assert_int_equal(xs[i].replies, xs[i].expect); /* nothing fires after its reply */
        simh_stop(xs[i].sim);
    }
    for (int sc = 0; sc < 3; sc++) {
        free(ref_sim[sc]);
        free(ref_journal[sc]);
    }
    free(xs);
    world_free(w);
}

static void test_stalled_vm_does_not_delay_others(void **state)
{
    enum { N = 10 };
    struct world *w = world_new();
    struct vmx xs[N];
    (void)state;
    memset(xs, 0, sizeof(xs));
    for (int i = 0; i < N; i++) {
        xs[i].w = w;
        xs[i].sc = SC_ATTACH;
        xs[i].sim = sim_for(w, SC_ATTACH, i == 0 ? "{\"kind\":\"stall\",\"command\":\"device_add\"}" : NULL);
        vmx_open(&xs[i], i, 600000); /* the held reply would time out only after ten minutes */
    }
    for (int i = 0; i < N; i++)
        vmx_submit(&xs[i], SMMU_REQ_ATTACH, false);
    run_until_replied(w, xs, 1, N);
    /* VM 0's device_add reached QEMU (executed: the device is there) and its reply is still outstanding */
    assert_int_equal(xs[0].replies, 0);
    json_t *d = simh_dump(xs[0].sim);
    assert_non_null(simh_dump_device(d, "hostdev-0009-01-00.0"));
    json_decref(d);
    for (int i = 1; i < N; i++) {
        if (xs[i].last != SMMU_OUTCOME_DONE)
            fail_msg("vm%d: outcome %d: %s", i, xs[i].last, xs[i].last_msg);
        d = simh_dump(xs[i].sim);
        assert_non_null(simh_dump_device(d, DEVID2));
        json_decref(d);
    }
    assert_int_equal(smmu_vm_state(xs[0].vm), SMMU_VM_READY);
    assert_int_equal(smmu_vm_queued(xs[0].vm), 1);
    /* freed while its attach waits: the callback fires once, before smmu_vm_free returns */
    smmu_vm_free(xs[0].vm);
    assert_int_equal(xs[0].replies, 1);
    assert_int_equal(xs[0].last_stage, SMMU_STAGE_TXN);
    assert_int_equal(xs[0].last, SMMU_OUTCOME_INCOMPLETE);
    char path[4400];
    snprintf(path, sizeof(path), "%s/vm0.json", w->state);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_object(json_object_get(j, "txn"))); /* kept for recover */
    json_decref(j);
    for (int i = 1; i < N; i++)
        smmu_vm_free(xs[i].vm);
    for (int i = 0; i < N; i++)
        simh_stop(xs[i].sim);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifty_vms_one_loop),
        cmocka_unit_test(test_stalled_vm_does_not_delay_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
