/* test_e2e_plan.c — `smmuctl plan` (the binary, $SMMUCTL_BIN, as a child process) against real QEMU 11 and a
 * fake sysfs tree (tests/support/fakesys.h) of host devices behind two host SMMUs.
 *
 * aarch64 virt with the FACTS topology (smmuv3.1 on pcie.1: rp1a rp1b; smmuv3.2 on pcie.2: rp2a rp2b) plus a
 * cold-plugged e1000e on rp2b: devices of SMMU A go behind one vSMMU, devices of SMMU B behind the other,
 * occupied ports are skipped, a request that does not fit is refused with exit 2 — and nothing changes in QEMU
 * (topology before == after). x86_64 q35 without vSMMU: the free root ports, lowest (chassis, port) first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "support/fakesys.h"
#include "support/qemu.h"
#include "support/runcli.h"
#include "support/testutil.h"

#define RUN_MS 30000
#define SA "smmu3.0x0000000016000000"
#define SB "smmu3.0x0000000018000000"

struct rig {
    struct smmu_qemu *q;
    struct fakesys *fs;
    char *state;
};

static void rig_start(struct rig *g, const char *arch, const char *const *extra)
{
    const char *args[64];
    int n = 0;
    smmu_qemu_require();
    memset(g, 0, sizeof(*g));
    if (!strcmp(arch, "aarch64"))
        for (const char *const *t = smmu_qemu_facts_topology(); *t; t++)
            args[n++] = *t;
    for (int i = 0; extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (smmu_qemu_start(&g->q, arch, args) < 0)
        fail_msg("QEMU did not start: %s", smmu_qemu_last_error());
    g->state = smmu_test_mkdtemp("e2e-plan-state");
    g->fs = fakesys_new(NULL);
    /* SMMU A: two devices on NUMA node 0; SMMU B: two devices on NUMA node 1 */
    fakesys_add_dev(g->fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SA, .driver = "vfio-pci",
                                                 .group = "12", .cdev = "vfio3", .numa_node = "0"});
    fakesys_add_dev(g->fs, &(struct fakesys_dev){.bdf = "0009:02:00.0", .smmu = SA, .driver = "vfio-pci",
                                                 .group = "13", .cdev = "vfio4", .numa_node = "0"});
    fakesys_add_dev(g->fs, &(struct fakesys_dev){.bdf = "0019:01:00.0", .smmu = SB, .driver = "vfio-pci",
                                                 .group = "20", .cdev = "vfio5", .numa_node = "1"});
    fakesys_add_dev(g->fs, &(struct fakesys_dev){.bdf = "0019:02:00.0", .smmu = SB, .driver = "vfio-pci",
                                                 .group = "21", .cdev = "vfio6", .numa_node = "1"});
}

static void rig_stop(struct rig *g)
{
    smmu_qemu_stop(g->q);
    fakesys_free(g->fs);
    smmu_test_rmtree(g->state);
    free(g->state);
}

/* smmuctl --qmp SOCK --state-dir STATE --sysfs ROOT --json <args…>; returns the parsed stdout. */
static json_t *run(struct rig *g, int want_status, const char *const *args)
{
    const char *const common[] = {"--qmp", smmu_qemu_socket_path(g->q), "--state-dir", g->state,
                                  "--sysfs", fakesys_root(g->fs), "--json", NULL};
    struct smmu_run r;
    smmu_run_cli_with(&r, common, args, RUN_MS);
    json_t *o = smmu_run_json(&r);
    if (r.status != want_status || !o)
        fail_msg("smmuctl %s: exit %d (want %d)\nstdout: %s\nstderr: %s", args[0], r.status, want_status, r.out, r.err);
    smmu_run_free(&r);
    return o;
}

static void check_placement(json_t *pl, const char *bdf, const char *smmu, const char *vsmmu, const char *pxb,
                            int bus_nr, const char *port)
{
    assert_string_equal(json_string_value(json_object_get(pl, "bdf")), bdf);
    assert_string_equal(json_string_value(json_object_get(pl, "host_smmu")), smmu);
    assert_string_equal(json_string_value(json_object_get(pl, "port")), port);
    if (vsmmu) {
        assert_string_equal(json_string_value(json_object_get(pl, "vsmmu")), vsmmu);
        assert_string_equal(json_string_value(json_object_get(pl, "pxb")), pxb);
        assert_int_equal(json_integer_value(json_object_get(pl, "bus_nr")), bus_nr);
    } else {
        assert_true(json_is_null(json_object_get(pl, "vsmmu")));
    }
}

static const char *const A64_EXTRA[] = {
    "-netdev", "user,id=cold0", "-device", "e1000e,netdev=cold0,bus=rp2b,id=coldnic", NULL,
};

