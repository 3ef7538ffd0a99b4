/* test_vm_discover.c — smmu_vm_discover() (src/vm/discover.c) against SYNTHETIC fixtures: what QEMU 11 under
 * TCG cannot show here (accel vSMMUs, realized vfio-pci devices with host and iommufd links), an older QEMU
 * (no qom-list-get → qom-list + qom-get fallback, no arm-smmuv3), malformed replies (-EPROTO naming the
 * command and path), QEMU's own errors, a connection lost mid-discovery; plus smmu_vm_qom_exists() and
 * smmu_facts_gather() binding a vSMMU from a cold-plugged vfio-pci host read in a fake sysfs.
 *
 * Every test also requires the replay server's verdict: the client sent exactly the fixture's commands.
 * Recorded fixtures (real QEMU 11) are replayed in tests/replay/test_discover_replay.c.
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
#include <cmocka.h>
#include <event2/event.h>

#include "smmuctl/journal.h"
#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"
#include "smmuctl/topology.h"
#include "smmuctl/txn.h"
#include "smmuctl/vm.h"
#include "replay/replay_server.h"
#include "support/fakesys.h"
#include "support/json_expect.h"
#include "support/replay_rig.h"
#include "support/testutil.h"

/* A port's resource reserve members when none is set on QEMU's command line (all unset). */
#define NORES ",'pref64_reserve':null,'mem_reserve':null,'pref32_reserve':null,'io_reserve':null,'bus_reserve':null"

#define PUMP_MS 5000
#define S1 "smmu3.0x0000000016000000"
#define S2 "smmu3.0x0000000019000000"

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in: %s", needle, hay);
}

/* ---- accel vSMMUs and vfio-pci devices ---- */

static const char *ACCEL_JSON =
    "{'qemu':{'major':11,'minor':1,'micro':3},"
    " 'vsmmus':[{'id':'smmuv3.1','path':'/machine/peripheral/smmuv3.1','accel':true,'identifier':0,'pxb':'pcie.1',"
    "            'bus_nr':252,'numa_node':0,'bound_smmu':null,"
    "            'ports':[{'id':'rp1a','path':'/machine/peripheral/rp1a','chassis':1,'port':1,'hotplug':true,"
    "                      'occupant':{'id':'hostdev0','driver':'vfio-pci'}" NORES "},"
    "                     {'id':'rp1b','path':'/machine/peripheral/rp1b','chassis':2,'port':2,'hotplug':true,"
    "                      'occupant':null" NORES "}]},"
    "           {'id':'smmuv3.2','path':'/machine/peripheral/smmuv3.2','accel':true,'identifier':1,'pxb':'pcie.2',"
    "            'bus_nr':248,'numa_node':1,'bound_smmu':null,"
    "            'ports':[{'id':'rp2a','path':'/machine/peripheral/rp2a','chassis':3,'port':3,'hotplug':true,"
    "                      'occupant':{'id':null,'driver':'vfio-pci'}" NORES "},"
    "                     {'id':'rp2b','path':'/machine/peripheral/rp2b','chassis':4,'port':4,'hotplug':true,"
    "                      'occupant':null" NORES "}]}],"
    " 'other_ports':[],"
    " 'iommufds':['iommufd0'],"
    " 'vfio':[{'id':'hostdev0','host':'0009:01:00.0','iommufd':'iommufd0','port':'rp1a','hotplugged':false},"
    "         {'id':null,'host':null,'iommufd':'iommufd0','port':'rp2a','hotplugged':true}]}";

