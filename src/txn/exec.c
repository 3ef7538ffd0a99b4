/* exec.c — running steps against QEMU as continuations: send with reconnect, parallel unplug, existence
 * checks, and the operation context (deferred completion, cancel). Nothing here runs the event loop. */
#include "txn/txn_int.h"
#include "smmuctl/vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *txn_del_name(enum txn_del d)
{
    switch (d) {
    case TXN_DEL_DONE: return "done";
    case TXN_DEL_PENDING: return "pending";
    case TXN_DEL_REFUSED: return "refused";
    default: return "failed";
    }
}

void smmu_result_fini(struct smmu_result *r)
{
    json_decref(r->report);
    r->report = NULL;
}

static const char *const step_state_names[] = {"planned", "sent", "done", "failed", "undone", "pending",
                                               "refused"};

const char *smmu_step_state_name(enum smmu_step_state s)
{
    return (unsigned)s < sizeof(step_state_names) / sizeof(*step_state_names) ? step_state_names[s] : "?";
}

int smmu_step_state_parse(const char *name)
{
    for (size_t i = 0; name && i < sizeof(step_state_names) / sizeof(*step_state_names); i++)
        if (!strcmp(name, step_state_names[i]))
            return (int)i;
    return -1;
}

/* ---- the operation context ---- */

static void txn_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smmu_txn *t = arg;
    (void)fd; (void)what;
    t->done(t->res, t->done_payload);
    txn_ctx_discard(t);
}

void txn_ctx_discard(struct smmu_txn *t)
{
    if (t->defer)
        event_free(t->defer);
    json_decref(t->txn);
    free(t->ids);
    free(t->which);
    free(t->gone);
    free(t->out);
    free(t->errs);
    json_decref(t->steps);
    json_decref(t->report_devs);
    json_decref(t->finished_ids);
    json_decref(t->rolled);
    json_decref(t->recovered);
    json_decref(t->st_attached);
    json_decref(t->st_pending);
    json_decref(t->st_vanished);
    free(t);
}

int txn_ctx_alloc(struct smmu_txn *t, size_t n)
{
    t->ids = calloc(n ? n : 1, sizeof(*t->ids));
    t->which = calloc(n ? n : 1, sizeof(*t->which));
    t->gone = calloc(n ? n : 1, sizeof(*t->gone));
    t->out = calloc(n ? n : 1, sizeof(*t->out));
    t->errs = calloc(n ? n : 1, sizeof(*t->errs));
    return t->ids && t->which && t->gone && t->out && t->errs ? 0 : -ENOMEM;
}

struct smmu_txn *txn_ctx_new(qmp_client **c, smmu_journal *j, const struct smmu_facts *f,
                            const struct smmu_txn_opts *opts, struct smmu_result *res, smmu_txn_done_fn done,
                            void *payload)
{
    struct smmu_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->defer = evtimer_new(qmp_client_base(*c), txn_defer_cb, t);
    if (!t->defer) {
        free(t);
        return NULL;
    }
    t->c = c;
    t->j = j;
    t->f = f;
    t->opts = *opts;
    t->res = res;
    t->done = done;
    t->done_payload = payload;
    t->fd = -1;
    memset(res, 0, sizeof(*res));
    return t;
}

void txn_finish(struct smmu_txn *t)
{
    static const struct timeval zero = {0, 0};
    t->finished = true;
    evtimer_add(t->defer, &zero); /* `done` runs from the loop, never inside the caller's start or cancel */
}

int smmu_txn_cancel(smmu_txn *t)
{
    if (!t || t->finished)
        return 1;
    if (t->cancelled || t->rolling_back) {
        t->res->cancel_ignored = true; /* DESIGN §5: a second signal while rolling back is reported and ignored */
        return 1;
    }
    t->cancelled = true;
    t->res->cancelled = true;
    if (t->unplug)
        txn_unplug_stop_waiting(t);
    return 0;
}

int smmu_txn_finish_now(smmu_txn *t)
{
    if (!t || !t->finished)
        return 0;
    evtimer_del(t->defer);
    txn_defer_cb(-1, 0, t);
    return 1;
}

