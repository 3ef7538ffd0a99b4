/* test_xml.c — libvirt <hostdev> XML: valid files (tests/data/xml/valid) parse to the expected devices, each
 * invalid file (tests/data/xml/invalid) fails with file:line and a reason, and libxml2 never prints. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <libxml/parser.h>
#include <libxml/xmlerror.h>

#include "smmuctl/xml.h"
#include "support/testutil.h"

#define DATA SMMU_SOURCE_DIR "/tests/data/xml"

static void assert_contains(const char *hay, const char *needle)
{
    if (needle && !strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

/* ---------------------------------------------------------------- valid files */

struct want {
    const char *bdf;
    bool managed;
    const char *alias;
    enum smmu_xml_iommufd iommufd;
    bool has_guest;
    struct smmu_xml_pci_addr guest;
    long line;
};

#define YES SMMU_XML_IOMMUFD_YES
#define NO SMMU_XML_IOMMUFD_NO
#define DEF SMMU_XML_IOMMUFD_DEFAULT

static const struct {
    const char *file;
    size_t n;
    struct want w[4];
} valid[] = {
    /* shared/libvirt/hostdev-iommufd.xml, verbatim */
    {"hostdev-iommufd.xml", 1, {{"0019:01:00.0", false, "ua-gpu1", YES, false, {0, 0, 0, 0}, 1}}},
    /* shared/libvirt/domain-multi-smmuv3.xml, verbatim: guest address on root port pci.21 (bus 0x15) */
    {"domain-multi-smmuv3.xml", 1, {{"0009:01:00.0", false, "", YES, true, {0, 0x15, 0, 0}, 28}}},
    /* domain default iommufd, overridden by one hostdev; non-ua alias dropped; decimal/octal numbers;
     * all-zero guest address = none */
    {"domain-several-hostdevs.xml", 3,
     {{"0009:01:00.0", true, "ua-gpu0", YES, true, {0, 0x15, 0, 0}, 10},
      {"0019:01:00.1", false, "", NO, false, {0, 0, 0, 0}, 17},
      {"0019:0a:08.7", false, "", YES, false, {0, 0, 0, 0}, 24}}},
    /* <devices> root, other devices ignored, uppercase hex and 0X */
    {"devices-hostdevs.xml", 2,
     {{"000a:ff:1f.7", false, "ua-nic_1.a", YES, false, {0, 0, 0, 0}, 2},
      {"0000:02:03.0", false, "", DEF, true, {0, 0x16, 1, 2}, 10}}},
    /* several bare hostdevs after an XML declaration: line numbers are those of the file */
    {"bare-hostdevs.xml", 2,
     {{"0009:01:00.0", false, "ua-gpu1", DEF, false, {0, 0, 0, 0}, 3},
      {"0009:02:00.0", false, "", NO, false, {0, 0, 0, 0}, 7}}},
};

static void check_hostdevs(const char *what, const struct smmu_xml_hostdev *v, size_t n, const struct want *w,
                           size_t wn)
{
    if (n != wn)
        fail_msg("%s: %zu hostdevs, expected %zu", what, n, wn);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].bdf, w[i].bdf) != 0)
            fail_msg("%s[%zu]: bdf %s, expected %s", what, i, v[i].bdf, w[i].bdf);
        assert_int_equal(v[i].managed, w[i].managed);
        assert_string_equal(v[i].alias, w[i].alias);
        assert_int_equal(v[i].iommufd, w[i].iommufd);
        assert_int_equal(v[i].has_guest_addr, w[i].has_guest);
        assert_int_equal(v[i].guest_addr.domain, w[i].guest.domain);
        assert_int_equal(v[i].guest_addr.bus, w[i].guest.bus);
        assert_int_equal(v[i].guest_addr.slot, w[i].guest.slot);
        assert_int_equal(v[i].guest_addr.function, w[i].guest.function);
        if (v[i].line != w[i].line)
            fail_msg("%s[%zu]: line %ld, expected %ld", what, i, v[i].line, w[i].line);
    }
}

