/* test_sim_multi.c — qmp-sim --vms N --dir DIR: N independent VMs in one process. Each VM has its own
 * sockets, model, faults, unplug rules, clock, client slot and dump; one VM's quit or stall leaves the others
 * serving; the command line is checked (usage errors exit 2).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/sim_harness.h"
#include "support/testutil.h"

#define T 5000

static struct simh *start(int n, const char *const *extra)
{
    const char *const *topo = simh_topology(2, 2, 1);
    const char *args[200];
    struct simh *h;
    int k = 0;
    for (int i = 0; topo[i]; i++)
        args[k++] = topo[i];
    for (int i = 0; extra && extra[i]; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    assert_int_equal(simh_start_vms(&h, n, args), 0);
    return h;
}

static int cmd_ok(int fd, const char *cmd)
{
    json_t *r = simh_qmp_cmd(fd, cmd, -1, T);
    int ok = r && json_object_get(r, "return") != NULL;
    json_decref(r);
    return ok;
}

static long dump_long(struct simh *v, const char *key)
{
    json_t *d = simh_dump(v);
    long n;
    assert_non_null(d);
    n = (long)json_integer_value(json_object_get(d, key));
    json_decref(d);
    return n;
}

static size_t dump_objects(struct simh *v)
{
    json_t *d = simh_dump(v);
    size_t n;
    assert_non_null(d);
    n = json_array_size(json_object_get(d, "objects"));
    json_decref(d);
    return n;
}

/* Every VM listens on DIR/vmK.qmp and has the whole topology; all can have a client at the same time. */
static void test_sockets_and_topology(void **state)
{
    struct simh *h = start(3, NULL);
    int fd[3];
    (void)state;
    assert_int_equal(simh_nvms(h), 3);
    assert_ptr_equal(simh_vm(h, 0), h);
    assert_null(simh_vm(h, 3));
    for (int k = 0; k < 3; k++) {
        struct simh *v = simh_vm(h, k);
        char want[512];
        json_t *r;
        snprintf(want, sizeof(want), "%s/vm%d.qmp", simh_dir(h), k);
        assert_string_equal(simh_qmp_path(v), want);
        assert_int_equal(simh_pid(v), simh_pid(h));
        fd[k] = simh_qmp_open(v); /* each VM's one client slot is its own */
        assert_true(fd[k] >= 0);
        r = simh_qmp_cmd(fd[k], "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"smmuv3.2\",\"property\":"
                                "\"accel\"}}", -1, T);
        assert_non_null(r);
        assert_true(json_is_true(json_object_get(r, "return")));
        json_decref(r);
    }
    for (int k = 0; k < 3; k++)
        simh_qmp_close(fd[k]);
    assert_int_equal(simh_stop(h), 0);
}

/* State changes on one VM only: objects, command counts, fds, unplug rules. */
static void test_state_independent(void **state)
{
    const char *extra[] = {"--dev-iommu", NULL};
    struct simh *h = start(3, extra);
    struct simh *v1 = simh_vm(h, 1);
    size_t base = dump_objects(h);
    int fd = simh_qmp_open(v1);
    json_t *r;
    (void)state;
    assert_true(fd >= 0);
    assert_true(cmd_ok(fd, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\"}}"));
    assert_int_equal(dump_objects(v1), base + 1);
    assert_int_equal(dump_objects(h), base);
    assert_int_equal(dump_objects(simh_vm(h, 2)), base);
    assert_int_equal(dump_long(v1, "command_count"), 2);
    assert_int_equal(dump_long(h, "command_count"), 0);
    /* the same id on another VM is not a duplicate there */
    simh_qmp_close(fd);
    fd = simh_qmp_open(simh_vm(h, 2));
    assert_true(cmd_ok(fd, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\"}}"));
    r = simh_qmp_cmd(fd, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\"}}",
                     -1, T);
    assert_true(simh_is_error(r, "GenericError", "attempt to add duplicate property 'iommufd0' to object (type "
                                                 "'container')"));
    json_decref(r);
    simh_qmp_close(fd);
    /* the virtual clock is per VM */
    assert_int_equal(simh_advance(v1, 0), 0);
    assert_int_equal(dump_long(v1, "vclock_ms"), 0); /* -S: prelaunch, the clock stands */
    assert_int_equal(simh_stop(h), 0);
}

/* A fault set on one VM's control socket fires there only; a stalled VM delays no other. */
static void test_fault_on_one_vm(void **state)
{
    struct simh *h = start(2, NULL);
    struct simh *v1 = simh_vm(h, 1);
    int f0, f1;
    json_t *r;
    (void)state;
    assert_int_equal(simh_fault(v1, "{\"kind\":\"fail\",\"command\":\"query-status\",\"desc\":\"boom\",\"count\":5}"),
                     0);
    assert_int_equal(simh_fault(h, "{\"kind\":\"stall\",\"command\":\"query-name\"}"), 0);
    f0 = simh_qmp_open(h);
    f1 = simh_qmp_open(v1);
    assert_true(f0 >= 0 && f1 >= 0);
    r = simh_qmp_cmd(f1, "{\"execute\":\"query-status\"}", -1, T);
    assert_true(simh_is_error(r, "GenericError", "boom"));
    json_decref(r);
    assert_true(cmd_ok(f0, "{\"execute\":\"query-status\"}"));
    /* VM 0 stalls on query-name (no reply, ever); VM 1 answers meanwhile */
    assert_int_equal(simh_qmp_send(f0, "{\"execute\":\"query-name\",\"id\":7}", -1), 0);
    assert_true(cmd_ok(f1, "{\"execute\":\"query-name\"}"));
    assert_true(cmd_ok(f0, "{\"execute\":\"query-version\"}")); /* later commands still answered */
    simh_qmp_close(f0);
    simh_qmp_close(f1);
    assert_int_equal(simh_stop(h), 0);
}

