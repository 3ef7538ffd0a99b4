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

#ifdef __cplusplus
}
#endif
#endif
