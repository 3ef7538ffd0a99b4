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

static void attach_report(struct txn_ctx *t, json_t *txn, const char *outcome)
{
    json_t *devs = json_array(), *steps = json_array(), *s;
    size_t k;
    json_array_foreach(json_object_get(txn, "steps"), k, s) {
        const char *kind = txn_step_str(s, "kind");
        json_array_append_new(steps, json_pack("{s:s,s:s,s:s}", "execute", kind, "name", txn_step_str(s, "name"),
                                               "state", txn_step_str(s, "state")));
        if (strcmp(kind, "device_add"))
            continue;
        const char *st = txn_step_str(s, "state");
        const char *dstate = !strcmp(outcome, "done") ? "attached"
                             : !strcmp(st, "pending") ? "unplug-pending"
                             : !strcmp(st, "done") || !strcmp(st, "sent") ? "attached"
                             : "not-attached";
        json_array_append_new(devs, txn_report_device(s, dstate));
    }
    json_decref(t->res->report);
    t->res->report = json_pack("{s:s,s:o,s:{s:s,s:b},s:o}", "outcome", outcome, "devices", devs, "iommufd", "id",
                               txn_step_str(txn, "iommufd"), "created",
                               json_is_true(json_object_get(txn, "creates_iommufd")), "steps", steps);
}

/* Record the outcome of a successful attach in the journal's long-lived state. */
static void attach_commit(struct txn_ctx *t, json_t *txn)
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

static void attach_error(struct txn_ctx *t, json_t *step, const struct smmu_error *e)
{
    if (t->res->error.code)
        return;
    smmu_error_copy(&t->res->error, e);
    snprintf(t->res->error.step, sizeof(t->res->error.step), "%s %s", txn_step_str(step, "kind"),
             txn_step_str(step, "name"));
}

/* After a reply that never came (timeout) or a lost connection: did the step take effect? Sets the
 * state to done / failed. Returns <0 when QEMU cannot be asked. getfd cannot be asked: it stays "sent". */
static int attach_reconcile(struct txn_ctx *t, json_t *steps, size_t k)
{
    json_t *step = json_array_get(steps, k);
    const char *kind = txn_step_str(step, "kind");
    char path[SMMU_PATH_LEN];
    struct smmu_error e = SMMU_ERROR_INIT;
    int ex;
    if (!strcmp(kind, "getfd"))
        return 0;
    txn_step_path(step, path, sizeof(path));
    ex = txn_exists(t, path, &e);
    if (ex < 0)
        return ex;
    /* It exists: QEMU ran the command and consumed the fd name. It does not: the command failed (name
     * consumed) or never reached QEMU (a "sent" step of a killed smmuctl may not have been written):
     * unknown, so the rollback probes with closefd, whose "not found" is then expected. */
    if (ex)
        attach_mark_consumed(steps, k);
    txn_step_state(step, ex ? "done" : "failed");
    return 0;
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

/* Send one undo command (object-del, closefd); "not found" means already undone. Marks the step undone and
 * returns true, or records the error and returns false. */
static bool attach_undo_cmd(struct txn_ctx *t, json_t *step, const char *cmd, json_t *args)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = txn_send(t, -1, cmd, args, NULL, 0, NULL, &e);
    bool ok = r == 0 || (r == -EIO && strstr(e.qmp_desc, "not found"));
    if (ok)
        txn_step_state(step, "undone");
    else
        attach_error(t, step, &e);
    txn_save(t);
    return ok;
}

enum smmu_outcome txn_rollback_attach(struct txn_ctx *t, json_t *txn)
{
    json_t *steps = json_object_get(txn, "steps");
    json_t *doc = smmu_journal_doc(t->j);
    bool pending = false, left = false;
    struct smmu_error e = SMMU_ERROR_INIT;
    int unplug_ms = t->opts->unplug_timeout_ms > 0 ? t->opts->unplug_timeout_ms : 10000;

