/* test_from_json.c — smmu_topology_from_json and smmu_plan_from_json (what `smmuctl --server` reads the daemon's
 * topology and plan documents with, to print them with the direct CLI's renderer) are exact inverses of
 * smmu_topology_to_json / smmu_plan_to_json: to_json(from_json(to_json(x))) == to_json(x), over topologies with
 * every kind of member (anonymous vSMMU and port, reserves up to beyond 2^63, ports behind no vSMMU, non-vfio
 * occupants, vfio-pci on no port, fd-passed hosts) and plans with every step kind; malformed documents are
 * refused with the member named and nothing left allocated. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smmuctl/plan.h"
#include "smmuctl/topology.h"

static void set(char *dst, size_t len, const char *s)
{
    snprintf(dst, len, "%s", s);
}
#define SET(f, s) set((f), sizeof(f), (s))

/* A topology with one of everything. */
static void make_topology(struct smmu_topology *t)
{
    memset(t, 0, sizeof(*t));
    t->qemu_major = 11, t->qemu_minor = 1, t->qemu_micro = 3;
    t->n_vsmmus = 2;
    t->vsmmus = calloc(2, sizeof(*t->vsmmus));
    SET(t->vsmmus[0].id, "smmuv3.1");
    SET(t->vsmmus[0].path, "/machine/peripheral/smmuv3.1");
    t->vsmmus[0].accel = true;
    t->vsmmus[0].identifier = 0;
    SET(t->vsmmus[0].pxb_id, "pcie.1");
    t->vsmmus[0].bus_nr = 250;
    t->vsmmus[0].numa_node = 0;
    SET(t->vsmmus[0].bound_smmu, "smmu3.0x0000000016000000");
    SET(t->vsmmus[1].path, "/machine/peripheral-anon/device[3]"); /* anonymous, pxb unknown, unbound */
    t->vsmmus[1].identifier = 1;
    t->vsmmus[1].bus_nr = -1;
    t->vsmmus[1].numa_node = -1;
    t->n_ports = 5;
    t->ports = calloc(5, sizeof(*t->ports));
    struct smmu_rootport *p = t->ports;
    /* listed out of (chassis, port) order: the document sorts them, the round trip must keep that */
    SET(p[0].id, "rp1b"); SET(p[0].path, "/machine/peripheral/rp1b"); p[0].chassis = 2; p[0].port = 2;
    p[0].hotplug = true; p[0].vsmmu = 0;
    p[0].pref64_reserve = (struct smmu_reserve){true, 256ull << 30};
    p[0].mem_reserve = (struct smmu_reserve){true, 16u << 20};
    p[0].bus_reserve = (struct smmu_reserve){true, 3};
    SET(p[1].id, "rp1a"); SET(p[1].path, "/machine/peripheral/rp1a"); p[1].chassis = 1; p[1].port = 1;
    p[1].hotplug = true; p[1].vsmmu = 0;
    SET(p[1].occupant_id, "gpu0"); SET(p[1].occupant_path, "/machine/peripheral/gpu0");
    SET(p[1].occupant_driver, "vfio-pci");
    p[1].pref32_reserve = (struct smmu_reserve){true, UINT64_MAX - 1}; /* beyond json_int_t: a real */
    SET(p[2].path, "/machine/peripheral-anon/device[5]"); p[2].chassis = 3; p[2].port = 0; p[2].vsmmu = 1;
    SET(p[3].id, "rp0"); SET(p[3].path, "/machine/peripheral/rp0"); SET(p[3].bus_name, "pcie.0");
    p[3].chassis = 9; p[3].hotplug = true; p[3].vsmmu = -1;
    SET(p[3].occupant_id, "nic0"); SET(p[3].occupant_path, "/machine/peripheral/nic0");
    SET(p[3].occupant_driver, "e1000e");
    SET(p[4].id, "rp9"); SET(p[4].path, "/machine/peripheral/rp9"); SET(p[4].bus_name, "pcie.0");
    p[4].chassis = 10; p[4].vsmmu = -1; p[4].io_reserve = (struct smmu_reserve){true, 4096};
    t->n_vfio = 3;
    t->vfio = calloc(3, sizeof(*t->vfio));
    SET(t->vfio[0].id, "gpu0"); SET(t->vfio[0].path, "/machine/peripheral/gpu0"); SET(t->vfio[0].host, "0009:01:00.0");
    SET(t->vfio[0].iommufd, "iommufd0"); t->vfio[0].rootport = 1; t->vfio[0].hotplugged = true;
    SET(t->vfio[1].id, "lost0"); SET(t->vfio[1].path, "/machine/peripheral/lost0"); t->vfio[1].rootport = -1;
    SET(t->vfio[2].id, "fd0"); SET(t->vfio[2].path, "/machine/peripheral/fd0"); /* fd-passed: no host */
    SET(t->vfio[2].iommufd, "iommufd0"); t->vfio[2].rootport = -1; t->vfio[2].hotplugged = true;
    t->n_iommufds = 2;
    t->iommufds = calloc(2, sizeof(*t->iommufds));
    SET(t->iommufds[0], "iommufd0");
    SET(t->iommufds[1], "fd7");
}

