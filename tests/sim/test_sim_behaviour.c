/* test_sim_behaviour.c — qmp-sim's own behaviour: topology through QOM, vfio-pci device_add (success and
 * every error), fd consumption, device_del timings, accel violations, faults, one client at a time, dump.
 */
#include <fcntl.h>
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

#include "support/fakesys.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define T 5000

/* Two accel vSMMUs (pcie.1: rp1a rp1b; pcie.2: rp2a), a non-accel one (pcie.3: rp3a), a cold NIC on rp2b,
 * an anonymous port on pcie.0. Host: GPUs 0009:01:00.0 (smmu A) and 0019:01:00.0 (smmu B) on vfio-pci, a
 * NIC 0029:01:00.0 on mlx5_core. */
struct fx {
    struct fakesys *fs;
    char *dev;
    struct simh *h;
    int fd;
};

static const char *SMMU_A = "smmu3.0x0000000016000000", *SMMU_B = "smmu3.0x0000000026000000";

static struct fx *fx_new(const char *const *extra)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *base[] = {"-M", "virt", "-S",
        "-device", "pxb-pcie,id=pcie.1,bus_nr=252,bus=pcie.0,numa_node=0",
        "-device", "pcie-root-port,id=rp1a,bus=pcie.1,chassis=1,port=1",
        "-device", "pcie-root-port,id=rp1b,bus=pcie.1,chassis=2,port=2",
        "-device", "pxb-pcie,id=pcie.2,bus_nr=248,bus=pcie.0",
        "-device", "pcie-root-port,id=rp2a,bus=pcie.2,chassis=3,port=3",
        "-device", "pcie-root-port,id=rp2b,bus=pcie.2,chassis=4,port=4",
        "-device", "pxb-pcie,id=pcie.3,bus_nr=240,bus=pcie.0",
        "-device", "pcie-root-port,id=rp3a,bus=pcie.3,chassis=5,port=5",
        "-device", "arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1,accel=on",
        "-device", "arm-smmuv3,primary-bus=pcie.2,id=smmuv3.2,accel=on",
        "-device", "arm-smmuv3,primary-bus=pcie.3,id=smmuv3.3",
        "-netdev", "user,id=cold0",
        "-device", "e1000e,netdev=cold0,bus=rp2b,id=coldnic",
        "-device", "pcie-root-port,bus=pcie.0,chassis=9",
        "--sysfs", NULL};
    const char *args[80];
    size_t n = 0;
    f->fs = fakesys_new(NULL);
    fakesys_add_dev(f->fs, &(struct fakesys_dev){ .bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                                  .group = "1", .cdev = "vfio1", .numa_node = "0" });
    fakesys_add_dev(f->fs, &(struct fakesys_dev){ .bdf = "0019:01:00.0", .smmu = SMMU_B, .driver = "vfio-pci",
                                                  .group = "2", .cdev = "vfio2", .numa_node = "1" });
    fakesys_add_dev(f->fs, &(struct fakesys_dev){ .bdf = "0029:01:00.0", .smmu = SMMU_B, .driver = "mlx5_core",
                                                  .group = "3" });
    f->dev = smmu_test_mkdtemp("simdev");
    fakesys_write_dev_tree(f->fs, f->dev);
    for (size_t i = 0; base[i] || i + 1 < sizeof(base) / sizeof(base[0]); i++)
        if (base[i])
            args[n++] = base[i];
    args[n++] = fakesys_root(f->fs);
    for (size_t i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    assert_int_equal(simh_start(&f->h, args), 0);
    f->fd = simh_qmp_open(f->h);
    assert_true(f->fd >= 0);
    return f;
}

static void fx_free(struct fx *f)
{
    if (f->fd >= 0)
        simh_qmp_close(f->fd);
    assert_int_equal(simh_stop(f->h), 0); /* clean exit on SIGTERM */
    fakesys_free(f->fs);
    smmu_test_rmtree(f->dev);
    free(f->dev);
    free(f);
}

