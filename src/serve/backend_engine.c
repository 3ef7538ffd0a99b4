/* backend_engine.c — serve/backend.h over the engine (smmuctl/engine.h). See backend_engine.h. */
#define _GNU_SOURCE
#include "serve/backend_engine.h"
#include "smmuctl/engine.h"
#include "smmuctl/error_json.h"
#include "smmuctl/fsutil.h"
#include "smmuctl/journal.h"
#include "smmuctl/reply_json.h"
#include "smmuctl/xml.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BE_QUEUE_MAX 64

struct be;
struct be_vm;

typedef void (*be_done_fn)(void *arg, uint64_t op, const struct sv_op_result *r);

/* One operation of the daemon. Queued per VM; the head runs (one engine request at a time; the desired-state
 * verb may run two: detach, then attach). A pending detach stays on the VM's `pending` list after it ended. */
struct be_op {
    struct be_vm *v;
    struct be_op *next;
    enum sv_verb verb;
    json_t *args;
    uint64_t op;
    be_done_fn done;
    void *arg;
    smmu_op *eop;              /* the engine request running, NULL between requests */
    struct event *deadline;    /* request_timeout_ms while QEMU is unreachable */
    struct event *defer;       /* a reply told from the loop (queue full) */
    bool started, abandoned, finished;
    /* SV_VERB_DEVICES */
    int dstage;                /* 0 detach, 1 attach rounds */
    bool waiting;              /* a topology request waits for the VM to be ready */
    int rounds;
    json_t *djson, *ajson;     /* the detach object (or NULL), the attach objects (array) */
    /* the final reply (deferred: never from inside op_submit) */
    struct sv_op_result res;
    json_t *json;
    struct smmu_error err;
    /* a pending detach: the ids still pending */
    json_t *pending_ids;
};

struct be_vm {
    struct be *b;
    struct be_vm *next;
    char *name, *qmp;
    bool fd_pass;
    long order;
    smmu_vm *vm;
    enum sv_vm_state sv_state;
    bool settled;              /* reconciled, or found unreachable, once (readyz) */
    bool was_lost;             /* lost since the last READY: the next READY is a reconnect */
    bool was_ready;
    json_t *reconcile_report;  /* the last reconcile's report, until READY reports it */
    struct be_op *head, *tail; /* queued, head running */
    size_t n_ops;
    struct be_op *pending;     /* ended pending, waiting for DEVICE_DELETED */
    struct be_op *abandoned;   /* reported unreachable, its engine request still queued */
    struct event *kick;        /* starts the head operation from the loop */
    smmu_journal *alias_lock;  /* the lock of the name a CLI derives from the address, when not `name` */
    char *note;                /* for its lock files: "server ADDR --vm NAME" (what a direct CLI is told) */
};

struct be {
    struct sv_backend sv;
    struct event_base *base;
    struct sv_engine_opts o;
    char *state_dir, *vms_dir, *sysfs, *dev, *note;
    struct be_vm *vms, *vms_tail;
    long next_order;
    bool stopping, freeing;
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    struct event *shutdown_timer, *shutdown_defer;
};

static const struct sv_backend_ops be_ops;

static void be_log(struct be *b, int level, const char *vm, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void be_log(struct be *b, int level, const char *vm, const char *fmt, ...)
{
    char msg[1600];
    va_list ap;
    if (!b->o.log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->o.log(level, vm, msg, b->o.log_payload);
}

static void be_emit(struct be_vm *v, const char *type, const json_t *data)
{
    struct be *b = v->b;
    if (b->freeing || !b->sv.events.event)
        return;
    json_t *empty = data ? NULL : json_object();
    b->sv.events.event(b->sv.events.arg, v->name, type, data ? data : empty);
    json_decref(empty);
}

static void be_emit_dev(struct be_vm *v, const char *type, const char *id, const char *host)
{
    json_t *d = json_pack("{s:s}", "device", id ? id : "");
    if (host && *host)
        json_object_set_new(d, "host", json_string(host));
    be_emit(v, type, d);
    json_decref(d);
}

static struct be_vm *be_find(struct be *b, const char *name)
{
    for (struct be_vm *v = b->vms; v; v = v->next)
        if (!strcmp(v->name, name))
            return v;
    return NULL;
}

/* ---- registrations: <state-dir>/vms/<vm>.json ---- */

static int be_reg_path(struct be *b, const char *vm, char *out, size_t len)
{
    return snprintf(out, len, "%s/%s.json", b->vms_dir, vm) >= (int)len ? -ENAMETOOLONG : 0;
}

static int be_reg_save(struct be_vm *v, struct smmu_error *err)
{
    char path[4200];
    if (be_reg_path(v->b, v->name, path, sizeof(path)) < 0)
        return smmu_error_set(err, -ENAMETOOLONG, "registration path too long");
    json_t *doc = json_pack("{s:i,s:s,s:s,s:b,s:I}", "version", 1, "vm", v->name, "qmp", v->qmp, "fd_pass",
                            v->fd_pass, "order", (json_int_t)v->order);
    char *text = doc ? json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text)
        return smmu_error_set(err, -ENOMEM, "out of memory");
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (!t2) {
        free(text);
        return smmu_error_set(err, -ENOMEM, "out of memory");
    }
    t2[n] = '\n';
    t2[n + 1] = 0;
    int r = smmu_write_file_atomic(path, t2, n + 1, "registration", NULL, err);
    free(t2);
    return r;
}

/* ---- engine notifications ---- */

static enum sv_vm_state be_sv_state(enum smmu_vm_state s)
{
    switch (s) {
    case SMMU_VM_READY: return SV_VM_CONNECTED;
    case SMMU_VM_LOST:
    case SMMU_VM_CLOSED: return SV_VM_DISCONNECTED;
    default: return SV_VM_CONNECTING;
    }
}

static void be_op_kick(struct be_vm *v);
static void be_pending_settle(struct be_vm *v, const json_t *report);
static void be_devices_json(struct be_op *o);

static void be_report_reconcile(struct be_vm *v, const json_t *report)
{
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(report, "vanished"), i, id)
        be_emit_dev(v, "device.vanished", json_string_value(id), NULL);
    json_array_foreach(json_object_get(report, "finished"), i, id)
        be_emit_dev(v, "device.detached", json_string_value(id), NULL);
    be_pending_settle(v, report);
}

static void be_on_state(smmu_vm *vm, enum smmu_vm_state st, void *payload)
{
    struct be_vm *v = payload;
    struct be *b = v->b;
    enum sv_vm_state s = be_sv_state(st);
    (void)vm;
    if (b->freeing)
        return;
    if (st == SMMU_VM_LOST || st == SMMU_VM_CLOSED) {
        if (!v->settled)
            v->settled = true; /* found unreachable: readyz does not wait for it */
        if (v->was_ready)
            v->was_lost = true;
    }
    if (s != v->sv_state) {
        v->sv_state = s;
        if (b->sv.events.vm_state)
            b->sv.events.vm_state(b->sv.events.arg, v->name, s);
        if (s == SV_VM_CONNECTED)
            be_emit(v, "vm.connected", NULL);
        else if (s == SV_VM_DISCONNECTED)
            be_emit(v, "vm.disconnected", NULL);
    }
    if (st == SMMU_VM_READY) {
        if (v->was_lost && b->sv.events.reconnect)
            b->sv.events.reconnect(b->sv.events.arg, v->name);
        v->was_lost = false;
        v->was_ready = true;
        v->settled = true;
        if (v->reconcile_report) { /* after vm.connected: what the reconcile found */
            json_t *rep = v->reconcile_report;
            v->reconcile_report = NULL;
            be_emit(v, "vm.reconciled", rep);
            be_report_reconcile(v, rep);
            json_decref(rep);
        }
    }
}

