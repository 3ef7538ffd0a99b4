/* smmuctl/plan.h — pure placement (DESIGN §4) and the ordered QMP steps of an attach (DESIGN §5).
 *
 * No I/O: (topology, host facts, bindings, booked ports, request) → a plan, or a refusal whose message a
 * person can act on. The same inputs always give the same plan.
 *
 * Contracts: nothing here blocks or does I/O. Inputs are borrowed for the call only; a plan returned through
 * `struct smmu_plan **out` belongs to the caller (smmu_plan_free); JSON returned is a new reference.
 */
#ifndef SMMUCTL_PLAN_H
#define SMMUCTL_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "smmuctl/error.h"
#include "smmuctl/host.h"
#include "smmuctl/topology.h"
#include "smmuctl/xml.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A vSMMU → host SMMU binding known from outside the topology (the journal, fd-passed devices). */
struct smmu_binding {
    char vsmmu_id[SMMU_ID_LEN];
    char host_smmu[128];
};

struct smmu_plan_opts {
    unsigned version;               /* SMMU_PLAN_OPTS_VERSION */
    bool fd_pass;                   /* pass fds (getfd) instead of `host` */
    bool allow_mismatch;            /* allow a host-SMMU mismatch behind a NON-accel vSMMU */
    const char *iommufd_id;         /* NULL = "iommufd0" */
    const char *device_id;          /* --id: only with a single device; NULL = hostdev-<dddd>-<bb>-<ss>.<f> */
    const char *dev_root;           /* --dev root for fd paths; NULL = "/dev" */
    bool require_fit;               /* --require-fit: refuse (-ENOSPC) a device whose port's windows do not fit */
    /* --domain: the libvirt definition of this VM (borrowed: it must outlive the request, which the engine
     * copies shallowly). Unless `force`, any disagreement with the topology (smmu_domain_check) refuses the
     * plan (-EINVAL listing them). A requested device that is a hostdev of the domain takes its ua- alias as
     * QEMU id (--id still wins), and its guest <address> naming a root port (bus = controller index N → pci.N)
     * is a placement constraint: honoured, or refused with the reason (not a root port, not in the VM, taken,
     * behind a vSMMU bound to another host SMMU, behind no vSMMU in a VM that has them). */
    const struct smmu_domain *domain;
    const char *domain_file;        /* its name for messages */
    bool force;                     /* --force: plan despite disagreements (constraints and aliases still apply) */
};
#define SMMU_PLAN_OPTS_VERSION 1
#define SMMU_PLAN_OPTS_INIT {SMMU_PLAN_OPTS_VERSION, false, false, NULL, NULL, NULL, false}

enum smmu_step_kind {
    SMMU_STEP_GETFD,        /* getfd {fdname} with SCM_RIGHTS of fd_path */
    SMMU_STEP_OBJECT_ADD,   /* object-add iommufd */
    SMMU_STEP_DEVICE_ADD,   /* device_add vfio-pci */
};

struct smmu_step {
    enum smmu_step_kind kind;
    char name[SMMU_ID_LEN];         /* fdname (GETFD), object id (OBJECT_ADD), device id (DEVICE_ADD) */
    char fd_path[SMMU_PATH_LEN];    /* GETFD: file to open and pass */
    char bdf[SMMU_BDF_LEN + 1];     /* device steps: the host device */
    char port[SMMU_ID_LEN];         /* DEVICE_ADD: root port id */
    json_t *args;                   /* the command's "arguments" (owned by the plan) */
    const char *command;            /* "getfd" | "object-add" | "device_add" */
};

struct smmu_placement {
    char bdf[SMMU_BDF_LEN + 1];
    char host_smmu[128];
    int numa_node;
    int vsmmu;                      /* index into topology.vsmmus, -1 for a VM without vSMMU */
    char vsmmu_id[SMMU_ID_LEN];
    int port;                       /* index into topology.ports */
    char port_id[SMMU_ID_LEN];
    char device_id[SMMU_ID_LEN];
    char reason[256];               /* "vSMMU smmuv3.1 already bound to smmu3.0x…", "unbound vSMMU on NUMA node 0" */
    bool mismatch;                  /* placed with --allow-mismatch */
    bool fits;                      /* the port's reserved windows fit the device's BARs (smmu_plan_port_fit) */
    char fit[768];                  /* when !fits: what is missing and the fix, for people; "" when it fits */
};

struct smmu_plan {
    struct smmu_placement *placements; size_t n_placements;
    struct smmu_step *steps;           size_t n_steps;
    char iommufd_id[SMMU_ID_LEN];
    bool creates_iommufd;              /* the object does not exist yet: the plan adds it */
    struct smmu_binding *new_bindings; size_t n_new_bindings; /* vSMMUs this plan binds */
};

/* Plan an attach of n devices. hosts[i] are the facts of the requested devices in request order (already
 * read; the planner checks them with smmu_host_check). bindings: known vSMMU bindings beyond those implied
 * by topology vfio devices with a known host (their host SMMUs are given by host_of_vfio: facts of the
 * vfio devices' hosts, may be NULL/0). attached: BDFs already attached to this VM (vfio `host`s and journal
 * devices). booked: root port ids held by in-flight transactions.
 * A vSMMU's topology `bound_smmu` counts as a binding too; unknown vSMMU ids in `bindings` are ignored.
 * Placement rules and the JSON form: docs/plan-json.md. A vSMMU bound to the device's SMMU but full gives
 * way to an unbound one (which then becomes bound too).
 * Returns 0 and *out (free with smmu_plan_free), or a negative errno with err->message saying why:
 * -EINVAL (duplicate / already attached / bad --id or --iommufd / conflicting bindings), -ENODEV / -EBUSY
 * (host facts, from smmu_host_check), -ENOSPC (no place: names every vSMMU and its state). On failure *out
 * is NULL: a request is planned whole or not at all. */