static json_t *cmd(struct fx *f, const char *c)
{
    json_t *r = simh_qmp_cmd(f->fd, c, -1, T);
    assert_non_null(r);
    return r;
}

static void expect_ok(struct fx *f, const char *c)
{
    json_t *r = cmd(f, c);
    if (!json_object_get(r, "return"))
        fail_msg("%s -> %s", c, json_dumps(r, 0));
    json_decref(r);
}

static void expect_err(struct fx *f, const char *c, const char *klass, const char *desc)
{
    json_t *r = cmd(f, c);
    if (!simh_is_error(r, klass, desc))
        fail_msg("%s\n  expected %s: %s\n  got %s", c, klass, desc, json_dumps(r, 0));
    json_decref(r);
}

static int pass_file(struct fx *f, const char *rel)
{
    char p[1024];
    int fd;
    snprintf(p, sizeof(p), "%s/%s", f->dev, rel);
    fd = open(p, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void getfd(struct fx *f, const char *name, const char *rel)
{
    char c[256];
    int fd = pass_file(f, rel);
    json_t *r;
    snprintf(c, sizeof(c), "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"%s\"}}", name);
    r = simh_qmp_cmd(f->fd, c, fd, T);
    close(fd);
    assert_non_null(json_object_get(r, "return"));
    json_decref(r);
}

static void add_iommufd(struct fx *f)
{
    getfd(f, "iommufd0-fd", "iommu");
    expect_ok(f, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\","
                 "\"fd\":\"iommufd0-fd\"}}");
}

static const char *ADD_A = "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                           "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"addr\":\"0x0\",\"id\":\"hostdev0\"}}";

/* ---- topology ---- */

static void test_topology_qom(void **state)
{
    struct fx *f = fx_new(NULL);
    json_t *r, *props, *p;
    size_t i;
    const char *primary = NULL;
    int accel = -1, ident = -1;
    (void)state;
    r = cmd(f, "{\"execute\":\"qom-list-get\",\"arguments\":{\"paths\":[\"/machine/peripheral/smmuv3.2\","
               "\"/machine/peripheral/rp2a\",\"/machine/peripheral/rp2b/rp2b\"]}}");
    props = json_object_get(json_array_get(json_object_get(r, "return"), 0), "properties");
    json_array_foreach(props, i, p) {
        const char *n = json_string_value(json_object_get(p, "name"));
        if (!strcmp(n, "primary-bus"))
            primary = json_string_value(json_object_get(p, "value"));
        if (!strcmp(n, "accel"))
            accel = json_is_true(json_object_get(p, "value"));
        if (!strcmp(n, "identifier"))
            ident = (int)json_integer_value(json_object_get(p, "value"));
    }
    assert_string_equal(primary, "/machine/unattached/device[42]/pcie.2");
    assert_int_equal(accel, 1);
    assert_int_equal(ident, 1);
    props = json_object_get(json_array_get(json_object_get(r, "return"), 1), "properties");
    json_array_foreach(props, i, p)
        if (!strcmp(json_string_value(json_object_get(p, "name")), "parent_bus"))
            assert_string_equal(json_string_value(json_object_get(p, "value")), primary);
    props = json_object_get(json_array_get(json_object_get(r, "return"), 2), "properties");
    {
        int found = 0;
        json_array_foreach(props, i, p)
            if (!strcmp(json_string_value(json_object_get(p, "name")), "child[0]")) {
                assert_string_equal(json_string_value(json_object_get(p, "value")), "/machine/peripheral/coldnic");
                found = 1;
            }
        assert_true(found);
    }
    json_decref(r);
    /* the pxb root bus lists its ports; the pxb's numa_node is as given, QEMU's 128 otherwise */
    r = cmd(f, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/unattached/device[41]/pcie.1\","
               "\"property\":\"child[1]\"}}");
    assert_string_equal(json_string_value(json_object_get(r, "return")), "/machine/peripheral/rp1b");
    json_decref(r);
    r = cmd(f, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/pcie.1\",\"property\":\"numa_node\"}}");
    assert_int_equal(json_integer_value(json_object_get(r, "return")), 0);
    json_decref(r);
    r = cmd(f, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/pcie.2\",\"property\":\"numa_node\"}}");
    assert_int_equal(json_integer_value(json_object_get(r, "return")), 128);
    json_decref(r);
    r = cmd(f, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral-anon\"}}");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(r, "return"), 1), "name")),
                        "device[0]");
    json_decref(r);
    expect_err(f, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/rp1a\",\"property\":\"bus\"}}",
               "GenericError", "Property 'pcie-root-port.bus' not found");
    expect_err(f, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral/nope\"}}", "DeviceNotFound",
               "Device '/machine/peripheral/nope' not found");
    fx_free(f);
}

