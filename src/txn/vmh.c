/* vmh.c — the VM handle: connection state machine, journal lock, reconcile, and a request queue run one at a
 * time. See include/smmuctl/engine.h. Timers and callbacks only; nothing here runs the loop or sleeps. */
#define _GNU_SOURCE
#include "smmuctl/engine.h"
#include "smmuctl/journal.h"
#include "smmuctl/qmp_reconnect.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum op_phase { OP_QUEUED, OP_FACTS, OP_RECOVER, OP_FACTS_AGAIN, OP_TXN };

struct smmu_op {
    smmu_vm *vm;
    struct smmu_op *next;
    struct smmu_request req;
    char **devs;
    char *iommufd_id, *device_id, *dev_root;
    smmu_op_done_fn done;
    void *payload;
    struct smmu_reply reply;
    struct smmu_facts facts;
    bool have_facts;
    struct smmu_plan *plan;
    smmu_txn *txn;
    struct smmu_result rec;      /* the implicit recover's result (discarded) */
    enum op_phase phase;
    bool cancelled;
    unsigned long fgen;          /* vm->kgen when its discovery started */
};

struct smmu_vm {
    struct event_base *base;
    struct smmu_vm_opts o;
    char *addr, *name, *state_dir, *sysfs, *dev;
    char canon[512];
    enum smmu_vm_state state;
    qmp_client *c;               /* READY (or being reconciled); NULL while not connected */
    qmp_reconnect *rc;           /* a connection attempt with backoff in progress */
    bool lock_waiting;           /* the lock was busy once: the wait was logged */
    bool rc_for_txn;             /* ... on behalf of the running transaction */
    smmu_reconnect_done_fn txn_done;
    void *txn_arg;
    smmu_journal *j;
    struct event *lock_timer, *kick;
    struct timespec lock_start;
    struct smmu_op *head, *tail; /* head runs when phase != OP_QUEUED */
    size_t n_ops;
    struct smmu_error conn_err;  /* why the VM is CLOSED */
    enum smmu_req_stage conn_stage;
    /* reconcile after a (re)connect */
    struct smmu_facts rfacts;
    struct smmu_result rres;
    smmu_txn *rtxn;
    bool dying, freeing, free_requested;
    int in_cb;                   /* request callbacks on the stack */
    /* opts.keep_facts */
    struct smmu_topology kt;     /* the kept topology (bound_smmu not filled) */
    bool kt_valid;
    unsigned long kgen;          /* bumped on every change seen: a discovery that overlapped one is not kept */
    unsigned long rgen;          /* kgen when the reconcile's discovery started */
    unsigned long discoveries;
    bool settling;               /* rtxn is a settle (status after DEVICE_DELETED), not a connect's reconcile */
    bool settle_due;             /* a DEVICE_DELETED named a device the journal has unplug-pending */
    bool sgather;                /* discovering for a settle (the kept topology was not known) */
};

static void vm_kick(smmu_vm *vm);
static void vm_run(smmu_vm *vm);

static void vm_set_state(smmu_vm *vm, enum smmu_vm_state st)
{
    if (vm->state == st)
        return;
    vm->state = st;
    if (vm->o.on_state && !vm->dying)
        vm->o.on_state(vm, st, vm->o.event_payload);
}

const char *smmu_vm_state_name(enum smmu_vm_state s)
{
    static const char *const names[] = {"connecting", "greeting", "negotiating", "reconciling", "ready", "lost",
                                        "closed"};
    return (unsigned)s < sizeof(names) / sizeof(*names) ? names[s] : "?";
}

static void vm_log(smmu_vm *vm, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vm_log(smmu_vm *vm, int level, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    if (!vm->o.log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vm->o.log(level, msg, vm->o.log_payload);
}

enum smmu_vm_state smmu_vm_state(const smmu_vm *vm)
{
    if (vm->state == SMMU_VM_CONNECTING && vm->rc) {
        qmp_client *c = qmp_reconnect_client(vm->rc);
        switch (c ? qmp_client_state(c) : QMP_STATE_IDLE) {
        case QMP_STATE_GREETING: return SMMU_VM_GREETING;
        case QMP_STATE_NEGOTIATING: return SMMU_VM_NEGOTIATING;
        default: break;
        }
    }
    return vm->state;
}

size_t smmu_vm_queued(const smmu_vm *vm)
{
    return vm->n_ops;
}

const struct smmu_topology *smmu_vm_topology(const smmu_vm *vm)
{
    return vm->o.keep_facts && vm->kt_valid ? &vm->kt : NULL;
}

int smmu_vm_facts(smmu_vm *vm, struct smmu_facts *out, struct smmu_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!smmu_vm_topology(vm))
        return smmu_error_set(err, -ENOTCONN, "the VM's topology is not known yet (QEMU %s)",
                              smmu_vm_state_name(vm->state));
    return smmu_facts_from_topology(&vm->kt, vm->sysfs, vm->j, out, err);
}

smmu_journal *smmu_vm_journal(smmu_vm *vm)
{
    return vm->j;
}

unsigned long smmu_vm_discoveries(const smmu_vm *vm)
{
    return vm->discoveries;
}

/* ---- requests ---- */

static void op_free(struct smmu_op *op)
{
    for (size_t i = 0; op->devs && op->devs[i]; i++)
        free(op->devs[i]);
    free(op->devs);
    free(op->iommufd_id);
    free(op->device_id);
    free(op->dev_root);
    smmu_plan_free(op->plan);
    if (op->have_facts)
        smmu_facts_free(&op->facts);
    smmu_result_fini(&op->reply.result);
    smmu_result_fini(&op->rec);
    free(op);
}

static void vm_really_free(smmu_vm *vm);

/* The head request ends: its callback runs, then the next one starts (from the loop). */
static void op_reply(struct smmu_op *op, enum smmu_req_stage stage)
{
    smmu_vm *vm = op->vm;
    op->reply.stage = stage;
    op->reply.kind = op->req.kind;
    op->reply.facts = op->have_facts ? &op->facts : NULL;
    op->reply.plan = op->plan;
    /* unlink first: the callback may submit or free the handle */
    struct smmu_op **pp = &vm->head, *prev = NULL;
    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = op->next;
        if (vm->tail == op)
            vm->tail = prev;
        vm->n_ops--;
    }
    vm->in_cb++;
    op->done(vm, &op->reply, op->payload);
    vm->in_cb--;
    op_free(op);
    if (vm->free_requested && vm->in_cb == 0 && !vm->freeing) {
        vm_really_free(vm); /* smmu_vm_free was called from a callback: finish it now */
        return;
    }
    if (!vm->dying)
        vm_kick(vm);
}

