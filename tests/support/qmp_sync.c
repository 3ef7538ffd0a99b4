/* qmp_sync.c — blocking helpers for tests and benches over the library's step machines: they pump the
 * client's event_base until the callback fired. The library itself has only the non-blocking forms (issue 9);
 * never call these from inside a callback (the loop would nest). */
#include "support/qmp_sync.h"

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

/* ---- discovery, facts, transactions ---- */

struct sync_op {
    bool done;
    int err;
    struct smmu_error e;
};

static void sync_op_cb(int err, const struct smmu_error *e, void *payload)
{
    struct sync_op *s = payload;
    s->done = true;
    s->err = err;
    if (e)
        smmu_error_copy(&s->e, e);
}

static int sync_op_wait(struct event_base *base, struct sync_op *s, struct smmu_error *err)
{
    qmp_pump_until(base, &s->done, -1);
    if (!s->done)
        return smmu_error_set(err, -ETIMEDOUT, "no outcome");
    if (s->err < 0)
        smmu_error_copy(err, &s->e);
    return s->err;
}

int smmu_vm_discover_ex(qmp_client *c, unsigned flags, struct smmu_topology *out, struct smmu_error *err)
{
    struct sync_op s = {0};
    int r = smmu_vm_discover_start(c, flags, out, sync_op_cb, &s);
    if (r < 0)
        return smmu_error_set(err, r, "topology discovery: %s", strerror(-r));
    return sync_op_wait(qmp_client_base(c), &s, err);
}

int smmu_vm_discover(qmp_client *c, struct smmu_topology *out, struct smmu_error *err)
{
    return smmu_vm_discover_ex(c, 0, out, err);
}

static void sync_exists_cb(int found, const struct smmu_error *e, void *payload)
{
    sync_op_cb(found, e, payload);
}

int smmu_vm_qom_exists(qmp_client *c, const char *path, struct smmu_error *err)
{
    struct sync_op s = {0};
    int r = smmu_vm_qom_exists_start(c, path, sync_exists_cb, &s, err);
    if (r < 0)
        return r;
    return sync_op_wait(qmp_client_base(c), &s, err);
}

int smmu_facts_gather(qmp_client *c, const char *sysfs_root, smmu_journal *j, struct smmu_facts *out,
                      struct smmu_error *err)
{
    struct sync_op s = {0};
    int r = smmu_facts_gather_start(c, sysfs_root, j, out, sync_op_cb, &s, err);
    if (r < 0)
        return r;
    return sync_op_wait(qmp_client_base(c), &s, err);
}

static void sync_txn_done(struct smmu_result *res, void *payload)
{
    (void)res;
    ((struct sync_op *)payload)->done = true;
}

static int sync_txn_wait(qmp_client **c, int started, struct sync_op *s, struct smmu_result *res)
{
    if (started < 0) {
        res->outcome = SMMU_OUTCOME_ROLLED_BACK;
        return started;
    }
    qmp_pump_until(qmp_client_base(*c), &s->done, -1);
    return res->outcome == SMMU_OUTCOME_DONE ? 0 : (res->error.code ? res->error.code : -EIO);
}

int smmu_txn_attach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const struct smmu_plan *p,
                    const struct smmu_txn_opts *opts, struct smmu_result *res)
{
    struct sync_op s = {0};
    return sync_txn_wait(c, smmu_txn_attach_start(c, j, f, p, opts, res, sync_txn_done, &s, NULL), &s, res);
}

int smmu_txn_detach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const char *const *devs,
                    size_t n, const struct smmu_txn_opts *opts, struct smmu_result *res)
{
    struct sync_op s = {0};
    return sync_txn_wait(c, smmu_txn_detach_start(c, j, f, devs, n, opts, res, sync_txn_done, &s, NULL), &s, res);
}

int smmu_txn_status(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, bool recover,
                    const struct smmu_txn_opts *opts, struct smmu_result *res)
{
    struct sync_op s = {0};
    return sync_txn_wait(c, smmu_txn_status_start(c, j, f, recover, opts, res, sync_txn_done, &s, NULL), &s, res);
}