static void be_on_reconciled(smmu_vm *vm, const json_t *report, bool after_connect, void *payload)
{
    struct be_vm *v = payload;
    (void)vm;
    if (v->b->freeing)
        return;
    if (after_connect) {
        json_decref(v->reconcile_report);
        v->reconcile_report = report ? json_deep_copy(report) : json_object();
        return;
    }
    be_report_reconcile(v, report); /* a pending unplug settled by DEVICE_DELETED */
}

static void be_on_call(smmu_vm *vm, const char *cmd, int err, double seconds, void *payload)
{
    struct be_vm *v = payload;
    struct be *b = v->b;
    (void)vm; (void)cmd;
    if (!b->freeing && err != -ECANCELED && b->sv.events.qmp_round_trip)
        b->sv.events.qmp_round_trip(b->sv.events.arg, v->name, seconds);
}

static void be_engine_log(int level, const char *msg, void *payload)
{
    struct be_vm *v = payload;
    be_log(v->b, level, v->name, "%s", msg);
}

/* A CLI run without --vm names the VM after its QMP address ("unix:/run/vm1.qmp" → run_vm1.qmp): hold that
 * name's lock too, with the daemon's note, so that `smmuctl --qmp ADDR` on a VM the daemon holds fails at once
 * naming the daemon instead of waiting for a greeting QEMU will not send (it serves the daemon). Best effort:
 * a name some smmuctl holds right now is left alone. */
static void be_vm_alias_lock(struct be_vm *v)
{
    struct qmp_addr a;
    char canon[512], alias[128];
    struct smmu_error e = SMMU_ERROR_INIT;
    if (qmp_addr_parse(v->qmp, &a, NULL) < 0)
        return;
    qmp_addr_canonical(&a, canon, sizeof(canon));
    smmu_journal_name_from_addr(canon, alias, sizeof(alias));
    if (!strcmp(alias, v->name) || v->alias_lock)
        return;
    if (smmu_journal_open(v->b->state_dir, alias, canon, 0, &v->alias_lock, &e) < 0) {
        v->alias_lock = NULL;
        return;
    }
    if (v->note)
        smmu_journal_set_note(v->alias_lock, v->note);
}

static int be_vm_start(struct be_vm *v, struct smmu_error *err)
{
    struct be *b = v->b;
    struct smmu_vm_opts o = SMMU_VM_OPTS_INIT;
    o.qmp_addr = v->qmp;
    o.vm_name = v->name;
    o.state_dir = b->state_dir;
    o.sysfs_root = b->sysfs;
    o.dev_root = b->dev;
    o.connect_timeout_ms = b->o.connect_timeout_ms;
    o.command_timeout_ms = b->o.command_timeout_ms;
    o.lock_wait_ms = 0;
    o.connect_deadline_ms = 0;  /* one attempt, then LOST and retried for ever (retry_forever) */
    o.reconnect_deadline_ms = b->o.txn_reconnect_ms ? b->o.txn_reconnect_ms : 10000;
    o.reconcile = true;
    o.negotiate_oob = true;
    o.log = be_engine_log;
    o.log_payload = v;
    o.retry_forever = true;
    o.keep_facts = true;
    free(v->note);
    v->note = NULL;
    if (b->note && asprintf(&v->note, "%s --vm %s", b->note, v->name) < 0)
        v->note = NULL;
    o.holder_note = v->note ? v->note : b->note;
    o.on_state = be_on_state;
    o.on_reconciled = be_on_reconciled;
    o.on_call = be_on_call;
    o.event_payload = v;
    v->sv_state = SV_VM_CONNECTING;
    int r = smmu_vm_new(b->base, &o, &v->vm, err);
    if (r == 0)
        be_vm_alias_lock(v);
    return r;
}

static struct be_vm *be_vm_new(struct be *b, const char *name, const char *qmp, bool fd_pass, long order)
{
    struct be_vm *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->b = b;
    v->name = strdup(name);
    v->qmp = strdup(qmp);
    v->fd_pass = fd_pass;
    v->order = order;
    if (!v->name || !v->qmp) {
        free(v->name);
        free(v->qmp);
        free(v);
        return NULL;
    }
    return v;
}

/* Insert in registration order. */
static void be_vm_link(struct be *b, struct be_vm *v)
{
    struct be_vm **pp = &b->vms;
    while (*pp && (*pp)->order <= v->order)
        pp = &(*pp)->next;
    v->next = *pp;
    *pp = v;
    if (!v->next)
        b->vms_tail = v;
    if (v->order >= b->next_order)
        b->next_order = v->order + 1;
}

static void be_vm_unlink(struct be *b, struct be_vm *v)
{
    struct be_vm **pp = &b->vms, *prev = NULL;
    while (*pp && *pp != v) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp)
        *pp = v->next;
    if (b->vms_tail == v)
        b->vms_tail = prev;
}

static void be_op_free(struct be_op *o);

/* Let go of the VM: its engine handle (its QMP connection and journal lock) and the alias lock. */
static void be_vm_stop(struct be_vm *v)
{
    smmu_vm_free(v->vm);
    v->vm = NULL;
    if (v->alias_lock)
        smmu_journal_close(v->alias_lock);
    v->alias_lock = NULL;
}

static void be_vm_free(struct be_vm *v)
{
    be_vm_stop(v); /* every engine callback fires now (ours ignore a freeing backend) */
    if (v->kick)
        event_free(v->kick);
    while (v->head) {
        struct be_op *o = v->head;
        v->head = o->next;
        be_op_free(o);
    }
    while (v->pending) {
        struct be_op *o = v->pending;
        v->pending = o->next;
        be_op_free(o);
    }
    while (v->abandoned) {
        struct be_op *o = v->abandoned;
        v->abandoned = o->next;
        be_op_free(o);
    }
    json_decref(v->reconcile_report);
    free(v->name);
    free(v->qmp);
    free(v->note);
    free(v);
}

/* ---- operations ---- */

static void be_op_free(struct be_op *o)
{
    if (o->deadline)
        event_free(o->deadline);
    if (o->defer)
        event_free(o->defer);
    json_decref(o->args);
    json_decref(o->json);
    json_decref(o->djson);
    json_decref(o->ajson);
    json_decref(o->pending_ids);
    free(o);
}

static const char *be_command(enum sv_verb v)
{
    return sv_verb_name(v);
}

/* Tell the daemon (r->json = o->json). */
static void be_op_tell(struct be_op *o)
{
    struct be *b = o->v->b;
    o->res.json = o->json;
    o->res.error = o->err.code ? &o->err : NULL;
    if (!b->freeing)
        o->done(o->arg, o->op, &o->res);
}