/* ---- vfio-pci device_add ---- */

static void test_vfio_add_success_and_properties(void **state)
{
    struct fx *f = fx_new(NULL);
    json_t *r, *d, *dev;
    (void)state;
    add_iommufd(f);
    expect_ok(f, ADD_A);
    r = cmd(f, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral/rp1a/rp1a\"}}");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(r, "return"), 2), "type")),
                        "link<vfio-pci>");
    json_decref(r);
    r = cmd(f, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/hostdev0\",\"property\":\"host\"}}");
    assert_string_equal(json_string_value(json_object_get(r, "return")), "0009:01:00.0");
    json_decref(r);
    r = cmd(f, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/hostdev0\",\"property\":\"iommufd\"}}");
    assert_string_equal(json_string_value(json_object_get(r, "return")), "/objects/iommufd0");
    json_decref(r);
    r = cmd(f, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/hostdev0\",\"property\":\"hotplugged\"}}");
    assert_true(json_is_true(json_object_get(r, "return")));
    json_decref(r);
    d = simh_dump(f->h);
    dev = simh_dump_device(d, "hostdev0");
    assert_non_null(dev);
    assert_string_equal(json_string_value(json_object_get(dev, "driver")), "vfio-pci");
    assert_string_equal(json_string_value(json_object_get(dev, "bus")), "rp1a");
    assert_string_equal(json_string_value(json_object_get(dev, "host")), "0009:01:00.0");
    assert_string_equal(json_string_value(json_object_get(dev, "iommufd")), "iommufd0");
    assert_string_equal(json_string_value(json_object_get(dev, "vsmmu")), "smmuv3.1");
    json_decref(d);
    /* object-del refused while a vfio-pci device uses the backend */
    expect_err(f, "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"iommufd0\"}}", "GenericError",
               "object 'iommufd0' is in use, can not be deleted");
    fx_free(f);
}

static void test_vfio_add_errors(void **state)
{
    struct fx *f = fx_new(NULL);
    (void)state;
    add_iommufd(f);
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"nope\",\"id\":\"h\"}}", "GenericError", "Bus 'nope' not found");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"pcie.1\",\"id\":\"h\"}}", "GenericError",
               "Bus 'pcie.1' does not support hotplugging");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"rp2b\",\"addr\":\"0x0\",\"id\":\"h\"}}", "GenericError",
               "PCI: slot 0 function 0 not available for vfio-pci, in use by e1000e,id=coldnic");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"id\":\"coldnic\"}}", "GenericError",
               "Duplicate device ID 'coldnic'");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                  "\"iommufd\":\"nofd\",\"bus\":\"rp1a\",\"id\":\"h\"}}", "DeviceNotFound", "Device 'nofd' not found");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"iommufd\":\"iommufd0\","
                  "\"bus\":\"rp1a\",\"id\":\"h\"}}", "GenericError", "No provided host device");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"zz:bad\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"id\":\"h\"}}", "GenericError",
               "Property 'vfio-pci.host' doesn't take value 'zz:bad'");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:07:00.0\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"id\":\"h\"}}", "GenericError",
               "vfio /sys/bus/pci/devices/0009:07:00.0: no such host device: No such file or directory");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0029:01:00.0\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"id\":\"h\"}}", "GenericError",
               "vfio 0029:01:00.0: vfio /sys/bus/pci/devices/0029:01:00.0/vfio-dev: couldn't open directory "
               "/sys/bus/pci/devices/0029:01:00.0/vfio-dev: No such file or directory");
    getfd(f, "h-cdev", "vfio/devices/vfio1");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"fd\":\"h-cdev\","
                  "\"bus\":\"rp1a\",\"id\":\"h\"}}", "GenericError", "Use FD passing only with iommufd backend");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"arm-smmuv3\",\"primary-bus\":\"pcie.1\"}}",
               "GenericError", "Device 'arm-smmuv3' does not support hotplugging");
    /* nothing was left behind */
    {
        json_t *d = simh_dump(f->h);
        assert_null(simh_dump_device(d, "h"));
        json_decref(d);
    }
    fx_free(f);
}

