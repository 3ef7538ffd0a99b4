/* test_domain.c — `--domain FILE` (DESIGN §9): the libvirt domain reader (controllers, <iommu>s, hostdevs,
 * libvirt's ids; every kind of malformed input refused with file:line and what), the cross-check against a
 * live topology (every kind of disagreement listed; libvirt's index-gap fillers and not-yet-attached hostdevs
 * are not disagreements), and the planner's use of it (refusal unless force, ua- aliases as ids, a guest
 * address as a placement constraint honoured or refused with the reason). Pure: no QEMU. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "smmuctl/plan.h"
#include "smmuctl/xml.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define SMMU_B "smmu3.0x0000000026000000"

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay ? hay : "(null)");
}

static struct smmu_domain *parse(const char *xml)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_domain *d = NULL;
    if (smmu_xml_domain(xml, strlen(xml), "vm.xml", &d, &err) < 0)
        fail_msg("parse: %s", err.message);
    return d;
}

/* The VM `layout` makes for two host SMMUs: pxbs pci.1 (bus 252, NUMA 0) and pci.2 (bus 248, NUMA 1), root
 * ports pci.3, pci.4 on pci.1 and pci.5, pci.6 on pci.2, vSMMUs iommu0 on pci.1 and iommu1 on pci.2, plus a
 * port pci.7 on pcie.0 behind no vSMMU. */
#define DOMAIN_HEAD "<domain type='kvm'>\n  <name>vm1</name>\n  <devices>\n" \
    "    <controller type='pci' index='0' model='pcie-root'/>\n" \
    "    <controller type='pci' index='1' model='pcie-expander-bus'>\n" \
    "      <model name='pxb-pcie'/><target busNr='252'><node>0</node></target>\n    </controller>\n" \
    "    <controller type='pci' index='2' model='pcie-expander-bus'>\n" \
    "      <model name='pxb-pcie'/><target busNr='248'><node>1</node></target>\n    </controller>\n"
#define PORT(i, bus) "    <controller type='pci' index='" #i "' model='pcie-root-port'><target chassis='" #i \
    "' port='0x" #i "'/><address type='pci' bus='" #bus "' slot='0'/></controller>\n"
#define IOMMUS "    <iommu model='smmuv3'><driver pciBus='1'/></iommu>\n" \
    "    <iommu model='smmuv3'><driver pciBus='2'/></iommu>\n"
#define GOOD DOMAIN_HEAD PORT(3, 1) PORT(4, 1) PORT(5, 2) PORT(6, 2) PORT(7, 0) IOMMUS

struct vm {
    struct smmu_pxb pxbs[2];
    struct smmu_vsmmu vs[2];
    struct smmu_rootport ports[5];
    struct smmu_vfio_dev vfio[1];
    struct smmu_topology t;
};

static void vm_init(struct vm *v)
{
    memset(v, 0, sizeof(*v));
    v->pxbs[0] = (struct smmu_pxb){.id = "pci.1", .bus_nr = 252, .numa_node = 0, .slot = 1, .vsmmu = 0};
    v->pxbs[1] = (struct smmu_pxb){.id = "pci.2", .bus_nr = 248, .numa_node = 1, .slot = 2, .vsmmu = 1};
    v->vs[0] = (struct smmu_vsmmu){.id = "iommu0", .identifier = 0, .pxb_id = "pci.1", .bus_nr = 252, .numa_node = 0};
    v->vs[1] = (struct smmu_vsmmu){.id = "iommu1", .identifier = 1, .pxb_id = "pci.2", .bus_nr = 248, .numa_node = 1};
    const char *ids[5] = {"pci.3", "pci.4", "pci.5", "pci.6", "pci.7"}, *bus[5] = {"pci.1", "pci.1", "pci.2",
                                                                                   "pci.2", "pcie.0"};
    for (int i = 0; i < 5; i++) {
        struct smmu_rootport *p = &v->ports[i];
        snprintf(p->id, sizeof(p->id), "%s", ids[i]);
        snprintf(p->bus_name, sizeof(p->bus_name), "%s", bus[i]);
        p->chassis = p->port = i + 3;
        p->hotplug = true;
        p->vsmmu = i < 2 ? 0 : i < 4 ? 1 : -1;
        p->slot = i % 2;
    }
    v->t = (struct smmu_topology){.vsmmus = v->vs, .n_vsmmus = 2, .ports = v->ports, .n_ports = 5, .vfio = v->vfio,
                                  .n_vfio = 0, .pxbs = v->pxbs, .n_pxbs = 2};
}

