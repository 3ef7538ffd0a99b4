/* smmuctl/doctor.h — preflight findings for `smmuctl doctor` (DESIGN §8).
 *
 * Host checks read sysfs and stat the /dev tree (both roots configurable, as for the other commands); VM checks
 * are pure over facts discovery already gathered (smmu_facts: the `topology` discovery, nothing more is sent to
 * QEMU) plus the host facts. Each finding is ok / warn / fail with what was seen, why it matters and how to fix
 * it (the QEMU option or libvirt element). The library prints nothing; the CLI renders the list.
 *
 * Contracts: smmu_doctor_host blocks on sysfs and stat only. smmu_doctor_vm is pure. The caller owns the
 * struct smmu_doctor and frees its list with smmu_doctor_free; JSON returned is a new reference.
 */
#ifndef SMMUCTL_DOCTOR_H
#define SMMUCTL_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "smmuctl/host.h"
#include "smmuctl/txn.h"

#ifdef __cplusplus
extern "C" {
#endif

enum smmu_finding_status { SMMU_FINDING_OK = 0, SMMU_FINDING_WARN = 1, SMMU_FINDING_FAIL = 2 };

struct smmu_finding {
    enum smmu_finding_status status;
    char check[32];          /* "iommufd", "vfio-cdev", "driver", "iommu-group", "host-smmu", "bars",
                                "qemu-version", "iommufd-object", "vsmmu", "accel", "free-ports", "windows", "numa" */
    char subject[160];       /* what it is about: a path, a BDF, a host SMMU, a vSMMU, a root port */
    char what[512];          /* what was seen */
    char why[384];           /* why it matters ("" for ok findings that need no explanation) */
    char fix[512];           /* how to fix it: the QEMU option or libvirt element, or a command ("" when ok) */
};

struct smmu_doctor {
    struct smmu_finding *f;
    size_t n, cap;
    size_t counts[3];        /* by status */
};

void smmu_doctor_free(struct smmu_doctor *d);

/* The host: <dev_root>/iommu, <dev_root>/vfio/devices, and for each device (BDFs as typed) its sysfs facts
 * (driver, IOMMU group, host SMMU, VFIO cdev and its <dev_root> node, BARs). hosts_out (n entries, may be
 * NULL) receives the facts read; ok_out[i] (may be NULL) whether device i passed every host check the planner
 * needs. sysfs_root/dev_root NULL or "" = "/sys" / "/dev". Returns 0, or -ENOMEM. */
int smmu_doctor_host(struct smmu_doctor *d, const char *sysfs_root, const char *dev_root, const char *const *devs,
                     size_t n, struct smmu_host_dev *hosts_out, bool *ok_out);

/* The VM, from discovery (f) and the host facts of the devices that passed the host checks (hosts[0..n)):
 * QEMU version, iommufd object, a vSMMU for every host SMMU in use (placed as attach would place them) and
 * accel, free hot-pluggable ports per vSMMU, each free port's windows against the devices' BARs, the pxb's
 * numa_node against the device's. Pure. Returns 0, or -ENOMEM. */
int smmu_doctor_vm(struct smmu_doctor *d, const struct smmu_facts *f, const struct smmu_host_dev *hosts, size_t n);

/* 0 every finding ok, 5 a warning, 6 a failure (the CLI's exit code). */
int smmu_doctor_exit_code(const struct smmu_doctor *d);
/* {"findings":[{"status","check","subject","what","why","fix"}…], "summary":{"ok":N,"warn":N,"fail":N}}; "why"
 * and "fix" are null when empty. New reference. */
json_t *smmu_doctor_to_json(const struct smmu_doctor *d);
const char *smmu_finding_status_name(enum smmu_finding_status s); /* "ok" | "warn" | "fail" */

#ifdef __cplusplus
}
#endif
#endif
