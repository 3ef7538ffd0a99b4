/* fake_backend.c — see fake_backend.h. */
#define _GNU_SOURCE
#include "fake_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fvm {
    char *name, *qmp;
    bool fd_pass;
    enum sv_vm_state state;
    struct fvm *next;
};

struct fop {
    uint64_t handle;
    char *vm;
    enum sv_verb verb;
    enum fake_outcome outcome;
    void (*done)(void *arg, uint64_t op, const struct sv_op_result *r);
    void *arg;
    bool held, finished;
    enum sv_op_state final; /* what to report next */
    bool report_pending;     /* report pending first */
    bool queued;             /* a report is waiting for the tick */
    struct fop *next;
};

struct fake_backend {
    struct sv_backend sv;
    struct event_base *base;
    struct event *tick, *deadline;
    struct fvm *vms;
    struct fop *ops;
    enum fake_outcome script[64];
    size_t nscript;
    size_t submitted;
    json_t *last_args;
    enum sv_verb last_verb;
    bool ready, busy;
    int shutdowns, deadline_ms;
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
};

#define FB(b) ((struct fake_backend *)(b))

static struct fvm *find_vm(struct fake_backend *fb, const char *name)
{
    for (struct fvm *v = fb->vms; v; v = v->next)
        if (!strcmp(v->name, name))
            return v;
    return NULL;
}

static void kick(struct fake_backend *fb)
{
    struct timeval zero = {0, 0};
    evtimer_add(fb->tick, &zero);
}

static void check_shutdown(struct fake_backend *fb)
{
    void (*done)(void *);
    for (struct fop *o = fb->ops; o; o = o->next)
        if (!o->finished)
            return;
    if (!fb->shutdown_done)
        return;
    done = fb->shutdown_done;
    fb->shutdown_done = NULL;
    evtimer_del(fb->deadline);
    done(fb->shutdown_arg);
}

static void report(struct fake_backend *fb, struct fop *o)
{
    struct sv_op_result r = {0};
    struct smmu_error e = SMMU_ERROR_INIT;
    json_t *j;
    if (o->report_pending) {
        o->report_pending = false;
        r.state = SV_OP_PENDING;
        r.exit_code = 4;
        j = json_pack("{s:b,s:s,s:s}", "ok", 0, "command", sv_verb_name(o->verb), "state", "pending");
        r.json = j;
        o->done(o->arg, o->handle, &r);
        json_decref(j);
        return;
    }
    r.state = o->final;
    switch (o->outcome) {
    case FAKE_REFUSED:
        smmu_error_set_qmp(&e, "device_add", "GenericError", "fake refusal");
        r.exit_code = 1;
        break;
    case FAKE_UNREACHABLE:
        smmu_error_set(&e, -ECONNREFUSED, "QEMU unreachable (fake)");
        r.unreachable = true;
        r.exit_code = 3;
        break;
    case FAKE_BAD_INPUT:
        smmu_error_set(&e, -EINVAL, "no such host device (fake)");
        r.sent_nothing = true;
        r.exit_code = 2;
        break;
    case FAKE_QUEUE_FULL:
        smmu_error_set(&e, -EAGAIN, "the VM's queue is full (fake)");
        r.queue_full = true;
        r.exit_code = 3;
        break;
    default:
        r.exit_code = o->final == SV_OP_DONE ? 0 : o->final == SV_OP_INCOMPLETE ? 4 : 1;
        break;
    }
    if (e.code)
        r.error = &e;
    if (r.error)
        j = json_pack("{s:b,s:s,s:o}", "ok", 0, "command", sv_verb_name(o->verb), "error",
                      json_pack("{s:s,s:s}", "code", smmu_errno_name(e.code), "message", e.message));
    else
        j = json_pack("{s:b,s:s,s:s,s:I}", "ok", o->final == SV_OP_DONE, "command", sv_verb_name(o->verb), "vm",
                      o->vm, "handle", (json_int_t)o->handle);
    r.json = j;
    o->finished = true;
    o->done(o->arg, o->handle, &r);
    json_decref(j);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct fake_backend *fb = arg;
    for (struct fop *o = fb->ops; o; o = o->next) {
        if (!o->queued)
            continue;
        o->queued = false;
        report(fb, o);
    }
    check_shutdown(fb);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct fake_backend *fb = arg;
    for (struct fop *o = fb->ops; o; o = o->next)
        if (!o->finished) { /* "journal the rest" */
            o->final = SV_OP_INCOMPLETE;
            o->outcome = FAKE_INCOMPLETE;
            o->report_pending = false;
            report(fb, o);
        }
    check_shutdown(fb);
}

