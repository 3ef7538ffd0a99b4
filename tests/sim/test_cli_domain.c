/* test_cli_domain.c — `attach --domain FILE` against qmp-sim playing a VM that libvirt (or `layout`) made
 * (pxbs pci.1/pci.2, root ports pci.3-pci.6, vSMMUs iommu0/iommu1, a root port pci.7 on pcie.0) (DESIGN §9):
 *   - a domain that agrees: the hostdev's ua- alias is the QEMU id and its guest address (bus 0x06 = pci.6)
 *     is where it goes, not the lowest free port; `topology --domain` says it agrees;
 *   - a domain that disagrees (busNr, a root port behind the other vSMMU): exit 2, every disagreement listed
 *     (text and --json), nothing that changes QEMU sent — smmuctl's --record of the whole exchange holds only
 *     qmp_capabilities and QOM reads, and qmp-sim's dump has no new device, object or fd; --force attaches;
 *   - a guest address that breaks SMMU matching (a port behind no vSMMU): exit 2 with the reason, nothing sent;
 *   - topology --xml after attach --fd-pass names the hostdev by the journal's host address;
 *   - a malformed domain: exit 2 naming file:line before QEMU is even connected to.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define SMMU_B "smmu3.0x0000000026000000"

struct fx {
    struct fakesys *fs;
    struct simh *h;
    char *dir;
    char dom[600], rec[600];
};

#define HEAD "<domain type='kvm'>\n  <name>vm1</name>\n  <devices>\n" \
    "    <controller type='pci' index='0' model='pcie-root'/>\n" \
    "    <controller type='pci' index='1' model='pcie-expander-bus'><model name='pxb-pcie'/>" \
    "<target busNr='%d'><node>0</node></target></controller>\n" \
    "    <controller type='pci' index='2' model='pcie-expander-bus'><model name='pxb-pcie'/>" \
    "<target busNr='248'><node>1</node></target></controller>\n"
#define PORT(i, bus, slot) "    <controller type='pci' index='" #i "' model='pcie-root-port'><target chassis='" #i \
    "' port='0x" #i "'/><address type='pci' bus='" #bus "' slot='" #slot "'/></controller>\n"
#define TAIL "    <iommu model='smmuv3'><driver pciBus='1'/></iommu>\n" \
    "    <iommu model='smmuv3'><driver pciBus='2'/></iommu>\n" \
    "    <hostdev mode='subsystem' type='pci' managed='no'><driver iommufd='yes'/>\n" \
    "      <source><address domain='0x0009' bus='0x02' slot='0x00' function='0x0'/></source>\n" \
    "      <alias name='ua-nic0'/><address type='pci' domain='0x0000' bus='0x%02x' slot='0x00' function='0x0'/>\n" \
    "    </hostdev>\n  </devices>\n</domain>\n"

static void write_domain(struct fx *f, int busnr, const char *ports, int guest_bus)
{
    FILE *fp = fopen(f->dom, "w");
    assert_non_null(fp);
    fprintf(fp, HEAD, busnr);
    fputs(ports, fp);
    fprintf(fp, TAIL, guest_bus);
    fclose(fp);
}

#define GOOD_PORTS PORT(3, 1, 0) PORT(4, 1, 1) PORT(5, 2, 0) PORT(6, 2, 1) PORT(7, 0, 3)

static int setup(void **st)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *args[] = {
        "-S",
        "-device", "pxb-pcie,id=pci.1,bus_nr=252,numa_node=0",
        "-device", "pxb-pcie,id=pci.2,bus_nr=248,numa_node=1",
        "-device", "pcie-root-port,id=pci.3,bus=pci.1,chassis=3,port=3,addr=0x0",
        "-device", "pcie-root-port,id=pci.4,bus=pci.1,chassis=4,port=4,addr=0x1",
        "-device", "pcie-root-port,id=pci.5,bus=pci.2,chassis=5,port=5,addr=0x0",
        "-device", "pcie-root-port,id=pci.6,bus=pci.2,chassis=6,port=6,addr=0x1",
        "-device", "pcie-root-port,id=pci.7,bus=pcie.0,chassis=7,port=7,addr=0x3",
        "-device", "arm-smmuv3,primary-bus=pci.1,id=iommu0",
        "-device", "arm-smmuv3,primary-bus=pci.2,id=iommu1",
        "--dev-iommu", "--sysfs", NULL, NULL};
    f->fs = fakesys_new(NULL);
    fakesys_add_dev(f->fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                                 .group = "1", .cdev = "vfio1", .numa_node = "0"});
    fakesys_add_dev(f->fs, &(struct fakesys_dev){.bdf = "0009:02:00.0", .smmu = SMMU_B, .driver = "vfio-pci",
                                                 .group = "2", .cdev = "vfio2", .numa_node = "1"});
    args[sizeof(args) / sizeof(args[0]) - 2] = fakesys_root(f->fs);
    if (simh_start(&f->h, args) < 0)
        return -1;
    f->dir = smmu_test_mkdtemp("cli-domain");
    snprintf(f->dom, sizeof(f->dom), "%s/vm1.xml", f->dir);
    snprintf(f->rec, sizeof(f->rec), "%s/qmp.rec", f->dir);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fx *f = *st;
    assert_int_equal(simh_stop(f->h), 0);
    fakesys_free(f->fs);
    smmu_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int run(struct fx *f, struct smmu_run *r, const char *const *args)
{
    const char *argv[32] = {"--qmp", simh_qmp_path(f->h), "--state-dir", f->dir, "--sysfs", fakesys_root(f->fs),
                            "--record", f->rec};
    size_t n = 8;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return smmu_run_cli(r, argv, 30000);
}

/* Nothing that changes QEMU was sent: the recorded exchange holds only negotiation and QOM reads, and the
 * simulator has no vfio-pci device, no object and no fd. */