static void test_a64_two_host_smmus(void **state)
{
    struct rig g;
    (void)state;
    rig_start(&g, "aarch64", A64_EXTRA);

    /* B first: both vSMMUs unbound and no NUMA node set on the pxbs → lowest identifier, smmuv3.1;
     * A: smmuv3.1 is B's now → the other vSMMU, on its free port (rp2b holds the e1000e) */
    json_t *o = run(&g, 0, (const char *[]){"plan", "0019:01:00.0", "0009:01:00.0", NULL});
    json_t *pl = json_object_get(o, "placements");
    assert_int_equal(json_array_size(pl), 2);
    check_placement(json_array_get(pl, 0), "0019:01:00.0", SB, "smmuv3.1", "pcie.1", 252, "rp1a");
    check_placement(json_array_get(pl, 1), "0009:01:00.0", SA, "smmuv3.2", "pcie.2", 248, "rp2a");
    json_decref(o);

    /* A again: smmuv3.2 is full and no unbound vSMMU is left → refused, naming the device */
    o = run(&g, 2, (const char *[]){"plan", "0019:01:00.0", "0009:01:00.0", "0009:02:00.0", NULL});
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(o, "error"), "message")),
                           "0009:02:00.0"));
    json_decref(o);

    /* B twice, then A: B's devices share smmuv3.1 */
    o = run(&g, 0, (const char *[]){"plan", "0019:01:00.0", "0019:02:00.0", "0009:01:00.0", NULL});
    pl = json_object_get(o, "placements");
    check_placement(json_array_get(pl, 0), "0019:01:00.0", SB, "smmuv3.1", "pcie.1", 252, "rp1a");
    check_placement(json_array_get(pl, 1), "0019:02:00.0", SB, "smmuv3.1", "pcie.1", 252, "rp1b");
    check_placement(json_array_get(pl, 2), "0009:01:00.0", SA, "smmuv3.2", "pcie.2", 248, "rp2a");
    json_decref(o);
    rig_stop(&g);
}

/* Placement by SMMU with a request that fits, the exact steps, and that plan changes nothing. */
static void test_a64_places_by_smmu(void **state)
{
    struct rig g;
    (void)state;
    rig_start(&g, "aarch64", A64_EXTRA);
    json_t *before = run(&g, 0, (const char *[]){"topology", NULL});

    json_t *o = run(&g, 0, (const char *[]){"plan", "0009:01:00.0", "0019:01:00.0", "0009:02:00.0", NULL});
    json_t *pl = json_object_get(o, "placements");
    assert_int_equal(json_array_size(pl), 3);
    check_placement(json_array_get(pl, 0), "0009:01:00.0", SA, "smmuv3.1", "pcie.1", 252, "rp1a");
    check_placement(json_array_get(pl, 1), "0019:01:00.0", SB, "smmuv3.2", "pcie.2", 248, "rp2a");
    check_placement(json_array_get(pl, 2), "0009:02:00.0", SA, "smmuv3.1", "pcie.1", 252, "rp1b");
    assert_true(json_is_true(json_object_get(o, "creates_iommufd")));
    json_t *steps = json_object_get(o, "steps");
    assert_int_equal(json_array_size(steps), 4);
    json_t *want = json_pack("{s:s,s:{s:s,s:s},s:[]}", "execute", "object-add", "arguments", "qom-type", "iommufd",
                             "id", "iommufd0", "fds");
    assert_true(json_equal(json_array_get(steps, 0), want));
    json_decref(want);
    want = json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s},s:[]}", "execute", "device_add", "arguments", "driver",
                     "vfio-pci", "host", "0019:01:00.0", "iommufd", "iommufd0", "bus", "rp2a", "addr", "0x0", "id",
                     "hostdev-0019-01-00.0", "fds");
    assert_true(json_equal(json_array_get(steps, 2), want));
    json_decref(want);
    json_t *nb = json_object_get(o, "new_bindings");
    assert_int_equal(json_array_size(nb), 2);
    json_decref(o);

    /* a fourth device of B does not fit: smmuv3.2's other port holds the e1000e, smmuv3.1 is A's */
    o = run(&g, 2, (const char *[]){"plan", "0009:01:00.0", "0019:01:00.0", "0009:02:00.0", "0019:02:00.0", NULL});
    json_t *e = json_object_get(o, "error");
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_string_equal(json_string_value(json_object_get(e, "code")), "ENOSPC");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "0019:02:00.0"));
    json_decref(o);

    /* nothing changed in QEMU */
    json_t *after = run(&g, 0, (const char *[]){"topology", NULL});
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    rig_stop(&g);
}

static void test_q35_free_root_ports(void **state)
{
    static const char *const extra[] = {
        "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,port=1",
        "-netdev", "user,id=cold0", "-device", "e1000e,netdev=cold0,bus=rp1,id=coldnic",
        "-device", "pcie-root-port,id=rp3,bus=pcie.0,chassis=3,port=3",
        "-device", "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,port=2",
        "-device", "pcie-root-port,bus=pcie.0,chassis=4",
        NULL,
    };
    struct rig g;
    (void)state;
    rig_start(&g, "x86_64", extra);
    json_t *o = run(&g, 0, (const char *[]){"plan", "0019:01:00.0", "0009:01:00.0", NULL});
    json_t *pl = json_object_get(o, "placements");
    assert_int_equal(json_array_size(pl), 2);
    check_placement(json_array_get(pl, 0), "0019:01:00.0", SB, NULL, NULL, 0, "rp2");
    check_placement(json_array_get(pl, 1), "0009:01:00.0", SA, NULL, NULL, 0, "rp3");
    assert_int_equal(json_array_size(json_object_get(o, "new_bindings")), 0);
    json_decref(o);
    /* a third device: rp1 is occupied and the anonymous port cannot be addressed */
    o = run(&g, 2, (const char *[]){"plan", "0019:01:00.0", "0009:01:00.0", "0009:02:00.0", NULL});
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")), "ENOSPC");
    json_decref(o);
    rig_stop(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_a64_places_by_smmu, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_a64_two_host_smmus, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_q35_free_root_ports, smmu_qemu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
