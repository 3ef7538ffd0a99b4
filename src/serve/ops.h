/* ops.h — the daemon's operations registry (DESIGN §7 GET /v1/operations/{id}): an id per mutating
 * request, its state (running | pending | done | rolled-back | failed | incomplete) and result, waiters for
 * `?wait=S` long-polls, and expiry: kept 1 h after they end, at most 10,000. No I/O and no clock (callers
 * pass `now` in seconds; the HTTP layer arms the ?wait timers). */
#ifndef SMMUCTL_SERVE_OPS_H
#define SMMUCTL_SERVE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "serve/backend.h"

#define SV_OPS_MAX 10000
#define SV_OPS_KEEP_S 3600.0

struct sv_ops;
struct sv_op;
struct sv_op_waiter;

/* max operations kept, keep_s seconds after they end; id_prefix makes ids unique across daemon restarts
 * (the daemon passes its start time in hex). */
struct sv_ops *sv_ops_new(size_t max, double keep_s, const char *id_prefix);
void sv_ops_free(struct sv_ops *ops);

/* A new running operation; NULL (errno EAGAIN) when max operations are kept and none has ended. Expired
 * ones are dropped first. */
struct sv_op *sv_ops_create(struct sv_ops *ops, const char *vm, enum sv_verb verb, double now);
struct sv_op *sv_ops_find(struct sv_ops *ops, const char *id);
const char *sv_op_id(const struct sv_op *op);
enum sv_op_state sv_op_state(const struct sv_op *op);
/* True once the state is final (not running, not pending). */
bool sv_op_ended(const struct sv_op *op);

/* New state and result (borrowed, copied; may be NULL). Reaching a final state wakes every waiter, and so
 * does running → pending (a detach whose unplug the guest has not finished: its result is known). */
void sv_op_update(struct sv_ops *ops, struct sv_op *op, enum sv_op_state state, const json_t *result, double now);

/* The HTTP status the outcome maps to (200 done, 202 still running or pending, 422/429/502/503 …), set by the
 * HTTP layer before the final sv_op_update so that waiters read it; 0 until set. */
void sv_op_set_status(struct sv_op *op, int status);
int sv_op_status(const struct sv_op *op);

/* {"id","vm","verb","state","result"} (result null until there is one). New reference. */
json_t *sv_op_json(const struct sv_op *op);

/* Call fn once when op ends or turns pending (at once, from inside the call, if it has ended). The handle is
 * valid until fn runs or sv_op_unwait (the ?wait timeout or the client left). NULL when fn already ran. */
struct sv_op_waiter *sv_op_wait(struct sv_ops *ops, struct sv_op *op, void (*fn)(void *arg, struct sv_op *op),
                                void *arg);
void sv_op_unwait(struct sv_ops *ops, struct sv_op_waiter *w);

/* Drop operations that ended more than keep_s ago (never one with a waiter). Returns how many. */
size_t sv_ops_expire(struct sv_ops *ops, double now);
size_t sv_ops_count(const struct sv_ops *ops);

#endif
