/* attach.c — attach as one transaction: journal, send, journal per step; undo in reverse on any failure. */
#define _GNU_SOURCE
#include "txn/txn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *attach_kind(enum smmu_step_kind k)
{
    switch (k) {
    case SMMU_STEP_GETFD: return "getfd";
    case SMMU_STEP_OBJECT_ADD: return "object-add";
    default: return "device_add";
    }
}

static void iso_now(char *buf, size_t len)
{
    time_t now = time(NULL);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
}

/* The journal form of the plan: every step "planned". */
static json_t *attach_txn_new(const struct smmu_plan *p)
{
    char ts[32];
    json_t *steps = json_array();
    iso_now(ts, sizeof(ts));
    for (size_t k = 0; k < p->n_steps; k++) {
        const struct smmu_step *s = &p->steps[k];
        json_t *js = json_pack("{s:s,s:s,s:s,s:s}", "kind", attach_kind(s->kind), "name", s->name, "bdf", s->bdf,
                               "port", s->port);
        for (size_t i = 0; i < p->n_placements; i++) {
            const struct smmu_placement *pl = &p->placements[i];
            if (s->bdf[0] && !strcmp(pl->bdf, s->bdf)) {
                json_object_set_new(js, "vsmmu", json_string(pl->vsmmu_id));
                json_object_set_new(js, "host_smmu", json_string(pl->host_smmu));
                json_object_set_new(js, "device_id", json_string(pl->device_id));
            }
        }
        if (s->kind == SMMU_STEP_GETFD) {
            json_object_set_new(js, "fd_path", json_string(s->fd_path));
            json_object_set_new(js, "consumer", json_integer((json_int_t)k + 1)); /* the next step consumes it */
        }
        json_object_set_new(js, "args", json_deep_copy(s->args));
        json_object_set_new(js, "state", json_string("planned"));
        json_array_append_new(steps, js);
    }
    return json_pack("{s:s,s:i,s:s,s:s,s:b,s:o}", "op", "attach", "pid", (int)getpid(), "started", ts, "iommufd",
                     p->iommufd_id, "creates_iommufd", p->creates_iommufd, "steps", steps);
}

json_t *txn_report_device(json_t *step, const char *state)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "bdf", txn_step_str(step, "bdf"), "id", txn_step_str(step, "name"),
                     "vsmmu", txn_step_str(step, "vsmmu"), "port", txn_step_str(step, "port"), "host_smmu",
                     txn_step_str(step, "host_smmu"), "state", state);
}

/* Mark the getfd whose name a failed or sent object-add/device_add consumed (QEMU consumes it even when
 * the command fails: a later closefd would only answer "not found"). */
/* Did QEMU take the fd name passed to a command that it refused with `desc`? object-add: always (its fd
 * property is set before anything can fail; FACTS: consumed even on "duplicate id"). device_add: only once it
 * got as far as setting properties and realizing — realize errors are QEMU's "vfio <dev>: …" and "PCI: …";
 * earlier ones ("Bus 'x' not found", "Duplicate device ID", "… does not support hotplugging") leave the name
 * in place, so the rollback must closefd it (checked on real QEMU 11.1.3). Unknown texts: not consumed, and
 * the rollback's closefd then also settles it ("not found" is accepted). */
static bool attach_error_consumed(const char *kind, const char *desc)
{
    if (!strcmp(kind, "object-add"))
        return true;
    return !strncmp(desc, "vfio ", 5) || !strncmp(desc, "PCI: ", 5);
}

static void attach_mark_consumed(json_t *steps, size_t k)
{
    if (k == 0)
        return;
    json_t *prev = json_array_get(steps, k - 1);
    if (!strcmp(txn_step_str(prev, "kind"), "getfd") &&
        json_integer_value(json_object_get(prev, "consumer")) == (json_int_t)k)
        json_object_set_new(prev, "consumed", json_true());
}

