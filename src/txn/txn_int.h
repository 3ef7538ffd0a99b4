/* txn_int.h — private to src/txn/: the operation context shared by attach, detach and status/recover.
 *
 * Every operation is a step machine on the client's event loop: a function sends one command (or a batch) and
 * returns; the reply, event or timer callback resumes the machine in a continuation. Nothing here runs the
 * loop. Continuations may run synchronously (a call that cannot be sent fails at once), so every call that
 * takes a continuation is made in tail position: the caller touches nothing after it returns. */
#ifndef SMMUCTL_TXN_INT_H
#define SMMUCTL_TXN_INT_H

#include "smmuctl/txn.h"

struct smmu_txn;
typedef void (*txn_k)(struct smmu_txn *t, int r);
typedef void (*txn_reply_k)(struct smmu_txn *t, int r, const struct smmu_error *e);
typedef void (*txn_outcome_k)(struct smmu_txn *t, enum smmu_outcome o);

/* Per-device outcome of an unplug. */
enum txn_del {
    TXN_DEL_DONE,       /* DEVICE_DELETED seen (or the device was already gone) */
    TXN_DEL_PENDING,    /* accepted, no DEVICE_DELETED within the timeout, or "already in the process of unplug" */
    TXN_DEL_REFUSED,    /* DEVICE_UNPLUG_GUEST_ERROR */
    TXN_DEL_FAILED,     /* QEMU refused device_del, or the connection broke */
};
const char *txn_del_name(enum txn_del d);

struct txn_unplug;

struct smmu_txn {
    qmp_client **c;
    smmu_journal *j;
    struct smmu_txn_opts opts;
    struct smmu_result *res;
    const struct smmu_facts *f;
    bool lost;                  /* the connection is gone and could not be re-established */
    bool cancelled;             /* smmu_txn_cancel: no further step; detach stops waiting */
    bool rolling_back;          /* a cancel now is reported and ignored */
    bool finished;
    smmu_txn_done_fn done;
    void *done_payload;
    struct event *defer;        /* runs `done` from the loop */

    /* txn_send: the one command in flight */
    txn_reply_k send_k;
    int send_step;
    int send_r;
    struct smmu_error send_err;
    char send_cmd[32];
    /* txn_reconnect / txn_exists */
    txn_k reconn_k;
    txn_reply_k exists_k;
    char exists_path[SMMU_PATH_LEN];
    int exists_attempt;
    /* txn_unplug in flight */
    struct txn_unplug *unplug;

    /* attach */
    const struct smmu_plan *plan;
    json_t *txn;                /* the transaction document (own reference) */
    size_t k, n;
    int fd;
    /* rollback */
    size_t rb_k;
    bool rb_pending, rb_left;
    txn_outcome_k rb_k_done;
    /* detach / status */
    const char **ids;
    json_t **which;
    const char **gone;
    enum txn_del *out;
    struct smmu_error *errs;
    size_t nids, ngone, npending, nfailed;
    json_t *steps, *report_devs, *finished_ids, *rolled, *recovered;
    bool recovering, recover;
    txn_k after;                /* the continuation of a sub-machine */
    json_t *st_attached, *st_pending, *st_vanished; /* status: what the journal knows vs QEMU */
    int fdst;
    char fd_id[SMMU_ID_LEN];    /* the iommufd object's id as it was before detach (for the report) */
    txn_reply_k fd_k;           /* txn_maybe_delete_iommufd's continuation */
};

/* Save the journal; on failure remember the error in the result. */
int txn_save(struct smmu_txn *t);

/* Send one command; k runs once with 0, or -EIO (QEMU refused: e has class/desc), -ETIMEDOUT, or -ECONNRESET
 * (the connection was lost: the reply is unknown; opts.reconnect was tried first, t->lost tells whether it
 * failed). step >= 0 calls the step hook around the send. */
void txn_send(struct smmu_txn *t, int step, const char *cmd, json_t *args, const int *fds, size_t nfds,
              txn_reply_k k);

/* Reconnect after a lost connection (opts.reconnect; without it, or when it fails, t->lost is set). */
void txn_reconnect(struct smmu_txn *t, txn_k k);

/* Does the QOM object at path exist? k gets 1/0, or <0 when QEMU cannot be asked (one reconnect tried). */
void txn_exists(struct smmu_txn *t, const char *path, txn_reply_k k);

/* device_del every id at once (waiters registered first) and wait for all outcomes in parallel, up to
 * timeout_ms (0: do not wait — accepted unplugs are PENDING); a cancel stops the wait. out[i] / errs[i] get
 * each outcome (arrays of n, owned by the caller, alive until k). A device_del whose reply never came is
 * resolved by asking QEMU. Then k(t, 0). */
void txn_unplug(struct smmu_txn *t, const char *const *ids, size_t n, int timeout_ms, enum txn_del *out,
                struct smmu_error *errs, txn_k k);

/* A cancel during txn_unplug: stop waiting for events (replies still come). */
void txn_unplug_stop_waiting(struct smmu_txn *t);

/* Step helpers on journal step objects (the journal keeps the state names of smmu_step_state_name). */
const char *txn_step_str(json_t *step, const char *key);
void txn_step_state(json_t *step, enum smmu_step_state s);
bool txn_step_is(json_t *step, enum smmu_step_state s);
/* The QOM path an object-add / device_add step creates ("/objects/ID", "/machine/peripheral/ID"). */
void txn_step_path(json_t *step, char *out, size_t len);

/* Undo the done (and reconcile the sent) steps of an attach transaction in reverse order, then k with the
 * outcome: ROLLED_BACK when all undone (txn cleared), INCOMPLETE when something is left (pending unplug
 * recorded in the journal's devices, or QEMU unreachable: txn kept). */
void txn_rollback_attach(struct smmu_txn *t, json_t *txn, txn_outcome_k k);

/* After devices are gone: object-del the iommufd object if smmuctl owns it, the journal holds no device and
 * no vfio-pci device in the VM (facts, less t->gone) uses it. k gets 0 (deleted), 1 (nothing to delete),
 * 2 (deferred: something still uses or may use it), <0 on error (e set). */
void txn_maybe_delete_iommufd(struct smmu_txn *t, txn_reply_k k);

/* Is a device with QEMU id `id` in the discovered VM (a vfio-pci device or any root-port occupant)? */
bool txn_device_present(const struct smmu_facts *f, const char *id);

/* Build a device entry for the report / journal. */
json_t *txn_report_device(json_t *step, const char *state);

/* A new operation context (NULL: out of memory); finish it with txn_finish (calls done from the loop, then
 * frees the context). */
struct smmu_txn *txn_ctx_new(qmp_client **c, smmu_journal *j, const struct smmu_facts *f,
                            const struct smmu_txn_opts *opts, struct smmu_result *res, smmu_txn_done_fn done,
                            void *payload);
void txn_finish(struct smmu_txn *t);
/* Free a context without calling done (it could not start). */
void txn_ctx_discard(struct smmu_txn *t);
/* The id / outcome arrays of n entries (ids, which, gone, out, errs; freed with the context). */
int txn_ctx_alloc(struct smmu_txn *t, size_t n);

#endif
