/* smmuctl/txn.h — VM facts, and transactions with undo over QMP (DESIGN §5).
 *
 * This is the layer the CLI and the daemon call (the daemon through smmuctl/engine.h, which queues these per
 * VM). It combines discovery (vm), host facts (host), the journal and the planner, and runs steps with undo:
 * whatever happens, the VM ends with every requested device attached or exactly as it was — or, when a guest
 * holds an unplug, in a recorded pending state that status/recover finish later.
 *
 * Nothing here blocks on QEMU or runs the event loop: every operation is a step machine driven by QMP replies,
 * events and timers on the client's event_base. A *_start function returns at once; its callback runs later
 * from the loop, exactly once. Journal writes are synchronous (small file, fsync; DESIGN §5). Sysfs reads are
 * synchronous (local files). Freeing the client fails the calls in flight: the operation then ends (lost,
 * INCOMPLETE when it had changed something) and its callback still runs once.
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
    struct smmu_id_host *journal_hosts;     /* the journal's devices: id → host BDF (covers fd-passed ones) */
    size_t n_journal_hosts;
};

/* Discover the topology over QMP and complete it with sysfs and the journal (j may be NULL; borrowed until
 * cb). Non-blocking: returns 0 and cb runs once from the loop — err 0: *out (the caller's, alive until cb)
 * is filled, free it with smmu_facts_free; err < 0: *out is empty, e (borrowed for the callback) says why.
 * Returns <0 (err set, cb not called) only when it cannot start (-ENOMEM). */
typedef void (*smmu_facts_cb)(int err, const struct smmu_error *e, void *payload);
int smmu_facts_gather_start(qmp_client *c, const char *sysfs_root, smmu_journal *j, struct smmu_facts *out,
                            smmu_facts_cb cb, void *payload, struct smmu_error *err);
void smmu_facts_free(struct smmu_facts *f);
/* The same facts from a topology already known (the daemon's, kept exact from what QEMU confirmed): a copy of
 * topo completed with sysfs and the journal — synchronous, nothing sent to QEMU. 0 or -ENOMEM (err set). */
int smmu_facts_from_topology(const struct smmu_topology *topo, const char *sysfs_root, smmu_journal *j,
                             struct smmu_facts *out, struct smmu_error *err);

/* Read and check the requested devices (BDFs as typed; canonicalised) and plan their attach.
 * hosts_out (may be NULL) receives the facts read, in request order. */
int smmu_facts_plan(const struct smmu_facts *f, const char *sysfs_root, const char *const *devs, size_t n,
                    const struct smmu_plan_opts *opts, struct smmu_plan **out, struct smmu_error *err);

/* ---- transactions ---- */

/* A step's state in the journal (its "state" string, stable: journals on disk use these names). */
enum smmu_step_state {
    SMMU_STEP_PLANNED = 0,  /* "planned": journaled, not sent */
    SMMU_STEP_SENT,         /* "sent": handed to QEMU, no reply yet (recover asks QEMU what happened) */
    SMMU_STEP_DONE,         /* "done": QEMU confirmed it */
    SMMU_STEP_FAILED,       /* "failed": QEMU refused it (or it could not be sent); nothing to undo */
    SMMU_STEP_UNDONE,       /* "undone": its undo ran (or nothing was left to undo) */
    SMMU_STEP_PENDING,      /* "pending": an unplug QEMU accepted whose DEVICE_DELETED has not come */
    SMMU_STEP_REFUSED,      /* "refused": the guest refused the unplug (DEVICE_UNPLUG_GUEST_ERROR) */
};
/* The journal name of a state ("planned", …); "?" for a value outside the enum. */
const char *smmu_step_state_name(enum smmu_step_state s);
/* The state named `name`, or -1 when the name is none of them. */
int smmu_step_state_parse(const char *name);

/* Called when a reconnect started by smmu_txn_reconnect_fn has an outcome: err 0 = *c is a new READY client. */
typedef void (*smmu_reconnect_done_fn)(int err, const struct smmu_error *e, void *arg);
/* How a transaction reaches QEMU again after the connection is lost (reconnect + renegotiate). Must not
 * block: return 0 and call done(arg) once later from the loop (after replacing *c: the old client may be
 * freed — the transaction holds no call on it any more), or return <0 (done not called). */
typedef int (*smmu_txn_reconnect_fn)(qmp_client **c, void *payload, smmu_reconnect_done_fn done, void *arg);

