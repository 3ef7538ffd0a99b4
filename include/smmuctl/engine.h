/* smmuctl/engine.h — one handle per VM: its QMP connection, journal and facts, and a queue of requests.
 *
 * This is the API `smmuctl serve` holds hundreds of (one event loop, no global state) and that the CLI runs
 * one request on. Nothing here blocks or runs the loop: smmu_vm_new and smmu_vm_submit return at once; the
 * handle takes the VM's journal lock (retried on a timer: never a sleep) BEFORE it connects (QEMU serves one
 * monitor client and listens with a backlog of 1: DESIGN §5 "Locks before sockets"), negotiates, reconciles,
 * and runs the queued requests one at a time in arrival order, each as the step machines of smmuctl/txn.h.
 * Handles are independent: a VM whose QEMU stalls never delays another handle's steps.
 *
 * Connection states (smmu_vm_state):
 *   CONNECTING → GREETING → NEGOTIATING   the QMP client's own states (socket, {"QMP":…}, qmp_capabilities)
 *   → RECONCILING                         (opts.reconcile) `recover` as DESIGN §7 says (the journal lock
 *                                         was taken before CONNECTING and is kept across reconnects)
 *   → READY                               requests run
 *   → LOST                                the connection broke: reconnect with backoff (100 ms doubling to
 *                                         5 s, jittered) until opts.reconnect_deadline_ms; then CLOSED
 *   CLOSED                                gave up (or never got through): queued requests fail (stage CONNECT)
 *
 * Ownership: the handle owns its client, journal and facts. Request arguments are copied at submit. The
 * reply given to `done` is borrowed for the callback (copy what you keep; json_incref the report).
 * smmu_vm_free may be called at any moment, also from a callback: the request running is ended (its journal
 * keeps what `recover` needs), every queued one fails with -ECANCELED, and each callback still fires exactly
 * once, before smmu_vm_free returns.
 */
#ifndef SMMUCTL_ENGINE_H
#define SMMUCTL_ENGINE_H

#include <stdbool.h>
#include <stdio.h>
#include <event2/event.h>
#include "smmuctl/error.h"
#include "smmuctl/plan.h"
#include "smmuctl/qmp.h"
#include "smmuctl/txn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smmu_vm smmu_vm;
typedef struct smmu_op smmu_op;

enum smmu_vm_state {
    SMMU_VM_CONNECTING = 0,
    SMMU_VM_GREETING,
    SMMU_VM_NEGOTIATING,
    SMMU_VM_RECONCILING,
    SMMU_VM_READY,
    SMMU_VM_LOST,
    SMMU_VM_CLOSED,
};
const char *smmu_vm_state_name(enum smmu_vm_state s);

struct smmu_vm_opts {
    unsigned version;             /* SMMU_VM_OPTS_VERSION */
    const char *qmp_addr;         /* PATH | unix:PATH | tcp:HOST:PORT (copied) */
    const char *vm_name;          /* journal name (copied; checked with smmu_journal_check_name) */
    const char *state_dir;        /* journals + locks */
    const char *sysfs_root;       /* "/sys" */
    const char *dev_root;         /* "/dev" */
    int connect_timeout_ms;       /* per connection attempt (socket + greeting + negotiation); 0 = 10000 */
    int command_timeout_ms;       /* per QMP command; 0 = 10000 */
    int lock_wait_ms;             /* how long to retry the journal lock (a timer, every 5 ms); 0 = one try */
    int connect_deadline_ms;      /* first connection: keep retrying this long; 0 = one attempt, <0 = forever */
    int reconnect_deadline_ms;    /* after a loss: keep retrying this long (<0 = forever; 0 = 10000) */
    bool reconcile;               /* after every (re)connect, run `recover` before requests (the daemon) */
    bool negotiate_oob;           /* enable QMP oob when offered */
    FILE *record;                 /* --record: every message appended (fixture format) */
    /* log sink: level 0 debug, 1 info ("recovering it first", "reconnecting", facts warnings), 2 warning */
    void (*log)(int level, const char *msg, void *payload);
    void *log_payload;
    /* test hook passed to the transactions (smmu_txn_opts.step_hook) */
    int (*step_hook)(int step, int phase, void *payload);
    void *step_hook_payload;

    /* ---- for the daemon (smmuctl serve, DESIGN §7); all off by default, as the CLI runs ---- */
    /* Never CLOSED by an unreachable QEMU: a failed first connect goes LOST and, like a later loss, is retried
     * with backoff for ever (queued requests wait; the owner cancels them at its deadline). A transaction's
     * own reconnect still gives up after reconnect_deadline_ms (it then ends with the journal kept, and the
     * handle reconnects and reconciles: a restarted QEMU is never rolled back into). */
    bool retry_forever;
    /* Keep the VM's facts in memory and exact: discovered once after each (re)connect, then updated from what
     * QEMU confirms (device_add / object-add / object-del replies, DEVICE_DELETED events); a request then
     * sends no discovery, only its own commands. A reply that never came (timeout, lost connection) or
     * anything the handle cannot follow makes it discover again before the next request. A DEVICE_DELETED that
     * settles a pending unplug of the journal runs `status` (recover) at once, between requests. */
    bool keep_facts;
    /* Written into the lock file while the handle holds the VM (the daemon: "server unix:PATH"): a CLI that
     * finds the lock held by a server fails at once naming it (journal.h smmu_journal_set_note). */
    const char *holder_note;
    /* Notifications (payload: event_payload). They must not free the handle. on_state: every state change.
     * on_reconciled: the `status`/`recover` report of every reconcile — after_connect after each (re)connect,
     * else a pending unplug settled by DEVICE_DELETED (the report's "finished"/"vanished" name the devices).
     * on_call: every QMP call's outcome and round-trip time. */
    void (*on_state)(smmu_vm *vm, enum smmu_vm_state state, void *payload);
    void (*on_reconciled)(smmu_vm *vm, const json_t *report, bool after_connect, void *payload);
    void (*on_call)(smmu_vm *vm, const char *cmd, int err, double seconds, void *payload);
    void *event_payload;
    /* The QMP client's own messages go to `log` too (timeouts, dropped replies); with log_qmp also every
     * message both ways, at level 0 (the CLI's -v). */
    bool log_qmp;
};
#define SMMU_VM_OPTS_VERSION 1
#define SMMU_VM_OPTS_INIT {SMMU_VM_OPTS_VERSION, NULL, NULL, "/run/smmuctl", "/sys", "/dev", 0, 0, 0, 0, 0, \
                           false, false, NULL, NULL, NULL, NULL, NULL}