/* ---- fds ---- */

static void test_fd_consumption(void **state)
{
    struct fx *f = fx_new(NULL);
    json_t *d;
    (void)state;
    expect_err(f, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}", "GenericError",
               "No file descriptor supplied via SCM_RIGHTS");
    add_iommufd(f);
    /* object-add consumed the name */
    expect_err(f, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"iommufd0-fd\"}}", "GenericError",
               "File descriptor named 'iommufd0-fd' not found");
    /* a failing object-add (duplicate id) consumes it too */
    getfd(f, "dup-fd", "iommu");
    expect_err(f, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\",\"fd\":\"dup-fd\"}}",
               "GenericError", "attempt to add duplicate property 'iommufd0' to object (type 'container')");
    expect_err(f, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"dup-fd\"}}", "GenericError",
               "File descriptor named 'dup-fd' not found");
    /* a failing device_add with fd= consumes it; a successful one holds it */
    getfd(f, "h0-cdev", "vfio/devices/vfio1");
    expect_err(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"fd\":\"h0-cdev\","
                  "\"iommufd\":\"iommufd0\",\"bus\":\"rp2b\",\"addr\":\"0x0\",\"id\":\"h0\"}}", "GenericError",
               "PCI: slot 0 function 0 not available for vfio-pci, in use by e1000e,id=coldnic");
    expect_err(f, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"h0-cdev\"}}", "GenericError",
               "File descriptor named 'h0-cdev' not found");
    getfd(f, "h0-cdev", "vfio/devices/vfio1");
    expect_ok(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"fd\":\"h0-cdev\","
                 "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"addr\":\"0x0\",\"id\":\"h0\"}}");
    getfd(f, "kept", "iommu");
    d = simh_dump(f->h);
    assert_string_equal(json_string_value(json_object_get(simh_dump_device(d, "h0"), "host")), "0009:01:00.0");
    assert_non_null(json_object_get(json_object_get(d, "fds"), "kept"));
    assert_null(json_object_get(json_object_get(d, "fds"), "h0-cdev"));
    assert_int_equal(json_array_size(json_object_get(d, "kept_fds")), 1); /* dup-fd, held by QEMU forever */
    json_decref(d);
    expect_ok(f, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"kept\"}}");
    fx_free(f);
}

/* ---- device_del ---- */

static void test_unplug_event_after_reply(void **state)
{
    struct fx *f = fx_new(NULL);
    json_t *r, *e;
    (void)state;
    add_iommufd(f);
    expect_ok(f, ADD_A);
    r = cmd(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"},\"id\":\"d1\"}");
    assert_non_null(json_object_get(r, "return"));
    json_decref(r);
    e = simh_qmp_wait_event(f->fd, "DEVICE_DELETED", "hostdev0", T);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "data"), "path")),
                        "/machine/peripheral/hostdev0");
    json_decref(e);
    expect_err(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"}}", "DeviceNotFound",
               "Device 'hostdev0' not found");
    /* the binding ended with the vSMMU's last device; the backend can go */
    expect_ok(f, "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"iommufd0\"}}");
    fx_free(f);
}

