/* fit.c — does a root port's reserved windows fit a device's BARs (DESIGN §8)? Pure.
 *
 * The need is exactly what `layout` reserves for the device (smmu_layout_windows), so a VM launched with
 * layout's arguments fits by construction and the two can never disagree about sizes. */
#include "plan_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "smmuctl/layout.h"

#define FIT_4G (4ull << 30)

void smmu_plan_port_fit(const struct smmu_rootport *rp, const struct smmu_host_dev *dev, struct smmu_fit *out)
{
    memset(out, 0, sizeof(*out));
    if (dev->have_bars)
        smmu_layout_windows(dev->bars, &out->need_pref64, &out->need_mem);
    /* 64-bit prefetchable BARs go in the prefetchable window: pref64's, or a 32-bit one (below 4 GiB) */
    out->pref_ok = !out->need_pref64 ||
                   (rp->pref64_reserve.set && rp->pref64_reserve.value >= out->need_pref64) ||
                   (rp->pref32_reserve.set && rp->pref32_reserve.value >= out->need_pref64 &&
                    out->need_pref64 < FIT_4G);
    out->mem_ok = !out->need_mem || (rp->mem_reserve.set && rp->mem_reserve.value >= out->need_mem);
    out->fits = out->pref_ok && out->mem_ok;
}

/* "256 GiB", or "unset". */
static void fit_have(const struct smmu_reserve *r, char *buf, size_t len)
{
    if (!r->set)
        snprintf(buf, len, "unset");
    else
        smmu_host_size_str(r->value, buf, len);
}

void smmu_plan_fit_str(const struct smmu_rootport *rp, const struct smmu_fit *f, char *buf, size_t len)
{
    char need[32], have[32];
    size_t n = 0;
    buf[0] = 0;
    if (!f->pref_ok) {
        smmu_host_size_str(f->need_pref64, need, sizeof(need));
        fit_have(&rp->pref64_reserve, have, sizeof(have));
        if (rp->pref32_reserve.set && !rp->pref64_reserve.set) {
            char p32[32];
            smmu_host_size_str(rp->pref32_reserve.value, p32, sizeof(p32));
            n += (size_t)snprintf(buf + n, len - n, "pref64-reserve unset (pref32-reserve %s), the 64-bit "
                                  "prefetchable BARs need %s", p32, need);
        } else {
            n += (size_t)snprintf(buf + n, len - n, "pref64-reserve %s, the 64-bit prefetchable BARs need %s", have,
                                  need);
        }
    }
    if (!f->mem_ok && n < len) {
        smmu_host_size_str(f->need_mem, need, sizeof(need));
        fit_have(&rp->mem_reserve, have, sizeof(have));
        snprintf(buf + n, len - n, "%smem-reserve %s, the other memory BARs need %s", n ? "; " : "", have, need);
    }
}

/* QEMU's size syntax with the largest unit that divides exactly ("256G", "16M", "1536"). */
static void fit_qemu_size(uint64_t v, char *buf, size_t len)
{
    static const char units[] = "KMGTPE";
    int u = -1;
    while (u < 5 && v && (v & 1023) == 0) {
        v >>= 10;
        u++;
    }
    if (u < 0)
        snprintf(buf, len, "%" PRIu64, v);
    else
        snprintf(buf, len, "%" PRIu64 "%c", v, units[u]);
}

void smmu_plan_fit_fix(const struct smmu_rootport *rp, const struct smmu_fit *f, char *buf, size_t len)
{
    char a[32], b[32];
    /* QEMU refuses pref32-reserve with pref64-reserve ("PREF32 and PREF64 conflict"): the one replaces the other */
    const char *instead = !f->pref_ok && rp->pref32_reserve.set ? " instead of pref32-reserve" : "";
    buf[0] = 0;
    fit_qemu_size(f->need_pref64, a, sizeof(a));
    fit_qemu_size(f->need_mem, b, sizeof(b));
    if (!f->pref_ok && !f->mem_ok)
        snprintf(buf, len, "pref64-reserve=%s,mem-reserve=%s%s", a, b, instead);
    else if (!f->pref_ok)
        snprintf(buf, len, "pref64-reserve=%s%s", a, instead);
    else if (!f->mem_ok)
        snprintf(buf, len, "mem-reserve=%s", b);
}
