/* doctor.c — preflight findings (DESIGN §8): host readiness from sysfs and /dev, VM readiness from the facts
 * discovery already has. See smmuctl/doctor.h.
 *
 * The VM side places the devices exactly as attach would (smmu_plan_attach on the same facts) and judges that
 * placement: so doctor and attach can never disagree about which vSMMU and root port a device gets. */
#define _GNU_SOURCE
#include "smmuctl/doctor.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "smmuctl/layout.h"
#include "smmuctl/plan.h"

/* ---- the list ---- */

static struct smmu_finding dr_scratch; /* written to (and dropped) when the list cannot grow */

void smmu_doctor_free(struct smmu_doctor *d)
{
    free(d->f);
    memset(d, 0, sizeof(*d));
}

/* A new finding (fields filled by the caller), or the scratch one with d->cap set to SIZE_MAX on ENOMEM. */
static struct smmu_finding *dr_add(struct smmu_doctor *d, enum smmu_finding_status st, const char *check,
                                   const char *subject)
{
    struct smmu_finding *f;
    if (d->cap == SIZE_MAX)
        return memset(&dr_scratch, 0, sizeof(dr_scratch));
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 16;
        struct smmu_finding *nf = realloc(d->f, nc * sizeof(*nf));
        if (!nf) {
            d->cap = SIZE_MAX;
            return memset(&dr_scratch, 0, sizeof(dr_scratch));
        }
        d->f = nf;
        d->cap = nc;
    }
    f = &d->f[d->n++];
    memset(f, 0, sizeof(*f));
    f->status = st;
    d->counts[st]++;
    snprintf(f->check, sizeof(f->check), "%s", check);
    snprintf(f->subject, sizeof(f->subject), "%s", subject ? subject : "");
    return f;
}

#define DR_SET(field, ...) snprintf((field), sizeof(field), __VA_ARGS__)

static int dr_result(const struct smmu_doctor *d)
{
    return d->cap == SIZE_MAX ? -ENOMEM : 0;
}

static const char *dr_root(const char *r, const char *dflt)
{
    return r && *r ? r : dflt;
}

static bool dr_exists(const char *path, bool dir)
{
    struct stat st;
    return stat(path, &st) == 0 && (!dir || S_ISDIR(st.st_mode));
}

/* ---- host ---- */

/* "BAR0 16 MiB (32-bit), BAR2 128 GiB (64-bit prefetchable)" */
static void dr_bars_str(const struct smmu_host_dev *h, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < SMMU_HOST_NBARS && n < len; i++) {
        const struct smmu_host_bar *b = &h->bars[i];
        char sz[32];
        if (!b->size)
            continue;
        smmu_host_size_str(b->size, sz, sizeof(sz));
        n += (size_t)snprintf(buf + n, len - n, "%sBAR%d %s (%s%s)", n ? ", " : "", i, sz,
                              b->io ? "I/O" : b->mem64 ? "64-bit" : "32-bit", b->prefetch ? " prefetchable" : "");
    }
    if (!buf[0])
        snprintf(buf, len, "no memory BARs");
}

