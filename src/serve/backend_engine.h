/* backend_engine.h — the real backend of `smmuctl serve`: serve/backend.h over the engine (smmuctl/engine.h).
 *
 * One smmu_vm handle per registered VM on the daemon's loop, each with reconcile on every connect, reconnect
 * for ever (DESIGN §7 lifecycle) and its facts kept in memory (an attach sends no discovery). Registrations are
 * <state-dir>/vms/<vm>.json ({"version":1,"vm","qmp","fd_pass","order"}), replaced atomically, and taken back by
 * a backend started on the same state dir (a daemon restart): each VM is then locked, connected and reconciled,
 * which finishes an interrupted transaction from its journal with no new request. While the daemon holds a VM
 * its lock file names it ("server ADDR"), so a direct `smmuctl --qmp` fails at once naming --server.
 *
 * Operations run one at a time per VM in arrival order (a VM's queue holds queue_max; more is queue_full);
 * VMs are independent. The result JSON is exactly the CLI's --json object for the verb (smmuctl/reply_json.h),
 * and exit_code the CLI's. SV_VERB_DEVICES ({"devices":[{"host","id"?}…]}) detaches what smmuctl plugged that
 * is not listed (never a device it did not plug), then attaches what is missing; the same set again sends
 * nothing. Its result: {"ok","command":"devices","exit_code","detach":<detach object>|null,
 * "attach":<attach object>|null}. A pending detach reports SV_OP_PENDING, then SV_OP_DONE once the guest's
 * DEVICE_DELETED settles it (event device.detached). */
#ifndef SMMUCTL_SERVE_BACKEND_ENGINE_H
#define SMMUCTL_SERVE_BACKEND_ENGINE_H

#include <stddef.h>
#include <event2/event.h>

#include "serve/backend.h"

struct sv_engine_opts {
    const char *state_dir;       /* journals, locks and vms/ (created 0700 if missing) */
    const char *sysfs_root;      /* NULL = "/sys" */
    const char *dev_root;        /* NULL = "/dev" */
    const char *server;          /* the API address for the lock files ("unix:/run/smmuctl.sock"); NULL: none */
    int connect_timeout_ms;      /* per connection attempt; 0 = 10000 */
    int command_timeout_ms;      /* per QMP command; 0 = 10000 */
    int request_timeout_ms;      /* an operation waits this long for an unreachable QEMU, then fails
                                    `unreachable` (503) with nothing sent; 0 = 30000 */
    int txn_reconnect_ms;        /* a transaction whose connection broke tries to reach QEMU this long before it
                                    ends with its journal kept (the VM then reconnects and reconciles); 0 = 10000 */
    size_t queue_max;            /* operations queued per VM (running one included); 0 = 64 */
    /* log sink (level 0 debug, 1 info, 2 warning); vm NULL for the backend itself */
    void (*log)(int level, const char *vm, const char *msg, void *payload);
    void *log_payload;
};

/* Load the registrations under state_dir and start every VM (connect, reconcile). NULL with err set when the
 * state dir cannot be used or a registration file is not ours (never guessed at, never rewritten). */
struct sv_backend *sv_backend_engine_new(struct event_base *base, const struct sv_engine_opts *opts,
                                         struct smmu_error *err);

/* Tests and benchmarks: the engine handle of a registered VM (borrowed), or NULL. */
struct smmu_vm;
struct smmu_vm *sv_backend_engine_vm(struct sv_backend *b, const char *vm);

#endif
