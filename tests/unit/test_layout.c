/* test_layout.c — `smmuctl layout`: the pure model (smmu_layout_build, window sizing, both renderers) and the
 * command on a fake sysfs (formats, --json, --spare, --no-accel, bad input and exit codes). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smmuctl/layout.h"
#include "smmuctl/libvirt_xml.h"
#include "support/fakesys.h"
#include "support/runcli.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define SMMU_B "smmu3.0x0000000026000000"
#define GIB (1ull << 30)
#define MIB (1ull << 20)

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

static struct smmu_host_dev dev(const char *bdf, const char *smmu, int numa, const char *resource)
{
    struct smmu_host_dev d;
    struct smmu_error err = SMMU_ERROR_INIT;
    memset(&d, 0, sizeof(d));
    snprintf(d.bdf, sizeof(d.bdf), "%s", bdf);
    snprintf(d.smmu, sizeof(d.smmu), "%s", smmu);
    d.numa_node = numa;
    if (resource) {
        assert_int_equal(smmu_host_parse_resource(resource, strlen(resource), "r", d.bars, &err), 0);
        d.have_bars = true;
    }
    return d;
}

static void test_windows(void **state)
{
    struct smmu_host_bar b[SMMU_HOST_NBARS] = {0};
    uint64_t p, m;
    (void)state;

    smmu_layout_windows(b, &p, &m);
    assert_true(p == 0 && m == 0);
    /* GPU: 128 GiB + 32 MiB prefetchable, aligned to 128 GiB -> 256 GiB; 16 MiB 32-bit -> 16 MiB */
    b[0] = (struct smmu_host_bar){.size = 16 * MIB};
    b[2] = (struct smmu_host_bar){.size = 128 * GIB, .mem64 = true, .prefetch = true};
    b[4] = (struct smmu_host_bar){.size = 32 * MIB, .mem64 = true, .prefetch = true};
    smmu_layout_windows(b, &p, &m);
    assert_true(p == 256 * GIB);
    assert_true(m == 16 * MIB);
    /* small BARs round up to the 1 MiB bridge granularity; 32-bit prefetchable and 64-bit non-prefetchable
     * BARs go in the non-prefetchable window; I/O BARs in neither */
    memset(b, 0, sizeof(b));
    b[0] = (struct smmu_host_bar){.size = 16 << 10, .mem64 = true, .prefetch = true};
    b[1] = (struct smmu_host_bar){.size = 4 << 10, .prefetch = true};
    b[2] = (struct smmu_host_bar){.size = 2 * MIB, .mem64 = true};
    b[3] = (struct smmu_host_bar){.size = 256, .io = true};
    smmu_layout_windows(b, &p, &m);
    assert_true(p == MIB);
    assert_true(m == 4 * MIB); /* 2 MiB + 4 KiB, aligned to 2 MiB */
}