static size_t check(const char *xml, const struct smmu_topology *t, struct smmu_domain_issue **v, size_t *n)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_domain *d = parse(xml);
    assert_int_equal(smmu_domain_check(d, t, v, n, &err), 0);
    smmu_xml_domain_free(d);
    return smmu_domain_disagreements(*v, *n);
}

/* ---------------------------------------------------------------- the reader */

static void test_parse(void **state)
{
    (void)state;
    struct smmu_domain *d = parse(GOOD
        "    <iommu model='smmuv3'/>\n"
        "    <iommu model='smmuv3'><driver pciBus='2' accel='on'/></iommu>\n"
        "    <controller type='usb' model='qemu-xhci'/>\n"
        "    <hostdev mode='subsystem' type='pci' managed='no'><driver iommufd='yes'/>\n"
        "      <source><address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/></source>\n"
        "      <alias name='ua-gpu0'/><address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>\n"
        "    </hostdev>\n"
        "    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1'/><product id='0x2'/></source></hostdev>\n"
        "  </devices>\n</domain>\n");
    assert_string_equal(d->name, "vm1");
    assert_int_equal(d->n_ctrls, 8); /* the usb controller is not PCI */
    assert_int_equal(d->ctrls[0].model, SMMU_DOMAIN_PCIE_ROOT);
    assert_int_equal(d->ctrls[1].model, SMMU_DOMAIN_PXB);
    assert_int_equal(d->ctrls[1].bus_nr, 252);
    assert_int_equal(d->ctrls[2].numa_node, 1);
    const struct smmu_domain_ctrl *p = smmu_domain_find_ctrl(d, 5);
    assert_non_null(p);
    assert_int_equal(p->model, SMMU_DOMAIN_ROOT_PORT);
    assert_int_equal(p->chassis, 5);
    assert_int_equal(p->port, 5);
    assert_true(p->has_addr);
    assert_int_equal(p->addr.bus, 2);
    assert_int_equal(d->n_iommus, 4);
    assert_int_equal(d->iommus[2].pci_bus, -1); /* the machine's SMMUv3: still iommu2 */
    assert_int_equal(d->iommus[3].k, 3);
    assert_int_equal(d->iommus[3].accel, 1);
    assert_int_equal(d->n_hostdevs, 1); /* the USB one is none of ours */
    assert_string_equal(d->hostdevs[0].alias, "ua-gpu0");
    assert_true(d->hostdevs[0].has_guest_addr);
    assert_int_equal(d->hostdevs[0].guest_addr.bus, 4);
    smmu_xml_domain_free(d);

    /* a bare <devices> (topology --xml's output) is a domain too; the shared example parses */
    d = parse("<devices>" PORT(3, 0) "</devices>");
    assert_int_equal(d->n_ctrls, 1);
    smmu_xml_domain_free(d);
    char *x = smmu_test_read_file(SMMU_SOURCE_DIR "/tests/data/xml/valid/domain-multi-smmuv3.xml", NULL);
    d = parse(x);
    assert_int_equal(d->n_ctrls, 5);
    assert_int_equal(smmu_domain_find_ctrl(d, 22)->port, 0xa8);
    assert_int_equal(d->n_iommus, 2);
    smmu_xml_domain_free(d);
    free(x);
}

