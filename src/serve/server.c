/* server.c — the daemon's HTTP transport over evhttp on a unix socket (see server.h).
 *
 * Shape: one callback (on_request) matches the route (api.h), validates query and body, and either answers at
 * once (health, VMs, topology, metrics), starts an event stream, or creates an operation (ops.h), hands it to
 * the backend and waits for it up to ?wait= (a `pend`: an ops waiter plus an evtimer). The backend's done
 * callback updates the operation, which wakes the waiters.
 *
 * Connections: evhttp has no connection limit in libevent 2.1 and no hook when it accepts one, so the
 * bound is on connections with a request being answered or a stream open — those that hold the daemon's
 * resources for long: the first request on a connection registers it (its close callback unregisters
 * it); beyond max_connections a request is answered 503 and its connection closed. Idle and stalled
 * connections are cut by evhttp's timeout (idle_timeout_s) before they send a request. While a request is
 * being answered evhttp stops reading, so a waiting or streaming client is noticed gone on the next write
 * (SSE keep-alives every 15 s). */
#define _GNU_SOURCE
#include "serve/server.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "serve/api.h"
#include "serve/archive.h"
#include "serve/events.h"
#include "serve/idem.h"
#include "serve/listen.h"
#include "serve/metrics.h"
#include "serve/notify.h"
#include "serve/ops.h"
#include "serve/request.h"

struct stream;

/* A connection that has sent a request (see the top). */
struct conn {
    struct sv_server *s;
    struct evhttp_connection *evcon;
    struct stream *stream; /* its open event stream, if any */
    struct conn *prev, *next;
};

/* A request waiting for its operation (?wait=) */
struct pend {
    struct sv_server *s;
    struct evhttp_request *req;
    char route[64];
    double t0;
    struct sv_op *op;
    struct sv_op_waiter *w;
    struct event *timer;
    bool is_get; /* GET /v1/operations/{id}: the reply is the operation object */
    struct pend *prev, *next;
};

/* An open GET /v1/events */
struct stream {
    struct sv_server *s;
    struct conn *conn;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct sv_event_sub *sub;
    struct event *keepalive;
    struct stream *prev, *next;
};

/* An operation the backend still runs: the handle passed to op_submit → the operation */
struct inflight {
    uint64_t handle;
    char id[64];
    bool archive; /* it carries an Idempotency-Key: kept on disk */
    enum sv_verb verb;
    char vm[SV_PARAM_MAX];
    struct inflight *next;
};

struct sv_server {
    struct event_base *base;
    struct sv_backend *b;
    struct sv_server_opts o;
    char *listen_path, *group, *state_dir, *archive_dir;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct evconnlistener *listener;
    struct sv_ops *ops;
    struct sv_idem *idem;
    struct sv_events *events;
    struct sv_metrics *metrics;
    struct conn *conns;
    int nconns;
    bool accepting, stopping;
    struct pend *pends;
    struct stream *streams;
    struct inflight *inflight;
    uint64_t next_handle;
    char prefix[32];
    void (*vm_state_fn)(void *arg);
    void *vm_state_arg;
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    struct event *flush_timer;
};