static void assert_json_equal(const json_t *a, const json_t *b)
{
    if (!json_equal((json_t *)a, (json_t *)b)) {
        char *x = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER), *y = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fail_msg("differ:\n%s\n%s", x, y);
    }
}

static void test_topology_round_trip(void **st)
{
    struct smmu_topology t, back;
    struct smmu_error e = SMMU_ERROR_INIT;
    (void)st;
    make_topology(&t);
    json_t *j = smmu_topology_to_json(&t);
    assert_non_null(j);
    /* as `topology --json` (and the daemon) print it: with the command's members, which the reader ignores */
    json_object_set_new(j, "ok", json_true());
    json_object_set_new(j, "warnings", json_array());
    assert_int_equal(smmu_topology_from_json(j, &back, &e), 0);
    json_object_del(j, "ok");
    json_object_del(j, "warnings");
    json_t *j2 = smmu_topology_to_json(&back);
    assert_json_equal(j, j2);
    /* what the renderer reads: the vfio-pci on rp1a is found there, the others on no port */
    assert_int_equal(back.n_ports, 5);
    int rp1a = smmu_topology_find_port(&back, "rp1a");
    assert_true(rp1a >= 0);
    assert_int_equal(back.vfio[0].rootport, rp1a);
    assert_string_equal(back.vfio[0].path, back.ports[rp1a].occupant_path);
    assert_int_equal(back.vfio[1].rootport, -1);
    assert_true(back.ports[smmu_topology_find_port(&back, "rp0")].occupant_path[0] != 0);
    assert_int_equal(back.ports[smmu_topology_find_port(&back, "rp1b")].occupant_path[0], 0);
    assert_true(back.ports[rp1a].pref32_reserve.set);
    /* twice round: a fixed point */
    struct smmu_topology again;
    assert_int_equal(smmu_topology_from_json(j2, &again, &e), 0);
    json_t *j3 = smmu_topology_to_json(&again);
    assert_json_equal(j, j3);
    json_decref(j);
    json_decref(j2);
    json_decref(j3);
    smmu_topology_free(&t);
    smmu_topology_free(&back);
    smmu_topology_free(&again);
    /* the empty VM */
    memset(&t, 0, sizeof(t));
    j = smmu_topology_to_json(&t);
    assert_int_equal(smmu_topology_from_json(j, &back, &e), 0);
    j2 = smmu_topology_to_json(&back);
    assert_json_equal(j, j2);
    json_decref(j);
    json_decref(j2);
    smmu_topology_free(&back);
}

static void test_topology_malformed(void **st)
{
    static const char *bad[] = {
        "[]",
        "{\"qemu\":{\"major\":11},\"vsmmus\":[],\"other_ports\":[],\"iommufds\":[]}", /* no vfio */
        "{\"qemu\":{},\"vsmmus\":[{\"id\":1,\"ports\":[]}],\"other_ports\":[],\"iommufds\":[],\"vfio\":[]}",
        "{\"qemu\":{},\"vsmmus\":[{\"id\":\"s\"}],\"other_ports\":[],\"iommufds\":[],\"vfio\":[]}",
        "{\"qemu\":{},\"vsmmus\":[],\"other_ports\":[{\"id\":\"p\",\"chassis\":\"x\"}],\"iommufds\":[],\"vfio\":[]}",
        "{\"qemu\":{},\"vsmmus\":[],\"other_ports\":[{\"id\":\"p\",\"occupant\":3}],\"iommufds\":[],\"vfio\":[]}",
        "{\"qemu\":{},\"vsmmus\":[],\"other_ports\":[],\"iommufds\":[1],\"vfio\":[]}",
        "{\"qemu\":{},\"vsmmus\":[],\"other_ports\":[],\"iommufds\":[],\"vfio\":[7]}",
    };
    (void)st;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct smmu_topology t;
        struct smmu_error e = SMMU_ERROR_INIT;
        json_t *j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        assert_int_equal(smmu_topology_from_json(j, &t, &e), -EPROTO);
        assert_non_null(strstr(e.message, "topology JSON"));
        assert_null(t.ports); /* nothing left allocated */
        assert_null(t.vsmmus);
        json_decref(j);
    }
}

