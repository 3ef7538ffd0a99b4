/* test_cli_signals.c — DESIGN §5 "Signals" (issue 15 item 4), deterministic: qmp-sim holds a reply (stall)
 * or the guest holds an unplug, the test waits until the simulator has seen the step, then signals smmuctl.
 *   SIGINT during attach (device_add executed, reply held): no further step, rolled back, exit 1, QEMU as before.
 *   SIGTERM during detach (guest has not released): stop waiting, the device stays pending, exit 4.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/simcli.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define DEV "0009:01:00.0"
#define ID "hostdev-0009-01-00.0"

static int setup(void **st)
{
    const struct fakesys_dev dev = {.bdf = DEV, .smmu = SMMU_A, .driver = "vfio-pci", .group = "1", .cdev = "vfio1"};
    return simcli_setup(st, "cli-signals", &dev, 1, 1, 2, (const char *[]){"--dev-iommu", NULL});
}

static int teardown(void **st)
{
    return simcli_teardown(st);
}

/* smmuctl as a direct child (so the test can signal it), stdout/stderr to files in the state dir. */
static pid_t spawn(struct simcli *f, const char *const *cmd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    const char *argv[24] = {"smmuctl", "--qmp", simh_qmp_path(f->h), "--state-dir", f->state, "--sysfs",
                            fakesys_root(f->fs), "--timeout", "5"}; /* a cancel waits out the reply in flight */
    size_t n = 9;
    for (size_t i = 0; cmd[i] && n < 23; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    char path[4200];
    snprintf(path, sizeof(path), "%s/out.txt", f->state);
    int o = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    snprintf(path, sizeof(path), "%s/err.txt", f->state);
    int e = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o < 0 || e < 0)
        _exit(125);
    dup2(o, 1);
    dup2(e, 2);
    execv(smmu_run_cli_path(), (char *const *)argv);
    _exit(126);
}

/* Poll the simulator until device ID's dump entry satisfies `want` (a condition, not a time bound). */
static void wait_device(struct simcli *f, bool present, bool pending)
{
    for (;;) {
        json_t *d = simh_dump(f->h);
        json_t *dev = simh_dump_device(d, ID);
        bool ok = present ? dev && (!pending || json_is_true(json_object_get(dev, "unplug_pending"))) : !dev;
        json_decref(d);
        if (ok)
            return;
        usleep(2000);
    }
}

static int reap(pid_t pid)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_sigint_during_attach_rolls_back(void **st)
{
    struct simcli *f = *st;
    /* device_add is executed but its reply never comes: smmuctl is waiting mid-transaction */
    assert_int_equal(simh_fault(f->h, "{\"kind\":\"stall\",\"command\":\"device_add\"}"), 0);
    pid_t pid = spawn(f, (const char *[]){"--json", "attach", DEV, NULL});
    wait_device(f, true, false);
    kill(pid, SIGINT);
    assert_int_equal(reap(pid), 1);
    json_t *d = simh_dump(f->h);
    assert_null(simh_dump_device(d, ID));                            /* unplugged again */
    assert_int_equal(json_array_size(json_object_get(d, "objects")), 0); /* iommufd0 deleted */
    json_decref(d);
    char path[4200];
    snprintf(path, sizeof(path), "%s/out.txt", f->state);
    json_t *o = json_load_file(path, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "outcome")), "rolled-back");
    json_decref(o);
    /* the signal ended it, not the reply timeout: smmuctl said so */
    snprintf(path, sizeof(path), "%s/err.txt", f->state);
    char *err = smmu_test_read_file(path, NULL);
    assert_non_null(err);
    assert_non_null(strstr(err, "interrupted (signal 2)"));
    free(err);
}

static void test_sigterm_during_detach_leaves_it_pending(void **st)
{
    struct simcli *f = *st;
    struct smmu_run r;
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"--qmp", simh_qmp_path(f->h), "--state-dir", f->state,
                                                        "--sysfs", fakesys_root(f->fs), "attach", DEV, NULL},
                                  60000), 0);
    smmu_run_free(&r);
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"" ID "\",\"mode\":\"never\"}"), 0);
    pid_t pid = spawn(f, (const char *[]){"detach", "--unplug-timeout", "600", ID, NULL});
    wait_device(f, true, true);
    kill(pid, SIGTERM);
    assert_int_equal(reap(pid), 4);
    json_t *d = simh_dump(f->h);
    assert_non_null(simh_dump_device(d, ID)); /* still there, unplug pending in the guest */
    json_decref(d);
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"--qmp", simh_qmp_path(f->h), "--state-dir", f->state,
                                                        "--sysfs", fakesys_root(f->fs), "--json", "status", NULL},
                                  60000), 4);
    json_t *o = smmu_run_json(&r);
    assert_int_equal(json_array_size(json_object_get(o, "pending")), 1);
    json_decref(o);
    smmu_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigint_during_attach_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_during_detach_leaves_it_pending, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
