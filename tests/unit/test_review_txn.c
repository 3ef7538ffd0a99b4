/* test_review_txn.c — transaction defects found in review, driven through the library on qmp-sim.
 *
 * Contract (DESIGN §5, include/smmuctl/txn.h): an attach whose rollback cannot finish — QEMU unreachable (no
 * reconnect given: "a lost connection leaves the transaction to `recover`") or unable to tell what a step
 * whose reply never came did — ends INCOMPLETE with the transaction kept in the journal; ROLLED_BACK only when
 * QEMU is as before. Each case then runs recover and checks QEMU is back to its starting state.
 *
 * Needs the qmp-sim binary (tests/sim), built with the rest of the tree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "smmuctl/journal.h"
#include "support/qmp_sync.h"
#include "smmuctl/txn.h"
#include "support/fakesys.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

static const char BDF[] = "0009:01:00.0";
static const char DEVID[] = "hostdev-0009-01-00.0";
static const char BDF2[] = "0009:02:00.0"; /* same host SMMU: shares the vSMMU */
static const char DEVID2[] = "hostdev-0009-02-00.0";

struct env {
    char *tmp;
    char state[4200];
    struct fakesys *fs;
    struct simh *sim;
    struct event_base *base;
    qmp_client *c;
    smmu_journal *j;
    struct smmu_facts f;
    struct smmu_plan *p;
};

static qmp_client *env_connect(struct env *e)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    qmp_client *c = NULL;
    o.connect_timeout_ms = 5000;
    o.command_timeout_ms = 400; /* a stalled reply times out quickly */
    assert_int_equal(qmp_client_new(&c, e->base, &o), 0);
    if (qmp_client_connect_sync(c, simh_qmp_path(e->sim), &err) < 0)
        fail_msg("connect: %s", err.message);
    return c;
}

/* State a rolled-back transaction must restore (what test_txn_faults compares, too). */
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

static int env_setup_n(void **state, size_t ndev)
{
    struct env *e = calloc(1, sizeof(*e));
    struct smmu_error err = SMMU_ERROR_INIT;
    const char *devs[] = {BDF, BDF2};
    struct smmu_plan_opts po = SMMU_PLAN_OPTS_INIT;
    e->tmp = smmu_test_mkdtemp("review-txn");
    snprintf(e->state, sizeof(e->state), "%s/state", e->tmp);
    e->fs = fakesys_new(NULL);
    fakesys_add_dev(e->fs, &(struct fakesys_dev){.bdf = BDF, .smmu = "smmu3.0x0000000016000000",
                                                 .driver = "vfio-pci", .group = "10", .cdev = "vfio0",
                                                 .numa_node = "0"});
    fakesys_add_dev(e->fs, &(struct fakesys_dev){.bdf = BDF2, .smmu = "smmu3.0x0000000016000000",
                                                 .driver = "vfio-pci", .group = "11", .cdev = "vfio1",
                                                 .numa_node = "0"});
    if (simh_start_vm(&e->sim, 1, 2, 0, (const char *[]){"--sysfs", fakesys_root(e->fs), "--dev-iommu", NULL}) < 0)
        fail_msg("cannot start qmp-sim");
    e->base = event_base_new();
    e->c = env_connect(e);
    if (smmu_journal_open(e->state, "vm", "", 2000, &e->j, &err) < 0)
        fail_msg("journal: %s", err.message);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &e->f, &err) < 0)
        fail_msg("facts: %s", err.message);
    if (smmu_facts_plan(&e->f, fakesys_root(e->fs), devs, ndev, &po, &e->p, &err) < 0)
        fail_msg("plan: %s", err.message);
    *state = e;
    return 0;
}

static int env_setup(void **state)
{
    return env_setup_n(state, 1);
}

static int env_setup2(void **state)
{
    return env_setup_n(state, 2);
}

