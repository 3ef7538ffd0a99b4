/* fakesys.h — fake sysfs (and /dev) trees for tests: real directories and RELATIVE symlinks, laid out the
 * way Linux lays them out, so smmu_host_read sees exactly what it would see under /sys.
 *
 *   struct fakesys *fs = fakesys_new(NULL);              // fresh temp dir, removed by fakesys_free
 *   fakesys_add_dev(fs, &(struct fakesys_dev){
 *       .bdf = "0009:01:00.0", .smmu = "smmu3.0x0000000016000000", .driver = "vfio-pci",
 *       .group = "12", .cdev = "vfio3", .numa_node = "0", .vendor = "0x10de", .device = "0x2342" });
 *   smmu_host_read(fakesys_root(fs), "0009:01:00.0", &dev, &err);
 *   fakesys_free(fs);
 *
 * What fakesys_add_dev creates for B = dddd:bb:ss.f (paths relative to the root; every "→" is a relative
 * symlink computed from the common ancestor, as the kernel does):
 *   devices/pcidddd:00/dddd:00:00.0/B/                    the device (directly under pcidddd:00 when bb = 00)
 *       vendor, device, numa_node, resource                files, when given
 *       iommu        → devices/platform/arm-smmu-v3.K.auto/iommu/<smmu>       when .smmu
 *       driver       → bus/pci/drivers/<driver>                               when .driver
 *       iommu_group  → kernel/iommu_groups/<group>                            when .group
 *       vfio-dev/<cdev>/dev                                                   when .cdev
 *   bus/pci/devices/B                       → devices/…/B
 *   bus/pci/drivers/<driver>/B              → devices/…/B
 *   kernel/iommu_groups/<group>/devices/B   → devices/…/B
 *   class/iommu/<smmu>                      → devices/platform/arm-smmu-v3.K.auto/iommu/<smmu>
 *   devices/platform/arm-smmu-v3.K.auto/iommu/<smmu>/devices/B → devices/…/B
 * K numbers host SMMUs in the order they first appear. Devices sharing .group share one group directory.
 *
 * Every field is a string and NULL means "absent", so tests can also write garbage (.numa_node = "x",
 * .group = "abc"). To break a tree in other ways use fakesys_write / fakesys_symlink / fakesys_remove.
 * Any failure prints a message and aborts the test: these helpers never return errors.
 */
#ifndef SMMU_FAKESYS_H
#define SMMU_FAKESYS_H

struct fakesys;

struct fakesys_dev {
    const char *bdf;        /* required; any form smmu_bdf_parse accepts, stored canonical */
    const char *smmu;       /* host SMMU, e.g. "smmu3.0x0000000016000000"; NULL: no iommu link */
    const char *driver;     /* "vfio-pci", "nvidia", …; NULL: unbound */
    const char *group;      /* IOMMU group number as text, e.g. "12"; NULL: no iommu_group link */
    const char *cdev;       /* VFIO cdev, e.g. "vfio3"; NULL: no vfio-dev/ directory */
    const char *numa_node;  /* numa_node file content, e.g. "0" or "-1"; NULL: no file */
    const char *vendor;     /* vendor file content, e.g. "0x10de"; NULL: no file */
    const char *device;     /* device file content, e.g. "0x2342"; NULL: no file */
    const char *resource;   /* resource file content verbatim (FAKESYS_RESOURCE_GPU, …); NULL: no file */
};

/* Real-looking sysfs `resource` files (13 lines: BAR0-5, ROM, 6 bridge/IOV windows, as the kernel writes them).
 * GPU (Grace-Blackwell-like): BAR0 16 MiB 32-bit non-prefetchable, BAR2 128 GiB 64-bit prefetchable,
 * BAR4 32 MiB 64-bit prefetchable. NIC: BAR0 32 MiB 64-bit prefetchable, BAR2 16 KiB 64-bit prefetchable. */
extern const char FAKESYS_RESOURCE_GPU[];
extern const char FAKESYS_RESOURCE_NIC[];

/* A fake sysfs rooted at root (created if missing, left in place by fakesys_free), or, with root NULL, at a
 * fresh temporary directory that fakesys_free removes. */
struct fakesys *fakesys_new(const char *root);

/* The root directory: pass it as the sysfs root (--sysfs). */
const char *fakesys_root(const struct fakesys *fs);

/* Add one device as described above. Adding the same BDF twice aborts. */
void fakesys_add_dev(struct fakesys *fs, const struct fakesys_dev *dev);

/* Path of the device directory as reached through bus/pci/devices ("<root>/bus/pci/devices/B"); static
 * buffer, valid until the next call. */
const char *fakesys_dev_path(const struct fakesys *fs, const char *bdf);

/* Low-level edits, rel relative to the root. Parent directories are created as needed. */
void fakesys_mkdir(struct fakesys *fs, const char *rel);
void fakesys_write(struct fakesys *fs, const char *rel, const char *content);  /* create or replace a file */
void fakesys_symlink(struct fakesys *fs, const char *rel, const char *target); /* target verbatim (may dangle) */
void fakesys_symlink_rel(struct fakesys *fs, const char *rel, const char *target_rel); /* relative, like the kernel */
void fakesys_remove(struct fakesys *fs, const char *rel);                      /* rm -rf; missing is fine */

/* A /dev tree matching the fake sysfs, for fd-passing tests: <devroot>/iommu and
 * <devroot>/vfio/devices/<name> for every bus/pci/devices/B/vfio-dev/<name> present now (each device added
 * with .cdev), as empty ordinary files (created or truncated). devroot is created if missing; the caller
 * removes it. Call it again after adding devices. */
void fakesys_write_dev_tree(const struct fakesys *fs, const char *devroot);

/* Free the handle; removes the tree only when fakesys_new created it (root NULL). NULL is fine. */
void fakesys_free(struct fakesys *fs);

#endif
