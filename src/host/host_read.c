/* host_read.c — gather one PCI device's facts from sysfs (DESIGN §3) without judging them.
 *
 * Layout read, under the root (normally /sys), for B = dddd:bb:ss.f:
 *   bus/pci/devices/B/                 must exist (a symlink into devices/pci…/ on a real system)
 *   bus/pci/devices/B/iommu            → …/iommu/smmu3.0x…   basename = host SMMU
 *   bus/pci/devices/B/driver           → …/drivers/vfio-pci  basename = driver
 *   bus/pci/devices/B/iommu_group      → …/iommu_groups/N    basename = group number
 *   kernel/iommu_groups/N/devices/E    each member E, whose E/driver says whether the group is viable
 *   bus/pci/devices/B/vfio-dev/vfioM   the VFIO cdev name
 *   bus/pci/devices/B/{numa_node,vendor,device}
 *   bus/pci/devices/B/resource         BAR sizes and kinds (bar.c); optional: without it have_bars = false
 */
#include "smmuctl/host.h"
#include "sysfs_int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* Path of attribute `attr` of device bdf (attr "" = the device directory). */
static int host_dev_path(char *buf, size_t size, const char *root, const char *bdf, const char *attr,
                         struct smmu_error *err)
{
    if (sysfs_path(buf, size, root, "bus/pci/devices/%s%s%s", bdf, *attr ? "/" : "", attr) < 0)
        return smmu_error_set(err, -ENAMETOOLONG, "%s: sysfs path too long under %s", bdf, root);
    return 0;
}

/* Strict decimal int in [min, INT_MAX]. */
static bool host_parse_int(const char *s, int min, int *out)
{
    char *end;
    long v;
    if (!*s || isspace((unsigned char)*s))
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > INT_MAX)
        return false;
    *out = (int)v;
    return true;
}