static int f_register(struct sv_backend *b, const char *vm, const char *qmp, bool fd_pass, bool *created,
                      struct smmu_error *err)
{
    struct fake_backend *fb = FB(b);
    struct fvm *v = find_vm(fb, vm);
    *created = false;
    if (!strncmp(qmp, "bad:", 4))
        return smmu_error_set(err, -EINVAL, "qmp '%s': not an address (fake)", qmp);
    if (v) {
        if (strcmp(v->qmp, qmp) || v->fd_pass != fd_pass)
            return smmu_error_set(err, -EEXIST, "VM '%s' is registered with qmp %s", vm, v->qmp);
        return 0;
    }
    v = calloc(1, sizeof(*v));
    v->name = strdup(vm);
    v->qmp = strdup(qmp);
    v->fd_pass = fd_pass;
    v->state = SV_VM_CONNECTING;
    {
        struct fvm **pp = &fb->vms;
        while (*pp)
            pp = &(*pp)->next;
        *pp = v;
    }
    *created = true;
    return 0;
}

static int f_unregister(struct sv_backend *b, const char *vm, struct smmu_error *err)
{
    struct fake_backend *fb = FB(b);
    for (struct fvm **pp = &fb->vms; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->name, vm)) {
            struct fvm *v = *pp;
            if (fb->busy)
                return smmu_error_set(err, -EBUSY, "VM '%s' has an operation in flight", vm);
            *pp = v->next;
            free(v->name);
            free(v->qmp);
            free(v);
            return 0;
        }
    return smmu_error_set(err, -ENOENT, "no VM '%s'", vm);
}

static json_t *f_info(struct sv_backend *b, const char *vm, bool with_status)
{
    struct fvm *v = find_vm(FB(b), vm);
    json_t *o;
    if (!v)
        return NULL;
    o = json_pack("{s:s,s:s,s:s,s:{s:s},s:[],s:[]}", "name", v->name, "qmp", v->qmp, "state",
                  sv_vm_state_name(v->state), "qemu", "version", "11.1.3", "attached", "pending");
    if (with_status)
        json_object_set_new(o, "status", json_pack("{s:b,s:s}", "ok", 1, "command", "status"));
    return o;
}

static json_t *f_list(struct sv_backend *b)
{
    json_t *a = json_array();
    for (struct fvm *v = FB(b)->vms; v; v = v->next)
        json_array_append_new(a, json_string(v->name));
    return a;
}

static json_t *f_topology(struct sv_backend *b, const char *vm, struct smmu_error *err)
{
    struct fvm *v = find_vm(FB(b), vm);
    if (!v) {
        smmu_error_set(err, -ENOENT, "no VM '%s'", vm);
        return NULL;
    }
    if (v->state == SV_VM_DISCONNECTED) {
        smmu_error_set(err, -ECONNREFUSED, "VM '%s': QEMU unreachable (fake)", vm);
        return NULL;
    }
    return json_pack("{s:b,s:s,s:[]}", "ok", 1, "command", "topology", "vsmmus");
}

static int f_submit(struct sv_backend *b, const char *vm, enum sv_verb verb, const json_t *args, uint64_t op,
                    void (*done)(void *arg, uint64_t op, const struct sv_op_result *r), void *arg,
                    struct smmu_error *err)
{
    struct fake_backend *fb = FB(b);
    struct fop *o, **pp;
    if (!find_vm(fb, vm))
        return smmu_error_set(err, -ENOENT, "no VM '%s'", vm);
    o = calloc(1, sizeof(*o));
    o->handle = op;
    o->vm = strdup(vm);
    o->verb = verb;
    o->done = done;
    o->arg = arg;
    o->outcome = FAKE_DONE;
    if (fb->nscript) {
        o->outcome = fb->script[0];
        memmove(fb->script, fb->script + 1, (fb->nscript - 1) * sizeof(fb->script[0]));
        fb->nscript--;
    }
    switch (o->outcome) {
    case FAKE_DONE: o->final = SV_OP_DONE; o->queued = true; break;
    case FAKE_HOLD: o->held = true; break;
    case FAKE_PENDING: o->held = true; o->report_pending = true; o->queued = true; break;
    case FAKE_REFUSED: o->final = SV_OP_ROLLED_BACK; o->queued = true; break;
    case FAKE_UNREACHABLE: case FAKE_BAD_INPUT: case FAKE_QUEUE_FULL: o->final = SV_OP_FAILED; o->queued = true; break;
    case FAKE_INCOMPLETE: o->final = SV_OP_INCOMPLETE; o->queued = true; break;
    }
    for (pp = &fb->ops; *pp; pp = &(*pp)->next)
        ;
    *pp = o;
    fb->submitted++;
    json_decref(fb->last_args);
    fb->last_args = json_deep_copy(args);
    fb->last_verb = verb;
    if (o->queued)
        kick(fb);
    return 0;
}

