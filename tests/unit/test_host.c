/* test_host.c — BDF parsing, sysfs facts from fake trees (tests/support/fakesys) and the pure usability check. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "smmuctl/host.h"
#include "support/fakesys.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define SMMU_B "smmu3.0x0000000018000000"

static void assert_contains(const char *hay, const char *needle)
{
    if (!needle)
        return;
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

/* ---------------------------------------------------------------- smmu_bdf_parse */

static const struct { const char *in, *out; } bdf_ok[] = {
    {"0009:01:00.0", "0009:01:00.0"},
    {"01:00.0", "0000:01:00.0"},
    {"000A:0B:1F.7", "000a:0b:1f.7"},
    {"000a:0b:1f.7", "000a:0b:1f.7"},
    {"FfFf:fF:1f.7", "ffff:ff:1f.7"},
    {"0000:00:00.0", "0000:00:00.0"},
    {"00:1e.3", "0000:00:1e.3"},
};

static const struct { const char *in; const char *msg[2]; } bdf_bad[] = {
    {NULL, {"empty PCI address", "dddd:bb:ss.f"}},
    {"", {"empty PCI address", NULL}},
    {"garbage", {"'garbage': not a PCI address", NULL}},
    {"0009", {"'0009': not a PCI address", NULL}},
    {"9:01:00.0", {"'9:01:00.0': bad domain '9'", "4 hex digits"}},
    {"00009:01:00.0", {"bad domain '00009'", NULL}},
    {"g009:01:00.0", {"bad domain 'g009'", NULL}},
    {":01:00.0", {"missing domain", NULL}},
    {"0009:1:00.0", {"'0009:1:00.0': bad bus '1'", "2 hex digits"}},
    {"0009:001:00.0", {"bad bus '001'", NULL}},
    {"0009:g1:00.0", {"bad bus 'g1'", NULL}},
    {"0009::00.0", {"missing bus", NULL}},
    {"1:00.0", {"bad bus '1'", NULL}},
    {"0009:01:20.0", {"'0009:01:20.0': bad slot '20'", "00-1f"}},
    {"0009:01:ff.0", {"bad slot 'ff'", "00-1f"}},
    {"0009:01:0.0", {"bad slot '0'", NULL}},
    {"01:20.0", {"bad slot '20'", NULL}},
    {"0009:01:00:1.0", {"bad slot '00:1'", NULL}},
    {"0009:01:00.8", {"'0009:01:00.8': bad function '8'", "0-7"}},
    {"0009:01:00.f", {"bad function 'f'", "0-7"}},
    {"0009:01:00.07", {"bad function '07'", NULL}},
    {"0009:01:00.", {"missing function", NULL}},
    {"0009:01:00", {"expected '.' and a function", NULL}},
    {"0009:01:00.0x", {"'0009:01:00.0x': trailing junk 'x'", NULL}},
    {"0009:01:00.0 ", {"trailing junk ' '", NULL}},
    {"0009:01:00.0:1", {"trailing junk ':1'", NULL}},
    {" 0009:01:00.0", {"bad domain ' 0009'", NULL}},
};

static void test_bdf_accept(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bdf_ok) / sizeof(bdf_ok[0]); i++) {
        char out[SMMU_BDF_LEN + 1];
        struct smmu_error err = SMMU_ERROR_INIT;
        memset(out, 'X', sizeof(out));
        if (smmu_bdf_parse(bdf_ok[i].in, out, &err) != 0)
            fail_msg("%s: rejected: %s", bdf_ok[i].in, err.message);
        assert_string_equal(out, bdf_ok[i].out);
        assert_int_equal(err.code, 0);
    }
}

static void test_bdf_reject(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bdf_bad) / sizeof(bdf_bad[0]); i++) {
        char out[SMMU_BDF_LEN + 1];
        struct smmu_error err = SMMU_ERROR_INIT;
        int r = smmu_bdf_parse(bdf_bad[i].in, out, &err);
        if (r != -EINVAL)
            fail_msg("'%s': expected -EINVAL, got %d (%s)", bdf_bad[i].in ? bdf_bad[i].in : "(null)", r, out);
        assert_int_equal(err.code, -EINVAL);
        assert_contains(err.message, bdf_bad[i].msg[0]);
        assert_contains(err.message, bdf_bad[i].msg[1]);
    }
    /* NULL err is allowed */
    char out[SMMU_BDF_LEN + 1];
    assert_int_equal(smmu_bdf_parse("x", out, NULL), -EINVAL);
}

/* ---------------------------------------------------------------- fake tree used by the read tests */

static struct fakesys *fs;

/* Many culprits in group 50, to overflow group_culprits. */
#define MANY 40

