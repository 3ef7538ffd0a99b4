/* smmuctl/libvirt_xml.h — libvirt domain XML out (DESIGN §9): the one writer of `layout --format xml` and
 * `topology --xml`.
 *
 * A small model of the libvirt <devices> elements smmuctl speaks — pcie-expander-bus (pxb-pcie) and
 * pcie-root-port controllers, <iommu model='smmuv3'> elements and vfio <hostdev>s — and its renderer. layout
 * fills the model from host facts (smmu_layout_xml), topology from a live VM (smmu_lvxml_from_topology).
 * libvirt's id rules (shared/libvirt/README.md) decide the model: controller index N is QEMU id pci.N, the
 * K-th <iommu> is iommuK, a hostdev keeps a user alias "ua-…" as its QEMU id.
 *
 * Pure: no I/O. The caller owns the model (smmu_lvxml_free) and the rendered text (free).
 */
#ifndef SMMUCTL_LIBVIRT_XML_H
#define SMMUCTL_LIBVIRT_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "smmuctl/bdf.h"
#include "smmuctl/error.h"
#include "smmuctl/topology.h"

#ifdef __cplusplus
extern "C" {
#endif

struct smmu_lvxml_ctrl {
    int index;                /* libvirt controller index: QEMU id "pci.<index>" */
    bool pxb;                 /* pcie-expander-bus (pxb-pcie); else pcie-root-port */
    int bus_nr, numa_node;    /* pxb: <target busNr>, <node> (-1: none) */
    int parent;               /* the controller index of the bus it sits on (0 = pcie.0) */
    int slot;                 /* slot on that bus; -1: no <address> (pxb only: libvirt picks one on pcie.0) */
    int chassis, port;        /* root port <target chassis port> */
    bool no_hotplug;          /* root port <target hotplug='off'> */
    uint64_t mem_reserve;     /* root port memReserve (bytes; written in KiB); 0: none */
    uint64_t pref64_reserve;  /* root port pref64-reserve (bytes) through <qemu:override>; 0: none */
    char comment[256];        /* a comment line before the element, "" for none */
};

struct smmu_lvxml_iommu {
    int pci_bus;              /* <driver pciBus>: the pxb's controller index */
    bool accel;
};

struct smmu_lvxml_hostdev {
    char bdf[SMMU_BDF_LEN + 1]; /* host device */
    char alias[SMMU_ID_LEN];    /* "ua-…" */
    int bus;                    /* controller index of its root port (guest address bus, slot 0), -1: none */
    bool iommufd;               /* <driver iommufd='yes'/> (else <driver name='vfio'/>) */
};

struct smmu_lvxml {
    char *header;             /* the leading comment's text (malloc'ed, may be NULL) */
    struct smmu_lvxml_ctrl *ctrls;       size_t n_ctrls;     /* pxbs first, then root ports */
    struct smmu_lvxml_iommu *iommus;     size_t n_iommus;    /* in libvirt's order: the K-th is iommuK */
    struct smmu_lvxml_hostdev *hostdevs; size_t n_hostdevs;
    char **notes;             size_t n_notes;  /* comments after <devices> opens (renames, what is left out) */
};

void smmu_lvxml_free(struct smmu_lvxml *m);   /* frees the members, not m */

/* Render: the header comment, <devices> with notes, controllers, iommus and hostdevs, </devices>, then a
 * <qemu:override> block for every root port with pref64_reserve (libvirt has no element for it). Malloc'ed;
 * NULL on out of memory. */
char *smmu_lvxml_render(const struct smmu_lvxml *m);

/* libvirt's user alias for a QEMU id: the id itself when it already is one ("ua-" and only letters, digits,
 * '_' and '-', which libvirt requires), else "ua-" + id with every other character made '-'. */
void smmu_lvxml_alias(const char *id, char *out, size_t n);

/* The live VM as the model: every pxb-pcie (busNr, NUMA node, slot on pcie.0), every root port with an id
 * (chassis/port, the bus it sits on, slot, hotplug, windows), one <iommu> per vSMMU on its pxb, and the vfio-pci
 * devices on those ports with a known host address. Controller indexes: the VM's own when every pxb and root
 * port is already named pci.N with N = 1..M (a VM libvirt or `layout` made); else they are renumbered densely
 * (libvirt fills gaps in the indexes with extra root ports, which would change the topology), pxbs first, and
 * each rename is noted. <iommu>s follow iommuK ids when the vSMMUs are named iommu0..n-1, else QEMU's
 * identifier order. known (may be NULL) gives the hosts of devices QOM shows without one (passed by fd: the
 * journal's devices). What cannot be described (anonymous devices, a port on another kind of bus, a device
 * passed by fd whose host nobody knows) is left out with a note. Returns 0, -ENOMEM (err set). */
int smmu_lvxml_from_topology(const struct smmu_topology *t, const struct smmu_id_host *known, size_t n_known,
                             struct smmu_lvxml *out, struct smmu_error *err);

#ifdef __cplusplus
}
#endif
#endif
