/* txn_int.h — private to src/txn/: the execution context shared by attach, detach and status/recover. */
#ifndef SMMUCTL_TXN_INT_H
#define SMMUCTL_TXN_INT_H

#include "smmuctl/txn.h"

struct txn_ctx {
    qmp_client **c;
    smmu_journal *j;
    const struct smmu_txn_opts *opts;
    struct smmu_result *res;
    bool lost;                  /* the connection is gone and could not be re-established */
};

/* Per-device outcome of an unplug. */
enum txn_del {
    TXN_DEL_DONE,       /* DEVICE_DELETED seen (or the device was already gone) */
    TXN_DEL_PENDING,    /* accepted, no DEVICE_DELETED within the timeout, or "already in the process of unplug" */
    TXN_DEL_REFUSED,    /* DEVICE_UNPLUG_GUEST_ERROR */
    TXN_DEL_FAILED,     /* QEMU refused device_del, or the connection broke */
};
const char *txn_del_name(enum txn_del d);

/* Save the journal; on failure remember the error in the result. */
int txn_save(struct txn_ctx *t);

/* Send one command and wait for its reply, calling the step hook around it (step >= 0). On a lost
 * connection, tries opts->reconnect once; *reconnected tells whether the client was replaced (the reply of
 * the lost command is then unknown: -ECONNRESET is still returned). */
int txn_send(struct txn_ctx *t, int step, const char *cmd, json_t *args, const int *fds, size_t nfds, json_t **ret,
             struct smmu_error *err);

/* device_del every id at once (waiters registered first) and wait for all outcomes in parallel, up to
 * timeout_ms (0: do not wait — accepted unplugs are PENDING). errs[i] gets each failure. */
void txn_unplug(struct txn_ctx *t, const char *const *ids, size_t n, int timeout_ms, enum txn_del *out,
                struct smmu_error *errs);

/* Does the QOM object at path exist? 1/0, or <0 when QEMU cannot be asked. */
int txn_exists(struct txn_ctx *t, const char *path, struct smmu_error *err);

/* Step helpers on journal step objects. */
const char *txn_step_str(json_t *step, const char *key);
void txn_step_state(json_t *step, const char *state);
bool txn_step_is(json_t *step, const char *state);
/* The QOM path an object-add / device_add step creates ("/objects/ID", "/machine/peripheral/ID"). */
void txn_step_path(json_t *step, char *out, size_t len);

/* Undo the done (and reconcile the sent) steps of an attach transaction in reverse order. Returns the
 * outcome: ROLLED_BACK when all undone (txn cleared), INCOMPLETE when something is left (pending unplug
 * recorded in the journal's devices, or QEMU unreachable: txn kept). */
enum smmu_outcome txn_rollback_attach(struct txn_ctx *t, json_t *txn);

/* After devices are gone: object-del the iommufd object if smmuctl owns it, the journal holds no device and
 * no vfio-pci device in the VM (facts, less the ids in `gone`) uses it. Returns 0 (deleted), 1 (nothing to
 * delete), 2 (deferred: something still uses or may use it), <0 on error (err set). */
int txn_maybe_delete_iommufd(struct txn_ctx *t, const struct smmu_facts *f, const char *const *gone, size_t ngone,
                             struct smmu_error *err);

/* Is a device with QEMU id `id` in the discovered VM (a vfio-pci device or any root-port occupant)? */
bool txn_device_present(const struct smmu_facts *f, const char *id);

/* Build a device entry for the report / journal. */
json_t *txn_report_device(json_t *step, const char *state);

#endif
