/* test_e2e_recover.c — recover, status and pending unplugs against real QEMU 11.
 *
 * A journal as a killed smmuctl leaves it is written by hand, with QEMU brought into the matching state
 * through QMP first; `smmuctl recover` must then put QEMU back exactly as it was before the transaction,
 * and a second `recover` must find nothing to do. A cold-plugged device never finishes its unplug without a
 * guest (FACTS): that is the real pending-unplug path of detach and status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"
#include "support/e2e_env.h"
#include "support/fakesys.h"
#include "support/qemu.h"
#include "support/runcli.h"
#include "support/testutil.h"

struct env {
    struct smmu_e2e_env b;
    char journal[4200], file[4200];
};

static int env_setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    if (smmu_e2e_env_start(&e->b, "e2e-recover",
                           (const char *[]){"-netdev", "user,id=n0", "-netdev", "user,id=cold0", "-device",
                                            "e1000e,netdev=cold0,bus=rp2b,id=coldnic", NULL}) < 0) {
        free(e);
        return -1;
    }
    snprintf(e->journal, sizeof(e->journal), "%s/vm1.json", e->b.state);
    snprintf(e->file, sizeof(e->file), "%s/fake-fd", e->b.tmp);
    mkdir(e->b.state, 0700);
    close(open(e->file, O_RDWR | O_CREAT, 0600));
    *state = e;
    return 0;
}

static int env_teardown(void **state)
{
    struct env *e = *state;
    if (!e)
        return 0;
    smmu_e2e_env_stop(&e->b);
    free(e);
    return 0;
}

static int smmuctl(struct env *e, struct smmu_run *r, const char *const *extra)
{
    const char *const common[] = {"--qmp", smmu_qemu_socket_path(e->b.q), "--state-dir", e->b.state, "--vm", "vm1",
                                  "--sysfs", fakesys_root(e->b.fs), "--timeout", "5", NULL};
    return smmu_run_cli_with(r, common, extra, 60000);
}

/* One QMP command on a fresh connection (an optional fd passed with it); returns 0 or QEMU's error. */
static int qmp(struct env *e, const char *cmd, json_t *args, bool with_fd, char *desc, size_t desc_len)
{
    struct event_base *base = event_base_new();
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    int fd = with_fd ? open(e->file, O_RDWR | O_CLOEXEC) : -1;
    assert_int_equal(qmp_client_new(&c, base, NULL), 0);
    assert_int_equal(qmp_client_connect_sync(c, smmu_qemu_socket_path(e->b.q), &err), 0);
    int r = qmp_call_sync(c, cmd, args, with_fd ? &fd : NULL, with_fd ? 1 : 0, NULL, &err);
    if (desc)
        snprintf(desc, desc_len, "%s", err.qmp_desc);
    if (fd >= 0)
        close(fd);
    qmp_client_free(c);
    event_base_free(base);
    return r;
}

/* What a test compares: QEMU's objects, peripherals and named fds (probed with closefd of a name). */
static char *qemu_state(struct env *e)
{
    struct smmu_run r;
    char *s = NULL;
    json_t *all = json_object();
    const char *paths[] = {"/objects", "/machine/peripheral"};
    for (size_t i = 0; i < 2; i++) {
        char args[128];
        snprintf(args, sizeof(args), "{\"path\":\"%s\"}", paths[i]);
        assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "qmp", "qom-list", args, NULL}), 0);
        json_t *o = json_loads(r.out, 0, NULL);
        json_object_set(all, paths[i], json_object_get(o, "return"));
        json_decref(o);
        smmu_run_free(&r);
    }
    s = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(all);
    return s;
}

static void write_journal(struct env *e, json_t *doc)
{
    assert_int_equal(json_dump_file(doc, e->journal, JSON_INDENT(1)), 0);
    json_decref(doc);
}

static json_t *read_journal(struct env *e)
{
    json_t *j = json_load_file(e->journal, 0, NULL);
    assert_non_null(j);
    return j;
}

static json_t *step(const char *kind, const char *name, const char *st, int consumer)
{
    json_t *s = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kind", kind, "name", name, "state", st, "bdf", "0009:01:00.0",
                          "port", "rp1a");
    if (consumer >= 0)
        json_object_set_new(s, "consumer", json_integer(consumer));
    return s;
}

/* Killed after `getfd <id>-cdev` was answered, before device_add was sent: QEMU holds iommufd0 (created by
 * this transaction) and a named fd. recover: closefd the unconsumed name, object-del the object, and NOT
 * closefd the name object-add consumed. */