static void op_fail(struct smmu_op *op, enum smmu_req_stage stage, const struct smmu_error *e)
{
    smmu_error_copy(&op->reply.error, e);
    op_reply(op, stage);
}

static void op_txn_done(struct smmu_result *res, void *payload)
{
    struct smmu_op *op = payload;
    (void)res;
    op->txn = NULL;
    op_reply(op, SMMU_STAGE_TXN);
}

static void op_facts_cb(int err, const struct smmu_error *e, void *payload);

/* ---- opts.keep_facts: the topology kept exact from what QEMU confirmed ---- */

static void vm_keep_topology(smmu_vm *vm, const struct smmu_topology *t)
{
    smmu_topology_free(&vm->kt);
    vm->kt_valid = smmu_topology_copy(&vm->kt, t) == 0;
    for (size_t i = 0; vm->kt_valid && i < vm->kt.n_vsmmus; i++)
        vm->kt.vsmmus[i].bound_smmu[0] = 0;
}

static void vm_forget_topology(smmu_vm *vm)
{
    vm->kgen++;
    vm->kt_valid = false;
}

static const char *arg_str(const json_t *args, const char *key)
{
    return json_string_value(json_object_get(args, key));
}

/* Apply a command QEMU confirmed to the kept topology; false when it is not one the handle can follow. */
static bool kt_apply(struct smmu_topology *t, const char *cmd, const json_t *args)
{
    if (!strcmp(cmd, "device_add")) {
        const char *drv = arg_str(args, "driver"), *id = arg_str(args, "id"), *bus = arg_str(args, "bus");
        const char *host = arg_str(args, "host"), *fd = arg_str(args, "iommufd");
        int port = bus ? smmu_topology_find_port(t, bus) : -1;
        char bdf[SMMU_BDF_LEN + 1] = "";
        if (!drv || strcmp(drv, "vfio-pci") || !id || !*id || port < 0 || t->ports[port].occupant_path[0])
            return false;
        if (host && *host && smmu_bdf_parse(host, bdf, NULL) < 0)
            return false;
        struct smmu_vfio_dev *nv = realloc(t->vfio, (t->n_vfio + 1) * sizeof(*nv));
        if (!nv)
            return false;
        t->vfio = nv;
        struct smmu_vfio_dev *d = &nv[t->n_vfio++];
        memset(d, 0, sizeof(*d));
        snprintf(d->id, sizeof(d->id), "%s", id);
        snprintf(d->path, sizeof(d->path), "/machine/peripheral/%s", id);
        snprintf(d->host, sizeof(d->host), "%s", bdf);
        snprintf(d->iommufd, sizeof(d->iommufd), "%s", fd ? fd : "");
        d->rootport = port;
        d->hotplugged = true;
        struct smmu_rootport *p = &t->ports[port];
        snprintf(p->occupant_id, sizeof(p->occupant_id), "%s", id);
        snprintf(p->occupant_path, sizeof(p->occupant_path), "%s", d->path);
        snprintf(p->occupant_driver, sizeof(p->occupant_driver), "vfio-pci");
        return true;
    }
    if (!strcmp(cmd, "object-add")) {
        const char *type = arg_str(args, "qom-type"), *id = arg_str(args, "id");
        if (!type || strcmp(type, "iommufd") || !id || smmu_topology_has_iommufd(t, id))
            return false;
        void *nb = realloc(t->iommufds, (t->n_iommufds + 1) * sizeof(*t->iommufds));
        if (!nb)
            return false;
        t->iommufds = nb;
        snprintf(t->iommufds[t->n_iommufds++], SMMU_ID_LEN, "%s", id);
        return true;
    }
    if (!strcmp(cmd, "object-del")) {
        const char *id = arg_str(args, "id");
        for (size_t i = 0; id && i < t->n_iommufds; i++)
            if (!strcmp(t->iommufds[i], id)) {
                memmove(&t->iommufds[i], &t->iommufds[i + 1], (t->n_iommufds - i - 1) * sizeof(*t->iommufds));
                t->n_iommufds--;
                return true;
            }
        return false;
    }
    return true; /* device_del: nothing changes until DEVICE_DELETED */
}

