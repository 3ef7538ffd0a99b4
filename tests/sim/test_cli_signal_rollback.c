/* test_cli_signal_rollback.c — each of SIGINT/SIGTERM/SIGHUP during an attach, and a second signal during the
 * rollback (issue 15 item 4, DESIGN §5 "Signals"; test_cli_signals.c has SIGINT/attach and SIGTERM/detach), on
 * qmp-sim. The signal lands mid-transaction deterministically: qmp-sim executes a command and holds its reply
 * (fault `stall`: smmuctl then asks QEMU after --timeout, as for any unanswered step) or holds an unplug
 * (`--unplug never`), and the test signals smmuctl only once the simulator's state shows it got there.
 *   - attach: no further step, the rollback undoes what was done, exit 1, QEMU as before;
 *   - a second signal while rolling back is reported and ignored; the rollback finishes (exit 1).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

static const char *const BDF[2] = {"0009:01:00.0", "000a:01:00.0"};
static const char *const ID[2] = {"hostdev-0009-01-00.0", "hostdev-000a-01-00.0"};

struct fx {
    struct fakesys *fs;
    char *tmp;
    char state[4200], out[4200], err[4200];
    struct simh *h;
};

static int setup(void **st)
{
    static const char *const smmu[2] = {"smmu3.0x0000000016000000", "smmu3.0x0000000017000000"};
    struct fx *f = calloc(1, sizeof(*f));
    f->fs = fakesys_new(NULL);
    for (int i = 0; i < 2; i++) {
        char group[8], cdev[16];
        snprintf(group, sizeof(group), "%d", 10 + i);
        snprintf(cdev, sizeof(cdev), "vfio%d", i);
        fakesys_add_dev(f->fs, &(struct fakesys_dev){.bdf = BDF[i], .smmu = smmu[i], .driver = "vfio-pci",
                                                     .group = group, .cdev = cdev, .numa_node = "0"});
    }
    f->tmp = smmu_test_mkdtemp("cli-signals");
    snprintf(f->out, sizeof(f->out), "%s/out", f->tmp);
    snprintf(f->err, sizeof(f->err), "%s/err", f->tmp);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fx *f = *st;
    simh_stop(f->h);
    fakesys_free(f->fs);
    smmu_test_rmtree(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static void vm_begin(struct fx *f, const char *const *extra)
{
    static int seq;
    const char *args[16] = {"--sysfs", fakesys_root(f->fs), "--dev-iommu"};
    size_t n = 3;
    for (size_t i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    simh_stop(f->h);
    f->h = NULL;
    snprintf(f->state, sizeof(f->state), "%s/state%d", f->tmp, ++seq);
    if (simh_start_vm(&f->h, 2, 2, 0, args) < 0)
        fail_msg("cannot start qmp-sim");
}

/* smmuctl in the background (a direct child; stdout and stderr to files): its pid. */
static pid_t spawn(struct fx *f, const char *timeout, const char *const *args)
{
    const char *argv[40] = {smmu_run_cli_path(), "--qmp", simh_qmp_path(f->h), "--state-dir", f->state, "--vm",
                            "vm", "--sysfs", fakesys_root(f->fs), "--timeout", timeout};
    size_t n = 11;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t p = fork();
    if (p == 0) {
        int o = open(f->out, O_WRONLY | O_CREAT | O_TRUNC, 0600), e = open(f->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    assert_true(p > 0);
    return p;
}

static int reap(pid_t p)
{
    int st;
    assert_int_equal(waitpid(p, &st, 0), p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = calloc(1, 1 << 16);
    if (fp) {
        size_t n = fread(buf, 1, (1 << 16) - 1, fp);
        buf[n] = 0;
        fclose(fp);
    }
    return buf;
}

static char *state_of(struct simh *h)
{
    json_t *d = simh_dump(h);
    assert_non_null(d);
    json_object_del(d, "kept_fds");
    json_object_del(d, "command_count");
    json_object_del(d, "vclock_ms");
    char *s = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    return s;
}

/* Wait (no time bound: the condition is what matters) until the simulator has device `id` (want_present) or
 * an unplug pending for it. */
static void wait_device(struct fx *f, const char *id, bool pending)
{
    for (;;) {
        json_t *d = simh_dump(f->h);
        json_t *dev = simh_dump_device(d, id);
        bool ok = dev && (!pending || json_is_true(json_object_get(dev, "unplug_pending")));
        json_decref(d);
        if (ok)
            return;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void assert_no_txn(struct fx *f)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/vm.json", f->state);
    json_t *j = json_load_file(path, 0, NULL);
    if (j && !json_is_null(json_object_get(j, "txn")))
        fail_msg("the journal still holds a transaction");
    json_decref(j);
}

/* SIGTERM / SIGINT / SIGHUP while the second device_add's reply is held: no further step, every change undone. */
static void test_signal_during_attach_rolls_back(void **st)
{
    struct fx *f = *st;
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int s = 0; s < 3; s++) {
        char fault[256];
        snprintf(fault, sizeof(fault), "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":\"%s\"}}", ID[1]);
        vm_begin(f, (const char *[]){"--fault", fault, NULL});
        char *before = state_of(f->h);
        pid_t p = spawn(f, "2", (const char *[]){"--json", "attach", BDF[0], BDF[1], NULL});
        wait_device(f, ID[1], false); /* QEMU executed it; the reply is held */
        kill(p, sigs[s]);
        int rc = reap(p);
        char *out = slurp(f->out), *err = slurp(f->err);
        if (rc != 1)
            fail_msg("signal %d during attach: exit %d, want 1\nstdout: %s\nstderr: %s", sigs[s], rc, out, err);
        json_t *o = json_loads(out, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "outcome")), "rolled-back");
        json_decref(o);
        assert_non_null(strstr(err, "interrupted"));
        char *after = state_of(f->h);
        if (strcmp(before, after))
            fail_msg("signal %d during attach: QEMU is not as before\n before %s\n after  %s", sigs[s], before, after);
        assert_no_txn(f);
        free(before);
        free(after);
        free(out);
        free(err);
    }
}

/* A second signal while the rollback waits for its unplug is reported and ignored: the rollback finishes. */
static void test_second_signal_during_rollback_ignored(void **st)
{
    struct fx *f = *st;
    char fault[256], unplug[160];
    snprintf(fault, sizeof(fault), "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":\"%s\"}}", ID[1]);
    /* the rollback's device_del of the first device is released by the guest only when the test says so */
    snprintf(unplug, sizeof(unplug), "{\"id\":\"%s\",\"mode\":\"never\"}", ID[0]);
    vm_begin(f, (const char *[]){"--fault", fault, "--unplug", unplug, NULL});
    char *before = state_of(f->h);
    pid_t p = spawn(f, "2", (const char *[]){"--json", "attach", BDF[0], BDF[1], NULL});
    wait_device(f, ID[1], false);
    kill(p, SIGTERM);
    wait_device(f, ID[0], true); /* rolling back: the unplug of the first device is under way */
    kill(p, SIGTERM);
    /* wait until smmuctl said it ignored the second one, then let the guest release the device */
    for (;;) {
        char *err = slurp(f->err);
        bool said = strstr(err, "ignored") != NULL;
        free(err);
        if (said)
            break;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    char ctl[160];
    snprintf(ctl, sizeof(ctl), "{\"id\":\"%s\",\"mode\":\"event\",\"delay_ms\":0}", ID[0]);
    assert_int_equal(simh_unplug(f->h, ctl), 0);
    int rc = reap(p);
    char *out = slurp(f->out), *err = slurp(f->err);
    /* the rollback went on to its end (the guest released the device well within the rollback's unplug wait):
     * exit 1, every change undone — not killed, not cut short to 4 */
    if (rc != 1)
        fail_msg("second signal during rollback: exit %d (killed?), want 1\nstdout: %s\nstderr: %s", rc, out, err);
    assert_non_null(strstr(err, "ignored: the rollback is running"));
    char *after = state_of(f->h);
    if (strcmp(before, after))
        fail_msg("second signal during rollback: QEMU is not as before\n before %s\n after  %s", before, after);
    assert_no_txn(f);
    free(before);
    free(after);
    free(out);
    free(err);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_during_attach_rolls_back),
        cmocka_unit_test(test_second_signal_during_rollback_ignored),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