static void test_unplug_event_before_reply(void **state)
{
    struct fx *f = fx_new(NULL);
    json_t *m;
    (void)state;
    add_iommufd(f);
    expect_ok(f, ADD_A);
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"hostdev0\",\"mode\":\"event\",\"before_reply\":true}"), 0);
    assert_int_equal(simh_qmp_send(f->fd, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"},\"id\":7}", -1), 0);
    m = simh_qmp_recv(f->fd, T);
    assert_string_equal(json_string_value(json_object_get(m, "event")), "DEVICE_DELETED");
    json_decref(m);
    m = simh_qmp_recv(f->fd, T);
    assert_int_equal(json_integer_value(json_object_get(m, "id")), 7);
    assert_non_null(json_object_get(m, "return"));
    json_decref(m);
    fx_free(f);
}

static void test_unplug_pending_and_guest_error(void **state)
{
    struct fx *f = fx_new(NULL);
    json_t *d, *e;
    (void)state;
    /* cold-plugged device without a guest: pending forever (5 s of guest time before a retry is accepted) */
    expect_ok(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"coldnic\"}}");
    expect_err(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"coldnic\"}}", "GenericError",
               "Device coldnic is already in the process of unplug");
    d = simh_dump(f->h);
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "pending_unplugs"), 0)), "coldnic");
    json_decref(d);
    assert_int_equal(simh_advance(f->h, 6000), 0); /* prelaunch: the virtual clock stands still */
    expect_err(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"coldnic\"}}", "GenericError",
               "Device coldnic is already in the process of unplug");
    expect_ok(f, "{\"execute\":\"cont\"}");
    assert_int_equal(simh_advance(f->h, 6000), 0);
    expect_ok(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"coldnic\"}}");
    /* a guest that refuses */
    add_iommufd(f);
    expect_ok(f, ADD_A);
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"hostdev0\",\"mode\":\"guest-error\",\"delay_ms\":2}"), 0);
    expect_ok(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"}}");
    e = simh_qmp_wait_event(f->fd, "DEVICE_UNPLUG_GUEST_ERROR", "hostdev0", T);
    assert_non_null(e);
    json_decref(e);
    d = simh_dump(f->h);
    assert_non_null(simh_dump_device(d, "hostdev0"));
    json_decref(d);
    /* never: pending, second device_del refused */
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"hostdev0\",\"mode\":\"never\"}"), 0);
    expect_ok(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"}}");
    expect_err(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"}}", "GenericError",
               "Device hostdev0 is already in the process of unplug");
    /* the guest releases the pending device when told to: the unplug control acts on it now */
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"hostdev0\",\"mode\":\"event\",\"delay_ms\":0}"), 0);
    e = simh_qmp_wait_event(f->fd, "DEVICE_DELETED", "hostdev0", T);
    assert_non_null(e);
    json_decref(e);
    d = simh_dump(f->h);
    assert_null(simh_dump_device(d, "hostdev0"));
    json_decref(d);
    fx_free(f);
}

/* ---- accel binding ---- */

