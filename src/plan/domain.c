/* domain.c — a libvirt domain definition against the live VM (DESIGN §9 `--domain FILE`). Pure.
 *
 * Matching is by libvirt's ids, because those are the QEMU ids libvirt gives the devices it defines:
 * controller index N ↔ QEMU device pci.N, the K-th <iommu> ↔ iommuK, a hostdev's ua- alias (or, for the
 * un-aliased ones, hostdev0, hostdev1… in document order) ↔ the vfio-pci id. A live root port pci.N on pcie.0
 * that the domain does not define is expected when N lies below the domain's highest index: libvirt fills
 * index gaps with such ports. Hot-plugged devices the domain does not list are not disagreements.
 */
#include "plan_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct dom_chk {
    struct smmu_domain_issue *v;
    size_t n, cap;
    int oom;
};

static void __attribute__((format(printf, 5, 6)))
dom_issue(struct dom_chk *c, bool note, const char *kind, long line, const char *fmt, ...)
{
    va_list ap;
    if (c->oom)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        void *nv = realloc(c->v, cap * sizeof(*c->v));
        if (!nv) {
            c->oom = 1;
            return;
        }
        c->v = nv;
        c->cap = cap;
    }
    struct smmu_domain_issue *i = &c->v[c->n++];
    memset(i, 0, sizeof(*i));
    i->note = note;
    i->line = line;
    snprintf(i->kind, sizeof(i->kind), "%s", kind);
    va_start(ap, fmt);
    vsnprintf(i->message, sizeof(i->message), fmt, ap);
    va_end(ap);
}

static const char *dom_vsmmu_of_bus(const struct smmu_topology *t, const char *bus, char *buf, size_t n)
{
    for (size_t v = 0; v < t->n_vsmmus; v++)
        if (!strcmp(t->vsmmus[v].pxb_id, bus)) {
            snprintf(buf, n, "behind vSMMU %s", t->vsmmus[v].id[0] ? t->vsmmus[v].id : t->vsmmus[v].path);
            return buf;
        }
    snprintf(buf, n, "behind no vSMMU");
    return buf;
}

/* Which <iommu> of the domain sits on controller index bus (-1 none). */
static int dom_iommu_on(const struct smmu_domain *d, int bus)
{
    for (size_t k = 0; k < d->n_iommus; k++)
        if (d->iommus[k].pci_bus == bus)
            return (int)k;
    return -1;
}

static void dom_check_ctrls(const struct smmu_domain *d, const struct smmu_topology *t, struct dom_chk *c)
{
    char id[32], want_bus[32], a[96], b[96];
    for (size_t i = 0; i < d->n_ctrls; i++) {
        const struct smmu_domain_ctrl *k = &d->ctrls[i];
        snprintf(id, sizeof(id), "pci.%d", k->index);
        if (k->model == SMMU_DOMAIN_PXB) {
            int x = smmu_topology_find_pxb(t, id);
            if (x < 0) {
                dom_issue(c, false, "missing-pxb", k->line,
                          "pcie-expander-bus index %d (busNr %d) is pxb-pcie %s to libvirt: the VM has no %s%s",
                          k->index, k->bus_nr, id, id,
                          smmu_topology_find_port(t, id) >= 0 ? " pxb-pcie (it is a root port there)" : "");
                continue;
            }
            if (t->pxbs[x].bus_nr != k->bus_nr)
                dom_issue(c, false, "bus-nr", k->line, "pxb-pcie %s: busNr %d in the domain, bus_nr %d in the VM", id,
                          k->bus_nr, t->pxbs[x].bus_nr);
            if (t->pxbs[x].numa_node != k->numa_node) {
                snprintf(a, sizeof(a), k->numa_node < 0 ? "no <node>" : "NUMA node %d", k->numa_node);
                snprintf(b, sizeof(b), t->pxbs[x].numa_node < 0 ? "no numa_node" : "numa_node %d",
                         t->pxbs[x].numa_node);
                dom_issue(c, false, "numa", k->line, "pxb-pcie %s: %s in the domain, %s in the VM", id, a, b);
            }
        } else if (k->model == SMMU_DOMAIN_ROOT_PORT) {
            int p = smmu_topology_find_port(t, id), parent = k->has_addr ? (int)k->addr.bus : 0;
            const struct smmu_rootport *rp;
            if (p < 0) {
                dom_issue(c, false, "missing-root-port", k->line,
                          "pcie-root-port index %d is root port %s to libvirt: the VM has no %s", k->index, id, id);
                continue;
            }
            rp = &t->ports[p];
            if (parent)
                snprintf(want_bus, sizeof(want_bus), "pci.%d", parent);
            else
                snprintf(want_bus, sizeof(want_bus), "pcie.0");
            if (strcmp(rp->bus_name, want_bus)) {
                int kd = dom_iommu_on(d, parent);
                if (kd >= 0)
                    snprintf(a, sizeof(a), "behind iommu%d", kd);
                else
                    snprintf(a, sizeof(a), "behind no <iommu>");
                dom_issue(c, false, "root-port-bus", k->line,
                          "root port %s: on %s (%s) in the domain, on %s (%s) in the VM", id, want_bus, a, rp->bus_name,
                          dom_vsmmu_of_bus(t, rp->bus_name, b, sizeof(b)));
            }
            if ((k->chassis >= 0 && k->chassis != rp->chassis) || (k->port >= 0 && k->port != rp->port))
                dom_issue(c, false, "root-port-target", k->line,
                          "root port %s: chassis %d port 0x%x in the domain, chassis %d port 0x%x in the VM", id,
                          k->chassis >= 0 ? k->chassis : rp->chassis, (unsigned)(k->port >= 0 ? k->port : rp->port),
                          rp->chassis, (unsigned)rp->port);
            if (k->hotplug >= 0 && (k->hotplug == 1) != rp->hotplug)
                dom_issue(c, false, "hotplug", k->line, "root port %s: hotplug %s in the domain, %s in the VM", id,
                          k->hotplug ? "on" : "off", rp->hotplug ? "on" : "off");
        }
    }
}