static void dr_host_dev(struct smmu_doctor *d, const char *dev_root, const struct smmu_host_dev *h, bool *ok)
{
    const char *b = h->bdf;
    struct smmu_finding *f;
    struct smmu_error e = SMMU_ERROR_INIT;

    if (smmu_host_driver_is_vfio(h->driver)) {
        f = dr_add(d, SMMU_FINDING_OK, "driver", b);
        DR_SET(f->what, "bound to %s", h->driver);
    } else {
        f = dr_add(d, SMMU_FINDING_FAIL, "driver", b);
        if (h->driver[0])
            DR_SET(f->what, "bound to %s, not vfio-pci", h->driver);
        else
            DR_SET(f->what, "bound to no driver, not vfio-pci");
        DR_SET(f->why, "VFIO passthrough needs the device on vfio-pci (or a vfio-pci variant driver); smmuctl "
                       "never rebinds drivers, so attach refuses it");
        DR_SET(f->fix, "driverctl set-override %s vfio-pci (or: echo vfio-pci > /sys/bus/pci/devices/%s/"
                       "driver_override; echo %s > /sys/bus/pci/drivers/vfio-pci/bind); libvirt: <hostdev "
                       "managed='yes'> does it at VM start, not for a hot-plug", b, b, b);
    }

    if (h->iommu_group < 0) {
        f = dr_add(d, SMMU_FINDING_FAIL, "iommu-group", b);
        DR_SET(f->what, "in no IOMMU group (sysfs has no iommu_group link)");
        DR_SET(f->why, "VFIO hands a whole IOMMU group to the VM; a device outside any group cannot be passed");
        DR_SET(f->fix, "enable the IOMMU (arm-smmu-v3 driver; on x86 intel_iommu=on / amd_iommu=on)");
    } else if (h->group_culprits[0]) {
        f = dr_add(d, SMMU_FINDING_FAIL, "iommu-group", b);
        DR_SET(f->what, "IOMMU group %d not viable: %s", h->iommu_group, h->group_culprits);
        DR_SET(f->why, "every other device of the group must be on vfio-pci, pci-stub, pcieport or no driver, or "
                       "VFIO refuses the group");
        DR_SET(f->fix, "bind the other members to vfio-pci too (driverctl set-override BDF vfio-pci), or unbind "
                       "them (see /sys/kernel/iommu_groups/%d/devices)", h->iommu_group);
    } else {
        f = dr_add(d, SMMU_FINDING_OK, "iommu-group", b);
        DR_SET(f->what, "IOMMU group %d is viable", h->iommu_group);
    }

    if (h->smmu[0]) {
        f = dr_add(d, SMMU_FINDING_OK, "host-smmu", b);
        DR_SET(f->what, "behind host SMMU %s", h->smmu);
    } else {
        f = dr_add(d, SMMU_FINDING_FAIL, "host-smmu", b);
        DR_SET(f->what, "behind no IOMMU (sysfs has no iommu link)");
        DR_SET(f->why, "smmuctl places each device behind the vSMMU that mirrors its host SMMU");
        DR_SET(f->fix, "enable the SMMU in firmware and load its driver (arm-smmu-v3)");
    }

    if (h->cdev[0]) {
        char node[4096];
        snprintf(node, sizeof(node), "%s/vfio/devices/%s", dev_root, h->cdev);
        if (dr_exists(node, false)) {
            f = dr_add(d, SMMU_FINDING_OK, "vfio-cdev", b);
            DR_SET(f->what, "VFIO cdev %s", node);
        } else {
            f = dr_add(d, SMMU_FINDING_FAIL, "vfio-cdev", b);
            DR_SET(f->what, "sysfs names the VFIO cdev %s, but %s does not exist", h->cdev, node);
            DR_SET(f->why, "QEMU's iommufd backend (and attach --fd-pass) opens the device through its cdev");
            DR_SET(f->fix, "check --dev (udev creates /dev/vfio/devices/vfioN when vfio-pci binds the device)");
        }
    } else if (smmu_host_driver_is_vfio(h->driver)) {
        f = dr_add(d, SMMU_FINDING_FAIL, "vfio-cdev", b);
        DR_SET(f->what, "no VFIO cdev (sysfs has no vfio-dev/vfioN)");
        DR_SET(f->why, "QEMU's iommufd backend opens the device through its cdev /dev/vfio/devices/vfioN");
        DR_SET(f->fix, "a kernel with CONFIG_VFIO_DEVICE_CDEV=y");
    }

    if (h->have_bars) {
        uint64_t p64, mem;
        char bars[384], a[32], m[32];
        dr_bars_str(h, bars, sizeof(bars));
        smmu_layout_windows(h->bars, &p64, &mem);
        smmu_host_size_str(p64, a, sizeof(a));
        smmu_host_size_str(mem, m, sizeof(m));
        f = dr_add(d, SMMU_FINDING_OK, "bars", b);
        DR_SET(f->what, "%s: its root port needs pref64-reserve %s and mem-reserve %s (as layout sizes them)", bars,
               p64 ? a : "0 (none)", mem ? m : "0 (none)");
    } else {
        f = dr_add(d, SMMU_FINDING_WARN, "bars", b);
        DR_SET(f->what, "no sysfs resource file: its BAR sizes are unknown");
        DR_SET(f->why, "without them nothing can tell whether a root port's reserved windows fit the device");
        DR_SET(f->fix, "the kernel writes /sys/bus/pci/devices/%s/resource on every host: check --sysfs", b);
    }
    *ok = smmu_host_check(h, false, &e) == 0;
}