static void vm_observe(qmp_client *c, const char *cmd, const json_t *args, int err, const json_t *ret,
                       double seconds, void *payload)
{
    smmu_vm *vm = payload;
    (void)c; (void)ret;
    if (vm->o.on_call && !vm->dying)
        vm->o.on_call(vm, cmd, err, seconds, vm->o.event_payload);
    if (!vm->o.keep_facts || (strcmp(cmd, "device_add") && strcmp(cmd, "device_del") && strcmp(cmd, "object-add") &&
                              strcmp(cmd, "object-del")))
        return;
    if (err == -EIO || (err == 0 && !strcmp(cmd, "device_del")))
        return; /* QEMU refused it: nothing changed (an accepted device_del changes nothing until the event) */
    if (err < 0 || !vm->kt_valid || !kt_apply(&vm->kt, cmd, args))
        vm_forget_topology(vm); /* no reply, or nothing we can follow: discover again */
    else
        vm->kgen++;
}

/* The guest released a device (or QEMU removed one): the kept topology loses it; a pending unplug of the
 * journal is settled between requests (vm_kick_cb). */
static void vm_dev_deleted(qmp_client *c, const char *event, json_t *data, json_t *msg, void *payload)
{
    smmu_vm *vm = payload;
    struct smmu_topology *t = &vm->kt;
    const char *path = json_string_value(json_object_get(data, "path"));
    (void)c; (void)msg;
    if (!event || vm->dying)
        return;
    vm->kgen++;
    const char *did = json_string_value(json_object_get(data, "device"));
    json_t *jd = did && vm->j ? smmu_journal_find_device(vm->j, did) : NULL;
    const char *jst = json_string_value(json_object_get(jd, "state"));
    if (jst && !strcmp(jst, "unplug-pending"))
        vm->settle_due = true;
    if (!vm->kt_valid || !path)
        goto out;
    for (size_t i = 0; i < t->n_ports; i++) {
        if (!strcmp(t->ports[i].path, path)) {
            vm_forget_topology(vm);
            goto out;
        }
        if (!strcmp(t->ports[i].occupant_path, path)) {
            t->ports[i].occupant_id[0] = t->ports[i].occupant_path[0] = t->ports[i].occupant_driver[0] = 0;
        }
    }
    for (size_t i = 0; i < t->n_vsmmus; i++)
        if (!strcmp(t->vsmmus[i].path, path)) {
            vm_forget_topology(vm);
            goto out;
        }
    for (size_t i = 0; i < t->n_vfio;) {
        if (!strcmp(t->vfio[i].path, path)) {
            memmove(&t->vfio[i], &t->vfio[i + 1], (t->n_vfio - i - 1) * sizeof(*t->vfio));
            t->n_vfio--;
        } else {
            i++;
        }
    }
out:
    if (!vm->rtxn && !vm->sgather && (!vm->head || vm->head->phase == OP_QUEUED))
        vm_kick(vm);
}

/* A new client: observe its calls and DEVICE_DELETED; what was kept is discovered again. */
static void vm_hook_client(smmu_vm *vm, qmp_client *c)
{
    if (vm->o.keep_facts || vm->o.on_call)
        qmp_client_observe(c, vm_observe, vm); /* the CLI's handle observes nothing */
    if (vm->o.keep_facts) {
        vm_forget_topology(vm);
        qmp_subscribe(c, "DEVICE_DELETED", NULL, vm_dev_deleted, vm, NULL);
    }
}

static void vm_txn_opts(smmu_vm *vm, struct smmu_op *op, struct smmu_txn_opts *to);

static void op_start_facts(struct smmu_op *op, enum op_phase phase)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_vm *vm = op->vm;
    if (op->have_facts)
        smmu_facts_free(&op->facts);
    op->have_facts = false;
    op->phase = phase;
    if (vm->o.keep_facts && vm->kt_valid) { /* the kept facts: nothing sent */
        if (smmu_facts_from_topology(&vm->kt, vm->sysfs, vm->j, &op->facts, &e) < 0) {
            op_fail(op, SMMU_STAGE_FACTS, &e);
            return;
        }
        op_facts_cb(0, NULL, op);
        return;
    }
    op->fgen = vm->kgen;
    vm->discoveries++;
    if (smmu_facts_gather_start(vm->c, vm->sysfs, vm->j, &op->facts, op_facts_cb, op, &e) < 0)
        op_fail(op, SMMU_STAGE_FACTS, &e);
}

static void op_recovered(struct smmu_result *res, void *payload)
{
    struct smmu_op *op = payload;
    struct smmu_error e = SMMU_ERROR_INIT;
    (void)res;
    op->txn = NULL;
    smmu_result_fini(&op->rec);
    if (smmu_journal_txn(op->vm->j)) {
        smmu_error_set(&e, -EBUSY, "an interrupted transaction could not be recovered; run `smmuctl recover`");
        op_fail(op, SMMU_STAGE_RECOVER, &e);
        return;
    }
    op_start_facts(op, OP_FACTS_AGAIN); /* the VM changed: look again */
}