static void be_vm_maybe_quiet(struct be *b);

/* The head operation ended: report it, keep it if pending, start the next one. */
static void be_op_end(struct be_op *o)
{
    struct be_vm *v = o->v;
    o->finished = true;
    if (v->head == o) {
        v->head = o->next;
        if (v->tail == o)
            v->tail = NULL;
        v->n_ops--;
    }
    o->next = NULL;
    be_op_tell(o);
    if (o->res.state == SV_OP_PENDING && o->pending_ids && json_array_size(o->pending_ids) > 0) {
        o->next = v->pending;
        v->pending = o;
    } else if (o->abandoned && o->eop) {
        o->next = v->abandoned; /* its engine request is still queued: freed when it comes back */
        v->abandoned = o;
    } else {
        be_op_free(o);
    }
    be_op_kick(v);
    be_vm_maybe_quiet(v->b);
}

static void be_fail(struct be_op *o, int exit_code, const struct smmu_error *e, bool sent_nothing, bool unreachable)
{
    o->res.state = SV_OP_FAILED;
    o->res.exit_code = exit_code;
    o->res.sent_nothing = sent_nothing;
    o->res.unreachable = unreachable;
    smmu_error_copy(&o->err, e);
    json_decref(o->json);
    o->json = smmu_fail_json(be_command(o->verb), exit_code, e, NULL);
}

/* Map an engine reply to the daemon's result (state, exit code as the CLI, the CLI's --json object). */
static void be_map_reply(struct be_op *o, const char *command, const struct smmu_reply *rep, struct sv_op_result *r,
                         json_t **json, struct smmu_error *err)
{
    struct be *b = o->v->b;
    memset(r, 0, sizeof(*r));
    r->exit_code = smmu_reply_exit_code(rep);
    json_decref(*json);
    *json = smmu_reply_json(command, rep, b->state_dir);
    smmu_error_clear(err);
    switch (rep->stage) {
    case SMMU_STAGE_TXN:
        switch (rep->kind == SMMU_REQ_TOPOLOGY || rep->kind == SMMU_REQ_PLAN ? SMMU_OUTCOME_DONE
                                                                            : rep->result.outcome) {
        case SMMU_OUTCOME_DONE:
            r->state = SV_OP_DONE;
            break;
        case SMMU_OUTCOME_ROLLED_BACK:
            r->state = SV_OP_ROLLED_BACK;
            break;
        case SMMU_OUTCOME_REFUSED:
            r->state = SV_OP_FAILED;
            r->sent_nothing = true;
            break;
        case SMMU_OUTCOME_UNREACHABLE:
            r->state = SV_OP_FAILED;
            r->unreachable = true;
            break;
        default:
            r->state = SV_OP_INCOMPLETE;
            if (rep->kind == SMMU_REQ_DETACH) { /* pending unplugs only: the guest may still release them */
                size_t i, npend = 0, nbad = 0;
                json_t *d;
                json_array_foreach(json_object_get(rep->result.report, "devices"), i, d) {
                    const char *oc = json_string_value(json_object_get(d, "outcome"));
                    if (oc && !strcmp(oc, "pending"))
                        npend++;
                    else if (!oc || strcmp(oc, "done"))
                        nbad++;
                }
                if (npend > 0 && nbad == 0)
                    r->state = SV_OP_PENDING;
            }
            break;
        }
        if (rep->result.error.code && r->state != SV_OP_DONE)
            smmu_error_copy(err, &rep->result.error);
        break;
    case SMMU_STAGE_CONNECT:
        r->state = SV_OP_FAILED;
        if (rep->error.code == -EINVAL)
            r->sent_nothing = true;
        else
            r->unreachable = true;
        smmu_error_copy(err, &rep->error);
        break;
    case SMMU_STAGE_FACTS:
        r->state = SV_OP_FAILED;
        r->unreachable = true;
        smmu_error_copy(err, &rep->error);
        break;
    case SMMU_STAGE_RECOVER:
        r->state = SV_OP_INCOMPLETE;
        smmu_error_copy(err, &rep->error);
        break;
    case SMMU_STAGE_JOURNAL:
    case SMMU_STAGE_PLAN:
        r->state = SV_OP_FAILED;
        r->sent_nothing = true;
        smmu_error_copy(err, &rep->error);
        break;
    default:
        r->state = SV_OP_FAILED;
        smmu_error_copy(err, &rep->error);
        break;
    }
}

/* Events for what a transaction did. */
static void be_txn_events(struct be_vm *v, const struct smmu_reply *rep)
{
    size_t i;
    json_t *d;
    if (rep->stage != SMMU_STAGE_TXN || !rep->result.report)
        return;
    json_t *devs = json_object_get(rep->result.report, "devices");
    if (rep->kind == SMMU_REQ_ATTACH) {
        if (rep->result.outcome != SMMU_OUTCOME_DONE)
            return;
        json_array_foreach(devs, i, d) {
            json_t *e = json_pack("{s:O?,s:O?,s:O?,s:O?,s:O?}", "device", json_object_get(d, "id"), "host",
                                  json_object_get(d, "bdf"), "port", json_object_get(d, "port"), "vsmmu",
                                  json_object_get(d, "vsmmu"), "host_smmu", json_object_get(d, "host_smmu"));
            be_emit(v, "device.attached", e);
            json_decref(e);
        }
    } else if (rep->kind == SMMU_REQ_DETACH) {
        json_array_foreach(devs, i, d) {
            const char *oc = json_string_value(json_object_get(d, "outcome"));
            const char *id = json_string_value(json_object_get(d, "id"));
            const char *bdf = json_string_value(json_object_get(d, "bdf"));
            if (!oc)
                continue;
            if (!strcmp(oc, "done"))
                be_emit_dev(v, "device.detached", id, bdf);
            else if (!strcmp(oc, "pending"))
                be_emit_dev(v, "device.unplug-pending", id, bdf);
            else if (!strcmp(oc, "refused"))
                be_emit_dev(v, "device.unplug-refused", id, bdf);
        }
    } else if (rep->kind == SMMU_REQ_RECOVER || rep->kind == SMMU_REQ_STATUS) {
        be_report_reconcile(v, rep->result.report);
    }
}

/* The ids a detach left pending (for the late DEVICE_DELETED). */
static json_t *be_pending_of(const json_t *detach_json)
{
    json_t *ids = json_array(), *d;
    size_t i;
    json_array_foreach(json_object_get(detach_json, "devices"), i, d) {
        const char *oc = json_string_value(json_object_get(d, "outcome"));
        if (oc && !strcmp(oc, "pending"))
            json_array_append(ids, json_object_get(d, "id"));
    }
    return ids;
}