int smmu_doctor_host(struct smmu_doctor *d, const char *sysfs_root, const char *dev_root, const char *const *devs,
                     size_t n, struct smmu_host_dev *hosts_out, bool *ok_out)
{
    const char *dr = dr_root(dev_root, "/dev");
    char path[4096];
    struct smmu_finding *f;

    snprintf(path, sizeof(path), "%s/iommu", dr);
    if (dr_exists(path, false)) {
        f = dr_add(d, SMMU_FINDING_OK, "iommufd", path);
        DR_SET(f->what, "present");
    } else {
        f = dr_add(d, SMMU_FINDING_FAIL, "iommufd", path);
        DR_SET(f->what, "does not exist");
        DR_SET(f->why, "the iommufd object every vfio-pci device behind a vSMMU uses opens it (attach --fd-pass "
                       "passes it); QEMU refuses: \"/dev/iommu does not exist (is your kernel config missing "
                       "CONFIG_IOMMUFD?)\"");
        DR_SET(f->fix, "modprobe iommufd (a kernel with CONFIG_IOMMUFD)");
    }
    snprintf(path, sizeof(path), "%s/vfio/devices", dr);
    if (dr_exists(path, true)) {
        f = dr_add(d, SMMU_FINDING_OK, "vfio-cdev", path);
        DR_SET(f->what, "present (VFIO device cdevs)");
    } else {
        f = dr_add(d, SMMU_FINDING_FAIL, "vfio-cdev", path);
        DR_SET(f->what, "does not exist");
        DR_SET(f->why, "with iommufd QEMU opens each device through its VFIO cdev /dev/vfio/devices/vfioN");
        DR_SET(f->fix, "modprobe vfio-pci on a kernel with CONFIG_VFIO_DEVICE_CDEV=y");
    }

    for (size_t i = 0; i < n; i++) {
        struct smmu_host_dev h;
        struct smmu_error e = SMMU_ERROR_INIT;
        char bdf[SMMU_BDF_LEN + 1] = "";
        bool ok = false;
        memset(&h, 0, sizeof(h));
        if (smmu_bdf_parse(devs[i], bdf, &e) < 0 ||
            smmu_host_read(dr_root(sysfs_root, "/sys"), bdf, &h, &e) < 0) {
            size_t l = strlen(devs[i]);
            const char *msg = e.message;
            f = dr_add(d, SMMU_FINDING_FAIL, "device", devs[i]);
            if (!strncmp(msg, devs[i], l) && !strncmp(msg + l, ": ", 2))
                msg += l + 2; /* the subject names it already */
            else if (!strncmp(msg, bdf, strlen(bdf)) && !strncmp(msg + strlen(bdf), ": ", 2))
                msg += strlen(bdf) + 2;
            DR_SET(f->what, "%s", msg);
            DR_SET(f->why, "smmuctl reads every fact about a host device from sysfs");
            DR_SET(f->fix, "name an existing PCI function (lspci -D), and --sysfs if sysfs is elsewhere");
        } else {
            dr_host_dev(d, dr, &h, &ok);
        }
        if (hosts_out)
            hosts_out[i] = h;
        if (ok_out)
            ok_out[i] = ok;
    }
    return dr_result(d);
}

/* ---- VM ---- */

static const char *dr_vname(const struct smmu_vsmmu *v)
{
    return v->id[0] ? v->id : v->path;
}

static bool dr_port_free(const struct smmu_topology *t, size_t i)
{
    const struct smmu_rootport *rp = &t->ports[i];
    if (!rp->id[0] || !rp->hotplug || rp->occupant_id[0] || rp->occupant_path[0])
        return false;
    for (size_t k = 0; k < t->n_vfio; k++)
        if (t->vfio[k].rootport == (int)i)
            return false;
    return true;
}