static int env_teardown(void **state)
{
    struct env *e = *state;
    smmu_plan_free(e->p);
    smmu_facts_free(&e->f);
    smmu_journal_close(e->j);
    qmp_client_free(e->c);
    event_base_free(e->base);
    simh_stop(e->sim);
    fakesys_free(e->fs);
    smmu_test_rmtree(e->tmp);
    free(e->tmp);
    free(e);
    return 0;
}

/* The journal on disk (what a later smmuctl reads). */
static json_t *journal_on_disk(struct env *e)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s/vm.json", e->state);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    return j;
}

/* After an INCOMPLETE attach: a fresh connection, recover, QEMU as at the start, journal closed. */
static void recover_and_check(struct env *e, const char *before)
{
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_facts f;
    o.sysfs_root = fakesys_root(e->fs);
    o.unplug_timeout_ms = 3000;
    qmp_client_free(e->c);
    e->c = env_connect(e);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    smmu_txn_status(&e->c, e->j, &f, true, &o, &res);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fail_msg("recover: outcome %d: %s", res.outcome, res.error.message);
    smmu_result_fini(&res);
    smmu_facts_free(&f);
    char *after = sim_state(e->sim);
    assert_string_equal(before, after);
    free(after);
    json_t *j = journal_on_disk(e);
    assert_true(json_is_null(json_object_get(j, "txn")));
    json_decref(j);
}

/* No reconnect function; QEMU executes device_add and the connection drops before the reply. The device and
 * the iommufd object exist in QEMU: the transaction must stay in the journal for recover (exit 4), not be
 * dropped as "rolled back" (exit 1: "QEMU is as before"). */
static void test_lost_connection_without_reconnect_is_incomplete(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    char *before = sim_state(e->sim);
    o.sysfs_root = fakesys_root(e->fs);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"close-after\",\"command\":\"device_add\"}"), 0);
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    json_t *d = simh_dump(e->sim);
    bool device_left = simh_dump_device(d, DEVID) != NULL;
    json_decref(d);
    if (res.outcome == SMMU_OUTCOME_ROLLED_BACK && device_left)
        fail_msg("attach says rolled back (QEMU as before) but %s is still in QEMU; error: %s", DEVID,
                 res.error.message);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    smmu_result_fini(&res);
    json_t *j = journal_on_disk(e);
    assert_true(json_is_object(json_object_get(j, "txn")));
    json_decref(j);
    recover_and_check(e, before);
    free(before);
}

/* The connection stays up, device_add's reply never comes (QEMU executed it), and QEMU cannot be asked whether
 * the device appeared (qom-list fails). The rollback must not declare the attach rolled back. */
static void test_unknown_step_outcome_is_incomplete(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    char *before = sim_state(e->sim);
    o.sysfs_root = fakesys_root(e->fs);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"stall\",\"command\":\"device_add\"}"), 0);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"fail\",\"command\":\"qom-list\",\"count\":100}"), 0);
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    json_t *d = simh_dump(e->sim);
    bool device_left = simh_dump_device(d, DEVID) != NULL;
    json_decref(d);
    if (res.outcome == SMMU_OUTCOME_ROLLED_BACK && device_left)
        fail_msg("attach says rolled back (QEMU as before) but %s is still in QEMU; error: %s", DEVID,
                 res.error.message);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    smmu_result_fini(&res);
    json_t *j = journal_on_disk(e);
    assert_true(json_is_object(json_object_get(j, "txn")));
    json_decref(j);
    json_decref(simh_control(e->sim, "{\"cmd\":\"clear-faults\"}"));
    recover_and_check(e, before);
    free(before);
}

/* The same unknown outcome, as reported: the device whose device_add was only sent (no reply, QEMU could not be
 * asked) is "sent-no-reply" — what is known (issue 15: "sent, no reply; recover will settle it") — never
 * "attached". */
