/* test_txn_faults.c — the transaction fault matrix on qmp-sim (issue: all-or-nothing attach, parallel detach).
 *
 * For attach of 1 and of 3 devices, with and without --fd-pass, and for every step k of the plan:
 *   QMP error at k, connection closed before / after QEMU executed k, reply never comes at k (timeout),
 *   smmuctl killed with SIGKILL before sending k and right after sending k, followed by `smmuctl recover`.
 * After each run qmp-sim's state dump must equal the dump taken before (objects, devices, named fds, fdsets,
 * pending unplugs, vSMMU bindings; not `kept_fds`, the fds QEMU itself keeps open after object-add/device_add
 * consumed them — FACTS: they stay open inside QEMU even after object-del, nothing a client can close), the
 * journal holds no open transaction and qmp-sim recorded no accel violation.
 * Detach: parallel timing, pending then completed by status, refused by the guest, late DEVICE_DELETED.
 * Concurrency: two attaches started together on one VM never collide.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "support/fakesys.h"
#include "support/sim_harness.h"
#include "support/runcli.h"
#include "support/testutil.h"

/* ---- qmp-sim through the shared harness (tests/support/sim_harness.h) ---- */

/* The state a rolled-back transaction must restore, as compact JSON. */
static char *sim_state(struct simh *h)
{
    json_t *d = simh_dump(h);
    assert_non_null(d);
    json_object_del(d, "kept_fds");      /* QEMU keeps consumed fds open itself (see the header) */
    json_object_del(d, "command_count"); /* counters */
    json_object_del(d, "vclock_ms");     /* time passes */
    char *out = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    return out;
}

/* The top-level members of two state dumps that differ, for a readable failure message. */
static char *state_diff(const char *a, const char *b)
{
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    const char *k;
    json_t *v;
    char *out = calloc(1, 1 << 16);
    size_t o = 0;
    json_object_foreach(ja, k, v) {
        if (json_equal(v, json_object_get(jb, k)))
            continue;
        char *x = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), *y = json_dumps(json_object_get(jb, k),
                                                                               JSON_COMPACT | JSON_ENCODE_ANY);
        o += (size_t)snprintf(out + o, (1 << 16) - o, "\n  %s: before %.3000s\n  %*s  after  %.3000s", k, x,
                              (int)strlen(k), "", y ? y : "(absent)");
        free(x);
        free(y);
    }
    json_decref(ja);
    json_decref(jb);
    return out;
}

static size_t sim_violations(struct simh *h)
{
    json_t *d = simh_dump(h);
    size_t n = json_array_size(json_object_get(d, "violations"));
    json_decref(d);
    return n;
}

/* ---- the fixture: fake host with one device per host SMMU ---- */

#define NDEV 8
static const char *const BDF[NDEV] = {"0009:01:00.0", "000a:01:00.0", "000b:01:00.0", "000c:01:00.0",
                                      "0009:02:00.0", "000a:02:00.0", "000b:02:00.0", "000c:02:00.0"};
static const char *const SMMU[4] = {"smmu3.0x0000000016000000", "smmu3.0x0000000017000000",
                                    "smmu3.0x0000000018000000", "smmu3.0x0000000019000000"};

struct env {
    char *tmp;
    struct fakesys *fs;
    char dev[4096], state[4096];
    struct simh *sim;
};

static int env_setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    e->tmp = smmu_test_mkdtemp("txn-faults");
    e->fs = fakesys_new(NULL);
    for (int i = 0; i < NDEV; i++) {
        char group[8], cdev[16];
        snprintf(group, sizeof(group), "%d", 10 + i);
        snprintf(cdev, sizeof(cdev), "vfio%d", i);
        fakesys_add_dev(e->fs, &(struct fakesys_dev){.bdf = BDF[i], .smmu = SMMU[i % 4], .driver = "vfio-pci",
                                                     .group = group, .cdev = cdev, .numa_node = "0"});
    }
    snprintf(e->dev, sizeof(e->dev), "%s/dev", e->tmp);
    fakesys_write_dev_tree(e->fs, e->dev);
    *state = e;
    return 0;
}