static bool dr_on(const struct smmu_topology *t, const struct smmu_rootport *rp, int v)
{
    return v >= 0 ? rp->vsmmu == v : (rp->vsmmu < 0 || (size_t)rp->vsmmu >= t->n_vsmmus);
}

static void dr_qemu(struct smmu_doctor *d, const struct smmu_topology *t)
{
    struct smmu_finding *f;
    int ver = t->qemu_major * 100 + t->qemu_minor;
    char subject[64];
    snprintf(subject, sizeof(subject), "QEMU %d.%d.%d", t->qemu_major, t->qemu_minor, t->qemu_micro);
    if (ver < 900) {
        f = dr_add(d, SMMU_FINDING_FAIL, "qemu-version", subject);
        DR_SET(f->what, "older than 9.0: no iommufd object");
        DR_SET(f->why, "smmuctl plugs every device through a shared iommufd object (QEMU 9.0+)");
        DR_SET(f->fix, "QEMU 11 (vSMMU accel=on needs 11.0; user-creatable arm-smmuv3 10.2)");
    } else if (ver < 1002) {
        f = dr_add(d, SMMU_FINDING_WARN, "qemu-version", subject);
        DR_SET(f->what, "older than 10.2: no user-creatable arm-smmuv3 (vSMMU)");
        DR_SET(f->why, "devices can only go behind no vIOMMU");
        DR_SET(f->fix, "QEMU 11 (vSMMU accel=on needs 11.0)");
    } else {
        f = dr_add(d, SMMU_FINDING_OK, "qemu-version", subject);
        DR_SET(f->what, "%s", ver >= 1100 ? "has arm-smmuv3 with accel, iommufd and qom-list-get"
                                          : "has arm-smmuv3 and iommufd (accel=on needs 11.0)");
    }
}

static void dr_iommufd_object(struct smmu_doctor *d, const struct smmu_topology *t)
{
    struct smmu_finding *f = dr_add(d, SMMU_FINDING_OK, "iommufd-object", "VM");
    if (t->n_iommufds) {
        size_t n = 0;
        for (size_t i = 0; i < t->n_iommufds && n < sizeof(f->what); i++)
            n += (size_t)snprintf(f->what + n, sizeof(f->what) - n, "%s%s", i ? ", " : "iommufd objects: ",
                                  t->iommufds[i]);
        if (smmu_topology_has_iommufd(t, "iommufd0") && n < sizeof(f->what))
            snprintf(f->what + n, sizeof(f->what) - n, " (attach reuses iommufd0)");
    } else {
        DR_SET(f->what, "no iommufd object yet: attach adds iommufd0 (object-add; QEMU opens /dev/iommu, or "
                        "attach --fd-pass passes it)");
    }
}

/* The VM without devices to judge: free ports per vSMMU (and behind none), and what each one reserves. */
static void dr_free_ports(struct smmu_doctor *d, const struct smmu_topology *t, int v, bool needed)
{
    char subject[SMMU_ID_LEN + 16], list[384] = "";
    size_t nfree = 0, n = 0;
    struct smmu_finding *f;
    for (size_t i = 0; i < t->n_ports; i++)
        if (dr_on(t, &t->ports[i], v) && dr_port_free(t, i)) {
            nfree++;
            if (n < sizeof(list))
                n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", t->ports[i].id);
        }
    snprintf(subject, sizeof(subject), "%s", v >= 0 ? dr_vname(&t->vsmmus[v]) : "VM");
    if (nfree) {
        f = dr_add(d, SMMU_FINDING_OK, "free-ports", subject);
        DR_SET(f->what, "%zu free hot-pluggable root port%s%s: %s", nfree, nfree == 1 ? "" : "s",
               v >= 0 ? "" : " behind no vSMMU", list);
        return;
    }
    f = dr_add(d, needed ? SMMU_FINDING_FAIL : SMMU_FINDING_WARN, "free-ports", subject);
    DR_SET(f->what, "no free hot-pluggable root port%s", v >= 0 ? "" : " in the VM");
    DR_SET(f->why, "root ports cannot be hot-plugged: a device can only go on one that exists since launch");
    DR_SET(f->fix, "launch the VM with more -device pcie-root-port,id=…,bus=%s,chassis=N,port=N (libvirt: "
                   "<controller type='pci' model='pcie-root-port'> on that bus); smmuctl layout --spare N",
           v >= 0 && t->vsmmus[v].pxb_id[0] ? t->vsmmus[v].pxb_id : "pcie.0");
}

