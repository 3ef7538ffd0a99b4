/* exec.c — running steps against QEMU: send with reconnect, parallel unplug, existence checks. */
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

int txn_save(struct txn_ctx *t)
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

void txn_step_state(json_t *step, const char *state)
{
    json_object_set_new(step, "state", json_string(state));
}

bool txn_step_is(json_t *step, const char *state)
{
    return !strcmp(txn_step_str(step, "state"), state);
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

/* Replace the client after a lost connection. Returns 0 if a new READY client is in place. */
static int txn_reconnect(struct txn_ctx *t, struct smmu_error *err)
{
    if (t->lost)
        return -ENOTCONN;
    if (!t->opts->reconnect) {
        t->lost = true; /* txn.h: without a reconnect function the transaction is left to `recover` */
        return -ENOTCONN;
    }
    int r = t->opts->reconnect(t->c, t->opts->reconnect_payload, err);
    if (r < 0)
        t->lost = true;
    return r;
}

struct txn_hook {
    struct txn_ctx *t;
    int step;
};

static void txn_after_send(void *payload)
{
    struct txn_hook *h = payload;
    h->t->opts->step_hook(h->step, 1, h->t->opts->step_hook_payload);
}

int txn_send(struct txn_ctx *t, int step, const char *cmd, json_t *args, const int *fds, size_t nfds, json_t **ret,
             struct smmu_error *err)
{
    struct txn_hook h = {t, step};
    bool hooked = step >= 0 && t->opts->step_hook;
    int r;

    if (t->lost) {
        json_decref(args);
        return smmu_error_set(err, -ENOTCONN, "%s: QEMU is unreachable", cmd);
    }
    if (hooked)
        t->opts->step_hook(step, 0, t->opts->step_hook_payload);
    r = qmp_call_sync_hook(*t->c, cmd, args, fds, nfds, 0, hooked ? txn_after_send : NULL, &h, ret, err);
    if (r == -ENOTCONN) {
        /* the connection was already gone: nothing was sent; reconnect for what follows */
        txn_reconnect(t, err);
        return smmu_error_set(err, -ECONNRESET, "%s: the connection to QEMU was lost before it was sent", cmd);
    }
    if (txn_transport_error(r)) {
        struct smmu_error e2 = SMMU_ERROR_INIT;
        txn_reconnect(t, &e2);
        return -ECONNRESET;
    }
    return r;
}

int txn_exists(struct txn_ctx *t, const char *path, struct smmu_error *err)
{
    /* the vm module asks; a connection that is gone is re-established once and asked again */
    for (int attempt = 0;; attempt++) {
        if (t->lost)
            return smmu_error_set(err, -ENOTCONN, "asking whether %s exists: QEMU is unreachable", path);
        int r = smmu_vm_qom_exists(*t->c, path, err);
        if (r >= 0 || attempt > 0 || qmp_client_state(*t->c) == QMP_STATE_READY)
            return r;
        struct smmu_error e2 = SMMU_ERROR_INIT;
        if (txn_reconnect(t, &e2) < 0)
            return r;
    }
}

/* ---- parallel unplug ---- */

struct unplug_dev {
    const char *id;
    bool replied, reply_ok, deleted, guest_error, not_found, in_progress;
    struct smmu_error err;
    qmp_sub *sub_del, *sub_guest;
    struct unplug_all *all;
};

struct unplug_all {
    bool timed_out;      /* the unplug timeout expired */
    bool lost;           /* the connection broke */
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

static void unplug_event_cb(qmp_client *c, const char *event, json_t *data, json_t *msg, void *payload)
{
    struct unplug_dev *d = payload;
    (void)c; (void)data; (void)msg;
    if (!event) {
        d->all->lost = true;
        return;
    }
    if (!strcmp(event, "DEVICE_DELETED"))
        d->deleted = true;
    else if (!strcmp(event, "DEVICE_UNPLUG_GUEST_ERROR"))
        d->guest_error = true;
}

static void unplug_reply_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct unplug_dev *d = payload;
    (void)c; (void)ret;
    d->replied = true;
    d->reply_ok = err == 0;
    if (err) {
        smmu_error_copy(&d->err, e);
        if (err == -EIO && !strcmp(e->qmp_class, "DeviceNotFound"))
            d->not_found = true;
        else if (err == -EIO && strstr(e->qmp_desc, "already in the process of unplug"))
            d->in_progress = true;
        else if (err != -EIO && err != -ETIMEDOUT)
            d->all->lost = true; /* the connection broke */
    }
}

static void unplug_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    ((struct unplug_all *)arg)->timed_out = true;
}