static void test_accel_violation(void **state)
{
    struct fx *f = fx_new(NULL);
    json_t *d, *v, *e;
    (void)state;
    add_iommufd(f);
    expect_ok(f, ADD_A); /* binds smmuv3.1 to SMMU A */
    /* QEMU accepts a device of SMMU B behind it: the simulator records the violation */
    expect_ok(f, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0019:01:00.0\","
                 "\"iommufd\":\"iommufd0\",\"bus\":\"rp1b\",\"addr\":\"0x0\",\"id\":\"hostdev1\"}}");
    d = simh_dump(f->h);
    v = json_array_get(json_object_get(d, "violations"), 0);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "vsmmu")), "smmuv3.1");
    assert_string_equal(json_string_value(json_object_get(v, "device")), "hostdev1");
    assert_string_equal(json_string_value(json_object_get(v, "host_smmu")), SMMU_B);
    assert_string_equal(json_string_value(json_object_get(v, "bound_smmu")), SMMU_A);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(d, "vsmmus"), 0), "bound_smmu")),
                        SMMU_A);
    json_decref(d);
    /* a non-accel vSMMU never records one */
    expect_ok(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"}}");
    e = simh_qmp_wait_event(f->fd, "DEVICE_DELETED", "hostdev0", T);
    assert_non_null(e);
    json_decref(e);
    expect_ok(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev1\"}}");
    e = simh_qmp_wait_event(f->fd, "DEVICE_DELETED", "hostdev1", T);
    assert_non_null(e);
    json_decref(e);
    d = simh_dump(f->h);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(d, "vsmmus"), 0), "bound_smmu")), "");
    json_decref(d);
    fx_free(f);
}

/* A cold-plugged vfio-pci binds its vSMMU at start; the standard topology helper builds the VM. */
static void test_cold_vfio_binding(void **state)
{
    struct fakesys *fs = fakesys_new(NULL);
    struct simh *h;
    const char *extra[] = {"-device", "vfio-pci,host=0009:01:00.0,bus=rp1a,id=cold0", "--sysfs", NULL, "--dev-iommu",
                           NULL};
    json_t *d, *v;
    int fd;
    (void)state;
    fakesys_add_dev(fs, &(struct fakesys_dev){ .bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                               .group = "1", .cdev = "vfio1" });
    fakesys_add_dev(fs, &(struct fakesys_dev){ .bdf = "0019:01:00.0", .smmu = SMMU_B, .driver = "vfio-pci",
                                               .group = "2", .cdev = "vfio2" });
    extra[3] = fakesys_root(fs);
    assert_int_equal(simh_start_vm(&h, 2, 2, 1, extra), 0);
    d = simh_dump(h);
    v = json_array_get(json_object_get(d, "vsmmus"), 0);
    assert_string_equal(json_string_value(json_object_get(v, "id")), "smmuv3.1");
    assert_string_equal(json_string_value(json_object_get(v, "bound_smmu")), SMMU_A);
    assert_int_equal(json_integer_value(json_object_get(v, "vfio_devices")), 1);
    json_decref(d);
    fd = simh_qmp_open(h);
    {
        json_t *r = simh_qmp_cmd(fd, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"io\"}}",
                                 -1, T);
        assert_non_null(json_object_get(r, "return"));
        json_decref(r);
        r = simh_qmp_cmd(fd, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0019:01:00.0\","
                             "\"iommufd\":\"io\",\"bus\":\"rp1b\",\"id\":\"h\"}}", -1, T);
        assert_non_null(json_object_get(r, "return"));
        json_decref(r);
        /* the cold device's unplug never completes without a guest */
        r = simh_qmp_cmd(fd, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"cold0\"}}", -1, T);
        assert_non_null(json_object_get(r, "return"));
        json_decref(r);
        r = simh_qmp_cmd(fd, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"cold0\"}}", -1, T);
        assert_true(simh_is_error(r, "GenericError", "Device cold0 is already in the process of unplug"));
        json_decref(r);
    }
    d = simh_dump(h);
    assert_int_equal(json_array_size(json_object_get(d, "violations")), 1);
    json_decref(d);
    simh_qmp_close(fd);
    assert_int_equal(simh_stop(h), 0);
    fakesys_free(fs);
}

/* ---- faults ---- */