/* A detach object whose pending devices are now all gone: done, as the CLI would have printed it. */
static void be_detach_json_done(json_t *dj, const json_t *gone)
{
    size_t i, k;
    json_t *d, *id;
    json_array_foreach(json_object_get(dj, "devices"), i, d) {
        const char *did = json_string_value(json_object_get(d, "id"));
        json_array_foreach(gone, k, id)
            if (did && json_string_value(id) && !strcmp(did, json_string_value(id))) {
                json_object_set_new(d, "outcome", json_string("done"));
                json_object_del(d, "message");
            }
    }
    json_object_set_new(dj, "ok", json_true());
    json_object_set_new(dj, "exit_code", json_integer(0));
    json_object_del(dj, "error");
}

/* Remove from ids every id in gone. */
static void be_ids_remove(json_t *ids, const json_t *gone)
{
    size_t i;
    json_t *id;
    for (size_t k = 0; k < json_array_size(ids);) {
        const char *pid = json_string_value(json_array_get(ids, k));
        bool hit = false;
        json_array_foreach(gone, i, id)
            if (pid && json_string_value(id) && !strcmp(pid, json_string_value(id)))
                hit = true;
        if (hit)
            json_array_remove(ids, k);
        else
            k++;
    }
}

/* DEVICE_DELETED settled pending unplugs (report "finished", or "vanished" with a restarted QEMU): each pending
 * detach whose devices are all gone now is done, reported through its callback once more. */
static void be_pending_settle(struct be_vm *v, const json_t *report)
{
    json_t *gone = json_array(), *id;
    size_t i;
    json_array_foreach(json_object_get(report, "finished"), i, id)
        json_array_append(gone, id);
    json_array_foreach(json_object_get(report, "vanished"), i, id)
        json_array_append(gone, id);
    /* a desired-state operation still running (its attach after a detach left pending) */
    struct be_op *h = v->head;
    if (h && h->started && h->verb == SV_VERB_DEVICES && h->pending_ids && json_array_size(h->pending_ids) > 0) {
        be_ids_remove(h->pending_ids, gone);
        if (json_array_size(h->pending_ids) == 0) {
            be_detach_json_done(h->djson, gone);
            h->res.state = SV_OP_DONE; /* the detach part is done; the attach decides the rest */
            h->res.exit_code = 0;
            smmu_error_clear(&h->err);
        }
    }
    struct be_op **pp = &v->pending;
    while (*pp) {
        struct be_op *o = *pp;
        be_ids_remove(o->pending_ids, gone);
        if (json_array_size(o->pending_ids) > 0) {
            pp = &o->next;
            continue;
        }
        *pp = o->next;
        json_t *dj = o->verb == SV_VERB_DEVICES ? o->djson : o->json;
        be_detach_json_done(dj, gone);
        o->res.state = SV_OP_DONE; /* a pending result means nothing else failed (be_devices_finish) */
        o->res.exit_code = 0;
        smmu_error_clear(&o->err);
        if (o->verb == SV_VERB_DEVICES)
            be_devices_json(o);
        be_op_tell(o);
        be_op_free(o);
    }
    json_decref(gone);
}

/* ---- request building ---- */

struct be_req {
    struct smmu_request req;
    char **devs;
    size_t n;
    char *iommufd, *id;
};

static void be_req_fini(struct be_req *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->devs[i]);
    free(q->devs);
    free(q->iommufd);
    free(q->id);
}

static int be_req_push(struct be_req *q, const char *s)
{
    char **nd = realloc(q->devs, (q->n + 1) * sizeof(char *));
    if (!nd)
        return -ENOMEM;
    q->devs = nd;
    if (!(nd[q->n] = strdup(s)))
        return -ENOMEM;
    q->n++;
    return 0;
}

/* "devices": strings (BDFs; detach also ids) or {"xml":"<hostdev…>"} (attach/plan). */
static int be_req_devices(struct be_req *q, const json_t *devs, bool allow_xml, struct smmu_error *err)
{
    size_t i;
    json_t *d;
    if (!json_is_array(devs) || json_array_size(devs) == 0)
        return smmu_error_set(err, -EINVAL, "\"devices\" must be a non-empty array");
    json_array_foreach(devs, i, d) {
        if (json_is_string(d) && *json_string_value(d)) {
            if (be_req_push(q, json_string_value(d)) < 0)
                return smmu_error_set(err, -ENOMEM, "out of memory");
            continue;
        }
        const char *xml = json_string_value(json_object_get(d, "xml"));
        if (!allow_xml || !xml)
            return smmu_error_set(err, -EINVAL, "devices[%zu]: expected %s", i,
                                  allow_xml ? "a PCI address or {\"xml\":\"<hostdev…>\"}" : "a QEMU id or PCI address");
        struct smmu_xml_hostdev *hd = NULL;
        size_t nh = 0;
        char name[32];
        snprintf(name, sizeof(name), "devices[%zu].xml", i);
        if (smmu_xml_hostdevs(xml, strlen(xml), name, &hd, &nh, err) < 0)
            return -EINVAL;
        for (size_t k = 0; k < nh; k++)
            if (be_req_push(q, hd[k].bdf) < 0) {
                smmu_xml_hostdevs_free(hd);
                return smmu_error_set(err, -ENOMEM, "out of memory");
            }
        smmu_xml_hostdevs_free(hd);
    }
    return 0;
}

static int be_req_build(struct be_vm *v, enum sv_verb verb, const json_t *args, struct be_req *q,
                        struct smmu_error *err)
{
    struct smmu_request z = {SMMU_REQ_ATTACH, NULL, 0, SMMU_PLAN_OPTS_INIT, 0, false};
    struct be *b = v->b;
    int r;
    memset(q, 0, sizeof(*q));
    q->req = z;
    switch (verb) {
    case SV_VERB_ATTACH:
    case SV_VERB_PLAN: {
        q->req.kind = verb == SV_VERB_ATTACH ? SMMU_REQ_ATTACH : SMMU_REQ_PLAN;
        if ((r = be_req_devices(q, json_object_get(args, "devices"), true, err)) < 0)
            return r;
        json_t *fp = json_object_get(args, "fd_pass"), *ids = json_object_get(args, "ids");
        q->req.plan.fd_pass = json_is_boolean(fp) ? json_is_true(fp) : v->fd_pass;
        q->req.plan.allow_mismatch = json_is_true(json_object_get(args, "allow_mismatch"));
        const char *fd = json_string_value(json_object_get(args, "iommufd"));
        if (fd && !(q->iommufd = strdup(fd)))
            return smmu_error_set(err, -ENOMEM, "out of memory");
        if (ids && json_array_size(ids) > 0) {
            if (json_array_size(ids) != 1 || q->n != 1 || !json_is_string(json_array_get(ids, 0)))
                return smmu_error_set(err, -EINVAL, "\"ids\": one id, for a single device (as --id)");
            if (!(q->id = strdup(json_string_value(json_array_get(ids, 0)))))
                return smmu_error_set(err, -ENOMEM, "out of memory");
        }
        q->req.plan.iommufd_id = q->iommufd;
        q->req.plan.device_id = q->id;
        q->req.plan.dev_root = b->dev;
        break;
    }
    case SV_VERB_DETACH: {
        q->req.kind = SMMU_REQ_DETACH;
        if ((r = be_req_devices(q, json_object_get(args, "devices"), false, err)) < 0)
            return r;
        json_t *t = json_object_get(args, "unplug_timeout");
        if (json_is_number(t)) {
            double s = json_number_value(t);
            if (s <= 0)
                q->req.no_wait = true; /* 0: do not wait: pending until DEVICE_DELETED */
            else
                q->req.unplug_timeout_ms = s > 86400 ? 86400000 : (int)(s * 1000 + 0.5);
        }
        break;
    }
    default:
        q->req.kind = SMMU_REQ_RECOVER;
        break;
    }
    q->req.devs = (const char *const *)q->devs;
    q->req.n_devs = q->n;
    return 0;
}

