/* smmuctl/journal.h — the per-VM write-ahead journal (DESIGN §5).
 *
 * `<state-dir>/<vm>.json`, guarded by flock(`<state-dir>/<vm>.lock`) for as long as the journal is open, so
 * two smmuctl processes on one VM serialize. Every save replaces the file atomically (write temp, fsync,
 * rename, fsync dir). QEMU is the truth; the journal is intent: what smmuctl created, which vSMMU it bound to
 * which host SMMU, which unplugs are pending, and the in-flight transaction with each step's state.
 *
 * Document (version 1):
 * {"version":1,"vm":NAME,"qmp":CANONICAL-ADDR,"qemu":{"pid":N,"start":TICKS}  (unix: the QEMU instance),
 *  "voided":[ID…]  (devices of a restarted QEMU, until status reports them vanished),
 *  "iommufd":{"id":"iommufd0","owned":true}|null,            owned = created by smmuctl (deleted by it)
 *  "devices":[{"id","bdf","host_smmu","vsmmu","port","fd_pass","state":"attached"|"unplug-pending"}],
 *  "txn":null|{"op":"attach"|"detach","pid":N,"started":ISO8601,
 *              "steps":[{"kind":"getfd"|"object-add"|"device_add"|"device_del"|"object-del"|"closefd",
 *                        "name","bdf","port","vsmmu","host_smmu","fd_path","args",
 *                        "state":"planned"|"sent"|"done"|"failed"|"undone"|"pending"}]}}
 *
 * Contracts: the journal blocks only on its small local file and on the lock (smmu_journal_open waits for the
 * lock up to wait_ms; 0 tries once). The handle owns the document: accessors return borrowed references,
 * valid until the next mutation or smmu_journal_close. Functions return 0 or a negative errno with err set.
 */
#ifndef SMMUCTL_JOURNAL_H
#define SMMUCTL_JOURNAL_H

#include <jansson.h>
#include "smmuctl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smmu_journal smmu_journal;

/* A VM name usable as a file name: [A-Za-z0-9._-], 1..100 chars, not starting with '.'. */
int smmu_journal_check_name(const char *vm, struct smmu_error *err);
/* Derive the VM name from a canonical QMP address ("unix:/run/vm1.qmp" → "run_vm1.qmp"). */
void smmu_journal_name_from_addr(const char *canonical, char *out, size_t len);

/* Create state_dir if needed (0700), take the lock (waiting up to wait_ms; -EBUSY after that, naming the
 * holder's pid when known; wait_ms 0 is one non-blocking try — the form an event loop uses, retrying on a
 * timer as the VM handle of smmuctl/engine.h does) and load the journal (a missing file is an empty journal). A corrupt journal
 * is -EPROTO naming the file, and is never overwritten. */
int smmu_journal_open(const char *state_dir, const char *vm, const char *qmp_canonical, int wait_ms,
                      smmu_journal **out, struct smmu_error *err);
/* Add a note to the lock file while this handle holds it (line 3 of "PID START\nCOMMAND\nNOTE\n"). The daemon
 * writes "server ADDR": a process that then finds the lock taken fails at once (-EBUSY) with "this VM is managed
 * by smmuctl serve (pid N): use --server ADDR" instead of waiting (DESIGN §7). 0 or negative errno. */
int smmu_journal_set_note(smmu_journal *j, const char *note);
/* 1 (err filled as smmu_journal_open would) when the VM's lock is held by such a daemon, else 0. Never blocks. */
int smmu_journal_busy_server(const char *state_dir, const char *vm, struct smmu_error *err);
/* Release the lock and free. Does not save. */
void smmu_journal_close(smmu_journal *j);

/* The document (borrowed; mutate it, then save). */
json_t *smmu_journal_doc(smmu_journal *j);
const char *smmu_journal_path(const smmu_journal *j);
/* Atomically replace the file with the document — unless the file already holds exactly this document (as
 * loaded or last saved): then nothing is written, so a journal that never held anything is never created. */
int smmu_journal_save(smmu_journal *j, struct smmu_error *err);

/* Journal files written and fsync calls made (file + directory) since open, for benchmarks. */
void smmu_journal_counters(const smmu_journal *j, unsigned long *writes, unsigned long *fsyncs);

/* Whose journal is it (DESIGN §5): compare the recorded canonical QMP address and QEMU instance ("qemu":
 * {"pid","start"}, unix sockets only) with the connected one. A journal that holds nothing is anybody's.
 * OTHER_ADDRESS: refuse (nothing may be sent); RESTARTED: the old transaction is void (smmu_journal_void).
 * why gets a sentence for either. Pure: no I/O. */
enum smmu_owner { SMMU_OWNER_SAME, SMMU_OWNER_OTHER_ADDRESS, SMMU_OWNER_RESTARTED };
struct qmp_peer;
enum smmu_owner smmu_journal_owner_check(smmu_journal *j, const char *canonical, const struct qmp_peer *peer,
                                         char *why, size_t len);
/* Record the connected instance (address, and peer pid + start time when known). */
void smmu_journal_owner_set(smmu_journal *j, const char *canonical, const struct qmp_peer *peer);
/* A restarted QEMU: forget the devices, the transaction and the iommufd object (they belonged to the old
 * process; nothing is undone in the new one). Their ids are kept in "voided" until `status` reports them as
 * vanished. Returns the voided ids (borrowed by the journal: a new reference the caller decrefs). */
json_t *smmu_journal_void(smmu_journal *j);

/* Convenience accessors on the document. */
json_t *smmu_journal_devices(smmu_journal *j);     /* the "devices" array (created if missing) */
json_t *smmu_journal_txn(smmu_journal *j);         /* the open transaction or NULL */
json_t *smmu_journal_find_device(smmu_journal *j, const char *id_or_bdf); /* by id or bdf, or NULL */
void smmu_journal_remove_device(smmu_journal *j, const char *id);

#ifdef __cplusplus
}
#endif
#endif