static void attach_report(struct smmu_txn *t, json_t *txn, const char *outcome)
{
    json_t *devs = json_array(), *steps = json_array(), *s;
    size_t k;
    json_array_foreach(json_object_get(txn, "steps"), k, s) {
        const char *kind = txn_step_str(s, "kind");
        json_array_append_new(steps, json_pack("{s:s,s:s,s:s}", "execute", kind, "name", txn_step_str(s, "name"),
                                               "state", txn_step_str(s, "state")));
        if (strcmp(kind, "device_add"))
            continue;
        /* a step left sent is not attached: its reply never came and QEMU could not be asked (issue 15) */
        const char *dstate = !strcmp(outcome, "done") ? "attached"
                             : txn_step_is(s, SMMU_STEP_PENDING) ? "unplug-pending"
                             : txn_step_is(s, SMMU_STEP_DONE) ? "attached"
                             : txn_step_is(s, SMMU_STEP_SENT) ? "sent-no-reply"
                             : "not-attached";
        json_array_append_new(devs, txn_report_device(s, dstate));
    }
    json_decref(t->res->report);
    t->res->report = json_pack("{s:s,s:o,s:{s:s,s:b},s:o,s:o}", "outcome", outcome, "devices", devs, "iommufd",
                               "id", txn_step_str(txn, "iommufd"), "created",
                               json_is_true(json_object_get(txn, "creates_iommufd")), "steps", steps,
                               "warnings", smmu_plan_warnings_json(t->plan)); /* ports whose windows do not fit */
}

/* Record the outcome of a successful attach in the journal's long-lived state. */
static void attach_commit(struct smmu_txn *t, json_t *txn)
{
    json_t *doc = smmu_journal_doc(t->j), *s;
    size_t k;
    json_array_foreach(json_object_get(txn, "steps"), k, s) {
        if (strcmp(txn_step_str(s, "kind"), "device_add"))
            continue;
        json_t *d = txn_report_device(s, "attached");
        json_object_set_new(d, "fd_pass", json_boolean(json_object_get(json_object_get(s, "args"), "fd") != NULL));
        json_array_append_new(smmu_journal_devices(t->j), d);
    }
    if (json_is_true(json_object_get(txn, "creates_iommufd")))
        json_object_set_new(doc, "iommufd", json_pack("{s:s,s:b}", "id", txn_step_str(txn, "iommufd"), "owned", 1));
    else if (!json_is_object(json_object_get(doc, "iommufd")))
        json_object_set_new(doc, "iommufd", json_pack("{s:s,s:b}", "id", txn_step_str(txn, "iommufd"), "owned", 0));
    json_object_set_new(doc, "txn", json_null());
}

static void attach_error(struct smmu_txn *t, json_t *step, const struct smmu_error *e)
{
    if (t->res->error.code)
        return;
    smmu_error_copy(&t->res->error, e);
    snprintf(t->res->error.step, sizeof(t->res->error.step), "%s %s", txn_step_str(step, "kind"),
             txn_step_str(step, "name"));
}

/* After a reply that never came (timeout) or a lost connection: did the step take effect? Sets the
 * state to done / failed, then k(t, 0); k(t, <0) when QEMU cannot be asked. getfd cannot be asked: it stays
 * "sent". */
static void attach_reconciled(struct smmu_txn *t, int ex, const struct smmu_error *e)
{
    json_t *steps = json_object_get(t->txn, "steps");
    json_t *step = json_array_get(steps, t->rb_k);
    txn_k k = t->after;
    (void)e;
    if (ex >= 0) {
        /* It exists: QEMU ran the command and consumed the fd name. It does not: the command failed (name
         * consumed) or never reached QEMU (a "sent" step of a killed smmuctl may not have been written):
         * unknown, so the rollback probes with closefd, whose "not found" is then expected. */
        if (ex)
            attach_mark_consumed(steps, t->rb_k);
        txn_step_state(step, ex ? SMMU_STEP_DONE : SMMU_STEP_FAILED);
    }
    k(t, ex < 0 ? ex : 0);
}

static void attach_reconcile(struct smmu_txn *t, size_t k, txn_k then)
{
    json_t *step = json_array_get(json_object_get(t->txn, "steps"), k);
    char path[SMMU_PATH_LEN];
    if (!strcmp(txn_step_str(step, "kind"), "getfd")) {
        then(t, 0);
        return;
    }
    txn_step_path(step, path, sizeof(path));
    t->rb_k = k;
    t->after = then;
    txn_exists(t, path, attach_reconciled);
}

/* Open the file a getfd step passes (read-write, else read-only); `name` is the fd name, for the message. */
static int attach_open_fd(const char *path, const char *name, struct smmu_error *err)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EISDIR || errno == EROFS))
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return smmu_error_set(err, -errno, "cannot open %s to pass it to QEMU (%s): %s", path, name,
                              strerror(errno));
    return fd;
}