/* ---- running ---- */

static void be_engine_done(smmu_vm *vm, const struct smmu_reply *rep, void *payload);
static void be_devices_step(struct be_op *o);
static void be_devices_finish(struct be_op *o);

/* QEMU still unreachable at the request's deadline: nothing of it was sent (it never left the engine's queue:
 * a request starts only once the VM is READY). */
static void be_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct be_op *o = arg;
    struct be *b = o->v->b;
    struct smmu_error e = SMMU_ERROR_INIT;
    (void)fd; (void)what;
    if (o->finished || (o->eop && smmu_vm_state(o->v->vm) == SMMU_VM_READY && smmu_vm_queued(o->v->vm) <= 1))
        return; /* it runs: its own command timeouts bound it */
    smmu_error_set(&e, -EHOSTUNREACH, "QEMU at %s unreachable for %d ms", o->v->qmp,
                   b->o.request_timeout_ms ? b->o.request_timeout_ms : 30000);
    be_fail(o, SMMU_EXIT_UNREACHABLE, &e, true, true);
    if (o->eop) {
        o->abandoned = true;
        smmu_op_cancel(o->eop); /* dropped, unsent, when the VM is ready again */
    }
    be_op_end(o);
}

/* A reply that must come from the loop for an operation that was never queued (queue full). */
static void be_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct be_op *o = arg;
    (void)fd; (void)what;
    be_op_tell(o);
    be_op_free(o);
}

static int be_submit_engine(struct be_op *o, const struct smmu_request *req, struct smmu_error *err)
{
    int r = smmu_vm_submit(o->v->vm, req, be_engine_done, o, &o->eop);
    if (r < 0)
        return smmu_error_set(err, r, "cannot queue the request: %s", strerror(-r));
    return 0;
}

static void be_engine_done(smmu_vm *vm, const struct smmu_reply *rep, void *payload)
{
    struct be_op *o = payload;
    struct be_vm *v = o->v;
    (void)vm;
    o->eop = NULL;
    if (v->b->freeing)
        return;
    if (o->abandoned) { /* reported unreachable already: forget it */
        struct be_op **pp = &v->abandoned;
        while (*pp && *pp != o)
            pp = &(*pp)->next;
        if (*pp) {
            *pp = o->next;
            be_op_free(o);
        }
        return;
    }
    be_txn_events(v, rep);
    if (o->verb != SV_VERB_DEVICES) {
        be_map_reply(o, be_command(o->verb), rep, &o->res, &o->json, &o->err);
        if (o->res.state == SV_OP_PENDING)
            o->pending_ids = be_pending_of(o->json);
        be_op_end(o);
        return;
    }
    struct sv_op_result r;
    json_t *j = NULL;
    struct smmu_error e = SMMU_ERROR_INIT;
    if (o->waiting) { /* the VM is ready (or not reachable at all) */
        o->waiting = false;
        if (rep->stage != SMMU_STAGE_TXN) {
            be_map_reply(o, "devices", rep, &o->res, &o->json, &o->err);
            be_op_end(o);
            return;
        }
        be_devices_step(o);
        return;
    }
    be_map_reply(o, o->dstage == 0 ? "detach" : "attach", rep, &r, &j, &e);
    if (o->dstage == 0) {
        o->djson = j;
        o->res = r;
        o->err = e;
        if (r.state == SV_OP_PENDING)
            o->pending_ids = be_pending_of(j);
        if (r.state != SV_OP_DONE && r.state != SV_OP_PENDING) {
            be_devices_finish(o); /* the detach failed: attach nothing */
            return;
        }
        o->dstage = 1;
    } else {
        json_array_append_new(o->ajson, j);
        o->rounds++;
        if (r.state != SV_OP_DONE) {
            o->res = r;
            o->err = e;
            be_devices_finish(o);
            return;
        }
    }
    be_devices_step(o);
}

/* ---- the desired-state verb ---- */

static bool be_str_in(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s))
            return true;
    return false;
}

static void be_devices_json(struct be_op *o)
{
    json_t *j = json_pack("{s:b,s:s,s:i,s:O?,s:O}", "ok", o->res.state == SV_OP_DONE, "command", "devices",
                          "exit_code", o->res.exit_code, "detach", o->djson, "attach", o->ajson);
    if (o->err.code && o->res.state != SV_OP_DONE)
        json_object_set_new(j, "error", smmu_error_json(&o->err));
    json_decref(o->json);
    o->json = j;
}

static void be_devices_finish(struct be_op *o)
{
    be_devices_json(o);
    be_op_end(o);
}

/* Stage 0: detach what smmuctl plugged (the journal) that is not listed; stage 1: attach what the VM lacks, in
 * rounds (a device with its own id goes alone, as --id). Each is computed when it starts, from the journal and
 * the kept facts, so a repeat of the same set sends nothing. */
