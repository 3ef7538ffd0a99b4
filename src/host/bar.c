/* bar.c — a PCI device's BARs from sysfs `resource` (DESIGN §8).
 *
 * The kernel (drivers/pci/pci-sysfs.c, resource_show) writes one line per resource,
 *     "0x%016llx 0x%016llx 0x%016llx\n"   start, end (inclusive), IORESOURCE_* flags
 * lines 0-5 being BAR0..BAR5, line 6 the expansion ROM, then bridge windows; an unused resource is an all-zero
 * line (so is the upper half of a 64-bit BAR). The flags that matter here: IORESOURCE_IO 0x100,
 * IORESOURCE_MEM 0x200, IORESOURCE_PREFETCH 0x2000, IORESOURCE_MEM_64 0x100000.
 */
#include "smmuctl/host.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define IORESOURCE_IO 0x100u
#define IORESOURCE_MEM 0x200u
#define IORESOURCE_PREFETCH 0x2000u
#define IORESOURCE_MEM_64 0x100000u

/* One "0x<1-16 hex digits>" token at *p; advances *p past it. */
static bool bar_hex(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    int digits = 0;

    if (end - s < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
        return false;
    for (s += 2; s < end && isxdigit((unsigned char)*s); s++) {
        if (++digits > 16)
            return false;
        v = v << 4 | (uint64_t)(isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10));
    }
    if (!digits)
        return false;
    *p = s;
    *out = v;
    return true;
}

/* Parse one line [s, e) into start/end/flags; false with a reason in why. */
static bool bar_line(const char *s, const char *e, uint64_t v[3], const char **why)
{
    for (int i = 0; i < 3; i++) {
        if (i) {
            if (s >= e || (*s != ' ' && *s != '\t')) {
                *why = "expected three fields \"0x<start> 0x<end> 0x<flags>\"";
                return false;
            }
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
        }
        if (!bar_hex(&s, e, &v[i])) {
            *why = i == 0 ? "start is not a 0x hex number" : i == 1 ? "end is not a 0x hex number"
                                                                    : "flags is not a 0x hex number";
            return false;
        }
    }
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    if (s != e) {
        *why = "trailing text after the three fields";
        return false;
    }
    return true;
}

int smmu_host_parse_resource(const char *text, size_t len, const char *path, struct smmu_host_bar bars[SMMU_HOST_NBARS],
                             struct smmu_error *err)
{
    const char *p = text, *end = text + len;
    unsigned line = 0;

    memset(bars, 0, SMMU_HOST_NBARS * sizeof(*bars));
    if (!path)
        path = "resource";
    if (memchr(text, 0, len))
        return smmu_error_set(err, -EINVAL, "%s: contains a NUL byte (not a sysfs resource file)", path);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        const char *why = NULL;
        uint64_t v[3];

        line++;
        if (!bar_line(p, le, v, &why))
            return smmu_error_set(err, -EINVAL, "%s:%u: %s (got '%.*s')", path, line, why,
                                  (int)(le - p > 80 ? 80 : le - p), p);
        if (v[1] < v[0])
            return smmu_error_set(err, -EINVAL, "%s:%u: end 0x%" PRIx64 " lies before start 0x%" PRIx64, path,
                                  line, v[1], v[0]);
        if (line <= SMMU_HOST_NBARS && (v[0] || v[1])) {
            struct smmu_host_bar *b = &bars[line - 1];
            uint64_t f = v[2];

            if (v[0] == 0 && v[1] == UINT64_MAX)
                return smmu_error_set(err, -EINVAL, "%s:%u: a BAR spanning all of 0..2^64-1", path, line);
            if (!(f & (IORESOURCE_IO | IORESOURCE_MEM)) || (f & IORESOURCE_IO && f & IORESOURCE_MEM))
                return smmu_error_set(err, -EINVAL,
                                      "%s:%u: BAR%u flags 0x%" PRIx64
                                      " must have exactly one of IORESOURCE_MEM (0x200) and IORESOURCE_IO (0x100)",
                                      path, line, line - 1, f);
            b->size = v[1] - v[0] + 1;
            b->flags = f;
            b->io = f & IORESOURCE_IO;
            b->mem64 = !b->io && (f & IORESOURCE_MEM_64);
            b->prefetch = !b->io && (f & IORESOURCE_PREFETCH);
        }
        p = nl ? nl + 1 : end;
    }
    if (line < SMMU_HOST_NBARS)
        return smmu_error_set(err, -EINVAL, "%s: %u line%s, expected at least %d (BAR0-BAR5, then the ROM)", path,
                              line, line == 1 ? "" : "s", SMMU_HOST_NBARS);
    return 0;
}

void smmu_host_size_str(uint64_t size, char *out, size_t n)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;

    while (u < 6 && size && (size & 1023) == 0) {
        size >>= 10;
        u++;
    }
    snprintf(out, n, "%" PRIu64 " %s", size, unit[u]);
}