/* ---- small helpers ---- */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval tv_of(double s)
{
    struct timeval tv;
    if (s < 0)
        s = 0;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static void slog(struct sv_server *s, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void slog(struct sv_server *s, int prio, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (s->o.log)
        s->o.log(s->o.log_arg, prio, buf);
    else
        sv_log_line(false, prio, buf);
}

void sv_server_opts_default(struct sv_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->wait_default_s = 30;
    o->wait_max_s = 3600;
    o->idle_timeout_s = 30;
    o->keepalive_s = 15;
    o->max_body = 1024 * 1024;
    o->max_headers = 16 * 1024;
    o->max_connections = 256;
    o->stream_max_buffered = 4 * 1024 * 1024;
    o->events_ring = SV_EVENTS_RING;
    o->shutdown_deadline_ms = 10000;
}

static const char *reason_of(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

/* A backend's negative errno as the §7 status. */
static int status_of_errno(int code)
{
    switch (-code) {
    case ENOENT: return 404;
    case EEXIST: case EBUSY: case EALREADY: return 409;
    case EINVAL: case ERANGE: case E2BIG: case ENODEV: return 422;
    case EAGAIN: return 429;
    case EIO: case EPROTO: return 502;
    case ECONNREFUSED: case ECONNRESET: case ETIMEDOUT: case ENOTCONN: case EHOSTDOWN: case EHOSTUNREACH:
    case EPIPE: case ESHUTDOWN: case ECANCELED: return 503;
    default: return 500;
    }
}

/* The status an operation's outcome is answered with (server.h). */
static int status_of_result(const struct sv_op_result *r)
{
    if (r->queue_full)
        return 429;
    if (r->unreachable)
        return 503;
    switch (r->state) {
    case SV_OP_DONE: return 200;
    case SV_OP_RUNNING: case SV_OP_PENDING: case SV_OP_INCOMPLETE: return 202;
    case SV_OP_ROLLED_BACK: return 502;
    case SV_OP_FAILED: return r->sent_nothing ? 422 : 502;
    }
    return 500;
}

static const char *method_of(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}

static int peer_fd(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? (int)bufferevent_getfd(bev) : -1;
}

static void peer_of(struct evhttp_request *req, long *uid, long *pid)
{
    struct ucred uc;
    socklen_t len = sizeof(uc);
    int fd = peer_fd(req);
    *uid = *pid = -1;
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0) {
        *uid = (long)uc.uid;
        *pid = (long)uc.pid;
    }
}

/* Send `body` (stolen) as JSON with `code`. */
static void reply_json(struct sv_server *s, struct evhttp_request *req, const char *route, double t0, int code,
                       json_t *body, const char *location, const char *allow)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *buf = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (location)
        evhttp_add_header(h, "Location", location);
    if (allow)
        evhttp_add_header(h, "Allow", allow);
    if (buf) {
        evbuffer_add_printf(buf, "%s\n", text ? text : "{}");
        evhttp_send_reply(req, code, reason_of(code), buf);
        evbuffer_free(buf);
    } else {
        evhttp_send_reply(req, 500, reason_of(500), NULL);
    }
    free(text);
    sv_metrics_api_request(s->metrics, route, code, mono_now() - t0);
}

static void reply_error(struct sv_server *s, struct evhttp_request *req, const char *route, double t0, int code,
                        int err_code, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void reply_error(struct sv_server *s, struct evhttp_request *req, const char *route, double t0, int code,
                        int err_code, const char *fmt, ...)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    e.code = err_code;
    reply_json(s, req, route, t0, code, sv_error_body(&e), NULL, NULL);
}

static void reply_smmu_error(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                             int code, const struct smmu_error *e)
{
    reply_json(s, req, route, t0, code, sv_error_body(e), NULL, NULL);
}

/* ---- connections ---- */

static void stream_closed(struct stream *st);

static void conn_unlink_free(struct conn *c)
{
    struct sv_server *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct conn *c = arg;
    if (c->stream)
        stream_closed(c->stream);
    conn_unlink_free(c);
}

/* The registered connection of req, registering it now; NULL when max_connections are registered. */
static struct conn *conn_of(struct sv_server *s, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct conn *c;
    for (c = s->conns; c; c = c->next)
        if (c->evcon == evcon)
            return c;
    if (!evcon || s->nconns >= s->o.max_connections || !(c = calloc(1, sizeof(*c))))
        return NULL;
    c->s = s;
    c->evcon = evcon;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    evhttp_connection_set_closecb(evcon, conn_closed, c);
    return c;
}

int sv_server_connections(const struct sv_server *s)
{
    return s->nconns;
}

/* Keep a keyed operation on disk (archive.h). */
static void keep(struct sv_server *s, const struct sv_op *op)
{
    int r = sv_archive_write(s->archive_dir, op);
    if (r < 0)
        slog(s, SV_LOG_WARNING, "cannot keep operation %s in %s: %s", sv_op_id(op), s->archive_dir, strerror(-r));
}

/* ---- backend callbacks ---- */

static struct inflight *inflight_take(struct sv_server *s, uint64_t h, bool remove)
{
    for (struct inflight **pp = &s->inflight; *pp; pp = &(*pp)->next)
        if ((*pp)->handle == h) {
            struct inflight *f = *pp;
            if (remove)
                *pp = f->next;
            return f;
        }
    return NULL;
}

static void on_op_done(void *arg, uint64_t h, const struct sv_op_result *r)
{
    struct sv_server *s = arg;
    struct inflight *f = inflight_take(s, h, false);
    struct sv_op *op = f ? sv_ops_find(s->ops, f->id) : NULL;
    bool ended = r->state != SV_OP_RUNNING && r->state != SV_OP_PENDING;
    json_t *result;
    if (!f)
        return; /* a result after the final one: ignored */
    if (ended || !op)
        inflight_take(s, h, true);
    if (!op) { /* cannot expire while running; defensive */
        free(f);
        return;
    }
    result = r->json ? json_incref((json_t *)r->json) : r->error ? sv_error_body(r->error) : NULL;
    sv_op_set_status(op, status_of_result(r));
    if (ended && f->verb != SV_VERB_PLAN) { /* a plan changes nothing: not a transaction */
        sv_metrics_transaction(s->metrics, sv_verb_name(f->verb), sv_op_state_name(r->state));
        if (r->state == SV_OP_ROLLED_BACK)
            sv_metrics_rollback(s->metrics);
    }
    sv_op_update(s->ops, op, r->state, result, wall_now()); /* wakes the waiters: they answer */
    json_decref(result);
    if (f->archive)
        keep(s, op);
    if (ended) {
        json_t *data = json_pack("{s:s,s:s,s:s,s:i}", "operation", sv_op_id(op), "verb", sv_verb_name(f->verb),
                                 "state", sv_op_state_name(r->state), "exit_code", r->exit_code);
        sv_events_add(s->events, "operation.finished", f->vm, data, wall_now());
        json_decref(data);
        slog(s, SV_LOG_INFO, "operation %s (%s on %s) ended %s", f->id, sv_verb_name(f->verb), f->vm,
             sv_op_state_name(r->state));
        free(f);
    }
}

static void on_vm_state(void *arg, const char *vm, enum sv_vm_state st)
{
    struct sv_server *s = arg;
    slog(s, SV_LOG_INFO, "vm %s: %s", vm, sv_vm_state_name(st));
    if (s->vm_state_fn)
        s->vm_state_fn(s->vm_state_arg);
}

static void on_event(void *arg, const char *vm, const char *type, const json_t *data)
{
    struct sv_server *s = arg;
    sv_events_add(s->events, type, vm, data, wall_now());
}

static void on_round_trip(void *arg, const char *vm, double seconds)
{
    struct sv_server *s = arg;
    sv_metrics_qmp_round_trip(s->metrics, seconds);
}

static void on_reconnect(void *arg, const char *vm)
{
    struct sv_server *s = arg;
    sv_metrics_reconnect(s->metrics);
}

void sv_server_on_vm_state(struct sv_server *s, void (*fn)(void *arg), void *arg)
{
    s->vm_state_fn = fn;
    s->vm_state_arg = arg;
}

static size_t count_of(const json_t *v)
{
    return json_is_array(v) ? json_array_size(v) : json_is_integer(v) ? (size_t)json_integer_value(v) : 0;
}

/* Counts by state, and the pending unplugs, from the backend's entries. */
static void vm_counts(struct sv_server *s, int *connecting, int *connected, int *disconnected, int *pending)
{
    json_t *names = s->b->ops->vm_list(s->b), *n;
    size_t i;
    *connecting = *connected = *disconnected = *pending = 0;
    json_array_foreach(names, i, n) {
        json_t *info = s->b->ops->vm_info(s->b, json_string_value(n), false);
        const char *st = json_string_value(json_object_get(info, "state"));
        if (st && !strcmp(st, "connected"))
            (*connected)++;
        else if (st && !strcmp(st, "disconnected"))
            (*disconnected)++;
        else
            (*connecting)++;
        *pending += (int)count_of(json_object_get(info, "pending"));
        json_decref(info);
    }
    json_decref(names);
}

void sv_server_vm_counts(struct sv_server *s, int *connecting, int *connected, int *disconnected)
{
    int pending;
    vm_counts(s, connecting, connected, disconnected, &pending);
}

/* ---- waiting for operations ---- */

static void pend_unlink_free(struct pend *p)
{
    struct sv_server *s = p->s;
    if (p->prev)
        p->prev->next = p->next;
    else
        s->pends = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->timer)
        event_free(p->timer);
    free(p);
}

