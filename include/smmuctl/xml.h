/* smmuctl/xml.h — libvirt <hostdev> XML in (DESIGN §2 "DEV = … @FILE", shared/libvirt/README.md).
 *
 * Accepts what `virsh attach-device` and a domain definition hold: one or more
 *   <hostdev mode='subsystem' type='pci' managed='no|yes'>
 *     <driver [name='vfio'] [iommufd='yes|no']/>
 *     <source><address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/></source>
 *     [<alias name='ua-…'/>] [<address type='pci' domain=… bus=… slot=… function=…/>]
 *   </hostdev>
 * bare (several bare ones in a row are fine), as children of <devices>, or inside <domain><devices>, where a
 * domain-level <iommufd enabled='yes|no'/> gives the default that a hostdev's own driver iommufd= overrides.
 * Numbers are read as libvirt reads them (strtoul base 0: 0x… hex, 0… octal, else decimal).
 *
 * Safety: no DTD or DOCTYPE is accepted (so no external entities, no XXE, no entity expansion bombs), nothing
 * is fetched from the network, and libxml2 never prints: its errors become the smmu_error message.
 *
 * Contracts: smmu_xml_hostdevs parses memory (no I/O); smmu_xml_hostdevs_file reads one local file (blocks on
 * that read only). Both return 0 with *out (caller frees with smmu_xml_hostdevs_free) and *n, or a negative
 * errno (-EINVAL bad XML or content, with file:line; -EFBIG too large; the open/read errno for the file;
 * -ENOMEM) and *out NULL.
 */
#ifndef SMMUCTL_XML_H
#define SMMUCTL_XML_H

#include <stdbool.h>
#include <stddef.h>
#include "smmuctl/error.h"
#include "smmuctl/bdf.h"

