/* test_e2e_layout.c — real QEMU 11 boots what `smmuctl layout --format qemu --no-accel` prints, and
 * `smmuctl topology --json` on that VM shows what layout promised: one pxb per host SMMU with its bus_nr and
 * NUMA node, the vSMMU on it, the root ports (ids, chassis/port) behind each vSMMU, all free and hot-pluggable.
 * The host is a fake sysfs: two GPUs and a NIC behind two host SMMUs on two NUMA nodes. Skips without QEMU 11
 * (scripts/install-qemu11). accel=on needs KVM, which this TCG host lacks (FACTS): hence --no-accel. This host
 * has no /dev/iommu either, so the iommufd object gets an inherited fd of a regular file (",fd=N", which QEMU
 * does not check: FACTS) appended; every other argument is layout's, verbatim. On that VM `topology --xml` gives
 * back layout's XML, and layout's XML as the VM's --domain agrees with it and steers `plan` (issue 11.2, 11.3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "support/fakesys.h"
#include "support/qemu.h"
#include "support/runcli.h"
#include "support/testutil.h"

#define RUN_MS 30000

static void test_layout_boots(void **state)
{
    struct fakesys *fs;
    struct smmu_qemu *q = NULL;
    struct smmu_run r;
    json_t *lay, *topo;
    const char *args[64];
    size_t na = 0;
    (void)state;

    if (!smmu_qemu_available()) {
        fprintf(stderr, "SKIP: QEMU 11 not installed in %s (run scripts/install-qemu11)\n", smmu_qemu_dir());
        skip();
    }
    fs = fakesys_new(NULL);
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = "smmu3.0x0000000016000000",
                                               .driver = "vfio-pci", .group = "1", .numa_node = "0",
                                               .resource = FAKESYS_RESOURCE_GPU});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:02:00.0", .smmu = "smmu3.0x0000000016000000",
                                               .driver = "vfio-pci", .group = "2", .numa_node = "0",
                                               .resource = FAKESYS_RESOURCE_NIC});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0019:01:00.0", .smmu = "smmu3.0x0000000026000000",
                                               .driver = "vfio-pci", .group = "3", .numa_node = "1",
                                               .resource = FAKESYS_RESOURCE_GPU});

    smmu_run_cli(&r, (const char *[]){"--sysfs", fakesys_root(fs), "--json", "layout", "--no-accel", "0009:01:00.0",
                                      "0009:02:00.0", "0019:01:00.0", NULL}, RUN_MS);
    assert_int_equal(r.status, 0);
    lay = smmu_run_json(&r);
    assert_non_null(lay);
    smmu_run_free(&r);

    /* the text form is the same argument list, one per line */
    smmu_run_cli(&r, (const char *[]){"--sysfs", fakesys_root(fs), "layout", "--no-accel", "0009:01:00.0",
                                      "0009:02:00.0", "0019:01:00.0", NULL}, RUN_MS);
    assert_int_equal(r.status, 0);
    {
        json_t *qa = json_object_get(lay, "qemu"), *v;
        size_t i;
        char *lines = strdup(r.out), *save = NULL, *t = strtok_r(lines, "\n", &save);
        json_array_foreach(qa, i, v) {
            assert_non_null(t);
            assert_string_equal(t, json_string_value(v));
            t = strtok_r(NULL, "\n", &save);
        }
        assert_null(t);
        free(lines);
    }
    smmu_run_free(&r);

    /* two guest NUMA nodes for the pxbs' numa_node */
    static const char *const numa[] = {"-m", "1G", "-smp", "2",
        "-object", "memory-backend-ram,id=m0,size=512M", "-object", "memory-backend-ram,id=m1,size=512M",
        "-numa", "node,nodeid=0,cpus=0,memdev=m0", "-numa", "node,nodeid=1,cpus=1,memdev=m1"};
    for (size_t i = 0; i < sizeof(numa) / sizeof(numa[0]); i++)
        args[na++] = numa[i];
    char iommufd_arg[64] = "";
    int fakefd = open("/dev/null", O_RDWR); /* no O_CLOEXEC: QEMU inherits it */
    assert_true(fakefd >= 0);
    {
        json_t *v;
        size_t i;
        json_array_foreach(json_object_get(lay, "qemu"), i, v) {
            assert_true(na < 63);
            args[na++] = json_string_value(v);
            if (!strcmp(json_string_value(v), "iommufd,id=iommufd0")) {
                snprintf(iommufd_arg, sizeof(iommufd_arg), "iommufd,id=iommufd0,fd=%d", fakefd);
                args[na - 1] = iommufd_arg;
            }
        }
    }
    assert_true(iommufd_arg[0]);
    args[na] = NULL;
    if (smmu_qemu_start(&q, "aarch64", args) < 0)
        fail_msg("QEMU refused the layout: %s", smmu_qemu_last_error());
    close(fakefd);

    smmu_run_cli(&r, (const char *[]){"--qmp", smmu_qemu_socket_path(q), "--sysfs", fakesys_root(fs), "--json",
                                      "topology", NULL}, RUN_MS);
    if (r.status != 0)
        fail_msg("topology: exit %d: %s", r.status, r.err);
    topo = smmu_run_json(&r);
    assert_non_null(topo);
    smmu_run_free(&r);

    json_t *lv = json_object_get(lay, "vsmmus"), *tv = json_object_get(topo, "vsmmus");
    assert_int_equal(json_array_size(lv), 2);
    assert_int_equal(json_array_size(tv), json_array_size(lv));
    for (size_t k = 0; k < json_array_size(lv); k++) {
        json_t *l = json_array_get(lv, k), *t = NULL, *x;
        size_t i;
        json_array_foreach(tv, i, x)
            if (!strcmp(json_string_value(json_object_get(x, "id")), json_string_value(json_object_get(l, "id"))))
                t = x;
        if (!t)
            fail_msg("vSMMU %s not in topology", json_string_value(json_object_get(l, "id")));
        assert_string_equal(json_string_value(json_object_get(t, "pxb")), json_string_value(json_object_get(l, "pxb")));
        assert_int_equal(json_integer_value(json_object_get(t, "bus_nr")), json_integer_value(json_object_get(l, "bus_nr")));
        assert_int_equal(json_integer_value(json_object_get(t, "numa_node")),
                         json_integer_value(json_object_get(l, "numa_node")));
        assert_true(json_is_false(json_object_get(t, "accel")));
        assert_true(json_is_null(json_object_get(t, "bound_smmu")));
        json_t *lp = json_object_get(l, "root_ports"), *tp = json_object_get(t, "ports");
        assert_int_equal(json_array_size(tp), json_array_size(lp));
        assert_int_equal(json_array_size(lp), json_array_size(json_object_get(l, "devices")) + 1);
        for (size_t j = 0; j < json_array_size(lp); j++) {
            json_t *a = json_array_get(lp, j), *b = json_array_get(tp, j);
            assert_string_equal(json_string_value(json_object_get(b, "id")), json_string_value(json_object_get(a, "id")));
            assert_int_equal(json_integer_value(json_object_get(b, "chassis")),
                             json_integer_value(json_object_get(a, "chassis")));
            assert_int_equal(json_integer_value(json_object_get(b, "port")), json_integer_value(json_object_get(a, "port")));
            assert_true(json_is_true(json_object_get(b, "hotplug")));
            assert_true(json_is_null(json_object_get(b, "occupant")));
        }
    }
    /* the pxbs' numa nodes as layout chose them from sysfs: 0 for SMMU A, 1 for SMMU B */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lv, 0), "numa_node")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lv, 1), "numa_node")), 1);
    assert_int_equal(json_array_size(json_object_get(topo, "other_ports")), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(topo, "iommufds"), 0)), "iommufd0");
    json_decref(topo);

    /* topology --xml on that VM describes what layout --format xml asked for: every root port controller
     * (index, chassis/port, its address on its pxb, memReserve), every <iommu> and every pref64-reserve
     * override verbatim; the pxbs with their busNr and NUMA node (plus the slot QEMU gave them on pcie.0);
     * the ids already are libvirt's, so nothing is renumbered. */
    smmu_run_cli(&r, (const char *[]){"--sysfs", fakesys_root(fs), "layout", "--format", "xml", "--no-accel",
                                      "0009:01:00.0", "0009:02:00.0", "0019:01:00.0", NULL}, RUN_MS);
    assert_int_equal(r.status, 0);
    char *lxml = strdup(r.out);
    smmu_run_free(&r);
    smmu_run_cli(&r, (const char *[]){"--qmp", smmu_qemu_socket_path(q), "--sysfs", fakesys_root(fs), "topology",
                                      "--xml", NULL}, RUN_MS);
    if (r.status != 0)
        fail_msg("topology --xml: exit %d: %s", r.status, r.err);
    assert_null(strstr(r.out, "renumbered"));
    size_t blocks = 0;
    for (const char *p = lxml; (p = strstr(p, "  <controller type='pci' index=")); p++) {
        const char *e = strstr(p, "  </controller>\n");
        assert_non_null(e);
        char block[1024];
        snprintf(block, sizeof(block), "%.*s", (int)(e - p), p);
        if (strstr(block, "pcie-expander-bus")) { /* layout leaves the pxb's slot to libvirt */
            char *tgt = strstr(block, "    <target busNr=");
            assert_non_null(tgt);
            if (!strstr(r.out, tgt))
                fail_msg("topology --xml lacks the pxb's\n%s\n%s", tgt, r.out);
            *tgt = 0;
        }
        if (!strstr(r.out, block))
            fail_msg("topology --xml lacks layout's\n%s\n----\n%s", block, r.out);
        blocks++;
    }
    assert_int_equal(blocks, 2 + 5);
    for (const char *p = lxml; (p = strstr(p, "  <iommu model=")); p++) {
        char block[256];
        snprintf(block, sizeof(block), "%.*s", (int)(strstr(p, "</iommu>") - p), p);
        assert_non_null(strstr(r.out, block));
    }
    assert_non_null(strstr(lxml, "<qemu:device alias='pci.3'>"));
    assert_non_null(strstr(r.out, strstr(lxml, "\n<qemu:override>\n")));
    assert_non_null(strstr(r.out, "      <node>1</node>\n"));
    smmu_run_free(&r);

    /* --domain: layout's fragment as the VM's domain agrees with the VM QEMU booted from layout's arguments;
     * a hostdev's guest address (0009:02:00.0 on pci.4) is where plan puts it — not pci.3, the lowest free
     * port — under its ua- alias; a domain with another busNr is refused (exit 2) naming the line. */
    char *dir = smmu_test_mkdtemp("e2e-domain"), dom[600];
    snprintf(dom, sizeof(dom), "%s/vm.xml", dir);
    const char *d0 = strstr(lxml, "\n<devices>\n"), *d1 = strstr(lxml, "\n</devices>\n");
    assert_non_null(d0);
    assert_non_null(d1);
    FILE *fp = fopen(dom, "w");
    assert_non_null(fp);
    fprintf(fp, "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n<name>lay</name>%.*s"
                "\n</devices>\n%s</domain>\n", (int)(d1 - d0), d0, d1 + strlen("\n</devices>\n"));
    fclose(fp);
    smmu_run_cli(&r, (const char *[]){"--qmp", smmu_qemu_socket_path(q), "--sysfs", fakesys_root(fs), "topology",
                                      "--domain", dom, NULL}, RUN_MS);
    if (r.status != 0 || !strstr(r.out, "agrees with the live VM"))
        fail_msg("topology --domain: exit %d\n%s%s", r.status, r.out, r.err);
    smmu_run_free(&r);
    smmu_run_cli(&r, (const char *[]){"--qmp", smmu_qemu_socket_path(q), "--sysfs", fakesys_root(fs), "--json", "plan",
                                      "--domain", dom, "0009:02:00.0", NULL}, RUN_MS);
    if (r.status != 0)
        fail_msg("plan --domain: exit %d\n%s%s", r.status, r.out, r.err);
    json_t *pl = smmu_run_json(&r), *p0 = json_array_get(json_object_get(pl, "placements"), 0);
    assert_string_equal(json_string_value(json_object_get(p0, "port")), "pci.4");
    assert_string_equal(json_string_value(json_object_get(p0, "device_id")), "ua-hostdev-0009-02-00-0");
    assert_true(json_is_true(json_object_get(json_object_get(pl, "domain"), "agrees")));
    json_decref(pl);
    smmu_run_free(&r);
    char *text = smmu_test_read_file(dom, NULL), *bn = strstr(text, "busNr='252'");
    assert_non_null(bn);
    memcpy(bn, "busNr='250'", 11);
    fp = fopen(dom, "w");
    fputs(text, fp);
    fclose(fp);
    free(text);
    smmu_run_cli(&r, (const char *[]){"--qmp", smmu_qemu_socket_path(q), "--sysfs", fakesys_root(fs), "plan",
                                      "--domain", dom, "0009:02:00.0", NULL}, RUN_MS);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, ": pxb-pcie pci.1: busNr 250 in the domain, bus_nr 252 in the VM"));
    smmu_run_free(&r);
    smmu_test_rmtree(dir);
    free(dir);
    free(lxml);
    json_decref(lay);
    smmu_qemu_stop(q);
    fakesys_free(fs);
}