/* ---- rollback: undo in reverse ---- */

static void rb_next(struct smmu_txn *t);

static json_t *rb_step(struct smmu_txn *t)
{
    return json_array_get(json_object_get(t->txn, "steps"), t->rb_k);
}

/* An undo command (object-del, closefd) answered; "not found" means already undone. */
static void rb_undo_cmd_done(struct smmu_txn *t, int r, const struct smmu_error *e)
{
    json_t *step = rb_step(t);
    bool ok = r == 0 || (r == -EIO && strstr(e->qmp_desc, "not found"));
    if (ok)
        txn_step_state(step, SMMU_STEP_UNDONE);
    else
        attach_error(t, step, e);
    t->rb_left |= !ok;
    txn_save(t);
    rb_next(t);
}

static void rb_unplugged(struct smmu_txn *t, int r)
{
    json_t *step = rb_step(t);
    const char *name = txn_step_str(step, "name");
    (void)r;
    if (t->out[0] == TXN_DEL_DONE) {
        json_t *jd = smmu_journal_find_device(t->j, name);
        txn_step_state(step, SMMU_STEP_UNDONE);
        if (jd && json_is_true(json_object_get(jd, "rollback"))) /* pending in an earlier run: gone now */
            smmu_journal_remove_device(t->j, name);
    } else if (t->out[0] == TXN_DEL_PENDING) {
        txn_step_state(step, SMMU_STEP_PENDING);
        t->rb_pending = true;
    } else {
        attach_error(t, step, &t->errs[0]);
        t->rb_left = true;
    }
    txn_save(t);
    rb_next(t);
}

/* Undo step rb_k (its outcome is known). Returns true when it sent something (the machine resumes later). */
static bool rb_act(struct smmu_txn *t)
{
    json_t *steps = json_object_get(t->txn, "steps");
    json_t *step = rb_step(t);
    const char *kind = txn_step_str(step, "kind");
    const char *name = txn_step_str(step, "name");
    int unplug_ms = t->opts.unplug_timeout_ms > 0 ? t->opts.unplug_timeout_ms : 10000;
    if (!strcmp(kind, "device_add") && (txn_step_is(step, SMMU_STEP_DONE) || txn_step_is(step, SMMU_STEP_PENDING))) {
        int v = t->f ? smmu_topology_find_vfio(&t->f->topo, name) : -1;
        if (v >= 0 && !t->f->topo.vfio[v].hotplugged) {
            /* QEMU says it was there at launch: not what this transaction plugged (a restarted QEMU whose
             * command line has a device of that id). Never device_del it as an undo (DESIGN §5). The device
             * this transaction plugged is not in QEMU: status/recover report it vanished. */
            txn_step_state(step, SMMU_STEP_FAILED);
            if (t->st_vanished)
                json_array_append_new(t->st_vanished, json_string(name));
            txn_save(t);
            return false;
        }
        t->ids[0] = name;
        smmu_error_clear(&t->errs[0]);
        txn_unplug(t, t->ids, 1, unplug_ms, t->out, t->errs, rb_unplugged);
        return true;
    }
    if (!strcmp(kind, "object-add") && txn_step_is(step, SMMU_STEP_DONE)) {
        if (t->rb_pending || t->rb_left) {
            /* a device may still use it: deleting is deferred to status/recover (journal: owned) */
            json_object_set_new(smmu_journal_doc(t->j), "iommufd", json_pack("{s:s,s:b}", "id", name, "owned", 1));
            txn_step_state(step, SMMU_STEP_PENDING);
            return false;
        }
        txn_send(t, -1, "object-del", json_pack("{s:s}", "id", name), NULL, 0, rb_undo_cmd_done);
        return true;
    }
    if (!strcmp(kind, "getfd") && (txn_step_is(step, SMMU_STEP_DONE) || txn_step_is(step, SMMU_STEP_SENT))) {
        json_t *consumer = json_array_get(steps, (size_t)json_integer_value(json_object_get(step, "consumer")));
        /* consumed: the consumer ran (done, or undone after running) or QEMU answered it (even with an
         * error, FACTS). Not consumed: never sent. Unknown (failed without a reply): closefd probes. */
        bool consumed = json_is_true(json_object_get(step, "consumed")) ||
                        (consumer && (txn_step_is(consumer, SMMU_STEP_DONE) || txn_step_is(consumer, SMMU_STEP_UNDONE) ||
                                      txn_step_is(consumer, SMMU_STEP_PENDING)));
        if (consumed) {
            txn_step_state(step, SMMU_STEP_UNDONE); /* QEMU took the fd with the command: nothing to close */
            return false;
        }
        txn_send(t, -1, "closefd", json_pack("{s:s}", "fdname", name), NULL, 0, rb_undo_cmd_done);
        return true;
    }
    return false;
}

