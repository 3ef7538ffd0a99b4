/* layout.c — the boot topology for a set of host devices (DESIGN §9): model, window sizing, renderers.
 *
 * Window sizing rule (per root port; one port holds one device, so a port's windows must fit the most
 * demanding device behind that SMMU, and spare ports get the same):
 *   A bridge forwards one prefetchable and one non-prefetchable memory window. Linux (pbus_size_mem) and EDK2
 *   size a window as the sum of the BARs it holds, aligned to the largest of them; BAR sizes are powers of two,
 *   so placing them largest first keeps each naturally aligned, and sum rounded up to a multiple of the largest
 *   BAR is exactly enough. Bridge memory windows have 1 MiB granularity, so the result is at least 1 MiB.
 *   - pref64-reserve: the 64-bit prefetchable BARs (IORESOURCE_MEM_64 | IORESOURCE_PREFETCH). Without it
 *     AAVMF/EDK2 gives a hot-plug port no prefetchable window and a 128 GiB BAR cannot be assigned.
 *   - mem-reserve: every other memory BAR (32-bit ones, prefetchable or not, and 64-bit non-prefetchable
 *     ones: the non-prefetchable window is 32-bit only). Set only when a device has such a BAR.
 *   QEMU passes both to firmware as the root port's "resource reserve" capability; they are hints of bytes.
 *   I/O BARs are not sized (GPUs and NICs for passthrough do not need I/O space).
 * Bus numbers: a pxb-pcie with bus_nr B owns B (its root bus) and B+1..B+P (one secondary bus per root port);
 * pcie.0 keeps 0..(lowest B)-1. pxbs are stacked from 255 down, so the ranges never overlap.
 */
#define _GNU_SOURCE
#include "smmuctl/layout.h"
#include "smmuctl/libvirt_xml.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1ull << 20)
#define LAYOUT_MIN_BUS_NR 64 /* pcie.0 keeps at least buses 0..63 */

static uint64_t layout_window(uint64_t sum, uint64_t largest)
{
    uint64_t w;
    if (!sum)
        return 0;
    w = (sum + largest - 1) / largest * largest;
    return w < MIB ? MIB : w;
}

void smmu_layout_windows(const struct smmu_host_bar *bars, uint64_t *pref64, uint64_t *mem)
{
    uint64_t psum = 0, pmax = 0, msum = 0, mmax = 0;

    for (int i = 0; i < SMMU_HOST_NBARS; i++) {
        const struct smmu_host_bar *b = &bars[i];
        if (!b->size || b->io)
            continue;
        if (b->mem64 && b->prefetch) {
            psum += b->size;
            pmax = b->size > pmax ? b->size : pmax;
        } else {
            msum += b->size;
            mmax = b->size > mmax ? b->size : mmax;
        }
    }
    *pref64 = layout_window(psum, pmax);
    *mem = layout_window(msum, mmax);
}

int smmu_layout_build(const struct smmu_host_dev *devs, size_t n, const struct smmu_layout_req *req,
                      struct smmu_layout *out, struct smmu_error *err)
{
    int top = 256, index;

    memset(out, 0, sizeof(*out));
    if (!n)
        return smmu_error_set(err, -EINVAL, "no devices: name at least one PCI address");
    for (size_t i = 0; i < n; i++) {
        const struct smmu_host_dev *d = &devs[i];
        struct smmu_layout_vsmmu *v = NULL;
        uint64_t p64, mem;

        if (!d->smmu[0])
            return smmu_error_set(err, -EINVAL, "%s: no host SMMU (no iommu link): it cannot go behind a vSMMU",
                                  d->bdf);
        for (size_t j = 0; j < i; j++)
            if (strcmp(devs[j].bdf, d->bdf) == 0)
                return smmu_error_set(err, -EINVAL, "%s: named twice", d->bdf);
        for (size_t k = 0; k < out->n; k++)
            if (strcmp(out->v[k].smmu, d->smmu) == 0)
                v = &out->v[k];
        if (!v) {
            if (out->n == SMMU_LAYOUT_MAX_VSMMU)
                return smmu_error_set(err, -ERANGE, "more than %d host SMMUs", SMMU_LAYOUT_MAX_VSMMU);
            v = &out->v[out->n];
            snprintf(v->smmu, sizeof(v->smmu), "%s", d->smmu);
            v->iommu = (int)out->n;
            v->pxb_index = (int)++out->n;
            v->numa_node = d->numa_node;
            v->accel = req->accel;
        } else if (v->numa_node != d->numa_node) {
            return smmu_error_set(err, -EINVAL, "%s: NUMA node %d, but %s behind the same host SMMU %s is on %d",
                                  d->bdf, d->numa_node, v->devs[0], v->smmu, v->numa_node);
        }
        if (v->ndevs == SMMU_LAYOUT_MAX_DEVS)
            return smmu_error_set(err, -ERANGE, "%s: more than %d devices behind %s", d->bdf, SMMU_LAYOUT_MAX_DEVS,
                                  v->smmu);
        snprintf(v->devs[v->ndevs++], sizeof(v->devs[0]), "%s", d->bdf);
        if (!d->have_bars && out->nwarnings < sizeof(out->warnings) / sizeof(out->warnings[0]))
            snprintf(out->warnings[out->nwarnings++], sizeof(out->warnings[0]),
                     "%s: no sysfs resource file: its BARs are unknown and do not size the windows", d->bdf);
        smmu_layout_windows(d->bars, &p64, &mem);
        v->pref64_reserve = p64 > v->pref64_reserve ? p64 : v->pref64_reserve;
        v->mem_reserve = mem > v->mem_reserve ? mem : v->mem_reserve;
    }
    index = (int)out->n + 1;
    for (size_t k = 0; k < out->n; k++) {
        struct smmu_layout_vsmmu *v = &out->v[k];
        size_t np = v->ndevs + req->spare;
        if (np > SMMU_LAYOUT_MAX_PORTS)
            return smmu_error_set(err, -ERANGE, "%s: %zu root ports asked for, at most %d per vSMMU", v->smmu, np,
                                  SMMU_LAYOUT_MAX_PORTS);
        v->nports = np;
        v->bus_nr = top - 1 - (int)np;
        top = v->bus_nr;
        if (v->bus_nr < LAYOUT_MIN_BUS_NR)
            return smmu_error_set(err, -ERANGE,
                                  "%s: bus numbers run out (pxb bus_nr %d would leave pcie.0 fewer than %d buses): "
                                  "fewer spare ports or devices",
                                  v->smmu, v->bus_nr, LAYOUT_MIN_BUS_NR);
        for (size_t j = 0; j < np; j++) {
            struct smmu_layout_port *p = &v->ports[j];
            p->index = index++;
            p->chassis = p->index;
            p->port = p->index;
            p->slot = (int)j;
        }
    }
    return 0;
}

