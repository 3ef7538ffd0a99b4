/* test_cli_doctor.c — `smmuctl doctor` against qmp-sim (issue 12.1): the VM findings, the exit codes, and that it
 * sends exactly what `topology` sends (qmp-sim's command count) and changes nothing (its state dump).
 *
 * The VM: pxb pcie.1 (numa_node 0) with vSMMU smmuv3.1 accel=on and rp1a whose pref64-reserve (64 GiB) is too
 * small for the GPU; pxb pcie.2 (no numa_node) with vSMMU smmuv3.2 accel=off and rp2a whose windows fit the NIC;
 * an iommufd object. The host: a Grace-Blackwell-like GPU behind S1 (NUMA 0), a NIC behind S2 (NUMA 1), both on
 * vfio-pci with their cdevs, and a /dev tree with /dev/iommu.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "support/fakesys.h"
#include "support/json_expect.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define GPU "0009:01:00.0"
#define NIC "0019:01:00.0"
#define S1 "smmu3.0x0000000016000000"
#define S2 "smmu3.0x0000000026000000"

static struct fakesys *fs;
static struct simh *h;
static char *state, *dev;

static int setup(void **st)
{
    const char *args[] = {
        "-device", "pxb-pcie,id=pcie.1,bus_nr=252,bus=pcie.0,numa_node=0",
        "-device", "pcie-root-port,id=rp1a,bus=pcie.1,chassis=1,port=1,pref64-reserve=64G,mem-reserve=32M",
        "-device", "pxb-pcie,id=pcie.2,bus_nr=248,bus=pcie.0",
        "-device", "pcie-root-port,id=rp2a,bus=pcie.2,chassis=2,port=2,pref64-reserve=64M",
        "-device", "arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1,accel=on",
        "-device", "arm-smmuv3,primary-bus=pcie.2,id=smmuv3.2",
        "-object", "iommufd,id=iommufd0",
        "--sysfs", NULL, NULL};
    (void)st;
    fs = fakesys_new(NULL);
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = GPU, .smmu = S1, .driver = "vfio-pci", .group = "1", .cdev = "vfio0",
                                              .numa_node = "0", .resource = FAKESYS_RESOURCE_GPU});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = NIC, .smmu = S2, .driver = "vfio-pci", .group = "2", .cdev = "vfio1",
                                              .numa_node = "1", .resource = FAKESYS_RESOURCE_NIC});
    dev = smmu_test_mkdtemp("doctor-dev");
    fakesys_write_dev_tree(fs, dev);
    args[sizeof(args) / sizeof(args[0]) - 2] = fakesys_root(fs);
    state = smmu_test_mkdtemp("cli-doctor");
    return simh_start(&h, args);
}

static int teardown(void **st)
{
    (void)st;
    assert_int_equal(simh_stop(h), 0);
    fakesys_free(fs);
    smmu_test_rmtree(state);
    smmu_test_rmtree(dev);
    free(state);
    free(dev);
    return 0;
}

static int cli(struct smmu_run *o, const char *const *extra)
{
    const char *common[] = {"--qmp", simh_qmp_path(h), "--state-dir", state, "--sysfs", fakesys_root(fs), "--dev", dev,
                            NULL};
    return smmu_run_cli_with(o, common, extra, 30000);
}

static void expect(json_t *doc, const char *check, const char *subject, const char *status, const char *what,
                   const char *fix)
{
    json_t *f = smmu_test_finding(doc, check, subject);
    const char *w = json_string_value(json_object_get(f, "what")), *x = json_string_value(json_object_get(f, "fix"));
    if (strcmp(json_string_value(json_object_get(f, "status")), status))
        fail_msg("%s %s: %s, expected %s (%s)", check, subject, json_string_value(json_object_get(f, "status")),
                 status, w);
    if (what && !strstr(w, what))
        fail_msg("%s %s: what \"%s\" lacks \"%s\"", check, subject, w, what);
    if (fix && (!x || !strstr(x, fix)))
        fail_msg("%s %s: fix \"%s\" lacks \"%s\"", check, subject, x ? x : "(null)", fix);
    if (strcmp(status, "ok"))
        assert_true(json_is_string(json_object_get(f, "why")) && x);
}

static long commands(void)
{
    json_t *d = simh_dump(h);
    long n = (long)json_integer_value(json_object_get(d, "command_count"));
    json_decref(d);
    return n;
}

static json_t *dump_state(void)
{
    json_t *d = simh_dump(h);
    json_object_del(d, "command_count");
    json_object_del(d, "vclock_ms");
    return d;
}

static void test_vm_findings(void **st)
{
    struct smmu_run o;
    (void)st;
    long before = commands();
    assert_int_equal(cli(&o, (const char *[]){"topology", NULL}), 0);
    long discovery = commands() - before;
    smmu_run_free(&o);
    json_t *vm_before = dump_state();

    before = commands();
    assert_int_equal(cli(&o, (const char *[]){"--json", "doctor", GPU, NIC, NULL}), 5);
    assert_int_equal(commands() - before, discovery); /* no round trip beyond topology's */
    json_t *vm_after = dump_state();
    assert_true(json_equal(vm_before, vm_after)); /* nothing changed in QEMU */
    json_decref(vm_before);
    json_decref(vm_after);

    json_t *j = smmu_run_json(&o);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_string_equal(json_string_value(json_object_get(j, "command")), "doctor");
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 5);
    expect(j, "qemu-version", "QEMU 11.1.3", "ok", NULL, NULL);
    expect(j, "iommufd-object", "VM", "ok", "iommufd0 (attach reuses iommufd0)", NULL);
    expect(j, "vsmmu", S1, "ok", "vSMMU smmuv3.1 (pxb pcie.1)", NULL);
    expect(j, "vsmmu", S2, "ok", "vSMMU smmuv3.2 (pxb pcie.2)", NULL);
    expect(j, "accel", "smmuv3.1", "ok", "accel=on", NULL);
    expect(j, "accel", "smmuv3.2", "warn", "accel=off", "arm-smmuv3,primary-bus=pcie.2,id=smmuv3.2,accel=on");
    expect(j, "free-ports", "smmuv3.1", "ok", "1 free hot-pluggable root port: rp1a", NULL);
    /* the port whose pref64-reserve is too small: warn, with the QEMU option that fixes it */
    expect(j, "windows", "rp1a", "warn", GPU ": pref64-reserve 64 GiB, the 64-bit prefetchable BARs need 256 GiB",
           "-device pcie-root-port,id=rp1a,…,pref64-reserve=256G");
    expect(j, "windows", "rp2a", "ok", "pref64-reserve 64 MiB fit " NIC, NULL);
    expect(j, "numa", GPU, "ok", "host NUMA node 0, pxb pcie.1 numa_node 0", NULL);
    expect(j, "numa", NIC, "warn", "host NUMA node 1, but pxb pcie.2 has no numa_node (QEMU's 128: unset)",
           "numa_node=1");
    expect(j, "bars", GPU, "ok", "pref64-reserve 256 GiB and mem-reserve 16 MiB", NULL);
    json_t *sum = json_object_get(j, "summary");
    assert_int_equal(json_integer_value(json_object_get(sum, "warn")), 3);
    assert_int_equal(json_integer_value(json_object_get(sum, "fail")), 0);
    json_decref(j);
    smmu_run_free(&o);

    /* the text form: one line per finding, why and fix under the warnings, a summary */
    assert_int_equal(cli(&o, (const char *[]){"doctor", GPU, NIC, NULL}), 5);
    assert_non_null(strstr(o.out, "WARN  windows        rp1a: reserved windows too small for " GPU));
    assert_non_null(strstr(o.out, "      fix: launch the VM with -device pcie-root-port,id=rp1a,…,pref64-reserve=256G"));
    assert_non_null(strstr(o.out, "doctor: "));
    assert_non_null(strstr(o.out, ", 3 warnings, 0 failures\n"));
    smmu_run_free(&o);
}

