/* test_cli_owner.c — whose journal is it (DESIGN §5, issue 15 items 1–2).
 *  1. an attach on VM b under `--vm shared` is killed (SIGKILL right after device_add went out); `recover`
 *     with --qmp pointing at VM c and the same --vm must refuse (exit 2) and send c nothing that changes it;
 *     then `recover` against b rolls b back.
 *  2. QEMU restarted on the same socket, with a cold-plugged vfio-pci whose id is the one the interrupted
 *     transaction used: `recover` voids the old transaction — no device_del to the cold-plugged device,
 *     it stays; the journal's devices are reported vanished. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define DEV "0009:01:00.0"
#define ID "hostdev-0009-01-00.0"

struct fx {
    struct fakesys *fs;
    char *state;
};

static int setup(void **st)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->fs = fakesys_new(NULL);
    fakesys_add_dev(f->fs, &(struct fakesys_dev){ .bdf = DEV, .smmu = SMMU_A, .driver = "vfio-pci", .group = "1",
                                                  .cdev = "vfio1" });
    f->state = smmu_test_mkdtemp("cli-owner");
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fx *f = *st;
    fakesys_free(f->fs);
    smmu_test_rmtree(f->state);
    free(f->state);
    free(f);
    return 0;
}

static struct simh *start_sim(struct fx *f, const char *cold_id)
{
    struct simh *h = NULL;
    char dev[128];
    const char *extra[] = {"--sysfs", fakesys_root(f->fs), "--dev-iommu", NULL, NULL, NULL};
    if (cold_id) {
        snprintf(dev, sizeof(dev), "vfio-pci,host=%s,bus=rp1a,id=%s", DEV, cold_id);
        extra[3] = "-device";
        extra[4] = dev;
    }
    assert_int_equal(simh_start_vm(&h, 1, 2, 0, extra), 0);
    return h;
}

static int cli(struct fx *f, struct simh *h, struct smmu_run *r, const char *const *cmd)
{
    const char *argv[24] = {"--qmp", simh_qmp_path(h), "--state-dir", f->state, "--vm", "shared", "--sysfs",
                            fakesys_root(f->fs)};
    size_t n = 8;
    for (size_t i = 0; cmd[i] && n < 23; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    return smmu_run_cli(r, argv, 60000);
}

/* Attach DEV on h and kill smmuctl right after device_add (step 1) went out: the journal keeps the txn. */
static void interrupted_attach(struct fx *f, struct simh *h)
{
    struct smmu_run r;
    setenv("SMMUCTL_TEST_CRASH", "1:after", 1);
    cli(f, h, &r, (const char *[]){"attach", DEV, NULL});
    unsetenv("SMMUCTL_TEST_CRASH");
    assert_int_equal(r.status, 128 + 9);
    smmu_run_free(&r);
}

static char *devices_of(struct simh *h)
{
    json_t *d = simh_dump(h);
    char *s = json_dumps(json_object_get(d, "devices"), JSON_COMPACT | JSON_SORT_KEYS);
    char *o = json_dumps(json_object_get(d, "objects"), JSON_COMPACT | JSON_SORT_KEYS);
    char *both = NULL;
    assert_true(asprintf(&both, "%s %s", s, o) > 0);
    free(s);
    free(o);
    json_decref(d);
    return both;
}

static void test_recover_refuses_another_vms_journal(void **st)
{
    struct fx *f = *st;
    struct simh *b = start_sim(f, NULL), *c = start_sim(f, "theirs0");
    struct smmu_run r;
    interrupted_attach(f, b);
    char *c_before = devices_of(c), *b_before = devices_of(b);
    assert_non_null(strstr(b_before, ID)); /* the interrupted device_add did land in b */

    assert_int_equal(cli(f, c, &r, (const char *[]){"--json", "recover", NULL}), 2);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    const char *msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    assert_non_null(strstr(msg, "belongs to the QEMU at"));
    assert_non_null(strstr(msg, simh_qmp_path(b)));
    json_decref(o);
    smmu_run_free(&r);
    char *c_after = devices_of(c), *b_after = devices_of(b);
    assert_string_equal(c_after, c_before); /* c's own devices and objects untouched */
    assert_string_equal(b_after, b_before); /* b still holds what the interrupted attach left */

    assert_int_equal(cli(f, b, &r, (const char *[]){"recover", NULL}), 0); /* the right VM: rolled back */
    smmu_run_free(&r);
    char *b_end = devices_of(b);
    assert_null(strstr(b_end, ID));
    free(c_before); free(b_before); free(c_after); free(b_after); free(b_end);
    simh_stop(b);
    simh_stop(c);
}

