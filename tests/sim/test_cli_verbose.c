/* test_cli_verbose.c — what smmuctl says on stderr while it works (issue 14.4):
 *   - `-v` shows the QMP traffic both ways at debug level ("-> …" / "<- …"), a long message cut with its size,
 *     for the read-only commands and for attach/detach alike; without -v none of it;
 *   - a long wait (a detach whose guest keeps the device) shows a progress line on a terminal (a pty here),
 *     rewritten in place and erased before the result; with stderr a pipe nothing of it appears.
 * The progress tick comes once a second and the unplug timeout is 2 s: both are timers on smmuctl's one loop,
 * so the first tick always comes before the timeout — no wall-clock bound is asserted.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
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
#define BDF "0009:01:00.0"
#define ID "hostdev-0009-01-00.0"

static int setup(void **st)
{
    const struct fakesys_dev dev = {.bdf = BDF, .smmu = SMMU_A, .driver = "vfio-pci", .group = "1", .cdev = "vfio1"};
    return simcli_setup(st, "cli-verbose", &dev, 1, 1, 2, (const char *[]){"--dev-iommu", NULL});
}

static int teardown(void **st)
{
    return simcli_teardown(st);
}

static void run(struct simcli *f, struct smmu_run *r, const char *const *cmd, int want)
{
    const char *common[] = {"--qmp", simh_qmp_path(f->h), "--state-dir", f->state, "--sysfs", fakesys_root(f->fs),
                            NULL};
    smmu_run_cli_with(r, common, cmd, 60000);
    if (r->status != want)
        fail_msg("smmuctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", cmd[0], r->status, want, r->out, r->err);
}

static void assert_has(const char *hay, const char *needle, const char *what)
{
    if (!strstr(hay, needle))
        fail_msg("%s: no '%s' in:\n%s", what, needle, hay);
}

static void test_v_shows_qmp_traffic(void **st)
{
    struct simcli *f = *st;
    struct smmu_run r;
    run(f, &r, (const char *[]){"-v", "topology", NULL}, 0);
    assert_has(r.err, "debug: qmp -> {\"execute\":\"qmp_capabilities\"", "topology -v");
    assert_has(r.err, "debug: qmp <- {\"return\":", "topology -v");
    assert_has(r.err, "debug: qmp -> {\"execute\":\"qom-list-get\"", "topology -v");
    assert_has(r.err, " bytes)", "topology -v (the qom-list-get reply is cut)");
    smmu_run_free(&r);
    run(f, &r, (const char *[]){"topology", NULL}, 0);
    if (strstr(r.err, "-> {") || strstr(r.err, "<- {"))
        fail_msg("topology without -v shows traffic:\n%s", r.err);
    smmu_run_free(&r);
    /* the commands that run on the VM handle too */
    run(f, &r, (const char *[]){"-v", "attach", BDF, NULL}, 0);
    assert_has(r.err, "debug: qmp -> {\"execute\":\"device_add\"", "attach -v");
    assert_has(r.err, "debug: qmp <- {\"QMP\":", "attach -v (the greeting)");
    smmu_run_free(&r);
    run(f, &r, (const char *[]){"detach", BDF, NULL}, 0);
    if (strstr(r.err, "-> {") || strstr(r.err, "<- {"))
        fail_msg("detach without -v shows traffic:\n%s", r.err);
    smmu_run_free(&r);
}

/* smmuctl with stderr on a pty (a terminal), stdout and stdin elsewhere; returns the exit status and what
 * appeared on the terminal. */
static int run_on_tty(struct simcli *f, const char *const *cmd, char **tty_out, char **out)
{
    int master, slave;
    char outpath[4200];
    snprintf(outpath, sizeof(outpath), "%s/tty.stdout", f->state);
    assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[32] = {smmu_run_cli_path(), "--qmp", simh_qmp_path(f->h), "--state-dir", f->state,
                                "--sysfs", fakesys_root(f->fs)};
        size_t n = 7;
        for (size_t i = 0; cmd[i] && n < 31; i++)
            argv[n++] = cmd[i];
        argv[n] = NULL;
        int o = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600), z = open("/dev/null", O_RDONLY);
        if (o < 0 || z < 0 || dup2(z, 0) < 0 || dup2(o, 1) < 0 || dup2(slave, 2) < 0)
            _exit(126);
        close(master);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(slave);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    for (;;) { /* until the child's end closes the terminal (EIO on Linux) */
        if (len + 1024 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t k = read(master, buf + len, cap - len - 1);
        if (k > 0)
            len += (size_t)k;
        else if (k < 0 && errno == EINTR)
            continue;
        else
            break;
    }
    buf[len] = 0;
    close(master);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    *tty_out = buf;
    *out = smmu_test_read_file(outpath, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_progress_on_a_terminal_only(void **st)
{
    struct simcli *f = *st;
    struct smmu_run r;
    char *tty, *out;
    run(f, &r, (const char *[]){"attach", BDF, NULL}, 0);
    smmu_run_free(&r);
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"" ID "\",\"mode\":\"never\"}"), 0); /* the guest keeps it */
    int rc = run_on_tty(f, (const char *[]){"detach", "--unplug-timeout", "2", BDF, NULL}, &tty, &out);
    if (rc != 4)
        fail_msg("detach on a tty: exit %d, want 4 (pending)\nterminal: %s\nstdout: %s", rc, tty, out ? out : "");
    /* the line and its elapsed seconds (1 at the first tick; a loaded machine may run the tick later) */
    const char *line = "\rsmmuctl: detach: waiting for the guest to release the devices (up to 2 s)… ";
    const char *at = strstr(tty, line);
    if (!at)
        fail_msg("no progress line on the terminal:\n%s", tty);
    at += strlen(line);
    char *end;
    long secs = strtol(at, &end, 10);
    if (end == at || secs < 1 || strncmp(end, " s\033[K", 5))
        fail_msg("progress line without its elapsed seconds: ...%.60s", at);
    /* erased before the end: the last progress line is followed by the erase sequence */
    char *last = strrchr(tty, '\r');
    assert_non_null(last);
    if (strncmp(last, "\r\033[K", 4))
        fail_msg("the progress line was left on the terminal: ...%s", last);
    assert_has(out, "pending", "stdout");
    free(tty);
    free(out);
    /* stderr a pipe: nothing of it */
    run(f, &r, (const char *[]){"detach", "--unplug-timeout", "2", BDF, NULL}, 4);
    if (strstr(r.err, "waiting for the guest to release the devices (up to") || strchr(r.err, '\r'))
        fail_msg("progress on a pipe:\n%s", r.err);
    smmu_run_free(&r);
    /* --quiet on a terminal: nothing of it either */
    rc = run_on_tty(f, (const char *[]){"--quiet", "detach", "--unplug-timeout", "2", BDF, NULL}, &tty, &out);
    assert_int_equal(rc, 4);
    if (strstr(tty, "waiting for the guest"))
        fail_msg("progress with --quiet:\n%s", tty);
    free(tty);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v_shows_qmp_traffic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_on_a_terminal_only, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