static void test_build(void **state)
{
    struct smmu_host_dev d[3] = {dev("0009:01:00.0", SMMU_A, 0, FAKESYS_RESOURCE_GPU),
                                 dev("0009:02:00.0", SMMU_A, 0, FAKESYS_RESOURCE_NIC),
                                 dev("0019:01:00.0", SMMU_B, 1, NULL)};
    struct smmu_layout_req req = {.accel = true, .spare = 1};
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_layout l;
    (void)state;

    assert_int_equal(smmu_layout_build(d, 3, &req, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].smmu, SMMU_A);
    assert_int_equal(l.v[0].pxb_index, 1);
    assert_int_equal(l.v[0].iommu, 0);
    assert_int_equal(l.v[0].ndevs, 2);
    assert_int_equal(l.v[0].nports, 3);
    assert_int_equal(l.v[0].bus_nr, 252);       /* 252 root bus, 253-255 its ports */
    assert_int_equal(l.v[1].bus_nr, 249);       /* 249, 250-251 */
    assert_int_equal(l.v[0].numa_node, 0);
    assert_int_equal(l.v[1].numa_node, 1);
    assert_true(l.v[0].pref64_reserve == 256 * GIB); /* the GPU's, larger than the NIC's 64 MiB */
    assert_true(l.v[0].mem_reserve == 16 * MIB);
    assert_true(l.v[1].pref64_reserve == 0 && l.v[1].mem_reserve == 0);
    assert_int_equal(l.nwarnings, 1);
    assert_contains(l.warnings[0], "0019:01:00.0: no sysfs resource file");
    /* ports numbered after the pxbs, across vSMMUs, each on its own slot of its pxb */
    assert_int_equal(l.v[0].ports[0].index, 3);
    assert_int_equal(l.v[0].ports[2].index, 5);
    assert_int_equal(l.v[0].ports[2].slot, 2);
    assert_int_equal(l.v[1].ports[0].index, 6);
    assert_int_equal(l.v[1].ports[0].slot, 0);
    assert_true(l.v[0].accel && l.v[1].accel);

    char *q = smmu_layout_qemu(&l);
    assert_non_null(q);
    assert_string_equal(q,
        "-device\npxb-pcie,id=pci.1,bus_nr=252,bus=pcie.0,numa_node=0\n"
        "-device\npxb-pcie,id=pci.2,bus_nr=249,bus=pcie.0,numa_node=1\n"
        "-device\npcie-root-port,id=pci.3,bus=pci.1,chassis=3,port=3,addr=0x0,mem-reserve=16777216,pref64-reserve=274877906944\n"
        "-device\npcie-root-port,id=pci.4,bus=pci.1,chassis=4,port=4,addr=0x1,mem-reserve=16777216,pref64-reserve=274877906944\n"
        "-device\npcie-root-port,id=pci.5,bus=pci.1,chassis=5,port=5,addr=0x2,mem-reserve=16777216,pref64-reserve=274877906944\n"
        "-device\npcie-root-port,id=pci.6,bus=pci.2,chassis=6,port=6,addr=0x0\n"
        "-device\npcie-root-port,id=pci.7,bus=pci.2,chassis=7,port=7,addr=0x1\n"
        "-device\narm-smmuv3,primary-bus=pci.1,id=iommu0,accel=on\n"
        "-device\narm-smmuv3,primary-bus=pci.2,id=iommu1,accel=on\n"
        "-object\niommufd,id=iommufd0\n");
    free(q);
    char *x = smmu_layout_xml(&l);
    assert_non_null(x);
    assert_contains(x, "<controller type='pci' index='1' model='pcie-expander-bus'>\n    <model name='pxb-pcie'/>\n"
                       "    <target busNr='252'>\n      <node>0</node>\n    </target>");
    assert_contains(x, "<controller type='pci' index='5' model='pcie-root-port'>\n    <model name='pcie-root-port'/>\n"
                       "    <target chassis='5' port='0x5' memReserve='16384'/>\n"
                       "    <address type='pci' domain='0x0000' bus='0x01' slot='0x02' function='0x0'/>");
    assert_contains(x, "<target chassis='7' port='0x7'/>");
    assert_contains(x, "<driver pciBus='2' accel='on'/>");
    assert_contains(x, "<driver iommufd='yes'/>");
    assert_contains(x, "<address domain='0x0009' bus='0x02' slot='0x00' function='0x0'/>");
    assert_contains(x, "<alias name='ua-hostdev-0009-02-00-0'/>");
    assert_contains(x, "<qemu:device alias='pci.4'>");
    assert_contains(x, "name='pref64-reserve' type='unsigned' value='274877906944'/> <!-- 256 GiB -->");
    assert_null(strstr(x, "alias='pci.6'")); /* no BARs known behind SMMU_B: no override */
    assert_contains(x, "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'");
    free(x);

    req = (struct smmu_layout_req){.accel = false, .spare = 0};
    assert_int_equal(smmu_layout_build(d, 1, &req, &l, &err), 0);
    assert_int_equal(l.v[0].nports, 1);
    assert_int_equal(l.v[0].bus_nr, 254);
    q = smmu_layout_qemu(&l);
    assert_contains(q, "arm-smmuv3,primary-bus=pci.1,id=iommu0\n");
    free(q);
    x = smmu_layout_xml(&l);
    assert_contains(x, "<driver pciBus='1'/>");
    free(x);
}

