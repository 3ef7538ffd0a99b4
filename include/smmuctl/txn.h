/* smmuctl/txn.h — VM facts, and transactions with undo over QMP (DESIGN §5).
 *
 * This is the layer the CLI and the daemon call. It combines discovery (vm), host facts (host), the journal
 * and the planner, and runs steps with undo: whatever happens, the VM ends with every requested device
 * attached or exactly as it was — or, when a guest holds an unplug, in a recorded pending state that
 * status/recover finish later.
 */
#ifndef SMMUCTL_TXN_H
#define SMMUCTL_TXN_H

#include <stdbool.h>
#include <jansson.h>
#include "smmuctl/error.h"
#include "smmuctl/host.h"
#include "smmuctl/journal.h"
#include "smmuctl/plan.h"
#include "smmuctl/qmp.h"
#include "smmuctl/topology.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything known about a VM before planning. */
struct smmu_facts {
    struct smmu_topology topo;              /* vsmmus[].bound_smmu filled from vfio hosts and the journal */
    struct smmu_host_dev *vfio_hosts;       /* sysfs facts of the hosts of vfio-pci devices in the VM */
    size_t n_vfio_hosts;
    struct smmu_binding *bindings;          /* from the journal (covers fd-passed devices) */
    size_t n_bindings;
    char **attached;                        /* BDFs attached to the VM (vfio hosts + journal devices) */
    size_t n_attached;
    char **booked;                          /* root ports held by the journal's open transaction */
    size_t n_booked;
    char warnings[1024];                    /* e.g. a vfio host missing from sysfs; "" if none */
};

/* Discover the topology over QMP and complete it with sysfs and the journal (j may be NULL). */
int smmu_facts_gather(qmp_client *c, const char *sysfs_root, smmu_journal *j, struct smmu_facts *out,
                      struct smmu_error *err);
void smmu_facts_free(struct smmu_facts *f);

/* Read and check the requested devices (BDFs as typed; canonicalised) and plan their attach.
 * hosts_out (may be NULL) receives the facts read, in request order. */
int smmu_facts_plan(const struct smmu_facts *f, const char *sysfs_root, const char *const *devs, size_t n,
                    const struct smmu_plan_opts *opts, struct smmu_plan **out, struct smmu_error *err);

/* ---- transactions ---- */

/* How a transaction reaches QEMU again after the connection is lost (reconnect + renegotiate). */
typedef int (*smmu_txn_reconnect_fn)(qmp_client **c, void *payload, struct smmu_error *err);

struct smmu_txn_opts {
    unsigned version;                /* SMMU_TXN_OPTS_VERSION */
    const char *sysfs_root;          /* "/sys" */
    const char *dev_root;            /* "/dev" */
    int unplug_timeout_ms;           /* wait for DEVICE_DELETED; 0 = 10000 */
    bool no_wait;                    /* detach: do not wait for DEVICE_DELETED (devices end "pending") */
    smmu_txn_reconnect_fn reconnect; /* NULL: a lost connection leaves the transaction to `recover` */
    void *reconnect_payload;
    /* test hook: called before each step is sent (phase 0) and right after its bytes went out, before the
     * reply is read (phase 1). The CLI's crash tests raise SIGKILL from it. The return value is ignored. */
    int (*step_hook)(int step, int phase, void *payload);
    void *step_hook_payload;
};
#define SMMU_TXN_OPTS_VERSION 1
#define SMMU_TXN_OPTS_INIT {SMMU_TXN_OPTS_VERSION, "/sys", "/dev", 0, false, NULL, NULL, NULL, NULL}

/* Outcome of a whole operation: the exit-code class of DESIGN §2 plus per-device results. */
enum smmu_outcome {
    SMMU_OUTCOME_DONE = 0,        /* everything done */
    SMMU_OUTCOME_ROLLED_BACK = 1, /* failed; every change undone */
    SMMU_OUTCOME_REFUSED = 2,     /* nothing that changes QEMU was sent */
    SMMU_OUTCOME_UNREACHABLE = 3, /* QEMU unreachable / protocol broken before any change */
    SMMU_OUTCOME_INCOMPLETE = 4,  /* pending unplug or unfinished rollback: journal holds it */
};

struct smmu_result {
    enum smmu_outcome outcome;
    struct smmu_error error;      /* the first failure (QEMU's class/desc, step), if any */
    json_t *report;               /* the --json body: {"devices":[…], "steps":[…], …} (owned) */
};
void smmu_result_fini(struct smmu_result *r);

/* Attach per the plan, as one transaction. *c may be replaced by a reconnected client. */
int smmu_txn_attach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const struct smmu_plan *p,
                    const struct smmu_txn_opts *opts, struct smmu_result *res);

/* Detach devices (QEMU ids or BDFs) in parallel. */
int smmu_txn_detach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const char *const *devs,
                    size_t n, const struct smmu_txn_opts *opts, struct smmu_result *res);

/* Reconcile the journal with live QEMU: finish pending unplugs whose DEVICE_DELETED happened (device gone),
 * drop devices QEMU no longer has. With `recover`, also roll back an interrupted attach and finish an
 * interrupted detach. res->report describes attached / pending / interrupted state. */
int smmu_txn_status(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, bool recover,
                    const struct smmu_txn_opts *opts, struct smmu_result *res);

#ifdef __cplusplus
}
#endif
#endif