static void be_devices_step(struct be_op *o)
{
    struct be_vm *v = o->v;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_facts f;
    json_t *want = json_object_get(o->args, "devices"), *d;
    size_t i, nw = json_array_size(want);
    struct be_req q;
    struct smmu_request z = {SMMU_REQ_DETACH, NULL, 0, SMMU_PLAN_OPTS_INIT, 0, true};
    char **hosts = calloc(nw + 1, sizeof(char *));
    memset(&q, 0, sizeof(q));
    q.req = z;
    if (!o->ajson)
        o->ajson = json_array();
    if (!hosts || !o->ajson) {
        smmu_error_set(&e, -ENOMEM, "out of memory");
        be_fail(o, SMMU_EXIT_FAILED, &e, false, false);
        goto fail;
    }
    if (!json_is_array(want)) {
        smmu_error_set(&e, -EINVAL, "\"devices\" must be an array");
        be_fail(o, SMMU_EXIT_USAGE, &e, true, false);
        goto fail;
    }
    json_array_foreach(want, i, d) {
        const char *h = json_string_value(json_object_get(d, "host"));
        char bdf[SMMU_BDF_LEN + 1];
        if (!h || smmu_bdf_parse(h, bdf, &e) < 0) {
            if (!h)
                smmu_error_set(&e, -EINVAL, "devices[%zu]: \"host\" must be a PCI address", i);
            be_fail(o, SMMU_EXIT_USAGE, &e, true, false);
            goto fail;
        }
        if (!(hosts[i] = strdup(bdf))) {
            smmu_error_set(&e, -ENOMEM, "out of memory");
            be_fail(o, SMMU_EXIT_FAILED, &e, false, false);
            goto fail;
        }
    }
    if (smmu_vm_facts(v->vm, &f, &e) < 0) {
        /* not ready: a topology request (no QMP: the kept facts) waits for it like any request */
        struct smmu_request rq = {SMMU_REQ_TOPOLOGY, NULL, 0, SMMU_PLAN_OPTS_INIT, 0, false};
        if (e.code == -ENOTCONN && !o->waiting && be_submit_engine(o, &rq, &e) == 0) {
            o->waiting = true;
            goto out;
        }
        be_fail(o, SMMU_EXIT_FAILED, &e, false, false);
        goto fail;
    }
    smmu_journal *j = smmu_vm_journal(v->vm);
    if (o->dstage == 0) {
        json_array_foreach(j ? smmu_journal_devices(j) : NULL, i, d) {
            const char *bdf = json_string_value(json_object_get(d, "bdf"));
            const char *id = json_string_value(json_object_get(d, "id"));
            const char *st = json_string_value(json_object_get(d, "state"));
            if (!bdf || !id || !st || strcmp(st, "attached") || be_str_in(hosts, nw, bdf))
                continue; /* listed, or already being unplugged (never sent again) */
            be_req_push(&q, id);
        }
    } else if (o->rounds <= (int)nw) { /* bounded: each round attaches at least one device */
        q.req.kind = SMMU_REQ_ATTACH;
        q.req.no_wait = false;
        json_array_foreach(want, i, d) {
            const char *id = json_string_value(json_object_get(d, "id"));
            bool own = id && *id;
            if (be_str_in(f.attached, f.n_attached, hosts[i]) || be_str_in(q.devs, q.n, hosts[i]))
                continue; /* in the VM already (plugged by smmuctl or not: never twice) */
            if (own && q.n > 0)
                continue; /* alone, in a later round */
            be_req_push(&q, hosts[i]);
            if (own) {
                q.id = strdup(id);
                break;
            }
        }
        q.req.plan.fd_pass = v->fd_pass;
        q.req.plan.device_id = q.id;
        q.req.plan.dev_root = v->b->dev;
    }
    smmu_facts_free(&f);
    if (q.n == 0 && o->dstage == 0) {
        o->dstage = 1;
        for (i = 0; i < nw; i++)
            free(hosts[i]);
        free(hosts);
        be_req_fini(&q);
        be_devices_step(o);
        return;
    }
    if (q.n == 0) { /* converged */
        if (o->res.state != SV_OP_PENDING) {
            o->res.state = SV_OP_DONE;
            o->res.exit_code = 0;
        }
        be_devices_finish(o);
        goto out;
    }
    q.req.devs = (const char *const *)q.devs;
    q.req.n_devs = q.n;
    if (be_submit_engine(o, &q.req, &e) < 0) {
        be_fail(o, SMMU_EXIT_FAILED, &e, false, false);
        goto fail;
    }
    goto out;
fail:
    be_devices_finish(o);
out:
    for (i = 0; hosts && i < nw; i++)
        free(hosts[i]);
    free(hosts);
    be_req_fini(&q);
}

/* Start the head operation (from the loop). */
static void be_op_start(struct be_op *o)
{
    struct be_vm *v = o->v;
    struct be *b = v->b;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct be_req q;
    o->started = true;
    if (smmu_vm_state(v->vm) != SMMU_VM_READY) {
        int ms = b->o.request_timeout_ms ? b->o.request_timeout_ms : 30000;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(o->deadline, &tv);
    }
    if (o->verb == SV_VERB_DEVICES) {
        o->dstage = 0;
        be_devices_step(o);
        return;
    }
    if (be_req_build(v, o->verb, o->args, &q, &e) < 0) {
        be_req_fini(&q);
        be_fail(o, e.code == -ENOMEM ? SMMU_EXIT_FAILED : SMMU_EXIT_USAGE, &e, true, false);
        be_op_end(o);
        return;
    }
    if (be_submit_engine(o, &q.req, &e) < 0) {
        be_fail(o, SMMU_EXIT_FAILED, &e, false, false);
        be_req_fini(&q);
        be_op_end(o);
        return;
    }
    be_req_fini(&q);
}

static void be_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct be_vm *v = arg;
    (void)fd; (void)what;
    struct be_op *o = v->head;
    if (!o || o->started || v->b->stopping || v->b->freeing)
        return;
    be_op_start(o);
}

static void be_op_kick(struct be_vm *v)
{
    static const struct timeval zero = {0, 0};
    if (v->head && !v->head->started)
        evtimer_add(v->kick, &zero);
}

/* ---- the interface ---- */

static struct be *be_of(struct sv_backend *sb)
{
    return (struct be *)sb;
}

static int be_vm_start_all(struct be_vm *v, struct smmu_error *err)
{
    if (!(v->kick = evtimer_new(v->b->base, be_kick_cb, v)))
        return smmu_error_set(err, -ENOMEM, "out of memory");
    return be_vm_start(v, err);
}

static int be_vm_register(struct sv_backend *sb, const char *vm, const char *qmp, bool fd_pass, bool *created,
                          struct smmu_error *err)
{
    struct be *b = be_of(sb);
    struct qmp_addr a, a2;
    char canon[512], canon2[512];
    int r;
    *created = false;
    if ((r = smmu_journal_check_name(vm, err)) < 0)
        return r;
    if (!qmp)
        return smmu_error_set(err, -EINVAL, "no QMP address given");
    if ((r = qmp_addr_parse(qmp, &a, err)) < 0)
        return r;
    qmp_addr_canonical(&a, canon, sizeof(canon));
    struct be_vm *v = be_find(b, vm);
    if (v) {
        if (qmp_addr_parse(v->qmp, &a2, NULL) == 0)
            qmp_addr_canonical(&a2, canon2, sizeof(canon2));
        else
            snprintf(canon2, sizeof(canon2), "%s", v->qmp);
        if (!strcmp(canon, canon2) && v->fd_pass == fd_pass)
            return 0;
        return smmu_error_set(err, -EEXIST, "VM %s is registered with qmp %s, fd_pass %s", vm, v->qmp,
                              v->fd_pass ? "true" : "false");
    }
    for (struct be_vm *w = b->vms; w; w = w->next)
        if (qmp_addr_parse(w->qmp, &a2, NULL) == 0 && qmp_addr_canonical(&a2, canon2, sizeof(canon2)) >= 0 &&
            !strcmp(canon, canon2))
            return smmu_error_set(err, -EEXIST, "%s is the monitor of VM %s already", qmp, w->name);
    if (!(v = be_vm_new(b, vm, qmp, fd_pass, b->next_order)))
        return smmu_error_set(err, -ENOMEM, "out of memory");
    if ((r = be_reg_save(v, err)) < 0) {
        be_vm_free(v);
        return r;
    }
    be_vm_link(b, v);
    if ((r = be_vm_start_all(v, err)) < 0) {
        char path[4200];
        be_vm_unlink(b, v);
        if (be_reg_path(b, vm, path, sizeof(path)) == 0)
            unlink(path);
        be_vm_free(v);
        return r;
    }
    be_log(b, 1, vm, "registered (%s%s)", qmp, fd_pass ? ", fd_pass" : "");
    *created = true;
    return 0;
}