/* A VM that `layout` (or libvirt) made: ids pci.1..pci.M and iommu0..n-1 are kept as they are (iommu1 on the
 * first pxb comes first only if named so), windows become memReserve and the pref64 override, a hot-plug-off
 * port says hotplug='off', a port on pcie.0 sits on bus 0, and a vfio-pci device becomes a hostdev on its
 * port. Pure: smmu_lvxml_from_topology on a hand-made topology. */
static void test_from_topology(void **state)
{
    struct smmu_pxb pxbs[2] = {
        {.id = "pci.2", .path = "/machine/peripheral/pci.2", .bus_nr = 248, .numa_node = 1, .slot = 2, .vsmmu = 0},
        {.id = "pci.1", .path = "/machine/peripheral/pci.1", .bus_nr = 252, .numa_node = -1, .slot = 1, .vsmmu = 1},
    };
    struct smmu_vsmmu vs[2] = {
        {.id = "iommu1", .identifier = 0, .pxb_id = "pci.2", .accel = true},
        {.id = "iommu0", .identifier = 1, .pxb_id = "pci.1"},
    };
    struct smmu_rootport ports[3] = {
        {.id = "pci.3", .chassis = 3, .port = 3, .hotplug = true, .bus_name = "pci.1", .vsmmu = 1, .slot = 0,
         .pref64_reserve = {true, 1ull << 38}, .mem_reserve = {true, 16u << 20}, .occupant_id = "ua-gpu0",
         .occupant_path = "/machine/peripheral/ua-gpu0", .occupant_driver = "vfio-pci"},
        {.id = "pci.4", .chassis = 4, .port = 4, .hotplug = false, .bus_name = "pci.2", .vsmmu = 0, .slot = 0},
        {.id = "pci.5", .chassis = 5, .port = 5, .hotplug = true, .bus_name = "pcie.0", .vsmmu = -1, .slot = -1},
    };
    struct smmu_vfio_dev vfio[1] = {{.id = "ua-gpu0", .host = "0009:01:00.0", .iommufd = "iommufd0", .rootport = 0}};
    struct smmu_topology t = {.vsmmus = vs, .n_vsmmus = 2, .ports = ports, .n_ports = 3, .vfio = vfio,
                              .n_vfio = 1, .pxbs = pxbs, .n_pxbs = 2};
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_lvxml m;
    char *x;
    (void)state;

    assert_int_equal(smmu_lvxml_from_topology(&t, NULL, 0, &m, &err), 0);
    assert_int_equal(m.n_ctrls, 5);
    assert_int_equal(m.n_notes, 0); /* nothing renamed, nothing left out */
    x = smmu_lvxml_render(&m);
    assert_non_null(x);
    assert_contains(x, "<controller type='pci' index='2' model='pcie-expander-bus'>\n    <model name='pxb-pcie'/>\n"
                       "    <target busNr='248'>\n      <node>1</node>\n    </target>\n"
                       "    <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>");
    assert_contains(x, "<target chassis='3' port='0x3' memReserve='16384'/>\n"
                       "    <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>");
    assert_contains(x, "<target chassis='4' port='0x4' hotplug='off'/>\n"
                       "    <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>");
    /* slot unknown on pcie.0: the lowest free one there (the pxbs hold 1 and 2) */
    assert_contains(x, "<target chassis='5' port='0x5'/>\n"
                       "    <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>");
    /* iommu0 (on pci.1) first: libvirt's K-th <iommu> is iommuK */
    assert_contains(x, "<iommu model='smmuv3'>\n    <driver pciBus='1'/>\n  </iommu>\n"
                       "  <iommu model='smmuv3'>\n    <driver pciBus='2' accel='on'/>\n  </iommu>\n");
    assert_contains(x, "<alias name='ua-gpu0'/>\n    <address type='pci' domain='0x0000' bus='0x03' slot='0x00'");
    assert_contains(x, "<qemu:device alias='pci.3'>");
    assert_null(strstr(x, "alias='pci.4'"));
    free(x);
    smmu_lvxml_free(&m);

    /* a gap in the indexes (no pci.5: libvirt would fill it with a root port) → renumbered, and said so */
    snprintf(ports[2].id, sizeof(ports[2].id), "pci.9");
    assert_int_equal(smmu_lvxml_from_topology(&t, NULL, 0, &m, &err), 0);
    assert_int_equal(m.n_notes, 1);
    assert_contains(m.notes[0], "renumbered");
    assert_contains(m.notes[0], "pci.9=pci.5");
    smmu_lvxml_free(&m);

    /* aliases libvirt accepts */
    char a[SMMU_ID_LEN];
    smmu_lvxml_alias("hostdev-0009-01-00.0", a, sizeof(a));
    assert_string_equal(a, "ua-hostdev-0009-01-00-0");
    smmu_lvxml_alias("ua-gpu_1", a, sizeof(a));
    assert_string_equal(a, "ua-gpu_1");
    smmu_lvxml_alias("ua-gpu.1", a, sizeof(a));
    assert_string_equal(a, "ua-ua-gpu-1");
}