static void location_of(const struct sv_op *op, char *buf, size_t len)
{
    snprintf(buf, len, "/v1/operations/%s", sv_op_id(op));
}

/* Answer for op as it is now. A mutating request: 200 + the CLI's JSON when done, the failure's status and
 * JSON when it failed, else 202 + Location + the operation. GET /v1/operations/{id}: 200 once ended, else
 * 202; the body is the operation. */
static void reply_op(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                     const struct sv_op *op, bool is_get)
{
    char loc[128];
    int code = sv_op_status(op);
    bool ended = sv_op_ended(op);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    location_of(op, loc, sizeof(loc));
    evhttp_add_header(h, "Smmuctl-Operation", sv_op_id(op));
    if (is_get) {
        reply_json(s, req, route, t0, ended ? 200 : 202, sv_op_json(op), NULL, NULL);
    } else if (!ended || code == 202 || code == 0) {
        reply_json(s, req, route, t0, 202, sv_op_json(op), loc, NULL);
    } else {
        json_t *opj = sv_op_json(op), *res = json_object_get(opj, "result");
        json_t *body = json_is_null(res) || !res ? json_incref(opj) : json_incref(res);
        json_decref(opj);
        reply_json(s, req, route, t0, code, body, NULL, NULL);
    }
}

static void pend_woken(void *arg, struct sv_op *op)
{
    struct pend *p = arg;
    p->w = NULL; /* ops frees it after this returns */
    reply_op(p->s, p->req, p->route, p->t0, op, p->is_get);
    pend_unlink_free(p);
}

static void pend_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pend *p = arg;
    sv_op_unwait(p->s->ops, p->w);
    p->w = NULL;
    reply_op(p->s, p->req, p->route, p->t0, p->op, p->is_get);
    pend_unlink_free(p);
}

static void respond_op(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                       struct sv_op *op, double wait_s, bool is_get)
{
    struct pend *p;
    struct timeval tv = tv_of(wait_s);
    if (sv_op_ended(op) || wait_s <= 0 || s->stopping) {
        reply_op(s, req, route, t0, op, is_get);
        return;
    }
    p = calloc(1, sizeof(*p));
    if (!p || !(p->timer = evtimer_new(s->base, pend_timeout, p))) {
        free(p);
        reply_op(s, req, route, t0, op, is_get);
        return;
    }
    p->s = s;
    p->req = req;
    snprintf(p->route, sizeof(p->route), "%s", route);
    p->t0 = t0;
    p->op = op;
    p->is_get = is_get;
    p->next = s->pends;
    if (s->pends)
        s->pends->prev = p;
    s->pends = p;
    p->w = sv_op_wait(s->ops, op, pend_woken, p);
    if (!p->w) { /* out of memory (it had not ended) */
        reply_op(s, req, route, t0, op, is_get);
        pend_unlink_free(p);
        return;
    }
    evtimer_add(p->timer, &tv);
}

/* ---- the event stream ---- */

static void stream_unlink_free(struct stream *st)
{
    struct sv_server *s = st->s;
    if (st->sub)
        sv_events_unsubscribe(s->events, st->sub);
    if (st->keepalive)
        event_free(st->keepalive);
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    free(st);
}