/* One free port's windows against the devices that would go behind its vSMMU (placements on v). */
static void dr_port_windows(struct smmu_doctor *d, const struct smmu_topology *t, size_t i, int v,
                            const struct smmu_plan *p, const struct smmu_host_dev *hosts)
{
    const struct smmu_rootport *rp = &t->ports[i];
    char fits[256] = "", bad[640] = "", fixes[128] = "";
    size_t nf = 0, nb = 0;
    bool warn = false;
    struct smmu_finding *f;
    for (size_t k = 0; k < p->n_placements; k++) {
        const struct smmu_placement *pl = &p->placements[k];
        struct smmu_fit fit;
        char what[256];
        if (pl->vsmmu != v)
            continue;
        smmu_plan_port_fit(rp, &hosts[k], &fit);
        if (fit.fits) {
            if (nf < sizeof(fits))
                nf += (size_t)snprintf(fits + nf, sizeof(fits) - nf, "%s%s", nf ? ", " : "", pl->bdf);
            continue;
        }
        smmu_plan_fit_str(rp, &fit, what, sizeof(what));
        if (nb < sizeof(bad))
            nb += (size_t)snprintf(bad + nb, sizeof(bad) - nb, "%s%s: %s%s", nb ? "; " : "", pl->bdf, what,
                                   pl->fits ? "" : " (no other free port fits it either)");
        if (!pl->fits) {
            warn = true;
            smmu_plan_fit_fix(rp, &fit, fixes, sizeof(fixes));
        }
    }
    if (!nf && !nb)
        return; /* no device of this request goes behind this vSMMU */
    if (!nb) {
        char have[128];
        size_t n = 0;
        const struct { const char *name; const struct smmu_reserve *r; } w[] = {
            {"pref64", &rp->pref64_reserve}, {"pref32", &rp->pref32_reserve}, {"mem", &rp->mem_reserve}};
        for (size_t j = 0; j < 3 && n < sizeof(have); j++) {
            char sz[32];
            if (!w[j].r->set)
                continue;
            smmu_host_size_str(w[j].r->value, sz, sizeof(sz));
            n += (size_t)snprintf(have + n, sizeof(have) - n, "%s%s-reserve %s", n ? ", " : "", w[j].name, sz);
        }
        f = dr_add(d, SMMU_FINDING_OK, "windows", rp->id);
        DR_SET(f->what, "windows %s fit %s", n ? have : "(none reserved)", fits);
        return;
    }
    f = dr_add(d, warn ? SMMU_FINDING_WARN : SMMU_FINDING_OK, "windows", rp->id);
    DR_SET(f->what, "reserved windows too small for %s%s%s", bad, nf ? "; fits " : "", fits);
    if (!warn) {
        DR_SET(f->why, "another free port behind the same vSMMU fits: placement prefers it");
        return;
    }
    DR_SET(f->why, "QEMU accepts the device_add, but firmware sizes a hot-plug port's bridge windows at boot "
                   "(AAVMF/EDK2 gives none for prefetchable memory unless pref64-reserve says so): a BAR that "
                   "does not fit stays unassigned in the guest and its driver fails to probe");
    DR_SET(f->fix, "launch the VM with -device pcie-root-port,id=%s,…,%s (libvirt: mem-reserve is the root "
                   "port's <target memReserve='KiB'/>, pref64-reserve needs <qemu:override> on its alias; "
                   "smmuctl layout --format xml prints both)", rp->id, fixes);
}