static void op_run_txn(struct smmu_op *op)
{
    smmu_vm *vm = op->vm;
    struct smmu_txn_opts to;
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = 0;
    vm_txn_opts(vm, op, &to);
    op->phase = OP_TXN;
    switch (op->req.kind) {
    case SMMU_REQ_ATTACH:
        if (op->cancelled) {
            smmu_error_set(&op->reply.result.error, -ECANCELED, "interrupted before anything was sent");
            op->reply.result.outcome = SMMU_OUTCOME_ROLLED_BACK;
            op->reply.result.cancelled = true;
            op_reply(op, SMMU_STAGE_TXN);
            return;
        }
        if (smmu_facts_plan(&op->facts, vm->sysfs, (const char *const *)op->devs, op->req.n_devs, &op->req.plan,
                            &op->plan, &e) < 0) {
            op_fail(op, SMMU_STAGE_PLAN, &e);
            return;
        }
        r = smmu_txn_attach_start(&vm->c, vm->j, &op->facts, op->plan, &to, &op->reply.result, op_txn_done, op,
                                  &op->txn);
        break;
    case SMMU_REQ_DETACH:
        if (op->cancelled) {
            smmu_error_set(&op->reply.result.error, -ECANCELED, "interrupted before anything was sent");
            op->reply.result.outcome = SMMU_OUTCOME_ROLLED_BACK;
            op->reply.result.cancelled = true;
            op_reply(op, SMMU_STAGE_TXN);
            return;
        }
        r = smmu_txn_detach_start(&vm->c, vm->j, &op->facts, (const char *const *)op->devs, op->req.n_devs, &to,
                                  &op->reply.result, op_txn_done, op, &op->txn);
        break;
    default:
        r = smmu_txn_status_start(&vm->c, vm->j, &op->facts, op->req.kind == SMMU_REQ_RECOVER, &to,
                                  &op->reply.result, op_txn_done, op, &op->txn);
        break;
    }
    if (r < 0)
        op_fail(op, SMMU_STAGE_TXN, &op->reply.result.error);
}

static void op_facts_cb(int err, const struct smmu_error *e, void *payload)
{
    struct smmu_op *op = payload;
    smmu_vm *vm = op->vm;
    struct smmu_txn_opts to;
    if (err < 0) {
        op_fail(op, SMMU_STAGE_FACTS, e);
        return;
    }
    if (!op->have_facts && vm->o.keep_facts && !vm->kt_valid && op->fgen == vm->kgen)
        vm_keep_topology(vm, &op->facts.topo); /* nothing changed while it was discovered */
    op->have_facts = true;
    if (op->phase == OP_FACTS && op->facts.warnings[0])
        vm_log(vm, 1, "warning: %s", op->facts.warnings);
    switch (op->req.kind) {
    case SMMU_REQ_TOPOLOGY:
        op_reply(op, SMMU_STAGE_TXN);
        return;
    case SMMU_REQ_PLAN: {
        struct smmu_error pe = SMMU_ERROR_INIT;
        if (smmu_facts_plan(&op->facts, vm->sysfs, (const char *const *)op->devs, op->req.n_devs, &op->req.plan,
                            &op->plan, &pe) < 0) {
            op_fail(op, SMMU_STAGE_PLAN, &pe);
            return;
        }
        op_reply(op, SMMU_STAGE_TXN);
        return;
    }
    case SMMU_REQ_ATTACH:
    case SMMU_REQ_DETACH:
        /* An interrupted transaction left by a crashed smmuctl is finished before new work starts. */
        if (op->phase == OP_FACTS && smmu_journal_txn(vm->j)) {
            vm_log(vm, 1, "an interrupted %s transaction is in the journal: recovering it first",
                   json_string_value(json_object_get(smmu_journal_txn(vm->j), "op")));
            vm_txn_opts(vm, op, &to);
            op->phase = OP_RECOVER;
            if (smmu_txn_status_start(&vm->c, vm->j, &op->facts, true, &to, &op->rec, op_recovered, op,
                                      &op->txn) < 0)
                op_fail(op, SMMU_STAGE_RECOVER, &op->rec.error);
            return;
        }
        break;
    default:
        break;
    }
    op_run_txn(op);
}

/* ---- reconnect on behalf of a transaction (smmu_txn_reconnect_fn) ---- */

static void vm_closed_client(smmu_vm *vm)
{
    /* keep a closed client in place so later calls fail cleanly with -ENOTCONN */
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    if (qmp_client_new(&vm->c, vm->base, &o) < 0)
        vm->c = NULL;
}

/* The QMP client's log lines (its warnings; with log_qmp every message) go to the handle's log sink. */
static void vm_client_log(int level, const char *msg, void *payload)
{
    smmu_vm *vm = payload;
    if (vm->o.log) /* the client's info lines (dropped stray replies) are the handle's debug */
        vm->o.log(level >= 2 ? 2 : 0, msg, vm->o.log_payload);
}

static void vm_client_opts(smmu_vm *vm, struct qmp_client_opts *co)
{
    struct qmp_client_opts d = QMP_CLIENT_OPTS_INIT;
    *co = d;
    co->log = vm_client_log;
    co->log_payload = vm;
    co->log_traffic = vm->o.log_qmp;
    co->connect_timeout_ms = vm->o.connect_timeout_ms;
    co->command_timeout_ms = vm->o.command_timeout_ms;
    co->record = vm->o.record;
    co->negotiate_oob = vm->o.negotiate_oob;
}

static void vm_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload);