static void rb_end(struct smmu_txn *t);

static void rb_after_reconcile(struct smmu_txn *t, int r)
{
    if (r < 0) {
        t->rb_left = true; /* what the step did is unknown: the transaction stays for recover to ask again */
        rb_end(t);
        return;
    }
    if (!rb_act(t))
        rb_next(t);
}

/* The next step down (rb_k counts down; rb_k == n before the first). */
static void rb_next(struct smmu_txn *t)
{
    while (t->rb_k > 0) {
        t->rb_k--;
        if (t->lost)
            break;
        json_t *step = rb_step(t);
        if (txn_step_is(step, SMMU_STEP_SENT)) {
            attach_reconcile(t, t->rb_k, rb_after_reconcile);
            return;
        }
        if (rb_act(t))
            return;
    }
    rb_end(t);
}

static void rb_end(struct smmu_txn *t)
{
    json_t *steps = json_object_get(t->txn, "steps");
    json_t *doc = smmu_journal_doc(t->j);
    txn_outcome_k k = t->rb_k_done;
    t->rolling_back = false;
    if (t->lost) {
        if (!t->res->error.code)
            smmu_error_set(&t->res->error, -ENOTCONN, "QEMU became unreachable during rollback");
        smmu_error_prefix(&t->res->error, "the transaction is kept in %s; run `smmuctl recover` when QEMU is back",
                          smmu_journal_path(t->j));
        txn_save(t);
        k(t, SMMU_OUTCOME_INCOMPLETE);
        return;
    }
    if (t->rb_pending) {
        /* Pending unplugs live on as journal devices; status/recover finish them (and the deferred object-del). */
        size_t i;
        json_t *step;
        json_array_foreach(steps, i, step) {
            if (!strcmp(txn_step_str(step, "kind"), "device_add") && txn_step_is(step, SMMU_STEP_PENDING) &&
                !smmu_journal_find_device(t->j, txn_step_str(step, "name"))) { /* a rerun: recorded already */
                json_t *d = txn_report_device(step, "unplug-pending");
                json_object_set_new(d, "rollback", json_true());
                json_array_append_new(smmu_journal_devices(t->j), d);
            }
        }
    }
    if (!t->rb_left)
        json_object_set_new(doc, "txn", json_null());
    txn_save(t);
    k(t, (t->rb_pending || t->rb_left) ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_ROLLED_BACK);
}

void txn_rollback_attach(struct smmu_txn *t, json_t *txn, txn_outcome_k k)
{
    if (t->txn != txn) {
        json_decref(t->txn);
        t->txn = json_incref(txn);
    }
    t->rolling_back = true;
    t->rb_k_done = k;
    t->rb_pending = t->rb_left = false;
    t->rb_k = json_array_size(json_object_get(txn, "steps"));
    rb_next(t);
}

/* ---- attach: journal, send, journal per step ---- */

static void attach_next(struct smmu_txn *t);

static void attach_rolled_back(struct smmu_txn *t, enum smmu_outcome o)
{
    t->res->outcome = o;
    attach_report(t, t->txn, o == SMMU_OUTCOME_ROLLED_BACK ? "rolled-back" : "incomplete");
    txn_finish(t);
}

static void attach_fail(struct smmu_txn *t)
{
    txn_rollback_attach(t, t->txn, attach_rolled_back);
}

static void attach_after_reconcile(struct smmu_txn *t, int r)
{
    (void)r;
    txn_save(t);
    attach_fail(t);
}