static int setup_tree(void **state)
{
    (void)state;
    char p[PATH_MAX], bdf[16];
    fs = fakesys_new(NULL);

    /* the good one, and an unbound sibling in its group (unbound members are fine) */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "12", .cdev = "vfio3", .numa_node = "1",
                                              .vendor = "0x10DE", .device = "0x2342"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0009:01:00.1", .smmu = SMMU_A, .group = "12"});
    /* domain 0000 on bus 00 (no bridge level), minimal: no numa/vendor/device, no cdev */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:00:05.0", .smmu = SMMU_B, .driver = "vfio-pci",
                                              .group = "3"});
    /* group 20: nvidia culprit, an unbound and a vfio-pci sibling */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "000a:01:00.0", .smmu = SMMU_B, .driver = "vfio-pci",
                                              .group = "20", .cdev = "vfio0", .numa_node = "-1"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "000a:01:00.1", .smmu = SMMU_B, .driver = "nvidia",
                                              .group = "20"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "000a:01:00.2", .smmu = SMMU_B, .group = "20"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "000a:01:00.3", .smmu = SMMU_B, .driver = "vfio-pci",
                                              .group = "20"});
    /* group 21: two culprits, listed in sysfs order (sorted) */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "000b:02:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "21"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "000b:02:00.2", .smmu = SMMU_A, .driver = "snd_hda_intel",
                                              .group = "21"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "000b:02:00.1", .smmu = SMMU_A, .driver = "nvidia",
                                              .group = "21"});
    /* no IOMMU at all, bound to a NIC driver */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:02:00.0", .driver = "e1000e", .numa_node = "0"});
    /* unbound / other driver */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:03:00.0", .smmu = SMMU_A, .group = "30"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:04:00.0", .smmu = SMMU_A, .driver = "nvidia",
                                              .group = "31"});
    /* bad content */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:05:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "32", .numa_node = "x"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:05:00.1", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "33", .numa_node = "-2"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:05:00.2", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "34", .numa_node = "1x"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:05:00.3", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "abc"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:05:00.4", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "35", .vendor = "nvidia"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:05:00.5", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "-1"});
    /* dangling links */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:06:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "40"});
    fakesys_symlink(fs, "devices/pci0000:00/0000:00:00.0/0000:06:00.0/iommu",
                    "../../../platform/arm-smmu-v3.9.auto/iommu/" SMMU_A);
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:06:00.1", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "41"});
    fakesys_symlink(fs, "devices/pci0000:00/0000:00:00.0/0000:06:00.1/driver", "../../../../bus/pci/drivers/gone");
    /* missing group dir (→ dangling iommu_group link) and a group dir without devices/ */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:06:00.2", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "42"});
    fakesys_remove(fs, "kernel/iommu_groups/42");
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:06:00.3", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "43"});
    fakesys_remove(fs, "kernel/iommu_groups/43/devices");
    /* a group member whose driver link dangles */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:06:00.4", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "44"});
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:06:00.5", .smmu = SMMU_A, .group = "44"});
    fakesys_symlink(fs, "kernel/iommu_groups/44/devices/0000:06:00.5/driver", "/nonexistent/drivers/xyz");
    /* not a symlink where one belongs; an unreadable attribute (a directory) */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:07:00.0", .smmu = SMMU_A, .group = "45"});
    fakesys_write(fs, "devices/pci0000:00/0000:00:00.0/0000:07:00.0/driver", "vfio-pci\n");
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:07:00.1", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "46"});
    fakesys_mkdir(fs, "devices/pci0000:00/0000:00:00.0/0000:07:00.1/numa_node");
    /* the device link itself dangles (hot-unplugged under our feet) */
    fakesys_symlink(fs, "bus/pci/devices/0000:08:00.0", "../../../devices/pci0000:00/0000:00:00.0/0000:08:00.0");
    /* the device "directory" is a file */
    fakesys_write(fs, "bus/pci/devices/0000:08:00.1", "");
    /* vfio-dev with junk next to the cdev */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:09:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "47", .cdev = "vfio12"});
    fakesys_mkdir(fs, "devices/pci0000:00/0000:00:00.0/0000:09:00.0/vfio-dev/aaa");
    /* a big group with MANY nvidia culprits */
    fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = "0000:0a:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "50"});
    for (int i = 1; i <= MANY; i++) {
        snprintf(bdf, sizeof(bdf), "0000:0a:%02x.%d", i / 8, i % 8);
        fakesys_add_dev(fs, &(struct fakesys_dev){.bdf = bdf, .smmu = SMMU_A, .driver = "nvidia", .group = "50"});
    }
    (void)p;
    return 0;
}

static int teardown_tree(void **state)
{
    (void)state;
    fakesys_free(fs);
    fs = NULL;
    return 0;
}

/* ---------------------------------------------------------------- fakesys shape */