/* End the reply (the client sees the stream end and may resume with Last-Event-ID). */
static void stream_end(struct stream *st)
{
    st->conn->stream = NULL;
    evhttp_send_reply_end(st->req);
    stream_unlink_free(st);
}

static void stream_write(struct stream *st, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    struct bufferevent *bev = evhttp_connection_get_bufferevent(st->evcon);
    if (!b)
        return;
    evbuffer_add(b, text, strlen(text));
    evhttp_send_reply_chunk(st->req, b);
    evbuffer_free(b);
    if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > st->s->o.stream_max_buffered) {
        slog(st->s, SV_LOG_WARNING, "event stream: the client lags more than %zu bytes behind; ending it",
             st->s->o.stream_max_buffered);
        stream_end(st);
    }
}

static void stream_on_event(void *arg, const struct sv_event *e)
{
    stream_write(arg, e->sse);
}

static void stream_replay_one(void *arg, const struct sv_event *e)
{
    struct evbuffer *b = arg;
    evbuffer_add(b, e->sse, strlen(e->sse));
}

static void stream_keepalive(evutil_socket_t fd, short what, void *arg)
{
    stream_write(arg, SV_EVENTS_KEEPALIVE);
}

/* The connection went away (client gone, write error or write timeout). */
static void stream_closed(struct stream *st)
{
    /* After a network failure evhttp detaches the request from the connection and leaves it to us; while the
     * connection is being freed with it still attached, evhttp frees it itself. */
    if (!evhttp_request_get_connection(st->req))
        evhttp_send_reply_end(st->req);
    stream_unlink_free(st);
}

static void start_stream(struct sv_server *s, struct evhttp_request *req, struct conn *c, double t0,
                         const char *vm, uint64_t last_id)
{
    struct stream *st = calloc(1, sizeof(*st));
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *first = evbuffer_new();
    struct bufferevent *bev;
    struct timeval ka = tv_of(s->o.keepalive_s), idle = tv_of(s->o.idle_timeout_s);
    if (!st || !first || !(st->keepalive = event_new(s->base, -1, EV_PERSIST, stream_keepalive, st))) {
        free(st);
        if (first)
            evbuffer_free(first);
        reply_error(s, req, "/v1/events", t0, 503, -ENOMEM, "out of memory");
        return;
    }
    st->s = s;
    st->conn = c;
    st->req = req;
    st->evcon = evhttp_request_get_connection(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(req, 200, "OK");
    sv_metrics_api_request(s->metrics, "/v1/events", 200, mono_now() - t0);
    /* Replay and subscribe in one turn of the loop: nothing can be added in between. */
    evbuffer_add(first, ": smmuctl event stream\n\n", 24);
    sv_events_replay(s->events, last_id, vm, wall_now(), stream_replay_one, first);
    evhttp_send_reply_chunk(req, first);
    evbuffer_free(first);
    st->sub = sv_events_subscribe(s->events, vm, stream_on_event, st);
    /* A stream is read by the client, never written: no read timeout, a write timeout for a client that stops
     * reading. */
    bev = evhttp_connection_get_bufferevent(st->evcon);
    if (bev)
        bufferevent_set_timeouts(bev, NULL, &idle);
    c->stream = st;
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    event_add(st->keepalive, &ka);
}

/* ---- request validation (bodies: request.c) ---- */


/* Query parameters: only those the route takes (400 otherwise). */
static int parse_query(struct sv_server *s, const char *query, enum sv_route_id id, double *wait, char *vm,
                       size_t vmlen, struct smmu_error *err)
{
    struct evkeyvalq q;
    struct evkeyval *kv;
    int r = 0;
    const char *known = id == SV_R_EVENTS ? "vm"
                        : (id == SV_R_OPERATION || id == SV_R_ATTACH || id == SV_R_DETACH || id == SV_R_DEVICES ||
                           id == SV_R_PLAN) ? "wait" : NULL;
    if (!query || !*query)
        return 0;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(query, &q) < 0)
        return sv_request_bad(err, 400, "malformed query string");
    TAILQ_FOREACH(kv, &q, next) {
        if (!known || strcmp(kv->key, known)) {
            r = sv_request_bad(err, 400,
                               "unknown query parameter '%.100s' (known: %s)", kv->key, known ? known : "none");
            break;
        }
        if (!strcmp(kv->key, "wait")) {
            char *end;
            double w;
            errno = 0;
            w = strtod(kv->value, &end);
            if (errno || end == kv->value || *end || !isfinite(w) || w < 0 || w > s->o.wait_max_s) {
                r = sv_request_bad(err, 400,
                                   "wait=%.100s: not a number of seconds from 0 to %g", kv->value, s->o.wait_max_s);
                break;
            }
            *wait = w;
        } else if (!strcmp(kv->key, "vm")) {
            if (!*kv->value || strlen(kv->value) >= vmlen) {
                r = sv_request_bad(err, 400, "vm=: a VM name of 1 to %zu bytes", vmlen - 1);
                break;
            }
            snprintf(vm, vmlen, "%s", kv->value);
        }
    }
    evhttp_clear_headers(&q);
    return r;
}

/* ---- routes ---- */

