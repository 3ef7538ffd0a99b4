/* test_doctor.c — `doctor`'s findings (src/doctor): every host finding over fake sysfs and /dev trees, and the
 * VM findings over a hand-built topology (the CLI against qmp-sim: tests/sim/test_cli_doctor.c; real QEMU 11:
 * tests/e2e/test_e2e_doctor.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smmuctl/doctor.h"
#include "support/fakesys.h"
#include "support/testutil.h"

#define S1 "smmu3.0x0000000016000000"
#define S2 "smmu3.0x0000000026000000"

static const struct smmu_finding *find(const struct smmu_doctor *d, const char *check, const char *subject)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->f[i].check, check) && !strcmp(d->f[i].subject, subject))
            return &d->f[i];
    return NULL;
}

/* The finding (check, subject) exists with this status, its what contains `what`, and a non-ok one says why
 * and how to fix it (fix containing `fix`). */
static void expect(const struct smmu_doctor *d, const char *check, const char *subject, enum smmu_finding_status st,
                   const char *what, const char *fix)
{
    const struct smmu_finding *f = find(d, check, subject);
    if (!f) {
        for (size_t i = 0; i < d->n; i++)
            fprintf(stderr, "  have: %s %s %s: %s\n", smmu_finding_status_name(d->f[i].status), d->f[i].check,
                    d->f[i].subject, d->f[i].what);
        fail_msg("no %s finding for %s", check, subject);
    }
    if (f->status != st)
        fail_msg("%s %s: status %s, expected %s (%s)", check, subject, smmu_finding_status_name(f->status),
                 smmu_finding_status_name(st), f->what);
    if (what && !strstr(f->what, what))
        fail_msg("%s %s: what \"%s\" lacks \"%s\"", check, subject, f->what, what);
    if (st != SMMU_FINDING_OK) {
        assert_true(f->why[0] && f->fix[0]);
        if (fix && !strstr(f->fix, fix))
            fail_msg("%s %s: fix \"%s\" lacks \"%s\"", check, subject, f->fix, fix);
    }
}

struct host_rig {
    struct fakesys *fs;
    char *dev;
};

/* good (GPU on vfio-pci, cdev, resource), nvidia-bound, a group shared with a device on nvidia, no iommu link,
 * no resource file, a cdev sysfs names but /dev lacks. */
static void host_rig(struct host_rig *r)
{
    r->fs = fakesys_new(NULL);
    fakesys_add_dev(r->fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = S1, .driver = "vfio-pci", .group = "1",
                                                  .cdev = "vfio0", .numa_node = "0", .resource = FAKESYS_RESOURCE_GPU});
    fakesys_add_dev(r->fs, &(struct fakesys_dev){.bdf = "0009:02:00.0", .smmu = S1, .driver = "nvidia", .group = "2",
                                                  .resource = FAKESYS_RESOURCE_GPU});
    fakesys_add_dev(r->fs, &(struct fakesys_dev){.bdf = "0009:03:00.0", .smmu = S1, .driver = "vfio-pci", .group = "3",
                                                  .cdev = "vfio3", .resource = FAKESYS_RESOURCE_NIC});
    fakesys_add_dev(r->fs, &(struct fakesys_dev){.bdf = "0009:03:00.1", .smmu = S1, .driver = "mlx5_core", .group = "3"});
    fakesys_add_dev(r->fs, &(struct fakesys_dev){.bdf = "0009:04:00.0", .driver = "vfio-pci", .cdev = "vfio4",
                                                  .resource = FAKESYS_RESOURCE_NIC});
    fakesys_add_dev(r->fs, &(struct fakesys_dev){.bdf = "0019:01:00.0", .smmu = S2, .driver = "vfio-pci", .group = "5",
                                                  .cdev = "vfio5", .numa_node = "1"});
    r->dev = smmu_test_mkdtemp("doctor-dev");
    fakesys_write_dev_tree(r->fs, r->dev);
}

static void host_rig_free(struct host_rig *r)
{
    fakesys_free(r->fs);
    smmu_test_rmtree(r->dev);
    free(r->dev);
}

