/* test_cli_concurrent.c — DESIGN §5 "Locks before sockets" (issue 15 item 3). qmp-sim listens like QEMU
 * (backlog 1, one client at a time): concurrent smmuctl processes on one VM take turns on the VM's lock
 * before they connect, so all of them succeed — none fails with exit 3 "Resource temporarily unavailable"
 * or "no QMP greeting". An attach started while a detach waits for a slow unplug waits its turn too.
 * Nothing here is bounded by wall time: the slow unplug only makes the overlap certain. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

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
#define N 4

static const char *const bdfs[N] = {"0009:01:00.0", "0009:02:00.0", "0009:03:00.0", "0009:04:00.0"};

static int setup(void **st)
{
    struct fakesys_dev devs[N];
    char grp[N][8], cdev[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(grp[i], sizeof(grp[i]), "%d", i + 1);
        snprintf(cdev[i], sizeof(cdev[i]), "vfio%d", i + 1);
        devs[i] = (struct fakesys_dev){.bdf = bdfs[i], .smmu = SMMU_A, .driver = "vfio-pci", .group = grp[i],
                                       .cdev = cdev[i]};
    }
    return simcli_setup(st, "cli-concurrent", devs, N, 1, N, (const char *[]){"--dev-iommu", NULL});
}

static int teardown(void **st)
{
    return simcli_teardown(st);
}

/* Run smmuctl in a forked child (so several run at once); the child exits with smmuctl's status and writes
 * its stderr to <state>/<tag>.err for the failure message. */
static pid_t spawn(struct simcli *f, const char *tag, const char *const *cmd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    const char *argv[32] = {"--qmp", simh_qmp_path(f->h), "--state-dir", f->state, "--sysfs", fakesys_root(f->fs)};
    size_t n = 6;
    for (size_t i = 0; cmd[i] && n < 31; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    struct smmu_run r;
    int st = smmu_run_cli(&r, argv, 120000);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.err", f->state, tag);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(r.err ? r.err : "", fp);
        fclose(fp);
    }
    _exit(st < 0 ? 126 : st);
}

static int reap(struct simcli *f, pid_t pid, const char *tag)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s.err", f->state, tag);
        char *err = smmu_test_read_file(path, NULL);
        fprintf(stderr, "%s exited %d: %s\n", tag, WEXITSTATUS(st), err ? err : "");
        free(err);
    }
    return WEXITSTATUS(st);
}

static void test_four_concurrent_attaches_take_turns(void **st)
{
    struct simcli *f = *st;
    pid_t pids[N];
    char tags[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(tags[i], sizeof(tags[i]), "attach%d", i);
        pids[i] = spawn(f, tags[i], (const char *[]){"attach", bdfs[i], NULL});
        assert_true(pids[i] > 0);
    }
    int failed = 0;
    for (int i = 0; i < N; i++)
        failed += reap(f, pids[i], tags[i]) != 0;
    assert_int_equal(failed, 0);
    /* every device landed, each on its own port */
    json_t *d = simh_dump(f->h);
    for (int i = 0; i < N; i++) {
        char id[64];
        snprintf(id, sizeof(id), "hostdev-%.4s-%.2s-%.2s.%c", bdfs[i], bdfs[i] + 5, bdfs[i] + 8, bdfs[i][11]);
        assert_non_null(simh_dump_device(d, id));
    }
    json_decref(d);
}

/* Attach bdfs[0], then start a detach of it whose guest takes 1.5 s to release it (DEVICE_DELETED 1.5 s after
 * device_del); returns once the detach holds the VM's lock and has sent device_del (the sim has seen it). */
static pid_t start_slow_detach(struct simcli *f)
{
    struct smmu_run r;
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"--qmp", simh_qmp_path(f->h), "--state-dir", f->state,
                                                        "--sysfs", fakesys_root(f->fs), "attach", bdfs[0], NULL},
                                  60000), 0);
    smmu_run_free(&r);
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"hostdev-0009-01-00.0\",\"mode\":\"event\",\"delay_ms\":1500}"),
                     0);
    pid_t det = spawn(f, "detach", (const char *[]){"detach", "--unplug-timeout", "60", bdfs[0], NULL});
    for (int i = 0; i < 100000; i++) {
        json_t *d = simh_dump(f->h);
        json_t *dev = simh_dump_device(d, "hostdev-0009-01-00.0");
        bool pending = dev && json_is_true(json_object_get(dev, "unplug_pending"));
        json_decref(d);
        if (pending)
            break;
        usleep(1000); /* polling a condition, not a time bound */
    }
    return det;
}

static void test_attach_waits_for_a_slow_detach(void **st)
{
    struct simcli *f = *st;
    pid_t det = start_slow_detach(f);
    /* started while the detach holds the VM and the monitor: it must wait its turn, not fail */
    /* --timeout 1 (per QMP command and greeting) is shorter than the unplug: only the lock wait may cover it */
    pid_t att = spawn(f, "attach-behind", (const char *[]){"--timeout", "1", "attach", bdfs[1], NULL});
    assert_int_equal(reap(f, det, "detach"), 0);
    assert_int_equal(reap(f, att, "attach-behind"), 0);
}

/* The read-only commands too: `topology`, `plan` and `qmp` started while a detach holds the VM wait for the lock
 * before they connect (they connected first and got no greeting: exit 3 after --timeout). */
static void test_read_only_commands_wait_for_a_slow_detach(void **st)
{
    struct simcli *f = *st;
    pid_t det = start_slow_detach(f);
    pid_t top = spawn(f, "topology-behind", (const char *[]){"--timeout", "1", "topology", NULL});
    pid_t pl = spawn(f, "plan-behind", (const char *[]){"--timeout", "1", "plan", bdfs[1], NULL});
    pid_t q = spawn(f, "qmp-behind", (const char *[]){"--timeout", "1", "qmp", "query-status", NULL});
    assert_int_equal(reap(f, det, "detach"), 0);
    assert_int_equal(reap(f, q, "qmp-behind"), 0);
    assert_int_equal(reap(f, top, "topology-behind"), 0);
    assert_int_equal(reap(f, pl, "plan-behind"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_four_concurrent_attaches_take_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_commands_wait_for_a_slow_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_waits_for_a_slow_detach, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