static void vm_txn_reconnected(int err, qmp_client *n, const struct smmu_error *e, void *payload)
{
    smmu_vm *vm = payload;
    struct smmu_error my = SMMU_ERROR_INIT;
    smmu_reconnect_done_fn done = vm->txn_done;
    vm->rc = NULL;
    vm->rc_for_txn = false;
    if (err == 0) {
        /* Whose journal is it (DESIGN §5): a QEMU restarted meanwhile is not this transaction's — nothing of it
         * is undone there. The transaction ends with its journal kept; the handle reconnects and voids it. */
        struct qmp_peer peer;
        char why[512];
        if (qmp_client_peer(n, &peer) == 0 &&
            smmu_journal_owner_check(vm->j, vm->canon, &peer, why, sizeof(why)) == SMMU_OWNER_RESTARTED) {
            vm_log(vm, 1, "%s: the interrupted transaction is left to the next connect", why);
            qmp_client_free(n);
            err = smmu_error_set(&my, -ECONNRESET, "%s", why);
            e = &my;
        }
    }
    if (err == 0) {
        vm->c = n;
        vm_hook_client(vm, n);
        vm_set_state(vm, SMMU_VM_READY);
        qmp_client_on_state(n, vm_state_cb, vm);
    } else {
        if (e != &my)
            smmu_error_copy(&my, e);
        vm_closed_client(vm);
    }
    done(err, err < 0 ? &my : NULL, vm->txn_arg);
}

static int vm_txn_reconnect(qmp_client **c, void *payload, smmu_reconnect_done_fn done, void *arg)
{
    smmu_vm *vm = payload;
    struct qmp_reconnect_opts o = QMP_RECONNECT_OPTS_INIT;
    if (vm->dying)
        return -ECANCELED;
    vm_log(vm, 1, "connection to QEMU lost; reconnecting to %s", vm->addr);
    qmp_client_free(*c);
    *c = NULL;
    vm_set_state(vm, SMMU_VM_LOST);
    o.addr = vm->addr;
    vm_client_opts(vm, &o.client);
    o.deadline_ms = vm->o.reconnect_deadline_ms;
    vm->txn_done = done;
    vm->txn_arg = arg;
    vm->rc_for_txn = true;
    int r = qmp_reconnect_start(vm->base, &o, vm_txn_reconnected, vm, &vm->rc);
    if (r < 0) {
        vm->rc_for_txn = false;
        vm_closed_client(vm);
    }
    return r;
}

static void vm_txn_opts(smmu_vm *vm, struct smmu_op *op, struct smmu_txn_opts *to)
{
    struct smmu_txn_opts d = SMMU_TXN_OPTS_INIT;
    *to = d;
    to->sysfs_root = vm->sysfs;
    to->dev_root = vm->dev;
    to->unplug_timeout_ms = op ? op->req.unplug_timeout_ms : 0;
    to->no_wait = op ? op->req.no_wait : false;
    to->reconnect = vm_txn_reconnect;
    to->reconnect_payload = vm;
    to->step_hook = vm->o.step_hook;
    to->step_hook_payload = vm->o.step_hook_payload;
}

/* ---- connection: connect, lock, reconcile, ready; lost → backoff ---- */

static void vm_close_all(smmu_vm *vm, enum smmu_req_stage stage, const struct smmu_error *e)
{
    vm_set_state(vm, SMMU_VM_CLOSED);
    vm->conn_stage = stage;
    smmu_error_copy(&vm->conn_err, e);
    while (vm->head && vm->head->phase == OP_QUEUED)
        op_fail(vm->head, stage, e);
}

static void vm_ready(smmu_vm *vm)
{
    vm_set_state(vm, SMMU_VM_READY);
    vm_kick(vm);
}

static void vm_reconciled(struct smmu_result *res, void *payload)
{
    smmu_vm *vm = payload;
    bool settle = vm->settling;
    vm->rtxn = NULL;
    vm->settling = false;
    if (vm->o.on_reconciled && !vm->dying)
        vm->o.on_reconciled(vm, res->report, !settle, vm->o.event_payload);
    smmu_result_fini(res);
    smmu_facts_free(&vm->rfacts);
    if (vm->dying)
        return;
    if (settle)
        vm_kick(vm);
    else
        vm_ready(vm);
}

static void vm_reconcile_facts(int err, const struct smmu_error *e, void *payload)
{
    smmu_vm *vm = payload;
    struct smmu_txn_opts to;
    (void)e;
    if (vm->dying)
        return;
    if (err < 0) {
        vm_ready(vm); /* the requests will see what is wrong */
        return;
    }
    if (vm->o.keep_facts && vm->rgen == vm->kgen)
        vm_keep_topology(vm, &vm->rfacts.topo);
    vm_txn_opts(vm, NULL, &to);
    if (smmu_txn_status_start(&vm->c, vm->j, &vm->rfacts, true, &to, &vm->rres, vm_reconciled, vm, &vm->rtxn) < 0) {
        smmu_facts_free(&vm->rfacts);
        vm_ready(vm);
    }
}

static void vm_reconcile(smmu_vm *vm)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    vm_set_state(vm, SMMU_VM_RECONCILING);
    if (!vm->o.reconcile) {
        vm_ready(vm);
        return;
    }
    vm->rgen = vm->kgen;
    vm->discoveries++;
    if (smmu_facts_gather_start(vm->c, vm->sysfs, vm->j, &vm->rfacts, vm_reconcile_facts, vm, &e) < 0)
        vm_ready(vm);
}

static long vm_elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void vm_connect(smmu_vm *vm, int deadline_ms);

