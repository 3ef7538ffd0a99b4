/* smmuctl/layout.h — the boot topology a VM needs so that given host devices can be hot-plugged (DESIGN §9).
 *
 * Pure: host facts in (struct smmu_host_dev, from smmu_host_read), a layout model out, and renderers of that
 * model as QEMU arguments and as libvirt XML. No I/O.
 *
 * Per host SMMU the devices sit behind (in order of first appearance): one pxb-pcie (libvirt controller index
 * K, id pci.K), one arm-smmuv3 on it (id iommuK-1, accel unless asked not to), and (devices + spare)
 * hot-pluggable pcie-root-ports behind it (ids pci.N) with windows sized from the devices' BARs. The ids are
 * the ones libvirt gives the same topology, so both renderings name the same QEMU devices.
 */
#ifndef SMMUCTL_LAYOUT_H
#define SMMUCTL_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "smmuctl/error.h"
#include "smmuctl/host.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SMMU_LAYOUT_MAX_VSMMU 16
#define SMMU_LAYOUT_MAX_PORTS 32 /* per vSMMU */
#define SMMU_LAYOUT_MAX_DEVS 32  /* per vSMMU */

struct smmu_layout_port {
    int index;               /* libvirt controller index; QEMU id "pci.<index>" */
    int chassis, port, slot; /* slot on the pxb's root bus */
};

struct smmu_layout_vsmmu {
    char smmu[128];          /* host SMMU, e.g. "smmu3.0x0000000016000000" */
    int pxb_index;           /* libvirt controller index of the pxb-pcie: QEMU id "pci.<pxb_index>" */
    int iommu;               /* K of QEMU id "iommuK" (libvirt: the K-th <iommu> element) */
    int bus_nr;              /* the pxb's first bus; buses bus_nr+1 .. bus_nr+nports are its ports' */
    int numa_node;           /* -1: the devices do not say */
    bool accel;
    uint64_t pref64_reserve; /* per root port, bytes; 0: no 64-bit prefetchable BAR known */
    uint64_t mem_reserve;    /* per root port, bytes; 0: leave to firmware */
    size_t ndevs, nports;
    char devs[SMMU_LAYOUT_MAX_DEVS][SMMU_BDF_LEN + 1];
    struct smmu_layout_port ports[SMMU_LAYOUT_MAX_PORTS];
};

struct smmu_layout {
    size_t n;
    struct smmu_layout_vsmmu v[SMMU_LAYOUT_MAX_VSMMU];
    char warnings[4][256];   /* e.g. a device without BAR facts */
    size_t nwarnings;
};

struct smmu_layout_req {
    bool accel;      /* arm-smmuv3 accel=on (needs KVM) */
    unsigned spare;  /* extra free ports per vSMMU */
};

/* Build the layout for devs[0..n) (facts as smmu_host_read returns them). -EINVAL: no devices, a device with
 * no host SMMU, a BDF twice, devices of one SMMU on different NUMA nodes; -ERANGE: too many SMMUs, devices or
 * ports, or the pxbs' bus ranges would not fit above pcie.0's. Messages name the device or SMMU. */
int smmu_layout_build(const struct smmu_host_dev *devs, size_t n, const struct smmu_layout_req *req,
                      struct smmu_layout *out, struct smmu_error *err);

/* The window a root port must reserve so that any one of the given BAR sets fits (see layout.c for the rule).
 * pref64: the 64-bit prefetchable BARs; mem: every other memory BAR (they go in the 32-bit window). */
void smmu_layout_windows(const struct smmu_host_bar *bars, uint64_t *pref64, uint64_t *mem);

/* QEMU arguments, one per line ("-device\npxb-pcie,…\n…"), malloc'ed; NULL on out of memory. */
char *smmu_layout_qemu(const struct smmu_layout *l);
/* libvirt XML: a commented <devices> fragment and the <qemu:override> block for pref64-reserve; malloc'ed. */
char *smmu_layout_xml(const struct smmu_layout *l);

#ifdef __cplusplus
}
#endif
#endif