static void expect_link(const char *rel, const char *target)
{
    char p[PATH_MAX], t[PATH_MAX];
    ssize_t n;
    snprintf(p, sizeof(p), "%s/%s", fakesys_root(fs), rel);
    n = readlink(p, t, sizeof(t) - 1);
    if (n < 0)
        fail_msg("%s: not a symlink", rel);
    t[n] = 0;
    assert_string_equal(t, target);
}

static void test_fakesys_layout(void **state)
{
    (void)state;
    /* relative links exactly as Linux makes them */
    expect_link("bus/pci/devices/0009:01:00.0", "../../../devices/pci0009:00/0009:00:00.0/0009:01:00.0");
    expect_link("bus/pci/devices/0000:00:05.0", "../../../devices/pci0000:00/0000:00:05.0");
    expect_link("devices/pci0009:00/0009:00:00.0/0009:01:00.0/driver", "../../../../bus/pci/drivers/vfio-pci");
    expect_link("devices/pci0009:00/0009:00:00.0/0009:01:00.0/iommu_group", "../../../../kernel/iommu_groups/12");
    expect_link("devices/pci0009:00/0009:00:00.0/0009:01:00.0/iommu",
                "../../../platform/arm-smmu-v3.0.auto/iommu/" SMMU_A);
    expect_link("devices/pci0000:00/0000:00:05.0/iommu", "../../platform/arm-smmu-v3.1.auto/iommu/" SMMU_B);
    expect_link("kernel/iommu_groups/12/devices/0009:01:00.1",
                "../../../../devices/pci0009:00/0009:00:00.0/0009:01:00.1");
    expect_link("bus/pci/drivers/nvidia/000a:01:00.1", "../../../../devices/pci000a:00/000a:00:00.0/000a:01:00.1");
    expect_link("class/iommu/" SMMU_B, "../../devices/platform/arm-smmu-v3.1.auto/iommu/" SMMU_B);
    expect_link("devices/platform/arm-smmu-v3.0.auto/iommu/" SMMU_A "/devices/0009:01:00.0",
                "../../../../../pci0009:00/0009:00:00.0/0009:01:00.0");

    /* the links resolve */
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof(p), "%s/vfio-dev/vfio3", fakesys_dev_path(fs, "0009:01:00.0"));
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    snprintf(p, sizeof(p), "%s/kernel/iommu_groups/20/devices/000a:01:00.1/driver/000a:01:00.1/iommu",
             fakesys_root(fs));
    assert_int_equal(stat(p, &st), 0);

    /* the matching /dev tree */
    char *dev = smmu_test_mkdtemp("fakedev");
    fakesys_write_dev_tree(fs, dev);
    const char *want[] = {"iommu", "vfio/devices/vfio3", "vfio/devices/vfio0", "vfio/devices/vfio12"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dev, want[i]);
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
            fail_msg("%s missing or not a file", p);
    }
    snprintf(p, sizeof(p), "%s/vfio/devices/aaa", dev);
    assert_int_equal(stat(p, &st), 0); /* every vfio-dev entry is mirrored, junk too: sysfs decides */
    smmu_test_rmtree(dev);
    free(dev);
}

/* ---------------------------------------------------------------- smmu_host_read */

struct read_ok {
    const char *bdf;
    const char *canon, *smmu, *driver;
    int group;
    const char *cdev;
    int numa;
    const char *vendor, *device, *culprits;
};

static const struct read_ok read_ok[] = {
    {"0009:01:00.0", "0009:01:00.0", SMMU_A, "vfio-pci", 12, "vfio3", 1, "0x10de", "0x2342", ""},
    {"0009:01:00.1", "0009:01:00.1", SMMU_A, "", 12, "", -1, "", "", ""},
    {"00:05.0", "0000:00:05.0", SMMU_B, "vfio-pci", 3, "", -1, "", "", ""},
    {"000A:01:00.0", "000a:01:00.0", SMMU_B, "vfio-pci", 20, "vfio0", -1, "", "", "000a:01:00.1 (nvidia)"},
    {"000a:01:00.1", "000a:01:00.1", SMMU_B, "nvidia", 20, "", -1, "", "", ""},
    {"000b:02:00.0", "000b:02:00.0", SMMU_A, "vfio-pci", 21, "", -1, "", "",
     "000b:02:00.1 (nvidia), 000b:02:00.2 (snd_hda_intel)"},
    {"000b:02:00.1", "000b:02:00.1", SMMU_A, "nvidia", 21, "", -1, "", "", "000b:02:00.2 (snd_hda_intel)"},
    {"0000:02:00.0", "0000:02:00.0", "", "e1000e", -1, "", 0, "", "", ""},
    {"03:00.0", "0000:03:00.0", SMMU_A, "", 30, "", -1, "", "", ""},
    {"0000:04:00.0", "0000:04:00.0", SMMU_A, "nvidia", 31, "", -1, "", "", ""},
    {"0000:09:00.0", "0000:09:00.0", SMMU_A, "vfio-pci", 47, "vfio12", -1, "", "", ""},
};