struct smmu_txn_opts {
    unsigned version;                /* SMMU_TXN_OPTS_VERSION */
    const char *sysfs_root;          /* "/sys" */
    const char *dev_root;            /* "/dev" */
    int unplug_timeout_ms;           /* wait for DEVICE_DELETED (a libevent timer); 0 = 10000 */
    bool no_wait;                    /* detach: do not wait for DEVICE_DELETED (devices end "pending") */
    smmu_txn_reconnect_fn reconnect; /* NULL: a lost connection leaves the transaction to `recover` */
    void *reconnect_payload;
    /* test hook: called before each step is sent (phase 0) and right after its bytes went out, before the
     * reply is read (phase 1). The CLI's crash tests raise SIGKILL from it. The return value is ignored. */
    int (*step_hook)(int step, int phase, void *payload);
    void *step_hook_payload;
    bool fsync_each_state;           /* journal every step's done on its own (before issue 9: the bench's
                                        "before"); default false: a step's done is written with the next
                                        step's sent, one atomic write */
};
#define SMMU_TXN_OPTS_VERSION 1
#define SMMU_TXN_OPTS_INIT {SMMU_TXN_OPTS_VERSION, "/sys", "/dev", 0, false, NULL, NULL, NULL, NULL, false}

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
    bool cancelled;               /* smmu_txn_cancel took effect */
    bool cancel_ignored;          /* a cancel came while rolling back: reported, ignored (DESIGN §5 Signals) */
};
void smmu_result_fini(struct smmu_result *r);

/* An operation in flight (owned by the library: valid from *_start until its callback returns). */
typedef struct smmu_txn smmu_txn;
/* The operation ended; res is the caller's struct given to *_start (filled; the caller owns report). */
typedef void (*smmu_txn_done_fn)(struct smmu_result *res, void *payload);

/* Common to the *_start functions: *c, j, f, p, res are the caller's and must live until done; *c may be
 * replaced by a reconnected client (opts->reconnect). opts is copied. They return 0 and done runs once from
 * the loop (never from inside *_start); out (may be NULL) receives the handle for smmu_txn_cancel. They
 * return -ENOMEM without calling done when they cannot start. */

/* Attach per the plan, as one transaction (journal, send, journal per step; undo in reverse on failure). */
int smmu_txn_attach_start(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const struct smmu_plan *p,
                          const struct smmu_txn_opts *opts, struct smmu_result *res, smmu_txn_done_fn done,
                          void *payload, smmu_txn **out);

/* Detach devices (QEMU ids or BDFs) in parallel. */
int smmu_txn_detach_start(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const char *const *devs,
                          size_t n, const struct smmu_txn_opts *opts, struct smmu_result *res,
                          smmu_txn_done_fn done, void *payload, smmu_txn **out);

/* Reconcile the journal with live QEMU: finish pending unplugs whose DEVICE_DELETED happened (device gone),
 * drop devices QEMU no longer has. With `recover`, also roll back an interrupted attach and finish an
 * interrupted detach. res->report describes attached / pending / interrupted state. */
int smmu_txn_status_start(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, bool recover,
                          const struct smmu_txn_opts *opts, struct smmu_result *res, smmu_txn_done_fn done,
                          void *payload, smmu_txn **out);

/* The `status` report's "unknown": vfio-pci devices in the VM (topo) that the journal j (may be NULL) does not
 * hold — attached by hand or by another tool. Pure; new reference. */
json_t *smmu_status_unknown_json(const struct smmu_topology *topo, smmu_journal *j);

/* DESIGN §5 "Signals". Returns 0 when the cancel took effect, 1 when it was ignored. Attach: send no further step, roll back as on a failure (outcome 1, or 4 if an undo is
 * left). Detach: stop waiting; devices not yet gone stay pending (4). A cancel while rolling back (or a
 * second one) is ignored and reported (res->cancel_ignored). Non-blocking; the callback still runs once. */
int smmu_txn_cancel(smmu_txn *t);   /* 0 took effect, 1 ignored */

/* If the operation has ended and only its callback is waiting for the loop, run the callback now (the VM
 * handle's free uses this so every callback fires before it returns). Returns 1 if it ran (t is gone). */
int smmu_txn_finish_now(smmu_txn *t);

#ifdef __cplusplus
}
#endif
#endif