static void test_accel_and_vfio(void **state)
{
    struct replay_rig r;
    struct smmu_topology t;
    struct smmu_error err = SMMU_ERROR_INIT;
    (void)state;
    replay_rig_start(&r, "discover-syn-accel-vfio.txt", PUMP_MS);
    if (smmu_vm_discover(r.c, &t, &err) < 0)
        fail_msg("discover: %s", err.message);
    replay_rig_finish(&r);

    json_t *exp = smmu_test_json(ACCEL_JSON), *got = smmu_topology_to_json(&t);
    smmu_test_assert_json_eq(exp, got);
    json_decref(exp);
    json_decref(got);
    /* what the JSON does not show */
    assert_true(t.has_qom_list_get);
    assert_string_equal(t.vsmmus[0].primary_bus, "/machine/unattached/device[41]/pcie.1");
    assert_string_equal(t.vfio[0].path, "/machine/peripheral/hostdev0");
    assert_int_equal(t.vfio[1].rootport, smmu_topology_find_port(&t, "rp2a"));
    assert_string_equal(t.ports[smmu_topology_find_port(&t, "rp2a")].occupant_path, "/machine/peripheral-anon/device[0]");
    assert_string_equal(t.ports[0].sec_bus, "/machine/peripheral/rp1a/rp1a");
    assert_int_equal(t.ports[0].vsmmu, 0);
    assert_true(smmu_topology_has_iommufd(&t, "iommufd0"));
    smmu_topology_free(&t);
}

/* The cold-plugged vfio-pci's host, read in sysfs, binds its vSMMU (DESIGN §4 rule 1). */
static void test_facts_bind_from_vfio_host(void **state)
{
    struct replay_rig r;
    struct smmu_facts f;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct fakesys *fs = fakesys_new(NULL);
    (void)state;
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = S1, .driver = "vfio-pci", .group = "12",
                                              .cdev = "vfio3", .numa_node = "0"});
    replay_rig_start(&r, "discover-syn-accel-vfio.txt", PUMP_MS);
    if (smmu_facts_gather(r.c, fakesys_root(fs), NULL, &f, &err) < 0)
        fail_msg("gather: %s", err.message);
    replay_rig_finish(&r);
    assert_string_equal(f.topo.vsmmus[0].bound_smmu, S1);
    /* fd-passed device and no journal: its host SMMU is unknown, so the vSMMU is not free for anyone */
    assert_string_equal(f.topo.vsmmus[1].bound_smmu, "unknown (fd-passed vfio-pci /machine/peripheral-anon/device[0])");
    assert_int_equal(f.n_attached, 1);
    assert_string_equal(f.attached[0], "0009:01:00.0");
    assert_string_equal(f.warnings, "");
    smmu_facts_free(&f);
    fakesys_free(fs);
}

/* An interrupted attach's journal: a device_add step that was sent (or done) binds its vSMMU as the plan
 * promised (QEMU shows the fd-passed device without its host), one that was undone or never sent does not. */
static void test_facts_bind_from_interrupted_txn(void **state)
{
    static const struct {
        const char *step_state;
        const char *bound;
    } cases[] = {
        {"sent", S2},
        {"done", S2},
        {"undone", "unknown (fd-passed vfio-pci /machine/peripheral-anon/device[0])"},
        {"planned", "unknown (fd-passed vfio-pci /machine/peripheral-anon/device[0])"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct replay_rig r;
        struct smmu_facts f;
        struct smmu_error err = SMMU_ERROR_INIT;
        smmu_journal *j;
        char *dir = smmu_test_mkdtemp("facts");
        struct fakesys *fs = fakesys_new(NULL);
        fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = S1, .driver = "vfio-pci",
                                                  .group = "12", .cdev = "vfio3", .numa_node = "0"});
        if (smmu_journal_open(dir, "vm", "", 0, &j, &err) < 0)
            fail_msg("journal: %s", err.message);
        char txn[512];
        snprintf(txn, sizeof(txn),
                 "{\"op\":\"attach\",\"pid\":1,\"started\":\"2026-12-07T00:00:00Z\",\"steps\":"
                 "[{\"kind\":\"device_add\",\"name\":\"gpu1\",\"bdf\":\"0019:01:00.0\",\"port\":\"rp2a\","
                 "\"vsmmu\":\"smmuv3.2\",\"host_smmu\":\"%s\",\"state\":\"%s\"}]}",
                 S2, cases[i].step_state);
        json_object_set_new(smmu_journal_doc(j), "txn", json_loads(txn, 0, NULL));
        replay_rig_start(&r, "discover-syn-accel-vfio.txt", PUMP_MS);
        if (smmu_facts_gather(r.c, fakesys_root(fs), j, &f, &err) < 0)
            fail_msg("gather: %s", err.message);
        replay_rig_finish(&r);
        if (strcmp(f.topo.vsmmus[1].bound_smmu, cases[i].bound))
            fail_msg("step %s: smmuv3.2 bound to '%s', expected '%s'", cases[i].step_state,
                     f.topo.vsmmus[1].bound_smmu, cases[i].bound);
        bool listed = false;
        for (size_t b = 0; b < f.n_bindings; b++)
            listed |= !strcmp(f.bindings[b].vsmmu_id, "smmuv3.2") && !strcmp(f.bindings[b].host_smmu, S2);
        assert_int_equal(listed, !strcmp(cases[i].bound, S2));
        smmu_facts_free(&f);
        smmu_journal_close(j);
        fakesys_free(fs);
        smmu_test_rmtree(dir);
        free(dir);
    }
}