    for (size_t k = json_array_size(steps); k-- > 0;) {
        json_t *step = json_array_get(steps, k);
        const char *kind = txn_step_str(step, "kind");
        const char *name = txn_step_str(step, "name");
        smmu_error_clear(&e);
        if (t->lost)
            break;
        if (txn_step_is(step, "sent") && attach_reconcile(t, steps, k) < 0) {
            left = true; /* what the step did is unknown: the transaction stays for recover to ask again */
            break;
        }
        if (!strcmp(kind, "device_add") && (txn_step_is(step, "done") || txn_step_is(step, "pending"))) {
            enum txn_del out;
            txn_unplug(t, &name, 1, unplug_ms, &out, &e);
            if (out == TXN_DEL_DONE) {
                json_t *jd = smmu_journal_find_device(t->j, name);
                txn_step_state(step, "undone");
                if (jd && json_is_true(json_object_get(jd, "rollback"))) /* pending in an earlier run: gone now */
                    smmu_journal_remove_device(t->j, name);
            } else if (out == TXN_DEL_PENDING) {
                txn_step_state(step, "pending");
                pending = true;
            } else {
                attach_error(t, step, &e);
                left = true;
            }
            txn_save(t);
        } else if (!strcmp(kind, "object-add") && txn_step_is(step, "done")) {
            if (pending || left) {
                /* a device may still use it: deleting is deferred to status/recover (journal: owned) */
                json_object_set_new(doc, "iommufd", json_pack("{s:s,s:b}", "id", name, "owned", 1));
                txn_step_state(step, "pending");
                continue;
            }
            left |= !attach_undo_cmd(t, step, "object-del", json_pack("{s:s}", "id", name));
        } else if (!strcmp(kind, "getfd") && (txn_step_is(step, "done") || txn_step_is(step, "sent"))) {
            json_t *consumer = json_array_get(steps, (size_t)json_integer_value(json_object_get(step, "consumer")));
            /* consumed: the consumer ran (done, or undone after running) or QEMU answered it (even with an
             * error, FACTS). Not consumed: never sent. Unknown (failed without a reply): closefd probes. */
            bool consumed = json_is_true(json_object_get(step, "consumed")) ||
                            (consumer && (txn_step_is(consumer, "done") || txn_step_is(consumer, "undone") ||
                                          txn_step_is(consumer, "pending")));
            if (consumed) {
                txn_step_state(step, "undone"); /* QEMU took the fd with the command: nothing to close */
                continue;
            }
            left |= !attach_undo_cmd(t, step, "closefd", json_pack("{s:s}", "fdname", name));
        }
    }
    if (t->lost) {
        if (!t->res->error.code)
            smmu_error_set(&t->res->error, -ENOTCONN, "QEMU became unreachable during rollback");
        smmu_error_prefix(&t->res->error, "the transaction is kept in %s; run `smmuctl recover` when QEMU is back",
                          smmu_journal_path(t->j));
        txn_save(t);
        return SMMU_OUTCOME_INCOMPLETE;
    }
    if (pending) {
        /* Pending unplugs live on as journal devices; status/recover finish them (and the deferred object-del). */
        size_t k;
        json_t *step;
        json_array_foreach(steps, k, step) {
            if (!strcmp(txn_step_str(step, "kind"), "device_add") && txn_step_is(step, "pending") &&
                !smmu_journal_find_device(t->j, txn_step_str(step, "name"))) { /* a rerun: recorded already */
                json_t *d = txn_report_device(step, "unplug-pending");
                json_object_set_new(d, "rollback", json_true());
                json_array_append_new(smmu_journal_devices(t->j), d);
            }
        }
    }
    if (!left)
        json_object_set_new(doc, "txn", json_null());
    txn_save(t);
    return (pending || left) ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_ROLLED_BACK;
}

int smmu_txn_attach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const struct smmu_plan *p,
                    const struct smmu_txn_opts *opts, struct smmu_result *res)
{
    struct txn_ctx t = {c, j, opts, res, false};
    json_t *doc = smmu_journal_doc(j), *txn, *steps;
    size_t n;
    int failed_at = -1;
    (void)f;

    memset(res, 0, sizeof(*res));
    /* Every file to pass must open before anything is sent: a refusal then changes nothing (exit 2). */
    for (size_t k = 0; k < p->n_steps; k++) {
        if (p->steps[k].kind != SMMU_STEP_GETFD)
            continue;
        int fd = attach_open_fd(p->steps[k].fd_path, p->steps[k].name, &res->error);
        if (fd < 0) {
            res->outcome = SMMU_OUTCOME_REFUSED;
            return fd;
        }
        close(fd);
    }
    txn = attach_txn_new(p); /* our reference lives to the end: the journal drops its own when the txn closes */
    steps = json_object_get(txn, "steps");
    n = json_array_size(steps);
    json_object_set(doc, "txn", txn);
    if (txn_save(&t) < 0) {
        json_object_set_new(doc, "txn", json_null());
        res->outcome = SMMU_OUTCOME_ROLLED_BACK;
        attach_report(&t, txn, "not-started");
        json_decref(txn);
        return -EIO;
    }
    for (size_t k = 0; k < n; k++) {
        json_t *step = json_array_get(steps, k);
        const char *kind = txn_step_str(step, "kind");
        struct smmu_error e = SMMU_ERROR_INIT;
        int fd = -1, r;
        if (!strcmp(kind, "getfd") && (fd = attach_open_fd(txn_step_str(step, "fd_path"), txn_step_str(step, "name"), &e)) < 0) {
            txn_step_state(step, "failed");
            attach_error(&t, step, &e);
            failed_at = (int)k;
            break;
        }
        txn_step_state(step, "sent");
        if (txn_save(&t) < 0) {
            txn_step_state(step, "planned");
            if (fd >= 0)
                close(fd);
            failed_at = (int)k;
            break;
        }
        r = txn_send(&t, (int)k, kind, json_deep_copy(json_object_get(step, "args")), fd >= 0 ? &fd : NULL,
                     fd >= 0 ? 1 : 0, NULL, &e);
        if (fd >= 0)
            close(fd);
        if (r == 0) {
            txn_step_state(step, "done");
            txn_save(&t);
            continue;
        }
        attach_error(&t, step, &e);
        failed_at = (int)k;
        if (r == -EIO) {
            txn_step_state(step, "failed"); /* QEMU refused: a failed object-add/device_add leaves nothing */
            if (attach_error_consumed(kind, e.qmp_desc))
                attach_mark_consumed(steps, k);
        } else if (!t.lost) {
            attach_reconcile(&t, steps, k); /* timeout or reconnected: ask QEMU what happened */
        }
        txn_save(&t);
        break;
    }
    if (failed_at < 0) {
        attach_commit(&t, txn);
        attach_report(&t, txn, "done");
        json_decref(txn);
        if (txn_save(&t) < 0) {
            res->outcome = SMMU_OUTCOME_INCOMPLETE;
            return -EIO;
        }
        res->outcome = SMMU_OUTCOME_DONE;
        return 0;
    }
    res->outcome = txn_rollback_attach(&t, txn);
    attach_report(&t, txn, res->outcome == SMMU_OUTCOME_ROLLED_BACK ? "rolled-back" : "incomplete");
    json_decref(txn);
    return res->error.code ? res->error.code : -EIO;
}