static int env_teardown(void **state)
{
    struct env *e = *state;
    simh_stop(e->sim);
    fakesys_free(e->fs);
    smmu_test_rmtree(e->tmp);
    free(e->tmp);
    free(e);
    return 0;
}

/* A fresh VM and a fresh state dir for one scenario. */
static void scenario_begin(struct env *e, int nv, int ports, const char *const *extra)
{
    static int seq;
    const char *args[16] = {"--sysfs", fakesys_root(e->fs), "--dev-iommu"};
    size_t n = 3;
    for (size_t i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    simh_stop(e->sim);
    e->sim = NULL;
    snprintf(e->state, sizeof(e->state), "%s/state%d", e->tmp, ++seq);
    if (simh_start_vm(&e->sim, nv, ports, 1, args) < 0)
        fail_msg("cannot start qmp-sim");
}

static int smmuctl(struct env *e, struct smmu_run *r, const char *const *extra)
{
    const char *argv[48] = {"--qmp", simh_qmp_path(e->sim), "--state-dir", e->state, "--vm", "vm", "--sysfs",
                            fakesys_root(e->fs), "--dev", e->dev, "--timeout", "1"};
    size_t n = 12;
    for (size_t i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return smmu_run_cli(r, argv, 60000);
}

static void assert_journal_closed(struct env *e, const char *what)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/vm.json", e->state);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j)
        return; /* never written: nothing open */
    if (!json_is_null(json_object_get(j, "txn")))
        fail_msg("%s: the journal still holds a transaction", what);
    json_decref(j);
}

/* ---- the attach fault matrix ---- */

struct stepdesc {
    const char *command, *key;
    char value[128];
};

/* The plan's steps for attaching the first n devices (DESIGN §5), as qmp-sim fault matchers. */
static size_t attach_steps(int n, bool fd_pass, struct stepdesc *out)
{
    size_t k = 0;
    if (fd_pass) {
        out[k] = (struct stepdesc){"getfd", "fdname", "iommufd0-fd"};
        k++;
    }
    out[k] = (struct stepdesc){"object-add", "id", "iommufd0"};
    k++;
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "hostdev-%.4s-%.2s-%.4s", BDF[i], BDF[i] + 5, BDF[i] + 8);
        if (fd_pass) {
            out[k] = (struct stepdesc){"getfd", "fdname", ""};
            snprintf(out[k].value, sizeof(out[k].value), "%s-cdev", id);
            k++;
        }
        out[k] = (struct stepdesc){"device_add", "id", ""};
        snprintf(out[k].value, sizeof(out[k].value), "%s", id);
        k++;
    }
    return k;
}

static const char *attach_args[2][8] = {
    {"--json", "attach", NULL},
    {"--json", "attach", "--fd-pass", NULL},
};

static void run_attach(struct env *e, int n, bool fd_pass, struct smmu_run *r)
{
    const char *argv[16];
    size_t a = 0;
    for (size_t i = 0; attach_args[fd_pass][i]; i++)
        argv[a++] = attach_args[fd_pass][i];
    for (int i = 0; i < n; i++)
        argv[a++] = BDF[i];
    argv[a] = NULL;
    smmuctl(e, r, argv);
}

