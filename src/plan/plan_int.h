/* plan_int.h — private interfaces between the planner's files (placement, steps, JSON). Not installed. */
#ifndef SMMUCTL_PLAN_INT_H
#define SMMUCTL_PLAN_INT_H

#include "smmuctl/plan.h"

#define PLAN_SMMU_LEN 128 /* = sizeof(struct smmu_host_dev.smmu) */

/* The placement state of one request: which vSMMU is bound to which host SMMU (known bindings plus the
 * ones this request makes) and which root ports this request has taken. */
struct plan_ctx {
    const struct smmu_topology *topo;
    bool allow_mismatch;
    bool require_fit;                   /* --require-fit: a device whose port's windows do not fit is refused */
    const char *const *booked;
    size_t n_booked;
    char (*bound)[PLAN_SMMU_LEN];       /* per vSMMU: bound host SMMU, "" when unbound */
    char (*bound_why)[160];             /* per vSMMU: where the binding comes from (conflict messages) */
    size_t *order;                      /* vSMMU indices by (identifier, index) */
    bool *taken;                        /* per port: taken earlier in this request */
    struct smmu_binding *new_bindings;  /* vSMMUs this request binds (at most one entry per vSMMU) */
    size_t n_new_bindings;
};

/* Allocate the context and collect the known bindings: topology bound_smmu, vfio-pci devices on a
 * vSMMU's port whose host appears in host_of_vfio, and `bindings` (unknown vSMMU ids are ignored: the
 * journal may name a vSMMU of an older VM configuration). Conflicting bindings → -EINVAL. */
int plan_ctx_init(struct plan_ctx *c, const struct smmu_topology *topo, bool allow_mismatch,
                  const struct smmu_host_dev *host_of_vfio, size_t n_host_of_vfio,
                  const struct smmu_binding *bindings, size_t n_bindings,
                  const char *const *booked, size_t n_booked, struct smmu_error *err);
void plan_ctx_fini(struct plan_ctx *c);

/* Place one checked device (DESIGN §4): fill pl (all but device_id), take its port and record a new binding.
 * -ENOSPC with a message naming every vSMMU and its state when there is no place. */
int plan_place_one(struct plan_ctx *c, const struct smmu_host_dev *dev, struct smmu_placement *pl,
                   struct smmu_error *err);

/* Place a device on a given port (t->ports index) if the SMMU rules allow it; -EINVAL with the reason. */
int plan_place_port(struct plan_ctx *c, const struct smmu_host_dev *dev, int port, const char *why,
                    struct smmu_placement *pl, struct smmu_error *err);

/* Build p->steps from p->placements / p->iommufd_id / p->creates_iommufd (DESIGN §5). hosts are the
 * devices' facts in placement order (for the cdev name). */
int plan_build_steps(struct smmu_plan *p, const struct smmu_host_dev *hosts, const struct smmu_plan_opts *opts,
                     struct smmu_error *err);

/* QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'; at most max_len chars. */
bool plan_id_valid(const char *id, size_t max_len);

#endif