/* The journal lock: one non-blocking try now, then every 5 ms on a timer up to lock_wait_ms. */
static void vm_try_lock(smmu_vm *vm)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = smmu_journal_open(vm->state_dir, vm->name, vm->canon, 0, &vm->j, &e);
    if (r == 0 && vm->o.holder_note && smmu_journal_set_note(vm->j, vm->o.holder_note) < 0)
        vm_log(vm, 2, "cannot write the lock file's note: %s", strerror(errno));
    if (r == 0) {
        /* DESIGN §5 "Locks before sockets": the lock first, then the one monitor connection QEMU serves */
        if (vm->c)
            vm_reconcile(vm);
        else
            vm_connect(vm, vm->o.connect_deadline_ms);
        return;
    }
    if (r == -EBUSY && smmu_journal_busy_server(vm->state_dir, vm->name, &e)) {
        vm_close_all(vm, SMMU_STAGE_JOURNAL, &e); /* a daemon holds the VM: no wait (DESIGN §7) */
        return;
    }
    if (r == -EBUSY && (vm->o.retry_forever || vm_elapsed_ms(&vm->lock_start) < vm->o.lock_wait_ms)) {
        struct timeval tv = {0, 5000};
        if (!vm->lock_waiting) { /* say once for whom we wait (the message names the holder) */
            vm->lock_waiting = true;
            vm_log(vm, 1, "waiting for the VM's lock: %s", e.message);
        }
        evtimer_add(vm->lock_timer, &tv);
        return;
    }
    char *over = r == -EBUSY ? strstr(e.message, "held for over 0 ms") : NULL;
    if (over) { /* say how long we waited, not the single try's 0 ms */
        char tail[64];
        snprintf(tail, sizeof(tail), "held for over %d ms)", vm->o.lock_wait_ms);
        snprintf(over, sizeof(e.message) - (size_t)(over - e.message), "%s", tail);
    }
    vm_close_all(vm, SMMU_STAGE_JOURNAL, &e);
}

static void vm_lock_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    vm_try_lock(arg);
}

/* Whose journal is it (DESIGN §5): another VM's address → refuse, nothing sent; a restarted QEMU on this
 * address → the old transaction and devices are void (never undone in the new process). */
static bool vm_check_owner(smmu_vm *vm)
{
    struct qmp_peer peer, *pp = qmp_client_peer(vm->c, &peer) == 0 ? &peer : NULL;
    struct smmu_error e = SMMU_ERROR_INIT;
    char why[sizeof(e.message)];
    switch (smmu_journal_owner_check(vm->j, vm->canon, pp, why, sizeof(why))) {
    case SMMU_OWNER_OTHER_ADDRESS:
        smmu_error_set(&e, -EXDEV, "%s", why);
        qmp_client_free(vm->c);
        vm->c = NULL;
        vm_close_all(vm, SMMU_STAGE_JOURNAL, &e);
        return false;
    case SMMU_OWNER_RESTARTED:
        vm_log(vm, 1, "%s", why);
        json_decref(smmu_journal_void(vm->j));
        break;
    default:
        break;
    }
    smmu_journal_owner_set(vm->j, vm->canon, pp);
    if (smmu_journal_save(vm->j, &e) < 0)
        vm_log(vm, 2, "%s", e.message);
    return true;
}

static void vm_connected(smmu_vm *vm)
{
    if (!vm_check_owner(vm))
        return;
    vm_reconcile(vm); /* the lock was taken before connecting and stays ours across reconnects */
}

static void vm_connect_cb(int err, qmp_client *n, const struct smmu_error *e, void *payload);

static void vm_connect(smmu_vm *vm, int deadline_ms)
{
    struct qmp_reconnect_opts o = QMP_RECONNECT_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    o.addr = vm->addr;
    vm_client_opts(vm, &o.client);
    o.deadline_ms = deadline_ms;
    if (qmp_reconnect_start(vm->base, &o, vm_connect_cb, vm, &vm->rc) < 0) {
        smmu_error_set(&e, -ENOMEM, "out of memory");
        vm_close_all(vm, SMMU_STAGE_CONNECT, &e);
    }
}

static void vm_connect_cb(int err, qmp_client *n, const struct smmu_error *e, void *payload)
{
    smmu_vm *vm = payload;
    vm->rc = NULL;
    if (err < 0 && vm->o.retry_forever) { /* the daemon: unreachable is a state, not an end */
        vm_log(vm, 1, "%s; retrying with backoff", e ? e->message : "QEMU unreachable");
        vm_set_state(vm, SMMU_VM_LOST);
        vm_connect(vm, -1);
        return;
    }
    if (err < 0) {
        vm_close_all(vm, SMMU_STAGE_CONNECT, e);
        return;
    }
    vm->c = n;
    vm_hook_client(vm, n);
    qmp_client_on_state(n, vm_state_cb, vm);
    const struct qmp_greeting *g = qmp_client_greeting(n);
    vm_log(vm, 0, "connected to QEMU %d.%d.%d at %s", g->major, g->minor, g->micro, vm->addr);
    vm_connected(vm);
}

/* A later disconnect. With a request running, its transaction reconnects (or its calls fail); otherwise the
 * handle reconnects with backoff. */
static void vm_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    smmu_vm *vm = payload;
    (void)e;
    if (err == 0 || c != vm->c || vm->dying)
        return;
    vm_set_state(vm, SMMU_VM_LOST);
    if ((vm->head && vm->head->phase != OP_QUEUED) || vm->rtxn || vm->sgather)
        return;
    vm_kick(vm); /* from the loop: the client may not be freed inside its own callback chain here */
}

/* opts.keep_facts: a journal device whose unplug is pending and that QEMU no longer has (its DEVICE_DELETED
 * came between requests) is settled now, by `recover` on the kept facts (nothing discovered). */