static void test_parse_bad(void **state)
{
    static const struct {
        const char *xml, *msg;
    } bad[] = {
        {"", "vm.xml: empty input: expected a libvirt <domain>"},
        {"not xml at all", "vm.xml:1: not well-formed XML"},
        {"<domain><devices>", "vm.xml:1: not well-formed XML"},
        {"<hostdev type='pci'/>", "vm.xml:1: expected a libvirt <domain> (or its <devices>), found <hostdev>"},
        {"<foo/>", "found <foo>"},
        {"<domain>\n<devices>\n<controller type='pci' model='pcie-root-port'/></devices></domain>",
         "vm.xml:3: <controller type='pci'> has no index="},
        {"<domain><devices>\n\n<controller type='pci' index='3'/></devices></domain>",
         "vm.xml:3: <controller type='pci' index='3'> has no model="},
        {"<domain><devices><controller type='pci' index='x1' model='pcie-root-port'/></devices></domain>",
         "<controller index='x1'>: not a number"},
        {"<domain><devices><controller type='pci' index='99999999999999999999' model='pcie-root-port'/></devices>"
         "</domain>", "out of range (0-255)"},
        {"<domain><devices><controller type='pci' index='1' model='pcie-expander-bus'/></devices></domain>",
         "pcie-expander-bus index 1 has no <target busNr=…/>"},
        {"<domain><devices><controller type='pci' index='1' model='pcie-expander-bus'><target busNr='255'/>"
         "</controller></devices></domain>", "<target busNr='255'>: out of range (1-254)"},
        {"<domain><devices><controller type='pci' index='1' model='pcie-expander-bus'><target busNr='9'><node>-1"
         "</node></target></controller></devices></domain>", "<node>-1</node>: not a NUMA node number"},
        {"<domain><devices><controller type='pci' index='2' model='pcie-root-port'/>\n"
         "<controller type='pci' index='2' model='pcie-root-port'/></devices></domain>",
         "vm.xml:2: two PCI controllers with index 2 (the first at line 1)"},
        {"<domain><devices><controller type='pci' index='0' model='pcie-root-port'/></devices></domain>",
         "index 0 is the pcie-root"},
        {"<domain><devices><controller type='pci' index='3' model='pcie-root-port'><target hotplug='maybe'/>"
         "</controller></devices></domain>", "<target hotplug='maybe'>: expected 'on' or 'off'"},
        {"<domain><devices><iommu/></devices></domain>", "<iommu> has no model="},
        {"<domain><devices><iommu model='smmuv3'><driver pciBus='1' accel='yes'/></iommu></devices></domain>",
         "<driver accel='yes'>: expected 'on' or 'off'"},
        {"<domain><devices><iommu model='smmuv3'><driver pciBus='-1'/></iommu></devices></domain>",
         "<driver pciBus='-1'>: not a number"},
        {"<domain><devices><hostdev mode='subsystem' type='pci'><source/></hostdev></devices></domain>",
         "<source> has no <address"},
        {"<domain><iommufd enabled='sure'/></domain>", "<iommufd enabled='sure'>: expected 'yes' or 'no'"},
        /* entity tricks: no DTD at all, so no expansion and no external entity; an undefined entity is an error */
        {"<!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>\n<domain><name>&b;</name>"
         "</domain>", "vm.xml:1: DOCTYPE declarations are not accepted"},
        {"<!DOCTYPE domain SYSTEM 'http://example.invalid/x.dtd'><domain/>", "DOCTYPE declarations are not accepted"},
        {"<?xml version='1.0'?>\n<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domain>&x;</domain>",
         "DOCTYPE declarations are not accepted"},
        {"<domain>\n<name>&xxe;</name></domain>", "vm.xml:2: not well-formed XML: Entity 'xxe' not defined"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct smmu_error err = SMMU_ERROR_INIT;
        struct smmu_domain *d = (void *)1;
        int r = smmu_xml_domain(bad[i].xml, strlen(bad[i].xml), "vm.xml", &d, &err);
        if (r != -EINVAL)
            fail_msg("case %zu (%s): returned %d, want -EINVAL", i, bad[i].xml, r);
        assert_null(d);
        assert_contains(err.message, bad[i].msg);
    }
}

/* Huge: more than SMMU_DOMAIN_MAX controllers (a message, not memory use), and a file over 16 MiB (-EFBIG,
 * named by path before anything is parsed). */
static void test_parse_huge(void **state)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_domain *d = NULL;
    size_t cap = 64u << 20, len = 0;
    char *x = malloc(cap);
    (void)state;
    len += (size_t)sprintf(x + len, "<domain><devices>\n");
    for (int i = 0; i <= SMMU_DOMAIN_MAX; i++)
        len += (size_t)sprintf(x + len, "<iommu model='smmuv3'><driver pciBus='%d'/></iommu>\n", i % 200);
    len += (size_t)sprintf(x + len, "</devices></domain>\n");
    assert_int_equal(smmu_xml_domain(x, len, "big.xml", &d, &err), -EINVAL);
    assert_contains(err.message, "big.xml:1026: more than 1024 <iommu> elements");

    char *dir = smmu_test_mkdtemp("domain-huge"), path[512];
    snprintf(path, sizeof(path), "%s/huge.xml", dir);
    memset(x, ' ', 17u << 20);
    memcpy(x, "<domain>", 8);
    memcpy(x + (17u << 20) - 9, "</domain>", 9);
    FILE *f = fopen(path, "w");
    assert_int_equal(fwrite(x, 1, 17u << 20, f), 17u << 20);
    fclose(f);
    assert_int_equal(smmu_xml_domain_file(path, &d, &err), -EFBIG);
    assert_contains(err.message, path);
    assert_contains(err.message, "too large for a domain XML file");
    snprintf(path, sizeof(path), "%s/missing.xml", dir);
    assert_int_equal(smmu_xml_domain_file(path, &d, &err), -ENOENT);
    assert_contains(err.message, "missing.xml: cannot read");
    smmu_test_rmtree(dir);
    free(dir);
    free(x);
}