static void fault_matrix(struct env *e, int n, bool fd_pass)
{
    static const char *const kinds[] = {"fail", "close-before", "close-after", "stall"};
    struct stepdesc steps[32];
    size_t ns = attach_steps(n, fd_pass, steps);
    for (size_t k = 0; k < ns; k++) {
        for (size_t f = 0; f < 4; f++) {
            char what[256], fault[512];
            snprintf(what, sizeof(what), "attach %d%s, %s at step %zu (%s %s)", n, fd_pass ? " --fd-pass" : "",
                     kinds[f], k, steps[k].command, steps[k].value);
            snprintf(fault, sizeof(fault),
                     "{\"kind\":\"%s\",\"command\":\"%s\",\"arg\":{\"%s\":\"%s\"},\"class\":\"GenericError\","
                     "\"desc\":\"injected\"}", kinds[f], steps[k].command, steps[k].key, steps[k].value);
            scenario_begin(e, 4, 2, (const char *[]){"--fault", fault, NULL});
            char *before = sim_state(e->sim);
            struct smmu_run r;
            run_attach(e, n, fd_pass, &r);
            if (r.status != 1)
                fail_msg("%s: exit %d, want 1\nstdout: %s\nstderr: %s", what, r.status, r.out, r.err);
            json_t *o = smmu_run_json(&r);
            if (!o || strcmp(json_string_value(json_object_get(o, "outcome")) ?: "", "rolled-back"))
                fail_msg("%s: outcome is not rolled-back: %s", what, r.out);
            if (f == 0 && strcmp(json_string_value(json_object_get(json_object_get(o, "error"), "desc")) ?: "",
                                 "injected"))
                fail_msg("%s: QEMU's error not reported: %s", what, r.out);
            json_decref(o);
            char *after = sim_state(e->sim);
            if (strcmp(before, after))
                fail_msg("%s: QEMU is not as before:%s\nstdout: %s", what, state_diff(before, after), r.out);
            assert_journal_closed(e, what);
            assert_int_equal(sim_violations(e->sim), 0);
            smmu_run_free(&r);
            free(before);
            free(after);
        }
    }
}

static void kill_matrix(struct env *e, int n, bool fd_pass)
{
    static const char *const when[] = {"before", "after"};
    struct stepdesc steps[32];
    size_t ns = attach_steps(n, fd_pass, steps);
    for (size_t k = 0; k < ns; k++) {
        for (size_t w = 0; w < 2; w++) {
            char what[256], crash[64];
            snprintf(what, sizeof(what), "attach %d%s, SIGKILL %s sending step %zu (%s %s)", n,
                     fd_pass ? " --fd-pass" : "", when[w], k, steps[k].command, steps[k].value);
            scenario_begin(e, 4, 2, NULL);
            char *before = sim_state(e->sim);
            struct smmu_run r;
            snprintf(crash, sizeof(crash), "SMMUCTL_TEST_CRASH=%zu:%s", k, when[w]);
            putenv(crash);
            run_attach(e, n, fd_pass, &r);
            unsetenv("SMMUCTL_TEST_CRASH");
            if (r.status != 128 + SIGKILL)
                fail_msg("%s: smmuctl was not killed (exit %d): %s %s", what, r.status, r.out, r.err);
            smmu_run_free(&r);
            /* the journal knows; recover puts QEMU back */
            smmuctl(e, &r, (const char *[]){"--json", "recover", NULL});
            if (r.status != 0)
                fail_msg("%s: recover exit %d\n%s\n%s", what, r.status, r.out, r.err);
            smmu_run_free(&r);
            char *after = sim_state(e->sim);
            if (strcmp(before, after))
                fail_msg("%s: QEMU is not as before after recover:%s", what, state_diff(before, after));
            assert_journal_closed(e, what);
            /* idempotent */
            smmuctl(e, &r, (const char *[]){"recover", NULL});
            assert_int_equal(r.status, 0);
            smmu_run_free(&r);
            char *again = sim_state(e->sim);
            assert_string_equal(after, again);
            free(before);
            free(after);
            free(again);
        }
    }
}

static void assert_same_state(const char *before, const char *after, const char *what)
{
    if (strcmp(before, after))
        fail_msg("%s: QEMU is not as expected:%s", what, state_diff(before, after));
}

static void test_attach_success(void **state)
{
    struct env *e = *state;
    for (int fd_pass = 0; fd_pass < 2; fd_pass++) {
        scenario_begin(e, 4, 2, NULL);
        struct smmu_run r;
        run_attach(e, 3, fd_pass, &r);
        if (r.status != 0)
            fail_msg("attach: exit %d\n%s\n%s", r.status, r.out, r.err);
        smmu_run_free(&r);
        json_t *d = simh_dump(e->sim);
        json_t *devs = json_object_get(d, "devices");
        size_t i, nv = 0;
        json_t *dv;
        json_array_foreach(devs, i, dv) {
            if (strcmp(json_string_value(json_object_get(dv, "driver")), "vfio-pci"))
                continue;
            nv++;
            /* each behind a vSMMU bound to its own host SMMU */
            const char *vs = json_string_value(json_object_get(dv, "vsmmu"));
            const char *hs = json_string_value(json_object_get(dv, "host_smmu"));
            size_t k;
            json_t *v;
            bool found = false;
            json_array_foreach(json_object_get(d, "vsmmus"), k, v) {
                if (vs && !strcmp(json_string_value(json_object_get(v, "id")), vs)) {
                    assert_string_equal(json_string_value(json_object_get(v, "bound_smmu")), hs);
                    found = true;
                }
            }
            assert_true(found);
        }
        assert_int_equal(nv, 3);
        json_decref(d);
        assert_int_equal(sim_violations(e->sim), 0);
        assert_journal_closed(e, "attach success");
    }
}