static void dr_accel(struct smmu_doctor *d, const struct smmu_vsmmu *v, const char *smmu)
{
    struct smmu_finding *f = dr_add(d, v->accel ? SMMU_FINDING_OK : SMMU_FINDING_WARN, "accel", dr_vname(v));
    if (v->accel) {
        DR_SET(f->what, "accel=on: the host SMMU %s does the guest's stage-1 translation (nested)", smmu);
        return;
    }
    DR_SET(f->what, "accel=off: the guest's IOMMU for devices of %s is emulated by QEMU", smmu);
    DR_SET(f->why, "without accel every guest IOMMU map/unmap traps to QEMU and the device's DMA goes through "
                   "emulated translation (slow, no nested stage-1 on the host SMMU); accel=on needs QEMU 11 with "
                   "KVM (TCG refuses it)");
    DR_SET(f->fix, "-device arm-smmuv3,primary-bus=%s,id=%s,accel=on (libvirt: <iommu model='smmuv3'><driver "
                   "pciBus='N' accel='on'/></iommu>)", v->pxb_id[0] ? v->pxb_id : "pcie.N", dr_vname(v));
}

static void dr_numa(struct smmu_doctor *d, const struct smmu_vsmmu *v, const struct smmu_placement *pl)
{
    struct smmu_finding *f;
    if (pl->numa_node < 0) {
        f = dr_add(d, SMMU_FINDING_OK, "numa", pl->bdf);
        DR_SET(f->what, "the device reports no NUMA node (pxb %s: %s)", v->pxb_id,
               v->numa_node >= 0 ? "set" : "numa_node unset");
        return;
    }
    if (v->numa_node == pl->numa_node) {
        f = dr_add(d, SMMU_FINDING_OK, "numa", pl->bdf);
        DR_SET(f->what, "host NUMA node %d, pxb %s numa_node %d", pl->numa_node, v->pxb_id, v->numa_node);
        return;
    }
    f = dr_add(d, SMMU_FINDING_WARN, "numa", pl->bdf);
    if (v->numa_node < 0)
        DR_SET(f->what, "host NUMA node %d, but pxb %s has no numa_node (QEMU's 128: unset)", pl->numa_node,
               v->pxb_id);
    else
        DR_SET(f->what, "host NUMA node %d, but pxb %s has numa_node %d", pl->numa_node, v->pxb_id, v->numa_node);
    DR_SET(f->why, "the guest places the driver's memory and interrupts by the device's NUMA node: a wrong or "
                   "missing node costs cross-socket DMA (Grace: CPU-GPU memory locality)");
    DR_SET(f->fix, "-device pxb-pcie,id=%s,bus_nr=…,numa_node=%d with a guest NUMA node %d (libvirt: <controller "
                   "model='pcie-expander-bus'><target><node>%d</node></target>)", v->pxb_id[0] ? v->pxb_id : "…",
           pl->numa_node, pl->numa_node, pl->numa_node);
}