/* The journal's recorded address is pointed at h's socket (the same socket path is not reusable across simh
 * instances; "same address" is what matters: this models QEMU restarted in place). keep_instance false also
 * drops the recorded QEMU process, as a journal written over tcp (no SO_PEERCRED) has none. */
static void journal_moves_to(struct fx *f, struct simh *h, bool keep_instance)
{
    char jpath[4200];
    snprintf(jpath, sizeof(jpath), "%s/shared.json", f->state);
    json_t *j = json_load_file(jpath, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_object(json_object_get(j, "qemu"))); /* the interrupted run recorded its QEMU */
    char canon[600];
    snprintf(canon, sizeof(canon), "unix:%s", simh_qmp_path(h));
    json_object_set_new(j, "qmp", json_string(canon));
    if (!keep_instance)
        json_object_del(j, "qemu");
    assert_int_equal(json_dump_file(j, jpath, JSON_INDENT(1) | JSON_PRESERVE_ORDER), 0);
    json_decref(j);
}

static void test_restarted_qemu_voids_the_old_transaction(void **st)
{
    struct fx *f = *st;
    struct simh *h = start_sim(f, NULL);
    struct smmu_run r;
    interrupted_attach(f, h);
    simh_stop(h);
    h = start_sim(f, ID);
    journal_moves_to(f, h, true);

    char *before = devices_of(h);
    assert_int_equal(cli(f, h, &r, (const char *[]){"--json", "recover", NULL}), 0);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    json_t *van = json_object_get(o, "vanished");
    assert_int_equal(json_array_size(van), 1); /* the journal's device, reported once */
    assert_string_equal(json_string_value(json_array_get(van, 0)), ID);
    assert_true(json_is_null(json_object_get(o, "interrupted")));
    json_decref(o);
    assert_non_null(strstr(r.err, "was restarted"));
    smmu_run_free(&r);
    char *after = devices_of(h);
    assert_string_equal(after, before); /* the cold-plugged device of the same id was not unplugged */
    /* and forgotten: the next status has nothing open, vanished nothing, and sees ID as QEMU's own device */
    assert_int_equal(cli(f, h, &r, (const char *[]){"--json", "status", NULL}), 0);
    o = smmu_run_json(&r);
    assert_non_null(o);
    assert_int_equal(json_array_size(json_object_get(o, "vanished")), 0);
    assert_int_equal(json_array_size(json_object_get(o, "attached")), 0);
    assert_true(json_is_null(json_object_get(o, "interrupted")));
    json_t *u = json_object_get(o, "unknown");
    assert_int_equal(json_array_size(u), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(u, 0), "id")), ID);
    json_decref(o);
    smmu_run_free(&r);
    free(before);
    free(after);
    simh_stop(h);
}

/* Independently of the instance check (a journal that cannot tell which QEMU wrote it, as over tcp): a
 * device QEMU reports cold-plugged (QOM hotplugged false) is never device_del'ed as an undo, even when it
 * has the id the interrupted transaction used. */
static void test_rollback_never_unplugs_a_cold_plugged_device(void **st)
{
    struct fx *f = *st;
    struct simh *h = start_sim(f, NULL);
    struct smmu_run r;
    interrupted_attach(f, h);
    simh_stop(h);
    h = start_sim(f, ID);
    journal_moves_to(f, h, false);
    char *before = devices_of(h), rec[4200];
    snprintf(rec, sizeof(rec), "%s/rec.txt", f->state);
    assert_int_equal(cli(f, h, &r, (const char *[]){"--json", "--record", rec, "recover", NULL}), 0);
    char *after = devices_of(h);
    assert_string_equal(after, before); /* the cold-plugged device is still there */
    char *sent = smmu_test_read_file(rec, NULL);
    assert_non_null(sent);
    assert_null(strstr(sent, "device_del")); /* not even tried */
    free(sent);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    /* what this transaction plugged is not in QEMU (the device of that id was there at launch) */
    json_t *van = json_object_get(o, "vanished");
    assert_int_equal(json_array_size(van), 1);
    assert_string_equal(json_string_value(json_array_get(van, 0)), ID);
    assert_true(json_is_null(json_object_get(o, "interrupted")));
    json_t *u = json_object_get(o, "unknown"); /* QEMU's own device, listed as such */
    assert_int_equal(json_array_size(u), 1);
    assert_true(json_is_false(json_object_get(json_array_get(u, 0), "hotplugged")));
    json_decref(o);
    smmu_run_free(&r);
    free(before);
    free(after);
    simh_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recover_refuses_another_vms_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restarted_qemu_voids_the_old_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_never_unplugs_a_cold_plugged_device, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