int txn_save(struct smmu_txn *t)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = smmu_journal_save(t->j, &e);
    if (r < 0 && !t->res->error.code)
        smmu_error_copy(&t->res->error, &e);
    return r;
}

const char *txn_step_str(json_t *step, const char *key)
{
    const char *s = json_string_value(json_object_get(step, key));
    return s ? s : "";
}

void txn_step_state(json_t *step, enum smmu_step_state st)
{
    json_object_set_new(step, "state", json_string(smmu_step_state_name(st)));
}

bool txn_step_is(json_t *step, enum smmu_step_state st)
{
    return !strcmp(txn_step_str(step, "state"), smmu_step_state_name(st));
}

void txn_step_path(json_t *step, char *out, size_t len)
{
    const char *kind = txn_step_str(step, "kind");
    if (!strcmp(kind, "object-add") || !strcmp(kind, "object-del"))
        snprintf(out, len, "/objects/%s", txn_step_str(step, "name"));
    else
        snprintf(out, len, "/machine/peripheral/%s", txn_step_str(step, "name"));
}

static bool txn_transport_error(int r)
{
    return r == -ECONNRESET || r == -EPROTO || r == -EMSGSIZE || r == -ENOTCONN || r == -ECANCELED;
}

/* ---- reconnect ---- */

static void txn_reconnected(int err, const struct smmu_error *e, void *arg)
{
    struct smmu_txn *t = arg;
    txn_k k = t->reconn_k;
    (void)e;
    if (err < 0)
        t->lost = true;
    t->reconn_k = NULL;
    k(t, err);
}

void txn_reconnect(struct smmu_txn *t, txn_k k)
{
    if (t->lost) {
        k(t, -ENOTCONN);
        return;
    }
    if (!t->opts.reconnect) {
        t->lost = true; /* txn.h: without a reconnect function the transaction is left to `recover` */
        k(t, -ENOTCONN);
        return;
    }
    t->reconn_k = k;
    if (t->opts.reconnect(t->c, t->opts.reconnect_payload, txn_reconnected, t) < 0) {
        t->reconn_k = NULL;
        t->lost = true;
        k(t, -ENOTCONN);
    }
}

/* ---- one command ---- */

static void txn_send_end(struct smmu_txn *t, int r)
{
    txn_reply_k k = t->send_k;
    (void)r;
    t->send_k = NULL;
    k(t, t->send_r, &t->send_err);
}

static void txn_send_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct smmu_txn *t = payload;
    (void)c; (void)ret;
    smmu_error_clear(&t->send_err);
    if (err < 0 && e)
        smmu_error_copy(&t->send_err, e);
    t->send_r = err;
    if (txn_transport_error(err)) {
        t->send_r = -ECONNRESET; /* the reply is unknown; reconnect for what follows */
        txn_reconnect(t, txn_send_end);
        return;
    }
    txn_send_end(t, 0);
}

void txn_send(struct smmu_txn *t, int step, const char *cmd, json_t *args, const int *fds, size_t nfds,
              txn_reply_k k)
{
    bool hooked = step >= 0 && t->opts.step_hook;
    int r;
    t->send_k = k;
    t->send_step = step;
    snprintf(t->send_cmd, sizeof(t->send_cmd), "%s", cmd);
    smmu_error_clear(&t->send_err);
    if (t->lost) {
        json_decref(args);
        t->send_r = smmu_error_set(&t->send_err, -ENOTCONN, "%s: QEMU is unreachable", cmd);
        txn_send_end(t, 0);
        return;
    }
    if (hooked)
        t->opts.step_hook(step, 0, t->opts.step_hook_payload);
    r = qmp_call(*t->c, cmd, args, fds, nfds, 0, txn_send_cb, t);
    if (r == -ENOTCONN) {
        /* the connection was already gone: nothing was sent; reconnect for what follows */
        t->send_r = smmu_error_set(&t->send_err, -ECONNRESET, "%s: the connection to QEMU was lost before it "
                                   "was sent", cmd);
        txn_reconnect(t, txn_send_end);
        return;
    }
    if (r < 0) {
        t->send_r = smmu_error_set(&t->send_err, r, "%s: %s", cmd, strerror(-r));
        txn_send_end(t, 0);
        return;
    }
    if (hooked)
        t->opts.step_hook(step, 1, t->opts.step_hook_payload);
}