/* ---- QEMU 10.0: no qom-list-get, no arm-smmuv3; rp0b's reserves come one qom-get each ---- */

static const char *QEMU10_JSON =
    "{'qemu':{'major':10,'minor':0,'micro':2},'vsmmus':[],"
    " 'other_ports':[{'id':'rp1a','path':'/machine/peripheral/rp1a','bus':'pcie.1','chassis':1,'port':1,"
    "                 'hotplug':true,'occupant':{'id':'hostdev0','driver':'vfio-pci'}" NORES "},"
    "                {'id':'rp0','path':'/machine/peripheral/rp0','bus':'pcie.0','chassis':8,'port':8,"
    "                 'hotplug':true,'occupant':{'id':'coldnic','driver':'e1000e'}" NORES "},"
    "                {'id':'rp0b','path':'/machine/peripheral/rp0b','bus':'pcie.0','chassis':8,'port':9,"
    "                 'hotplug':true,'occupant':null,'pref64_reserve':68719476736,'mem_reserve':null,"
    "                 'pref32_reserve':null,'io_reserve':null,'bus_reserve':2},"
    "                {'id':null,'path':'/machine/peripheral-anon/device[0]','bus':'pcie.0','chassis':9,'port':0,"
    "                 'hotplug':true,'occupant':null" NORES "}],"
    " 'iommufds':['iommufd0'],"
    " 'vfio':[{'id':'hostdev0','host':'0009:01:00.0','iommufd':'iommufd0','port':'rp1a','hotplugged':false}]}";

static void test_qemu10_fallback(void **state)
{
    struct replay_rig r;
    struct smmu_topology t;
    struct smmu_error err = SMMU_ERROR_INIT;
    (void)state;
    replay_rig_start(&r, "discover-syn-qemu10-no-qom-list-get.txt", PUMP_MS);
    if (smmu_vm_discover(r.c, &t, &err) < 0)
        fail_msg("discover: %s", err.message);
    replay_rig_finish(&r);
    json_t *exp = smmu_test_json(QEMU10_JSON), *got = smmu_topology_to_json(&t);
    smmu_test_assert_json_eq(exp, got);
    json_decref(exp);
    json_decref(got);
    assert_false(t.has_qom_list_get);
    /* the anonymous port's secondary bus is named like the root bus, but its path is its own */
    int anon = -1;
    for (size_t i = 0; i < t.n_ports; i++)
        if (!t.ports[i].id[0])
            anon = (int)i;
    assert_true(anon >= 0);
    assert_string_equal(t.ports[anon].sec_bus, "/machine/peripheral-anon/device[0]/pcie.0");
    assert_int_equal(t.ports[anon].vsmmu, -1);
    smmu_topology_free(&t);
}

/* ---- malformed replies and QEMU errors ---- */

struct bad_case {
    const char *fixture;
    int code;
    const char *message; /* substring of err.message */
    const char *qmp_class;
};