static void do_metrics(struct sv_server *s, struct evhttp_request *req, const char *route, double t0)
{
    int c1, c2, c3, pending;
    char *text;
    struct evbuffer *buf;
    vm_counts(s, &c1, &c2, &c3, &pending);
    sv_metrics_set_vms(s->metrics, c1, c2, c3);
    sv_metrics_set_unplugs_pending(s->metrics, pending);
    /* this request is counted before rendering, so that it shows in its own reply */
    sv_metrics_api_request(s->metrics, route, 200, mono_now() - t0);
    text = sv_metrics_render(s->metrics);
    buf = evbuffer_new();
    if (!text || !buf) {
        free(text);
        if (buf)
            evbuffer_free(buf);
        evhttp_send_reply(req, 500, reason_of(500), NULL);
        return;
    }
    evbuffer_add(buf, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
    free(text);
}

static void do_vms(struct sv_server *s, struct evhttp_request *req, const char *route, double t0)
{
    json_t *names = s->b->ops->vm_list(s->b), *n, *arr = json_array();
    size_t i;
    json_array_foreach(names, i, n) {
        json_t *info = s->b->ops->vm_info(s->b, json_string_value(n), false);
        if (info)
            json_array_append_new(arr, info);
    }
    json_decref(names);
    reply_json(s, req, route, t0, 200, json_pack("{s:o}", "vms", arr), NULL, NULL);
}

/* Idempotency-Key on a request that is no operation (the registration PUT, idempotent by itself): the key is
 * kept so that it cannot name another request later. 0 go on (remember with idem_remember), else the status
 * already answered. */
static int idem_gate(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                     const char *key, uint64_t fp)
{
    const char *first = NULL;
    int r = sv_idem_check(s->idem, key, fp, wall_now(), &first);
    if (r == -EINVAL) {
        reply_error(s, req, route, t0, 400, -EINVAL, "Idempotency-Key: 1 to %d visible ASCII characters",
                    SV_IDEM_KEY_MAX);
        return 400;
    }
    if (r == -EEXIST) {
        reply_error(s, req, route, t0, 422, -EEXIST,
                    "Idempotency-Key '%.255s' was used for another request (method, path or body differ)", key);
        return 422;
    }
    return 0;
}

static void do_vm_put(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                      const char *vm, const json_t *body, const char *key)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    bool created = false;
    const char *qmp = json_string_value(json_object_get(body, "qmp"));
    bool fd_pass = json_is_true(json_object_get(body, "fd_pass"));
    uint64_t fp = key ? sv_idem_fingerprint("PUT", evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), body) : 0;
    int r;
    json_t *info;
    if (key && idem_gate(s, req, route, t0, key, fp))
        return;
    r = s->b->ops->vm_register(s->b, vm, qmp, fd_pass, &created, &e);
    if (r == 0 && key && sv_idem_put(s->idem, key, fp, "registration", wall_now(), &e) < 0)
        slog(s, SV_LOG_WARNING, "Idempotency-Key not kept: %s", e.message);
    if (r < 0) {
        if (r == -EEXIST && !e.message[0])
            smmu_error_set(&e, r, "VM '%s' is registered with another body", vm);
        reply_smmu_error(s, req, route, t0, status_of_errno(r), &e);
        return;
    }
    info = s->b->ops->vm_info(s->b, vm, false);
    reply_json(s, req, route, t0, created ? 201 : 200, info ? info : json_pack("{s:s}", "name", vm), NULL, NULL);
}

static void do_vm_delete(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                         const char *vm)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = s->b->ops->vm_unregister(s->b, vm, &e);
    if (r < 0) {
        if (!e.message[0])
            smmu_error_set(&e, r, r == -ENOENT ? "no VM '%s'" : "VM '%s' is busy", vm);
        reply_smmu_error(s, req, route, t0, status_of_errno(r), &e);
        return;
    }
    reply_json(s, req, route, t0, 200, json_pack("{s:b,s:s}", "ok", 1, "vm", vm), NULL, NULL);
}

static enum sv_verb verb_of(enum sv_route_id id)
{
    switch (id) {
    case SV_R_PLAN: return SV_VERB_PLAN;
    case SV_R_DETACH: return SV_VERB_DETACH;
    case SV_R_DEVICES: return SV_VERB_DEVICES;
    default: return SV_VERB_ATTACH;
    }
}

/* Answer with a kept record (an operation of a previous daemon, or out of memory's 1 h). */
static void reply_archived(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                           json_t *rec, bool is_get)
{
    json_t *op = json_object_get(rec, "operation"), *res = json_object_get(op, "result");
    int code = (int)json_integer_value(json_object_get(rec, "status"));
    const char *id = json_string_value(json_object_get(op, "id"));
    char loc[128];
    evhttp_add_header(evhttp_request_get_output_headers(req), "Smmuctl-Operation", id ? id : "");
    snprintf(loc, sizeof(loc), "/v1/operations/%s", id ? id : "");
    if (is_get)
        reply_json(s, req, route, t0, code == 202 ? 202 : 200, json_incref(op), NULL, NULL);
    else if (code == 202 || code == 0)
        reply_json(s, req, route, t0, 202, json_incref(op), loc, NULL);
    else
        reply_json(s, req, route, t0, code, json_incref(res && !json_is_null(res) ? res : op), NULL, NULL);
    json_decref(rec);
}

