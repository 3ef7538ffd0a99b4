/* fakesys.c — fake sysfs and /dev trees for tests (see fakesys.h for the layout). */
#define _GNU_SOURCE
#include "fakesys.h"
#include "testutil.h"

#include "smmuctl/host.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Shapes copied from real hosts (flags 0x14220c = MEM|PREFETCH|MEM_64|SIZEALIGN…, 0x40200 = MEM|SIZEALIGN). */
const char FAKESYS_RESOURCE_GPU[] =
    "0x0000650010000000 0x0000650010ffffff 0x0000000000040200\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000660000000000 0x0000661fffffffff 0x000000000014220c\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000650012000000 0x0000650013ffffff 0x000000000014220c\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
const char FAKESYS_RESOURCE_NIC[] =
    "0x0000650000000000 0x0000650001ffffff 0x000000000014220c\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000650004000000 0x0000650004003fff 0x000000000014220c\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x00000000000fffff 0x0000000000046200\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";

struct fakesys {
    char *root;
    bool owned;   /* created by fakesys_new(NULL): removed by fakesys_free */
};

static void __attribute__((noreturn, format(printf, 1, 2))) fakesys_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fakesys: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static void __attribute__((format(printf, 3, 4))) fakesys_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        fakesys_die("path too long: %s", buf);
}

/* mkdir -p of an absolute path. */
static void fakesys_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    struct stat st;

    fakesys_fmt(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                fakesys_die("mkdir %s: %s", buf, strerror(errno));
            if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
                fakesys_die("mkdir %s: exists and is not a directory", buf);
            *p = c;
            if (!c)
                break;
        }
    }
}

static void fakesys_mkparent(const char *path)
{
    char buf[PATH_MAX];
    char *slash;
    fakesys_fmt(buf, sizeof(buf), "%s", path);
    if ((slash = strrchr(buf, '/')) && slash != buf) {
        *slash = 0;
        fakesys_mkdir_p(buf);
    }
}

static void fakesys_write_abs(const char *path, const char *content)
{
    FILE *f;
    fakesys_mkparent(path);
    if (!(f = fopen(path, "w")))
        fakesys_die("create %s: %s", path, strerror(errno));
    if (content)
        fputs(content, f);
    if (fclose(f) != 0)
        fakesys_die("write %s: %s", path, strerror(errno));
}

struct fakesys *fakesys_new(const char *root)
{
    struct fakesys *fs = calloc(1, sizeof(*fs));
    if (!fs)
        fakesys_die("out of memory");
    if (root) {
        if (!(fs->root = strdup(root)))
            fakesys_die("out of memory");
        fakesys_mkdir_p(root);
    } else {
        fs->root = smmu_test_mkdtemp("fakesys");
        fs->owned = true;
    }
    return fs;
}

const char *fakesys_root(const struct fakesys *fs)
{
    return fs->root;
}

void fakesys_free(struct fakesys *fs)
{
    if (!fs)
        return;
    if (fs->owned)
        smmu_test_rmtree(fs->root);
    free(fs->root);
    free(fs);
}

void fakesys_mkdir(struct fakesys *fs, const char *rel)
{
    char p[PATH_MAX];
    fakesys_fmt(p, sizeof(p), "%s/%s", fs->root, rel);
    fakesys_mkdir_p(p);
}

void fakesys_write(struct fakesys *fs, const char *rel, const char *content)
{
    char p[PATH_MAX];
    fakesys_fmt(p, sizeof(p), "%s/%s", fs->root, rel);
    fakesys_write_abs(p, content);
}

void fakesys_remove(struct fakesys *fs, const char *rel)
{
    char p[PATH_MAX];
    struct stat st;
    fakesys_fmt(p, sizeof(p), "%s/%s", fs->root, rel);
    if (lstat(p, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode))
        smmu_test_rmtree(p);
    else if (unlink(p) < 0)
        fakesys_die("unlink %s: %s", p, strerror(errno));
}