static void attach_sent(struct smmu_txn *t, int r, const struct smmu_error *e)
{
    json_t *steps = json_object_get(t->txn, "steps");
    json_t *step = json_array_get(steps, t->k);
    const char *kind = txn_step_str(step, "kind");
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    if (r == 0) {
        txn_step_state(step, SMMU_STEP_DONE);
        t->k++;
        /* "done" is written with the next step's "sent" (one atomic write) — the last step's with the commit —
         * unless a cancel stops here or the bench asks for a write per state (before issue 9). A crash before
         * that write leaves the step "sent": recover asks QEMU, as for any unanswered step. */
        if (t->opts.fsync_each_state || t->cancelled)
            txn_save(t);
        attach_next(t);
        return;
    }
    attach_error(t, step, e);
    if (r == -EIO) {
        txn_step_state(step, SMMU_STEP_FAILED); /* QEMU refused: a failed object-add/device_add leaves nothing */
        if (attach_error_consumed(kind, e->qmp_desc))
            attach_mark_consumed(steps, t->k);
    } else if (!t->lost) {
        attach_reconcile(t, t->k, attach_after_reconcile); /* timeout or reconnected: ask QEMU what happened */
        return;
    }
    txn_save(t);
    attach_fail(t);
}

static void attach_next(struct smmu_txn *t)
{
    json_t *steps = json_object_get(t->txn, "steps");
    struct smmu_error e = SMMU_ERROR_INIT;
    if (t->k < t->n && t->cancelled) {
        json_t *step = json_array_get(steps, t->k);
        smmu_error_set(&e, -ECANCELED, "interrupted: no further step sent; rolling back");
        attach_error(t, step, &e);
        attach_fail(t);
        return;
    }
    if (t->k == t->n) {
        attach_commit(t, t->txn);
        attach_report(t, t->txn, "done");
        if (txn_save(t) < 0) {
            t->res->outcome = SMMU_OUTCOME_INCOMPLETE;
            txn_finish(t);
            return;
        }
        t->res->outcome = SMMU_OUTCOME_DONE;
        txn_finish(t);
        return;
    }
    json_t *step = json_array_get(steps, t->k);
    const char *kind = txn_step_str(step, "kind");
    if (!strcmp(kind, "getfd") &&
        (t->fd = attach_open_fd(txn_step_str(step, "fd_path"), txn_step_str(step, "name"), &e)) < 0) {
        txn_step_state(step, SMMU_STEP_FAILED);
        attach_error(t, step, &e);
        txn_save(t);
        attach_fail(t);
        return;
    }
    txn_step_state(step, SMMU_STEP_SENT);
    if (txn_save(t) < 0) {
        txn_step_state(step, SMMU_STEP_PLANNED);
        if (t->fd >= 0)
            close(t->fd);
        t->fd = -1;
        attach_fail(t);
        return;
    }
    txn_send(t, (int)t->k, kind, json_deep_copy(json_object_get(step, "args")), t->fd >= 0 ? &t->fd : NULL,
             t->fd >= 0 ? 1 : 0, attach_sent);
}


int smmu_txn_attach_start(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const struct smmu_plan *p,
                          const struct smmu_txn_opts *opts, struct smmu_result *res, smmu_txn_done_fn done,
                          void *payload, smmu_txn **out)
{
    struct smmu_txn *t = txn_ctx_new(c, j, f, opts, res, done, payload);
    json_t *doc = smmu_journal_doc(j);
    if (out)
        *out = NULL;
    if (!t || txn_ctx_alloc(t, 1) < 0) {
        if (t)
            txn_ctx_discard(t);
        return smmu_error_set(&res->error, -ENOMEM, "out of memory");
    }
    if (out)
        *out = t;
    t->plan = p;
    /* Every file to pass must open before anything is sent: a refusal then changes nothing (exit 2). */
    for (size_t k = 0; k < p->n_steps; k++) {
        if (p->steps[k].kind != SMMU_STEP_GETFD)
            continue;
        int fd = attach_open_fd(p->steps[k].fd_path, p->steps[k].name, &res->error);
        if (fd < 0) {
            res->outcome = SMMU_OUTCOME_REFUSED;
            txn_finish(t);
            return 0;
        }
        close(fd);
    }
    t->txn = attach_txn_new(p); /* our reference lives to the end: the journal drops its own when the txn closes */
    t->n = json_array_size(json_object_get(t->txn, "steps"));
    json_object_set(doc, "txn", t->txn);
    if (txn_save(t) < 0) {
        json_object_set_new(doc, "txn", json_null());
        res->outcome = SMMU_OUTCOME_ROLLED_BACK;
        attach_report(t, t->txn, "not-started");
        txn_finish(t);
        return 0;
    }
    attach_next(t);
    return 0;
}
