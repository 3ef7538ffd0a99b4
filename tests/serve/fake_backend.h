/* fake_backend.h — a deterministic backend (serve/backend.h) for the daemon's transport tests: VMs are names
 * with an address, operations end as the test scripts them, all on the loop and never from inside the call
 * that started them.
 *
 * Script: each submitted operation takes the next queued outcome (fake_backend_next), FAKE_DONE when none
 * is queued. FAKE_HOLD and FAKE_PENDING keep the operation until fake_backend_finish; FAKE_PENDING reports
 * `pending` first (a detach whose guest has not released the device yet). */
#ifndef SMMU_FAKE_BACKEND_H
#define SMMU_FAKE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "serve/backend.h"

enum fake_outcome {
    FAKE_DONE,        /* 200: done */
    FAKE_HOLD,        /* running until fake_backend_finish */
    FAKE_PENDING,     /* pending, then what fake_backend_finish says */
    FAKE_REFUSED,     /* rolled back after QEMU refused (502) */
    FAKE_UNREACHABLE, /* QEMU unreachable (503) */
    FAKE_BAD_INPUT,   /* refused before sending anything (422) */
    FAKE_QUEUE_FULL,  /* the VM's queue is full (429) */
    FAKE_INCOMPLETE,  /* incomplete (202 with the operation) */
};

struct fake_backend;

struct fake_backend *fake_backend_new(struct event_base *base);
struct sv_backend *fake_backend_sv(struct fake_backend *fb);
/* Free with fb->sv.ops->free(sv) or this. */
void fake_backend_free(struct fake_backend *fb);

void fake_backend_next(struct fake_backend *fb, enum fake_outcome o);
/* Operations submitted so far (each run counts once). */
size_t fake_backend_submitted(const struct fake_backend *fb);
/* The oldest operation held (FAKE_HOLD / FAKE_PENDING) not yet finished: its handle, or 0. */
uint64_t fake_backend_held(const struct fake_backend *fb);
/* End a held operation with state (done, failed …), reported on the loop. */
void fake_backend_finish(struct fake_backend *fb, uint64_t handle, enum sv_op_state state);
/* The last submitted operation's verb and body (borrowed; NULL before any). */
const json_t *fake_backend_last_args(const struct fake_backend *fb, enum sv_verb *verb);

/* Report an event about vm (type as §7, data borrowed) and a state change. */
void fake_backend_emit(struct fake_backend *fb, const char *vm, const char *type, const json_t *data);
void fake_backend_set_state(struct fake_backend *fb, const char *vm, enum sv_vm_state st);
void fake_backend_set_ready(struct fake_backend *fb, bool ready);
/* vm_unregister says -EBUSY while set. */
void fake_backend_set_busy(struct fake_backend *fb, bool busy);
/* How many times shutdown was called, and its deadline. */
int fake_backend_shutdowns(const struct fake_backend *fb, int *deadline_ms);

#endif