struct read_bad {
    const char *bdf;
    int rc;
    const char *msg[3];   /* substrings; "@" at the start is replaced by the root */
};

static const struct read_bad read_bad[] = {
    {"0009:0f:00.0", -ENOENT, {"0009:0f:00.0: no such PCI device (no @/bus/pci/devices/0009:0f:00.0)", NULL, NULL}},
    {"0f:00.0", -ENOENT, {"0000:0f:00.0: no such PCI device", NULL, NULL}},
    {"0009:01:00.8", -EINVAL, {"bad function '8'", NULL, NULL}},
    {"0000:05:00.0", -EINVAL, {"0000:05:00.0: @/bus/pci/devices/0000:05:00.0/numa_node: 'x' is not a NUMA node", NULL, NULL}},
    {"0000:05:00.1", -EINVAL, {"numa_node: '-2' is not a NUMA node", NULL, NULL}},
    {"0000:05:00.2", -EINVAL, {"numa_node: '1x' is not a NUMA node", NULL, NULL}},
    {"0000:05:00.3", -EINVAL, {"0000:05:00.3: @/bus/pci/devices/0000:05:00.3/iommu_group: links to 'abc', which is not an IOMMU group number", NULL, NULL}},
    {"0000:05:00.4", -EINVAL, {"@/bus/pci/devices/0000:05:00.4/vendor: 'nvidia' is not a PCI id", NULL, NULL}},
    {"0000:05:00.5", -EINVAL, {"iommu_group: links to '-1'", NULL, NULL}},
    {"0000:06:00.0", -ENOENT, {"0000:06:00.0: @/bus/pci/devices/0000:06:00.0/iommu: dangling symlink to ../../../platform/arm-smmu-v3.9.auto/iommu/" SMMU_A, NULL, NULL}},
    {"0000:06:00.1", -ENOENT, {"@/bus/pci/devices/0000:06:00.1/driver: dangling symlink to ../../../../bus/pci/drivers/gone", NULL, NULL}},
    {"0000:06:00.2", -ENOENT, {"@/bus/pci/devices/0000:06:00.2/iommu_group: dangling symlink to ../../../../kernel/iommu_groups/42", NULL, NULL}},
    {"0000:06:00.3", -ENOENT, {"0000:06:00.3: IOMMU group 43 has no member list (no @/kernel/iommu_groups/43/devices)", NULL, NULL}},
    {"0000:06:00.4", -ENOENT, {"0000:06:00.4: @/kernel/iommu_groups/44/devices/0000:06:00.5/driver: dangling symlink to /nonexistent/drivers/xyz", NULL, NULL}},
    {"0000:07:00.0", -EINVAL, {"0000:07:00.0: @/bus/pci/devices/0000:07:00.0/driver: not a symlink", NULL, NULL}},
    {"0000:07:00.1", -EISDIR, {"0000:07:00.1: @/bus/pci/devices/0000:07:00.1/numa_node: cannot read", NULL, NULL}},
    {"0000:08:00.0", -ENOENT, {"0000:08:00.0: no such PCI device (@/bus/pci/devices/0000:08:00.0 is a dangling symlink", NULL, NULL}},
    {"0000:08:00.1", -ENOTDIR, {"0000:08:00.1: @/bus/pci/devices/0000:08:00.1: not a directory", NULL, NULL}},
};

static void test_read_ok(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(read_ok) / sizeof(read_ok[0]); i++) {
        const struct read_ok *c = &read_ok[i];
        struct smmu_host_dev d;
        struct smmu_error err = SMMU_ERROR_INIT;
        int r = smmu_host_read(fakesys_root(fs), c->bdf, &d, &err);
        if (r != 0)
            fail_msg("%s: %d %s", c->bdf, r, err.message);
        assert_string_equal(d.bdf, c->canon);
        assert_string_equal(d.smmu, c->smmu);
        assert_string_equal(d.driver, c->driver);
        assert_int_equal(d.iommu_group, c->group);
        assert_string_equal(d.cdev, c->cdev);
        assert_int_equal(d.numa_node, c->numa);
        assert_string_equal(d.vendor, c->vendor);
        assert_string_equal(d.device, c->device);
        assert_string_equal(d.group_culprits, c->culprits);
    }
}

static void expand_root(char *out, size_t size, const char *msg)
{
    const char *at = strchr(msg, '@');
    if (!at)
        snprintf(out, size, "%s", msg);
    else
        snprintf(out, size, "%.*s%s%s", (int)(at - msg), msg, fakesys_root(fs), at + 1);
}