void fakesys_symlink(struct fakesys *fs, const char *rel, const char *target)
{
    char p[PATH_MAX];
    fakesys_fmt(p, sizeof(p), "%s/%s", fs->root, rel);
    fakesys_mkparent(p);
    if (unlink(p) < 0 && errno != ENOENT)
        fakesys_die("unlink %s: %s", p, strerror(errno));
    if (symlink(target, p) < 0)
        fakesys_die("symlink %s -> %s: %s", p, target, strerror(errno));
}

/* Split a relative path into components (in place). */
static size_t fakesys_split(char *s, char **parts, size_t max)
{
    size_t n = 0;
    for (char *tok = strtok(s, "/"); tok; tok = strtok(NULL, "/")) {
        if (n == max)
            fakesys_die("path too deep");
        parts[n++] = tok;
    }
    return n;
}

void fakesys_symlink_rel(struct fakesys *fs, const char *rel, const char *target_rel)
{
    char a[PATH_MAX], b[PATH_MAX], out[PATH_MAX] = "";
    char *ap[64], *bp[64];
    size_t an, bn, common = 0, len = 0;

    fakesys_fmt(a, sizeof(a), "%s", rel);
    fakesys_fmt(b, sizeof(b), "%s", target_rel);
    an = fakesys_split(a, ap, 64);
    bn = fakesys_split(b, bp, 64);
    if (an == 0)
        fakesys_die("empty link path");
    an--; /* the link's own name is not a directory to climb out of */
    while (common < an && common < bn && strcmp(ap[common], bp[common]) == 0)
        common++;
    for (size_t i = common; i < an; i++)
        len += (size_t)snprintf(out + len, sizeof(out) - len, "../");
    for (size_t i = common; i < bn; i++)
        len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s", bp[i], i + 1 < bn ? "/" : "");
    if (len >= sizeof(out))
        fakesys_die("link target too long");
    fakesys_symlink(fs, rel, out);
}

/* "devices/pci0009:00/0009:00:00.0/0009:01:00.0" (no bridge level for bus 00). */
static void fakesys_real_dir(const char *bdf, char *buf, size_t size)
{
    if (strncmp(bdf + 5, "00:", 3) == 0)
        fakesys_fmt(buf, size, "devices/pci%.4s:00/%s", bdf, bdf);
    else
        fakesys_fmt(buf, size, "devices/pci%.4s:00/%.4s:00:00.0/%s", bdf, bdf, bdf);
}

/* The SMMU's platform directory ("devices/platform/arm-smmu-v3.K.auto/iommu/<smmu>"), created on first use. */
static void fakesys_smmu_dir(struct fakesys *fs, const char *smmu, char *buf, size_t size)
{
    char cls[PATH_MAX], clsdir[PATH_MAX], target[PATH_MAX];
    ssize_t n;
    DIR *d;
    int k = 0;

    fakesys_fmt(cls, sizeof(cls), "%s/class/iommu/%s", fs->root, smmu);
    n = readlink(cls, target, sizeof(target) - 1);
    if (n >= 0) { /* "../../devices/platform/…" → strip the climb back to the root */
        target[n] = 0;
        fakesys_fmt(buf, size, "%s", strstr(target, "devices/") ? strstr(target, "devices/") : target);
        return;
    }
    fakesys_fmt(clsdir, sizeof(clsdir), "%s/class/iommu", fs->root);
    if ((d = opendir(clsdir))) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (de->d_name[0] != '.')
                k++;
        closedir(d);
    }
    fakesys_fmt(buf, size, "devices/platform/arm-smmu-v3.%d.auto/iommu/%s", k, smmu);
    fakesys_mkdir(fs, buf);
    fakesys_fmt(cls, sizeof(cls), "class/iommu/%s", smmu);
    fakesys_symlink_rel(fs, cls, buf);
}

const char *fakesys_dev_path(const struct fakesys *fs, const char *bdf)
{
    static char buf[PATH_MAX];
    fakesys_fmt(buf, sizeof(buf), "%s/bus/pci/devices/%s", fs->root, bdf);
    return buf;
}