static bool f_ready(struct sv_backend *b)
{
    return FB(b)->ready;
}

static void f_shutdown(struct sv_backend *b, int deadline_ms, void (*done)(void *arg), void *arg)
{
    struct fake_backend *fb = FB(b);
    struct timeval tv = { deadline_ms / 1000, (deadline_ms % 1000) * 1000 };
    fb->shutdowns++;
    fb->deadline_ms = deadline_ms;
    fb->shutdown_done = done;
    fb->shutdown_arg = arg;
    evtimer_add(fb->deadline, &tv);
    kick(fb); /* done comes from the loop */
}

static void f_free(struct sv_backend *b)
{
    fake_backend_free(FB(b));
}

static const struct sv_backend_ops fake_ops = {
    .vm_register = f_register,
    .vm_unregister = f_unregister,
    .vm_info = f_info,
    .vm_list = f_list,
    .vm_topology = f_topology,
    .op_submit = f_submit,
    .ready = f_ready,
    .shutdown = f_shutdown,
    .free = f_free,
};

struct fake_backend *fake_backend_new(struct event_base *base)
{
    struct fake_backend *fb = calloc(1, sizeof(*fb));
    fb->sv.ops = &fake_ops;
    fb->base = base;
    fb->tick = evtimer_new(base, on_tick, fb);
    fb->deadline = evtimer_new(base, on_deadline, fb);
    fb->ready = true;
    return fb;
}

struct sv_backend *fake_backend_sv(struct fake_backend *fb)
{
    return &fb->sv;
}

void fake_backend_free(struct fake_backend *fb)
{
    if (!fb)
        return;
    while (fb->vms) {
        struct fvm *v = fb->vms;
        fb->vms = v->next;
        free(v->name);
        free(v->qmp);
        free(v);
    }
    while (fb->ops) {
        struct fop *o = fb->ops;
        fb->ops = o->next;
        free(o->vm);
        free(o);
    }
    json_decref(fb->last_args);
    event_free(fb->tick);
    event_free(fb->deadline);
    free(fb);
}

void fake_backend_next(struct fake_backend *fb, enum fake_outcome o)
{
    if (fb->nscript < sizeof(fb->script) / sizeof(fb->script[0]))
        fb->script[fb->nscript++] = o;
}

size_t fake_backend_submitted(const struct fake_backend *fb)
{
    return fb->submitted;
}

uint64_t fake_backend_held(const struct fake_backend *fb)
{
    for (struct fop *o = fb->ops; o; o = o->next)
        if (o->held && !o->finished && !o->queued)
            return o->handle;
    return 0;
}

void fake_backend_finish(struct fake_backend *fb, uint64_t handle, enum sv_op_state state)
{
    for (struct fop *o = fb->ops; o; o = o->next)
        if (o->handle == handle && !o->finished) {
            o->final = state;
            o->outcome = state == SV_OP_DONE ? FAKE_DONE : state == SV_OP_INCOMPLETE ? FAKE_INCOMPLETE : FAKE_REFUSED;
            o->queued = true;
            kick(fb);
        }
}

const json_t *fake_backend_last_args(const struct fake_backend *fb, enum sv_verb *verb)
{
    if (verb)
        *verb = fb->last_verb;
    return fb->last_args;
}

void fake_backend_emit(struct fake_backend *fb, const char *vm, const char *type, const json_t *data)
{
    if (fb->sv.events.event)
        fb->sv.events.event(fb->sv.events.arg, vm, type, data);
}

void fake_backend_set_state(struct fake_backend *fb, const char *vm, enum sv_vm_state st)
{
    struct fvm *v = find_vm(fb, vm);
    if (v)
        v->state = st;
    if (fb->sv.events.vm_state)
        fb->sv.events.vm_state(fb->sv.events.arg, vm, st);
}

void fake_backend_set_ready(struct fake_backend *fb, bool ready)
{
    fb->ready = ready;
}

void fake_backend_set_busy(struct fake_backend *fb, bool busy)
{
    fb->busy = busy;
}

int fake_backend_shutdowns(const struct fake_backend *fb, int *deadline_ms)
{
    if (deadline_ms)
        *deadline_ms = fb->deadline_ms;
    return fb->shutdowns;
}