void txn_unplug(struct txn_ctx *t, const char *const *ids, size_t n, int timeout_ms, enum txn_del *out,
                struct smmu_error *errs)
{
    struct unplug_dev *devs = calloc(n ? n : 1, sizeof(*devs));
    struct unplug_all all = {false, false};
    bool wait_events = timeout_ms > 0;
    qmp_client *c = *t->c;
    struct event *timer = NULL;
    if (!devs) {
        for (size_t i = 0; i < n; i++) {
            out[i] = TXN_DEL_FAILED;
            smmu_error_set(&errs[i], -ENOMEM, "out of memory");
        }
        return;
    }
    /* Waiters first: DEVICE_DELETED may arrive before the reply to device_del (FACTS). */
    for (size_t i = 0; i < n; i++) {
        devs[i].id = ids[i];
        devs[i].all = &all;
        qmp_subscribe(c, "DEVICE_DELETED", ids[i], unplug_event_cb, &devs[i], &devs[i].sub_del);
        qmp_subscribe(c, "DEVICE_UNPLUG_GUEST_ERROR", ids[i], unplug_event_cb, &devs[i], &devs[i].sub_guest);
    }
    for (size_t i = 0; i < n; i++) {
        int r = qmp_call(c, "device_del", json_pack("{s:s}", "id", ids[i]), NULL, 0, 0, unplug_reply_cb, &devs[i]);
        if (r < 0) {
            devs[i].replied = true;
            smmu_error_set(&devs[i].err, r, "device_del %s: QEMU is unreachable", ids[i]);
            all.lost = true;
        }
    }
    /* Phase 1: every reply (each call has its own command timeout). Phase 2: events, up to timeout_ms. */
    if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        timer = evtimer_new(qmp_client_base(c), unplug_timer_cb, &all);
        evtimer_add(timer, &tv);
    }
    /* Until every reply is in (each call has its own command timeout), then until every device's outcome is
     * known or the unplug timeout expires. */
    for (;;) {
        bool replies_in = true, all_final = true;
        for (size_t i = 0; i < n; i++) {
            replies_in = replies_in && devs[i].replied;
            all_final = all_final && unplug_final(&devs[i], wait_events);
        }
        if (all.lost || all_final || (replies_in && all.timed_out))
            break;
        if (event_base_loop(qmp_client_base(c), EVLOOP_ONCE) != 0)
            break;
    }
    if (timer)
        event_free(timer);
    for (size_t i = 0; i < n; i++) {
        struct unplug_dev *d = &devs[i];
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
            if (d->err.code)
                smmu_error_copy(&errs[i], &d->err);
            else
                smmu_error_set(&errs[i], -ECONNRESET, "device_del %s: connection to QEMU lost", d->id);
        }
        qmp_unsubscribe(d->sub_del);
        qmp_unsubscribe(d->sub_guest);
    }
    if (all.lost) {
        struct smmu_error e = SMMU_ERROR_INIT;
        /* the connection went away mid-unplug: outcomes not seen are unknown; reconnect for what follows */
        if (qmp_client_state(c) != QMP_STATE_READY)
            txn_reconnect(t, &e);
    }
    /* A device_del whose reply never came (connection lost, timeout) may have run: ask QEMU whether the device
     * is still there (DESIGN §5). Gone is done; present stays failed (unknown whether an unplug is under way). */
    for (size_t i = 0; i < n && !t->lost; i++) {
        struct smmu_error e = SMMU_ERROR_INIT;
        char path[SMMU_PATH_LEN];
        if (out[i] != TXN_DEL_FAILED || errs[i].code == -EIO)
            continue;
        snprintf(path, sizeof(path), "/machine/peripheral/%s", ids[i]);
        if (txn_exists(t, path, &e) == 0) {
            out[i] = TXN_DEL_DONE;
            smmu_error_clear(&errs[i]);
        }
    }
    free(devs);
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