/* ---------------------------------------------------------------- the cross-check */

static void test_check_agrees(void **state)
{
    struct vm v;
    struct smmu_domain_issue *is;
    size_t n;
    (void)state;
    vm_init(&v);
    assert_int_equal(check(GOOD "</devices></domain>", &v.t, &is, &n), 0);
    assert_int_equal(n, 0);
    free(is);
    /* libvirt fills index gaps with root ports on pcie.0: a live pci.8 on pcie.0 is expected when the domain
     * goes up to pci.9; hostdevs not attached yet are no disagreement; the machine SMMU is a note */
    struct smmu_rootport ports[6];
    memcpy(ports, v.ports, sizeof(v.ports));
    ports[5] = ports[4];
    snprintf(ports[5].id, sizeof(ports[5].id), "pci.8");
    v.t.ports = ports;
    v.t.n_ports = 6;
    assert_int_equal(check(GOOD PORT(9, 0)
                           "    <iommu model='smmuv3'/>\n"
                           "    <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='1' slot='0' "
                           "function='0'/></source><alias name='ua-gpu9'/></hostdev>\n</devices></domain>",
                           &v.t, &is, &n), 1); /* pci.9 itself is missing */
    assert_int_equal(n, 2);
    assert_contains(is[0].message, "root port pci.9 to libvirt: the VM has no pci.9");
    assert_true(is[1].note);
    assert_string_equal(is[1].kind, "machine-smmu");
    free(is);
}

