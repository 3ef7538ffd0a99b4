/* libvirt_xml.c — the libvirt <devices> model, its one renderer, and the live VM as that model (DESIGN §9).
 *
 * Why the renumbering rule (smmu_lvxml_from_topology): libvirt names controller index N "pci.N" and fills any
 * gap below the highest index with pcie-root-ports on pcie.0 (shared/libvirt/README.md: root ports at 21 and
 * 22 alone give 18 extra ports). A VM whose ids are pci.1..pci.M keeps them, so libvirt reproduces the same
 * QEMU ids; any other naming is renumbered densely, which keeps the topology (same buses, chassis/port,
 * parents, vSMMUs) and changes only ids.
 */
#define _GNU_SOURCE
#include "smmuctl/libvirt_xml.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smmuctl/host.h"

void smmu_lvxml_free(struct smmu_lvxml *m)
{
    if (!m)
        return;
    free(m->header);
    free(m->ctrls);
    free(m->iommus);
    free(m->hostdevs);
    for (size_t i = 0; i < m->n_notes; i++)
        free(m->notes[i]);
    free(m->notes);
    memset(m, 0, sizeof(*m));
}

/* "--" may not appear inside an XML comment: write it as "- -". */
static void lvxml_comment_text(FILE *f, const char *s)
{
    for (const char *p = s; *p; p++) {
        fputc(*p, f);
        if (*p == '-' && p[1] == '-')
            fputc(' ', f);
    }
}

static void lvxml_comment(FILE *f, const char *indent, const char *s)
{
    fprintf(f, "%s<!-- ", indent);
    lvxml_comment_text(f, s);
    fprintf(f, " -->\n");
}

