/* fuzz_domain.c — the libvirt domain reader (`--domain FILE`, src/xml/domain.c, on xml_load and the hostdev
 * reader) and what consumes its result: the cross-check with a live topology (src/plan/domain.c) and the
 * planner's domain rules (aliases as ids, guest addresses as placement constraints). Input = the file's bytes.
 *
 * Invariants (abort when broken):
 *  - failure: -EINVAL/-ENOMEM/-ERANGE-free contract — a negative errno, *out NULL, a message that names the
 *    source ("fuzz.xml" first, as "<file>:<line>: …" or "<file>: …");
 *  - success: at most SMMU_DOMAIN_MAX of each kind; PCI controller indexes unique and in 0..255, a pxb always
 *    has a busNr; <iommu> k equals its position; hostdev BDFs canonical and unique, aliases "ua-…" or "";
 *  - the cross-check succeeds on the fixed topology below, every issue has a kind and a message, and its JSON
 *    counts the same disagreements;
 *  - planning one device with the domain either succeeds (its id is the hostdev's alias when it has one, its
 *    port the guest address's pci.N when it has one) or fails with a message. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smmuctl/plan.h"
#include "smmuctl/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The VM `layout` makes for two host SMMUs (pxbs pci.1/pci.2, ports pci.3-pci.6, iommu0/iommu1), a port
 * pci.7 on pcie.0 and a vfio-pci device ua-gpu0 (host 0009:01:00.0) on pci.3. */
static void fuzz_topology(struct smmu_topology *t)
{
    static struct smmu_pxb pxbs[2] = {
        {.id = "pci.1", .bus_nr = 252, .numa_node = 0, .slot = 1, .vsmmu = 0},
        {.id = "pci.2", .bus_nr = 248, .numa_node = -1, .slot = 2, .vsmmu = 1},
    };
    static struct smmu_vsmmu vs[2] = {
        {.id = "iommu0", .identifier = 0, .pxb_id = "pci.1", .bus_nr = 252, .numa_node = 0},
        {.id = "iommu1", .identifier = 1, .pxb_id = "pci.2", .bus_nr = 248, .numa_node = -1, .accel = true},
    };
    static struct smmu_rootport ports[5] = {
        {.id = "pci.3", .bus_name = "pci.1", .chassis = 3, .port = 3, .hotplug = true, .vsmmu = 0,
         .occupant_id = "ua-gpu0", .occupant_path = "/machine/peripheral/ua-gpu0", .occupant_driver = "vfio-pci"},
        {.id = "pci.4", .bus_name = "pci.1", .chassis = 4, .port = 4, .hotplug = true, .vsmmu = 0, .slot = 1},
        {.id = "pci.5", .bus_name = "pci.2", .chassis = 5, .port = 5, .hotplug = true, .vsmmu = 1},
        {.id = "pci.6", .bus_name = "pci.2", .chassis = 6, .port = 6, .hotplug = false, .vsmmu = 1, .slot = 1},
        {.id = "pci.7", .bus_name = "pcie.0", .chassis = 7, .port = 7, .hotplug = true, .vsmmu = -1, .slot = 3},
    };
    static struct smmu_vfio_dev vfio[1] = {{.id = "ua-gpu0", .host = "0009:01:00.0", .iommufd = "iommufd0",
                                            .rootport = 0}};
    memset(t, 0, sizeof(*t));
    t->vsmmus = vs;
    t->n_vsmmus = 2;
    t->ports = ports;
    t->n_ports = 5;
    t->vfio = vfio;
    t->n_vfio = 1;
    t->pxbs = pxbs;
    t->n_pxbs = 2;
    t->iommufds = NULL;
}