char *smmu_layout_qemu(const struct smmu_layout *l)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        fprintf(f, "-device\npxb-pcie,id=pci.%d,bus_nr=%d,bus=pcie.0", v->pxb_index, v->bus_nr);
        if (v->numa_node >= 0)
            fprintf(f, ",numa_node=%d", v->numa_node);
        fputc('\n', f);
    }
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        for (size_t j = 0; j < v->nports; j++) {
            const struct smmu_layout_port *p = &v->ports[j];
            fprintf(f, "-device\npcie-root-port,id=pci.%d,bus=pci.%d,chassis=%d,port=%d,addr=0x%x", p->index,
                    v->pxb_index, p->chassis, p->port, p->slot);
            if (v->mem_reserve)
                fprintf(f, ",mem-reserve=%" PRIu64, v->mem_reserve);
            if (v->pref64_reserve)
                fprintf(f, ",pref64-reserve=%" PRIu64, v->pref64_reserve);
            fputc('\n', f);
        }
    }
    for (size_t k = 0; k < l->n; k++)
        fprintf(f, "-device\narm-smmuv3,primary-bus=pci.%d,id=iommu%d%s\n", l->v[k].pxb_index, l->v[k].iommu,
                l->v[k].accel ? ",accel=on" : "");
    fprintf(f, "-object\niommufd,id=iommufd0\n");
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void layout_alias(const char *bdf, char *out, size_t n)
{
    snprintf(out, n, "ua-hostdev-%.4s-%.2s-%.2s-%c", bdf, bdf + 5, bdf + 8, bdf[11]);
}

char *smmu_layout_xml(const struct smmu_layout *l)
{
    struct smmu_lvxml m = {0};
    size_t nports = 0, ndevs = 0;
    char *out = NULL;

    for (size_t k = 0; k < l->n; k++) {
        nports += l->v[k].nports;
        ndevs += l->v[k].ndevs;
    }
    m.header = strdup("smmuctl layout: put the elements of <devices> below into your domain's <devices> (libvirt\n"
                      "     adds the pcie-root controller); the <qemu:override> element goes directly under <domain>,\n"
                      "     which must then declare xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0': libvirt\n"
                      "     has no element for a root port's pref64-reserve. The <hostdev>s cold-plug each device on a\n"
                      "     root port behind its vSMMU; leave them out to hot-plug with `smmuctl attach` instead.");
    m.ctrls = calloc(l->n + nports + 1, sizeof(*m.ctrls));
    m.iommus = calloc(l->n + 1, sizeof(*m.iommus));
    m.hostdevs = calloc(ndevs + 1, sizeof(*m.hostdevs));
    if (!m.header || !m.ctrls || !m.iommus || !m.hostdevs)
        goto out;
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        struct smmu_lvxml_ctrl *c = &m.ctrls[m.n_ctrls++];
        snprintf(c->comment, sizeof(c->comment), "host SMMU %s: %zu device(s), %zu root port(s)", v->smmu, v->ndevs,
                 v->nports);
        c->index = v->pxb_index;
        c->pxb = true;
        c->bus_nr = v->bus_nr;
        c->numa_node = v->numa_node;
        c->slot = -1; /* libvirt picks its slot on pcie.0 */
    }
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        for (size_t j = 0; j < v->nports; j++) {
            struct smmu_lvxml_ctrl *c = &m.ctrls[m.n_ctrls++];
            c->index = v->ports[j].index;
            c->chassis = v->ports[j].chassis;
            c->port = v->ports[j].port;
            c->parent = v->pxb_index;
            c->slot = v->ports[j].slot;
            c->mem_reserve = v->mem_reserve;
            c->pref64_reserve = v->pref64_reserve;
        }
        m.iommus[m.n_iommus].pci_bus = v->pxb_index;
        m.iommus[m.n_iommus++].accel = v->accel;
    }
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        for (size_t j = 0; j < v->ndevs; j++) {
            struct smmu_lvxml_hostdev *h = &m.hostdevs[m.n_hostdevs++];
            snprintf(h->bdf, sizeof(h->bdf), "%s", v->devs[j]);
            layout_alias(v->devs[j], h->alias, sizeof(h->alias));
            h->bus = v->ports[j].index;
            h->iommufd = true;
        }
    }
    out = smmu_lvxml_render(&m);
out:
    smmu_lvxml_free(&m);
    return out;
}