static void test_fault_matrix_one(void **state)
{
    fault_matrix(*state, 1, false);
    fault_matrix(*state, 1, true);
}

static void test_fault_matrix_three(void **state)
{
    fault_matrix(*state, 3, false);
    fault_matrix(*state, 3, true);
}

static void test_kill_matrix_one(void **state)
{
    kill_matrix(*state, 1, false);
    kill_matrix(*state, 1, true);
}

static void test_kill_matrix_three(void **state)
{
    kill_matrix(*state, 3, false);
    kill_matrix(*state, 3, true);
}

/* A file to pass that cannot be opened is a refusal before anything is sent (exit 2), not a rollback. */
static void test_fd_pass_unopenable_refused(void **state)
{
    struct env *e = *state;
    scenario_begin(e, 4, 2, NULL);
    char *before = sim_state(e->sim);
    json_t *d0 = simh_dump(e->sim);
    json_int_t cmds0 = json_integer_value(json_object_get(d0, "command_count"));
    json_decref(d0);
    struct smmu_run r;
    char nodev[4200];
    snprintf(nodev, sizeof(nodev), "%s/no-such-dev", e->tmp);
    const char *argv[] = {"--qmp", simh_qmp_path(e->sim), "--state-dir", e->state, "--vm", "vm", "--sysfs",
                          fakesys_root(e->fs), "--dev", nodev, "--json", "attach", "--fd-pass", BDF[0], NULL};
    smmu_run_cli(&r, argv, 30000);
    assert_int_equal(r.status, 2);
    json_t *o = smmu_run_json(&r);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(o, "error"), "message")), nodev));
    json_decref(o);
    smmu_run_free(&r);
    json_t *d1 = simh_dump(e->sim);
    /* negotiation + discovery only (6 commands), nothing that changes QEMU */
    assert_int_equal(json_integer_value(json_object_get(d1, "command_count")) - cmds0, 6);
    json_decref(d1);
    char *after = sim_state(e->sim);
    assert_same_state(before, after, "unopenable fd file");
    assert_journal_closed(e, "unopenable fd file");
    free(before);
    free(after);
}

/* ---- detach ---- */

static void attach_all(struct env *e, int n)
{
    const char *argv[16] = {"attach"};
    size_t a = 1;
    struct smmu_run r;
    for (int i = 0; i < n; i++)
        argv[a++] = BDF[i];
    argv[a] = NULL;
    smmuctl(e, &r, argv);
    if (r.status != 0)
        fail_msg("attach: exit %d\n%s\n%s", r.status, r.out, r.err);
    smmu_run_free(&r);
}

/* Eight devices whose guest takes D ms each to release: all unplugs run in parallel. Asserted by order, not
 * by the clock: the --record transcript shows every device_del sent before the first DEVICE_DELETED came
 * (sequential unplugs would interleave them), and the detach ends with everything gone. */