void fakesys_add_dev(struct fakesys *fs, const struct fakesys_dev *dev)
{
    char bdf[SMMU_BDF_LEN + 1], dir[PATH_MAX], p[PATH_MAX], t[PATH_MAX];
    struct smmu_error err = SMMU_ERROR_INIT;
    struct stat st;

    if (!dev->bdf || smmu_bdf_parse(dev->bdf, bdf, &err) < 0)
        fakesys_die("bad bdf: %s", err.message);
    fakesys_real_dir(bdf, dir, sizeof(dir));
    fakesys_fmt(p, sizeof(p), "%s/%s", fs->root, dir);
    if (lstat(p, &st) == 0)
        fakesys_die("%s added twice", bdf);
    fakesys_mkdir(fs, dir);

    fakesys_fmt(p, sizeof(p), "bus/pci/devices/%s", bdf);
    fakesys_symlink_rel(fs, p, dir);

    if (dev->vendor) {
        fakesys_fmt(p, sizeof(p), "%s/vendor", dir);
        fakesys_fmt(t, sizeof(t), "%s\n", dev->vendor);
        fakesys_write(fs, p, t);
    }
    if (dev->device) {
        fakesys_fmt(p, sizeof(p), "%s/device", dir);
        fakesys_fmt(t, sizeof(t), "%s\n", dev->device);
        fakesys_write(fs, p, t);
    }
    if (dev->numa_node) {
        fakesys_fmt(p, sizeof(p), "%s/numa_node", dir);
        fakesys_fmt(t, sizeof(t), "%s\n", dev->numa_node);
        fakesys_write(fs, p, t);
    }
    if (dev->resource) {
        fakesys_fmt(p, sizeof(p), "%s/resource", dir);
        fakesys_write(fs, p, dev->resource);
    }
    if (dev->smmu) {
        fakesys_smmu_dir(fs, dev->smmu, t, sizeof(t));
        fakesys_fmt(p, sizeof(p), "%s/iommu", dir);
        fakesys_symlink_rel(fs, p, t);
        fakesys_fmt(p, sizeof(p), "%s/devices/%s", t, bdf);
        fakesys_symlink_rel(fs, p, dir);
    }
    if (dev->driver) {
        fakesys_fmt(t, sizeof(t), "bus/pci/drivers/%s", dev->driver);
        fakesys_mkdir(fs, t);
        fakesys_fmt(p, sizeof(p), "%s/driver", dir);
        fakesys_symlink_rel(fs, p, t);
        fakesys_fmt(p, sizeof(p), "%s/%s", t, bdf);
        fakesys_symlink_rel(fs, p, dir);
    }
    if (dev->group) {
        fakesys_fmt(t, sizeof(t), "kernel/iommu_groups/%s", dev->group);
        fakesys_mkdir(fs, t);
        fakesys_fmt(p, sizeof(p), "%s/iommu_group", dir);
        fakesys_symlink_rel(fs, p, t);
        fakesys_fmt(p, sizeof(p), "%s/devices/%s", t, bdf);
        fakesys_symlink_rel(fs, p, dir);
    }
    if (dev->cdev) {
        fakesys_fmt(p, sizeof(p), "%s/vfio-dev/%s/dev", dir, dev->cdev);
        fakesys_write(fs, p, "511:0\n");
    }
}

void fakesys_write_dev_tree(const struct fakesys *fs, const char *devroot)
{
    char p[PATH_MAX];
    struct dirent *de, *ve;
    DIR *d, *v;

    fakesys_fmt(p, sizeof(p), "%s/vfio/devices", devroot);
    fakesys_mkdir_p(p);
    fakesys_fmt(p, sizeof(p), "%s/iommu", devroot);
    fakesys_write_abs(p, "");
    fakesys_fmt(p, sizeof(p), "%s/bus/pci/devices", fs->root);
    if (!(d = opendir(p)))
        return; /* no devices yet */
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        fakesys_fmt(p, sizeof(p), "%s/bus/pci/devices/%s/vfio-dev", fs->root, de->d_name);
        if (!(v = opendir(p)))
            continue;
        while ((ve = readdir(v))) {
            if (ve->d_name[0] == '.')
                continue;
            fakesys_fmt(p, sizeof(p), "%s/vfio/devices/%s", devroot, ve->d_name);
            fakesys_write_abs(p, "");
        }
        closedir(v);
    }
    closedir(d);
}