static void dom_check_extra(const struct smmu_domain *d, const struct smmu_topology *t, struct dom_chk *c)
{
    int max_index = 0;
    char b[96];
    for (size_t i = 0; i < d->n_ctrls; i++)
        max_index = d->ctrls[i].index > max_index ? d->ctrls[i].index : max_index;
    for (size_t x = 0; x < t->n_pxbs; x++) {
        const struct smmu_pxb *p = &t->pxbs[x];
        const struct smmu_domain_ctrl *k = NULL;
        int n = -1;
        if (!strncmp(p->id, "pci.", 4))
            n = atoi(p->id + 4);
        if (n > 0)
            k = smmu_domain_find_ctrl(d, n);
        if (k && k->model == SMMU_DOMAIN_PXB)
            continue;
        if (k)
            dom_issue(c, false, "extra-pxb", k->line, "the VM has pxb-pcie %s (bus_nr %d) where the domain has a %s",
                      p->id[0] ? p->id : p->path, p->bus_nr, k->model_name);
        else
            dom_issue(c, false, "extra-pxb", 0, "the VM has pxb-pcie %s (bus_nr %d%s) that the domain does not define",
                      p->id[0] ? p->id : p->path, p->bus_nr, p->vsmmu >= 0 ? ", with a vSMMU" : "");
    }
    for (size_t i = 0; i < t->n_ports; i++) {
        const struct smmu_rootport *rp = &t->ports[i];
        const struct smmu_domain_ctrl *k = NULL;
        int n = -1;
        if (!rp->id[0])
            continue; /* anonymous: smmuctl never uses it, libvirt never makes one */
        if (!strncmp(rp->id, "pci.", 4))
            n = atoi(rp->id + 4);
        if (n > 0)
            k = smmu_domain_find_ctrl(d, n);
        if (k && k->model == SMMU_DOMAIN_ROOT_PORT)
            continue;
        if (!k && n > 0 && n < max_index && !strcmp(rp->bus_name, "pcie.0"))
            continue; /* libvirt's filler for an index gap */
        if (k)
            dom_issue(c, false, "extra-root-port", k->line, "the VM has root port %s where the domain has a %s", rp->id,
                      k->model_name);
        else
            dom_issue(c, false, "extra-root-port", 0, "the VM has root port %s on %s (%s) that the domain does not "
                      "define", rp->id, rp->bus_name, dom_vsmmu_of_bus(t, rp->bus_name, b, sizeof(b)));
    }
}