static void test_faults(void **state)
{
    const char *extra[] = {"--fault", "{\"kind\":\"fail\",\"command\":\"device_add\",\"arg\":{\"id\":\"hostdev0\"},"
                                      "\"class\":\"GenericError\",\"desc\":\"injected\"}", NULL};
    struct fx *f = fx_new(extra);
    json_t *d, *r;
    long n;
    (void)state;
    add_iommufd(f);
    expect_err(f, ADD_A, "GenericError", "injected");
    expect_ok(f, ADD_A); /* fires once */
    /* fail the Nth command */
    d = simh_dump(f->h);
    n = (long)json_integer_value(json_object_get(d, "command_count"));
    json_decref(d);
    {
        char spec[128];
        snprintf(spec, sizeof(spec), "{\"kind\":\"fail\",\"nth\":%ld,\"class\":\"DeviceNotFound\",\"desc\":\"nth\"}", n + 2);
        assert_int_equal(simh_fault(f->h, spec), 0);
    }
    expect_ok(f, "{\"execute\":\"query-status\"}");
    expect_err(f, "{\"execute\":\"query-status\"}", "DeviceNotFound", "nth");
    /* stall: executed, never answered */
    assert_int_equal(simh_fault(f->h, "{\"kind\":\"stall\",\"command\":\"object-add\"}"), 0);
    getfd(f, "fd2", "iommu");
    assert_int_equal(simh_qmp_send(f->fd, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\","
                                          "\"id\":\"iommufd1\",\"fd\":\"fd2\"},\"id\":\"s\"}", -1), 0);
    r = simh_qmp_cmd(f->fd, "{\"execute\":\"query-status\",\"id\":\"after\"}", -1, T);
    assert_string_equal(json_string_value(json_object_get(r, "id")), "after");
    json_decref(r);
    d = simh_dump(f->h);
    assert_int_equal(json_array_size(json_object_get(d, "objects")), 2);
    json_decref(d);
    /* close after executing: the device exists, the client saw no reply */
    assert_int_equal(simh_fault(f->h, "{\"kind\":\"close-after\",\"command\":\"device_del\"}"), 0);
    assert_int_equal(simh_unplug(f->h, "{\"id\":\"hostdev0\",\"mode\":\"never\"}"), 0);
    r = simh_qmp_cmd(f->fd, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"}}", -1, T);
    assert_null(r);
    simh_qmp_close(f->fd);
    f->fd = simh_qmp_open(f->h); /* a new client is served at once */
    assert_true(f->fd >= 0);
    expect_err(f, "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"hostdev0\"}}", "GenericError",
               "Device hostdev0 is already in the process of unplug");
    /* close before executing: nothing happens */
    assert_int_equal(simh_fault(f->h, "{\"kind\":\"close-before\",\"command\":\"object-del\"}"), 0);
    assert_null(simh_qmp_cmd(f->fd, "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"iommufd1\"}}", -1, T));
    simh_qmp_close(f->fd);
    f->fd = simh_qmp_open(f->h);
    d = simh_dump(f->h);
    assert_int_equal(json_array_size(json_object_get(d, "objects")), 2);
    json_decref(d);
    fx_free(f);
}

/* ---- one client at a time ---- */

static void test_second_client_waits(void **state)
{
    struct fx *f = fx_new(NULL);
    int b = simh_qmp_connect(f->h);
    json_t *m;
    (void)state;
    assert_true(b >= 0);
    assert_int_equal(simh_qmp_send(b, "{\"execute\":\"qmp_capabilities\",\"id\":\"B-1\"}", -1), 0);
    /* A still works while B waits in the backlog */
    m = cmd(f, "{\"execute\":\"query-status\",\"id\":\"A\"}");
    assert_string_equal(json_string_value(json_object_get(m, "id")), "A");
    json_decref(m);
    /* B has nothing yet: the control channel answering proves the loop ran past B's bytes */
    json_decref(simh_dump(f->h));
    assert_null(simh_qmp_recv(b, 0));
    simh_qmp_close(f->fd);
    f->fd = -1;
    m = simh_qmp_recv(b, T);
    assert_non_null(json_object_get(m, "QMP"));
    json_decref(m);
    m = simh_qmp_recv(b, T);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "B-1");
    assert_non_null(json_object_get(m, "return"));
    json_decref(m);
    f->fd = b;
    fx_free(f);
}

/* ---- dump on exit, quit ---- */

