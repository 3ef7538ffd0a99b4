/* calls.c — calls: ids, the pending list, per-command timeouts, routing replies by id. */
#define _GNU_SOURCE
#include "qmp/client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- pending calls ---- */

void qmpc_pending_unlink(qmp_client *c, struct qmp_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        c->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
    c->n_pending--;
    if (p->timer) {
        event_free(p->timer);
        p->timer = NULL;
    }
}

/* Unlink p, then run its callback exactly once and free it. */
static void pending_finish(qmp_client *c, struct qmp_pending *p, int err, json_t *ret, const struct smmu_error *e)
{
    qmpc_pending_unlink(c, p);
    qmpc_hold(c);
    if (c->observer) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        c->observer(c, p->cmd, p->args, err, ret,
                    (double)(now.tv_sec - p->sent.tv_sec) + (now.tv_nsec - p->sent.tv_nsec) / 1e9,
                    c->observer_payload);
    }
    if (p->cb)
        p->cb(c, err, ret, e, p->payload);
    json_decref(p->args);
    free(p);
    qmpc_release(c);
}

void qmp_client_observe(qmp_client *c, qmp_call_observer fn, void *payload)
{
    c->observer = fn;
    c->observer_payload = payload;
}

static struct qmp_pending *pending_find(qmp_client *c, const char *id)
{
    for (struct qmp_pending *p = c->pending; p; p = p->next)
        if (!strcmp(p->id, id))
            return p;
    return NULL;
}

/* Fail every call pending now with code and the message "<cmd>: <why>". Calls the callbacks make meanwhile
 * (new ids, at the head of the list) are not failed: they were sent after whatever went wrong. */
void qmpc_pending_fail_all(qmp_client *c, int code, const char *why)
{
    unsigned long last = c->next_id;
    qmpc_hold(c);
    while (!c->dead) {
        struct qmp_pending *p = c->pending;
        while (p && p->seq > last)
            p = p->next;
        if (!p)
            break;
        struct smmu_error e = SMMU_ERROR_INIT;
        smmu_error_set(&e, code, "%s: %s", p->cmd, why);
        snprintf(e.step, sizeof(e.step), "%s", p->cmd);
        pending_finish(c, p, code, NULL, &e);
    }
    qmpc_release(c);
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct qmp_pending *p = arg;
    qmp_client *c = p->c;
    struct smmu_error e = SMMU_ERROR_INIT;
    (void)fd; (void)what;
    smmu_error_set(&e, -ETIMEDOUT, "%s: no reply from QEMU at %s within the command timeout", p->cmd, c->addr);
    snprintf(e.step, sizeof(e.step), "%s", p->cmd);
    qmpc_log(c, 2, "%s (id %s): timed out; a late reply will be dropped", p->cmd, p->id);
    pending_finish(c, p, -ETIMEDOUT, NULL, &e);
}
int qmpc_call_submit(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, int timeout_ms,
                       qmp_reply_cb cb, void *payload)
{
    struct qmp_pending *p;
    json_t *msg;
    char *text;
    int r;

    if (nfds && !c->is_unix) {
        json_decref(args);
        return -EINVAL;
    }
    p = calloc(1, sizeof(*p));
    msg = json_object();
    if (!p || !msg) {
        free(p);
        json_decref(msg);
        json_decref(args);
        return -ENOMEM;
    }
    p->c = c;
    p->cb = cb;
    p->payload = payload;
    p->seq = ++c->next_id;
    snprintf(p->id, sizeof(p->id), "%lu", p->seq);
    snprintf(p->cmd, sizeof(p->cmd), "%s", cmd);
    json_object_set_new(msg, "execute", json_string(cmd));
    if (args && c->observer)
        p->args = json_incref(args);
    if (args)
        json_object_set_new(msg, "arguments", args);
    clock_gettime(CLOCK_MONOTONIC, &p->sent);
    json_object_set_new(msg, "id", json_string(p->id));
    text = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(msg);
    if (!text) {
        json_decref(p->args);
        free(p);
        return -ENOMEM;
    }
    r = qmpc_out_queue(c, text, fds, nfds);
    free(text);
    if (r < 0) {
        json_decref(p->args);
        free(p);
        return r;
    }
    if (timeout_ms == 0)
        timeout_ms = c->opts.command_timeout_ms;
    if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        p->timer = evtimer_new(c->base, pending_timeout_cb, p);
        if (p->timer)
            evtimer_add(p->timer, &tv);
    }
    p->next = c->pending;
    if (c->pending)
        c->pending->prev = p;
    c->pending = p;
    c->n_pending++;
    /* Try to write now (lowest latency); anything left goes when the socket is writable. */
    qmpc_hold(c);
    qmpc_write_flush(c);
    qmpc_release(c);
    return 0;
}

int qmp_call(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, int timeout_ms,
             qmp_reply_cb cb, void *payload)
{
    if (!cmd || !*cmd || (args && !json_is_object(args))) {
        json_decref(args);
        return -EINVAL;
    }
    if (c->state != QMP_STATE_READY) {
        json_decref(args);
        return -ENOTCONN;
    }
    return qmpc_call_submit(c, cmd, args, fds, nfds, timeout_ms, cb, payload);
}

void qmpc_handle_reply(qmp_client *c, json_t *msg)
{
    json_t *idv = json_object_get(msg, "id");
    json_t *error = json_object_get(msg, "error");
    struct qmp_pending *p;

    if (!idv) {
        if (error) {
            /* QEMU could not parse something we sent: we cannot tell which call it was. */
            const char *desc = json_string_value(json_object_get(error, "desc"));
            char why[600];
            snprintf(why, sizeof(why), "QEMU rejected our input without an id: %s", desc ? desc : "?");
            qmpc_log(c, 2, "%s", why);
            qmpc_pending_fail_all(c, -EPROTO, why);
        } else {
            qmpc_log(c, 1, "dropping a reply without an id");
        }
        return;
    }
    if (!json_is_string(idv) || !(p = pending_find(c, json_string_value(idv)))) {
        char *t = json_dumps(idv, JSON_COMPACT | JSON_ENCODE_ANY);
        qmpc_log(c, 1, "dropping a reply with unknown id %s (late reply to a timed-out call?)", t ? t : "?");
        free(t);
        return;
    }
    if (error) {
        struct smmu_error e = SMMU_ERROR_INIT;
        smmu_error_set_qmp(&e, p->cmd, json_string_value(json_object_get(error, "class")),
                           json_string_value(json_object_get(error, "desc")));
        snprintf(e.step, sizeof(e.step), "%s", p->cmd);
        pending_finish(c, p, -EIO, NULL, &e);
    } else {
        pending_finish(c, p, 0, json_object_get(msg, "return"), NULL);
    }
}
