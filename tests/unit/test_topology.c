/* test_topology.c — lookups and the stable JSON form of struct smmu_topology (docs/topology-json.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smmuctl/topology.h"

#define S1 "smmu3.0x0000000016000000"

static void set_port(struct smmu_rootport *rp, const char *id, int vsmmu, int chassis, int port, bool hotplug,
                     const char *bus)
{
    memset(rp, 0, sizeof(*rp));
    snprintf(rp->id, sizeof(rp->id), "%s", id);
    snprintf(rp->path, sizeof(rp->path), id[0] ? "/machine/peripheral/%s" : "/machine/peripheral-anon/%s",
             id[0] ? id : "device[3]");
    rp->vsmmu = vsmmu;
    rp->chassis = chassis;
    rp->port = port;
    rp->hotplug = hotplug;
    snprintf(rp->bus_name, sizeof(rp->bus_name), "%s", bus);
    snprintf(rp->parent_bus, sizeof(rp->parent_bus), "/machine/unattached/device[41]/%s", bus);
}

static void set_occupant(struct smmu_rootport *rp, const char *id, const char *driver)
{
    snprintf(rp->occupant_id, sizeof(rp->occupant_id), "%s", id);
    snprintf(rp->occupant_path, sizeof(rp->occupant_path), "/machine/peripheral/%s", id);
    snprintf(rp->occupant_driver, sizeof(rp->occupant_driver), "%s", driver);
}

/* Two vSMMUs (one accel, bound, on NUMA node 0), ports listed out of order, an anonymous port on pcie.0,
 * one cold-plugged vfio-pci device, one fd-passed one, and an iommufd object. */
static void build(struct smmu_topology *t)
{
    memset(t, 0, sizeof(*t));
    t->qemu_major = 11;
    t->qemu_minor = 1;
    t->qemu_micro = 3;
    t->n_vsmmus = 2;
    t->vsmmus = calloc(2, sizeof(*t->vsmmus));
    struct smmu_vsmmu *v = &t->vsmmus[0];
    snprintf(v->id, sizeof(v->id), "smmuv3.1");
    snprintf(v->path, sizeof(v->path), "/machine/peripheral/smmuv3.1");
    v->accel = true;
    v->identifier = 0;
    snprintf(v->pxb_id, sizeof(v->pxb_id), "pcie.1");
    v->bus_nr = 252;
    v->numa_node = 0;
    snprintf(v->bound_smmu, sizeof(v->bound_smmu), S1);
    v = &t->vsmmus[1];
    snprintf(v->id, sizeof(v->id), "smmuv3.2");
    snprintf(v->path, sizeof(v->path), "/machine/peripheral/smmuv3.2");
    v->identifier = 1;
    snprintf(v->pxb_id, sizeof(v->pxb_id), "pcie.2");
    v->bus_nr = -1;
    v->numa_node = -1;

    t->n_ports = 5;
    t->ports = calloc(5, sizeof(*t->ports));
    set_port(&t->ports[0], "rp1b", 0, 2, 2, true, "pcie.1");
    t->ports[0].pref64_reserve = (struct smmu_reserve){true, 64ull << 30};
    t->ports[0].mem_reserve = (struct smmu_reserve){true, 32ull << 20};
    t->ports[0].io_reserve = (struct smmu_reserve){true, 0}; /* set to 0 (no window) is not unset */
    t->ports[0].bus_reserve = (struct smmu_reserve){true, 2};
    set_port(&t->ports[1], "rp1a", 0, 1, 1, true, "pcie.1");
    set_occupant(&t->ports[1], "cold0", "vfio-pci");
    set_port(&t->ports[2], "rp2a", 1, 3, 3, false, "pcie.2");
    set_port(&t->ports[3], "rpx", -1, 9, 0, true, "pcie.0");
    set_port(&t->ports[4], "", -1, 8, 0, true, "pcie.0");
    set_occupant(&t->ports[4], "nic0", "e1000e");

    t->n_vfio = 2;
    t->vfio = calloc(2, sizeof(*t->vfio));
    snprintf(t->vfio[0].id, sizeof(t->vfio[0].id), "cold0");
    snprintf(t->vfio[0].path, sizeof(t->vfio[0].path), "/machine/peripheral/cold0");
    snprintf(t->vfio[0].host, sizeof(t->vfio[0].host), "0009:01:00.0");
    snprintf(t->vfio[0].iommufd, sizeof(t->vfio[0].iommufd), "iommufd0");
    t->vfio[0].rootport = 1;
    snprintf(t->vfio[1].id, sizeof(t->vfio[1].id), "fdpassed");
    snprintf(t->vfio[1].path, sizeof(t->vfio[1].path), "/machine/peripheral/fdpassed");
    snprintf(t->vfio[1].iommufd, sizeof(t->vfio[1].iommufd), "iommufd0");
    t->vfio[1].rootport = -1;
    t->vfio[1].hotplugged = true;

    t->n_iommufds = 1;
    t->iommufds = calloc(1, sizeof(*t->iommufds));
    snprintf(t->iommufds[0], sizeof(t->iommufds[0]), "iommufd0");
}

