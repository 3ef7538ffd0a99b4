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
#include <jansson.h>
#include "smmuctl/error.h"
#include "smmuctl/host.h"
#include "smmuctl/topology.h"

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
};
#define SMMU_PLAN_OPTS_VERSION 1
#define SMMU_PLAN_OPTS_INIT {SMMU_PLAN_OPTS_VERSION, false, false, NULL, NULL, NULL}

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

/* Default device id for a BDF: "hostdev-0009-01-00.0". */
void smmu_plan_default_id(const char *bdf, char out[SMMU_ID_LEN]);

/* The plan as data (README "plan --json"): placements and steps. New reference. */
json_t *smmu_plan_to_json(const struct smmu_topology *topo, const struct smmu_plan *p);

#ifdef __cplusplus
}
#endif
#endif