static void test_host_findings(void **state)
{
    struct host_rig r;
    struct smmu_doctor d = {0};
    const char *devs[] = {"0009:01:00.0", "0009:02:00.0", "0009:03:00.0", "0009:04:00.0", "0019:01:00.0", "0009:09:00.0"};
    struct smmu_host_dev hosts[6];
    bool ok[6];
    char p[4096];
    (void)state;
    host_rig(&r);
    snprintf(p, sizeof(p), "%s/vfio/devices/vfio5", r.dev);
    remove(p); /* sysfs names vfio5, /dev lacks it */
    assert_int_equal(smmu_doctor_host(&d, fakesys_root(r.fs), r.dev, devs, 6, hosts, ok), 0);
    snprintf(p, sizeof(p), "%s/iommu", r.dev);
    expect(&d, "iommufd", p, SMMU_FINDING_OK, "present", NULL);
    snprintf(p, sizeof(p), "%s/vfio/devices", r.dev);
    expect(&d, "vfio-cdev", p, SMMU_FINDING_OK, "present", NULL);
    /* the good GPU: every check ok, BARs with the windows its port needs */
    expect(&d, "driver", "0009:01:00.0", SMMU_FINDING_OK, "vfio-pci", NULL);
    expect(&d, "iommu-group", "0009:01:00.0", SMMU_FINDING_OK, "group 1 is viable", NULL);
    expect(&d, "host-smmu", "0009:01:00.0", SMMU_FINDING_OK, S1, NULL);
    expect(&d, "vfio-cdev", "0009:01:00.0", SMMU_FINDING_OK, "vfio0", NULL);
    expect(&d, "bars", "0009:01:00.0", SMMU_FINDING_OK,
           "BAR0 16 MiB (32-bit), BAR2 128 GiB (64-bit prefetchable), BAR4 32 MiB (64-bit prefetchable): its root "
           "port needs pref64-reserve 256 GiB and mem-reserve 16 MiB", NULL);
    assert_true(ok[0]);
    assert_string_equal(hosts[0].smmu, S1);
    /* on another driver */
    expect(&d, "driver", "0009:02:00.0", SMMU_FINDING_FAIL, "bound to nvidia, not vfio-pci",
           "driverctl set-override 0009:02:00.0 vfio-pci");
    assert_false(ok[1]);
    /* group shared with a device on mlx5_core */
    expect(&d, "iommu-group", "0009:03:00.0", SMMU_FINDING_FAIL, "group 3 not viable: 0009:03:00.1 (mlx5_core)",
           "driverctl set-override");
    assert_false(ok[2]);
    /* no iommu link: no host SMMU (and no group) */
    expect(&d, "host-smmu", "0009:04:00.0", SMMU_FINDING_FAIL, "behind no IOMMU", "arm-smmu-v3");
    expect(&d, "iommu-group", "0009:04:00.0", SMMU_FINDING_FAIL, "in no IOMMU group", NULL);
    assert_false(ok[3]);
    /* no resource file; a cdev missing under --dev */
    expect(&d, "bars", "0019:01:00.0", SMMU_FINDING_WARN, "BAR sizes are unknown", "resource");
    expect(&d, "vfio-cdev", "0019:01:00.0", SMMU_FINDING_FAIL, "vfio5", "--dev");
    assert_true(ok[4]); /* what the planner needs is there */
    /* a device sysfs does not have */
    expect(&d, "device", "0009:09:00.0", SMMU_FINDING_FAIL, "no such PCI device", "lspci -D");
    assert_int_equal(smmu_doctor_exit_code(&d), 6);
    smmu_doctor_free(&d);

    /* no /dev/iommu, no /dev/vfio/devices */
    snprintf(p, sizeof(p), "%s/nothing", r.dev);
    assert_int_equal(smmu_doctor_host(&d, fakesys_root(r.fs), p, NULL, 0, NULL, NULL), 0);
    snprintf(p, sizeof(p), "%s/nothing/iommu", r.dev);
    expect(&d, "iommufd", p, SMMU_FINDING_FAIL, "does not exist", "CONFIG_IOMMUFD");
    snprintf(p, sizeof(p), "%s/nothing/vfio/devices", r.dev);
    expect(&d, "vfio-cdev", p, SMMU_FINDING_FAIL, "does not exist", "CONFIG_VFIO_DEVICE_CDEV");
    assert_int_equal(d.n, 2);
    smmu_doctor_free(&d);

    /* only ok findings: exit 0; the JSON form */
    const char *good[] = {"0009:01:00.0"};
    assert_int_equal(smmu_doctor_host(&d, fakesys_root(r.fs), r.dev, good, 1, NULL, NULL), 0);
    assert_int_equal(smmu_doctor_exit_code(&d), 0);
    json_t *j = smmu_doctor_to_json(&d);
    json_t *f0 = json_array_get(json_object_get(j, "findings"), 0);
    assert_string_equal(json_string_value(json_object_get(f0, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(f0, "check")), "iommufd");
    assert_true(json_is_null(json_object_get(f0, "fix")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "summary"), "ok")), (json_int_t)d.n);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "summary"), "fail")), 0);
    json_decref(j);
    smmu_doctor_free(&d);
    host_rig_free(&r);
}

/* ---- VM findings over a hand-built topology ---- */

static void vm_port(struct smmu_rootport *rp, const char *id, int v, int chassis, uint64_t pref64, uint64_t mem)
{
    memset(rp, 0, sizeof(*rp));
    snprintf(rp->id, sizeof(rp->id), "%s", id);
    snprintf(rp->path, sizeof(rp->path), "/machine/peripheral/%s", id);
    rp->vsmmu = v;
    rp->chassis = rp->port = chassis;
    rp->hotplug = true;
    rp->pref64_reserve = (struct smmu_reserve){pref64 != 0, pref64};
    rp->mem_reserve = (struct smmu_reserve){mem != 0, mem};
}