/* ---- did it take effect? ---- */

static void txn_exists_try(struct smmu_txn *t);

static void txn_exists_end(struct smmu_txn *t, int found, const struct smmu_error *e)
{
    txn_reply_k k = t->exists_k;
    t->exists_k = NULL;
    k(t, found, e);
}

static void txn_exists_retry(struct smmu_txn *t, int r)
{
    if (r < 0) {
        txn_exists_end(t, t->send_r, &t->send_err);
        return;
    }
    t->exists_attempt++;
    txn_exists_try(t);
}

/* the vm module asks; a connection that is gone is re-established once and asked again */
static void txn_exists_answer(struct smmu_txn *t, int found, const struct smmu_error *e)
{
    if (found >= 0 || t->exists_attempt > 0 || qmp_client_state(*t->c) == QMP_STATE_READY) {
        txn_exists_end(t, found, e);
        return;
    }
    t->send_r = found;
    smmu_error_copy(&t->send_err, e);
    txn_reconnect(t, txn_exists_retry);
}

static void txn_exists_cb(int found, const struct smmu_error *e, void *payload)
{
    txn_exists_answer(payload, found, e);
}

static void txn_exists_try(struct smmu_txn *t)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    if (t->lost) {
        smmu_error_set(&e, -ENOTCONN, "asking whether %s exists: QEMU is unreachable", t->exists_path);
        txn_exists_end(t, -ENOTCONN, &e);
        return;
    }
    int r = smmu_vm_qom_exists_start(*t->c, t->exists_path, txn_exists_cb, t, &e);
    if (r < 0)
        txn_exists_answer(t, r, &e);
}

void txn_exists(struct smmu_txn *t, const char *path, txn_reply_k k)
{
    t->exists_k = k;
    t->exists_attempt = 0;
    snprintf(t->exists_path, sizeof(t->exists_path), "%s", path);
    txn_exists_try(t);
}

/* ---- parallel unplug ---- */

struct unplug_dev {
    const char *id;
    bool replied, reply_ok, deleted, guest_error, not_found, in_progress;
    struct smmu_error err;
    qmp_sub *sub_del, *sub_guest;
    struct txn_unplug *u;
};

struct txn_unplug {
    struct smmu_txn *t;
    struct unplug_dev *devs;
    size_t n, probe;
    bool wait_events;
    bool timed_out;      /* the unplug timeout expired (or a cancel stopped the wait) */
    bool lost;           /* the connection broke */
    bool deciding;       /* outcomes are being settled: events and replies no longer count */
    size_t inflight;     /* device_del calls awaiting their reply */
    struct event *timer;
    enum txn_del *out;
    struct smmu_error *errs;
    txn_k k;
};

/* A device's outcome is known: QEMU answered, and (when we wait for events) it refused, or the unplug
 * finished or was refused by the guest. */
static bool unplug_final(const struct unplug_dev *d, bool wait_events)
{
    if (!d->replied)
        return false;
    if (!d->reply_ok || !wait_events)
        return true;
    return d->deleted || d->guest_error;
}

static void unplug_decide(struct txn_unplug *u);

/* Until every reply is in (each call has its own command timeout), then until every device's outcome is
 * known or the unplug timeout expires; a broken connection ends the wait once the replies are in (closing
 * fails them all at once). */
static void unplug_check(struct txn_unplug *u)
{
    bool replies_in = u->inflight == 0, all_final = true;
    if (u->deciding)
        return;
    for (size_t i = 0; i < u->n; i++)
        all_final = all_final && unplug_final(&u->devs[i], u->wait_events);
    if (replies_in && (u->lost || all_final || u->timed_out))
        unplug_decide(u);
}

static void unplug_event_cb(qmp_client *c, const char *event, json_t *data, json_t *msg, void *payload)
{
    struct unplug_dev *d = payload;
    (void)c; (void)data; (void)msg;
    if (!event)
        d->u->lost = true;
    else if (!strcmp(event, "DEVICE_DELETED"))
        d->deleted = true;
    else if (!strcmp(event, "DEVICE_UNPLUG_GUEST_ERROR"))
        d->guest_error = true;
    unplug_check(d->u);
}