static void test_detach_parallel(void **state)
{
    struct env *e = *state;
    const int D = 400;
    char rule[128], rec[4300];
    snprintf(rule, sizeof(rule), "{\"mode\":\"event\",\"delay_ms\":%d}", D);
    scenario_begin(e, 4, 2, (const char *[]){"--unplug", rule, NULL});
    char *before = sim_state(e->sim);
    attach_all(e, NDEV);
    snprintf(rec, sizeof(rec), "%s/detach.rec", e->state);
    const char *argv[20] = {"--json", "--record", rec, "detach", "--unplug-timeout", "5"};
    size_t a = 6;
    for (int i = 0; i < NDEV; i++)
        argv[a++] = BDF[i];
    argv[a] = NULL;
    struct smmu_run r;
    smmuctl(e, &r, argv);
    if (r.status != 0)
        fail_msg("detach: exit %d\n%s\n%s", r.status, r.out, r.err);
    smmu_run_free(&r);
    char *t = smmu_test_read_file(rec, NULL);
    assert_non_null(t);
    int dels = 0, dels_before_event = -1, events = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "C: ", 3) && strstr(line, "\"device_del\""))
            dels++;
        if (!strncmp(line, "S: ", 3) && strstr(line, "\"DEVICE_DELETED\"") && events++ == 0)
            dels_before_event = dels;
    }
    free(t);
    assert_int_equal(dels, NDEV);
    assert_int_equal(events, NDEV);
    if (dels_before_event != NDEV)
        fail_msg("only %d of %d device_del were sent before the first DEVICE_DELETED: not parallel",
                 dels_before_event, NDEV);
    /* everything gone, the iommufd object smmuctl created too */
    char *after = sim_state(e->sim);
    assert_same_state(before, after, "parallel detach");
    free(before);
    free(after);
}

/* The guest holds one device: detach reports it pending (exit 4) and the others done; when the guest lets go
 * later (told by the test, no clock involved), `status` finishes it (journal cleaned, iommufd object deleted) and exits 0. */
static void test_detach_pending_then_status(void **state)
{
    struct env *e = *state;
    scenario_begin(e, 4, 2, (const char *[]){"--unplug", "{\"id\":\"hostdev-000a-01-00.0\",\"mode\":\"never\"}",
                                             NULL});
    char *before = sim_state(e->sim);
    attach_all(e, 2);
    struct smmu_run r;
    smmuctl(e, &r, (const char *[]){"--json", "detach", "--unplug-timeout", "0.3", BDF[0], BDF[1], NULL});
    assert_int_equal(r.status, 4);
    json_t *o = smmu_run_json(&r);
    json_t *devs = json_object_get(o, "devices");
    assert_string_equal(json_string_value(json_object_get(json_array_get(devs, 0), "outcome")), "done");
    assert_string_equal(json_string_value(json_object_get(json_array_get(devs, 1), "outcome")), "pending");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "iommufd"), "action")), "kept");
    json_decref(o);
    smmu_run_free(&r);
    smmuctl(e, &r, (const char *[]){"status", NULL});
    assert_int_equal(r.status, 4);
    assert_non_null(strstr(r.out, "pending unplugs (1):"));
    smmu_run_free(&r);
    /* the guest releases it while no smmuctl runs: the DEVICE_DELETED goes nowhere (the control's reply comes
     * once it has been sent: nothing to wait for) */
    assert_int_equal(simh_unplug(e->sim, "{\"id\":\"hostdev-000a-01-00.0\",\"mode\":\"event\",\"delay_ms\":0}"), 0);
    json_t *d = simh_dump(e->sim);
    assert_int_equal(json_array_size(json_object_get(d, "pending_unplugs")), 0);
    json_decref(d);
    smmuctl(e, &r, (const char *[]){"--json", "status", NULL});
    assert_int_equal(r.status, 0);
    o = smmu_run_json(&r);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "finished"), 0)), "hostdev-000a-01-00.0");
    json_decref(o);
    smmu_run_free(&r);
    char *after = sim_state(e->sim);
    assert_same_state(before, after, "pending then status");
    assert_journal_closed(e, "pending then status");
    free(before);
    free(after);
}

/* The guest refuses: the device stays attached, detach exits 1 (none removed, none pending). */
static void test_detach_refused(void **state)
{
    struct env *e = *state;
    scenario_begin(e, 4, 2, (const char *[]){"--unplug", "{\"mode\":\"guest-error\",\"delay_ms\":20}", NULL});
    attach_all(e, 1);
    char *attached = sim_state(e->sim);
    struct smmu_run r;
    smmuctl(e, &r, (const char *[]){"--json", "detach", BDF[0], NULL});
    assert_int_equal(r.status, 1);
    json_t *o = smmu_run_json(&r);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(o, "devices"), 0), "outcome")),
                        "refused");
    json_decref(o);
    smmu_run_free(&r);
    char *after = sim_state(e->sim);
    assert_same_state(attached, after, "refused");
    smmuctl(e, &r, (const char *[]){"status", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "attached (1):"));
    smmu_run_free(&r);
    free(attached);
    free(after);
}

