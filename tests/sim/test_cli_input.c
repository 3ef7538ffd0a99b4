/* test_cli_input.c — bad input to the CLI gets a clear error, the documented exit code and, with --json,
 * exactly one object with `ok` and `command`; nothing is sent to QEMU (issue 15 item 8).
 *
 * Cases: an empty DEV; --json with a bad option or no command; a write error on stdout (/dev/full);
 * --qmp naming a regular file ("not a socket"); a unix path over 107 bytes ("path too long"); control
 * characters in QEMU's error text escaped when printed (qmp-sim fails a command with such a desc).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

static char *state_dir;

static int setup(void **st)
{
    (void)st;
    state_dir = smmu_test_mkdtemp("cli-input");
    return state_dir ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    smmu_test_rmtree(state_dir);
    free(state_dir);
    return 0;
}

/* Run smmuctl --state-dir <tmp> ARGS…; returns its exit status. */
static int run(struct smmu_run *r, const char *const *args)
{
    const char *argv[32] = {"--state-dir", state_dir};
    size_t n = 2;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return smmu_run_cli(r, argv, 30000);
}

/* --json: exactly one object on stdout with ok false, the command (or null), the exit code and a message. */
static void assert_json_error(const struct smmu_run *r, const char *command, int code, const char *needle)
{
    json_t *o = smmu_run_json(r);
    assert_non_null(o);
    assert_true(json_is_false(json_object_get(o, "ok")));
    json_t *c = json_object_get(o, "command");
    assert_non_null(c); /* present even before a command is known */
    if (command)
        assert_string_equal(json_string_value(c), command);
    else
        assert_true(json_is_null(c));
    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), code);
    const char *msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, needle));
    json_decref(o);
}

static void test_empty_device_name(void **st)
{
    struct smmu_run r;
    (void)st;
    /* nothing listens here: a usage error must come before any connect (exit 2, not 3) */
    assert_int_equal(run(&r, (const char *[]){"--qmp", "/nonexistent/qmp.sock", "detach", "", NULL}), 2);
    assert_non_null(strstr(r.err, "empty device name"));
    smmu_run_free(&r);
    assert_int_equal(run(&r, (const char *[]){"--json", "--qmp", "/nonexistent/qmp.sock", "attach", "", NULL}), 2);
    assert_json_error(&r, "attach", 2, "empty device name");
    smmu_run_free(&r);
}

static void test_json_usage_errors_print_one_object(void **st)
{
    struct smmu_run r;
    (void)st;
    assert_int_equal(run(&r, (const char *[]){"--json", "--bogus", "topology", NULL}), 2);
    assert_json_error(&r, NULL, 2, "unknown option '--bogus'");
    smmu_run_free(&r);
    assert_int_equal(run(&r, (const char *[]){"--json", NULL}), 2);
    assert_json_error(&r, NULL, 2, "no command given");
    smmu_run_free(&r);
    assert_int_equal(run(&r, (const char *[]){"--json", "--timeout", "x", "status", NULL}), 2);
    assert_json_error(&r, NULL, 2, "--timeout");
    smmu_run_free(&r);
}

/* A command option given to the wrong command is named in the error, also when its value is a separate
 * argument ("--iommufd X": the message said "option --X"). */
static void test_option_scope_names_the_option(void **st)
{
    struct smmu_run r;
    (void)st;
    assert_int_equal(run(&r, (const char *[]){"--qmp", "/nonexistent/qmp.sock", "topology", "--iommufd", "x", NULL}),
                     2);
    assert_non_null(strstr(r.err, "option --iommufd is only valid with: attach plan"));
    smmu_run_free(&r);
    assert_int_equal(run(&r, (const char *[]){"--json", "--qmp", "/nonexistent/qmp.sock", "detach", "--spare", "1",
                                              "x", NULL}),
                     2);
    assert_json_error(&r, "detach", 2, "option --spare is only valid with: layout");
    smmu_run_free(&r);
    assert_int_equal(run(&r, (const char *[]){"--qmp", "/nonexistent/qmp.sock", "status", "--unplug-timeout=5", NULL}),
                     2);
    assert_non_null(strstr(r.err, "option --unplug-timeout is only valid with: detach"));
    smmu_run_free(&r);
}

static void test_stdout_write_error_fails(void **st)
{
    (void)st;
    /* runcli captures stdout; here stdout must be /dev/full, so fork by hand */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/full", O_WRONLY);
        int devnull = open("/dev/null", O_WRONLY);
        if (fd < 0 || devnull < 0)
            _exit(120);
        dup2(fd, 1);
        dup2(devnull, 2);
        execl(smmu_run_cli_path(), "smmuctl", "--help", (char *)NULL);
        _exit(121);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_true(WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 120);
}

static void test_qmp_not_a_socket(void **st)
{
    struct smmu_run r;
    char path[4096];
    (void)st;
    snprintf(path, sizeof(path), "%s/not-a-socket", state_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x\n", f);
    fclose(f);
    assert_int_equal(run(&r, (const char *[]){"--qmp", path, "topology", NULL}), 3);
    assert_non_null(strstr(r.err, "not a socket"));
    smmu_run_free(&r);
}

static void test_qmp_path_too_long(void **st)
{
    struct smmu_run r;
    char path[200];
    (void)st;
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = 0;
    assert_int_equal(run(&r, (const char *[]){"--qmp", path, "topology", NULL}), 2);
    assert_non_null(strstr(r.err, "path too long"));
    smmu_run_free(&r);
    assert_int_equal(run(&r, (const char *[]){"--json", "--qmp", path, "status", NULL}), 2);
    assert_json_error(&r, "status", 2, "path too long");
    smmu_run_free(&r);
}

static void test_qemu_error_text_escaped(void **st)
{
    struct simh *h = NULL;
    struct smmu_run r;
    (void)st;
    assert_int_equal(simh_start_vm(&h, 1, 1, 0, NULL), 0);
    /* a desc with a newline, an ESC sequence and a BEL, as a hostile or confused peer could send */
    assert_int_equal(simh_fault(h, "{\"kind\":\"fail\",\"command\":\"query-status\",\"class\":\"GenericError\","
                                   "\"desc\":\"bad\\nline \\u001b[2J\\u0007end\"}"), 0);
    assert_int_equal(run(&r, (const char *[]){"--qmp", simh_qmp_path(h), "qmp", "query-status", NULL}), 1);
    assert_null(strchr(r.err, '\x1b'));
    assert_null(strchr(r.err, '\a'));
    assert_non_null(strstr(r.err, "bad\\nline \\x1b[2J\\x07end"));
    smmu_run_free(&r);
    simh_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_device_name),
        cmocka_unit_test(test_json_usage_errors_print_one_object),
        cmocka_unit_test(test_option_scope_names_the_option),
        cmocka_unit_test(test_stdout_write_error_fails),
        cmocka_unit_test(test_qmp_not_a_socket),
        cmocka_unit_test(test_qmp_path_too_long),
        cmocka_unit_test(test_qemu_error_text_escaped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
