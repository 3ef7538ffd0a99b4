/* test_serve_sigkill.c — issue 10 item 7: the `smmuctl serve` process SIGKILLed mid-transaction and started
 * again recovers the VM from the journal with no new request. The daemon is the real binary; qmp-sim holds the
 * second device_add unanswered (a stall) so the kill lands with the first device plugged and the second sent.
 * Every wait is for a condition (a file's content, an HTTP answer), bounded only to fail instead of hang.
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
#include <time.h>
#include <unistd.h>

#include "support/fakesys.h"
#include "support/http_client.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define DEV1 "hostdev-0009-01-00.0"
#define DEV2 "hostdev-0009-02-00.0"
#define BOUND_POLLS 60000 /* x 1 ms: a bound to fail instead of hanging, never a measurement */

struct fx {
    struct fakesys *fs;
    struct simh *h;
    char *dir;
    char sock[300], state[300], log[300], listen[320];
    pid_t pid;
};

static void nap(void)
{
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int setup(void **st)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *extra[] = {"--sysfs", NULL, "--dev-iommu", NULL};
    f->fs = fakesys_new(NULL);
    fakesys_add_dev(f->fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                                 .group = "1", .cdev = "vfio1"});
    fakesys_add_dev(f->fs, &(struct fakesys_dev){.bdf = "0009:02:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                                 .group = "2", .cdev = "vfio2"});
    extra[1] = fakesys_root(f->fs);
    if (simh_start_vm(&f->h, 1, 2, 0, extra) < 0)
        return -1;
    f->dir = smmu_test_mkdtemp("serve-sigkill");
    snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
    snprintf(f->listen, sizeof(f->listen), "unix:%s", f->sock);
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/serve.log", f->dir);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fx *f = *st;
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    simh_stop(f->h);
    fakesys_free(f->fs);
    smmu_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* smmuctl serve holding the VM (pre-registered by --qmp/--vm), its output appended to the log. */
static void daemon_start(struct fx *f)
{
    const char *argv[] = {smmu_run_cli_path(), "serve", "--listen", f->listen, "--state-dir", f->state, "--sysfs",
                          fakesys_root(f->fs), "--qmp", simh_qmp_path(f->h), "--vm", "vm1", NULL};
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        int null = open("/dev/null", O_RDONLY), log = open(f->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
            _exit(126);
        unsetenv("NOTIFY_SOCKET");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
}

/* Until GET /readyz answers 200 (every VM reconciled or found unreachable). */
static void wait_ready(struct fx *f)
{
    for (int i = 0; i < BOUND_POLLS; i++) {
        struct htc_resp r = {0};
        int st = htc_request(NULL, f->sock, "GET", "/readyz", NULL, NULL, &r);
        htc_resp_free(&r);
        if (st == 200)
            return;
        nap();
    }
    char *log = smmu_test_read_file(f->log, NULL);
    fail_msg("smmuctl serve never became ready; its log:\n%s", log ? log : "");
}

static json_t *journal(struct fx *f)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/vm1.json", f->state);
    return json_load_file(path, 0, NULL);
}

/* The journal's transaction has a device_add of `id` in state `state`. */
static bool journal_step(struct fx *f, const char *id, const char *state)
{
    json_t *j = journal(f), *s;
    size_t i;
    bool found = false;
    json_array_foreach(json_object_get(json_object_get(j, "txn"), "steps"), i, s) {
        const char *k = json_string_value(json_object_get(s, "kind"));
        const char *n = json_string_value(json_object_get(s, "name"));
        const char *t = json_string_value(json_object_get(s, "state"));
        found |= k && n && t && !strcmp(k, "device_add") && !strcmp(n, id) && !strcmp(t, state);
    }
    json_decref(j);
    return found;
}

static void test_daemon_sigkilled_mid_attach_recovers(void **st)
{
    struct fx *f = *st;
    char *before;
    {
        json_t *d = simh_dump(f->h);
        json_object_del(d, "command_count");
        json_object_del(d, "vclock_ms");
        before = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(d);
    }
    assert_int_equal(simh_fault(f->h, "{\"kind\":\"stall\",\"command\":\"device_add\",\"arg\":{\"id\":\"" DEV2 "\"}}"),
                     0);
    daemon_start(f);
    wait_ready(f);
    struct htc_resp r = {0};
    int code = htc_request(NULL, f->sock, "POST", "/v1/vms/vm1/attach?wait=0", NULL,
                           "{\"devices\":[\"0009:01:00.0\",\"0009:02:00.0\"]}", &r);
    if (code != 202)
        fail_msg("attach ?wait=0: HTTP %d, want 202: %s", code, r.body ? r.body : "");
    htc_resp_free(&r);
    /* the first device is in, the second device_add sent and held by the simulator */
    int i;
    for (i = 0; i < BOUND_POLLS && !journal_step(f, DEV2, "sent"); i++)
        nap();
    assert_true(journal_step(f, DEV2, "sent"));
    json_t *d = simh_dump(f->h);
    assert_non_null(simh_dump_device(d, DEV1));
    json_decref(d);

    kill(f->pid, SIGKILL); /* the daemon dies mid-transaction: nothing of it runs any more */
    int ws;
    assert_int_equal(waitpid(f->pid, &ws, 0), f->pid);
    f->pid = 0;
    assert_true(WIFSIGNALED(ws));
    json_t *j = journal(f);
    assert_false(json_is_null(json_object_get(j, "txn"))); /* what kill -9 leaves: the transaction */
    json_decref(j);
    json_decref(simh_control(f->h, "{\"cmd\":\"clear-faults\"}"));

    /* started again, with no request: the reconcile of its connect rolls the interrupted attach back */
    daemon_start(f);
    wait_ready(f);
    j = journal(f);
    assert_true(json_is_null(json_object_get(j, "txn")));
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 0);
    json_decref(j);
    d = simh_dump(f->h);
    json_object_del(d, "command_count");
    json_object_del(d, "vclock_ms");
    char *after = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    if (strcmp(before, after))
        fail_msg("the VM is not as before the attach:\n before %s\n after  %s", before, after);
    free(before);
    free(after);
    /* and it says so on GET /v1/vms/vm1 */
    code = htc_request(NULL, f->sock, "GET", "/v1/vms/vm1", NULL, NULL, &r);
    assert_int_equal(code, 200);
    json_t *o = json_loads(r.body, 0, NULL);
    htc_resp_free(&r);
    assert_int_equal(json_integer_value(json_object_get(o, "attached")), 0);
    json_decref(o);
    kill(f->pid, SIGTERM);
    assert_int_equal(waitpid(f->pid, &ws, 0), f->pid);
    f->pid = 0;
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_daemon_sigkilled_mid_attach_recovers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
