/* client.c — asynchronous QMP client: lifetime, pinning while dispatching, accessors (see client_int.h).
 *
 * The socket is driven directly with libevent events (no bufferevent) because fds must travel with the
 * bytes of their own command (sendmsg + SCM_RIGHTS on that command's first chunk). */
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

void qmpc_log(qmp_client *c, int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    if (!c->opts.log)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    c->opts.log(level, buf, c->opts.log_payload);
}

void qmpc_hold(qmp_client *c)
{
    c->busy++;
}

static void client_really_free(qmp_client *c);

/* Returns true if the client is still alive (not freed). */
bool qmpc_release(qmp_client *c)
{
    if (--c->busy == 0 && c->dead) {
        client_really_free(c);
        return false;
    }
    return !c->dead;
}
/* ---- lifetime ---- */

int qmp_client_new(qmp_client **out, struct event_base *base, const struct qmp_client_opts *opts)
{
    qmp_client *c = calloc(1, sizeof(*c));
    struct qmp_client_opts def = QMP_CLIENT_OPTS_INIT;
    int r;
    if (!c)
        return -ENOMEM;
    c->opts = opts ? *opts : def;
    if (c->opts.connect_timeout_ms <= 0)
        c->opts.connect_timeout_ms = 10000;
    if (c->opts.command_timeout_ms == 0)
        c->opts.command_timeout_ms = 10000;
    c->base = base;
    c->fd = -1;
    c->state = QMP_STATE_IDLE;
    r = qmp_decoder_new(&c->dec, c->opts.max_message);
    if (r < 0) {
        free(c);
        return r;
    }
    *out = c;
    return 0;
}

static void client_really_free(qmp_client *c)
{
    qmpc_conn_release_io(c);
    if (c->ev_deferred)
        event_free(c->ev_deferred);
    while (c->pending) {
        struct qmp_pending *p = c->pending;
        qmpc_pending_unlink(c, p);
        json_decref(p->args);
        free(p);
    }
    c->busy = 0;
    qmpc_subs_sweep(c);
    while (c->subs) {
        struct qmp_sub *s = c->subs;
        c->subs = s->next;
        free(s->event);
        free(s->device);
        free(s);
    }
    qmp_decoder_free(c->dec);
    free(c);
}

void qmp_client_free(qmp_client *c)
{
    if (!c || c->dead)
        return;
    qmpc_hold(c);
    c->state_cb = NULL; /* the owner is going away: no state callbacks */
    if (c->state != QMP_STATE_IDLE && c->state != QMP_STATE_CLOSED) {
        c->state = QMP_STATE_CLOSED;
        c->conn_gen++;
        qmpc_conn_release_io(c);
    }
    qmpc_pending_fail_all(c, -ECANCELED, "cancelled: the QMP client was freed");
    for (struct qmp_sub *s = c->subs; s; s = s->next)
        s->dead = true;
    c->dead = true;
    qmpc_release(c);
}

enum qmp_state qmp_client_state(const qmp_client *c)
{
    return c->state;
}

const struct qmp_greeting *qmp_client_greeting(const qmp_client *c)
{
    return &c->greeting;
}

struct event_base *qmp_client_base(const qmp_client *c)
{
    return c->base;
}

size_t qmp_client_pending(const qmp_client *c)
{
    return c->n_pending;
}

int qmp_client_socket_fd(const qmp_client *c)
{
    return c->fd;
}