static void test_valid_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        char path[PATH_MAX];
        struct smmu_xml_hostdev *v = NULL;
        struct smmu_error err = SMMU_ERROR_INIT;
        size_t n = 99;
        snprintf(path, sizeof(path), "%s/valid/%s", DATA, valid[i].file);
        if (smmu_xml_hostdevs_file(path, &v, &n, &err) != 0)
            fail_msg("%s: %s", valid[i].file, err.message);
        check_hostdevs(valid[i].file, v, n, valid[i].w, valid[i].n);
        smmu_xml_hostdevs_free(v);

        /* the in-memory entry point gives the same answer */
        size_t len;
        char *buf = smmu_test_read_file(path, &len);
        assert_non_null(buf);
        assert_int_equal(smmu_xml_hostdevs(buf, len, valid[i].file, &v, &n, &err), 0);
        check_hostdevs(valid[i].file, v, n, valid[i].w, valid[i].n);
        smmu_xml_hostdevs_free(v);
        free(buf);
    }
}

/* The shared hostdev must stay byte-identical to the copy tested here. */
static void test_shared_copy_current(void **state)
{
    (void)state;
    const char *names[] = {"hostdev-iommufd.xml", "domain-multi-smmuv3.xml"};
    for (size_t i = 0; i < 2; i++) {
        char a[PATH_MAX], b[PATH_MAX];
        size_t la, lb;
        snprintf(a, sizeof(a), "%s/libvirt/%s", SMMU_SHARED_DIR, names[i]);
        snprintf(b, sizeof(b), "%s/valid/%s", DATA, names[i]);
        char *x = smmu_test_read_file(a, &la), *y = smmu_test_read_file(b, &lb);
        if (!x) { /* the shared tree is optional outside this workspace */
            free(y);
            continue;
        }
        assert_non_null(y);
        assert_int_equal(la, lb);
        assert_memory_equal(x, y, la);
        free(x);
        free(y);
    }
}

/* ---------------------------------------------------------------- invalid files */

static const struct {
    const char *file;
    long line;          /* 0: message has no line (file-level) */
    const char *msg;
} invalid[] = {
    {"not-well-formed.xml", 4, "not well-formed XML: Opening and ending tag mismatch: source line 2 and sourc"},
    {"unclosed.xml", 5, "not well-formed XML: "},
    {"empty.xml", 0, "empty input: expected a <hostdev> element"},
    {"trailing-junk.xml", 6, "not well-formed XML: Extra content at the end of the document"},
    {"wrong-root.xml", 1, "expected <hostdev>, <devices> or <domain>, found <disk>"},
    {"domain-no-hostdev.xml", 1, "<domain> holds no <hostdev> element"},
    {"devices-no-hostdev.xml", 1, "<devices> holds no <hostdev> element"},
    {"hostdev-usb.xml", 2, "<hostdev type='usb'> is not supported: smmuctl attaches PCI devices (type='pci') only"},
    {"hostdev-scsi.xml", 1, "<hostdev type='scsi'> is not supported"},
    {"hostdev-mdev.xml", 8, "<hostdev type='mdev'> is not supported"},
    {"hostdev-capabilities.xml", 1, "<hostdev mode='capabilities'> is not supported"},
    {"hostdev-no-type.xml", 1, "<hostdev> has no type= (expected type='pci')"},
    {"missing-source.xml", 1, "<hostdev> has no <source> naming the host device"},
    {"missing-source-address.xml", 2, "<source> has no <address"},
    {"missing-domain.xml", 3, "hostdev source address: missing domain="},
    {"missing-function.xml", 3, "hostdev source address: missing function="},
    {"domain-out-of-range.xml", 3, "domain='0x10000' out of range (0-0xffff)"},
    {"bus-out-of-range.xml", 3, "bus='256' out of range (0-0xff)"},
    {"slot-out-of-range.xml", 3, "slot='0x20' out of range (0-0x1f)"},
    {"function-out-of-range.xml", 3, "function='8' out of range (0-0x7)"},
    {"bus-not-a-number.xml", 3, "bus='0xg1' is not a number"},
    {"bus-negative.xml", 3, "bus='-1' is not a number"},
    {"bus-octal-junk.xml", 3, "bus='09' is not a number"},
    {"bus-huge.xml", 3, "bus='99999999999999999999' out of range"},
    {"source-address-type.xml", 3, "hostdev source address: type='usb' is not a PCI address"},
    {"bad-managed.xml", 1, "<hostdev managed='true'>: expected 'yes' or 'no'"},
    {"bad-iommufd.xml", 2, "<driver iommufd='on'>: expected 'yes' or 'no'"},
    {"bad-driver-name.xml", 2, "<driver name='kvm'> is not supported"},
    {"bad-domain-iommufd.xml", 2, "<iommufd enabled='maybe'>: expected 'yes' or 'no'"},
    {"bad-alias.xml", 5, "<alias name='ua-my gpu'>: not usable as a QEMU device id"},
    {"guest-address-ccw.xml", 5, "guest <address type='ccw'> is not supported (only type='pci')"},
    {"guest-address-no-type.xml", 5, "guest <address> has no type="},
    {"guest-slot-out-of-range.xml", 5, "hostdev guest address: slot='0x20' out of range"},
    {"duplicate-device.xml", 7, "host device 0009:01:00.0 is listed twice (first at line 2)"},
    {"duplicate-alias.xml", 8, "alias ua-gpu is used twice (first at line 2)"},
    {"doctype-xxe.xml", 2, "DOCTYPE declarations are not accepted"},
    {"doctype-external-dtd.xml", 1, "DOCTYPE declarations are not accepted"},
    {"billion-laughs.xml", 2, "DOCTYPE declarations are not accepted"},
};