static void unplug_reply_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct unplug_dev *d = payload;
    struct txn_unplug *u = d->u;
    (void)c; (void)ret;
    u->inflight--;
    if (u->lost && txn_transport_error(err)) {
        /* failed by the loss already seen: its outcome is unknown, as if it never answered */
    } else {
        d->replied = true;
        d->reply_ok = err == 0;
        if (err) {
            smmu_error_copy(&d->err, e);
            if (err == -EIO && !strcmp(e->qmp_class, "DeviceNotFound"))
                d->not_found = true;
            else if (err == -EIO && strstr(e->qmp_desc, "already in the process of unplug"))
                d->in_progress = true;
            else if (err != -EIO && err != -ETIMEDOUT)
                u->lost = true; /* the connection broke */
        }
    }
    unplug_check(u);
}

static void unplug_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct txn_unplug *u = arg;
    (void)fd; (void)what;
    u->timed_out = true;
    unplug_check(u);
}

void txn_unplug_stop_waiting(struct smmu_txn *t)
{
    struct txn_unplug *u = t->unplug;
    if (!u || u->deciding)
        return;
    u->timed_out = true;
    unplug_check(u);
}

static void unplug_free(struct txn_unplug *u)
{
    if (u->timer)
        event_free(u->timer);
    free(u->devs);
    free(u);
}

static void unplug_end(struct txn_unplug *u)
{
    struct smmu_txn *t = u->t;
    txn_k k = u->k;
    t->unplug = NULL;
    unplug_free(u);
    k(t, 0);
}

static void unplug_probe_next(struct smmu_txn *t, int r);

static void unplug_probed(struct smmu_txn *t, int found, const struct smmu_error *e)
{
    struct txn_unplug *u = t->unplug;
    (void)e;
    if (found == 0) {
        u->out[u->probe] = TXN_DEL_DONE;
        smmu_error_clear(&u->errs[u->probe]);
    } else if (found == 1 && u->out[u->probe] == TXN_DEL_FAILED) {
        /* still there: QEMU may have started the unplug (DESIGN §5) — pending, not failed; the journal keeps it
         * and the next DEVICE_DELETED or `status` settles it */
        u->out[u->probe] = TXN_DEL_PENDING;
        smmu_error_set(&u->errs[u->probe], -EINPROGRESS, "device_del %s: the reply was lost and the device is "
                       "still there: the unplug may be under way (pending; `smmuctl status` settles it)",
                       u->devs[u->probe].id);
    }
    u->probe++;
    unplug_probe_next(t, 0);
}

/* A device_del whose reply never came (connection lost, timeout) may have run: ask QEMU whether the device
 * is still there (DESIGN §5). Gone is done; present is pending (an unplug may be under way). */
static void unplug_probe_next(struct smmu_txn *t, int r)
{
    struct txn_unplug *u = t->unplug;
    (void)r;
    for (; u->probe < u->n && !t->lost; u->probe++) {
        char path[SMMU_PATH_LEN];
        /* failed without QEMU's answer, or pending while the connection broke (its DEVICE_DELETED may have been
         * lost with it) */
        bool unknown = u->out[u->probe] == TXN_DEL_FAILED && u->errs[u->probe].code != -EIO;
        if (!unknown && !(u->lost && u->out[u->probe] == TXN_DEL_PENDING))
            continue;
        snprintf(path, sizeof(path), "/machine/peripheral/%s", u->devs[u->probe].id);
        txn_exists(t, path, unplug_probed);
        return;
    }
    unplug_end(u);
}