static void dom_check_iommus(const struct smmu_domain *d, const struct smmu_topology *t, struct dom_chk *c)
{
    char id[32], bus[32];
    bool *seen = calloc(t->n_vsmmus + 1, 1);
    if (!seen) {
        c->oom = 1;
        return;
    }
    for (size_t k = 0; k < d->n_iommus; k++) {
        const struct smmu_domain_iommu *m = &d->iommus[k];
        const struct smmu_domain_ctrl *ctl;
        int v;
        snprintf(id, sizeof(id), "iommu%d", m->k);
        if (strcmp(m->model, "smmuv3")) {
            dom_issue(c, true, "iommu-model", m->line, "<iommu model='%s'> (%s) is not an SMMUv3: not checked", m->model,
                      id);
            continue;
        }
        if (m->pci_bus < 0) {
            dom_issue(c, true, "machine-smmu", m->line, "<iommu> without pciBus (%s) is the machine's own SMMUv3 on "
                      "pcie.0 (-machine iommu=smmuv3), which smmuctl does not discover: not checked", id);
            continue;
        }
        ctl = smmu_domain_find_ctrl(d, m->pci_bus);
        if (m->pci_bus > 0 && (!ctl || ctl->model != SMMU_DOMAIN_PXB))
            dom_issue(c, false, "vsmmu-bus", m->line, "%s: pciBus %d is %s in the domain, not a pcie-expander-bus (libvirt "
                      "accepts it, QEMU fails at start)", id, m->pci_bus, ctl ? ctl->model_name : "no controller");
        v = smmu_topology_find_vsmmu(t, id);
        if (v < 0) {
            dom_issue(c, false, "missing-vsmmu", m->line, "<iommu> number %d (pciBus %d) is arm-smmuv3 %s to libvirt: "
                      "the VM has no %s", m->k, m->pci_bus, id, id);
            continue;
        }
        seen[v] = true;
        if (m->pci_bus)
            snprintf(bus, sizeof(bus), "pci.%d", m->pci_bus);
        else
            snprintf(bus, sizeof(bus), "pcie.0");
        if (strcmp(t->vsmmus[v].pxb_id, bus))
            dom_issue(c, false, "vsmmu-bus", m->line, "%s: pciBus %d (%s) in the domain, primary-bus %s in the VM", id,
                      m->pci_bus, bus, t->vsmmus[v].pxb_id);
        if ((m->accel == 1) != t->vsmmus[v].accel)
            dom_issue(c, false, "accel", m->line, "%s: accel %s in the domain, %s in the VM", id,
                      m->accel == 1 ? "on" : "off", t->vsmmus[v].accel ? "on" : "off");
    }
    for (size_t v = 0; v < t->n_vsmmus; v++)
        if (!seen[v])
            dom_issue(c, false, "extra-vsmmu", 0, "the VM has vSMMU %s on %s that no <iommu> of the domain is",
                      t->vsmmus[v].id[0] ? t->vsmmus[v].id : t->vsmmus[v].path, t->vsmmus[v].pxb_id);
    free(seen);
}

static void dom_check_hostdevs(const struct smmu_domain *d, const struct smmu_topology *t, struct dom_chk *c)
{
    size_t unaliased = 0;
    for (size_t i = 0; i < d->n_hostdevs; i++) {
        const struct smmu_xml_hostdev *h = &d->hostdevs[i];
        char id[SMMU_ID_LEN], port[32];
        int f;
        if (h->alias[0])
            snprintf(id, sizeof(id), "%s", h->alias);
        else
            snprintf(id, sizeof(id), "hostdev%zu", unaliased++);
        if ((f = smmu_topology_find_vfio(t, id)) < 0)
            continue; /* not attached (yet): attach's business */
        if (t->vfio[f].host[0] && strcasecmp(t->vfio[f].host, h->bdf))
            dom_issue(c, false, "hostdev", h->line, "hostdev %s: host %s in the domain, %s in the VM", id, h->bdf,
                      t->vfio[f].host);
        if (h->has_guest_addr && t->vfio[f].rootport >= 0) {
            snprintf(port, sizeof(port), "pci.%u", h->guest_addr.bus);
            if (strcmp(t->ports[t->vfio[f].rootport].id, port))
                dom_issue(c, false, "hostdev", h->line, "hostdev %s: on %s in the domain, on %s in the VM", id, port,
                          t->ports[t->vfio[f].rootport].id);
        }
    }
}

int smmu_domain_check(const struct smmu_domain *d, const struct smmu_topology *t, struct smmu_domain_issue **out,
                      size_t *n, struct smmu_error *err)
{
    struct dom_chk c = {0};
    *out = NULL;
    *n = 0;
    dom_check_ctrls(d, t, &c);
    dom_check_extra(d, t, &c);
    dom_check_iommus(d, t, &c);
    dom_check_hostdevs(d, t, &c);
    if (c.oom) {
        free(c.v);
        return smmu_error_set(err, -ENOMEM, "domain check: out of memory");
    }
    *out = c.v;
    *n = c.n;
    return 0;
}

size_t smmu_domain_disagreements(const struct smmu_domain_issue *v, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += !v[i].note;
    return k;
}

json_t *smmu_domain_check_json(const char *file, const struct smmu_domain_issue *v, size_t n)
{
    json_t *dis = json_array(), *notes = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s,s:s}", "kind", v[i].kind, "message", v[i].message);
        json_object_set_new(o, "line", v[i].line > 0 ? json_integer(v[i].line) : json_null());
        json_array_append_new(v[i].note ? notes : dis, o);
    }
    return json_pack("{s:s,s:b,s:o,s:o}", "file", file ? file : "", "agrees", json_array_size(dis) == 0,
                     "disagreements", dis, "notes", notes);
}