static void test_read_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(read_bad) / sizeof(read_bad[0]); i++) {
        const struct read_bad *c = &read_bad[i];
        struct smmu_host_dev d;
        struct smmu_error err = SMMU_ERROR_INIT;
        int r = smmu_host_read(fakesys_root(fs), c->bdf, &d, &err);
        if (r != c->rc)
            fail_msg("%s: expected %d, got %d (%s)", c->bdf, c->rc, r, err.message);
        assert_int_equal(err.code, c->rc);
        for (int k = 0; k < 3 && c->msg[k]; k++) {
            char want[2048];
            expand_root(want, sizeof(want), c->msg[k]);
            assert_contains(err.message, want);
        }
    }
}

static void test_read_root_default_and_slashes(void **state)
{
    (void)state;
    char root[PATH_MAX];
    struct smmu_host_dev d;
    struct smmu_error err = SMMU_ERROR_INIT;
    /* trailing slashes on the root do not leak into paths */
    snprintf(root, sizeof(root), "%s//", fakesys_root(fs));
    assert_int_equal(smmu_host_read(root, "0009:0f:00.0", &d, &err), -ENOENT);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "(no %s/bus/pci/devices/0009:0f:00.0)", fakesys_root(fs));
    assert_contains(err.message, want);
    assert_int_equal(smmu_host_read(root, "0009:01:00.0", &d, &err), 0);
    assert_string_equal(d.smmu, SMMU_A);
}

static void test_read_culprits_truncated(void **state)
{
    (void)state;
    struct smmu_host_dev d;
    struct smmu_error err = SMMU_ERROR_INIT;
    assert_int_equal(smmu_host_read(fakesys_root(fs), "0000:0a:00.0", &d, &err), 0);
    assert_true(strlen(d.group_culprits) < sizeof(d.group_culprits));
    assert_contains(d.group_culprits, "0000:0a:00.1 (nvidia), 0000:0a:00.2 (nvidia)");
    /* ends with an ellipsis after a complete entry */
    const char *end = d.group_culprits + strlen(d.group_culprits);
    assert_string_equal(end - strlen("(nvidia), \xe2\x80\xa6"), "(nvidia), \xe2\x80\xa6");
    /* and the check still refuses, naming the group */
    assert_int_equal(smmu_host_check(&d, false, &err), -EBUSY);
    assert_contains(err.message, "IOMMU group 50 not viable: 0000:0a:00.1 (nvidia)");
}

/* ---------------------------------------------------------------- smmu_host_check (pure) */

static struct smmu_host_dev mkdev(const char *bdf, const char *smmu, const char *driver, int group,
                                  const char *cdev, const char *culprits)
{
    struct smmu_host_dev d;
    memset(&d, 0, sizeof(d));
    snprintf(d.bdf, sizeof(d.bdf), "%s", bdf);
    snprintf(d.smmu, sizeof(d.smmu), "%s", smmu);
    snprintf(d.driver, sizeof(d.driver), "%s", driver);
    d.iommu_group = group;
    snprintf(d.cdev, sizeof(d.cdev), "%s", cdev);
    snprintf(d.group_culprits, sizeof(d.group_culprits), "%s", culprits);
    d.numa_node = -1;
    return d;
}

struct check_case {
    struct smmu_host_dev dev;
    bool need_cdev;
    int rc;
    const char *msg[4];
};

static void test_driver_predicates(void **state)
{
    (void)state;
    assert_true(smmu_host_driver_is_vfio("vfio-pci"));
    assert_true(smmu_host_driver_is_vfio("nvgrace_gpu_vfio_pci"));
    assert_true(smmu_host_driver_is_vfio("hisi_acc_vfio_pci"));
    assert_false(smmu_host_driver_is_vfio("nvidia"));
    assert_false(smmu_host_driver_is_vfio(""));
    assert_false(smmu_host_driver_is_vfio(NULL));
    assert_true(smmu_host_driver_group_ok(NULL));
    assert_true(smmu_host_driver_group_ok(""));
    assert_true(smmu_host_driver_group_ok("pcieport"));
    assert_true(smmu_host_driver_group_ok("pci-stub"));
    assert_true(smmu_host_driver_group_ok("mlx5_vfio_pci"));
    assert_false(smmu_host_driver_group_ok("snd_hda_intel"));
}