static void test_check_disagreements(void **state)
{
    struct vm v;
    struct smmu_domain_issue *is;
    size_t n;
    (void)state;
    vm_init(&v);
    /* what the domain says differently: busNr, NUMA, a port behind the other vSMMU, chassis, the vSMMUs' buses
     * swapped, accel, a pxb and a port the VM lacks; the VM's pci.6 and pci.7 the domain lacks */
    const char *xml =
        "<domain><devices>\n"
        "<controller type='pci' index='1' model='pcie-expander-bus'><target busNr='250'><node>0</node></target></controller>\n"
        "<controller type='pci' index='2' model='pcie-expander-bus'><target busNr='248'/></controller>\n"
        "<controller type='pci' index='3' model='pcie-root-port'><target chassis='3' port='0x3'/><address type='pci' bus='2' slot='0'/></controller>\n"
        "<controller type='pci' index='4' model='pcie-root-port'><target chassis='9' port='0x4'/><address type='pci' bus='1' slot='1'/></controller>\n"
        "<controller type='pci' index='5' model='pcie-root-port'><target chassis='5' port='0x5' hotplug='off'/><address type='pci' bus='2'/></controller>\n"
        "<controller type='pci' index='8' model='pcie-expander-bus'><target busNr='200'/></controller>\n"
        "<controller type='pci' index='9' model='pcie-root-port'><address type='pci' bus='8'/></controller>\n"
        "<iommu model='smmuv3'><driver pciBus='2'/></iommu>\n"
        "<iommu model='smmuv3'><driver pciBus='1' accel='on'/></iommu>\n"
        "<iommu model='smmuv3'><driver pciBus='8'/></iommu>\n"
        "</devices></domain>";
    size_t nd = check(xml, &v.t, &is, &n);
    static const char *const want[] = {
        "pxb-pcie pci.1: busNr 250 in the domain, bus_nr 252 in the VM",
        "pxb-pcie pci.2: no <node> in the domain, numa_node 1 in the VM",
        "root port pci.3: on pci.2 (behind iommu0) in the domain, on pci.1 (behind vSMMU iommu0) in the VM",
        "root port pci.4: chassis 9 port 0x4 in the domain, chassis 4 port 0x4 in the VM",
        "root port pci.5: hotplug off in the domain, on in the VM",
        "pcie-expander-bus index 8 (busNr 200) is pxb-pcie pci.8 to libvirt: the VM has no pci.8",
        "pcie-root-port index 9 is root port pci.9 to libvirt: the VM has no pci.9",
        "the VM has root port pci.6 on pci.2 (behind vSMMU iommu1) that the domain does not define",
        "iommu0: pciBus 2 (pci.2) in the domain, primary-bus pci.1 in the VM",
        "iommu1: pciBus 1 (pci.1) in the domain, primary-bus pci.2 in the VM",
        "iommu1: accel on in the domain, off in the VM",
        "<iommu> number 2 (pciBus 8) is arm-smmuv3 iommu2 to libvirt: the VM has no iommu2",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = strstr(is[k].message, want[i]) != NULL;
        if (!found) {
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, "  [%s] line %ld: %s\n", is[k].kind, is[k].line, is[k].message);
            fail_msg("missing disagreement: %s", want[i]);
        }
    }
    /* pci.7 on pcie.0 is below the highest index (9): libvirt's filler, not reported */
    for (size_t k = 0; k < n; k++)
        assert_null(strstr(is[k].message, "pci.7"));
    assert_int_equal(nd, sizeof(want) / sizeof(want[0]));
    assert_int_equal(is[0].line, 2);
    assert_string_equal(is[0].kind, "bus-nr");
    json_t *j = smmu_domain_check_json("vm.xml", is, n);
    assert_true(json_is_false(json_object_get(j, "agrees")));
    assert_int_equal(json_array_size(json_object_get(j, "disagreements")), nd);
    json_decref(j);
    free(is);

    /* an extra pxb and vSMMU in the VM, a hostdev attached with another host / on another port */
    vm_init(&v);
    v.vfio[0] = (struct smmu_vfio_dev){.id = "ua-gpu0", .host = "0009:02:00.0", .rootport = 0};
    v.t.n_vfio = 1;
    nd = check(DOMAIN_HEAD PORT(3, 1) PORT(4, 1) PORT(5, 2) PORT(6, 2) PORT(7, 0)
               "    <iommu model='smmuv3'><driver pciBus='1'/></iommu>\n"
               "    <hostdev mode='subsystem' type='pci'><source><address domain='9' bus='1' slot='0' function='0'/>"
               "</source><alias name='ua-gpu0'/><address type='pci' bus='4'/></hostdev>\n</devices></domain>",
               &v.t, &is, &n);
    assert_int_equal(nd, 3);
    assert_contains(is[0].message, "the VM has vSMMU iommu1 on pci.2 that no <iommu> of the domain is");
    assert_contains(is[1].message, "hostdev ua-gpu0: host 0009:01:00.0 in the domain, 0009:02:00.0 in the VM");
    assert_contains(is[2].message, "hostdev ua-gpu0: on pci.4 in the domain, on pci.3 in the VM");
    free(is);
    v.t.n_pxbs = 2;
    memcpy(v.pxbs[1].id, "pcie.9", 7);
    v.vs[1].pxb_id[0] = 0;
    nd = check(GOOD "</devices></domain>", &v.t, &is, &n);
    bool extra = false;
    for (size_t k = 0; k < n; k++)
        extra |= strstr(is[k].message, "the VM has pxb-pcie pcie.9 (bus_nr 248, with a vSMMU) that the domain does not define") != NULL;
    assert_true(extra);
    free(is);
}