/* The FACTS topology (ids pcie.1, rp1a…: not libvirt's) as XML: renumbered densely with the mapping noted,
 * same buses (busNr 252 and 248), the same ports (chassis/port) on the same pxbs, one <iommu> per pxb. */
static void test_facts_topology_xml(void **state)
{
    struct smmu_qemu *q = NULL;
    struct smmu_run r;
    (void)state;
    if (!smmu_qemu_available()) {
        fprintf(stderr, "SKIP: QEMU 11 not installed in %s (run scripts/install-qemu11)\n", smmu_qemu_dir());
        skip();
    }
    if (smmu_qemu_start_facts(&q, NULL) < 0)
        fail_msg("QEMU: %s", smmu_qemu_last_error());
    smmu_run_cli(&r, (const char *[]){"--qmp", smmu_qemu_socket_path(q), "topology", "--xml", NULL}, RUN_MS);
    if (r.status != 0)
        fail_msg("topology --xml: exit %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "renumbered (same topology, libvirt's ids): pcie.1=pci.1 pcie.2=pci.2 rp1a=pci.3 "
                                  "rp1b=pci.4 rp2a=pci.5 rp2b=pci.6"));
    assert_non_null(strstr(r.out, "index='1' model='pcie-expander-bus'>\n    <model name='pxb-pcie'/>\n"
                                  "    <target busNr='252'/>"));
    assert_non_null(strstr(r.out, "index='2' model='pcie-expander-bus'>\n    <model name='pxb-pcie'/>\n"
                                  "    <target busNr='248'/>"));
    assert_non_null(strstr(r.out, "index='4' model='pcie-root-port'>\n    <model name='pcie-root-port'/>\n"
                                  "    <target chassis='2' port='0x2'/>\n"
                                  "    <address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>"));
    assert_non_null(strstr(r.out, "index='6' model='pcie-root-port'>\n    <model name='pcie-root-port'/>\n"
                                  "    <target chassis='4' port='0x4'/>\n"
                                  "    <address type='pci' domain='0x0000' bus='0x02' slot='0x01' function='0x0'/>"));
    assert_non_null(strstr(r.out, "<driver pciBus='1'/>\n  </iommu>\n  <iommu model='smmuv3'>\n    <driver pciBus='2'/>"));
    smmu_run_free(&r);
    smmu_qemu_stop(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_layout_boots, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_facts_topology_xml, smmu_qemu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