static void do_operation(struct sv_server *s, struct evhttp_request *req, const char *route, double t0,
                         const struct sv_match *m, const json_t *body, double wait_s, const char *key)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    enum sv_verb verb = verb_of(m->route->id);
    uint64_t fp = 0;
    struct sv_op *op;
    struct inflight *f;
    json_t *info;
    int r;
    if (key) {
        const char *first = NULL;
        fp = sv_idem_fingerprint(method_of(req), evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), body);
        if (idem_gate(s, req, route, t0, key, fp))
            return;
        if (sv_idem_check(s->idem, key, fp, wall_now(), &first) == 1) {
            struct sv_op *o = sv_ops_find(s->ops, first);
            json_t *rec;
            if (o) {
                respond_op(s, req, route, t0, o, wait_s, false);
                return;
            }
            if ((rec = sv_archive_read(s->archive_dir, first, s->prefix))) {
                reply_archived(s, req, route, t0, rec, false);
                return;
            }
            reply_error(s, req, route, t0, 409, -EALREADY,
                        "Idempotency-Key '%.255s': its operation %s is no longer known", key, first);
            return;
        }
    }
    if (s->stopping) {
        reply_error(s, req, route, t0, 503, -ESHUTDOWN, "the daemon is stopping; nothing was started");
        return;
    }
    info = s->b->ops->vm_info(s->b, m->vm, false);
    if (!info) {
        reply_error(s, req, route, t0, 404, -ENOENT, "no VM '%s' (register it with PUT /v1/vms/%s)", m->vm, m->vm);
        return;
    }
    json_decref(info);
    if (!(op = sv_ops_create(s->ops, m->vm, verb, wall_now()))) {
        reply_error(s, req, route, t0, 429, -EAGAIN, "too many operations kept (%d); retry later", SV_OPS_MAX);
        return;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        sv_op_set_status(op, 503);
        sv_op_update(s->ops, op, SV_OP_FAILED, NULL, wall_now());
        reply_error(s, req, route, t0, 503, -ENOMEM, "out of memory");
        return;
    }
    f->handle = ++s->next_handle;
    snprintf(f->id, sizeof(f->id), "%s", sv_op_id(op));
    snprintf(f->vm, sizeof(f->vm), "%s", m->vm);
    f->verb = verb;
    f->archive = key != NULL;
    f->next = s->inflight;
    s->inflight = f;
    r = s->b->ops->op_submit(s->b, m->vm, verb, body, f->handle, on_op_done, s, &e);
    if (r < 0) {
        int code = status_of_errno(r);
        json_t *eb;
        inflight_take(s, f->handle, true);
        free(f);
        if (!e.message[0])
            smmu_error_set(&e, r, "%s on %s: %s", sv_verb_name(verb), m->vm, strerror(-r));
        eb = sv_error_body(&e);
        sv_op_set_status(op, code);
        sv_op_update(s->ops, op, SV_OP_FAILED, eb, wall_now());
        json_decref(eb);
        reply_smmu_error(s, req, route, t0, code, &e);
        return;
    }
    if (key) {
        keep(s, op); /* before the key: a key never names an operation nobody kept */
        if (sv_idem_put(s->idem, key, fp, sv_op_id(op), wall_now(), &e) < 0)
            slog(s, SV_LOG_WARNING, "Idempotency-Key not kept: %s", e.message);
    }
    respond_op(s, req, route, t0, op, wait_s, false);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct sv_server *s = arg;
    double t0 = mono_now(), wait_s = s->o.wait_default_s;
    const char *method = method_of(req), *uri = evhttp_request_get_uri(req);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evbuffer *body_buf = evhttp_request_get_input_buffer(req);
    struct smmu_error e = SMMU_ERROR_INIT;
    struct sv_match m;
    char route[64], vmq[SV_PARAM_MAX] = "";
    json_t *body = NULL;
    struct conn *conn;
    int code;
    bool mutating;

    if (!uri || !path) {
        reply_error(s, req, "-", t0, 400, -EINVAL, "malformed request line");
        return;
    }
    if (!(conn = conn_of(s, req))) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_error(s, req, "-", t0, 503, -EMFILE, "too many connections (%d); retry later", s->o.max_connections);
        return;
    }
    code = sv_route_match(method, path, &m);
    snprintf(route, sizeof(route), "%s", m.route ? m.route->pattern : "-");
    mutating = strcmp(method, "GET") && strcmp(method, "HEAD");
    if (mutating) {
        long uid, pid;
        peer_of(req, &uid, &pid);
        slog(s, SV_LOG_NOTICE, "%s %.300s from uid %ld pid %ld", method, path, uid, pid);
    }
    if (code == 404) {
        reply_error(s, req, route, t0, 404, -ENOENT, "no route %s %.300s", method, path);
        return;
    }
    if (code == 405) {
        struct smmu_error e405 = SMMU_ERROR_INIT;
        smmu_error_set(&e405, -EINVAL, "%s is not allowed on %.300s (allowed: %s)", method, path, m.allow);
        reply_json(s, req, route, t0, 405, sv_error_body(&e405), NULL, m.allow);
        return;
    }
    if (code != 200) {
        reply_error(s, req, route, t0, 400, -EINVAL, "a path parameter is longer than %d bytes", SV_PARAM_MAX - 1);
        return;
    }
    if ((code = parse_query(s, evhttp_uri_get_query(u), m.route->id, &wait_s, vmq, sizeof(vmq), &e))) {
        reply_smmu_error(s, req, route, t0, code, &e);
        return;
    }
    if (m.route->members || evbuffer_get_length(body_buf)) {
        size_t len = evbuffer_get_length(body_buf);
        const char *data = len ? (const char *)evbuffer_pullup(body_buf, -1) : "";
        if (sv_body_parse(data, len, m.route->members, &body, &e) < 0) {
            reply_smmu_error(s, req, route, t0, 400, &e);
            return;
        }
        if ((code = sv_request_check_body(m.route->id, body, &e))) {
            json_decref(body);
            reply_smmu_error(s, req, route, t0, code, &e);
            return;
        }
    }
    switch (m.route->id) {
    case SV_R_HEALTHZ:
        reply_json(s, req, route, t0, 200, json_pack("{s:b}", "ok", 1), NULL, NULL);
        break;
    case SV_R_READYZ:
        if (s->stopping)
            reply_error(s, req, route, t0, 503, -ESHUTDOWN, "not ready: the daemon is stopping");
        else if (s->b->ops->ready(s->b))
            reply_json(s, req, route, t0, 200, json_pack("{s:b,s:b}", "ok", 1, "ready", 1), NULL, NULL);
        else
            reply_error(s, req, route, t0, 503, -EAGAIN,
                        "not ready: some VMs are neither reconciled nor found unreachable yet");
        break;
    case SV_R_METRICS:
        do_metrics(s, req, route, t0);
        break;
    case SV_R_EVENTS: {
        const char *lei = evhttp_find_header(in, "Last-Event-ID");
        uint64_t last = 0;
        if (lei) {
            int ok = 0;
            last = sv_events_parse_id(lei, &ok);
            if (!ok) {
                reply_error(s, req, route, t0, 400, -EINVAL, "Last-Event-ID: '%.100s' is not an event id", lei);
                break;
            }
        }
        start_stream(s, req, conn, t0, vmq[0] ? vmq : NULL, last);
        break;
    }
    case SV_R_VMS:
        do_vms(s, req, route, t0);
        break;
    case SV_R_VM_PUT:
        if (s->stopping)
            reply_error(s, req, route, t0, 503, -ESHUTDOWN, "the daemon is stopping");
        else
            do_vm_put(s, req, route, t0, m.vm, body, evhttp_find_header(in, "Idempotency-Key"));
        break;
    case SV_R_VM_GET: {
        json_t *info = s->b->ops->vm_info(s->b, m.vm, true);
        if (info)
            reply_json(s, req, route, t0, 200, info, NULL, NULL);
        else
            reply_error(s, req, route, t0, 404, -ENOENT, "no VM '%s'", m.vm);
        break;
    }
    case SV_R_VM_DELETE:
        do_vm_delete(s, req, route, t0, m.vm);
        break;
    case SV_R_TOPOLOGY: {
        json_t *t = s->b->ops->vm_topology(s->b, m.vm, &e);
        if (t)
            reply_json(s, req, route, t0, 200, t, NULL, NULL);
        else
            reply_smmu_error(s, req, route, t0, e.code ? status_of_errno(e.code) : 404, &e);
        break;
    }
    case SV_R_PLAN:
    case SV_R_ATTACH:
    case SV_R_DETACH:
    case SV_R_DEVICES: {
        const char *key = evhttp_find_header(in, "Idempotency-Key");
        do_operation(s, req, route, t0, &m, body, wait_s, key);
        break;
    }
    case SV_R_OPERATION: {
        struct sv_op *op = sv_ops_find(s->ops, m.id);
        json_t *rec;
        if (!evhttp_uri_get_query(u) || !strstr(evhttp_uri_get_query(u), "wait"))
            wait_s = 0; /* GET answers at once unless asked to wait */
        if (op)
            respond_op(s, req, route, t0, op, wait_s, true);
        else if ((rec = sv_archive_read(s->archive_dir, m.id, s->prefix)))
            reply_archived(s, req, route, t0, rec, true);
        else
            reply_error(s, req, route, t0, 404, -ENOENT, "no operation '%s' (operations are kept 1 h after they end)",
                        m.id);
        break;
    }
    }
    json_decref(body);
}