/* ---------------------------------------------------------------- the planner with a domain */

static struct smmu_host_dev hostdev(const char *bdf, const char *smmu, int numa)
{
    struct smmu_host_dev h;
    memset(&h, 0, sizeof(h));
    snprintf(h.bdf, sizeof(h.bdf), "%s", bdf);
    snprintf(h.smmu, sizeof(h.smmu), "%s", smmu);
    snprintf(h.driver, sizeof(h.driver), "vfio-pci");
    snprintf(h.cdev, sizeof(h.cdev), "vfio%c", bdf[6]);
    h.iommu_group = bdf[6] - '0';
    h.numa_node = numa;
    return h;
}

static int plan(const struct smmu_topology *t, const char *xml, const struct smmu_host_dev *h, size_t n, bool force,
                struct smmu_plan **p, struct smmu_error *err)
{
    struct smmu_plan_opts o = SMMU_PLAN_OPTS_INIT;
    struct smmu_domain *d = parse(xml);
    o.domain = d;
    o.domain_file = "vm.xml";
    o.force = force;
    int r = smmu_plan_attach(t, h, n, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &o, p, err);
    smmu_xml_domain_free(d);
    return r;
}

#define HOSTDEV(bdfbus, alias, guestbus) \
    "<hostdev mode='subsystem' type='pci'><source><address domain='9' bus='" bdfbus "' slot='0' function='0'/>" \
    "</source>" alias guestbus "</hostdev>\n"