static void test_dump_on_exit(void **state)
{
    char *dir = smmu_test_mkdtemp("simdump"), path[512], *txt;
    const char *extra[] = {"--dump-on-exit", path, NULL};
    struct fx *f;
    (void)state;
    snprintf(path, sizeof(path), "%s/dump.json", dir);
    f = fx_new(extra);
    add_iommufd(f);
    fx_free(f);
    txt = smmu_test_read_file(path, NULL);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "\"iommufd0\""));
    free(txt);
    smmu_test_rmtree(dir);
    free(dir);
}

/* Root-port resource reserve properties on the command line: the values QEMU 11.1.3 reports (compared with real
 * QEMU in test_sim_vs_qemu) and the refusals it gives, verbatim as observed there (qemu-system-aarch64 exits 1
 * with "<prog>: -device SPEC: MSG"): property parsing first ("expects …"), then realize's rules. */
static void test_root_port_reserve_errors(void **state)
{
    static const struct { const char *opts, *msg; } bad[] = {
        {"pref64-reserve=64G,pref32-reserve=16M", "PCI resource reserve cap: PREF32 and PREF64 conflict"},
        {"mem-reserve=4G", "PCI resource reserve cap: mem-reserve must be less than 4G"},
        {"pref32-reserve=4G", "PCI resource reserve cap: pref32-reserve  must be less than 4G"},
        {"pref64-reserve=abc", "Parameter 'pref64-reserve' expects size"},
        {"pref64-reserve=20E", "Parameter 'pref64-reserve' expects size"},
        {"mem-reserve=16E", "Parameter 'mem-reserve' expects size"},
        {"pref64-reserve=-1", "Parameter 'pref64-reserve' expects size"},
        {"pref64-reserve=1.5", "Parameter 'pref64-reserve' expects size"},
        {"pref64-reserve=0x10M", "Parameter 'pref64-reserve' expects size"},
        {"pref64-reserve=64GiB", "Parameter 'pref64-reserve' expects size"},
        {"bus-reserve=abc", "Parameter 'bus-reserve' expects integer"},
        {"bus-reserve=-1", "Parameter 'bus-reserve' expects uint32_t"},
        {"bus-reserve=4294967296", "Parameter 'bus-reserve' expects uint32_t"},
    };
    char *dir = smmu_test_mkdtemp("simres");
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char cmd[2048], out[1024] = "", want[512];
        const char *bin = getenv("QMP_SIM_BIN");
        FILE *p;
        size_t n;
        int st;
        snprintf(want, sizeof(want), "-device pcie-root-port,id=rp1,bus=pcie.1,chassis=1,port=1,%s: %s\n",
                 bad[i].opts, bad[i].msg);
        snprintf(cmd, sizeof(cmd), "'%s' --qmp '%s/q.sock' -device pxb-pcie,id=pcie.1,bus_nr=252,bus=pcie.0 "
                 "-device 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1,port=1,%s' 2>&1 </dev/null",
                 bin && *bin ? bin : SMMU_BINARY_DIR "/tests/sim/qmp-sim", dir, bad[i].opts);
        p = popen(cmd, "r");
        assert_non_null(p);
        n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = 0;
        st = pclose(p);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 1);
        if (!strstr(out, want))
            fail_msg("%s: expected \"%s\" in: %s", bad[i].opts, want, out);
    }
    smmu_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology_qom),
        cmocka_unit_test(test_vfio_add_success_and_properties),
        cmocka_unit_test(test_vfio_add_errors),
        cmocka_unit_test(test_fd_consumption),
        cmocka_unit_test(test_unplug_event_after_reply),
        cmocka_unit_test(test_unplug_event_before_reply),
        cmocka_unit_test(test_unplug_pending_and_guest_error),
        cmocka_unit_test(test_accel_violation),
        cmocka_unit_test(test_cold_vfio_binding),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_second_client_waits),
        cmocka_unit_test(test_dump_on_exit),
        cmocka_unit_test(test_root_port_reserve_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