/* Is a journal device's pending unplug finished (QEMU no longer has it)? */
static bool vm_settle_due(smmu_vm *vm, const struct smmu_topology *t)
{
    size_t i;
    json_t *d;
    json_array_foreach(smmu_journal_devices(vm->j), i, d) {
        const char *st = json_string_value(json_object_get(d, "state"));
        const char *id = json_string_value(json_object_get(d, "id"));
        if (st && id && !strcmp(st, "unplug-pending") && smmu_topology_find_vfio(t, id) < 0)
            return true;
    }
    return false;
}

/* `recover` on vm->rfacts (filled): the settle's transaction. */
static bool vm_settle_start(smmu_vm *vm)
{
    struct smmu_txn_opts to;
    vm_txn_opts(vm, NULL, &to);
    vm->settling = true;
    vm->settle_due = false;
    if (smmu_txn_status_start(&vm->c, vm->j, &vm->rfacts, true, &to, &vm->rres, vm_reconciled, vm, &vm->rtxn) < 0) {
        vm->settling = false;
        smmu_facts_free(&vm->rfacts);
        return false;
    }
    return true;
}

static void vm_settle_facts(int err, const struct smmu_error *e, void *payload)
{
    smmu_vm *vm = payload;
    (void)e;
    vm->sgather = false;
    if (err == 0 && (vm->dying || !vm_settle_due(vm, &vm->rfacts.topo))) {
        if (!vm->dying && vm->rgen == vm->kgen)
            vm_keep_topology(vm, &vm->rfacts.topo);
        smmu_facts_free(&vm->rfacts);
        err = -1;
    } else if (err == 0) {
        if (vm->rgen == vm->kgen)
            vm_keep_topology(vm, &vm->rfacts.topo);
        if (vm_settle_start(vm))
            return;
    }
    if (!vm->dying)
        vm_kick(vm);
}

/* opts.keep_facts: a journal device whose unplug is pending and that QEMU no longer has (its DEVICE_DELETED
 * came between requests) is settled now, by `recover` on the kept facts — or, when the kept topology is not
 * known, on a discovery made for it. */
static bool vm_maybe_settle(smmu_vm *vm)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    if (!vm->o.keep_facts || vm->state != SMMU_VM_READY || vm->rtxn || vm->sgather || !vm->j ||
        (vm->head && vm->head->phase != OP_QUEUED))
        return false;
    if (!vm->kt_valid) {
        if (!vm->settle_due)
            return false;
        vm->settle_due = false;
        vm->rgen = vm->kgen;
        vm->discoveries++;
        vm->sgather = true;
        if (smmu_facts_gather_start(vm->c, vm->sysfs, vm->j, &vm->rfacts, vm_settle_facts, vm, &e) < 0) {
            vm->sgather = false;
            return false;
        }
        return true;
    }
    if (!vm_settle_due(vm, &vm->kt))
        return false;
    if (smmu_facts_from_topology(&vm->kt, vm->sysfs, vm->j, &vm->rfacts, &e) < 0)
        return false;
    return vm_settle_start(vm);
}

static void vm_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    smmu_vm *vm = arg;
    (void)fd; (void)what;
    if (vm->state == SMMU_VM_LOST && !vm->rc && (!vm->head || vm->head->phase == OP_QUEUED) && !vm->rtxn &&
        !vm->sgather) {
        qmp_client_free(vm->c);
        vm->c = NULL;
        vm_log(vm, 1, "connection to QEMU lost; reconnecting to %s", vm->addr);
        vm_connect(vm, vm->o.retry_forever ? -1 : vm->o.reconnect_deadline_ms);
        return;
    }
    if (vm_maybe_settle(vm))
        return;
    vm_run(vm);
}

static void vm_kick(smmu_vm *vm)
{
    static const struct timeval zero = {0, 0};
    evtimer_add(vm->kick, &zero);
}

/* Start the head request if the VM is READY and nothing runs. */
static void vm_run(smmu_vm *vm)
{
    struct smmu_op *op = vm->head;
    if (vm->dying || !op || op->phase != OP_QUEUED || vm->rtxn || vm->sgather)
        return;
    if (vm->state == SMMU_VM_CLOSED) {
        vm_close_all(vm, vm->conn_stage, &vm->conn_err);
        return;
    }
    if (vm->state != SMMU_VM_READY)
        return;
    if (op->cancelled) {
        struct smmu_error e = SMMU_ERROR_INIT;
        smmu_error_set(&e, -ECANCELED, "cancelled before it started");
        op_fail(op, SMMU_STAGE_CANCELLED, &e);
        return;
    }
    op_start_facts(op, OP_FACTS);
}

/* ---- public ---- */