static void test_sent_step_is_not_reported_attached(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    char *before = sim_state(e->sim);
    o.sysfs_root = fakesys_root(e->fs);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"stall\",\"command\":\"device_add\"}"), 0);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"fail\",\"command\":\"qom-list\",\"count\":100}"), 0);
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    json_t *d = json_array_get(json_object_get(res.report, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "id")), DEVID);
    assert_string_equal(json_string_value(json_object_get(d, "state")), "sent-no-reply");
    smmu_result_fini(&res);
    json_decref(simh_control(e->sim, "{\"cmd\":\"clear-faults\"}"));
    recover_and_check(e, before);
    free(before);
}

/* Detach, and the connection drops after QEMU executed device_del (no reply). The unplug completes while
 * smmuctl is away; the library reconnects. The device is gone: detach must say done (exit 0) and forget it,
 * not "failed" (exit 1: "none was removed") with the device still listed as attached in the journal. */
struct review_rc {
    smmu_reconnect_done_fn done;
    void *arg;
};

static void review_connected(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    struct review_rc *rc = payload;
    qmp_client_on_state(c, NULL, NULL);
    rc->done(err, e, rc->arg);
    free(rc);
}

static int review_reconnect(qmp_client **c, void *payload, smmu_reconnect_done_fn done, void *arg)
{
    struct env *e = payload;
    struct review_rc *rc = calloc(1, sizeof(*rc));
    /* while smmuctl is away, the guest releases the device (the control's reply comes once it is gone) */
    char release[128];
    snprintf(release, sizeof(release), "{\"id\":\"%s\",\"mode\":\"event\",\"delay_ms\":0}", DEVID);
    if (!rc || simh_unplug(e->sim, release) < 0) {
        free(rc);
        return -EIO;
    }
    qmp_client_free(*c);
    *c = NULL;
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    o.connect_timeout_ms = 5000;
    o.command_timeout_ms = 2000;
    int r = rc ? qmp_client_new(c, e->base, &o) : -ENOMEM;
    if (r == 0) {
        rc->done = done;
        rc->arg = arg;
        r = qmp_client_connect(*c, simh_qmp_path(e->sim), review_connected, rc);
    }
    if (r < 0)
        free(rc);
    return r;
}

/* Reconnect at once (the device stays: nothing to wait for). */
static int review_reconnect_now(qmp_client **c, void *payload, smmu_reconnect_done_fn done, void *arg)
{
    struct env *e = payload;
    struct review_rc *rc = calloc(1, sizeof(*rc));
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    qmp_client_free(*c);
    *c = NULL;
    o.connect_timeout_ms = 5000;
    o.command_timeout_ms = 2000;
    int r = rc ? qmp_client_new(c, e->base, &o) : -ENOMEM;
    if (r == 0) {
        rc->done = done;
        rc->arg = arg;
        r = qmp_client_connect(*c, simh_qmp_path(e->sim), review_connected, rc);
    }
    if (r < 0)
        free(rc);
    return r;
}

static void test_detach_reply_lost_device_gone_is_done(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_facts f;
    const char *devs[] = {DEVID};
    o.sysfs_root = fakesys_root(e->fs);
    o.unplug_timeout_ms = 2000;
    o.reconnect = review_reconnect;
    o.reconnect_payload = e;
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fail_msg("attach: %s", res.error.message);
    smmu_result_fini(&res);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    char hold[128];
    snprintf(hold, sizeof(hold), "{\"id\":\"%s\",\"mode\":\"never\"}", DEVID); /* released by review_reconnect */
    assert_int_equal(simh_unplug(e->sim, hold), 0);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"close-after\",\"command\":\"device_del\"}"), 0);
    smmu_txn_detach(&e->c, e->j, &f, devs, 1, &o, &res);
    smmu_facts_free(&f);
    json_t *d = simh_dump(e->sim);
    assert_null(simh_dump_device(d, DEVID)); /* QEMU did remove it */
    json_decref(d);
    if (res.outcome != SMMU_OUTCOME_DONE) {
        char *t = json_dumps(res.report, JSON_COMPACT);
        fail_msg("detach: outcome %d (want done: the device is gone): %s; report %s", res.outcome,
                 res.error.message, t ? t : "");
    }
    smmu_result_fini(&res);
    json_t *j = journal_on_disk(e);
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 0);
    assert_true(json_is_null(json_object_get(j, "txn")));
    json_decref(j);
}