#ifdef __cplusplus
extern "C" {
#endif

enum smmu_xml_iommufd {
    SMMU_XML_IOMMUFD_DEFAULT = 0,   /* neither the hostdev nor the domain says */
    SMMU_XML_IOMMUFD_YES,
    SMMU_XML_IOMMUFD_NO,
};

struct smmu_xml_pci_addr {
    unsigned domain, bus, slot, function;
};

struct smmu_xml_hostdev {
    char bdf[SMMU_BDF_LEN + 1];         /* host device from <source><address>, canonical "dddd:bb:ss.f" */
    bool managed;                       /* managed='yes' (smmuctl still requires vfio-pci: it never rebinds) */
    char alias[128];                    /* user alias "ua-…", "" when absent or not a user alias (libvirt
                                           drops aliases not starting with "ua-") */
    enum smmu_xml_iommufd iommufd;      /* effective: the hostdev's <driver iommufd>, else the domain's
                                           <iommufd enabled>, else DEFAULT */
    bool has_guest_addr;                /* a guest <address type='pci'> other than all-zero (= "pick one") */
    struct smmu_xml_pci_addr guest_addr;
    long line;                          /* line of the <hostdev> element, for messages */
};

/* Parse len bytes of XML. source_name names the input in messages ("vm1-gpu.xml"; NULL = "<xml>").
 * Success: 0, *out = array of *n ≥ 1 hostdevs in document order (caller frees with smmu_xml_hostdevs_free).
 * Failure: -EINVAL with err->message "<source_name>:<line>: what is wrong" — not well-formed XML, a DOCTYPE,
 * no <hostdev>, a hostdev that is not mode='subsystem' type='pci' (usb, scsi, mdev, …), a missing or
 * out-of-range address part, a bad yes/no value, an alias QEMU cannot take as an id; -ENOMEM. *out is NULL
 * and *n 0 on failure. */
int smmu_xml_hostdevs(const char *xml, size_t len, const char *source_name, struct smmu_xml_hostdev **out,
                      size_t *n, struct smmu_error *err);

/* Read the file at path (at most 16 MiB) and parse it as above, naming it by path in messages. Errors from
 * reading: the negative errno with "<path>: cannot read: …"; -EFBIG when too large. */
int smmu_xml_hostdevs_file(const char *path, struct smmu_xml_hostdev **out, size_t *n, struct smmu_error *err);

void smmu_xml_hostdevs_free(struct smmu_xml_hostdev *v);

/* ---- a libvirt domain definition (`--domain FILE`, DESIGN §9) ----
 *
 * What smmuctl cross-checks against the live VM: the PCI controllers, the <iommu> elements and the hostdevs of
 * a <domain> (or of a bare <devices>, e.g. `topology --xml` output), with libvirt's id rules applied: controller
 * index N is QEMU id "pci.N", the K-th <iommu> in document order is "iommuK" (one without <driver pciBus> is the
 * machine's own SMMUv3 on pcie.0 and still counts), a hostdev keeps a "ua-" alias as its QEMU id. Read as
 * libvirt reads it (numbers base 0); anything smmuctl would have to guess (a PCI controller without index=, two
 * with one index) is refused with "<file>:<line>: what". Same safety as the hostdev reader (no DTD, no
 * entities, no network, 16 MiB), and at most SMMU_DOMAIN_MAX elements of each kind. */
#define SMMU_DOMAIN_MAX 1024

enum smmu_domain_ctrl_model {
    SMMU_DOMAIN_PCIE_ROOT,        /* pcie-root (index 0: pcie.0) */
    SMMU_DOMAIN_PXB,              /* pcie-expander-bus (pxb-pcie) */
    SMMU_DOMAIN_ROOT_PORT,        /* pcie-root-port */
    SMMU_DOMAIN_OTHER_PCI,        /* any other model (switches, pci-bridge, pcie-to-pci-bridge, …) */
};

struct smmu_domain_ctrl {
    int index;                    /* QEMU id "pci.<index>" (0: pcie.0) */
    enum smmu_domain_ctrl_model model;
    char model_name[48];          /* the model= text, for messages */
    int bus_nr;                   /* pxb <target busNr>, -1 absent */
    int numa_node;                /* pxb <target><node>, -1 absent */
    int chassis, port;            /* root port <target chassis port>, -1 absent */
    int hotplug;                  /* root port <target hotplug>: 1 on, 0 off, -1 absent */
    bool has_addr;                /* a PCI <address>: bus = the controller index of the bus it sits on */
    struct smmu_xml_pci_addr addr;
    long line;
};

struct smmu_domain_iommu {
    int k;                        /* position in document order: QEMU id "iommu<k>" */
    int pci_bus;                  /* <driver pciBus>, -1: none (the machine's SMMUv3 on pcie.0) */
    int accel;                    /* <driver accel>: 1 on, 0 off, -1 absent */
    char model[32];
    long line;
};

struct smmu_domain {
    char name[128];               /* <name>, "" when absent or a bare <devices> */
    struct smmu_domain_ctrl *ctrls;      size_t n_ctrls;     /* type='pci' controllers, document order */
    struct smmu_domain_iommu *iommus;    size_t n_iommus;
    struct smmu_xml_hostdev *hostdevs;   size_t n_hostdevs;  /* PCI hostdevs (none is fine here) */
};

/* Parse a domain from memory / from a file (naming it by path). 0 and *out (smmu_xml_domain_free), or -EINVAL
 * ("<source>:<line>: what": not well-formed, DOCTYPE, a root other than <domain>/<devices>, a missing or bad
 * attribute, too many elements), -EFBIG, the read errno, -ENOMEM; *out NULL then. */
int smmu_xml_domain(const char *xml, size_t len, const char *source_name, struct smmu_domain **out,
                    struct smmu_error *err);
int smmu_xml_domain_file(const char *path, struct smmu_domain **out, struct smmu_error *err);
void smmu_xml_domain_free(struct smmu_domain *d);
const struct smmu_domain_ctrl *smmu_domain_find_ctrl(const struct smmu_domain *d, int index);

#ifdef __cplusplus
}
#endif
#endif
