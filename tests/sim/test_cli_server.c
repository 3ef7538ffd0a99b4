/* test_cli_server.c — `smmuctl --server unix:PATH --vm NAME …` against the direct CLI (issue 10 item 4,
 * DESIGN §7 first paragraph): two qmp-sim VMs started with identical arguments over one fake sysfs; VM A is
 * driven by the direct CLI (`--qmp`, its own state dir), VM B by `smmuctl serve` (the binary, --state-dir and
 * --qmp/--vm for B) through `--server`. Every command runs both ways, in text and with --json, and the test
 * compares stdout, the --json objects and the exit codes: topology, plan (and a refused one), attach (done,
 * refused by the planner, and a QEMU error rolled back), detach (done, a pending unplug: exit 4, refused by the
 * guest: 1, a mix: 4), status
 * and recover (with the unplug pending and with nothing open). Members that legitimately differ are dropped
 * before comparing (srv_normalise says which). Then the errors of --server itself: the daemon unreachable
 * (exit 3, naming the socket), an unknown VM (exit 2, naming it and how to register it), usage errors.
 * Waits are for conditions (the daemon's /readyz, the socket); every process is stopped by PID. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fakesys.h"
#include "support/http_client.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define SMMU_B "smmu3.0x0000000026000000"
#define DEV1 "0009:01:00.0"
#define DEV2 "0019:01:00.0"
#define ID1 "hostdev-0009-01-00.0"
#define BOUND_MS 60000

struct fx {
    struct fakesys *fs;
    struct simh *a, *b;   /* twins: A direct, B behind the daemon */
    char *dir;
    char state_a[512], state_b[512], sock[512], server[600], log[600];
    pid_t daemon;
};

static struct fx *F;

static void start_daemon(struct fx *f)
{
    const char *argv[] = {smmu_run_cli_path(), "serve", "--listen", f->server, "--state-dir", f->state_b,
                          "--sysfs", fakesys_root(f->fs), "--qmp", simh_qmp_path(f->b), "--vm", "vm1",
                          "--log", f->log, NULL};
    f->daemon = fork();
    assert_true(f->daemon >= 0);
    if (f->daemon == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        unsetenv("NOTIFY_SOCKET");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    /* ready: registrations loaded and the VM reconciled (or found unreachable) — the condition, not a sleep */
    for (int i = 0;; i++) {
        struct htc_resp r = {0};
        int st = htc_request(NULL, f->sock, "GET", "/readyz", NULL, NULL, &r);
        htc_resp_free(&r);
        if (st == 200)
            break;
        assert_true(i < 600); /* a failure bound (60 s), not a measurement */
        assert_int_equal(waitpid(f->daemon, NULL, WNOHANG), 0);
        usleep(100 * 1000);
    }
}

static int setup(void **st)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *extra[] = {"--dev-iommu", "--sysfs", NULL, NULL};
    f->fs = fakesys_new(NULL);
    fakesys_add_dev(f->fs, &(struct fakesys_dev){.bdf = DEV1, .smmu = SMMU_A, .driver = "vfio-pci", .group = "1",
                                                 .cdev = "vfio1", .numa_node = "0"});
    fakesys_add_dev(f->fs, &(struct fakesys_dev){.bdf = DEV2, .smmu = SMMU_B, .driver = "vfio-pci", .group = "2",
                                                 .cdev = "vfio2", .numa_node = "0"});
    extra[2] = fakesys_root(f->fs);
    if (simh_start_vm(&f->a, 2, 2, 0, extra) < 0 || simh_start_vm(&f->b, 2, 2, 0, extra) < 0)
        return -1;
    f->dir = smmu_test_mkdtemp("cli-server");
    snprintf(f->state_a, sizeof(f->state_a), "%s/state-a", f->dir);
    snprintf(f->state_b, sizeof(f->state_b), "%s/state-b", f->dir);
    snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
    snprintf(f->server, sizeof(f->server), "unix:%s", f->sock);
    snprintf(f->log, sizeof(f->log), "%s/serve.log", f->dir);
    start_daemon(f);
    F = f;
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fx *f = *st;
    int rc = 0;
    if (f->daemon > 0) { /* SIGTERM: in-flight work gets up to 10 s (DESIGN §7); a daemon still there after a
                            generous bound is killed, and the test fails for it */
        int status = 0;
        kill(f->daemon, SIGTERM);
        for (int i = 0; waitpid(f->daemon, &status, WNOHANG) == 0; i++) {
            if (i == 600) {
                kill(f->daemon, SIGKILL);
                waitpid(f->daemon, &status, 0);
                fprintf(stderr, "smmuctl serve did not exit on SIGTERM: killed\n");
                rc = -1;
                break;
            }
            usleep(100 * 1000);
        }
        if (rc == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
            fprintf(stderr, "smmuctl serve ended with status %d after SIGTERM\n", status);
            rc = -1;
        }
    }
    simh_stop(f->a);
    simh_stop(f->b);
    fakesys_free(f->fs);
    smmu_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return rc;
}