static void assert_nothing_sent(struct fx *f)
{
    char *rec = smmu_test_read_file(f->rec, NULL);
    assert_non_null(rec);
    assert_non_null(strstr(rec, "\"execute\":\"qom-list-get\""));
    for (char *p = rec; (p = strstr(p, "\"execute\":\"")); p++) {
        const char *c = p + strlen("\"execute\":\"");
        if (strncmp(c, "qmp_capabilities\"", 17) && strncmp(c, "qom-list\"", 9) && strncmp(c, "qom-list-get\"", 13) &&
            strncmp(c, "qom-get\"", 8))
            fail_msg("sent %.40s despite the refusal:\n%s", c, rec);
    }
    free(rec);
    unlink(f->rec);
    json_t *d = simh_dump(f->h);
    size_t i;
    json_t *dev;
    json_array_foreach(json_object_get(d, "devices"), i, dev)
        assert_string_not_equal(json_string_value(json_object_get(dev, "driver")), "vfio-pci");
    assert_int_equal(json_array_size(json_object_get(d, "objects")), 0);
    json_decref(d);
}

static void test_domain_agrees(void **st)
{
    struct fx *f = *st;
    struct smmu_run r;
    char domarg[700];
    write_domain(f, 252, GOOD_PORTS, 6);
    snprintf(domarg, sizeof(domarg), "%s", f->dom);
    assert_int_equal(run(f, &r, (const char *[]){"topology", "--domain", domarg, NULL}), 0);
    assert_non_null(strstr(r.out, "agrees with the live VM (8 controllers, 2 <iommu>, 1 hostdevs)"));
    smmu_run_free(&r);
    assert_int_equal(run(f, &r, (const char *[]){"--json", "attach", "--domain", domarg, "0009:02:00.0", NULL}), 0);
    json_t *o = smmu_run_json(&r);
    json_t *d0 = json_array_get(json_object_get(o, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(d0, "id")), "ua-nic0");
    assert_string_equal(json_string_value(json_object_get(d0, "port")), "pci.6"); /* not pci.5, the lowest */
    assert_true(json_is_true(json_object_get(json_object_get(o, "domain"), "agrees")));
    json_decref(o);
    smmu_run_free(&r);
    json_t *d = simh_dump(f->h), *dev = simh_dump_device(d, "ua-nic0");
    assert_non_null(dev);
    assert_string_equal(json_string_value(json_object_get(dev, "bus")), "pci.6");
    json_decref(d);
}