enum smmu_req_kind { SMMU_REQ_TOPOLOGY, SMMU_REQ_PLAN, SMMU_REQ_ATTACH, SMMU_REQ_DETACH, SMMU_REQ_STATUS,
                     SMMU_REQ_RECOVER };

struct smmu_request {
    enum smmu_req_kind kind;
    const char *const *devs;      /* plan/attach: BDFs; detach: ids or BDFs (copied) */
    size_t n_devs;
    struct smmu_plan_opts plan;   /* plan/attach (strings copied; plan.domain is borrowed: keep it until done) */
    int unplug_timeout_ms;        /* detach and rollbacks; 0 = 10000 */
    bool no_wait;                 /* detach --no-wait */
};

/* Where a request stopped: the front-end maps it to an exit code (DESIGN §2). */
enum smmu_req_stage {
    SMMU_STAGE_CONNECT,           /* QEMU unreachable (-EINVAL: bad address) — nothing sent */
    SMMU_STAGE_JOURNAL,           /* lock busy (-EBUSY) or the journal unusable — nothing sent */
    SMMU_STAGE_FACTS,             /* discovery failed — nothing changed */
    SMMU_STAGE_RECOVER,           /* an interrupted transaction could not be recovered first (-EBUSY) */
    SMMU_STAGE_PLAN,              /* the plan was refused — nothing sent */
    SMMU_STAGE_TXN,               /* the transaction ran: result.outcome says how it ended */
    SMMU_STAGE_CANCELLED,         /* cancelled or the handle freed before it ran (-ECANCELED) */
};

struct smmu_reply {
    enum smmu_req_kind kind;
    enum smmu_req_stage stage;
    struct smmu_error error;      /* why it stopped before SMMU_STAGE_TXN */
    struct smmu_result result;    /* SMMU_STAGE_TXN (outcome, error, report) */
    const struct smmu_facts *facts; /* topology/plan (and attach, before it ran): the facts used, or NULL */
    const struct smmu_plan *plan; /* plan/attach: the plan, or NULL */
};
typedef void (*smmu_op_done_fn)(smmu_vm *vm, const struct smmu_reply *reply, void *payload);

/* Create the handle and start connecting (returns at once). Errors: -EINVAL (bad address or VM name, err
 * says which), -ENOMEM. */
int smmu_vm_new(struct event_base *base, const struct smmu_vm_opts *opts, smmu_vm **out, struct smmu_error *err);
/* See the header comment: ends everything, every callback fires once before this returns. */
void smmu_vm_free(smmu_vm *vm);
enum smmu_vm_state smmu_vm_state(const smmu_vm *vm);
/* Requests queued or running. */
size_t smmu_vm_queued(const smmu_vm *vm);
/* opts.keep_facts: the VM's topology as kept (borrowed until the loop runs again), or NULL while it is not
 * known (not connected yet, or to be discovered again). Its vSMMUs' bound_smmu are not filled. */
const struct smmu_topology *smmu_vm_topology(const smmu_vm *vm);
/* opts.keep_facts: the facts a request would use now (the kept topology completed with sysfs and the journal;
 * free with smmu_facts_free). -ENOTCONN when the topology is not known (not connected and reconciled yet, or
 * to be discovered again); -ENOMEM. Sends nothing. */
int smmu_vm_facts(smmu_vm *vm, struct smmu_facts *out, struct smmu_error *err);
/* The journal while the handle holds the VM's lock (borrowed), else NULL. */
smmu_journal *smmu_vm_journal(smmu_vm *vm);
/* Topology discoveries started by the handle so far (tests, benchmarks). */
unsigned long smmu_vm_discoveries(const smmu_vm *vm);

/* Queue a request; it runs after the ones before it, once the VM is READY. Returns 0 (done will fire once,
 * never from inside this call) and *out (may be NULL) = the operation, valid until done returns; -ENOMEM. */
int smmu_vm_submit(smmu_vm *vm, const struct smmu_request *req, smmu_op_done_fn done, void *payload,
                   smmu_op **out);
/* DESIGN §5 "Signals": a queued request is dropped (SMMU_STAGE_CANCELLED); a running attach sends no further
 * step and rolls back (outcome 1, or 4 if an undo is left); a running detach stops waiting (the rest stays
 * pending, 4). Returns 0 when it took effect, 1 when it was ignored (a rollback is running, or a second
 * cancel): the reply then says result.cancel_ignored. Non-blocking. */
int smmu_op_cancel(smmu_op *op);

#ifdef __cplusplus
}
#endif
#endif