static void test_build_bad(void **state)
{
    struct smmu_layout_req req = {.accel = true, .spare = 1};
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_layout l;
    struct smmu_host_dev d[3] = {0};
    (void)state;

    assert_int_equal(smmu_layout_build(d, 0, &req, &l, &err), -EINVAL);
    assert_contains(err.message, "no devices");
    d[0] = dev("0009:01:00.0", "", 0, NULL);
    assert_int_equal(smmu_layout_build(d, 1, &req, &l, &err), -EINVAL);
    assert_contains(err.message, "0009:01:00.0: no host SMMU");
    d[0] = dev("0009:01:00.0", SMMU_A, 0, NULL);
    d[1] = dev("0009:01:00.0", SMMU_A, 0, NULL);
    assert_int_equal(smmu_layout_build(d, 2, &req, &l, &err), -EINVAL);
    assert_contains(err.message, "0009:01:00.0: named twice");
    d[1] = dev("0009:02:00.0", SMMU_A, 1, NULL);
    assert_int_equal(smmu_layout_build(d, 2, &req, &l, &err), -EINVAL);
    assert_contains(err.message, "0009:02:00.0: NUMA node 1, but 0009:01:00.0 behind the same host SMMU");
    req.spare = 32;
    assert_int_equal(smmu_layout_build(d, 1, &req, &l, &err), -ERANGE);
    assert_contains(err.message, "33 root ports asked for, at most 32");

    /* 16 SMMUs x (1 + 31 spare) ports need more buses than 255 - 64 */
    static struct smmu_host_dev many[16];
    char bdf[16], smmu[64];
    for (int i = 0; i < 16; i++) {
        snprintf(bdf, sizeof(bdf), "%04x:01:00.0", i);
        snprintf(smmu, sizeof(smmu), "smmu3.%d", i);
        many[i] = dev(bdf, smmu, -1, NULL);
    }
    req.spare = 31;
    assert_int_equal(smmu_layout_build(many, 16, &req, &l, &err), -ERANGE);
    assert_contains(err.message, "bus numbers run out");
    req.spare = 1;
    assert_int_equal(smmu_layout_build(many, 16, &req, &l, &err), 0);
    assert_int_equal(l.v[15].bus_nr, 256 - 16 * 3);
    assert_int_equal(l.v[15].numa_node, -1);
    char *q = smmu_layout_qemu(&l);
    assert_contains(q, "pxb-pcie,id=pci.16,bus_nr=208,bus=pcie.0\n");
    free(q);
}

/* ---------------------------------------------------------------- the command */

static struct fakesys *fs;

static int setup(void **state)
{
    (void)state;
    fs = fakesys_new(NULL);
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                               .group = "1", .numa_node = "0", .resource = FAKESYS_RESOURCE_GPU});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0019:01:00.0", .smmu = SMMU_B, .driver = "nvidia",
                                               .group = "2", .numa_node = "1", .resource = FAKESYS_RESOURCE_GPU});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0029:01:00.0", .driver = "vfio-pci", .group = "3"});
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fakesys_free(fs);
    return 0;
}