/* QMP quit on one VM: SHUTDOWN, its sockets go, the others keep serving; SIGTERM ends the rest, exit 0. */
static void test_quit_one_vm(void **state)
{
    struct simh *h = start(3, NULL);
    struct simh *v1 = simh_vm(h, 1);
    struct stat st;
    int f1 = simh_qmp_open(v1), f2;
    json_t *e;
    (void)state;
    assert_true(f1 >= 0);
    assert_true(cmd_ok(f1, "{\"execute\":\"quit\"}"));
    e = simh_qmp_wait_event(f1, "SHUTDOWN", NULL, T);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "data"), "reason")), "host-qmp-quit");
    json_decref(e);
    assert_null(simh_qmp_recv(f1, T)); /* EOF */
    simh_qmp_close(f1);
    assert_int_equal(stat(simh_qmp_path(v1), &st), -1);
    assert_int_equal(stat(simh_control_path(v1), &st), -1);
    f2 = simh_qmp_open(simh_vm(h, 2));
    assert_true(f2 >= 0);
    assert_true(cmd_ok(f2, "{\"execute\":\"query-status\"}"));
    simh_qmp_close(f2);
    assert_int_equal(dump_long(h, "command_count"), 0);
    assert_int_equal(simh_stop(h), 0);
}

/* --dump-on-exit FILE%d: one dump per VM, each its own state. */
static void test_dump_per_vm(void **state)
{
    char *dir = smmu_test_mkdtemp("simdumps"), pat[512], path[512];
    const char *extra[] = {"--dev-iommu", "--dump-on-exit", pat, NULL};
    struct simh *h;
    int fd;
    (void)state;
    snprintf(pat, sizeof(pat), "%s/dump-%%d.json", dir);
    h = start(2, extra);
    fd = simh_qmp_open(simh_vm(h, 1));
    assert_true(cmd_ok(fd, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"ifd9\"}}"));
    simh_qmp_close(fd);
    assert_int_equal(simh_stop(h), 0);
    for (int k = 0; k < 2; k++) {
        char *txt;
        snprintf(path, sizeof(path), "%s/dump-%d.json", dir, k);
        txt = smmu_test_read_file(path, NULL);
        assert_non_null(txt);
        assert_true((strstr(txt, "\"ifd9\"") != NULL) == (k == 1));
        free(txt);
    }
    smmu_test_rmtree(dir);
    free(dir);
}

/* Many VMs are cheap: 100 in one process, every one answers on its own socket. */
static void test_hundred_vms(void **state)
{
    struct simh *h = start(100, NULL);
    (void)state;
    for (int k = 0; k < 100; k++) {
        int fd = simh_qmp_open(simh_vm(h, k));
        assert_true(fd >= 0);
        assert_true(cmd_ok(fd, "{\"execute\":\"query-status\"}"));
        simh_qmp_close(fd);
    }
    assert_int_equal(dump_long(simh_vm(h, 99), "command_count"), 2);
    assert_int_equal(simh_stop(h), 0);
}

static int run_sim(const char *const *args, char *err, size_t errlen)
{
    char bin[1024];
    const char *argv[16];
    int p[2], status, n = 0;
    pid_t pid;
    ssize_t got;
    snprintf(bin, sizeof(bin), "%s/tests/sim/qmp-sim", SMMU_BINARY_DIR);
    argv[n++] = getenv("QMP_SIM_BIN") && *getenv("QMP_SIM_BIN") ? getenv("QMP_SIM_BIN") : bin;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    assert_int_equal(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    got = read(p[0], err, errlen - 1);
    err[got > 0 ? got : 0] = 0;
    close(p[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_usage_errors(void **state)
{
    char err[4096];
    (void)state;
    assert_int_equal(run_sim((const char *[]){"--vms", "2", NULL}, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--vms needs --dir DIR"));
    assert_int_equal(run_sim((const char *[]){"--vms", "0", "--dir", "/tmp", NULL}, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--vms '0': expected a number from 1 to 10000"));
    assert_int_equal(run_sim((const char *[]){"--vms", "x2", "--dir", "/tmp", NULL}, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--vms 'x2'"));
    assert_int_equal(run_sim((const char *[]){"--vms", "2", "--dir", "/tmp", "--qmp", "/tmp/q", NULL}, err,
                             sizeof(err)), 2);
    assert_non_null(strstr(err, "no --qmp/--control"));
    assert_int_equal(run_sim((const char *[]){"--dir", "/tmp", "--qmp", "/tmp/q", NULL}, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--dir goes with --vms N"));
    assert_int_equal(run_sim((const char *[]){"--vms", "2", "--dir", "/tmp", "--dump-on-exit", "/tmp/d.json", NULL},
                             err, sizeof(err)), 2);
    assert_non_null(strstr(err, "needs %d"));
    /* a bad topology is refused once, before anything listens */
    assert_int_equal(run_sim((const char *[]){"--vms", "2", "--dir", "/tmp", "-device", "arm-smmuv3,id=s", NULL},
                             err, sizeof(err)), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sockets_and_topology),
        cmocka_unit_test(test_state_independent),
        cmocka_unit_test(test_fault_on_one_vm),
        cmocka_unit_test(test_quit_one_vm),
        cmocka_unit_test(test_dump_per_vm),
        cmocka_unit_test(test_hundred_vms),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