static struct smmu_plan *make_plan(void)
{
    struct smmu_plan *p = calloc(1, sizeof(*p));
    p->n_placements = 3;
    p->placements = calloc(3, sizeof(*p->placements));
    struct smmu_placement *pl = p->placements;
    SET(pl[0].bdf, "0009:01:00.0"); SET(pl[0].host_smmu, "smmu3.0x0000000016000000"); pl[0].numa_node = 0;
    pl[0].vsmmu = 0; SET(pl[0].vsmmu_id, "smmuv3.1"); pl[0].port = 0; SET(pl[0].port_id, "rp1b");
    SET(pl[0].device_id, "hostdev-0009-01-00.0"); SET(pl[0].reason, "vSMMU smmuv3.1 already bound"); pl[0].fits = true;
    SET(pl[1].bdf, "0019:01:00.0"); pl[1].numa_node = -1; pl[1].vsmmu = 1; /* anonymous: named by path */
    pl[1].port = 2; SET(pl[1].port_id, "rpX"); SET(pl[1].device_id, "d1"); SET(pl[1].reason, "unbound");
    pl[1].mismatch = true;
    SET(pl[2].bdf, "0029:01:00.0"); pl[2].numa_node = 1; pl[2].vsmmu = -1; pl[2].port = 3; SET(pl[2].port_id, "rp0");
    SET(pl[2].device_id, "d2"); SET(pl[2].reason, "no vSMMU"); pl[2].fits = true;
    p->n_steps = 4;
    p->steps = calloc(4, sizeof(*p->steps));
    p->steps[0] = (struct smmu_step){.kind = SMMU_STEP_GETFD, .command = "getfd",
                                     .args = json_pack("{s:s}", "fdname", "smmuctl-iommu")};
    SET(p->steps[0].name, "smmuctl-iommu");
    SET(p->steps[0].fd_path, "/dev/iommu");
    p->steps[1] = (struct smmu_step){.kind = SMMU_STEP_OBJECT_ADD, .command = "object-add",
                                     .args = json_pack("{s:s,s:s,s:s}", "qom-type", "iommufd", "id", "iommufd0", "fd",
                                                       "smmuctl-iommu")};
    SET(p->steps[1].name, "iommufd0");
    p->steps[2] = (struct smmu_step){.kind = SMMU_STEP_DEVICE_ADD, .command = "device_add",
                                     .args = json_pack("{s:s,s:s,s:s,s:s,s:s}", "driver", "vfio-pci", "id",
                                                       "hostdev-0009-01-00.0", "bus", "rp1b", "host", "0009:01:00.0",
                                                       "iommufd", "iommufd0")};
    p->steps[3] = (struct smmu_step){.kind = SMMU_STEP_DEVICE_ADD, .command = "device_add", .args = NULL};
    SET(p->iommufd_id, "iommufd0");
    p->creates_iommufd = true;
    p->n_new_bindings = 1;
    p->new_bindings = calloc(1, sizeof(*p->new_bindings));
    SET(p->new_bindings[0].vsmmu_id, "smmuv3.1");
    SET(p->new_bindings[0].host_smmu, "smmu3.0x0000000016000000");
    return p;
}

static void test_plan_round_trip(void **st)
{
    struct smmu_topology t;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_plan *p = make_plan(), *back = NULL;
    (void)st;
    make_topology(&t);
    SET(p->placements[1].port_id, "rp1a");
    json_t *j = smmu_plan_to_json(&t, p);
    json_object_set_new(j, "warnings", json_pack("[s]", "rp1b: windows do not fit")); /* ignored */
    assert_int_equal(smmu_plan_from_json(&t, j, &back, &e), 0);
    json_object_del(j, "warnings");
    json_t *j2 = smmu_plan_to_json(&t, back);
    assert_json_equal(j, j2);
    assert_int_equal(back->placements[1].vsmmu, 1);
    assert_int_equal(back->placements[0].port, smmu_topology_find_port(&t, "rp1b"));
    assert_int_equal(back->steps[0].kind, SMMU_STEP_GETFD);
    assert_string_equal(back->steps[0].fd_path, "/dev/iommu");
    assert_string_equal(back->steps[2].port, "rp1b");
    assert_string_equal(back->steps[2].bdf, "0009:01:00.0");
    json_decref(j);
    json_decref(j2);
    smmu_plan_free(back);
    /* a vSMMU the topology does not have, a step that is not one of the three, no placements */
    static const char *bad[] = {
        "{\"iommufd\":\"i\",\"placements\":[{\"bdf\":\"0009:01:00.0\",\"vsmmu\":\"nope\",\"port\":\"rp1a\",\"device_id\":\"d\"}],"
        "\"new_bindings\":[],\"steps\":[]}",
        "{\"iommufd\":\"i\",\"placements\":[],\"new_bindings\":[],\"steps\":[{\"execute\":\"quit\",\"arguments\":{}}]}",
        "{\"iommufd\":\"i\",\"new_bindings\":[],\"steps\":[]}",
        "{\"iommufd\":\"i\",\"placements\":[],\"new_bindings\":[{\"vsmmu\":1}],\"steps\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *b = json_loads(bad[i], 0, NULL);
        assert_non_null(b);
        back = (struct smmu_plan *)1;
        assert_int_equal(smmu_plan_from_json(&t, b, &back, &e), -EPROTO);
        assert_null(back);
        assert_non_null(strstr(e.message, "plan JSON"));
        json_decref(b);
    }
    smmu_plan_free(p);
    smmu_topology_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology_round_trip),
        cmocka_unit_test(test_topology_malformed),
        cmocka_unit_test(test_plan_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