static void test_check(void **state)
{
    (void)state;
    const struct check_case cases[] = {
        {mkdev("0009:01:00.0", SMMU_A, "vfio-pci", 12, "vfio3", ""), true, 0, {NULL}},
        {mkdev("0009:01:00.0", SMMU_A, "vfio-pci", 12, "", ""), false, 0, {NULL}},
        {mkdev("0009:01:00.0", SMMU_A, "vfio-pci", 12, "", ""), true, -ENODEV,
         {"0009:01:00.0: has no VFIO cdev", "CONFIG_VFIO_DEVICE_CDEV", "fd passing", NULL}},
        {mkdev("0000:02:00.0", "", "e1000e", -1, "", ""), false, -ENODEV,
         {"0000:02:00.0: not behind an IOMMU", NULL}},
        /* no IOMMU wins over every other problem */
        {mkdev("0000:02:00.0", "", "", -1, "", "x (y)"), true, -ENODEV, {"not behind an IOMMU", NULL}},
        {mkdev("0000:02:00.0", SMMU_A, "vfio-pci", -1, "", ""), false, -ENODEV,
         {"0000:02:00.0: behind " SMMU_A " but in no IOMMU group", NULL}},
        {mkdev("0000:04:00.0", SMMU_A, "nvidia", 31, "vfio1", ""), false, -EBUSY,
         {"0000:04:00.0: bound to driver nvidia, not vfio-pci", "driverctl set-override 0000:04:00.0 vfio-pci",
          "echo 0000:04:00.0 > /sys/bus/pci/drivers/nvidia/unbind",
          "echo vfio-pci > /sys/bus/pci/devices/0000:04:00.0/driver_override"}},
        {mkdev("0000:04:00.0", SMMU_A, "nvidia", 31, "", ""), false, -EBUSY,
         {"echo 0000:04:00.0 > /sys/bus/pci/drivers/vfio-pci/bind", "never rebinds", NULL}},
        {mkdev("0000:03:00.0", SMMU_A, "", 30, "", ""), false, -EBUSY,
         {"0000:03:00.0: bound to no driver, not vfio-pci", "driverctl set-override 0000:03:00.0 vfio-pci",
          "echo 0000:03:00.0 > /sys/bus/pci/drivers/vfio-pci/bind", NULL}},
        {mkdev("000a:01:00.0", SMMU_B, "vfio-pci", 20, "vfio0", "000a:01:00.1 (nvidia)"), true, -EBUSY,
         {"000a:01:00.0: IOMMU group 20 not viable: 000a:01:00.1 (nvidia)", "vfio-pci (or a vfio-pci variant), pci-stub, pcieport or no driver", NULL}},
        /* vfio-pci variant drivers (Grace Hopper GPUs use nvgrace_gpu_vfio_pci) are VFIO drivers */
        {mkdev("0009:01:00.0", SMMU_A, "nvgrace_gpu_vfio_pci", 12, "vfio3", ""), true, 0, {NULL}},
        {mkdev("0009:01:00.0", SMMU_A, "mlx5_vfio_pci", 12, "vfio3", ""), true, 0, {NULL}},
        {mkdev("0009:01:00.0", SMMU_A, "vfio_pci_core", 12, "", ""), false, -EBUSY, {"not vfio-pci", NULL}},
        /* driver problem reported before group problem */
        {mkdev("000b:02:00.1", SMMU_A, "nvidia", 21, "", "000b:02:00.2 (snd_hda_intel)"), false, -EBUSY,
         {"bound to driver nvidia", NULL}},
        /* group problem reported before the missing cdev */
        {mkdev("000a:01:00.0", SMMU_B, "vfio-pci", 20, "", "000a:01:00.1 (nvidia)"), true, -EBUSY,
         {"group 20 not viable", NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smmu_error err = SMMU_ERROR_INIT;
        int r = smmu_host_check(&cases[i].dev, cases[i].need_cdev, &err);
        if (r != cases[i].rc)
            fail_msg("case %zu (%s): expected %d, got %d (%s)", i, cases[i].dev.bdf, cases[i].rc, r, err.message);
        assert_int_equal(err.code, cases[i].rc);
        for (int k = 0; k < 4 && cases[i].msg[k]; k++)
            assert_contains(err.message, cases[i].msg[k]);
        if (r == 0)
            assert_string_equal(err.message, "");
    }
}

/* ---------------------------------------------------------------- smmu_host_probe = read + check */

static void test_probe(void **state)
{
    (void)state;
    const struct { const char *bdf; bool cdev; int rc; const char *msg; } cases[] = {
        {"0009:01:00.0", true, 0, NULL},
        {"0000:00:05.0", false, 0, NULL},
        {"0000:00:05.0", true, -ENODEV, "CONFIG_VFIO_DEVICE_CDEV"},
        {"000a:01:00.0", false, -EBUSY, "IOMMU group 20 not viable: 000a:01:00.1 (nvidia)"},
        {"000b:02:00.0", false, -EBUSY, "IOMMU group 21 not viable: 000b:02:00.1 (nvidia), 000b:02:00.2 (snd_hda_intel)"},
        {"0000:02:00.0", false, -ENODEV, "not behind an IOMMU"},
        {"0000:03:00.0", false, -EBUSY, "bound to no driver"},
        {"0000:04:00.0", false, -EBUSY, "bound to driver nvidia"},
        {"0000:05:00.0", false, -EINVAL, "numa_node"},
        {"0009:0f:00.0", false, -ENOENT, "no such PCI device"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smmu_host_dev d;
        struct smmu_error err = SMMU_ERROR_INIT;
        int r = smmu_host_probe(fakesys_root(fs), cases[i].bdf, cases[i].cdev, &d, &err);
        if (r != cases[i].rc)
            fail_msg("%s: expected %d, got %d (%s)", cases[i].bdf, cases[i].rc, r, err.message);
        assert_contains(err.message, cases[i].msg);
    }
}

/* Rebinding the culprit makes the group viable: facts follow the tree. */
static void test_read_follows_changes(void **state)
{
    (void)state;
    struct fakesys *f = fakesys_new(NULL);
    struct smmu_host_dev d;
    struct smmu_error err = SMMU_ERROR_INIT;
    fakesys_add_dev(f, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                             .group = "7", .cdev = "vfio1"});
    fakesys_add_dev(f, &(struct fakesys_dev){.bdf = "0009:01:00.1", .smmu = SMMU_A, .driver = "nvidia",
                                             .group = "7"});
    assert_int_equal(smmu_host_probe(fakesys_root(f), "0009:01:00.0", true, &d, &err), -EBUSY);
    fakesys_symlink_rel(f, "devices/pci0009:00/0009:00:00.0/0009:01:00.1/driver", "bus/pci/drivers/vfio-pci");
    assert_int_equal(smmu_host_probe(fakesys_root(f), "0009:01:00.0", true, &d, &err), 0);
    assert_string_equal(d.group_culprits, "");
    fakesys_remove(f, "devices/pci0009:00/0009:00:00.0/0009:01:00.1/driver");
    assert_int_equal(smmu_host_probe(fakesys_root(f), "0009:01:00.0", true, &d, &err), 0);
    fakesys_remove(f, "devices/pci0009:00/0009:00:00.0/0009:01:00.0/vfio-dev");
    assert_int_equal(smmu_host_probe(fakesys_root(f), "0009:01:00.0", true, &d, &err), -ENODEV);
    fakesys_free(f);
}

/* ---------------------------------------------------------------- BARs from sysfs resource */

#define ZL "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"

static void test_resource_parse_ok(void **state)
{
    struct smmu_host_bar b[SMMU_HOST_NBARS];
    struct smmu_error err = SMMU_ERROR_INIT;
    (void)state;

    assert_int_equal(smmu_host_parse_resource(FAKESYS_RESOURCE_GPU, strlen(FAKESYS_RESOURCE_GPU), "r", b, &err), 0);
    assert_true(b[0].size == 16ull << 20 && !b[0].mem64 && !b[0].prefetch && !b[0].io);
    assert_int_equal(b[1].size, 0);
    assert_true(b[2].size == 128ull << 30 && b[2].mem64 && b[2].prefetch);
    assert_int_equal(b[3].size, 0);
    assert_true(b[4].size == 32ull << 20 && b[4].mem64 && b[4].prefetch);
    assert_int_equal(b[5].size, 0);
    assert_true(b[2].flags == 0x14220c);

    assert_int_equal(smmu_host_parse_resource(FAKESYS_RESOURCE_NIC, strlen(FAKESYS_RESOURCE_NIC), "r", b, &err), 0);
    assert_true(b[0].size == 32ull << 20 && b[0].mem64 && b[0].prefetch);
    assert_true(b[2].size == 16 << 10 && b[2].mem64);

    /* an I/O BAR, a 32-bit prefetchable one, exactly six lines without a final newline, tabs, upper case */
    static const char odd[] = "0x1000 0x10ff 0x40101\n"
                              "0x0000000080000000\t0x0000000080FFFFFF 0x0000000000042208\n" ZL ZL ZL ZL;
    assert_int_equal(smmu_host_parse_resource(odd, strlen(odd) - 1, "r", b, &err), 0);
    assert_true(b[0].io && b[0].size == 256 && !b[0].prefetch && !b[0].mem64);
    assert_true(!b[1].io && b[1].prefetch && !b[1].mem64 && b[1].size == 16ull << 20);

    char sz[32];
    smmu_host_size_str(128ull << 30, sz, sizeof(sz));
    assert_string_equal(sz, "128 GiB");
    smmu_host_size_str(16 << 10, sz, sizeof(sz));
    assert_string_equal(sz, "16 KiB");
    smmu_host_size_str(1536, sz, sizeof(sz));
    assert_string_equal(sz, "1536 B");
    smmu_host_size_str(0, sz, sizeof(sz));
    assert_string_equal(sz, "0 B");
}

static const struct { const char *text, *msg; } resource_bad[] = {
    {"", "f: 0 lines, expected at least 6"},
    {ZL ZL ZL ZL ZL, "f: 5 lines, expected at least 6"},
    {ZL "\n" ZL ZL ZL ZL, "f:2: start is not a 0x hex number (got '')"},
    {ZL "0x10 0x20\n" ZL ZL ZL ZL, "f:2: expected three fields"},
    {"10 0x20 0x200\n" ZL ZL ZL ZL ZL, "f:1: start is not a 0x hex number (got '10 0x20 0x200')"},
    {"0x10 0xzz 0x200\n" ZL ZL ZL ZL ZL, "f:1: end is not a 0x hex number"},
    {"0x10 0x20 0x\n" ZL ZL ZL ZL ZL, "f:1: flags is not a 0x hex number"},
    {"0x10 0x20 0x200 0x1\n" ZL ZL ZL ZL ZL, "f:1: trailing text after the three fields"},
    {"0x10000000000000000 0x20 0x200\n" ZL ZL ZL ZL ZL, "f:1: start is not a 0x hex number"},
    {ZL ZL "0x2000 0x1fff 0x200\n" ZL ZL ZL, "f:3: end 0x1fff lies before start 0x2000"},
    {ZL ZL ZL "0x1000 0x1fff 0x2000\n" ZL ZL, "f:4: BAR3 flags 0x2000 must have exactly one of IORESOURCE_MEM"},
    {ZL ZL ZL "0x1000 0x1fff 0x300\n" ZL ZL, "f:4: BAR3 flags 0x300"},
    {"0x0 0xffffffffffffffff 0x200\n" ZL ZL ZL ZL ZL, "f:1: a BAR spanning all of"},
    {ZL ZL ZL ZL ZL ZL "0x10 0x20 junk\n", "f:7: flags is not a 0x hex number"},
};

static void test_resource_parse_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(resource_bad) / sizeof(resource_bad[0]); i++) {
        struct smmu_host_bar b[SMMU_HOST_NBARS];
        struct smmu_error err = SMMU_ERROR_INIT;
        const char *t = resource_bad[i].text;
        if (smmu_host_parse_resource(t, strlen(t), "f", b, &err) != -EINVAL)
            fail_msg("case %zu accepted", i);
        assert_contains(err.message, resource_bad[i].msg);
    }
    struct smmu_host_bar b[SMMU_HOST_NBARS];
    struct smmu_error err = SMMU_ERROR_INIT;
    static const char nul[] = ZL ZL "0x0\0" ZL ZL ZL;
    assert_int_equal(smmu_host_parse_resource(nul, sizeof(nul) - 1, "f", b, &err), -EINVAL);
    assert_contains(err.message, "f: contains a NUL byte");
}