static void test_vm_findings(void **state)
{
    struct host_rig r;
    struct smmu_facts f;
    struct smmu_doctor d = {0};
    struct smmu_host_dev gpu;
    struct smmu_error e = SMMU_ERROR_INIT;
    (void)state;
    host_rig(&r);
    assert_int_equal(smmu_host_read(fakesys_root(r.fs), "0009:01:00.0", &gpu, &e), 0);
    memset(&f, 0, sizeof(f));
    f.topo.qemu_major = 11;
    f.topo.qemu_minor = 1;
    f.topo.n_vsmmus = 1;
    f.topo.vsmmus = calloc(1, sizeof(*f.topo.vsmmus));
    snprintf(f.topo.vsmmus[0].id, SMMU_ID_LEN, "smmuv3.1");
    snprintf(f.topo.vsmmus[0].pxb_id, SMMU_ID_LEN, "pcie.1");
    f.topo.vsmmus[0].numa_node = -1;
    f.topo.vsmmus[0].bus_nr = 252;
    f.topo.n_ports = 2;
    f.topo.ports = calloc(2, sizeof(*f.topo.ports));
    vm_port(&f.topo.ports[0], "rp1a", 0, 1, 0, 0);
    vm_port(&f.topo.ports[1], "rp1b", 0, 2, 64ull << 30, 32ull << 20); /* pref64 too small */
    assert_int_equal(smmu_doctor_vm(&d, &f, &gpu, 1), 0);
    expect(&d, "qemu-version", "QEMU 11.1.0", SMMU_FINDING_OK, NULL, NULL);
    expect(&d, "iommufd-object", "VM", SMMU_FINDING_OK, "attach adds iommufd0", NULL);
    expect(&d, "vsmmu", S1, SMMU_FINDING_OK, "vSMMU smmuv3.1 (pxb pcie.1)", NULL);
    expect(&d, "accel", "smmuv3.1", SMMU_FINDING_WARN, "accel=off", "accel=on");
    expect(&d, "free-ports", "smmuv3.1", SMMU_FINDING_OK, "2 free hot-pluggable root ports: rp1a, rp1b", NULL);
    expect(&d, "windows", "rp1a", SMMU_FINDING_WARN, "pref64-reserve unset, the 64-bit prefetchable BARs need 256 GiB",
           "-device pcie-root-port,id=rp1a,…,pref64-reserve=256G,mem-reserve=16M");
    expect(&d, "windows", "rp1b", SMMU_FINDING_WARN, "pref64-reserve 64 GiB, the 64-bit prefetchable BARs need 256 GiB",
           "pref64-reserve=256G");
    expect(&d, "numa", "0009:01:00.0", SMMU_FINDING_WARN, "host NUMA node 0, but pxb pcie.1 has no numa_node",
           "numa_node=0");
    assert_int_equal(smmu_doctor_exit_code(&d), 5);
    smmu_doctor_free(&d);

    /* rp1b now fits: ok for it, rp1a's shortfall is no warning (placement prefers rp1b); accel, NUMA set */
    f.topo.ports[1].pref64_reserve.value = 256ull << 30;
    f.topo.ports[1].mem_reserve.value = 16ull << 20;
    f.topo.vsmmus[0].accel = true;
    f.topo.vsmmus[0].numa_node = 0;
    assert_int_equal(smmu_doctor_vm(&d, &f, &gpu, 1), 0);
    expect(&d, "windows", "rp1b", SMMU_FINDING_OK, "windows pref64-reserve 256 GiB, mem-reserve 16 MiB fit 0009:01:00.0", NULL);
    expect(&d, "windows", "rp1a", SMMU_FINDING_OK, "too small for 0009:01:00.0", NULL);
    expect(&d, "accel", "smmuv3.1", SMMU_FINDING_OK, "accel=on", NULL);
    expect(&d, "numa", "0009:01:00.0", SMMU_FINDING_OK, "pxb pcie.1 numa_node 0", NULL);
    assert_int_equal(smmu_doctor_exit_code(&d), 0);
    smmu_doctor_free(&d);

    /* every port taken: attach would refuse, doctor fails naming why */
    snprintf(f.topo.ports[0].occupant_id, SMMU_ID_LEN, "nic0");
    snprintf(f.topo.ports[1].occupant_id, SMMU_ID_LEN, "nic1");
    assert_int_equal(smmu_doctor_vm(&d, &f, &gpu, 1), 0);
    expect(&d, "vsmmu", "VM", SMMU_FINDING_FAIL, "attach would refuse", "smmuctl layout");
    expect(&d, "free-ports", "smmuv3.1", SMMU_FINDING_WARN, "no free hot-pluggable root port", "pcie-root-port");
    assert_int_equal(smmu_doctor_exit_code(&d), 6);
    smmu_doctor_free(&d);
    smmu_topology_free(&f.topo);
    host_rig_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_findings),
        cmocka_unit_test(test_vm_findings),
    };
    return cmocka_run_group_tests_name("doctor", tests, NULL, NULL);
}