int smmu_doctor_vm(struct smmu_doctor *d, const struct smmu_facts *f, const struct smmu_host_dev *hosts, size_t n)
{
    const struct smmu_topology *t = &f->topo;
    struct smmu_plan_opts opts = SMMU_PLAN_OPTS_INIT;
    struct smmu_plan *p = NULL;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_finding *fd;

    dr_qemu(d, t);
    dr_iommufd_object(d, t);
    if (!t->n_vsmmus) {
        fd = dr_add(d, n ? SMMU_FINDING_WARN : SMMU_FINDING_OK, "vsmmu", "VM");
        DR_SET(fd->what, "no vSMMU (arm-smmuv3): devices go on free root ports with no vIOMMU in front");
        if (n) {
            DR_SET(fd->why, "on Arm servers with several host SMMUs each device must sit behind a vSMMU that "
                            "mirrors its own, or the guest gets no IOMMU for it (no nested translation, no "
                            "per-device isolation in the guest)");
            DR_SET(fd->fix, "launch with one -device pxb-pcie,id=pcie.K,bus_nr=N + -device arm-smmuv3,"
                            "primary-bus=pcie.K,accel=on per host SMMU (libvirt: <iommu model='smmuv3'><driver "
                            "pciBus='K' accel='on'/>); smmuctl layout DEV... prints the set");
        }
    }
    if (!n) { /* nothing to place: what each vSMMU offers */
        for (size_t v = 0; v < t->n_vsmmus; v++)
            dr_free_ports(d, t, (int)v, false);
        if (!t->n_vsmmus)
            dr_free_ports(d, t, -1, false);
        return dr_result(d);
    }
    if (smmu_plan_attach(t, hosts, n, f->vfio_hosts, f->n_vfio_hosts, f->bindings, f->n_bindings,
                         (const char *const *)f->attached, f->n_attached, (const char *const *)f->booked,
                         f->n_booked, &opts, &p, &e) < 0) {
        fd = dr_add(d, SMMU_FINDING_FAIL, "vsmmu", "VM");
        DR_SET(fd->what, "attach would refuse: %s", e.message);
        DR_SET(fd->why, "each device must go on a free root port behind the vSMMU bound to its host SMMU (or an "
                        "unbound one); vSMMUs and root ports cannot be hot-plugged");
        DR_SET(fd->fix, "launch the VM with a pxb-pcie + arm-smmuv3 and free root ports for every host SMMU in "
                        "use: smmuctl layout DEV... prints them (QEMU arguments or libvirt XML)");
        for (size_t v = 0; v < t->n_vsmmus; v++)
            dr_free_ports(d, t, (int)v, false);
        return dr_result(d);
    }
    /* per vSMMU in use (in placement order): the binding, accel, free ports, each free port's windows */
    for (size_t k = 0; k < p->n_placements; k++) {
        const struct smmu_placement *pl = &p->placements[k];
        bool seen = false;
        for (size_t j = 0; j < k; j++)
            seen |= p->placements[j].vsmmu == pl->vsmmu;
        if (seen)
            continue;
        if (pl->vsmmu >= 0) {
            const struct smmu_vsmmu *v = &t->vsmmus[pl->vsmmu];
            fd = dr_add(d, pl->mismatch ? SMMU_FINDING_WARN : SMMU_FINDING_OK, "vsmmu", pl->host_smmu);
            DR_SET(fd->what, "vSMMU %s (pxb %s): %s", dr_vname(v), v->pxb_id, pl->reason);
            dr_accel(d, v, pl->host_smmu);
        }
        dr_free_ports(d, t, pl->vsmmu, true);
        for (size_t i = 0; i < t->n_ports; i++)
            if (dr_on(t, &t->ports[i], pl->vsmmu) && dr_port_free(t, i))
                dr_port_windows(d, t, i, pl->vsmmu, p, hosts);
    }
    for (size_t k = 0; k < p->n_placements; k++)
        if (p->placements[k].vsmmu >= 0)
            dr_numa(d, &t->vsmmus[p->placements[k].vsmmu], &p->placements[k]);
    smmu_plan_free(p);
    return dr_result(d);
}

int smmu_doctor_exit_code(const struct smmu_doctor *d)
{
    return d->counts[SMMU_FINDING_FAIL] ? 6 : d->counts[SMMU_FINDING_WARN] ? 5 : 0;
}

const char *smmu_finding_status_name(enum smmu_finding_status s)
{
    return s == SMMU_FINDING_FAIL ? "fail" : s == SMMU_FINDING_WARN ? "warn" : "ok";
}

static json_t *dr_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

json_t *smmu_doctor_to_json(const struct smmu_doctor *d)
{
    json_t *o = json_object(), *arr = json_array();
    for (size_t i = 0; i < d->n; i++) {
        const struct smmu_finding *f = &d->f[i];
        json_t *x = json_object();
        json_object_set_new(x, "status", json_string(smmu_finding_status_name(f->status)));
        json_object_set_new(x, "check", json_string(f->check));
        json_object_set_new(x, "subject", json_string(f->subject));
        json_object_set_new(x, "what", json_string(f->what));
        json_object_set_new(x, "why", dr_str_or_null(f->why));
        json_object_set_new(x, "fix", dr_str_or_null(f->fix));
        json_array_append_new(arr, x);
    }
    json_object_set_new(o, "findings", arr);
    json_object_set_new(o, "summary", json_pack("{s:I,s:I,s:I}", "ok", (json_int_t)d->counts[0], "warn",
                                                (json_int_t)d->counts[1], "fail", (json_int_t)d->counts[2]));
    return o;
}