/* DEVICE_DELETED before the reply to device_del (QEMU does this 13 times in 300): not lost. */
static void test_detach_event_before_reply(void **state)
{
    struct env *e = *state;
    scenario_begin(e, 4, 2, (const char *[]){"--unplug", "{\"mode\":\"event\",\"delay_ms\":0,\"before_reply\":true}",
                                             NULL});
    char *before = sim_state(e->sim);
    attach_all(e, 3);
    struct smmu_run r;
    smmuctl(e, &r, (const char *[]){"detach", "--unplug-timeout", "2", BDF[0], BDF[1], BDF[2], NULL});
    if (r.status != 0)
        fail_msg("detach: exit %d\n%s\n%s", r.status, r.out, r.err);
    smmu_run_free(&r);
    char *after = sim_state(e->sim);
    assert_same_state(before, after, "event before reply");
    free(before);
    free(after);
}

/* The detach fault matrix: QMP faults at device_del (of the second device) and at object-del, each kind. The
 * detach says what it knows — exit 4 when a device or the iommufd object is not settled, 0 only when QEMU,
 * asked, has nothing left — and status / detach of what is left (as a user would) then bring QEMU back to its
 * state before the attach, with no transaction open. */
static void test_detach_fault_matrix(void **state)
{
    static const char *const kinds[] = {"fail", "close-before", "close-after", "stall"};
    static const char *const cmds[][3] = {{"device_del", "id", "hostdev-000a-01-00.0"},
                                          {"object-del", "id", "iommufd0"}};
    struct env *e = *state;
    for (size_t c = 0; c < 2; c++) {
        for (size_t f = 0; f < 4; f++) {
            char what[256], fault[512];
            snprintf(what, sizeof(what), "detach 2, %s at %s %s", kinds[f], cmds[c][0], cmds[c][2]);
            snprintf(fault, sizeof(fault),
                     "{\"kind\":\"%s\",\"command\":\"%s\",\"arg\":{\"%s\":\"%s\"},\"class\":\"GenericError\","
                     "\"desc\":\"injected\"}", kinds[f], cmds[c][0], cmds[c][1], cmds[c][2]);
            scenario_begin(e, 4, 2, (const char *[]){"--fault", fault, NULL});
            char *before = sim_state(e->sim);
            attach_all(e, 2);
            struct smmu_run r;
            smmuctl(e, &r, (const char *[]){"--json", "detach", "--unplug-timeout", "2", BDF[0], BDF[1], NULL});
            if (r.status != 4 && r.status != 0)
                fail_msg("%s: exit %d, want 4 (not everything settled) or 0\nstdout: %s\nstderr: %s", what,
                         r.status, r.out, r.err);
            if (r.status == 0) { /* done means done: QEMU asked, everything is gone */
                char *now = sim_state(e->sim);
                if (strcmp(before, now))
                    fail_msg("%s: exit 0 but QEMU is not as before the attach:%s", what, state_diff(before, now));
                free(now);
            }
            json_t *o = smmu_run_json(&r);
            json_t *devs = json_object_get(o, "devices");
            const char *first = json_string_value(json_object_get(json_array_get(devs, 0), "outcome")) ?: "";
            /* its device_del was answered; its DEVICE_DELETED may have been lost with a broken connection */
            if (!o || (strcmp(first, "done") && strcmp(first, "pending")))
                fail_msg("%s: the first device is neither done nor pending: %s", what, r.out);
            if (f == 0 && strcmp(json_string_value(json_object_get(json_object_get(o, "error"), "desc")) ?: "",
                                 "injected"))
                fail_msg("%s: QEMU's error not reported: %s", what, r.out);
            json_decref(o);
            smmu_run_free(&r);
            /* what is left: status settles the iommufd object; a device still attached or pending is detached
             * again */
            smmuctl(e, &r, (const char *[]){"--json", "status", NULL});
            o = smmu_run_json(&r);
            smmu_run_free(&r);
            const char *again[8] = {"detach", "--unplug-timeout", "2"};
            size_t na = 3, i;
            json_t *d;
            json_array_foreach(json_object_get(o, "attached"), i, d)
                again[na++] = json_string_value(json_object_get(d, "id"));
            json_array_foreach(json_object_get(o, "pending"), i, d)
                again[na++] = json_string_value(json_object_get(d, "id"));
            again[na] = NULL;
            if (na > 3) {
                smmuctl(e, &r, again);
                if (r.status != 0)
                    fail_msg("%s: detach again: exit %d\n%s\n%s", what, r.status, r.out, r.err);
                smmu_run_free(&r);
            }
            json_decref(o);
            smmuctl(e, &r, (const char *[]){"status", NULL});
            if (r.status != 0)
                fail_msg("%s: status at the end: exit %d\n%s\n%s", what, r.status, r.out, r.err);
            smmu_run_free(&r);
            char *after = sim_state(e->sim);
            if (strcmp(before, after))
                fail_msg("%s: QEMU is not as before the attach:%s", what, state_diff(before, after));
            assert_journal_closed(e, what);
            free(before);
            free(after);
        }
    }
}