static void test_invalid_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        char path[PATH_MAX], prefix[PATH_MAX + 32];
        struct smmu_xml_hostdev *v = (void *)1;
        struct smmu_error err = SMMU_ERROR_INIT;
        size_t n = 99;
        int r;
        snprintf(path, sizeof(path), "%s/invalid/%s", DATA, invalid[i].file);
        r = smmu_xml_hostdevs_file(path, &v, &n, &err);
        if (r != -EINVAL)
            fail_msg("%s: expected -EINVAL, got %d (%s)", invalid[i].file, r, err.message);
        assert_int_equal(err.code, -EINVAL);
        assert_null(v);
        assert_int_equal(n, 0);
        if (invalid[i].line)
            snprintf(prefix, sizeof(prefix), "%s:%ld: ", path, invalid[i].line);
        else
            snprintf(prefix, sizeof(prefix), "%s: ", path);
        if (strncmp(err.message, prefix, strlen(prefix)) != 0)
            fail_msg("%s: message \"%s\" does not start with \"%s\"", invalid[i].file, err.message, prefix);
        assert_contains(err.message, invalid[i].msg);
    }
}

/* libxml2 must never write to stderr, whatever the input. */
static void test_libxml2_silent(void **state)
{
    (void)state;
    char *dir = smmu_test_mkdtemp("xmlstderr"), cap[PATH_MAX];
    snprintf(cap, sizeof(cap), "%s/stderr", dir);
    int fd = open(cap, O_CREAT | O_RDWR | O_TRUNC, 0600), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    assert_int_equal(dup2(fd, 2), 2);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        char path[PATH_MAX];
        struct smmu_xml_hostdev *v;
        size_t n;
        snprintf(path, sizeof(path), "%s/invalid/%s", DATA, invalid[i].file);
        (void)smmu_xml_hostdevs_file(path, &v, &n, NULL);
    }
    const char *odd[] = {"<", "<hostdev", "<a:hostdev xmlns:b='x'/>", "<hostdev>&undefined;</hostdev>",
                         "<hostdev>\xff\xfe</hostdev>", "<?xml version='1.0' encoding='bogus'?><hostdev/>"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        struct smmu_xml_hostdev *v;
        size_t n;
        struct smmu_error err = SMMU_ERROR_INIT;
        assert_int_equal(smmu_xml_hostdevs(odd[i], strlen(odd[i]), "odd", &v, &n, &err), -EINVAL);
        assert_contains(err.message, "odd:");
    }
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    close(fd);
    if (size != 0) {
        char *s = smmu_test_read_file(cap, NULL);
        fail_msg("libxml2 wrote to stderr: %s", s ? s : "?");
    }
    smmu_test_rmtree(dir);
    free(dir);
}

/* A caller's own libxml2 error handlers are left as they were. */
static int handler_calls;
#if LIBXML_VERSION >= 21200
static void my_handler(void *ctx, const xmlError *e)
#else
static void my_handler(void *ctx, xmlErrorPtr e)
#endif
{
    (void)ctx;
    (void)e;
    handler_calls++;
}

