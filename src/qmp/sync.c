/* sync.c — blocking helpers over the asynchronous client: they pump the client's event_base.
 * For the CLI and tests; never call them from inside a callback (the loop would nest). */
#include "smmuctl/qmp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void pump_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    *(bool *)arg = true;
}

int qmp_pump_until(struct event_base *base, const bool *flag, int timeout_ms)
{
    bool expired = false;
    struct event *t = NULL;
    if (timeout_ms >= 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        t = evtimer_new(base, pump_timeout_cb, &expired);
        if (!t)
            return -ENOMEM;
        evtimer_add(t, &tv);
    }
    while (!*flag && !expired) {
        if (event_base_loop(base, EVLOOP_ONCE) != 0)
            break; /* nothing left that could ever set the flag */
    }
    if (t)
        event_free(t);
    return *flag ? 0 : -ETIMEDOUT;
}

struct sync_connect {
    bool done;
    int err;
    struct smmu_error e;
};

static void sync_connect_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    struct sync_connect *s = payload;
    (void)c;
    if (s->done)
        return; /* a later disconnect: the caller learns it from its calls */
    s->done = true;
    s->err = err;
    if (e)
        smmu_error_copy(&s->e, e);
}

int qmp_client_connect_sync(qmp_client *c, const char *addr, struct smmu_error *err)
{
    struct sync_connect *s = calloc(1, sizeof(*s));
    int r;
    if (!s)
        return -ENOMEM;
    r = qmp_client_connect(c, addr, sync_connect_cb, s);
    if (r < 0) {
        free(s);
        return smmu_error_set(err, r, "cannot connect to QEMU at %s: %s", addr ? addr : "(none)",
                              r == -EINVAL ? "bad address (expected PATH, unix:PATH or tcp:HOST:PORT)" : strerror(-r));
    }
    qmp_pump_until(qmp_client_base(c), &s->done, -1);
    r = s->done ? s->err : -ETIMEDOUT;
    if (r < 0) {
        if (s->done)
            smmu_error_copy(err, &s->e);
        else
            smmu_error_set(err, r, "connecting to %s: no outcome", addr);
    }
    qmp_client_on_state(c, NULL, NULL); /* later disconnects show up as failed calls */
    free(s);
    return r;
}

struct sync_call {
    bool done;
    int err;
    json_t *ret;
    struct smmu_error e;
};

static void sync_call_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct sync_call *s = payload;
    (void)c;
    s->done = true;
    s->err = err;
    if (ret)
        s->ret = json_incref(ret);
    if (e)
        smmu_error_copy(&s->e, e);
}

int qmp_call_sync(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, json_t **ret,
                  struct smmu_error *err)
{
    return qmp_call_sync_hook(c, cmd, args, fds, nfds, 0, NULL, NULL, ret, err);
}

int qmp_call_sync_hook(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, int timeout_ms,
                       void (*after_send)(void *), void *hook_payload, json_t **ret, struct smmu_error *err)
{
    struct sync_call s = {0};
    int r = qmp_call(c, cmd, args, fds, nfds, timeout_ms, sync_call_cb, &s);
    if (r < 0)
        return smmu_error_set(err, r, "%s: %s", cmd,
                              r == -ENOTCONN ? "not connected to QEMU" : strerror(-r));
    if (after_send)
        after_send(hook_payload);
    qmp_pump_until(qmp_client_base(c), &s.done, -1);
    if (!s.done)
        return smmu_error_set(err, -ETIMEDOUT, "%s: no outcome", cmd);
    if (s.err < 0) {
        smmu_error_copy(err, &s.e);
        json_decref(s.ret);
        return s.err;
    }
    if (ret)
        *ret = s.ret ? s.ret : json_null();
    else
        json_decref(s.ret);
    return 0;
}