static void test_read_bars(void **state)
{
    struct fakesys *f = fakesys_new(NULL);
    struct smmu_host_dev d;
    struct smmu_error err = SMMU_ERROR_INIT;
    char want[PATH_MAX + 64];
    (void)state;

    fakesys_add_dev(f, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "1", .resource = FAKESYS_RESOURCE_GPU});
    fakesys_add_dev(f, &(struct fakesys_dev){.bdf = "0009:02:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                              .group = "2"});
    assert_int_equal(smmu_host_read(fakesys_root(f), "0009:01:00.0", &d, &err), 0);
    assert_true(d.have_bars);
    assert_true(d.bars[2].size == 128ull << 30 && d.bars[2].mem64 && d.bars[2].prefetch);
    assert_true(d.bars[0].size == 16ull << 20 && !d.bars[0].mem64);
    assert_int_equal(smmu_host_read(fakesys_root(f), "0009:02:00.0", &d, &err), 0);
    assert_false(d.have_bars);
    assert_int_equal(d.bars[2].size, 0);

    fakesys_write(f, "bus/pci/devices/0009:02:00.0/resource", ZL ZL "0x1 0x2\n" ZL ZL ZL);
    assert_int_equal(smmu_host_read(fakesys_root(f), "0009:02:00.0", &d, &err), -EINVAL);
    snprintf(want, sizeof(want), "0009:02:00.0: %s/resource:3: expected three fields", fakesys_dev_path(f, "0009:02:00.0"));
    assert_contains(err.message, want);
    fakesys_free(f);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_bdf_accept),
        cmocka_unit_test(test_resource_parse_ok),
        cmocka_unit_test(test_resource_parse_bad),
        cmocka_unit_test(test_read_bars),
        cmocka_unit_test(test_bdf_reject),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_read_follows_changes),
    };
    const struct CMUnitTest tree[] = {
        cmocka_unit_test(test_fakesys_layout),
        cmocka_unit_test(test_read_ok),
        cmocka_unit_test(test_read_bad),
        cmocka_unit_test(test_read_root_default_and_slashes),
        cmocka_unit_test(test_read_culprits_truncated),
        cmocka_unit_test(test_driver_predicates),
        cmocka_unit_test(test_probe),
    };
    int r = cmocka_run_group_tests_name("host", pure, NULL, NULL);
    r += cmocka_run_group_tests_name("host-sysfs", tree, setup_tree, teardown_tree);
    return r;
}
