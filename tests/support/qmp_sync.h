/* qmp_sync.h — blocking forms of the library's non-blocking calls, for tests and benches only.
 *
 * Each starts the library's step machine and pumps the client's event_base until its callback fired, with
 * the signature the library had before issue 9 (so tests read as before). The library (src/) has no blocking
 * call: only front-ends' mains and these helpers run a loop. Never call them from a callback. */
#ifndef SMMU_TEST_QMP_SYNC_H
#define SMMU_TEST_QMP_SYNC_H

#include <stdbool.h>
#include "smmuctl/qmp.h"
#include "smmuctl/txn.h"
#include "smmuctl/vm.h"

/* Connect and wait until READY or failure. */
int qmp_client_connect_sync(qmp_client *c, const char *addr, struct smmu_error *err);
/* Call and wait. On success *ret (may be NULL to discard) receives a new reference to "return". */
int qmp_call_sync(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, json_t **ret,
                  struct smmu_error *err);
/* The same, calling after_send(hook_payload) once the command's bytes were handed to the socket. */
int qmp_call_sync_hook(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, int timeout_ms,
                       void (*after_send)(void *), void *hook_payload, json_t **ret, struct smmu_error *err);
/* Run the loop until *flag becomes true or timeout_ms passes (<0: no limit). Returns 0 or -ETIMEDOUT. */
int qmp_pump_until(struct event_base *base, const bool *flag, int timeout_ms);

/* smmu_vm_discover_start / smmu_vm_qom_exists_start / smmu_facts_gather_start, waited for. */
int smmu_vm_discover(qmp_client *c, struct smmu_topology *out, struct smmu_error *err);
int smmu_vm_discover_ex(qmp_client *c, unsigned flags, struct smmu_topology *out, struct smmu_error *err);
int smmu_vm_qom_exists(qmp_client *c, const char *path, struct smmu_error *err);
int smmu_facts_gather(qmp_client *c, const char *sysfs_root, smmu_journal *j, struct smmu_facts *out,
                      struct smmu_error *err);

/* smmu_txn_*_start, run to completion; 0 when the outcome is DONE, else the error code (-EIO if none). */
int smmu_txn_attach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const struct smmu_plan *p,
                    const struct smmu_txn_opts *opts, struct smmu_result *res);
int smmu_txn_detach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const char *const *devs,
                    size_t n, const struct smmu_txn_opts *opts, struct smmu_result *res);
int smmu_txn_status(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, bool recover,
                    const struct smmu_txn_opts *opts, struct smmu_result *res);

#endif