static void test_exit_codes(void **st)
{
    struct smmu_run o;
    (void)st;
    /* a failure: the GPU's group is not viable once a sibling sits on another driver */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:01:00.1", .smmu = S1, .driver = "snd_hda_intel", .group = "1"});
    assert_int_equal(cli(&o, (const char *[]){"--json", "doctor", GPU, NULL}), 6);
    json_t *j = smmu_run_json(&o);
    expect(j, "iommu-group", GPU, "fail", "0009:01:00.1 (snd_hda_intel)", NULL);
    json_decref(j);
    smmu_run_free(&o);
    fakesys_remove(fs, "bus/pci/devices/0009:01:00.1");
    /* QEMU unreachable: 3, with the error object */
    assert_int_equal(smmu_run_cli(&o, (const char *[]){"--qmp", "/nonexistent/qmp.sock", "--state-dir", state,
                                                        "--json", "doctor", NULL}, 30000), 3);
    j = smmu_run_json(&o);
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_non_null(json_object_get(j, "error"));
    json_decref(j);
    smmu_run_free(&o);
    /* usage: an option doctor does not take */
    assert_int_equal(cli(&o, (const char *[]){"doctor", "--require-fit", NULL}), 2);
    smmu_run_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vm_findings),
        cmocka_unit_test(test_exit_codes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