/* Members that legitimately differ between the two ways, dropped before comparing:
 *  - interrupted.started / interrupted.pid (status of an open transaction): when and by whom — never the
 *    same process;
 *  - the order of topology's "vfio" list (sorted by id here): it is discovery order, and a fresh discovery
 *    (direct) walks QOM's children order while the daemon's kept topology lists devices in the order they were
 *    plugged since it connected; the text form shows them by port, the same either way;
 *  - nothing else: both VMs are named vm1, the daemon reads the same --sysfs, so device ids, ports, vSMMUs,
 *    host SMMUs, steps and messages are the same. */
static int by_id(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "id"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "id"));
    return strcmp(x ? x : "", y ? y : "");
}

static void srv_normalise(json_t *o)
{
    json_t *vfio = json_object_get(o, "vfio");
    if (json_is_array(vfio) && json_array_size(vfio) > 1) {
        size_t n = json_array_size(vfio);
        json_t **v = calloc(n, sizeof(*v));
        for (size_t i = 0; i < n; i++)
            v[i] = json_incref(json_array_get(vfio, i));
        qsort(v, n, sizeof(*v), by_id);
        json_array_clear(vfio);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(vfio, v[i]);
        free(v);
    }
    json_t *txn = json_object_get(o, "interrupted");
    if (json_is_object(txn)) {
        json_object_del(txn, "started");
        json_object_del(txn, "pid");
    }
}

struct both {
    struct smmu_run d, s; /* direct, through the server */
};

/* Run the same command both ways; the exit codes must be `code` for both. */
static void run_both(struct both *b, int code, const char *const *args)
{
    const char *direct[] = {"--qmp", simh_qmp_path(F->a), "--vm", "vm1", "--state-dir", F->state_a, "--sysfs",
                            fakesys_root(F->fs), NULL};
    const char *server[] = {"--server", F->server, "--vm", "vm1", NULL};
    smmu_run_cli_with(&b->d, direct, args, BOUND_MS);
    smmu_run_cli_with(&b->s, server, args, BOUND_MS);
    if (b->d.status != code || b->s.status != code)
        fail_msg("%s: exit direct %d, --server %d, want %d\ndirect stderr: %s\nserver stderr: %s", args[0],
                 b->d.status, b->s.status, code, b->d.err, b->s.err);
}

static void both_free(struct both *b)
{
    smmu_run_free(&b->d);
    smmu_run_free(&b->s);
}

/* Text: stdout must be the same, byte for byte. */
static void same_text(int code, const char *const *args, const char *must_contain)
{
    struct both b;
    run_both(&b, code, args);
    if (strcmp(b.d.out, b.s.out))
        fail_msg("%s: stdout differs\n--- direct:\n%s--- --server:\n%s--- server stderr:\n%s", args[0], b.d.out,
                 b.s.out, b.s.err);
    if (must_contain && !strstr(b.d.out, must_contain) && !strstr(b.d.err, must_contain))
        fail_msg("%s: '%s' in neither stdout nor stderr:\n%s\n%s", args[0], must_contain, b.d.out, b.d.err);
    both_free(&b);
}

