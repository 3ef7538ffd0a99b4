/* bdf.c — PCI address parsing: "dddd:bb:ss.f" or "bb:ss.f" into the canonical lowercase form.
 *
 * Strict on purpose: the canonical form is what the kernel prints in sysfs and what QEMU's `host` takes, so
 * anything looser ("9:1:0.0") would only hide typos. Digit counts are fixed (4/2/2/1); slot ≤ 0x1f, function ≤ 7.
 */
#include "smmuctl/bdf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define BDF_FORMS "expected dddd:bb:ss.f or bb:ss.f, e.g. 0009:01:00.0"

/* Length of the run of hex digits at p. */
static size_t bdf_hexrun(const char *p)
{
    size_t n = 0;
    while (isxdigit((unsigned char)p[n]))
        n++;
    return n;
}

static unsigned bdf_hexval(const char *p, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        int c = tolower((unsigned char)p[i]);
        v = v * 16 + (unsigned)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    return v;
}

/* One field [p, p+n): exactly `digits` hex digits with value ≤ max, else an error naming the field. */
static int bdf_field(const char *in, const char *name, const char *p, size_t n, size_t digits, unsigned max,
                     const char *range, unsigned *val, struct smmu_error *err)
{
    if (n == 0)
        return smmu_error_set(err, -EINVAL, "'%s': missing %s (%s)", in, name, BDF_FORMS);
    if (n != digits || bdf_hexrun(p) < n || bdf_hexval(p, n) > max)
        return smmu_error_set(err, -EINVAL, "'%s': bad %s '%.*s' (%s)", in, name, (int)n, p, range);
    *val = bdf_hexval(p, n);
    return 0;
}

int smmu_bdf_parse(const char *in, char out[SMMU_BDF_LEN + 1], struct smmu_error *err)
{
    unsigned dom = 0, bus, slot, fn;
    const char *p, *colon;
    size_t n;
    int r;

    if (!in || !*in)
        return smmu_error_set(err, -EINVAL, "empty PCI address (%s)", BDF_FORMS);
    if (!(colon = strchr(in, ':')))
        return smmu_error_set(err, -EINVAL, "'%s': not a PCI address (%s)", in, BDF_FORMS);
    p = in;
    if (strchr(colon + 1, ':')) { /* dddd:bb:ss.f */
        if ((r = bdf_field(in, "domain", p, (size_t)(colon - p), 4, 0xffff, "4 hex digits", &dom, err)) < 0)
            return r;
        p = colon + 1;
        colon = strchr(p, ':');
    } /* else bb:ss.f, domain 0000 */
    if ((r = bdf_field(in, "bus", p, (size_t)(colon - p), 2, 0xff, "2 hex digits, 00-ff", &bus, err)) < 0)
        return r;
    p = colon + 1;
    n = strcspn(p, ".");
    if ((r = bdf_field(in, "slot", p, n, 2, 0x1f, "2 hex digits, 00-1f", &slot, err)) < 0)
        return r;
    if (p[n] != '.')
        return smmu_error_set(err, -EINVAL, "'%s': expected '.' and a function (0-7) after slot '%.*s'", in,
                              (int)n, p);
    p += n + 1;
    n = bdf_hexrun(p);
    if ((r = bdf_field(in, "function", p, n, 1, 7, "0-7", &fn, err)) < 0)
        return r;
    p += n;
    if (*p)
        return smmu_error_set(err, -EINVAL, "'%s': trailing junk '%s' after the function", in, p);
    snprintf(out, SMMU_BDF_LEN + 1, "%04x:%02x:%02x.%x", dom, bus, slot, fn);
    return 0;
}