/* ---- life cycle ---- */

int sv_server_new(struct sv_server **out, struct event_base *base, struct sv_backend *b,
                  const struct sv_server_opts *o, struct smmu_error *err)
{
    struct sv_server *s;
    char path[4096];
    int fd = -1, r;
    struct timeval idle;
    *out = NULL;
    if (!o->listen_path || !*o->listen_path)
        return smmu_error_set(err, -EINVAL, "--listen unix:PATH is required");
    if (!o->state_dir || !*o->state_dir)
        return smmu_error_set(err, -EINVAL, "a state directory is required");
    if (!(s = calloc(1, sizeof(*s))))
        return smmu_error_set(err, -ENOMEM, "out of memory");
    s->base = base;
    s->b = b;
    s->o = *o;
    s->listen_path = strdup(o->listen_path);
    s->group = o->group ? strdup(o->group) : NULL;
    s->state_dir = strdup(o->state_dir);
    s->o.listen_path = s->listen_path;
    s->o.group = s->group;
    s->o.state_dir = s->state_dir;
    if (s->o.max_connections < 1)
        s->o.max_connections = 1;
    snprintf(s->prefix, sizeof(s->prefix), "%llx", (unsigned long long)time(NULL));
    snprintf(path, sizeof(path), "%s/operations", s->state_dir);
    if (mkdir(s->state_dir, 0700) < 0 && errno != EEXIST) {
        r = smmu_error_set(err, -errno, "state directory %s: %s", s->state_dir, strerror(errno));
        goto fail;
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        r = smmu_error_set(err, -errno, "%s: %s", path, strerror(errno));
        goto fail;
    }
    s->archive_dir = strdup(path);
    sv_archive_prune(s->archive_dir);
    snprintf(path, sizeof(path), "%s/idempotency.json", s->state_dir);
    if ((r = sv_idem_open(&s->idem, path, SV_IDEM_TTL_S, wall_now(), err)) < 0)
        goto fail;
    s->ops = sv_ops_new(SV_OPS_MAX, SV_OPS_KEEP_S, s->prefix);
    s->events = sv_events_new(o->events_ring ? o->events_ring : SV_EVENTS_RING);
    s->metrics = sv_metrics_new(SMMUCTL_VERSION);
    s->http = evhttp_new(base);
    if (!s->ops || !s->events || !s->metrics || !s->http || !s->listen_path || !s->state_dir || !s->archive_dir) {
        r = smmu_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)s->o.max_body);
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)s->o.max_headers);
    idle = tv_of(s->o.idle_timeout_s);
    evhttp_set_timeout_tv(s->http, &idle);
    evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_gencb(s->http, on_request, s);
    if ((r = sv_listen_unix(s->listen_path, s->group, &fd, err)) < 0)
        goto fail;
    s->listener = evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (!s->listener) {
        close(fd);
        unlink(s->listen_path);
        r = smmu_error_set(err, -ENOMEM, "cannot listen on %s", s->listen_path);
        goto fail;
    }
    s->bound = evhttp_bind_listener(s->http, s->listener);
    if (!s->bound) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
        unlink(s->listen_path);
        r = smmu_error_set(err, -ENOMEM, "cannot serve on %s", s->listen_path);
        goto fail;
    }
    /* only a server that serves takes the backend's events (a refused one leaves them alone) */
    b->events.vm_state = on_vm_state;
    b->events.event = on_event;
    b->events.qmp_round_trip = on_round_trip;
    b->events.reconnect = on_reconnect;
    b->events.arg = s;
    s->accepting = true;
    *out = s;
    return 0;