/* Two attaches started together on one VM, many times: the journal lock serialises them; they never pick the
 * same root port, both succeed, and qmp-sim sees no violation. */
static void test_concurrent_attaches(void **state)
{
    struct env *e = *state;
    for (int round = 0; round < 10; round++) {
        scenario_begin(e, 4, 2, NULL);
        const char *a1[] = {"--qmp", simh_qmp_path(e->sim), "--state-dir", e->state, "--vm", "vm", "--sysfs", fakesys_root(e->fs),
                            "--timeout", "5", "attach", BDF[0], BDF[4], NULL};
        const char *a2[] = {"--qmp", simh_qmp_path(e->sim), "--state-dir", e->state, "--vm", "vm", "--sysfs", fakesys_root(e->fs),
                            "--timeout", "5", "attach", BDF[1], BDF[5], NULL};
        pid_t p1 = fork();
        if (p1 == 0) {
            struct smmu_run r;
            _exit(smmu_run_cli(&r, a1, 30000));
        }
        pid_t p2 = fork();
        if (p2 == 0) {
            struct smmu_run r;
            _exit(smmu_run_cli(&r, a2, 30000));
        }
        int s1, s2;
        waitpid(p1, &s1, 0);
        waitpid(p2, &s2, 0);
        assert_int_equal(WEXITSTATUS(s1), 0);
        assert_int_equal(WEXITSTATUS(s2), 0);
        json_t *d = simh_dump(e->sim);
        json_t *devs = json_object_get(d, "devices"), *dv;
        size_t i, nv = 0;
        char buses[8][64] = {{0}};
        json_array_foreach(devs, i, dv) {
            if (strcmp(json_string_value(json_object_get(dv, "driver")), "vfio-pci"))
                continue;
            const char *bus = json_string_value(json_object_get(dv, "bus"));
            for (size_t k = 0; k < nv; k++)
                assert_string_not_equal(buses[k], bus);
            snprintf(buses[nv++], 64, "%s", bus);
        }
        assert_int_equal(nv, 4);
        assert_int_equal(json_array_size(json_object_get(d, "violations")), 0);
        json_decref(d);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attach_success),
        cmocka_unit_test(test_fault_matrix_one),
        cmocka_unit_test(test_fault_matrix_three),
        cmocka_unit_test(test_kill_matrix_one),
        cmocka_unit_test(test_kill_matrix_three),
        cmocka_unit_test(test_fd_pass_unopenable_refused),
        cmocka_unit_test(test_detach_parallel),
        cmocka_unit_test(test_detach_pending_then_status),
        cmocka_unit_test(test_detach_refused),
        cmocka_unit_test(test_detach_event_before_reply),
        cmocka_unit_test(test_detach_fault_matrix),
        cmocka_unit_test(test_concurrent_attaches),
    };
    return cmocka_run_group_tests(tests, env_setup, env_teardown);
}
