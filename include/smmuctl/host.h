/* smmuctl/host.h — host device facts read from sysfs (DESIGN §3), under a configurable root.
 *
 * Reads only; decides nothing beyond "is this device usable for VFIO passthrough". Every refusal names the
 * device and the culprit, e.g. "0009:01:00.0: bound to driver nvidia, not vfio-pci (bind it to vfio-pci
 * first: echo 0009:01:00.0 > /sys/bus/pci/drivers/nvidia/unbind; …)".
 *
 * Contracts: smmu_host_read and smmu_host_probe block on sysfs only (stat, readlink, small reads, one
 * directory listing for the group); they never talk to QEMU. The rest is pure and never blocks. The caller
 * owns *out and err; nothing is allocated for it to free and no argument is kept. Returns 0 or a negative
 * errno with err (may be NULL) set: -EINVAL (BDF, odd attribute), -ENOENT, -ENOTDIR, -ENAMETOOLONG (a path
 * under sysfs_root too long), -EOVERFLOW (an attribute longer than expected), -ENOMEM, or what the system
 * call said; the checks add -ENODEV and -EBUSY as below.
 */
#ifndef SMMUCTL_HOST_H
#define SMMUCTL_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "smmuctl/bdf.h"
#include "smmuctl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One BAR as sysfs `resource` describes it (DESIGN §8). size 0: the BAR is unused (an all-zero line, or the
 * upper half of a 64-bit BAR). */
#define SMMU_HOST_NBARS 6
struct smmu_host_bar {
    uint64_t size;   /* end - start + 1; 0 when unused */
    uint64_t flags;  /* the kernel's IORESOURCE_* flags, verbatim */
    bool io;         /* IORESOURCE_IO 0x100 */
    bool mem64;      /* IORESOURCE_MEM 0x200 with IORESOURCE_MEM_64 0x100000 (else a 32-bit memory BAR) */
    bool prefetch;   /* IORESOURCE_PREFETCH 0x2000 */
};

struct smmu_host_dev {
    char bdf[SMMU_BDF_LEN + 1];  /* canonical */
    char smmu[128];              /* basename of …/iommu, e.g. "smmu3.0x0000000016000000"; "" if none */
    char driver[64];             /* basename of …/driver, "" if unbound */
    int iommu_group;             /* -1 if none */
    char cdev[32];               /* "vfio3" from …/vfio-dev/vfioM, "" if none */
    int numa_node;               /* -1 if absent or -1 */
    char vendor[8], device[8];   /* "0x10de" … ("" if absent): informational */
    char group_culprits[512];    /* other group members bound to a driver other than vfio-pci, as
                                    "0009:01:00.1 (nvidia), …"; "" when the group is viable */
    bool have_bars;              /* a `resource` file was read (bars[] is all zero otherwise) */
    struct smmu_host_bar bars[SMMU_HOST_NBARS]; /* BAR0..BAR5 from …/resource */
};

/* Parse the text of a sysfs `resource` file (len bytes, need not be NUL-terminated): one line per resource,
 * "0x<start> 0x<end> 0x<flags>" as the kernel writes it; lines 0-5 are the BARs (6 is the ROM, then bridge
 * windows: checked for shape, not kept). At least 6 lines are required. Errors (-EINVAL) name where:
 * "<path>:<line>: …" (path is only used in messages). Pure: no I/O. */
int smmu_host_parse_resource(const char *text, size_t len, const char *path, struct smmu_host_bar bars[SMMU_HOST_NBARS],
                             struct smmu_error *err);

/* "16 MiB", "128 GiB", "4 KiB", "1536 B": the largest binary unit that divides size exactly, else bytes. */
void smmu_host_size_str(uint64_t size, char *out, size_t n);

/* Is `driver` vfio-pci or one of its variant drivers (nvgrace_gpu_vfio_pci, mlx5_vfio_pci, …)? Those
 * expose the same VFIO device interface (Grace Hopper GPUs are bound to nvgrace_gpu_vfio_pci). */
bool smmu_host_driver_is_vfio(const char *driver);
/* May a driver hold ANOTHER member of the device's IOMMU group without making the group unusable?
 * VFIO drivers, pci-stub and pcieport (bridges) do, as does no driver at all (the kernel's own rule). */
bool smmu_host_driver_group_ok(const char *driver);

/* Read the facts of one device without judging them. -ENOENT "no such PCI device" if the directory is
 * missing; other sysfs errors as negative errno with the path named. bdf may be in any form smmu_bdf_parse
 * accepts (-EINVAL otherwise); sysfs_root NULL or "" means "/sys". Messages start with the canonical BDF.
 * Oddities a real sysfs never shows (dangling links, a non-numeric numa_node or group, an attribute that is a
 * directory) are errors naming the path, never guesses. On failure *out holds what was read so far. */
int smmu_host_read(const char *sysfs_root, const char *bdf, struct smmu_host_dev *out, struct smmu_error *err);

/* Pure check of facts read by smmu_host_read: has an IOMMU (-ENODEV), is bound to vfio-pci (-EBUSY, naming
 * the driver and how to rebind), its iommu group is viable (-EBUSY "group N not viable: 0009:01:00.1 (nvidia)")
 * and, when need_cdev, it has a VFIO cdev (-ENODEV). No I/O: the planner calls it. */
int smmu_host_check(const struct smmu_host_dev *dev, bool need_cdev, struct smmu_error *err);

/* smmu_host_read + smmu_host_check. */
int smmu_host_probe(const char *sysfs_root, const char *bdf, bool need_cdev, struct smmu_host_dev *out,
                    struct smmu_error *err);

#ifdef __cplusplus
}
#endif
#endif