/* Detach, and the connection drops after QEMU executed device_del (no reply), while the guest holds the device
 * (unplug pending in QEMU). The library reconnects and finds the device still there: DESIGN §5 says pending
 * (QEMU may have started the unplug) — the journal keeps it for status — not failed (exit 1, "none removed"). */
static void test_detach_reply_lost_device_present_is_pending(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_facts f;
    const char *devs[] = {DEVID};
    char unplug[128];
    o.sysfs_root = fakesys_root(e->fs);
    o.unplug_timeout_ms = 2000;
    o.reconnect = review_reconnect_now;
    o.reconnect_payload = e;
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fail_msg("attach: %s", res.error.message);
    smmu_result_fini(&res);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    snprintf(unplug, sizeof(unplug), "{\"id\":\"%s\",\"mode\":\"never\"}", DEVID);
    assert_int_equal(simh_unplug(e->sim, unplug), 0);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"close-after\",\"command\":\"device_del\"}"), 0);
    smmu_txn_detach(&e->c, e->j, &f, devs, 1, &o, &res);
    smmu_facts_free(&f);
    json_t *d = simh_dump(e->sim);
    assert_non_null(simh_dump_device(d, DEVID)); /* the guest holds it */
    json_decref(d);
    if (res.outcome != SMMU_OUTCOME_INCOMPLETE) {
        char *t = json_dumps(res.report, JSON_COMPACT);
        fail_msg("detach: outcome %d (want incomplete: pending): %s; report %s", res.outcome, res.error.message,
                 t ? t : "");
    }
    json_t *rd = json_array_get(json_object_get(res.report, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(rd, "outcome")), "pending");
    smmu_result_fini(&res);
    json_t *j = journal_on_disk(e);
    json_t *jd = json_array_get(json_object_get(j, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(jd, "state")), "unplug-pending");
    json_decref(j);
}

/* A rollback that leaves an unplug pending AND something else unfinished keeps the transaction; recover runs the
 * rollback again, and the still-pending unplug must not be recorded in the journal a second time. */
static size_t journal_count(json_t *j, const char *id)
{
    size_t i, n = 0;
    json_t *d;
    json_array_foreach(json_object_get(j, "devices"), i, d)
        n += !strcmp(json_string_value(json_object_get(d, "id")) ?: "", id);
    return n;
}

static void test_rollback_rerun_keeps_one_pending_entry(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_facts f;
    char fault[256];
    o.sysfs_root = fakesys_root(e->fs);
    o.unplug_timeout_ms = 300;
    /* the second device_add runs but its reply never comes; its device_del is refused once; the first
     * device's unplug never completes (no guest) */
    snprintf(fault, sizeof(fault), "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":\"%s\"}}", DEVID2);
    assert_int_equal(simh_fault(e->sim, fault), 0);
    snprintf(fault, sizeof(fault), "{\"kind\":\"fail\",\"command\":\"device_del\",\"arg\":{\"id\":\"%s\"}}", DEVID2);
    assert_int_equal(simh_fault(e->sim, fault), 0);
    snprintf(fault, sizeof(fault), "{\"id\":\"%s\",\"mode\":\"never\"}", DEVID);
    assert_int_equal(simh_unplug(e->sim, fault), 0);
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    smmu_result_fini(&res);
    json_t *j = journal_on_disk(e);
    assert_true(json_is_object(json_object_get(j, "txn"))); /* the refused device_del is left */
    assert_int_equal(journal_count(j, DEVID), 1);
    json_decref(j);
    /* recover: the refused unplug now works, the other one is still pending */
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    smmu_txn_status(&e->c, e->j, &f, true, &o, &res);
    smmu_facts_free(&f);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    smmu_result_fini(&res);
    j = journal_on_disk(e);
    assert_true(json_is_null(json_object_get(j, "txn")));
    if (journal_count(j, DEVID) != 1) {
        char *t = json_dumps(json_object_get(j, "devices"), JSON_COMPACT);
        fail_msg("%s is in the journal %zu times: %s", DEVID, journal_count(j, DEVID), t);
    }
    assert_int_equal(journal_count(j, DEVID2), 0);
    json_decref(j);
}