static void test_plan_domain(void **state)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_plan *p = NULL;
    struct vm v;
    (void)state;
    vm_init(&v);
    struct smmu_host_dev h[2] = {hostdev("0009:01:00.0", SMMU_A, 0), hostdev("0009:02:00.0", SMMU_B, 1)};

    /* the guest address pins device 2 to pci.6 (not pci.5, the lowest), device 1 is free: pci.3; the aliases
     * become the QEMU ids; the pinned one is placed first but the plan keeps request order */
    assert_int_equal(plan(&v.t, GOOD HOSTDEV("1", "<alias name='ua-gpu0'/>", "")
                          HOSTDEV("2", "<alias name='ua-nic'/>", "<address type='pci' bus='0x06' slot='0'/>")
                          "</devices></domain>", h, 2, false, &p, &err), 0);
    assert_string_equal(p->placements[0].port_id, "pci.3");
    assert_string_equal(p->placements[0].device_id, "ua-gpu0");
    assert_string_equal(p->placements[1].port_id, "pci.6");
    assert_string_equal(p->placements[1].device_id, "ua-nic");
    assert_contains(p->placements[1].reason, "the guest address in vm.xml line 19 (bus 0x06: root port pci.6); "
                                             "unbound vSMMU iommu1, now bound to " SMMU_B);
    char *args = json_dumps(p->steps[p->n_steps - 1].args, JSON_COMPACT);
    assert_contains(args, "\"id\":\"ua-nic\"");
    free(args);
    smmu_plan_free(p);

    /* a disagreement refuses the plan, listing it; --force goes on */
    const char *wrong = DOMAIN_HEAD PORT(3, 2) PORT(4, 1) PORT(5, 2) PORT(6, 2) PORT(7, 0) IOMMUS "</devices></domain>";
    assert_int_equal(plan(&v.t, wrong, h, 1, false, &p, &err), -EINVAL);
    assert_null(p);
    assert_contains(err.message, "vm.xml disagrees with the live VM (1): 1) line 11: root port pci.3: on pci.2");
    assert_contains(err.message, "--force to go on anyway");
    assert_int_equal(plan(&v.t, wrong, h, 1, true, &p, &err), 0);
    smmu_plan_free(p);

    /* constraints that break SMMU matching are refused with the reason */
    static const struct {
        const char *guest, *msg;
    } bad[] = {
        {"<address type='pci' bus='0x07' slot='0'/>", "names root port pci.7, which sits behind no vSMMU: the device "
                                                      "would bypass the vSMMU"},
        {"<address type='pci' bus='0x01' slot='0'/>", "names controller index 1, a pcie-expander-bus (line 5), not a "
                                                      "pcie-root-port"},
        {"<address type='pci' bus='0x04' slot='0x01'/>", "slot 0x01 function 0 on bus 0x04: a root port has only slot 0"},
        {"<address type='pci' bus='0x0b' slot='0'/>", "names bus 0x0b, but the domain has no controller with index 11"},
        {"<address type='pci' bus='0x00' slot='0x05'/>", "is on bus 0x00, pcie.0 itself"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char xml[4096];
        snprintf(xml, sizeof(xml), GOOD HOSTDEV("1", "", "%s") "</devices></domain>", bad[i].guest);
        assert_int_equal(plan(&v.t, xml, h, 1, false, &p, &err), -EINVAL);
        assert_contains(err.message, bad[i].msg);
    }
    /* both devices behind iommu1: the second breaks the binding the first makes */
    assert_int_equal(plan(&v.t, GOOD HOSTDEV("1", "", "<address type='pci' bus='0x05'/>")
                          HOSTDEV("2", "", "<address type='pci' bus='0x06'/>") "</devices></domain>",
                          (struct smmu_host_dev[]){h[1], h[0]}, 2, false, &p, &err), -EINVAL);
    assert_contains(err.message, "0009:01:00.0 (host SMMU " SMMU_A "): the guest address in vm.xml line 18");
    assert_contains(err.message, "names root port pci.5, behind vSMMU iommu1 bound to " SMMU_B " by 0009:02:00.0 in "
                                 "this request (--allow-mismatch would allow it");
    /* the pinned port occupied */
    v.ports[3].occupant_id[0] = 'x';
    assert_int_equal(plan(&v.t, GOOD HOSTDEV("2", "", "<address type='pci' bus='0x06'/>") "</devices></domain>",
                          &h[1], 1, false, &p, &err), -EINVAL);
    assert_contains(err.message, "names root port pci.6, which is not free (x)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_huge),
        cmocka_unit_test(test_check_agrees),
        cmocka_unit_test(test_check_disagreements),
        cmocka_unit_test(test_plan_domain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