static void test_domain_disagrees(void **st)
{
    struct fx *f = *st;
    struct smmu_run r;
    /* busNr 250 for pci.1, and root port pci.4 on pci.2 (behind iommu1) instead of pci.1 */
    write_domain(f, 250, PORT(3, 1, 0) PORT(4, 2, 2) PORT(5, 2, 0) PORT(6, 2, 1) PORT(7, 0, 3), 6);
    assert_int_equal(run(f, &r, (const char *[]){"attach", "--domain", f->dom, "0009:02:00.0", NULL}), 2);
    assert_non_null(strstr(r.err, "2 disagreements with the live VM:\n"
                                  "  line 5: pxb-pcie pci.1: busNr 250 in the domain, bus_nr 252 in the VM\n"
                                  "  line 8: root port pci.4: on pci.2 (behind iommu1) in the domain, on pci.1 "
                                  "(behind vSMMU iommu0) in the VM\n"));
    assert_non_null(strstr(r.err, "--force to go on anyway"));
    smmu_run_free(&r);
    assert_nothing_sent(f);

    assert_int_equal(run(f, &r, (const char *[]){"--json", "attach", "--domain", f->dom, "0009:02:00.0", NULL}), 2);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    json_t *dis = json_object_get(json_object_get(o, "domain"), "disagreements");
    assert_int_equal(json_array_size(dis), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(dis, 0), "kind")), "bus-nr");
    assert_string_equal(json_string_value(json_object_get(json_array_get(dis, 1), "kind")), "root-port-bus");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(dis, 1), "line")), 8);
    json_decref(o);
    smmu_run_free(&r);
    assert_nothing_sent(f);

    /* plan refuses the same way; --force plans and attaches */
    assert_int_equal(run(f, &r, (const char *[]){"plan", "--domain", f->dom, "0009:02:00.0", NULL}), 2);
    smmu_run_free(&r);
    assert_int_equal(run(f, &r, (const char *[]){"attach", "--force", "--domain", f->dom, "0009:02:00.0", NULL}), 0);
    assert_non_null(strstr(r.out, "attached 0009:02:00.0 as ua-nic0 on pci.6 behind iommu1"));
    assert_non_null(strstr(r.err, "--force: attached despite 2 disagreement(s)"));
    smmu_run_free(&r);
}

static void test_domain_constraint_refused(void **st)
{
    struct fx *f = *st;
    struct smmu_run r;
    write_domain(f, 252, GOOD_PORTS, 7); /* pci.7: on pcie.0, behind no vSMMU */
    assert_int_equal(run(f, &r, (const char *[]){"attach", "--domain", f->dom, "0009:02:00.0", NULL}), 2);
    assert_non_null(strstr(r.err, "names root port pci.7, which sits behind no vSMMU: the device would bypass the "
                                  "vSMMU that must mirror its host SMMU"));
    smmu_run_free(&r);
    assert_nothing_sent(f);

    /* malformed: file and line, before any connection (no record file at all) */
    FILE *fp = fopen(f->dom, "w");
    fputs("<domain>\n<devices>\n<controller type='pci' model='pcie-root-port'/>\n</devices>\n</domain>\n", fp);
    fclose(fp);
    assert_int_equal(run(f, &r, (const char *[]){"attach", "--domain", f->dom, "0009:02:00.0", NULL}), 2);
    assert_non_null(strstr(r.err, "vm1.xml:3: <controller type='pci'> has no index="));
    smmu_run_free(&r);
    size_t reclen = 1;
    char *rec = smmu_test_read_file(f->rec, &reclen);
    assert_int_equal(reclen, 0); /* --record opened, nothing exchanged */
    free(rec);
    /* --domain is not detach's, --force not topology's */
    assert_int_equal(run(f, &r, (const char *[]){"detach", "--domain", f->dom, "x", NULL}), 2);
    assert_non_null(strstr(r.err, "option --domain is only valid with: topology plan attach"));
    smmu_run_free(&r);
    assert_int_equal(run(f, &r, (const char *[]){"topology", "--force", NULL}), 2);
    assert_non_null(strstr(r.err, "option --force is only valid with: attach plan"));
    smmu_run_free(&r);
}

/* topology --xml after an attach --fd-pass: QEMU's vfio-pci has no `host` then (QOM shows none), the journal
 * knows it: the hostdev is written with the journal's host address on its root port. */
static void test_topology_xml_fd_passed(void **st)
{
    struct fx *f = *st;
    struct smmu_run r;
    char dev[700];
    snprintf(dev, sizeof(dev), "%s/dev", f->dir);
    fakesys_write_dev_tree(f->fs, dev);
    assert_int_equal(run(f, &r, (const char *[]){"--dev", dev, "attach", "--fd-pass", "0009:01:00.0", NULL}), 0);
    smmu_run_free(&r);
    json_t *d = simh_dump(f->h), *x = simh_dump_device(d, "hostdev-0009-01-00.0");
    assert_non_null(x);
    json_decref(d);
    assert_int_equal(run(f, &r, (const char *[]){"topology", "--xml", NULL}), 0);
    assert_non_null(strstr(r.out, "      <address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/>\n"
                                  "    </source>\n"
                                  "    <alias name='ua-hostdev-0009-01-00-0'/>\n"
                                  "    <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>\n"));
    assert_null(strstr(r.out, "is left out"));
    smmu_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_domain_agrees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain_disagrees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain_constraint_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topology_xml_fd_passed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