static void test_recover_attach_killed_before_device_add(void **state)
{
    struct env *e = *state;
    char *before = qemu_state(e);
    assert_int_equal(qmp(e, "getfd", json_pack("{s:s}", "fdname", "iommufd0-fd"), true, NULL, 0), 0);
    assert_int_equal(qmp(e, "object-add", json_pack("{s:s,s:s,s:s}", "qom-type", "iommufd", "id", "iommufd0", "fd",
                                                    "iommufd0-fd"), false, NULL, 0), 0);
    assert_int_equal(qmp(e, "getfd", json_pack("{s:s}", "fdname", "hostdev-0009-01-00.0-cdev"), true, NULL, 0), 0);
    json_t *steps = json_pack("[o,o,o,o]", step("getfd", "iommufd0-fd", "done", 1),
                              step("object-add", "iommufd0", "done", -1),
                              step("getfd", "hostdev-0009-01-00.0-cdev", "done", 3),
                              step("device_add", "hostdev-0009-01-00.0", "planned", -1));
    write_journal(e, json_pack("{s:i,s:s,s:s,s:n,s:[],s:{s:s,s:i,s:s,s:s,s:b,s:o}}", "version", 1, "vm", "vm1", "qmp",
                               "", "iommufd", "devices", "txn", "op", "attach", "pid", 1, "started", "x", "iommufd",
                               "iommufd0", "creates_iommufd", 1, "steps", steps));
    struct smmu_run r;
    assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "recover", NULL}), 0);
    json_t *o = json_loads(r.out, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "recovered"), "result")), "rolled-back");
    assert_true(json_is_null(json_object_get(o, "interrupted")));
    json_decref(o);
    smmu_run_free(&r);
    char *after = qemu_state(e);
    assert_string_equal(before, after);
    /* both names are gone from QEMU: the unconsumed one was closed, the consumed one never existed after */
    char desc[256];
    assert_int_equal(qmp(e, "closefd", json_pack("{s:s}", "fdname", "hostdev-0009-01-00.0-cdev"), false, desc,
                         sizeof(desc)), -EIO);
    assert_string_equal(desc, "File descriptor named 'hostdev-0009-01-00.0-cdev' not found");
    json_t *j = read_journal(e);
    assert_true(json_is_null(json_object_get(j, "txn")));
    json_decref(j);
    /* idempotent: nothing left to do */
    assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "recover", NULL}), 0);
    o = json_loads(r.out, 0, NULL);
    assert_true(json_is_null(json_object_get(o, "recovered")));
    json_decref(o);
    smmu_run_free(&r);
    assert_int_equal(smmuctl(e, &r, (const char *[]){"status", NULL}), 0);
    assert_non_null(strstr(r.out, "no interrupted transaction"));
    smmu_run_free(&r);
    free(before);
    free(after);
}

/* Killed after device_add was sent, before its reply: the journal says "sent". recover asks QEMU (the device
 * exists), unplugs it (real DEVICE_DELETED) and rolls the rest back. */
static void test_recover_attach_killed_after_device_add_sent(void **state)
{
    struct env *e = *state;
    char *before = qemu_state(e);
    assert_int_equal(qmp(e, "device_add", json_pack("{s:s,s:s,s:s,s:s,s:s}", "driver", "e1000e", "netdev", "n0", "bus",
                                                    "rp1a", "addr", "0x0", "id", "nic0"), false, NULL, 0), 0);
    json_t *steps = json_pack("[o]", step("device_add", "nic0", "sent", -1));
    write_journal(e, json_pack("{s:i,s:s,s:s,s:n,s:[],s:{s:s,s:i,s:s,s:s,s:b,s:o}}", "version", 1, "vm", "vm1", "qmp",
                               "", "iommufd", "devices", "txn", "op", "attach", "pid", 1, "started", "x", "iommufd",
                               "iommufd0", "creates_iommufd", 0, "steps", steps));
    struct smmu_run r;
    assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "--unplug-timeout", "5", "recover", NULL}), 2);
    smmu_run_free(&r); /* --unplug-timeout is a detach option */
    assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "recover", NULL}), 0);
    json_t *o = json_loads(r.out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "recovered"), "result")), "rolled-back");
    json_decref(o);
    smmu_run_free(&r);
    char *after = qemu_state(e);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* A cold-plugged device never finishes its unplug without a guest: detach reports it pending (exit 4), the
 * journal keeps it, status says so (exit 4), and a second detach meets QEMU's "already in the process of
 * unplug" and stays pending. */
static void test_detach_pending_without_guest(void **state)
{
    struct env *e = *state;
    /* as if smmuctl had attached coldnic */
    write_journal(e, json_pack("{s:i,s:s,s:s,s:n,s:[{s:s,s:s,s:s,s:s,s:s,s:s}],s:n}", "version", 1, "vm", "vm1",
                               "qmp", "", "iommufd", "devices", "id", "coldnic", "bdf", "0009:02:00.0", "vsmmu",
                               "smmuv3.2", "port", "rp2b", "host_smmu", "smmu3.0x0000000017000000", "state",
                               "attached", "txn"));
    struct smmu_run r;
    assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "detach", "--unplug-timeout", "0.3", "coldnic", NULL}), 4);
    json_t *o = json_loads(r.out, 0, NULL);
    assert_non_null(o);
    json_t *d = json_array_get(json_object_get(o, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "outcome")), "pending");
    json_decref(o);
    smmu_run_free(&r);
    json_t *j = read_journal(e);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "devices"), 0), "state")),
                        "unplug-pending");
    assert_true(json_is_null(json_object_get(j, "txn")));
    json_decref(j);

    assert_int_equal(smmuctl(e, &r, (const char *[]){"status", NULL}), 4);
    assert_non_null(strstr(r.out, "pending unplugs (1):"));
    assert_non_null(strstr(r.out, "coldnic"));
    smmu_run_free(&r);

    assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "detach", "--unplug-timeout", "0.3", "coldnic", NULL}), 4);
    o = json_loads(r.out, 0, NULL);
    d = json_array_get(json_object_get(o, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "outcome")), "pending");
    assert_non_null(strstr(json_string_value(json_object_get(d, "message")), "already in the process of unplug"));
    json_decref(o);
    smmu_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recover_attach_killed_before_device_add),
        cmocka_unit_test(test_recover_attach_killed_after_device_add_sent),
        cmocka_unit_test(test_detach_pending_without_guest),
    };
    return cmocka_run_group_tests(tests, env_setup, env_teardown);
}
