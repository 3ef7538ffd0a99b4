/* backend.h — what `smmuctl serve` needs from the engine (src/txn: a VM handle owning its QMP connection,
 * journal and facts, with a connection state machine and a per-VM queue of operations).
 *
 * The daemon's HTTP layer (src/serve) calls only this interface; the engine is adapted to it in one file
 * (serve/backend_engine.c, next), and the serve tests drive it with a fake. Everything runs on the daemon's
 * one event loop: no call blocks, every result comes back through a callback on that loop, never from
 * inside the call that started it (so a caller may free what it likes in the callback).
 *
 * Ownership: strings passed in are copied; json_t arguments are borrowed unless marked "stolen"; json_t
 * results handed to callbacks are borrowed for the duration of the callback.
 */
#ifndef SMMUCTL_SERVE_BACKEND_H
#define SMMUCTL_SERVE_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "smmuctl/error.h"

/* A VM's connection state as §7 names it (GET /v1/vms "state", metric smmuctl_vms{state}). */
enum sv_vm_state { SV_VM_CONNECTING, SV_VM_CONNECTED, SV_VM_DISCONNECTED };
const char *sv_vm_state_name(enum sv_vm_state s);

/* The verbs an operation runs (DESIGN §7 routes; "devices" is the desired-state PUT). */
enum sv_verb { SV_VERB_ATTACH, SV_VERB_DETACH, SV_VERB_DEVICES, SV_VERB_RECOVER, SV_VERB_PLAN };
const char *sv_verb_name(enum sv_verb v);

/* An operation's end (GET /v1/operations/{id} "state"): running while queued or executing. */
enum sv_op_state { SV_OP_RUNNING, SV_OP_PENDING, SV_OP_DONE, SV_OP_ROLLED_BACK, SV_OP_FAILED, SV_OP_INCOMPLETE };
const char *sv_op_state_name(enum sv_op_state s);

/* What finished: the state, the CLI's --json object for it (the same members `smmuctl VERB --json` prints:
 * the daemon returns it as the 200 body or the operation's "result"), the CLI exit code it corresponds to
 * and, on failure, the error. A pending detach reports SV_OP_PENDING first and later (DEVICE_DELETED or
 * the unplug timeout) its final state through the same callback again. */
struct sv_op_result {
    enum sv_op_state state;
    int exit_code;                 /* 0..4 as the CLI (DESIGN §2) */
    const json_t *json;            /* the CLI --json object, borrowed */
    const struct smmu_error *error; /* NULL unless failed / rolled back / refused */
    bool sent_nothing;             /* refused before anything that changes QEMU was sent (→ 422) */
    bool unreachable;              /* QEMU could not be reached within the deadline (→ 503) */
    bool queue_full;               /* the VM's queue is full, nothing queued (→ 429) */
};

/* Events the backend reports about a VM (they become §7 events, metrics and GET /v1/vms fields).
 * type is a §7 event type ("vm.connected", "device.detached", …); data (borrowed) holds its members
 * beyond vm and time (e.g. {"device":"hostdev0","host":"0009:01:00.0"}). */
struct sv_backend_events {
    void (*vm_state)(void *arg, const char *vm, enum sv_vm_state state);
    void (*event)(void *arg, const char *vm, const char *type, const json_t *data);
    void (*qmp_round_trip)(void *arg, const char *vm, double seconds); /* smmuctl_qmp_round_trip_seconds */
    void (*reconnect)(void *arg, const char *vm);                     /* smmuctl_qmp_reconnects_total */
    void *arg;
};

struct sv_backend;

/* What the daemon calls. Each returns 0 or a negative errno with err filled (e.g. -ENOENT no such VM,
 * -EEXIST registered with another address, -EBUSY an operation in flight). */
struct sv_backend_ops {
    /* Register a VM (persisted by the backend in <state-dir>/vms/<vm>.json; the daemon's PUT is idempotent:
     * the same qmp/fd_pass again is 0 with *created false). Starts connecting. */
    int (*vm_register)(struct sv_backend *b, const char *vm, const char *qmp, bool fd_pass, bool *created,
                       struct smmu_error *err);
    /* Forget a VM (journal kept). -EBUSY while an operation runs. */
    int (*vm_unregister)(struct sv_backend *b, const char *vm, struct smmu_error *err);
    /* {"name","qmp","state","qemu","attached","pending"} for GET /v1/vms; new reference, NULL if unknown.
     * with_status adds "status" (as `status --json`). */
    json_t *(*vm_info)(struct sv_backend *b, const char *vm, bool with_status);
    /* Every registered VM's name, in registration order (new reference, array of strings). */
    json_t *(*vm_list)(struct sv_backend *b);
    /* The VM's topology as `topology --json` from the backend's in-memory facts (no QMP); new reference. */
    json_t *(*vm_topology)(struct sv_backend *b, const char *vm, struct smmu_error *err);
    /* Queue an operation on the VM (arrival order, one at a time per VM). args is the request body
     * (validated by the daemon). done is called on the loop, at least once, and once more per later state
     * change of a pending result; the daemon's handle is `op`. */
    int (*op_submit)(struct sv_backend *b, const char *vm, enum sv_verb verb, const json_t *args, uint64_t op,
                     void (*done)(void *arg, uint64_t op, const struct sv_op_result *r), void *arg,
                     struct smmu_error *err);
    /* True once every registered VM has been reconciled or found unreachable (GET /readyz). */
    bool (*ready)(struct sv_backend *b);
    /* SIGTERM: stop starting steps, let in-flight ones finish up to deadline_ms, journal the rest; done
     * is called once everything is quiet. */
    void (*shutdown)(struct sv_backend *b, int deadline_ms, void (*done)(void *arg), void *arg);
    void (*free)(struct sv_backend *b);
};

struct sv_backend {
    const struct sv_backend_ops *ops;
    struct sv_backend_events events; /* set by the daemon before the first call */
};

#endif