static void fuzz_check_domain(const struct smmu_domain *d)
{
    if (d->n_ctrls > SMMU_DOMAIN_MAX || d->n_iommus > SMMU_DOMAIN_MAX || d->n_hostdevs > SMMU_DOMAIN_MAX)
        abort();
    for (size_t i = 0; i < d->n_ctrls; i++) {
        const struct smmu_domain_ctrl *k = &d->ctrls[i];
        if (k->index < 0 || k->index > 255 || (k->model == SMMU_DOMAIN_PXB && k->bus_nr < 1))
            abort();
        for (size_t j = 0; j < i; j++)
            if (d->ctrls[j].index == k->index)
                abort();
        if (smmu_domain_find_ctrl(d, k->index) != k)
            abort();
    }
    for (size_t k = 0; k < d->n_iommus; k++)
        if (d->iommus[k].k != (int)k || d->iommus[k].pci_bus > 255)
            abort();
    for (size_t i = 0; i < d->n_hostdevs; i++) {
        const struct smmu_xml_hostdev *h = &d->hostdevs[i];
        if (strlen(h->bdf) != 12 || (h->alias[0] && strncmp(h->alias, "ua-", 3)))
            abort();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(d->hostdevs[j].bdf, h->bdf))
                abort();
    }
}

static void fuzz_check_plan(const struct smmu_topology *t, const struct smmu_domain *d)
{
    struct smmu_plan_opts o = SMMU_PLAN_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_host_dev h;
    struct smmu_plan *p = NULL;
    memset(&h, 0, sizeof(h));
    /* the first hostdev of the domain (else a fixed one), on the host SMMU of iommu0's binding-to-be */
    snprintf(h.bdf, sizeof(h.bdf), "%s", d->n_hostdevs ? d->hostdevs[0].bdf : "0009:02:00.0");
    if (!strcmp(h.bdf, "0009:01:00.0"))
        return; /* attached already: refused before the domain matters */
    snprintf(h.smmu, sizeof(h.smmu), "smmu3.0x0000000016000000");
    snprintf(h.driver, sizeof(h.driver), "vfio-pci");
    snprintf(h.cdev, sizeof(h.cdev), "vfio1");
    h.iommu_group = 1;
    h.numa_node = 0;
    o.domain = d;
    o.domain_file = "fuzz.xml";
    o.force = true; /* past the disagreements: exercise aliases and constraints */
    if (smmu_plan_attach(t, &h, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &o, &p, &err) < 0) {
        if (p || !err.message[0])
            abort();
        return;
    }
    if (p->n_placements != 1)
        abort();
    if (d->n_hostdevs) {
        const struct smmu_xml_hostdev *x = &d->hostdevs[0];
        char want[32];
        if (x->alias[0] && strcmp(p->placements[0].device_id, x->alias))
            abort();
        snprintf(want, sizeof(want), "pci.%u", x->guest_addr.bus);
        if (x->has_guest_addr && strcmp(p->placements[0].port_id, want))
            abort();
    }
    smmu_plan_free(p);
    o.force = false;
    p = NULL;
    if (smmu_plan_attach(t, &h, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &o, &p, &err) == 0)
        smmu_plan_free(p);
    else if (p || !err.message[0])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_domain *d = (void *)1;
    struct smmu_domain_issue *is = NULL;
    struct smmu_topology t;
    size_t n = 0, nd = 0;
    int r;

    r = smmu_xml_domain((const char *)data, size, "fuzz.xml", &d, &err);
    if (r < 0) {
        if (d || (r != -EINVAL && r != -ENOMEM) || strncmp(err.message, "fuzz.xml", 8) ||
            (err.message[8] != ':' && err.message[8] != 0))
            abort();
        return 0;
    }
    if (r != 0 || !d)
        abort();
    fuzz_check_domain(d);
    fuzz_topology(&t);
    if (smmu_domain_check(d, &t, &is, &n, &err) < 0)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (!is[i].kind[0] || !is[i].message[0])
            abort();
        nd += !is[i].note;
    }
    if (nd != smmu_domain_disagreements(is, n))
        abort();
    json_t *j = smmu_domain_check_json("fuzz.xml", is, n);
    if (!j || json_array_size(json_object_get(j, "disagreements")) != nd ||
        json_is_true(json_object_get(j, "agrees")) != (nd == 0))
        abort();
    json_decref(j);
    free(is);
    fuzz_check_plan(&t, d);
    smmu_xml_domain_free(d);
    return 0;
}