int smmu_plan_attach(const struct smmu_topology *topo,
                     const struct smmu_host_dev *hosts, size_t n,
                     const struct smmu_host_dev *host_of_vfio, size_t n_host_of_vfio,
                     const struct smmu_binding *bindings, size_t n_bindings,
                     const char *const *attached, size_t n_attached,
                     const char *const *booked, size_t n_booked,
                     const struct smmu_plan_opts *opts,
                     struct smmu_plan **out, struct smmu_error *err);

void smmu_plan_free(struct smmu_plan *p);

/* Does a root port's reserved windows fit a device's BARs (DESIGN §8)? The device needs, per window, what
 * `layout` reserves for it (smmu_layout_windows: the BARs of that kind summed, rounded up to a multiple of the
 * largest, at least 1 MiB): its 64-bit prefetchable BARs in the port's pref64-reserve (or pref32-reserve),
 * every other memory BAR in mem-reserve. An unset reserve gives nothing: AAVMF/EDK2 gives a hot-plug port no
 * prefetchable window, and only a small (firmware-chosen) non-prefetchable one. A device without BAR facts
 * (no sysfs resource) needs nothing known: it fits. Pure. */
struct smmu_fit {
    uint64_t need_pref64;           /* bytes of 64-bit prefetchable window the device needs; 0 none */
    uint64_t need_mem;              /* bytes of non-prefetchable (32-bit) window; 0 none */
    bool pref_ok, mem_ok;
    bool fits;                      /* pref_ok && mem_ok */
};
void smmu_plan_port_fit(const struct smmu_rootport *rp, const struct smmu_host_dev *dev, struct smmu_fit *out);
/* For a port that does not fit: "pref64-reserve is unset, the BARs need 256 GiB; mem-reserve 8 MiB < 16 MiB"
 * into buf. "" when it fits. */
void smmu_plan_fit_str(const struct smmu_rootport *rp, const struct smmu_fit *f, char *buf, size_t len);
/* The QEMU option that would make a port fit ("pref64-reserve=256G,mem-reserve=16M" — the part to add to the
 * port's -device pcie-root-port; "… instead of pref32-reserve" when the port has one, which QEMU refuses
 * together with pref64-reserve) into buf; "" when it fits. */
void smmu_plan_fit_fix(const struct smmu_rootport *rp, const struct smmu_fit *f, char *buf, size_t len);
/* ---- a domain definition against the live VM (src/plan/domain.c) ---- */
struct smmu_domain_issue {
    char kind[24];          /* missing-pxb, extra-pxb, bus-nr, numa, missing-root-port, extra-root-port,
                               root-port-bus, root-port-target, hotplug, missing-vsmmu, extra-vsmmu, vsmmu-bus, accel,
                               hostdev; notes (not disagreements): machine-smmu, iommu-model */
    bool note;              /* not a disagreement: something smmuctl cannot check */
    long line;              /* line in the domain file, 0 when the VM has something the domain lacks */
    char message[320];
};
/* Every disagreement (and note) between domain d and topology t, by libvirt's id rules (DESIGN §9). 0 and
 * *out (free()) with *n entries (possibly none), or -ENOMEM. */
int smmu_domain_check(const struct smmu_domain *d, const struct smmu_topology *t, struct smmu_domain_issue **out,
                      size_t *n, struct smmu_error *err);
size_t smmu_domain_disagreements(const struct smmu_domain_issue *v, size_t n); /* entries that are not notes */
/* {"file":…, "agrees":bool, "disagreements":[{"kind","message","line"}…], "notes":[…]}; new reference. */
json_t *smmu_domain_check_json(const char *file, const struct smmu_domain_issue *v, size_t n);

/* Default device id for a BDF: "hostdev-0009-01-00.0". */
void smmu_plan_default_id(const char *bdf, char out[SMMU_ID_LEN]);

/* The plan as data (README "plan --json"): placements and steps. New reference. */
json_t *smmu_plan_to_json(const struct smmu_topology *topo, const struct smmu_plan *p);
/* Its inverse against the same topology (for `smmuctl --server plan`, which gets the document from the daemon):
 * smmu_plan_to_json(topo, *out) gives doc's members back (extra members such as "ok" and "warnings" are
 * ignored). A placement's vSMMU is found by id, or by QOM path for an anonymous one; `fit` (for people) is
 * left empty: the reply's "warnings" carry it. 0 and *out (smmu_plan_free), -EPROTO (err: which member) or
 * -ENOMEM. */
int smmu_plan_from_json(const struct smmu_topology *topo, const json_t *doc, struct smmu_plan **out,
                        struct smmu_error *err);
/* The plan's warnings (array of strings, new reference): one per device whose port's windows do not fit its
 * BARs (placement.fit). `plan` and `attach` print them (text: on stderr; --json: "warnings"). */
json_t *smmu_plan_warnings_json(const struct smmu_plan *p);

#ifdef __cplusplus
}
#endif
#endif
