/* test_txn_replay.c — attach/detach wire sequences, byte for byte: the smmuctl binary against recorded sessions.
 *
 * qmp-fixtures/txn-a64-*.txt were recorded from real QEMU 11.1.3 (rollbacks: what QEMU refuses here),
 * txn-syn-*.txt from qmp-sim (a successful attach and a parallel detach cannot run on this machine's QEMU).
 * The replay server fails on any command smmuctl sends differently (arguments, order, fds) or not at all.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "replay/replay_proc.h"
#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/testutil.h"

struct rig {
    char *dir;
    char sock[4200], state[4200], dev[4200];
    struct fakesys *fs;
};

static int rig_setup(void **state)
{
    struct rig *g = calloc(1, sizeof(*g));
    g->dir = smmu_test_mkdtemp("txn-replay");
    snprintf(g->sock, sizeof(g->sock), "%s/qmp.sock", g->dir);
    snprintf(g->state, sizeof(g->state), "%s/state", g->dir);
    snprintf(g->dev, sizeof(g->dev), "%s/dev", g->dir);
    g->fs = fakesys_new(NULL);
    fakesys_add_dev(g->fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = "smmu3.0x0000000016000000",
                                                 .driver = "vfio-pci", .group = "5", .cdev = "vfio0", .numa_node = "0"});
    fakesys_add_dev(g->fs, &(struct fakesys_dev){.bdf = "000a:01:00.0", .smmu = "smmu3.0x0000000017000000",
                                                 .driver = "vfio-pci", .group = "6", .cdev = "vfio1", .numa_node = "0"});
    fakesys_write_dev_tree(g->fs, g->dev);
    *state = g;
    return 0;
}

static int rig_teardown(void **state)
{
    struct rig *g = *state;
    fakesys_free(g->fs);
    smmu_test_rmtree(g->dir);
    free(g->dir);
    free(g);
    return 0;
}

/* The recordings played one after another were one QEMU instance; each is replayed by a new qmp-replay
 * process. Tell the journal so (its "qemu" member names the instance: DESIGN §5 "Whose journal is it"),
 * or the second run would rightly treat the first run's devices as a restarted QEMU's. */
static void same_qemu(struct rig *g, pid_t pid)
{
    char path[4300], stat[64], buf[1024];
    snprintf(path, sizeof(path), "%s/vm.json", g->state);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j)
        return; /* the first run: no journal yet */
    snprintf(stat, sizeof(stat), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(stat, "r");
    unsigned long long start = 0;
    if (f && fgets(buf, sizeof(buf), f)) {
        char *q = strrchr(buf, ')');
        for (int field = 2; q && field < 22; field++)
            q = strchr(q + 1, ' ');
        start = q ? strtoull(q + 1, NULL, 10) : 0;
    }
    if (f)
        fclose(f);
    json_object_set_new(j, "qemu", json_pack("{s:i,s:I}", "pid", (int)pid, "start", (json_int_t)start));
    assert_int_equal(json_dump_file(j, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER), 0);
    json_decref(j);
}

/* Play `fixture` to one smmuctl run with `args`; returns smmuctl's exit code, the replay must match exactly. */
static int play(struct rig *g, const char *fixture, const char *const *args, struct smmu_run *r)
{
    struct replay_proc *p;
    struct smmu_error err = SMMU_ERROR_INIT;
    char path[4200];
    const char *argv[40] = {"--qmp", g->sock, "--state-dir", g->state, "--vm", "vm", "--sysfs", fakesys_root(g->fs),
                            "--dev", g->dev};
    size_t n = 10;
    snprintf(path, sizeof(path), "%s/%s", SMMU_FIXTURES_DIR, fixture);
    if (replay_proc_start(&p, path, g->sock, NULL, &err) < 0)
        fail_msg("qmp-replay %s: %s", fixture, err.message);
    same_qemu(g, replay_proc_pid(p));
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    smmu_run_cli(r, argv, 30000);
    int rc = replay_proc_wait(p, 10000);
    if (rc != 0)
        fail_msg("%s: smmuctl's session differs from the recording (qmp-replay %d):\n%s\nsmmuctl stdout: %s\nstderr: %s",
                 fixture, rc, replay_proc_report(p), r->out, r->err);
    replay_proc_free(p);
    return r->status;
}

static json_t *journal(struct rig *g)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s/vm.json", g->state);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_fd_pass_rollback(void **state)
{
    struct rig *g = *state;
    struct smmu_run r;
    assert_int_equal(play(g, "txn-a64-attach-fd-pass-rollback.txt",
                          (const char *[]){"--json", "attach", "--fd-pass", "0009:01:00.0", NULL}, &r), 1);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(o, "error"), "desc")),
                           "error bind device fd="));
    json_decref(o);
    smmu_run_free(&r);
    json_t *j = journal(g);
    assert_true(json_is_null(json_object_get(j, "txn")));
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 0);
    json_decref(j);
}

static void test_host_no_iommu(void **state)
{
    struct rig *g = *state;
    struct smmu_run r;
    assert_int_equal(play(g, "txn-a64-attach-host-no-iommu.txt",
                          (const char *[]){"--json", "attach", "0009:01:00.0", "000a:01:00.0", NULL}, &r), 1);
    json_t *o = smmu_run_json(&r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "step")), "object-add iommufd0");
    json_decref(o);
    smmu_run_free(&r);
}

/* A successful attach then a parallel detach, with the journal carried from one run to the next. */
static void test_attach_then_detach(void **state)
{
    struct rig *g = *state;
    struct smmu_run r;
    assert_int_equal(play(g, "txn-syn-attach-two.txt", (const char *[]){"attach", "0009:01:00.0", "000a:01:00.0",
                                                                         NULL}, &r), 0);
    assert_non_null(strstr(r.out, "attached 0009:01:00.0 as hostdev-0009-01-00.0 on rp1a behind smmuv3.1"));
    assert_non_null(strstr(r.out, "attached 000a:01:00.0 as hostdev-000a-01-00.0 on rp2a behind smmuv3.2"));
    smmu_run_free(&r);
    json_t *j = journal(g);
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 2);
    assert_true(json_is_true(json_object_get(json_object_get(j, "iommufd"), "owned")));
    json_decref(j);

    assert_int_equal(play(g, "txn-syn-detach-two.txt", (const char *[]){"detach", "0009:01:00.0", "000a:01:00.0",
                                                                         NULL}, &r), 0);
    assert_non_null(strstr(r.out, "iommufd object iommufd0 deleted"));
    smmu_run_free(&r);
    j = journal(g);
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 0);
    assert_true(json_is_null(json_object_get(j, "iommufd")));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fd_pass_rollback, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_host_no_iommu, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_attach_then_detach, rig_setup, rig_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