/* "0x10de": the only shape the kernel writes for vendor/device. */
static bool host_is_pci_id(const char *s)
{
    if (strncmp(s, "0x", 2) != 0 || strlen(s) != 6)
        return false;
    for (int i = 2; i < 6; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int host_read_id(const char *root, const char *bdf, const char *attr, char *out, size_t size,
                        struct smmu_error *err)
{
    char path[PATH_MAX], val[32];
    bool present;
    int r;

    if ((r = host_dev_path(path, sizeof(path), root, bdf, attr, err)) < 0)
        return r;
    if ((r = sysfs_read_line(path, val, sizeof(val), &present, err)) < 0)
        return r;
    if (!present)
        return 0;
    if (!host_is_pci_id(val))
        return smmu_error_set(err, -EINVAL, "%s: '%s' is not a PCI id (expected 0x followed by 4 hex digits)",
                              path, val);
    for (char *p = val; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    snprintf(out, size, "%s", val);
    return 0;
}

static int host_read_numa(const char *root, const char *bdf, int *out, struct smmu_error *err)
{
    char path[PATH_MAX], val[32];
    bool present;
    int r;

    *out = -1;
    if ((r = host_dev_path(path, sizeof(path), root, bdf, "numa_node", err)) < 0)
        return r;
    if ((r = sysfs_read_line(path, val, sizeof(val), &present, err)) < 0)
        return r;
    if (present && !host_parse_int(val, -1, out))
        return smmu_error_set(err, -EINVAL, "%s: '%s' is not a NUMA node number (expected -1 or a node >= 0)",
                              path, val);
    return 0;
}

/* The first vfioM entry of …/vfio-dev/, "" when there is none (kernel without VFIO cdev support). */
static int host_read_cdev(const char *root, const char *bdf, char *out, size_t size, struct smmu_error *err)
{
    char path[PATH_MAX], **names;
    size_t n;
    bool present;
    int r;

    out[0] = 0;
    if ((r = host_dev_path(path, sizeof(path), root, bdf, "vfio-dev", err)) < 0)
        return r;
    if ((r = sysfs_list_dir(path, &names, &n, &present, err)) < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        const char *s = names[i];
        if (strncmp(s, "vfio", 4) == 0 && s[4] && strspn(s + 4, "0123456789") == strlen(s + 4) &&
            strlen(s) < size) {
            snprintf(out, size, "%s", s);
            break;
        }
    }
    sysfs_names_free(names, n);
    return 0;
}

/* Append "item" to a ", "-separated list in buf; once full, end it with ", …" and drop the rest. */
static void host_list_append(char *buf, size_t size, const char *item)
{
    static const char more[] = ", \xe2\x80\xa6";
    size_t used = strlen(buf), need = (used ? 2 : 0) + strlen(item);

    if (used >= sizeof(more) - 1 && strcmp(buf + used - (sizeof(more) - 1), more) == 0)
        return; /* already truncated */
    if (used + need + sizeof(more) > size) {
        if (used + sizeof(more) <= size)
            memcpy(buf + used, more, sizeof(more));
        return;
    }
    snprintf(buf + used, size - used, "%s%s", used ? ", " : "", item);
}

/* Members of group N other than bdf whose driver makes the group unusable, as "E (driver), …". */
static int host_read_group(const char *root, const char *bdf, int group, char *culprits, size_t size,
                           struct smmu_error *err)
{
    char path[PATH_MAX], drv[64], item[PATH_MAX], **names;
    size_t n;
    bool present;
    int r;

    culprits[0] = 0;
    if (sysfs_path(path, sizeof(path), root, "kernel/iommu_groups/%d/devices", group) < 0)
        return smmu_error_set(err, -ENAMETOOLONG, "sysfs path too long under %s", root);
    if ((r = sysfs_list_dir(path, &names, &n, &present, err)) < 0)
        return r;
    if (!present)
        return smmu_error_set(err, -ENOENT, "IOMMU group %d has no member list (no %s)", group, path);
    for (size_t i = 0; i < n && r == 0; i++) {
        if (strcmp(names[i], bdf) == 0)
            continue;
        if (sysfs_path(path, sizeof(path), root, "kernel/iommu_groups/%d/devices/%s/driver", group, names[i]) < 0) {
            r = smmu_error_set(err, -ENAMETOOLONG, "sysfs path too long under %s", root);
            break;
        }
        if ((r = sysfs_link_basename(path, drv, sizeof(drv), &present, err)) < 0)
            break;
        if (present && !smmu_host_driver_group_ok(drv)) {
            snprintf(item, sizeof(item), "%s (%s)", names[i], drv);
            host_list_append(culprits, size, item);
        }
    }
    sysfs_names_free(names, n);
    return r;
}

static int host_read_bars(const char *root, const char *bdf, struct smmu_host_dev *out, struct smmu_error *err)
{
    char path[PATH_MAX], text[8192];
    size_t len;
    bool present;
    int r;

    if ((r = host_dev_path(path, sizeof(path), root, bdf, "resource", err)) < 0)
        return r;
    if ((r = sysfs_read_file(path, text, sizeof(text), &len, &present, err)) < 0)
        return r;
    if (!present)
        return 0;
    if ((r = smmu_host_parse_resource(text, len, path, out->bars, err)) < 0)
        return r;
    out->have_bars = true;
    return 0;
}

static int host_read_all(const char *root, const char *bdf, struct smmu_host_dev *out, struct smmu_error *err)
{
    char path[PATH_MAX], grp[32];
    bool present;
    struct stat st;
    int r;

    if ((r = host_dev_path(path, sizeof(path), root, bdf, "", err)) < 0)
        return r;
    if (stat(path, &st) < 0) {
        int e = errno;
        if (e == ENOENT) {
            char target[PATH_MAX];
            ssize_t tn = readlink(path, target, sizeof(target) - 1);
            if (tn >= 0) {
                target[tn] = 0;
                return smmu_error_set(err, -ENOENT, "no such PCI device (%s is a dangling symlink to %s)", path,
                                      target);
            }
            return smmu_error_set(err, -ENOENT, "no such PCI device (no %s)", path);
        }
        return smmu_error_set(err, -e, "%s: %s", path, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return smmu_error_set(err, -ENOTDIR, "%s: not a directory", path);

    if ((r = host_dev_path(path, sizeof(path), root, bdf, "iommu", err)) < 0 ||
        (r = sysfs_link_basename(path, out->smmu, sizeof(out->smmu), &present, err)) < 0)
        return r;
    if ((r = host_dev_path(path, sizeof(path), root, bdf, "driver", err)) < 0 ||
        (r = sysfs_link_basename(path, out->driver, sizeof(out->driver), &present, err)) < 0)
        return r;
    if ((r = host_dev_path(path, sizeof(path), root, bdf, "iommu_group", err)) < 0 ||
        (r = sysfs_link_basename(path, grp, sizeof(grp), &present, err)) < 0)
        return r;
    if (present) {
        if (!host_parse_int(grp, 0, &out->iommu_group))
            return smmu_error_set(err, -EINVAL, "%s: links to '%s', which is not an IOMMU group number", path, grp);
        if ((r = host_read_group(root, bdf, out->iommu_group, out->group_culprits, sizeof(out->group_culprits),
                                 err)) < 0)
            return r;
    }
    if ((r = host_read_cdev(root, bdf, out->cdev, sizeof(out->cdev), err)) < 0 ||
        (r = host_read_numa(root, bdf, &out->numa_node, err)) < 0 ||
        (r = host_read_id(root, bdf, "vendor", out->vendor, sizeof(out->vendor), err)) < 0 ||
        (r = host_read_id(root, bdf, "device", out->device, sizeof(out->device), err)) < 0 ||
        (r = host_read_bars(root, bdf, out, err)) < 0)
        return r;
    return 0;
}

int smmu_host_read(const char *sysfs_root, const char *bdf, struct smmu_host_dev *out, struct smmu_error *err)
{
    char canon[SMMU_BDF_LEN + 1];
    int r;

    memset(out, 0, sizeof(*out));
    out->iommu_group = -1;
    out->numa_node = -1;
    if ((r = smmu_bdf_parse(bdf, canon, err)) < 0)
        return r;
    memcpy(out->bdf, canon, sizeof(canon));
    if (!sysfs_root || !*sysfs_root)
        sysfs_root = "/sys";
    r = host_read_all(sysfs_root, canon, out, err);
    if (r < 0)
        smmu_error_prefix(err, "%s", canon);
    return r;
}

int smmu_host_probe(const char *sysfs_root, const char *bdf, bool need_cdev, struct smmu_host_dev *out,
                    struct smmu_error *err)
{
    int r = smmu_host_read(sysfs_root, bdf, out, err);
    if (r < 0)
        return r;
    return smmu_host_check(out, need_cdev, err);
}