static void test_find(void **state)
{
    (void)state;
    struct smmu_topology t;
    build(&t);
    assert_int_equal(smmu_topology_find_port(&t, "rp1a"), 1);
    assert_int_equal(smmu_topology_find_port(&t, "rpx"), 3);
    assert_int_equal(smmu_topology_find_port(&t, "nope"), -1);
    assert_int_equal(smmu_topology_find_port(&t, ""), -1); /* the anonymous port is not found by "" */
    assert_int_equal(smmu_topology_find_port(&t, NULL), -1);
    assert_int_equal(smmu_topology_find_port(NULL, "rp1a"), -1);
    assert_int_equal(smmu_topology_find_vsmmu(&t, "smmuv3.2"), 1);
    assert_int_equal(smmu_topology_find_vsmmu(&t, "rp1a"), -1);
    assert_int_equal(smmu_topology_find_vfio(&t, "fdpassed"), 1);
    assert_int_equal(smmu_topology_find_vfio(&t, "rp1a"), -1);
    assert_true(smmu_topology_has_iommufd(&t, "iommufd0"));
    assert_false(smmu_topology_has_iommufd(&t, "iommufd1"));
    assert_false(smmu_topology_has_iommufd(&t, ""));
    assert_false(smmu_topology_has_iommufd(NULL, "iommufd0"));
    smmu_topology_free(&t);
    assert_null(t.vsmmus);
    assert_int_equal(t.n_ports, 0);
    assert_int_equal(smmu_topology_find_port(&t, "rp1a"), -1);
    smmu_topology_free(&t); /* twice is harmless */
    smmu_topology_free(NULL);
}

/* The reserve members of a port with none set (zero-initialised = unset). */
#define NORES "\"pref64_reserve\":null,\"mem_reserve\":null,\"pref32_reserve\":null,\"io_reserve\":null,\"bus_reserve\":null"

static void test_to_json_exact(void **state)
{
    (void)state;
    struct smmu_topology t;
    build(&t);
    json_t *j = smmu_topology_to_json(&t);
    char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    assert_string_equal(s,
        "{\"qemu\":{\"major\":11,\"minor\":1,\"micro\":3},"
        "\"vsmmus\":["
        "{\"id\":\"smmuv3.1\",\"path\":\"/machine/peripheral/smmuv3.1\",\"accel\":true,\"identifier\":0,"
        "\"pxb\":\"pcie.1\",\"bus_nr\":252,\"numa_node\":0,\"bound_smmu\":\"" S1 "\",\"ports\":["
        "{\"id\":\"rp1a\",\"path\":\"/machine/peripheral/rp1a\",\"chassis\":1,\"port\":1,\"hotplug\":true,"
        "\"occupant\":{\"id\":\"cold0\",\"driver\":\"vfio-pci\"}," NORES "},"
        "{\"id\":\"rp1b\",\"path\":\"/machine/peripheral/rp1b\",\"chassis\":2,\"port\":2,\"hotplug\":true,"
        "\"occupant\":null,\"pref64_reserve\":68719476736,\"mem_reserve\":33554432,\"pref32_reserve\":null,"
        "\"io_reserve\":0,\"bus_reserve\":2}]},"
        "{\"id\":\"smmuv3.2\",\"path\":\"/machine/peripheral/smmuv3.2\",\"accel\":false,\"identifier\":1,"
        "\"pxb\":\"pcie.2\",\"bus_nr\":null,\"numa_node\":null,\"bound_smmu\":null,\"ports\":["
        "{\"id\":\"rp2a\",\"path\":\"/machine/peripheral/rp2a\",\"chassis\":3,\"port\":3,\"hotplug\":false,"
        "\"occupant\":null," NORES "}]}],"
        "\"other_ports\":["
        "{\"id\":null,\"path\":\"/machine/peripheral-anon/device[3]\",\"bus\":\"pcie.0\",\"chassis\":8,\"port\":0,"
        "\"hotplug\":true,\"occupant\":{\"id\":\"nic0\",\"driver\":\"e1000e\"}," NORES "},"
        "{\"id\":\"rpx\",\"path\":\"/machine/peripheral/rpx\",\"bus\":\"pcie.0\",\"chassis\":9,\"port\":0,"
        "\"hotplug\":true,\"occupant\":null," NORES "}],"
        "\"iommufds\":[\"iommufd0\"],"
        "\"vfio\":["
        "{\"id\":\"cold0\",\"host\":\"0009:01:00.0\",\"iommufd\":\"iommufd0\",\"port\":\"rp1a\",\"hotplugged\":false},"
        "{\"id\":\"fdpassed\",\"host\":null,\"iommufd\":\"iommufd0\",\"port\":null,\"hotplugged\":true}]}");
    free(s);
    json_decref(j);
    smmu_topology_free(&t);
}

static void test_to_json_empty(void **state)
{
    (void)state;
    struct smmu_topology t;
    memset(&t, 0, sizeof(t));
    t.qemu_major = 10;
    t.qemu_minor = 2;
    json_t *j = smmu_topology_to_json(&t);
    char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    assert_string_equal(s, "{\"qemu\":{\"major\":10,\"minor\":2,\"micro\":0},\"vsmmus\":[],\"other_ports\":[],"
                           "\"iommufds\":[],\"vfio\":[]}");
    free(s);
    json_decref(j);
}

/* A port whose vsmmu index is out of range is listed with the other ports, not dropped. */
static void test_to_json_stray_index(void **state)
{
    (void)state;
    struct smmu_topology t;
    memset(&t, 0, sizeof(t));
    t.n_ports = 1;
    t.ports = calloc(1, sizeof(*t.ports));
    set_port(&t.ports[0], "rpq", 7, 1, 1, true, "pcie.0");
    json_t *j = smmu_topology_to_json(&t);
    json_t *other = json_object_get(j, "other_ports");
    assert_int_equal(json_array_size(other), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(other, 0), "id")), "rpq");
    json_decref(j);
    smmu_topology_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_to_json_exact),
        cmocka_unit_test(test_to_json_empty),
        cmocka_unit_test(test_to_json_stray_index),
    };
    return cmocka_run_group_tests_name("topology", tests, NULL, NULL);
}