static int be_vm_unregister(struct sv_backend *sb, const char *vm, struct smmu_error *err)
{
    struct be *b = be_of(sb);
    struct be_vm *v = be_find(b, vm);
    char path[4200];
    if (!v)
        return smmu_error_set(err, -ENOENT, "no VM %s", vm);
    if (v->head)
        return smmu_error_set(err, -EBUSY, "VM %s has an operation in flight", vm);
    if (be_reg_path(b, vm, path, sizeof(path)) == 0 && unlink(path) < 0 && errno != ENOENT)
        return smmu_error_set(err, -errno, "cannot remove %s: %s", path, strerror(errno));
    /* pending detaches end here: nobody settles them for the daemon any more (the journal keeps them) */
    while (v->pending) {
        struct be_op *o = v->pending;
        v->pending = o->next;
        o->res.state = SV_OP_INCOMPLETE;
        be_op_tell(o);
        be_op_free(o);
    }
    be_vm_unlink(b, v);
    be_vm_free(v); /* releases the lock; the journal stays */
    be_log(b, 1, vm, "unregistered (journal kept)");
    return 0;
}

static int be_count_devices(smmu_journal *j, const char *state)
{
    size_t i;
    json_t *d;
    int n = 0;
    if (!j)
        return 0;
    json_array_foreach(smmu_journal_devices(j), i, d) {
        const char *st = json_string_value(json_object_get(d, "state"));
        if (st && !strcmp(st, state))
            n++;
    }
    return n;
}

/* `status --json` from what the daemon knows (journal and kept facts): nothing sent to QEMU. */
static json_t *be_status_json(struct be_vm *v)
{
    smmu_journal *j = v->vm ? smmu_vm_journal(v->vm) : NULL;
    json_t *att = json_array(), *pen = json_array(), *d;
    const struct smmu_topology *t = v->vm ? smmu_vm_topology(v->vm) : NULL;
    size_t i;
    json_array_foreach(j ? smmu_journal_devices(j) : NULL, i, d) {
        const char *st = json_string_value(json_object_get(d, "state"));
        json_array_append(st && !strcmp(st, "unplug-pending") ? pen : att, d);
    }
    json_t *unk = smmu_status_unknown_json(t, j);
    json_t *txn = j ? smmu_journal_txn(j) : NULL;
    json_t *fd = j ? json_object_get(smmu_journal_doc(j), "iommufd") : NULL;
    int code = (txn || json_array_size(pen) > 0) ? SMMU_EXIT_INCOMPLETE : SMMU_EXIT_DONE;
    return json_pack("{s:b,s:s,s:i,s:o,s:o,s:o,s:[],s:[],s:O,s:O,s:n}", "ok", code == 0, "command", "status",
                     "exit_code", code, "attached", att, "pending", pen, "unknown", unk, "finished", "vanished",
                     "interrupted", txn ? txn : json_null(), "iommufd", fd ? fd : json_null(), "recovered");
}

static json_t *be_vm_info(struct sv_backend *sb, const char *vm, bool with_status)
{
    struct be *b = be_of(sb);
    struct be_vm *v = be_find(b, vm);
    if (!v)
        return NULL;
    const struct smmu_topology *t = v->vm ? smmu_vm_topology(v->vm) : NULL; /* NULL after shutdown */
    smmu_journal *j = v->vm ? smmu_vm_journal(v->vm) : NULL;
    json_t *q = t ? json_sprintf("%d.%d.%d", t->qemu_major, t->qemu_minor, t->qemu_micro) : json_null();
    json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:i,s:i,s:b}", "name", v->name, "qmp", v->qmp, "state",
                          sv_vm_state_name(v->sv_state), "qemu", q, "attached", be_count_devices(j, "attached"),
                          "pending", be_count_devices(j, "unplug-pending"), "fd_pass", v->fd_pass);
    if (with_status)
        json_object_set_new(o, "status", be_status_json(v));
    return o;
}

static json_t *be_vm_list(struct sv_backend *sb)
{
    struct be *b = be_of(sb);
    json_t *a = json_array();
    for (struct be_vm *v = b->vms; v; v = v->next)
        json_array_append_new(a, json_string(v->name));
    return a;
}

static json_t *be_vm_topology(struct sv_backend *sb, const char *vm, struct smmu_error *err)
{
    struct be *b = be_of(sb);
    struct be_vm *v = be_find(b, vm);
    struct smmu_facts f;
    if (!v) {
        smmu_error_set(err, -ENOENT, "no VM %s", vm);
        return NULL;
    }
    if (!v->vm) {
        smmu_error_set(err, -ESHUTDOWN, "the daemon is shutting down");
        return NULL;
    }
    if (smmu_vm_facts(v->vm, &f, err) < 0)
        return NULL;
    json_t *o = smmu_topology_reply_json(&f);
    smmu_facts_free(&f);
    return o;
}

static int be_op_submit(struct sv_backend *sb, const char *vm, enum sv_verb verb, const json_t *args, uint64_t op,
                        be_done_fn done, void *arg, struct smmu_error *err)
{
    static const struct timeval zero = {0, 0};
    struct be *b = be_of(sb);
    struct be_vm *v = be_find(b, vm);
    size_t max = b->o.queue_max ? b->o.queue_max : BE_QUEUE_MAX;
    if (!v)
        return smmu_error_set(err, -ENOENT, "no VM %s", vm);
    if (b->stopping)
        return smmu_error_set(err, -ESHUTDOWN, "the daemon is shutting down");
    struct be_op *o = calloc(1, sizeof(*o));
    if (!o || !(o->deadline = evtimer_new(b->base, be_deadline_cb, o)) ||
        !(o->defer = evtimer_new(b->base, be_defer_cb, o)) || !(o->args = args ? json_deep_copy(args) : json_object())) {
        if (o)
            be_op_free(o);
        return smmu_error_set(err, -ENOMEM, "out of memory");
    }
    o->v = v;
    o->verb = verb;
    o->op = op;
    o->done = done;
    o->arg = arg;
    if (v->n_ops >= max) { /* nothing queued; told from the loop */
        struct smmu_error e = SMMU_ERROR_INIT;
        smmu_error_set(&e, -EAGAIN, "VM %s has %zu operations queued", vm, v->n_ops);
        be_fail(o, SMMU_EXIT_FAILED, &e, true, false);
        o->res.queue_full = true;
        o->finished = true;
        evtimer_add(o->defer, &zero);
        return 0;
    }
    if (v->tail)
        v->tail->next = o;
    else
        v->head = o;
    v->tail = o;
    v->n_ops++;
    be_op_kick(v); /* from the loop: the reply never comes from inside this call */
    return 0;
}

static bool be_ready(struct sv_backend *sb)
{
    struct be *b = be_of(sb);
    for (struct be_vm *v = b->vms; v; v = v->next)
        if (!v->settled)
            return false;
    return true;
}

/* Shutdown: once no VM runs an operation (or at the deadline), every handle is freed — a transaction still
 * running ends with its journal kept for the next start — and done is told. */
