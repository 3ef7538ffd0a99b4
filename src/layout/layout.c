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
    char *buf = NULL, sz[32], alias[48];
    size_t len = 0;
    bool override = false;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    fprintf(f, "<!-- smmuctl layout: put the elements of <devices> below into your domain's <devices> (libvirt\n"
               "     adds the pcie-root controller); the <qemu:override> element goes directly under <domain>,\n"
               "     which must then declare xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0': libvirt\n"
               "     has no element for a root port's pref64-reserve. The <hostdev>s cold-plug each device on a\n"
               "     root port behind its vSMMU; leave them out to hot-plug with `smmuctl attach` instead. -->\n");
    fprintf(f, "<devices>\n");
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        fprintf(f, "  <!-- host SMMU %s: %zu device(s), %zu root port(s) -->\n", v->smmu, v->ndevs, v->nports);
        fprintf(f, "  <controller type='pci' index='%d' model='pcie-expander-bus'>\n"
                   "    <model name='pxb-pcie'/>\n", v->pxb_index);
        if (v->numa_node >= 0)
            fprintf(f, "    <target busNr='%d'>\n      <node>%d</node>\n    </target>\n", v->bus_nr, v->numa_node);
        else
            fprintf(f, "    <target busNr='%d'/>\n", v->bus_nr);
        fprintf(f, "  </controller>\n");
    }
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        for (size_t j = 0; j < v->nports; j++) {
            const struct smmu_layout_port *p = &v->ports[j];
            fprintf(f, "  <controller type='pci' index='%d' model='pcie-root-port'>\n"
                       "    <model name='pcie-root-port'/>\n"
                       "    <target chassis='%d' port='0x%x'", p->index, p->chassis, p->port);
            if (v->mem_reserve)
                fprintf(f, " memReserve='%" PRIu64 "'", v->mem_reserve / 1024);
            fprintf(f, "/>\n    <address type='pci' domain='0x0000' bus='0x%02x' slot='0x%02x' function='0x0'/>\n"
                       "  </controller>\n", v->pxb_index, p->slot);
        }
    }
    for (size_t k = 0; k < l->n; k++)
        fprintf(f, "  <iommu model='smmuv3'>\n    <driver pciBus='%d'%s/>\n  </iommu>\n", l->v[k].pxb_index,
                l->v[k].accel ? " accel='on'" : "");
    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        for (size_t j = 0; j < v->ndevs; j++) {
            const char *b = v->devs[j];
            layout_alias(b, alias, sizeof(alias));
            fprintf(f, "  <hostdev mode='subsystem' type='pci' managed='no'>\n"
                       "    <driver iommufd='yes'/>\n"
                       "    <source>\n"
                       "      <address domain='0x%.4s' bus='0x%.2s' slot='0x%.2s' function='0x%c'/>\n"
                       "    </source>\n"
                       "    <alias name='%s'/>\n"
                       "    <address type='pci' domain='0x0000' bus='0x%02x' slot='0x00' function='0x0'/>\n"
                       "  </hostdev>\n",
                    b, b + 5, b + 8, b[11], alias, v->ports[j].index);
        }
    }
    fprintf(f, "</devices>\n");
    for (size_t k = 0; k < l->n; k++)
        override |= l->v[k].pref64_reserve != 0;
    if (override) {
        fprintf(f, "<qemu:override>\n");
        for (size_t k = 0; k < l->n; k++) {
            const struct smmu_layout_vsmmu *v = &l->v[k];
            if (!v->pref64_reserve)
                continue;
            smmu_host_size_str(v->pref64_reserve, sz, sizeof(sz));
            for (size_t j = 0; j < v->nports; j++)
                fprintf(f, "  <qemu:device alias='pci.%d'>\n    <qemu:frontend>\n"
                           "      <qemu:property name='pref64-reserve' type='unsigned' value='%" PRIu64
                           "'/> <!-- %s -->\n    </qemu:frontend>\n  </qemu:device>\n",
                        v->ports[j].index, v->pref64_reserve, sz);
        }
        fprintf(f, "</qemu:override>\n");
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