static void unplug_decide(struct txn_unplug *u)
{
    struct smmu_txn *t = u->t;
    u->deciding = true;
    if (u->timer)
        evtimer_del(u->timer);
    for (size_t i = 0; i < u->n; i++) {
        struct unplug_dev *d = &u->devs[i];
        enum txn_del *out = u->out;
        struct smmu_error *errs = u->errs;
        if (d->deleted || d->not_found) {
            out[i] = TXN_DEL_DONE;
        } else if (d->guest_error) {
            out[i] = TXN_DEL_REFUSED;
            smmu_error_set(&errs[i], -EPERM, "device_del %s: the guest refused the unplug "
                           "(DEVICE_UNPLUG_GUEST_ERROR)", d->id);
        } else if (d->replied && (d->reply_ok || d->in_progress)) {
            out[i] = TXN_DEL_PENDING;
            smmu_error_set(&errs[i], -EINPROGRESS, "device_del %s: %s", d->id,
                           d->in_progress ? "already in the process of unplug; waiting for the guest"
                                          : "no DEVICE_DELETED yet: the guest has not released the device");
        } else {
            out[i] = TXN_DEL_FAILED;
            if (d->replied && d->err.code)
                smmu_error_copy(&errs[i], &d->err);
            else
                smmu_error_set(&errs[i], -ECONNRESET, "device_del %s: connection to QEMU lost", d->id);
        }
        qmp_unsubscribe(d->sub_del);
        qmp_unsubscribe(d->sub_guest);
        d->sub_del = d->sub_guest = NULL;
    }
    u->probe = 0;
    /* the connection went away mid-unplug: outcomes not seen are unknown; reconnect for what follows */
    if (u->lost && qmp_client_state(*t->c) != QMP_STATE_READY) {
        txn_reconnect(t, unplug_probe_next);
        return;
    }
    unplug_probe_next(t, 0);
}

void txn_unplug(struct smmu_txn *t, const char *const *ids, size_t n, int timeout_ms, enum txn_del *out,
                struct smmu_error *errs, txn_k k)
{
    struct txn_unplug *u = calloc(1, sizeof(*u));
    qmp_client *c = *t->c;
    if (u)
        u->devs = calloc(n ? n : 1, sizeof(*u->devs));
    if (!u || !u->devs) {
        free(u);
        for (size_t i = 0; i < n; i++) {
            out[i] = TXN_DEL_FAILED;
            smmu_error_set(&errs[i], -ENOMEM, "out of memory");
        }
        k(t, -ENOMEM);
        return;
    }
    u->t = t;
    u->n = n;
    u->out = out;
    u->errs = errs;
    u->k = k;
    u->wait_events = timeout_ms > 0;
    u->timed_out = t->cancelled && !t->rolling_back; /* a cancelled detach does not wait */
    t->unplug = u;
    u->inflight = 1; /* held while sending */
    /* Waiters first: DEVICE_DELETED may arrive before the reply to device_del (FACTS). */
    for (size_t i = 0; i < n; i++) {
        u->devs[i].id = ids[i];
        u->devs[i].u = u;
        qmp_subscribe(c, "DEVICE_DELETED", ids[i], unplug_event_cb, &u->devs[i], &u->devs[i].sub_del);
        qmp_subscribe(c, "DEVICE_UNPLUG_GUEST_ERROR", ids[i], unplug_event_cb, &u->devs[i], &u->devs[i].sub_guest);
    }
    for (size_t i = 0; i < n; i++) {
        u->inflight++;
        int r = qmp_call(c, "device_del", json_pack("{s:s}", "id", ids[i]), NULL, 0, 0, unplug_reply_cb,
                         &u->devs[i]);
        if (r < 0) {
            u->inflight--;
            u->devs[i].replied = true;
            smmu_error_set(&u->devs[i].err, r, "device_del %s: QEMU is unreachable", ids[i]);
            u->lost = true;
        }
    }
    if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        u->timer = evtimer_new(qmp_client_base(c), unplug_timer_cb, u);
        if (u->timer)
            evtimer_add(u->timer, &tv);
    }
    u->inflight--;
    unplug_check(u);
}

bool txn_device_present(const struct smmu_facts *f, const char *id)
{
    if (!id || !*id)
        return false;
    if (smmu_topology_find_vfio(&f->topo, id) >= 0)
        return true;
    for (size_t p = 0; p < f->topo.n_ports; p++)
        if (!strcmp(f->topo.ports[p].occupant_id, id))
            return true;
    return false;
}