/* The two objects' difference on stderr (cmocka's message is short). */
static void show_diff(const json_t *d, const json_t *s)
{
    char a[700], b[700], cmd[1500];
    snprintf(a, sizeof(a), "%s/direct.json", F->dir);
    snprintf(b, sizeof(b), "%s/server.json", F->dir);
    json_dump_file(d, a, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_dump_file(s, b, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    snprintf(cmd, sizeof(cmd), "diff -u %s %s >&2", a, b);
    if (system(cmd) < 0)
        fprintf(stderr, "cannot run diff\n");
}

/* --json: one object each, equal after srv_normalise; returns the direct one (new reference). */
static json_t *same_json(int code, const char *const *args)
{
    struct both b;
    run_both(&b, code, args);
    json_t *d = smmu_run_json(&b.d), *s = smmu_run_json(&b.s);
    if (!d || !s)
        fail_msg("%s: not one JSON object each:\n%s\n%s\n%s", args[0], b.d.out, b.s.out, b.s.err);
    srv_normalise(d);
    srv_normalise(s);
    if (!json_equal(d, s)) {
        show_diff(d, s);
        fail_msg("%s %s: --json differs (diff above)", args[0], args[1]);
    }
    assert_int_equal(json_integer_value(json_object_get(d, "exit_code")) , json_is_integer(json_object_get(d, "exit_code")) ? code : 0);
    json_decref(s);
    both_free(&b);
    return d;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void fault_both(const char *fault)
{
    assert_int_equal(simh_fault(F->a, fault), 0);
    assert_int_equal(simh_fault(F->b, fault), 0);
}

static void unplug_both(const char *rule)
{
    assert_int_equal(simh_unplug(F->a, rule), 0);
    assert_int_equal(simh_unplug(F->b, rule), 0);
}

static void test_read_only(void **st)
{
    (void)st;
    same_text(0, ARGS("topology"), "vSMMU smmuv3.1");
    json_decref(same_json(0, ARGS("--json", "topology")));
    same_text(0, ARGS("plan", DEV1, DEV2), "QMP commands attach would send");
    same_text(0, ARGS("plan", "--id", "gpu0", "--iommufd", "fd7", DEV1), "gpu0");
    json_t *p = same_json(0, ARGS("--json", "plan", DEV1, DEV2));
    assert_int_equal(json_array_size(json_object_get(p, "placements")), 2);
    json_decref(p);
    /* refused: no such device (nothing sent), and a bad address (usage, before any request) */
    same_text(2, ARGS("plan", "0000:99:00.0"), NULL);
    json_decref(same_json(2, ARGS("--json", "plan", "0000:99:00.0")));
    json_decref(same_json(2, ARGS("--json", "plan", "not-a-bdf")));
    same_text(0, ARGS("status"), "no interrupted transaction");
    json_decref(same_json(0, ARGS("--json", "status")));
    same_text(0, ARGS("recover"), "no interrupted transaction");
    json_decref(same_json(0, ARGS("--json", "recover")));
}

static void test_attach_detach(void **st)
{
    (void)st;
    /* done, text then --json, with a detach of each kind in between */
    same_text(0, ARGS("attach", DEV1), "attached " DEV1);
    same_text(0, ARGS("topology"), ID1);
    same_text(0, ARGS("status"), ID1);
    json_decref(same_json(0, ARGS("--json", "status")));
    json_decref(same_json(0, ARGS("--json", "detach", ID1)));
    json_t *a = same_json(0, ARGS("--json", "attach", DEV1, DEV2));
    assert_string_equal(json_string_value(json_object_get(a, "outcome")), "done");
    json_decref(a);
    json_decref(same_json(0, ARGS("--json", "topology")));
    same_text(0, ARGS("detach", ID1, DEV2), "detached");
    /* a --timeout beyond the API's longest ?wait= (3600 s) is still one request the daemon accepts */
    same_text(0, ARGS("--timeout", "1000", "plan", DEV1), "QMP commands attach would send");
    /* the options that are API members: --id, --iommufd */
    same_text(0, ARGS("attach", "--id", "gpu0", "--iommufd", "fd7", DEV1), "as gpu0");
    json_decref(same_json(0, ARGS("--json", "status")));
    same_text(0, ARGS("detach", "gpu0"), "iommufd object fd7 deleted");
    /* refused by the planner: nothing sent, exit 2 */
    same_text(2, ARGS("attach", "0000:99:00.0"), NULL);
    json_decref(same_json(2, ARGS("--json", "attach", "0000:99:00.0")));
    /* QEMU refuses the device_add: rolled back, exit 1, the same report */
    fault_both("{\"kind\":\"fail\",\"command\":\"device_add\",\"desc\":\"injected: no\"}");
    same_text(1, ARGS("attach", DEV1), "rolled back");
    fault_both("{\"kind\":\"fail\",\"command\":\"device_add\",\"desc\":\"injected: no\"}");
    json_t *rb = same_json(1, ARGS("--json", "attach", DEV1));
    assert_string_equal(json_string_value(json_object_get(rb, "outcome")), "rolled-back");
    assert_string_equal(json_string_value(json_object_get(json_object_get(rb, "error"), "desc")), "injected: no");
    json_decref(rb);
    same_text(0, ARGS("status"), "attached (0)");
}

static void test_pending_unplug(void **st)
{
    (void)st;
    same_text(0, ARGS("attach", DEV1), "attached");
    unplug_both("{\"id\":\"" ID1 "\",\"mode\":\"never\"}");
    same_text(4, ARGS("detach", "--unplug-timeout", "0.5", ID1), "pending");
    same_text(4, ARGS("status"), "pending unplugs (1)");
    json_decref(same_json(4, ARGS("--json", "status")));
    same_text(4, ARGS("recover"), "pending unplugs (1)");
    json_decref(same_json(4, ARGS("--json", "recover")));
    json_t *d = same_json(4, ARGS("--json", "detach", "--unplug-timeout", "0.5", ID1));
    json_decref(d);
    /* the guest lets go: both end with nothing open (the direct status reports "finished: …" as it notices
     * only now; the daemon saw DEVICE_DELETED when it came, so its status has nothing to finish — the one
     * difference, by design: not compared) */
    unplug_both("{\"id\":\"" ID1 "\",\"mode\":\"event\"}");
    struct both b;
    for (int i = 0;; i++) { /* the daemon's journal settles when the event arrives: wait for that */
        smmu_run_cli_with(&b.d, ARGS("--qmp", simh_qmp_path(F->a), "--vm", "vm1", "--state-dir", F->state_a, "--sysfs",
                                     fakesys_root(F->fs)), ARGS("status"), BOUND_MS);
        smmu_run_cli_with(&b.s, ARGS("--server", F->server, "--vm", "vm1"), ARGS("status"), BOUND_MS);
        int ok = b.s.status == 0 && b.d.status == 0;
        both_free(&b);
        if (ok)
            break;
        assert_true(i < 100);
        usleep(100 * 1000);
    }
    same_text(0, ARGS("status"), "pending unplugs (0)");
}

/* The guest refuses the unplug: detach exit 1 (none removed, none pending), the same report both ways; a
 * mix of one detached and one refused is 4. */
static void test_refused_unplug(void **st)
{
    (void)st;
    same_text(0, ARGS("attach", DEV1, DEV2), "attached");
    unplug_both("{\"id\":\"" ID1 "\",\"mode\":\"guest-error\"}");
    same_text(1, ARGS("detach", ID1), "refused");
    json_decref(same_json(1, ARGS("--json", "detach", ID1)));
    same_text(0, ARGS("status"), "attached (2)");
    json_t *d = same_json(4, ARGS("--json", "detach", ID1, DEV2));
    assert_int_equal(json_array_size(json_object_get(d, "devices")), 2);
    json_decref(d);
    same_text(0, ARGS("status"), "attached (1)");
}

static void test_server_errors(void **st)
{
    struct fx *f = *st;
    struct smmu_run r;
    char nosock[600];
    snprintf(nosock, sizeof(nosock), "unix:%s/none.sock", f->dir);
    /* the daemon unreachable: exit 3, naming the socket */
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", nosock, "--vm", "vm1", "topology"), BOUND_MS), 3);
    assert_non_null(strstr(r.err, nosock + 5));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", nosock, "--vm", "vm1", "--json", "attach", DEV1), BOUND_MS), 3);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 3);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(o, "error"), "message")), nosock + 5));
    json_decref(o);
    smmu_run_free(&r);
    /* an unknown VM: exit 2, naming it and both ways to register it */
    const char *cmds[][3] = {{"topology", NULL}, {"status", NULL}, {"attach", DEV1}, {"detach", ID1}, {"plan", DEV1}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        assert_int_equal(smmu_run_cli(&r, ARGS("--server", f->server, "--vm", "ghost", cmds[i][0], cmds[i][1]),
                                      BOUND_MS), 2);
        assert_non_null(strstr(r.err, "no VM 'ghost'"));
        assert_non_null(strstr(r.err, "PUT /v1/vms/ghost"));
        assert_non_null(strstr(r.err, "serve --qmp ADDR --vm ghost"));
        smmu_run_free(&r);
    }
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", f->server, "--vm", "ghost", "--json", "status"), BOUND_MS), 2);
    o = smmu_run_json(&r);
    assert_non_null(o);
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_string_equal(json_string_value(json_object_get(o, "command")), "status");
    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")), "ENOENT");
    json_decref(o);
    smmu_run_free(&r);
    /* usage: no --vm; --qmp as well; a command the daemon does not run; an option its API lacks */
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", f->server, "topology"), BOUND_MS), 2);
    assert_non_null(strstr(r.err, "--vm"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", f->server, "--qmp", simh_qmp_path(f->a), "--vm", "vm1",
                                           "topology"), BOUND_MS), 2);
    assert_non_null(strstr(r.err, "--qmp"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", f->server, "--vm", "vm1", "qmp", "query-status"), BOUND_MS), 2);
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", f->server, "--vm", "vm1", "detach", "--no-wait", ID1),
                                  BOUND_MS), 2);
    assert_non_null(strstr(r.err, "--no-wait"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", "tcp:1.2.3.4:5", "--vm", "vm1", "status"), BOUND_MS), 2);
    smmu_run_free(&r);
    /* SMMUCTL_SERVER: the daemon's commands go through it; --qmp (an option) beats it; qmp/doctor/layout ignore
     * it; with SMMUCTL_QMP set too it is ambiguous */
    setenv("SMMUCTL_SERVER", f->server, 1);
    assert_int_equal(smmu_run_cli(&r, ARGS("--vm", "vm1", "-v", "status"), BOUND_MS), 0);
    assert_non_null(strstr(r.err, "http -> GET /v1/vms/vm1"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--qmp", simh_qmp_path(f->a), "--vm", "vm1", "--state-dir", f->state_a,
                                           "-v", "status"), BOUND_MS), 0);
    assert_null(strstr(r.err, "http ->"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--qmp", simh_qmp_path(f->a), "qmp", "query-status"), BOUND_MS), 0);
    smmu_run_free(&r);
    setenv("SMMUCTL_QMP", simh_qmp_path(f->a), 1);
    assert_int_equal(smmu_run_cli(&r, ARGS("--vm", "vm1", "status"), BOUND_MS), 2);
    assert_non_null(strstr(r.err, "SMMUCTL_SERVER"));
    smmu_run_free(&r);
    unsetenv("SMMUCTL_QMP");
    unsetenv("SMMUCTL_SERVER");
    /* the direct CLI on the VM the daemon holds: exit 2 naming --server; what it names works */
    assert_int_equal(smmu_run_cli(&r, ARGS("--qmp", simh_qmp_path(f->b), "--vm", "vm1", "--state-dir", f->state_b,
                                           "status"), BOUND_MS), 2);
    const char *use = strstr(r.err, "--server ");
    assert_non_null(use);
    char addr[600];
    assert_int_equal(sscanf(use, "--server %599s", addr), 1);
    assert_string_equal(addr, f->server);
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", addr, "--vm", "vm1", "status"), BOUND_MS), 0);
    smmu_run_free(&r);
}

/* Ctrl-C during a --server attach: the CLI stops waiting at once (exit 4, saying the daemon carries on and
 * naming how to follow it); the daemon is not hung by it and still answers. QEMU B stalls the device_add so
 * that the attach is certainly in flight when the signal comes (the condition waited for: the device is in
 * the simulator's state, i.e. the daemon sent it). */
static void test_interrupt_attach(void **st)
{
    struct fx *f = *st;
    char errpath[700];
    snprintf(errpath, sizeof(errpath), "%s/cli.err", f->dir);
    assert_int_equal(simh_fault(f->b, "{\"kind\":\"stall\",\"command\":\"device_add\"}"), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR), err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(null, 0);
        dup2(null, 1);
        dup2(err, 2);
        execl(smmu_run_cli_path(), smmu_run_cli_path(), "--server", f->server, "--vm", "vm1", "attach", DEV1,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0;; i++) {
        json_t *d = simh_dump(f->b);
        bool sent = d && simh_dump_device(d, ID1);
        json_decref(d);
        if (sent)
            break;
        assert_true(i < 600);
        assert_int_equal(waitpid(pid, NULL, WNOHANG), 0); /* still waiting for the daemon */
        usleep(50 * 1000);
    }
    assert_int_equal(kill(pid, SIGINT), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 4);
    char *err = smmu_test_read_file(errpath, NULL);
    assert_non_null(strstr(err, "interrupted"));
    assert_non_null(strstr(err, "the daemon carries on"));
    assert_non_null(strstr(err, "status"));
    free(err);
    /* the daemon still answers (its attach goes on to its own deadline) */
    struct smmu_run r;
    assert_int_equal(smmu_run_cli(&r, ARGS("--server", f->server, "--vm", "vm1", "topology"), BOUND_MS), 0);
    smmu_run_free(&r);
}

/* QEMU gone: the direct CLI cannot connect (exit 3); the daemon has lost its connection — the same exit 3
 * through it, with the CLI's error object. */
static void test_qemu_gone(void **st)
{
    struct fx *f = *st;
    simh_stop(f->a);
    simh_stop(f->b);
    f->a = f->b = NULL;
    struct both b;
    for (int i = 0;; i++) { /* until the daemon has noticed (its VM state): the condition, not a delay */
        struct smmu_run r;
        smmu_run_cli(&r, ARGS("--server", f->server, "--vm", "vm1", "status"), BOUND_MS);
        int code = r.status;
        smmu_run_free(&r);
        if (code == 3)
            break;
        assert_true(i < 600);
        usleep(100 * 1000);
    }
    const char *direct[] = {"--qmp", "/nonexistent/qmp.sock", "--vm", "vm1", "--state-dir", f->state_a, NULL};
    const char *server[] = {"--server", f->server, "--vm", "vm1", NULL};
    const char *cmds[] = {"topology", "status", "recover", "plan"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        smmu_run_cli_with(&b.d, direct, ARGS("--json", cmds[i], i == 3 ? DEV1 : NULL), BOUND_MS);
        smmu_run_cli_with(&b.s, server, ARGS("--json", cmds[i], i == 3 ? DEV1 : NULL), BOUND_MS);
        if (b.d.status != 3 || b.s.status != 3)
            fail_msg("%s: direct %d, --server %d (want 3)\n%s\n%s", cmds[i], b.d.status, b.s.status, b.d.out, b.s.out);
        json_t *d = smmu_run_json(&b.d), *s = smmu_run_json(&b.s);
        assert_non_null(d);
        assert_non_null(s);
        assert_true(json_equal(json_object_get(d, "ok"), json_object_get(s, "ok")));
        assert_true(json_equal(json_object_get(d, "command"), json_object_get(s, "command")));
        assert_true(json_equal(json_object_get(d, "exit_code"), json_object_get(s, "exit_code")));
        assert_non_null(json_object_get(s, "error"));
        json_decref(d);
        json_decref(s);
        both_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_unplug, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_unplug, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qemu_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