/* recover undoes part of an interrupted attach (one device unplugged), then QEMU goes away. Something was
 * changed and the transaction is still open: exit 4 (incomplete, the journal holds it), not 3 ("unreachable
 * before any change"). */
static void test_recover_lost_midway_is_incomplete(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_facts f;
    char fault[256];
    o.sysfs_root = fakesys_root(e->fs);
    o.unplug_timeout_ms = 2000;
    /* an attach left open: the second device_add ran, its reply never came, QEMU could not be asked */
    snprintf(fault, sizeof(fault), "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":\"%s\"}}", DEVID2);
    assert_int_equal(simh_fault(e->sim, fault), 0);
    assert_int_equal(simh_fault(e->sim, "{\"kind\":\"fail\",\"command\":\"qom-list\",\"count\":100}"), 0);
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    smmu_result_fini(&res);
    json_decref(simh_control(e->sim, "{\"cmd\":\"clear-faults\"}"));
    /* recover: the second device is unplugged, then the connection drops at the first one's device_del */
    snprintf(fault, sizeof(fault), "{\"kind\":\"close-before\",\"command\":\"device_del\",\"arg\":{\"id\":\"%s\"}}", DEVID);
    assert_int_equal(simh_fault(e->sim, fault), 0);
    qmp_client_free(e->c);
    e->c = env_connect(e);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    smmu_txn_status(&e->c, e->j, &f, true, &o, &res);
    smmu_facts_free(&f);
    json_t *d = simh_dump(e->sim);
    assert_null(simh_dump_device(d, DEVID2)); /* recover did change QEMU */
    assert_non_null(simh_dump_device(d, DEVID));
    json_decref(d);
    if (res.outcome != SMMU_OUTCOME_INCOMPLETE)
        fail_msg("recover: outcome %d (want 4: incomplete): %s", res.outcome, res.error.message);
    smmu_result_fini(&res);
    json_t *j = journal_on_disk(e);
    assert_true(json_is_object(json_object_get(j, "txn")));
    json_decref(j);
}

/* The rerun of a rollback (recover) completes an unplug an earlier run left pending. Everything is undone: recover
 * must say done (exit 0), forget the device, and delete the iommufd object the attach created (QEMU as before),
 * not report the device still pending from the facts gathered before it was unplugged. */
static void test_recover_finishing_pending_rollback_is_done(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_facts f;
    char fault[256];
    char *before = sim_state(e->sim);
    o.sysfs_root = fakesys_root(e->fs);
    o.unplug_timeout_ms = 300;
    assert_int_equal(qmp_call_sync(e->c, "cont", NULL, NULL, 0, NULL, &err), 0); /* the guest clock runs */
    snprintf(fault, sizeof(fault), "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":\"%s\"}}", DEVID2);
    assert_int_equal(simh_fault(e->sim, fault), 0);
    snprintf(fault, sizeof(fault), "{\"kind\":\"fail\",\"command\":\"device_del\",\"arg\":{\"id\":\"%s\"}}", DEVID2);
    assert_int_equal(simh_fault(e->sim, fault), 0);
    snprintf(fault, sizeof(fault), "{\"id\":\"%s\",\"mode\":\"never\"}", DEVID);
    assert_int_equal(simh_unplug(e->sim, fault), 0);
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    smmu_result_fini(&res);
    /* the guest now releases devices; the first unplug request expired */
    snprintf(fault, sizeof(fault), "{\"id\":\"%s\",\"mode\":\"event\"}", DEVID);
    assert_int_equal(simh_unplug(e->sim, fault), 0);
    assert_int_equal(simh_advance(e->sim, 6000), 0);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    o.unplug_timeout_ms = 2000;
    smmu_txn_status(&e->c, e->j, &f, true, &o, &res);
    smmu_facts_free(&f);
    json_t *d = simh_dump(e->sim);
    assert_null(simh_dump_device(d, DEVID));
    assert_null(simh_dump_device(d, DEVID2));
    json_decref(d);
    if (res.outcome != SMMU_OUTCOME_DONE) {
        char *t = json_dumps(res.report, JSON_COMPACT);
        fail_msg("recover: outcome %d (want done: every step undone): %s; report %s", res.outcome,
                 res.error.message, t ? t : "");
    }
    smmu_result_fini(&res);
    json_t *j = journal_on_disk(e);
    assert_true(json_is_null(json_object_get(j, "txn")));
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 0);
    json_decref(j);
    /* QEMU as before, apart from the run state we changed */
    json_t *b = json_loads(before, 0, NULL), *a = simh_dump(e->sim);
    assert_true(json_equal(json_object_get(b, "objects"), json_object_get(a, "objects")));
    assert_true(json_equal(json_object_get(b, "devices"), json_object_get(a, "devices")));
    json_decref(a);
    json_decref(b);
    free(before);
}