static void be_shutdown_finish(struct be *b)
{
    void (*done)(void *) = b->shutdown_done;
    b->shutdown_done = NULL;
    if (!done)
        return;
    evtimer_del(b->shutdown_timer);
    for (struct be_vm *v = b->vms; v; v = v->next) {
        be_vm_stop(v); /* ends what still runs (journaled); its callbacks fire now */
    }
    done(b->shutdown_arg);
}

static void be_vm_maybe_quiet(struct be *b)
{
    if (!b->stopping || !b->shutdown_done)
        return;
    for (struct be_vm *v = b->vms; v; v = v->next)
        if (v->head && v->head->started && !v->head->finished)
            return;
    static const struct timeval zero = {0, 0};
    evtimer_add(b->shutdown_defer, &zero);
}

static void be_shutdown_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    be_shutdown_finish(arg);
}

static void be_shutdown(struct sv_backend *sb, int deadline_ms, void (*done)(void *arg), void *arg)
{
    struct be *b = be_of(sb);
    struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};
    b->stopping = true;
    b->shutdown_done = done;
    b->shutdown_arg = arg;
    /* operations not started yet are not started: they fail now (nothing sent) */
    for (struct be_vm *v = b->vms; v; v = v->next) {
        struct be_op **pp = &v->head;
        while (*pp) {
            struct be_op *o = *pp;
            if (o->started) {
                pp = &o->next;
                continue;
            }
            struct smmu_error e = SMMU_ERROR_INIT;
            smmu_error_set(&e, -ESHUTDOWN, "the daemon is shutting down; nothing was sent");
            be_fail(o, SMMU_EXIT_FAILED, &e, true, false);
            *pp = o->next;
            v->n_ops--;
            o->finished = true;
            be_op_tell(o);
            be_op_free(o);
        }
        v->tail = NULL;
        for (struct be_op *o = v->head; o; o = o->next)
            v->tail = o;
    }
    evtimer_add(b->shutdown_timer, &tv);
    be_vm_maybe_quiet(b);
}

static void be_free(struct sv_backend *sb)
{
    struct be *b = be_of(sb);
    if (!b)
        return;
    b->freeing = true;
    while (b->vms) {
        struct be_vm *v = b->vms;
        b->vms = v->next;
        be_vm_free(v);
    }
    if (b->shutdown_timer)
        event_free(b->shutdown_timer);
    if (b->shutdown_defer)
        event_free(b->shutdown_defer);
    free(b->state_dir);
    free(b->vms_dir);
    free(b->sysfs);
    free(b->dev);
    free(b->note);
    free(b);
}

static const struct sv_backend_ops be_ops = {
    .vm_register = be_vm_register,
    .vm_unregister = be_vm_unregister,
    .vm_info = be_vm_info,
    .vm_list = be_vm_list,
    .vm_topology = be_vm_topology,
    .op_submit = be_op_submit,
    .ready = be_ready,
    .shutdown = be_shutdown,
    .free = be_free,
};

/* ---- construction: load <state-dir>/vms/ ---- */

static int be_mkdir(const char *path, struct smmu_error *err)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return smmu_error_set(err, -errno, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

static int be_load_one(struct be *b, const char *file, struct smmu_error *err)
{
    char path[4400];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/%s", b->vms_dir, file);
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return smmu_error_set(err, -EINVAL, "registration %s: %s (line %d)", path, je.text, je.line);
    const char *vm = json_string_value(json_object_get(doc, "vm"));
    const char *qmp = json_string_value(json_object_get(doc, "qmp"));
    json_t *ver = json_object_get(doc, "version"), *fp = json_object_get(doc, "fd_pass");
    json_t *ord = json_object_get(doc, "order");
    size_t fl = strlen(file);
    int r = 0;
    if (!json_is_integer(ver) || json_integer_value(ver) != 1 || !vm || !qmp || !json_is_boolean(fp) ||
        !json_is_integer(ord) || strlen(vm) + 5 != fl || strncmp(file, vm, strlen(vm))) {
        json_decref(doc);
        return smmu_error_set(err, -EINVAL, "registration %s is not a smmuctl registration (version 1 with "
                              "\"vm\" as the file is named, \"qmp\", \"fd_pass\", \"order\")", path);
    }
    struct qmp_addr a;
    if ((r = smmu_journal_check_name(vm, err)) < 0 || (r = qmp_addr_parse(qmp, &a, err)) < 0) {
        smmu_error_prefix(err, "registration %s", path);
        json_decref(doc);
        return -EINVAL;
    }
    struct be_vm *v = be_vm_new(b, vm, qmp, json_is_true(fp), (long)json_integer_value(ord));
    json_decref(doc);
    if (!v)
        return smmu_error_set(err, -ENOMEM, "out of memory");
    be_vm_link(b, v);
    return 0;
}

struct sv_backend *sv_backend_engine_new(struct event_base *base, const struct sv_engine_opts *opts,
                                         struct smmu_error *err)
{
    struct be *b = calloc(1, sizeof(*b));
    char note[600];
    if (!b) {
        smmu_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    b->sv.ops = &be_ops;
    b->base = base;
    b->o = *opts;
    b->state_dir = strdup(opts->state_dir ? opts->state_dir : "/run/smmuctl");
    b->sysfs = strdup(opts->sysfs_root ? opts->sysfs_root : "/sys");
    b->dev = strdup(opts->dev_root ? opts->dev_root : "/dev");
    snprintf(note, sizeof(note), "server %s", opts->server ? opts->server : "");
    b->note = opts->server && *opts->server ? strdup(note) : NULL;
    b->shutdown_timer = evtimer_new(base, be_shutdown_cb, b);
    b->shutdown_defer = evtimer_new(base, be_shutdown_cb, b);
    if (b->state_dir && asprintf(&b->vms_dir, "%s/vms", b->state_dir) < 0)
        b->vms_dir = NULL;
    if (!b->state_dir || !b->sysfs || !b->dev || !b->vms_dir || (opts->server && *opts->server && !b->note) ||
        !b->shutdown_timer || !b->shutdown_defer) {
        smmu_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    b->o.state_dir = b->o.sysfs_root = b->o.dev_root = b->o.server = NULL; /* ours are the copies */
    if (be_mkdir(b->state_dir, err) < 0 || be_mkdir(b->vms_dir, err) < 0)
        goto fail;
    DIR *d = opendir(b->vms_dir);
    if (!d) {
        smmu_error_set(err, -errno, "cannot read %s: %s", b->vms_dir, strerror(errno));
        goto fail;
    }
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json"))
            continue; /* temp files of an interrupted write included (".json.tmp.PID") */
        r = be_load_one(b, de->d_name, err);
    }
    closedir(d);
    if (r < 0)
        goto fail;
    for (struct be_vm *v = b->vms; v; v = v->next)
        if (be_vm_start_all(v, err) < 0) {
            smmu_error_prefix(err, "VM %s", v->name);
            goto fail;
        }
    if (b->vms)
        be_log(b, 1, NULL, "took back the registered VMs from %s", b->vms_dir);
    return &b->sv;
fail:
    be_free(&b->sv);
    return NULL;
}

struct smmu_vm *sv_backend_engine_vm(struct sv_backend *sb, const char *vm)
{
    struct be_vm *v = be_find(be_of(sb), vm);
    return v ? v->vm : NULL;
}