fail:
    sv_server_free(s);
    return r;
}

static void stop_accepting(struct sv_server *s)
{
    if (!s->bound)
        return;
    s->accepting = false;
    evhttp_del_accept_socket(s->http, s->bound); /* frees the listener and closes its socket */
    s->bound = NULL;
    s->listener = NULL;
    unlink(s->listen_path);
}

static void flush_done(evutil_socket_t fd, short what, void *arg)
{
    struct sv_server *s = arg;
    void (*done)(void *) = s->shutdown_done;
    s->shutdown_done = NULL;
    if (done)
        done(s->shutdown_arg);
}

static void backend_quiet(void *arg)
{
    struct sv_server *s = arg;
    struct timeval tv = tv_of(0.05);
    while (s->pends) { /* operations still running: answered with their state now */
        struct pend *p = s->pends;
        sv_op_unwait(s->ops, p->w);
        p->w = NULL;
        reply_op(s, p->req, p->route, p->t0, p->op, p->is_get);
        pend_unlink_free(p);
    }
    while (s->streams)
        stream_end(s->streams);
    /* let the last replies reach the socket buffers before the loop stops */
    if (!s->flush_timer)
        s->flush_timer = evtimer_new(s->base, flush_done, s);
    if (s->flush_timer)
        evtimer_add(s->flush_timer, &tv);
    else
        flush_done(-1, 0, s);
}

void sv_server_shutdown(struct sv_server *s, void (*done)(void *arg), void *arg)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->shutdown_done = done;
    s->shutdown_arg = arg;
    stop_accepting(s);
    slog(s, SV_LOG_NOTICE, "stopping: no new connections; in-flight work gets up to %d ms",
         s->o.shutdown_deadline_ms);
    s->b->ops->shutdown(s->b, s->o.shutdown_deadline_ms, backend_quiet, s);
}

void sv_server_free(struct sv_server *s)
{
    if (!s)
        return;
    while (s->pends) {
        struct pend *p = s->pends;
        sv_op_unwait(s->ops, p->w);
        pend_unlink_free(p); /* evhttp_free frees the request */
    }
    while (s->streams) {
        struct stream *st = s->streams;
        st->conn->stream = NULL;
        stream_unlink_free(st); /* evhttp_free frees the request */
    }
    if (s->bound)
        stop_accepting(s);
    else if (s->listener)
        evconnlistener_free(s->listener);
    s->listener = NULL;
    if (s->http)
        evhttp_free(s->http); /* each registered connection's close callback frees its conn */
    while (s->conns)
        conn_unlink_free(s->conns);
    if (s->flush_timer)
        event_free(s->flush_timer);
    while (s->inflight) {
        struct inflight *f = s->inflight;
        s->inflight = f->next;
        free(f);
    }
    if (s->b && s->b->events.arg == s)
        memset(&s->b->events, 0, sizeof(s->b->events));
    sv_ops_free(s->ops);
    sv_idem_free(s->idem);
    sv_events_free(s->events);
    sv_metrics_free(s->metrics);
    free(s->listen_path);
    free(s->group);
    free(s->state_dir);
    free(s->archive_dir);
    free(s);
}
