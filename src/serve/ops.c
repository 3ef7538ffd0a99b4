/* ops.c — the operations registry (see ops.h): a list in creation order, ids "<prefix>-<n>". */
#define _GNU_SOURCE
#include "serve/ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sv_op_waiter {
    struct sv_op *op;
    void (*fn)(void *arg, struct sv_op *op);
    void *arg;
    struct sv_op_waiter *next;
};

struct sv_op {
    char id[64];
    char *vm;
    enum sv_verb verb;
    enum sv_op_state state;
    int status;
    json_t *result;
    double ended_at;
    struct sv_op_waiter *waiters;
    struct sv_op *next;
};

struct sv_ops {
    size_t max, count;
    double keep_s;
    char prefix[32];
    unsigned long long next_id;
    struct sv_op *head, **tail;
};

struct sv_ops *sv_ops_new(size_t max, double keep_s, const char *id_prefix)
{
    struct sv_ops *ops = calloc(1, sizeof(*ops));
    if (!ops)
        return NULL;
    ops->max = max ? max : 1;
    ops->keep_s = keep_s;
    snprintf(ops->prefix, sizeof(ops->prefix), "%s", id_prefix ? id_prefix : "op");
    ops->tail = &ops->head;
    return ops;
}

static void op_free(struct sv_op *op)
{
    while (op->waiters) {
        struct sv_op_waiter *w = op->waiters;
        op->waiters = w->next;
        free(w);
    }
    json_decref(op->result);
    free(op->vm);
    free(op);
}

void sv_ops_free(struct sv_ops *ops)
{
    if (!ops)
        return;
    while (ops->head) {
        struct sv_op *op = ops->head;
        ops->head = op->next;
        op_free(op);
    }
    free(ops);
}

bool sv_op_ended(const struct sv_op *op)
{
    return op->state != SV_OP_RUNNING && op->state != SV_OP_PENDING;
}

/* Unlink ops matching `drop`; keep the tail pointer right. */
static size_t sweep(struct sv_ops *ops, double now, bool oldest_ended_only)
{
    struct sv_op **pp = &ops->head;
    size_t n = 0;
    while (*pp) {
        struct sv_op *op = *pp;
        bool expired = sv_op_ended(op) && !op->waiters &&
                       (oldest_ended_only || now - op->ended_at >= ops->keep_s);
        if (expired) {
            *pp = op->next;
            op_free(op);
            ops->count--;
            n++;
            if (oldest_ended_only)
                break;
        } else {
            pp = &op->next;
        }
    }
    ops->tail = &ops->head;
    while (*ops->tail)
        ops->tail = &(*ops->tail)->next;
    return n;
}

size_t sv_ops_expire(struct sv_ops *ops, double now)
{
    return sweep(ops, now, false);
}

size_t sv_ops_count(const struct sv_ops *ops)
{
    return ops->count;
}

struct sv_op *sv_ops_create(struct sv_ops *ops, const char *vm, enum sv_verb verb, double now)
{
    struct sv_op *op;
    sv_ops_expire(ops, now);
    if (ops->count >= ops->max && sweep(ops, now, true) == 0) {
        errno = EAGAIN;
        return NULL;
    }
    op = calloc(1, sizeof(*op));
    if (!op || !(op->vm = strdup(vm ? vm : ""))) {
        free(op);
        errno = ENOMEM;
        return NULL;
    }
    snprintf(op->id, sizeof(op->id), "%s-%llu", ops->prefix, ++ops->next_id);
    op->verb = verb;
    op->state = SV_OP_RUNNING;
    *ops->tail = op;
    ops->tail = &op->next;
    ops->count++;
    return op;
}

struct sv_op *sv_ops_find(struct sv_ops *ops, const char *id)
{
    for (struct sv_op *op = ops->head; op; op = op->next)
        if (!strcmp(op->id, id))
            return op;
    return NULL;
}

const char *sv_op_id(const struct sv_op *op) { return op->id; }
enum sv_op_state sv_op_state(const struct sv_op *op) { return op->state; }
void sv_op_set_status(struct sv_op *op, int status) { op->status = status; }
int sv_op_status(const struct sv_op *op) { return op->status; }

void sv_op_update(struct sv_ops *ops, struct sv_op *op, enum sv_op_state state, const json_t *result, double now)
{
    (void)ops;
    bool became_pending = op->state == SV_OP_RUNNING && state == SV_OP_PENDING;
    op->state = state;
    if (result) {
        json_decref(op->result);
        op->result = json_deep_copy(result);
    }
    if (!sv_op_ended(op) && !became_pending)
        return;
    /* waiters hear of every change of state: running → pending (a detach whose guest has not released the
     * device yet: its result is there, the unplug goes on) and the end */
    if (sv_op_ended(op))
        op->ended_at = now;
    while (op->waiters) { /* a callback may add or remove waiters of other ops, not of this one */
        struct sv_op_waiter *w = op->waiters;
        op->waiters = w->next;
        w->fn(w->arg, op);
        free(w);
    }
}

json_t *sv_op_json(const struct sv_op *op)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:O?}", "id", op->id, "vm", op->vm, "verb", sv_verb_name(op->verb),
                     "state", sv_op_state_name(op->state), "result", op->result);
}

struct sv_op_waiter *sv_op_wait(struct sv_ops *ops, struct sv_op *op, void (*fn)(void *arg, struct sv_op *op),
                                void *arg)
{
    struct sv_op_waiter *w;
    (void)ops;
    if (sv_op_ended(op)) {
        fn(arg, op);
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->op = op;
    w->fn = fn;
    w->arg = arg;
    w->next = op->waiters;
    op->waiters = w;
    return w;
}

void sv_op_unwait(struct sv_ops *ops, struct sv_op_waiter *w)
{
    (void)ops;
    if (!w)
        return;
    for (struct sv_op_waiter **pp = &w->op->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            free(w);
            return;
        }
}