/* recover finishes an interrupted detach of two devices: both unplugs complete and both leave the journal. The
 * iommufd check that follows gets every finished id (heap overflow: the list was sized from the journal's
 * devices after they were removed). Run under ASan to see it. */
static void test_recover_finishing_detach_of_two(void **state)
{
    struct env *e = *state;
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_facts f;
    const char *devs[] = {DEVID, DEVID2};
    char fault[256];
    o.sysfs_root = fakesys_root(e->fs);
    o.unplug_timeout_ms = 2000;
    smmu_txn_attach(&e->c, e->j, &e->f, e->p, &o, &res);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fail_msg("attach: %s", res.error.message);
    smmu_result_fini(&res);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    /* the connection drops at the first device_del, before QEMU runs it; no reconnect: the detach stays open */
    snprintf(fault, sizeof(fault), "{\"kind\":\"close-before\",\"command\":\"device_del\",\"arg\":{\"id\":\"%s\"}}", DEVID);
    assert_int_equal(simh_fault(e->sim, fault), 0);
    smmu_txn_detach(&e->c, e->j, &f, devs, 2, &o, &res);
    smmu_facts_free(&f);
    assert_int_equal(res.outcome, SMMU_OUTCOME_INCOMPLETE);
    smmu_result_fini(&res);
    qmp_client_free(e->c);
    e->c = env_connect(e);
    if (smmu_facts_gather(e->c, fakesys_root(e->fs), e->j, &f, &err) < 0)
        fail_msg("facts: %s", err.message);
    smmu_txn_status(&e->c, e->j, &f, true, &o, &res);
    smmu_facts_free(&f);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fail_msg("recover: outcome %d: %s", res.outcome, res.error.message);
    assert_int_equal(json_array_size(json_object_get(res.report, "finished")), 2);
    smmu_result_fini(&res);
    json_t *d = simh_dump(e->sim);
    assert_null(simh_dump_device(d, DEVID));
    assert_null(simh_dump_device(d, DEVID2));
    assert_int_equal(json_array_size(json_object_get(d, "objects")), 0); /* iommufd0 deleted */
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lost_connection_without_reconnect_is_incomplete, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_step_outcome_is_incomplete, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_sent_step_is_not_reported_attached, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_detach_reply_lost_device_gone_is_done, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_detach_reply_lost_device_present_is_pending, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_rollback_rerun_keeps_one_pending_entry, env_setup2, env_teardown),
        cmocka_unit_test_setup_teardown(test_recover_lost_midway_is_incomplete, env_setup2, env_teardown),
        cmocka_unit_test_setup_teardown(test_recover_finishing_pending_rollback_is_done, env_setup2, env_teardown),
        cmocka_unit_test_setup_teardown(test_recover_finishing_detach_of_two, env_setup2, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