static void test_cli(void **state)
{
    struct smmu_run r;
    (void)state;

    /* a device on another driver is fine: layout is about the VM, not about binding */
    smmu_run_cli(&r, (const char *[]){"--sysfs", fakesys_root(fs), "layout", "0009:01:00.0", "0019:01:00.0",
                                      "--no-accel", NULL}, 20000);
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "-device\npxb-pcie,id=pci.1,bus_nr=253,bus=pcie.0,numa_node=0\n");
    assert_contains(r.out, "-device\npxb-pcie,id=pci.2,bus_nr=250,bus=pcie.0,numa_node=1\n");
    assert_contains(r.out, "arm-smmuv3,primary-bus=pci.2,id=iommu1\n-object\niommufd,id=iommufd0\n");
    assert_null(strstr(r.out, "accel"));
    smmu_run_free(&r);

    smmu_run_cli(&r, (const char *[]){"--sysfs", fakesys_root(fs), "layout", "--format", "xml", "--spare", "0",
                                      "0009:01:00.0", NULL}, 20000);
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "<devices>");
    assert_contains(r.out, "<driver pciBus='1' accel='on'/>");
    assert_contains(r.out, "<target busNr='254'>");
    smmu_run_free(&r);

    smmu_run_cli(&r, (const char *[]){"--sysfs", fakesys_root(fs), "--json", "layout", "0009:01:00.0", NULL}, 20000);
    assert_int_equal(r.status, 0);
    json_t *o = smmu_run_json(&r), *v;
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "ok")));
    v = json_array_get(json_object_get(o, "vsmmus"), 0);
    assert_string_equal(json_string_value(json_object_get(v, "pxb")), "pci.1");
    assert_int_equal(json_integer_value(json_object_get(v, "bus_nr")), 253);
    assert_true((uint64_t)json_integer_value(json_object_get(v, "pref64_reserve")) == 256 * GIB);
    assert_int_equal(json_array_size(json_object_get(v, "root_ports")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "qemu"), 0)), "-device");
    assert_contains(json_string_value(json_object_get(o, "xml")), "<iommu model='smmuv3'>");
    json_decref(o);
    smmu_run_free(&r);

    static const struct { const char *args[6]; const char *msg; } bad[] = {
        {{"layout", NULL}, "usage: smmuctl layout DEV..."},
        {{"layout", "--format", "yaml", "0009:01:00.0", NULL}, "--format: 'yaml' is neither qemu nor xml"},
        {{"layout", "--spare", "x", "0009:01:00.0", NULL}, "--spare: 'x' is not a number"},
        {{"layout", "--spare", "32", "0009:01:00.0", NULL}, "--spare: '32'"},
        {{"layout", "0009:07:00.0", NULL}, "0009:07:00.0: no such PCI device"},
        {{"layout", "0029:01:00.0", NULL}, "0029:01:00.0: no host SMMU"},
        {{"layout", "nope", NULL}, "'nope': not a PCI address"},
        {{"topology", "--no-accel", NULL}, "option --no-accel is only valid with: layout"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[10] = {"--sysfs", fakesys_root(fs)};
        for (int k = 0; bad[i].args[k]; k++)
            args[2 + k] = bad[i].args[k];
        smmu_run_cli(&r, args, 20000);
        if (r.status != 2)
            fail_msg("case %zu: exit %d (%s)", i, r.status, r.err);
        assert_contains(r.err, bad[i].msg);
        assert_string_equal(r.out, "");
        smmu_run_free(&r);
    }
    smmu_run_cli(&r, (const char *[]){"--sysfs", fakesys_root(fs), "--json", "layout", "0029:01:00.0", NULL}, 20000);
    assert_int_equal(r.status, 2);
    o = smmu_run_json(&r);
    assert_non_null(o);
    assert_true(json_is_false(json_object_get(o, "ok")));
    json_decref(o);
    smmu_run_free(&r);

    smmu_run_cli(&r, (const char *[]){"help", "layout", NULL}, 20000);
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "--spare N");
    smmu_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_build_bad),
        cmocka_unit_test(test_from_topology),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