static void test_handlers_restored(void **state)
{
    (void)state;
    int tag;
    struct smmu_xml_hostdev *v;
    size_t n;
    xmlSetStructuredErrorFunc(&tag, my_handler);
    assert_int_equal(smmu_xml_hostdevs("<hostdev", 8, "x", &v, &n, NULL), -EINVAL);
    assert_int_equal(handler_calls, 0);
    assert_ptr_equal(xmlStructuredError, my_handler);
    assert_ptr_equal(xmlStructuredErrorContext, &tag);
    xmlSetStructuredErrorFunc(NULL, NULL);
}

/* ---------------------------------------------------------------- in-memory details */

static void test_memory_inputs(void **state)
{
    (void)state;
    struct smmu_xml_hostdev *v;
    struct smmu_error err = SMMU_ERROR_INIT;
    size_t n;
    const char *one = "<hostdev mode='subsystem' type='pci'><source>"
                      "<address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>";

    /* default source name */
    assert_int_equal(smmu_xml_hostdevs("<disk/>", 7, NULL, &v, &n, &err), -EINVAL);
    assert_string_equal(err.message, "<xml>:1: expected <hostdev>, <devices> or <domain>, found <disk>");
    /* NULL and empty */
    assert_int_equal(smmu_xml_hostdevs(NULL, 0, "req", &v, &n, &err), -EINVAL);
    assert_contains(err.message, "req: empty input");
    /* len is honoured: no NUL terminator needed, and bytes after len are ignored */
    char buf[512];
    snprintf(buf, sizeof(buf), "%sGARBAGE", one);
    assert_int_equal(smmu_xml_hostdevs(buf, strlen(one), "req", &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].bdf, "0009:01:00.0");
    assert_int_equal(v[0].iommufd, SMMU_XML_IOMMUFD_DEFAULT);
    assert_false(v[0].managed);
    smmu_xml_hostdevs_free(v);
    /* truncated: not well-formed */
    assert_int_equal(smmu_xml_hostdevs(one, strlen(one) - 3, "req", &v, &n, &err), -EINVAL);
    assert_contains(err.message, "req:1: not well-formed XML");
    /* a namespaced element of the same name is not a libvirt hostdev */
    const char *ns = "<devices xmlns:x='urn:x'><x:hostdev type='pci'/></devices>";
    assert_int_equal(smmu_xml_hostdevs(ns, strlen(ns), "req", &v, &n, &err), -EINVAL);
    assert_contains(err.message, "<devices> holds no <hostdev>");
    /* bare hostdev plus a non-hostdev sibling: the original well-formedness error stands */
    snprintf(buf, sizeof(buf), "%s\n<disk/>", one);
    assert_int_equal(smmu_xml_hostdevs(buf, strlen(buf), "req", &v, &n, &err), -EINVAL);
    assert_contains(err.message, "req:2: not well-formed XML: Extra content");
    /* a UTF-8 BOM before the declaration and several bare hostdevs */
    snprintf(buf, sizeof(buf), "\xef\xbb\xbf<?xml version='1.0'?>\n%s\n%s", one,
             "<hostdev type='pci'><source><address domain='0' bus='0' slot='2' function='1'/></source></hostdev>");
    assert_int_equal(smmu_xml_hostdevs(buf, strlen(buf), "req", &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[1].bdf, "0000:00:02.1");
    assert_int_equal(v[1].line, 3);
    smmu_xml_hostdevs_free(v);
    /* missing file */
    assert_int_equal(smmu_xml_hostdevs_file(DATA "/nonexistent.xml", &v, &n, &err), -ENOENT);
    assert_contains(err.message, "nonexistent.xml: cannot read");
    assert_int_equal(smmu_xml_hostdevs_file(DATA, &v, &n, &err), -EISDIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_files),
        cmocka_unit_test(test_shared_copy_current),
        cmocka_unit_test(test_invalid_files),
        cmocka_unit_test(test_libxml2_silent),
        cmocka_unit_test(test_handlers_restored),
        cmocka_unit_test(test_memory_inputs),
    };
    return cmocka_run_group_tests_name("xml", tests, NULL, NULL);
}