int smmu_vm_new(struct event_base *base, const struct smmu_vm_opts *opts, smmu_vm **out, struct smmu_error *err)
{
    struct qmp_addr a;
    smmu_vm *vm;
    int r;
    *out = NULL;
    if (!opts->qmp_addr)
        return smmu_error_set(err, -EINVAL, "no QMP address given");
    if ((r = qmp_addr_parse(opts->qmp_addr, &a, err)) < 0)
        return r; /* the parser says what is wrong (e.g. "path too long") */
    if ((r = smmu_journal_check_name(opts->vm_name, err)) < 0)
        return r;
    if (!(vm = calloc(1, sizeof(*vm))))
        return smmu_error_set(err, -ENOMEM, "out of memory");
    vm->base = base;
    vm->o = *opts;
    if (vm->o.reconnect_deadline_ms == 0)
        vm->o.reconnect_deadline_ms = 10000;
    qmp_addr_canonical(&a, vm->canon, sizeof(vm->canon));
    vm->addr = strdup(opts->qmp_addr);
    vm->name = strdup(opts->vm_name);
    vm->state_dir = strdup(opts->state_dir ? opts->state_dir : "/run/smmuctl");
    vm->sysfs = strdup(opts->sysfs_root ? opts->sysfs_root : "/sys");
    vm->dev = strdup(opts->dev_root ? opts->dev_root : "/dev");
    vm->lock_timer = evtimer_new(base, vm_lock_timer_cb, vm);
    vm->kick = evtimer_new(base, vm_kick_cb, vm);
    if (!vm->addr || !vm->name || !vm->state_dir || !vm->sysfs || !vm->dev || !vm->lock_timer || !vm->kick) {
        vm_really_free(vm);
        return smmu_error_set(err, -ENOMEM, "out of memory");
    }
    vm->state = SMMU_VM_CONNECTING;
    clock_gettime(CLOCK_MONOTONIC, &vm->lock_start);
    vm_try_lock(vm); /* then connects (vm_try_lock → vm_connect) */
    *out = vm;
    return 0;
}

static char *op_strdup(const char *s, bool *oom)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *oom = true;
    return d;
}

int smmu_vm_submit(smmu_vm *vm, const struct smmu_request *req, smmu_op_done_fn done, void *payload,
                   smmu_op **out)
{
    struct smmu_op *op = calloc(1, sizeof(*op));
    bool oom = !op;
    if (out)
        *out = NULL;
    if (op) {
        op->vm = vm;
        op->req = *req;
        op->done = done;
        op->payload = payload;
        op->devs = calloc(req->n_devs + 1, sizeof(char *));
        oom = !op->devs;
        for (size_t i = 0; !oom && i < req->n_devs; i++)
            op->devs[i] = op_strdup(req->devs[i], &oom);
        op->iommufd_id = op_strdup(req->plan.iommufd_id, &oom);
        op->device_id = op_strdup(req->plan.device_id, &oom);
        op->dev_root = op_strdup(req->plan.dev_root, &oom);
        op->req.devs = NULL;
        op->req.plan.iommufd_id = op->iommufd_id;
        op->req.plan.device_id = op->device_id;
        op->req.plan.dev_root = op->dev_root;
    }
    if (oom || vm->dying) {
        if (op)
            op_free(op);
        return oom ? -ENOMEM : -ECANCELED;
    }
    if (vm->tail)
        vm->tail->next = op;
    else
        vm->head = op;
    vm->tail = op;
    vm->n_ops++;
    if (out)
        *out = op;
    vm_kick(vm);
    return 0;
}

int smmu_op_cancel(smmu_op *op)
{
    if (!op)
        return 1;
    if (op->phase == OP_TXN && op->txn)
        return smmu_txn_cancel(op->txn);
    if (op->cancelled) {
        op->reply.result.cancel_ignored = true;
        return 1;
    }
    op->cancelled = true; /* queued, or still gathering facts / recovering first: checked before sending */
    return 0;
}

static void vm_really_free(smmu_vm *vm)
{
    if (vm->rc)
        qmp_reconnect_cancel(vm->rc);
    vm->rc = NULL;
    if (vm->c)
        qmp_client_free(vm->c);
    vm->c = NULL;
    smmu_journal_close(vm->j);
    smmu_topology_free(&vm->kt);
    if (vm->lock_timer)
        event_free(vm->lock_timer);
    if (vm->kick)
        event_free(vm->kick);
    free(vm->addr);
    free(vm->name);
    free(vm->state_dir);
    free(vm->sysfs);
    free(vm->dev);
    free(vm);
}

void smmu_vm_free(smmu_vm *vm)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    if (!vm || vm->freeing)
        return;
    vm->dying = true;
    vm->freeing = true; /* end everything now, so that every other callback fires before we return */
    evtimer_del(vm->kick);
    evtimer_del(vm->lock_timer);
    if (vm->rc) {
        bool for_txn = vm->rc_for_txn;
        qmp_reconnect_cancel(vm->rc);
        vm->rc = NULL;
        if (for_txn) {
            struct smmu_error ce = SMMU_ERROR_INIT;
            smmu_error_set(&ce, -ECANCELED, "the VM handle was freed");
            vm->rc_for_txn = false;
            vm_closed_client(vm);
            vm->txn_done(-ECANCELED, &ce, vm->txn_arg);
        }
    }
    /* Closing fails every call in flight at once: the running machine ends (it cannot reconnect: dying). */
    if (vm->c)
        qmp_client_close(vm->c);
    if (vm->rtxn && smmu_txn_finish_now(vm->rtxn))
        vm->rtxn = NULL;
    struct smmu_op *op = vm->head;
    if (op && op->phase != OP_QUEUED && op->txn)
        smmu_txn_finish_now(op->txn);
    smmu_error_set(&e, -ECANCELED, "the VM handle was freed");
    while (vm->head)
        op_fail(vm->head, SMMU_STAGE_CANCELLED, &e);
    vm->freeing = false;
    if (vm->in_cb) {
        vm->free_requested = true; /* called from a request's callback: op_reply frees it when that returns */
        return;
    }
    vm_really_free(vm);
}