char *smmu_lvxml_render(const struct smmu_lvxml *m)
{
    char *buf = NULL, sz[32];
    size_t len = 0;
    bool override = false;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    if (m->header && *m->header) {
        fprintf(f, "<!-- ");
        lvxml_comment_text(f, m->header);
        fprintf(f, " -->\n");
    }
    fprintf(f, "<devices>\n");
    for (size_t i = 0; i < m->n_notes; i++)
        lvxml_comment(f, "  ", m->notes[i]);
    for (size_t i = 0; i < m->n_ctrls; i++) {
        const struct smmu_lvxml_ctrl *c = &m->ctrls[i];
        if (c->comment[0])
            lvxml_comment(f, "  ", c->comment);
        if (c->pxb) {
            fprintf(f, "  <controller type='pci' index='%d' model='pcie-expander-bus'>\n"
                       "    <model name='pxb-pcie'/>\n", c->index);
            if (c->numa_node >= 0)
                fprintf(f, "    <target busNr='%d'>\n      <node>%d</node>\n    </target>\n", c->bus_nr, c->numa_node);
            else
                fprintf(f, "    <target busNr='%d'/>\n", c->bus_nr);
        } else {
            fprintf(f, "  <controller type='pci' index='%d' model='pcie-root-port'>\n"
                       "    <model name='pcie-root-port'/>\n"
                       "    <target chassis='%d' port='0x%x'", c->index, c->chassis, c->port);
            if (c->no_hotplug)
                fprintf(f, " hotplug='off'");
            if (c->mem_reserve)
                fprintf(f, " memReserve='%" PRIu64 "'", c->mem_reserve / 1024);
            fprintf(f, "/>\n");
            override |= c->pref64_reserve != 0;
        }
        if (c->slot >= 0)
            fprintf(f, "    <address type='pci' domain='0x0000' bus='0x%02x' slot='0x%02x' function='0x0'/>\n",
                    c->parent, c->slot);
        fprintf(f, "  </controller>\n");
    }
    for (size_t k = 0; k < m->n_iommus; k++)
        fprintf(f, "  <iommu model='smmuv3'>\n    <driver pciBus='%d'%s/>\n  </iommu>\n", m->iommus[k].pci_bus,
                m->iommus[k].accel ? " accel='on'" : "");
    for (size_t i = 0; i < m->n_hostdevs; i++) {
        const struct smmu_lvxml_hostdev *h = &m->hostdevs[i];
        const char *b = h->bdf;
        fprintf(f, "  <hostdev mode='subsystem' type='pci' managed='no'>\n"
                   "    %s\n"
                   "    <source>\n"
                   "      <address domain='0x%.4s' bus='0x%.2s' slot='0x%.2s' function='0x%c'/>\n"
                   "    </source>\n"
                   "    <alias name='%s'/>\n",
                h->iommufd ? "<driver iommufd='yes'/>" : "<driver name='vfio'/>", b, b + 5, b + 8, b[11], h->alias);
        if (h->bus >= 0)
            fprintf(f, "    <address type='pci' domain='0x0000' bus='0x%02x' slot='0x00' function='0x0'/>\n", h->bus);
        fprintf(f, "  </hostdev>\n");
    }
    fprintf(f, "</devices>\n");
    if (override) {
        fprintf(f, "<qemu:override>\n");
        for (size_t i = 0; i < m->n_ctrls; i++) {
            const struct smmu_lvxml_ctrl *c = &m->ctrls[i];
            if (c->pxb || !c->pref64_reserve)
                continue;
            smmu_host_size_str(c->pref64_reserve, sz, sizeof(sz));
            fprintf(f, "  <qemu:device alias='pci.%d'>\n    <qemu:frontend>\n"
                       "      <qemu:property name='pref64-reserve' type='unsigned' value='%" PRIu64
                       "'/> <!-- %s -->\n    </qemu:frontend>\n  </qemu:device>\n",
                    c->index, c->pref64_reserve, sz);
        }
        fprintf(f, "</qemu:override>\n");
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

void smmu_lvxml_alias(const char *id, char *out, size_t n)
{
    bool ok = !strncmp(id, "ua-", 3) && id[3];
    for (const char *p = id; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-';
    if (ok) {
        snprintf(out, n, "%s", id);
        return;
    }
    snprintf(out, n, "ua-%s", id);
    for (char *p = out + 3; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            *p = '-';
}

/* ---- the live VM as the model ---- */

static int lvxml_note(struct smmu_lvxml *m, struct smmu_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lvxml_note(struct smmu_lvxml *m, struct smmu_error *err, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL, **nv;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s || !(nv = realloc(m->notes, (m->n_notes + 1) * sizeof(*nv)))) {
        free(s);
        return smmu_error_set(err, -ENOMEM, "topology --xml: out of memory");
    }
    m->notes = nv;
    m->notes[m->n_notes++] = s;
    return 0;
}

/* N of "pci.N" (N ≥ 1, no leading zeros), else -1. */
static int lvxml_pci_index(const char *id)
{
    char *end;
    long v;
    if (strncmp(id, "pci.", 4) || !isdigit((unsigned char)id[4]) || (id[4] == '0'))
        return -1;
    v = strtol(id + 4, &end, 10);
    return (*end || v < 1 || v > 255) ? -1 : (int)v;
}

/* K of "iommuK", else -1. */
static int lvxml_iommu_k(const char *id)
{
    char *end;
    long v;
    if (strncmp(id, "iommu", 5) || !isdigit((unsigned char)id[5]) || (id[5] == '0' && id[6]))
        return -1;
    v = strtol(id + 5, &end, 10);
    return (*end || v > 1000) ? -1 : (int)v;
}

/* Order of root ports in the renumbered model: by parent (pxbs in model order, pcie.0 last), chassis, port. */
struct lvxml_port_ref {
    size_t port;     /* index into t->ports */
    int parent_rank; /* position of its parent pxb in the model, n_pxbs for pcie.0 */
};

static int lvxml_port_cmp(const void *a, const void *b, void *arg)
{
    const struct lvxml_port_ref *x = a, *y = b;
    const struct smmu_topology *t = arg;
    const struct smmu_rootport *p = &t->ports[x->port], *q = &t->ports[y->port];
    if (x->parent_rank != y->parent_rank)
        return x->parent_rank - y->parent_rank;
    if (p->chassis != q->chassis)
        return p->chassis - q->chassis;
    return p->port - q->port;
}

int smmu_lvxml_from_topology(const struct smmu_topology *t, const struct smmu_id_host *known, size_t n_known,
                             struct smmu_lvxml *m, struct smmu_error *err)
{
    size_t np = 0, nx = 0, nctrl;
    struct lvxml_port_ref *refs = NULL;
    int *pxb_index = NULL, *port_index = NULL, *pxb_order = NULL;
    bool keep = true, iommu_ids = true;
    unsigned char used[256] = {0};
    int rc = 0;

    memset(m, 0, sizeof(*m));
    pxb_index = calloc(t->n_pxbs + 1, sizeof(int));
    pxb_order = calloc(t->n_pxbs + 1, sizeof(int));
    port_index = calloc(t->n_ports + 1, sizeof(int));
    refs = calloc(t->n_ports + 1, sizeof(*refs));
    m->ctrls = calloc(t->n_pxbs + t->n_ports + 1, sizeof(*m->ctrls));
    m->iommus = calloc(t->n_vsmmus + 1, sizeof(*m->iommus));
    m->hostdevs = calloc(t->n_vfio + 1, sizeof(*m->hostdevs));
    if (!pxb_index || !pxb_order || !port_index || !refs || !m->ctrls || !m->iommus || !m->hostdevs) {
        rc = smmu_error_set(err, -ENOMEM, "topology --xml: out of memory");
        goto out;
    }

    /* pxbs in the vSMMUs' order (identifier), then those without a vSMMU in discovery order */
    for (size_t v = 0; v < t->n_vsmmus; v++)
        for (size_t x = 0; x < t->n_pxbs; x++)
            if (t->pxbs[x].id[0] && t->pxbs[x].vsmmu == (int)v)
                pxb_order[nx++] = (int)x;
    for (size_t x = 0; x < t->n_pxbs; x++) {
        if (!t->pxbs[x].id[0]) {
            if ((rc = lvxml_note(m, err, "an anonymous pxb-pcie (%s, bus_nr %d) is left out: without an id "
                                 "nothing can name its bus", t->pxbs[x].path, t->pxbs[x].bus_nr)) < 0)
                goto out;
            pxb_index[x] = -1;
            continue;
        }
        if (t->pxbs[x].vsmmu < 0)
            pxb_order[nx++] = (int)x;
    }
    /* root ports we can describe: with an id, on pcie.0 or on one of those pxbs */
    for (size_t i = 0; i < t->n_ports; i++) {
        const struct smmu_rootport *rp = &t->ports[i];
        int rank = -1;
        port_index[i] = -1;
        if (!rp->id[0]) {
            if ((rc = lvxml_note(m, err, "an anonymous root port (%s) is left out: smmuctl never uses a port "
                                 "without an id", rp->path)) < 0)
                goto out;
            continue;
        }
        if (!strcmp(rp->bus_name, "pcie.0"))
            rank = (int)nx;
        for (size_t k = 0; k < nx && rank < 0; k++)
            if (!strcmp(t->pxbs[pxb_order[k]].id, rp->bus_name))
                rank = (int)k;
        if (rank < 0) {
            if ((rc = lvxml_note(m, err, "root port %s is left out: it sits on bus %s, neither pcie.0 nor a "
                                 "pxb-pcie", rp->id, rp->bus_name)) < 0)
                goto out;
            continue;
        }
        refs[np].port = i;
        refs[np++].parent_rank = rank;
    }
    qsort_r(refs, np, sizeof(*refs), lvxml_port_cmp, (void *)t);

    /* keep the VM's pci.N ids when they are exactly 1..M */
    nctrl = nx + np;
    if (nctrl > 255) {
        rc = smmu_error_set(err, -ERANGE, "topology --xml: %zu controllers, more than libvirt's 255 PCI indexes",
                            nctrl);
        goto out;
    }
    for (size_t k = 0; k < nx && keep; k++) {
        int n = lvxml_pci_index(t->pxbs[pxb_order[k]].id);
        keep = n >= 1 && (size_t)n <= nctrl && !used[n];
        if (keep)
            used[n] = 1;
    }
    for (size_t k = 0; k < np && keep; k++) {
        int n = lvxml_pci_index(t->ports[refs[k].port].id);
        keep = n >= 1 && (size_t)n <= nctrl && !used[n];
        if (keep)
            used[n] = 1;
    }
    for (size_t k = 0; k < nx; k++)
        pxb_index[pxb_order[k]] = keep ? lvxml_pci_index(t->pxbs[pxb_order[k]].id) : (int)k + 1;
    for (size_t k = 0; k < np; k++)
        port_index[refs[k].port] = keep ? lvxml_pci_index(t->ports[refs[k].port].id) : (int)(nx + k + 1);
    if (!keep && nctrl) {
        char map[1536];
        size_t len = 0;
        map[0] = 0;
        for (size_t k = 0; k < nx && len < sizeof(map); k++)
            len += (size_t)snprintf(map + len, sizeof(map) - len, "%s%s=pci.%d", len ? " " : "",
                                    t->pxbs[pxb_order[k]].id, pxb_index[pxb_order[k]]);
        for (size_t k = 0; k < np && len < sizeof(map); k++)
            len += (size_t)snprintf(map + len, sizeof(map) - len, "%s%s=pci.%d", len ? " " : "",
                                    t->ports[refs[k].port].id, port_index[refs[k].port]);
        if ((rc = lvxml_note(m, err, "the VM's controller ids are not libvirt's pci.1..pci.%zu: renumbered "
                             "(same topology, libvirt's ids): %s", nctrl, map)) < 0)
            goto out;
    }

    /* controllers: pxbs, then root ports */
    for (size_t k = 0; k < nx; k++) {
        const struct smmu_pxb *x = &t->pxbs[pxb_order[k]];
        struct smmu_lvxml_ctrl *c = &m->ctrls[m->n_ctrls++];
        c->index = pxb_index[pxb_order[k]];
        c->pxb = true;
        c->bus_nr = x->bus_nr;
        c->numa_node = x->numa_node;
        c->parent = 0;
        c->slot = x->slot;
        if (x->vsmmu >= 0)
            snprintf(c->comment, sizeof(c->comment), "pxb-pcie %s with vSMMU %s%s", x->id,
                     t->vsmmus[x->vsmmu].id[0] ? t->vsmmus[x->vsmmu].id : t->vsmmus[x->vsmmu].path,
                     t->vsmmus[x->vsmmu].bound_smmu[0] ? "" : " (unbound)");
        else
            snprintf(c->comment, sizeof(c->comment), "pxb-pcie %s (no vSMMU on it)", x->id);
        if (x->vsmmu >= 0 && t->vsmmus[x->vsmmu].bound_smmu[0])
            snprintf(c->comment + strlen(c->comment), sizeof(c->comment) - strlen(c->comment),
                     ", bound to host SMMU %s", t->vsmmus[x->vsmmu].bound_smmu);
    }
    for (size_t k = 0; k < np; k++) {
        const struct smmu_rootport *rp = &t->ports[refs[k].port];
        struct smmu_lvxml_ctrl *c = &m->ctrls[m->n_ctrls++];
        c->index = port_index[refs[k].port];
        c->parent = refs[k].parent_rank < (int)nx ? pxb_index[pxb_order[refs[k].parent_rank]] : 0;
        c->chassis = rp->chassis;
        c->port = rp->port;
        c->no_hotplug = !rp->hotplug;
        c->mem_reserve = rp->mem_reserve.value;
        c->pref64_reserve = rp->pref64_reserve.value;
        c->slot = rp->slot;
        if (rp->occupant_path[0] && strcmp(rp->occupant_driver, "vfio-pci"))
            snprintf(c->comment, sizeof(c->comment), "root port %s holds %s %s: not a hostdev, not described here",
                     rp->id, rp->occupant_driver, rp->occupant_id[0] ? rp->occupant_id : rp->occupant_path);
    }
    /* a port whose slot QOM did not give (the qom-get fallback): the lowest slot free on its bus */
    for (size_t i = 0; i < m->n_ctrls; i++) {
        struct smmu_lvxml_ctrl *c = &m->ctrls[i];
        if (c->pxb || c->slot >= 0)
            continue;
        for (int s = c->parent ? 0 : 1; s < 32 && c->slot < 0; s++) {
            bool busy = false;
            for (size_t j = 0; j < m->n_ctrls && !busy; j++)
                busy = j != i && m->ctrls[j].parent == c->parent && m->ctrls[j].slot == s;
            if (!busy)
                c->slot = s;
        }
    }

    /* iommus: iommuK order when the vSMMUs are iommu0..n-1, else identifier order (t->vsmmus is sorted so) */
    {
        int *order = calloc(t->n_vsmmus + 1, sizeof(int));
        size_t n = 0;
        if (!order) {
            rc = smmu_error_set(err, -ENOMEM, "topology --xml: out of memory");
            goto out;
        }
        for (size_t v = 0; v < t->n_vsmmus; v++)
            order[v] = -1;
        for (size_t v = 0; v < t->n_vsmmus && iommu_ids; v++) {
            int k = lvxml_iommu_k(t->vsmmus[v].id);
            iommu_ids = k >= 0 && (size_t)k < t->n_vsmmus && order[k] < 0;
            if (iommu_ids)
                order[k] = (int)v;
        }
        if (!iommu_ids)
            for (size_t v = 0; v < t->n_vsmmus; v++)
                order[v] = (int)v;
        for (size_t k = 0; k < t->n_vsmmus; k++) {
            const struct smmu_vsmmu *s = &t->vsmmus[order[k]];
            int x = smmu_topology_find_pxb(t, s->pxb_id);
            if (x < 0 || pxb_index[x] < 0) {
                rc = lvxml_note(m, err, "vSMMU %s is left out: its primary bus %s is no pxb-pcie described here",
                                s->id[0] ? s->id : s->path, s->primary_bus);
                if (rc < 0)
                    break;
                continue;
            }
            if (!iommu_ids && s->id[0] &&
                (rc = lvxml_note(m, err, "vSMMU %s is iommu%zu to libvirt", s->id, n)) < 0)
                break;
            m->iommus[n].pci_bus = pxb_index[x];
            m->iommus[n++].accel = s->accel;
        }
        m->n_iommus = n;
        free(order);
        if (rc < 0)
            goto out;
    }

    /* hostdevs: vfio-pci devices on described root ports with a host address */
    for (size_t i = 0; i < t->n_vfio; i++) {
        const struct smmu_vfio_dev *d = &t->vfio[i];
        struct smmu_lvxml_hostdev *h;
        const char *name = d->id[0] ? d->id : d->path, *host = d->host;
        for (size_t k = 0; !host[0] && d->id[0] && k < n_known; k++)
            if (!strcmp(known[k].id, d->id))
                host = known[k].bdf;
        if (!host[0]) {
            if ((rc = lvxml_note(m, err, "vfio-pci %s is left out: passed by fd, and neither QEMU nor the journal "
                                 "knows its host address", name)) < 0)
                goto out;
            continue;
        }
        if (d->rootport < 0 || port_index[d->rootport] < 0) {
            if ((rc = lvxml_note(m, err, "vfio-pci %s (host %s) is left out: it sits on no root port described "
                                 "here", name, host)) < 0)
                goto out;
            continue;
        }
        h = &m->hostdevs[m->n_hostdevs++];
        snprintf(h->bdf, sizeof(h->bdf), "%s", host);
        smmu_lvxml_alias(d->id[0] ? d->id : "hostdev", h->alias, sizeof(h->alias));
        h->bus = port_index[d->rootport];
        h->iommufd = d->iommufd[0] != 0;
        if (strcmp(h->alias, d->id) && (rc = lvxml_note(m, err, "vfio-pci %s is %s to libvirt (libvirt keeps "
                                                         "only user aliases ua-...)", name, h->alias)) < 0)
            goto out;
        if (d->iommufd[0] && strcmp(d->iommufd, "iommufd0") &&
            (rc = lvxml_note(m, err, "vfio-pci %s uses iommufd object %s: libvirt names its one object iommufd0",
                             name, d->iommufd)) < 0)
            goto out;
    }
out:
    free(pxb_index);
    free(pxb_order);
    free(port_index);
    free(refs);
    if (rc < 0)
        smmu_lvxml_free(m);
    return rc;
}