static const struct bad_case BAD[] = {
    {"discover-syn-bad-list-not-array.txt", -EPROTO, "qom-list /machine/peripheral: the reply is not an array", ""},
    {"discover-syn-bad-list-entry.txt", -EPROTO, "qom-list /machine/peripheral: entry 1 lacks name or type", ""},
    {"discover-syn-bad-objects-not-array.txt", -EPROTO, "qom-list /objects: the reply is not an array", ""},
    {"discover-syn-bad-list-get-count.txt", -EPROTO, "qom-list-get of 3 paths: the reply is an array of a different length", ""},
    {"discover-syn-bad-list-get-entry.txt", -EPROTO,
     "qom-list-get: the entry for /machine/peripheral/pcie.1 has no \"properties\" array", ""},
    {"discover-syn-bad-port-no-chassis.txt", -EPROTO,
     "/machine/peripheral/rp1a (pcie-root-port): no property 'chassis'", ""},
    {"discover-syn-bad-vsmmu-no-primary-bus.txt", -EPROTO,
     "/machine/peripheral/smmuv3.1 (arm-smmuv3): no property 'primary-bus'", ""},
    {"discover-syn-bad-list-get-error.txt", -EIO, "qom-list-get: Path not found (GenericError)", "GenericError"},
    {"discover-syn-closed-mid-discovery.txt", -ECONNRESET, "", ""},
};

static void test_bad_replies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        struct replay_rig r;
        struct smmu_topology t;
        struct smmu_error err = SMMU_ERROR_INIT;
        replay_rig_start(&r, BAD[i].fixture, PUMP_MS);
        int rc = smmu_vm_discover(r.c, &t, &err);
        if (rc != BAD[i].code)
            fail_msg("%s: expected %d, got %d (%s)", BAD[i].fixture, BAD[i].code, rc, err.message);
        assert_int_equal(err.code, rc);
        assert_contains(err.message, BAD[i].message);
        assert_string_equal(err.qmp_class, BAD[i].qmp_class);
        /* nothing half-built is handed out */
        assert_null(t.vsmmus);
        assert_null(t.ports);
        assert_int_equal(t.n_ports, 0);
        replay_rig_finish(&r);
    }
}

/* ---- smmu_vm_qom_exists ---- */

static void test_qom_exists(void **state)
{
    struct replay_rig r;
    struct smmu_error err = SMMU_ERROR_INIT;
    (void)state;
    replay_rig_start(&r, "discover-syn-qom-exists.txt", PUMP_MS);
    assert_int_equal(smmu_vm_qom_exists(r.c, "/objects/iommufd0", &err), 1);
    assert_int_equal(smmu_vm_qom_exists(r.c, "/machine/peripheral/hostdev-0009-01-00.0", &err), 0);
    assert_int_equal(smmu_vm_qom_exists(r.c, "/nope/x", &err), -EIO);
    assert_string_equal(err.qmp_class, "DeviceNotFound");
    assert_int_equal(smmu_vm_qom_exists(r.c, "/objects/iommufd0", &err), -EPROTO);
    assert_contains(err.message, "qom-list /objects: the reply is not an array");
    replay_rig_finish(&r);
}

/* ---- smmu_vm_prop ---- */

static void test_vm_prop(void **state)
{
    (void)state;
    json_t *e = smmu_test_json("{'properties':[{'name':'chassis','value':3,'type':'uint8'},{'name':'fd','type':'str'}]}");
    assert_int_equal(json_integer_value(smmu_vm_prop(e, "chassis")), 3);
    assert_null(smmu_vm_prop(e, "fd"));    /* listed without a value (write-only) */
    assert_null(smmu_vm_prop(e, "port"));  /* absent */
    json_t *bad = smmu_test_json("{'properties':{}}");
    assert_null(smmu_vm_prop(bad, "chassis"));
    assert_null(smmu_vm_prop(NULL, "chassis"));
    json_decref(e);
    json_decref(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accel_and_vfio),
        cmocka_unit_test(test_facts_bind_from_vfio_host),
        cmocka_unit_test(test_facts_bind_from_interrupted_txn),
        cmocka_unit_test(test_qemu10_fallback),
        cmocka_unit_test(test_bad_replies),
        cmocka_unit_test(test_qom_exists),
        cmocka_unit_test(test_vm_prop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
