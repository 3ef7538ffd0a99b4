/* client.c — asynchronous QMP client: connection state machine, id routing, events, timeouts, fd passing.
 *
 * The socket is driven directly with libevent events (no bufferevent) because fds must travel with the
 * bytes of their own command (sendmsg + SCM_RIGHTS on that command's first chunk). Write interest is armed
 * only while data is queued. Reentrancy: callbacks may issue calls, close or free the client; `busy` pins
 * the object while dispatching and a free requested meanwhile is finished when the last frame unwinds.
 */
#define _GNU_SOURCE
#include "smmuctl/qmp.h"
#include "smmuctl/qmp_decoder.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMP_MAX_FDS 16

struct qmp_out {
    struct qmp_out *next;
    char *data;
    size_t len, off;
    int fds[QMP_MAX_FDS];
    size_t nfds;
};

struct qmp_pending {
    struct qmp_pending *next, *prev;
    qmp_client *c;
    unsigned long seq;        /* the numeric id: calls made later have larger ones */
    char id[24];
    char cmd[64];
    qmp_reply_cb cb;
    void *payload;
    struct event *timer;
};

struct qmp_sub {
    struct qmp_sub *next;
    qmp_client *c;
    char *event, *device;
    qmp_event_cb cb;
    void *payload;
    bool dead;
};

struct qmp_client {
    struct event_base *base;
    struct qmp_client_opts opts;
    enum qmp_state state;
    int fd;
    bool is_unix;
    char addr[300];
    struct event *ev_read, *ev_write, *ev_connect_timer, *ev_deferred;
    qmp_decoder *dec;
    struct qmp_out *out_head, *out_tail;
    struct qmp_pending *pending;
    size_t n_pending;
    struct qmp_sub *subs;
    qmp_state_cb state_cb;
    void *state_payload;
    struct qmp_greeting greeting;
    unsigned long next_id;
    int busy;                 /* dispatch depth */
    bool dead;                /* free requested while busy */
    unsigned conn_gen;        /* bumped whenever a connection ends: bytes of an older one are never decoded */
    unsigned read_gen;        /* conn_gen of the connection whose chunk is being decoded */
    struct addrinfo *ai_head, *ai_next; /* tcp: the addresses still to try */
    int deferred_err;         /* failure to report from the deferred event */
    struct smmu_error deferred_e;
};

/* ------------------------------------------------------------------------------------------------ */

static void client_log(qmp_client *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void client_log(qmp_client *c, int level, const char *fmt, ...)
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

static void client_record(qmp_client *c, const char *prefix, const char *data, size_t len)
{
    if (!c->opts.record)
        return;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    fprintf(c->opts.record, "%s%.*s\n", prefix, (int)len, data);
    fflush(c->opts.record);
}

void qmp_client_record_comment(qmp_client *c, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    if (!c->opts.record)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    for (char *line = buf, *nl; line; line = nl) {
        nl = strchr(line, '\n');
        if (nl)
            *nl++ = 0;
        fprintf(c->opts.record, "# %s\n", line);
    }
    fflush(c->opts.record);
}

static void client_hold(qmp_client *c)
{
    c->busy++;
}

static void client_really_free(qmp_client *c);

/* Returns true if the client is still alive (not freed). */
static bool client_release(qmp_client *c)
{
    if (--c->busy == 0 && c->dead) {
        client_really_free(c);
        return false;
    }
    return !c->dead;
}

/* ---- subscriptions ---- */

static void subs_sweep(qmp_client *c)
{
    if (c->busy)
        return;
    for (struct qmp_sub **pp = &c->subs; *pp;) {
        struct qmp_sub *s = *pp;
        if (s->dead) {
            *pp = s->next;
            free(s->event);
            free(s->device);
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

static void subs_dispatch(qmp_client *c, const char *event, json_t *data, json_t *msg)
{
    const char *device = NULL;
    json_t *dv = data ? json_object_get(data, "device") : NULL;
    if (json_is_string(dv))
        device = json_string_value(dv);
    unsigned gen = c->conn_gen;
    client_hold(c);
    for (struct qmp_sub *s = c->subs; s && !c->dead; s = s->next) {
        if (event && c->conn_gen != gen)
            break; /* a subscriber closed the connection: the others were told; no event after that */
        if (s->dead)
            continue;
        if (event && s->event && strcmp(s->event, event))
            continue;
        if (event && s->device && (!device || strcmp(s->device, device)))
            continue;
        s->cb(c, event, data, msg, s->payload);
    }
    if (client_release(c))
        subs_sweep(c);
}

int qmp_subscribe(qmp_client *c, const char *event, const char *device, qmp_event_cb cb, void *payload,
                  qmp_sub **out)
{
    struct qmp_sub *s = calloc(1, sizeof(*s));
    if (!s || !cb) {
        free(s);
        return s ? -EINVAL : -ENOMEM;
    }
    s->c = c;
    s->cb = cb;
    s->payload = payload;
    if ((event && !(s->event = strdup(event))) || (device && !(s->device = strdup(device)))) {
        free(s->event);
        free(s);
        return -ENOMEM;
    }
    /* append: subscribers are told in subscription order */
    struct qmp_sub **pp = &c->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    if (out)
        *out = s;
    return 0;
}

void qmp_unsubscribe(qmp_sub *s)
{
    if (!s)
        return;
    s->dead = true;
    subs_sweep(s->c);
}

/* ---- pending calls ---- */

static void pending_unlink(qmp_client *c, struct qmp_pending *p)
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
    pending_unlink(c, p);
    client_hold(c);
    if (p->cb)
        p->cb(c, err, ret, e, p->payload);
    free(p);
    client_release(c);
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
static void pending_fail_all(qmp_client *c, int code, const char *why)
{
    unsigned long last = c->next_id;
    client_hold(c);
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
    client_release(c);
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct qmp_pending *p = arg;
    qmp_client *c = p->c;
    struct smmu_error e = SMMU_ERROR_INIT;
    (void)fd; (void)what;
    smmu_error_set(&e, -ETIMEDOUT, "%s: no reply from QEMU at %s within the command timeout", p->cmd, c->addr);
    snprintf(e.step, sizeof(e.step), "%s", p->cmd);
    client_log(c, 2, "%s (id %s): timed out; a late reply will be dropped", p->cmd, p->id);
    pending_finish(c, p, -ETIMEDOUT, NULL, &e);
}

/* ---- connection teardown ---- */

static void out_free_all(qmp_client *c)
{
    while (c->out_head) {
        struct qmp_out *o = c->out_head;
        c->out_head = o->next;
        for (size_t i = 0; i < o->nfds; i++) /* our duplicates: unsent, or sent with a chunk already */
            close(o->fds[i]);
        free(o->data);
        free(o);
    }
    c->out_tail = NULL;
}

static void tcp_forget_addrs(qmp_client *c);

static void conn_release_io(qmp_client *c)
{
    tcp_forget_addrs(c);
    if (c->ev_read) { event_free(c->ev_read); c->ev_read = NULL; }
    if (c->ev_write) { event_free(c->ev_write); c->ev_write = NULL; }
    if (c->ev_connect_timer) { event_free(c->ev_connect_timer); c->ev_connect_timer = NULL; }
    if (c->fd >= 0) { close(c->fd); c->fd = -1; }
    out_free_all(c);
}

/* Tear the connection down with `code`: pending calls fail, subscribers and the state callback are told. */
static void conn_fail(qmp_client *c, int code, const struct smmu_error *why)
{
    enum qmp_state was = c->state;
    if (was == QMP_STATE_CLOSED || was == QMP_STATE_IDLE)
        return;
    c->state = QMP_STATE_CLOSED;
    c->conn_gen++;
    conn_release_io(c);
    client_hold(c);
    qmp_client_record_comment(c, "connection ended: %s", why ? why->message : "closed");
    pending_fail_all(c, code == -EPROTO || code == -EMSGSIZE ? code : -ECONNRESET,
                     why ? why->message : "connection closed");
    if (!c->dead && was == QMP_STATE_READY)
        subs_dispatch(c, NULL, NULL, NULL);
    if (!c->dead && c->state_cb)
        c->state_cb(c, code, why, c->state_payload);
    client_release(c);
}

static void conn_failf(qmp_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void conn_failf(qmp_client *c, int code, const char *fmt, ...)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    e.code = code;
    conn_fail(c, code, &e);
}

/* ---- writing ---- */

static void write_arm(qmp_client *c)
{
    if (c->ev_write && c->out_head && !event_pending(c->ev_write, EV_WRITE, NULL))
        event_add(c->ev_write, NULL);
}

/* Write as much as the socket takes. Returns 0, or a negative errno after failing the connection. */
static int write_flush(qmp_client *c)
{
    while (c->out_head) {
        struct qmp_out *o = c->out_head;
        struct iovec iov = {o->data + o->off, o->len - o->off};
        struct msghdr mh = {0};
        char cbuf[CMSG_SPACE(sizeof(int) * QMP_MAX_FDS)];
        ssize_t n;
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        if (o->nfds && o->off == 0) {
            struct cmsghdr *cm;
            memset(cbuf, 0, sizeof(cbuf));
            mh.msg_control = cbuf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * o->nfds);
            cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * o->nfds);
            memcpy(CMSG_DATA(cm), o->fds, sizeof(int) * o->nfds);
        }
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            conn_failf(c, -ECONNRESET, "writing to QEMU at %s: %s", c->addr, strerror(errno));
            return -ECONNRESET;
        }
        o->off += (size_t)n;
        if (o->off < o->len)
            continue; /* the fds went with the first chunk */
        for (size_t i = 0; i < o->nfds; i++)
            close(o->fds[i]);
        c->out_head = o->next;
        if (!c->out_head)
            c->out_tail = NULL;
        free(o->data);
        free(o);
    }
    write_arm(c);
    return 0;
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    write_flush(arg);
}

/* Queue text (which gets a trailing newline) with fds (dup'ed here). */
static int out_queue(qmp_client *c, const char *text, const int *fds, size_t nfds)
{
    struct qmp_out *o = calloc(1, sizeof(*o));
    size_t len = strlen(text);
    if (!o)
        return -ENOMEM;
    if (nfds > QMP_MAX_FDS) {
        free(o);
        return -E2BIG;
    }
    o->data = malloc(len + 1);
    if (!o->data) {
        free(o);
        return -ENOMEM;
    }
    memcpy(o->data, text, len);
    o->data[len] = '\n';
    o->len = len + 1;
    for (size_t i = 0; i < nfds; i++) {
        o->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (o->fds[i] < 0) {
            int e = -errno;
            while (i-- > 0)
                close(o->fds[i]);
            free(o->data);
            free(o);
            return e;
        }
    }
    o->nfds = nfds;
    if (nfds && c->opts.record)
        fprintf(c->opts.record, "!fds %zu\n", nfds);
    client_record(c, "C: ", text, len);
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    return 0;
}

/* Build and queue one command; the pending entry is created before the bytes can leave. */
static int call_submit(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, int timeout_ms,
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
    if (args)
        json_object_set_new(msg, "arguments", args);
    json_object_set_new(msg, "id", json_string(p->id));
    text = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(msg);
    if (!text) {
        free(p);
        return -ENOMEM;
    }
    r = out_queue(c, text, fds, nfds);
    free(text);
    if (r < 0) {
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
    client_hold(c);
    write_flush(c);
    client_release(c);
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
    return call_submit(c, cmd, args, fds, nfds, timeout_ms, cb, payload);
}

/* ---- reading and dispatch ---- */

static void negotiate_reply(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    (void)ret; (void)payload;
    if (c->state != QMP_STATE_NEGOTIATING)
        return;
    if (err) {
        struct smmu_error e2 = SMMU_ERROR_INIT;
        smmu_error_copy(&e2, e);
        smmu_error_prefix(&e2, "capability negotiation with %s failed", c->addr);
        conn_fail(c, err == -EIO ? -EPROTO : err, &e2);
        return;
    }
    c->state = QMP_STATE_READY;
    if (c->ev_connect_timer) {
        event_free(c->ev_connect_timer);
        c->ev_connect_timer = NULL;
    }
    if (c->state_cb)
        c->state_cb(c, 0, NULL, c->state_payload);
}

static void handle_greeting(qmp_client *c, json_t *msg, const char *raw, size_t raw_len)
{
    json_t *qmp = json_object_get(msg, "QMP");
    json_t *ver, *caps, *args = NULL;
    size_t i;
    json_t *v;
    if (!json_is_object(qmp)) {
        conn_failf(c, -EPROTO, "%s is not a QMP monitor: its first message was %.*s%s", c->addr,
                   (int)(raw_len > 120 ? 120 : raw_len), raw, raw_len > 120 ? "…" : "");
        return;
    }
    ver = json_object_get(json_object_get(qmp, "version"), "qemu");
    c->greeting.major = (int)json_integer_value(json_object_get(ver, "major"));
    c->greeting.minor = (int)json_integer_value(json_object_get(ver, "minor"));
    c->greeting.micro = (int)json_integer_value(json_object_get(ver, "micro"));
    snprintf(c->greeting.package, sizeof(c->greeting.package), "%s",
             json_string_value(json_object_get(json_object_get(qmp, "version"), "package")) ?: "");
    caps = json_object_get(qmp, "capabilities");
    json_array_foreach(caps, i, v)
        if (json_is_string(v) && !strcmp(json_string_value(v), "oob"))
            c->greeting.oob = true;
    qmp_client_record_comment(c, "QEMU version: %d.%d.%d (%s)", c->greeting.major, c->greeting.minor,
                              c->greeting.micro, c->greeting.package);
    c->state = QMP_STATE_NEGOTIATING;
    if (c->opts.negotiate_oob && c->greeting.oob)
        args = json_pack("{s:[s]}", "enable", "oob");
    int r = call_submit(c, "qmp_capabilities", args, NULL, 0, -1, negotiate_reply, NULL);
    if (r < 0)
        conn_failf(c, r, "sending qmp_capabilities to %s: %s", c->addr, strerror(-r));
}

static void handle_reply(qmp_client *c, json_t *msg)
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
            client_log(c, 2, "%s", why);
            pending_fail_all(c, -EPROTO, why);
        } else {
            client_log(c, 1, "dropping a reply without an id");
        }
        return;
    }
    if (!json_is_string(idv) || !(p = pending_find(c, json_string_value(idv)))) {
        char *t = json_dumps(idv, JSON_COMPACT | JSON_ENCODE_ANY);
        client_log(c, 1, "dropping a reply with unknown id %s (late reply to a timed-out call?)", t ? t : "?");
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

static int on_message(json_t *msg, const char *raw, size_t raw_len, void *payload)
{
    qmp_client *c = payload;
    client_record(c, "S: ", raw, raw_len);
    if (c->state == QMP_STATE_GREETING) {
        handle_greeting(c, msg, raw, raw_len);
    } else if (json_is_string(json_object_get(msg, "event"))) {
        subs_dispatch(c, json_string_value(json_object_get(msg, "event")), json_object_get(msg, "data"), msg);
    } else if (json_object_get(msg, "return") || json_object_get(msg, "error")) {
        handle_reply(c, msg);
    } else if (json_object_get(msg, "QMP")) {
        client_log(c, 1, "ignoring a second greeting");
    } else {
        client_log(c, 1, "ignoring a message that is neither reply nor event: %.*s", (int)(raw_len > 200 ? 200 : raw_len),
                   raw);
    }
    /* stop feeding if a callback closed or freed the client, or closed it and connected again (the rest of
     * this chunk belongs to the old connection) */
    return (c->dead || c->state == QMP_STATE_CLOSED || c->fd < 0 || c->conn_gen != c->read_gen) ? 1 : 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    qmp_client *c = arg;
    char buf[65536];
    ssize_t n;
    (void)what;
    client_hold(c);
    c->read_gen = c->conn_gen;
    for (int rounds = 0; rounds < 16 && !c->dead && c->fd == fd && c->conn_gen == c->read_gen; rounds++) {
        n = read(fd, buf, sizeof(buf));
        if (n == 0) {
            if (c->state == QMP_STATE_GREETING)
                conn_failf(c, -ECONNRESET, "%s closed the connection before sending a QMP greeting", c->addr);
            else
                conn_failf(c, -ECONNRESET, "QEMU at %s closed the connection", c->addr);
            break;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                conn_failf(c, -ECONNRESET, "reading from QEMU at %s: %s", c->addr, strerror(errno));
            break;
        }
        struct smmu_error e = SMMU_ERROR_INIT;
        int r = qmp_decoder_feed(c->dec, buf, (size_t)n, on_message, c, &e);
        if (r < 0) {
            smmu_error_prefix(&e, "protocol error from %s", c->addr);
            conn_fail(c, r, &e);
            break;
        }
        if ((size_t)n < sizeof(buf))
            break;
    }
    client_release(c);
}

/* ---- connecting ---- */

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    qmp_client *c = arg;
    (void)fd; (void)what;
    if (c->state == QMP_STATE_CONNECTING)
        conn_failf(c, -ETIMEDOUT, "connecting to %s timed out", c->addr);
    else if (c->state == QMP_STATE_GREETING)
        conn_failf(c, -ETIMEDOUT,
                   "no QMP greeting from %s within %d ms: another client probably holds this monitor (QEMU "
                   "serves one client per QMP socket and keeps later ones waiting silently), or the peer is "
                   "not QEMU", c->addr, c->opts.connect_timeout_ms);
    else if (c->state == QMP_STATE_NEGOTIATING)
        conn_failf(c, -ETIMEDOUT, "no reply to qmp_capabilities from %s within %d ms", c->addr,
                   c->opts.connect_timeout_ms);
}

/* The socket is connected: wait for the greeting. */
static int conn_established(qmp_client *c)
{
    c->state = QMP_STATE_GREETING;
    qmp_decoder_reset(c->dec);
    c->ev_read = event_new(c->base, c->fd, EV_READ | EV_PERSIST, read_cb, c);
    c->ev_write = event_new(c->base, c->fd, EV_WRITE, write_cb, c);
    if (!c->ev_read || !c->ev_write)
        return -ENOMEM;
    event_add(c->ev_read, NULL);
    return 0;
}

static void tcp_forget_addrs(qmp_client *c)
{
    if (c->ai_head)
        freeaddrinfo(c->ai_head);
    c->ai_head = c->ai_next = NULL;
}

static void connect_done_cb(evutil_socket_t fd, short what, void *arg);
static int connect_fail_later(qmp_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Start a non-blocking connect to the next tcp address; when none is left, fail with the last error. */
static int tcp_try_next(qmp_client *c, int last_errno)
{
    while (c->ai_next) {
        struct addrinfo *ai = c->ai_next;
        c->ai_next = ai->ai_next;
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
        c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd < 0) {
            last_errno = errno;
            continue;
        }
        int r = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
        if (r == 0) {
            tcp_forget_addrs(c);
            return conn_established(c) < 0 ? connect_fail_later(c, -ENOMEM, "out of memory") : 0;
        }
        if (errno != EINPROGRESS) {
            last_errno = errno;
            continue;
        }
        c->ev_write = event_new(c->base, c->fd, EV_WRITE, connect_done_cb, c);
        if (!c->ev_write)
            return connect_fail_later(c, -ENOMEM, "out of memory");
        event_add(c->ev_write, NULL);
        return 0;
    }
    tcp_forget_addrs(c);
    return connect_fail_later(c, -last_errno, "cannot connect to QEMU at %s: %s", c->addr, strerror(last_errno));
}

static void connect_done_cb(evutil_socket_t fd, short what, void *arg)
{
    qmp_client *c = arg;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    (void)what;
    if (c->ev_write) {
        event_free(c->ev_write);
        c->ev_write = NULL;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr) {
        if (c->ai_next) { /* another address of the same host may answer */
            tcp_try_next(c, soerr);
            return;
        }
        tcp_forget_addrs(c);
        conn_failf(c, -soerr, "cannot connect to QEMU at %s: %s", c->addr, strerror(soerr));
        return;
    }
    tcp_forget_addrs(c);
    if (conn_established(c) < 0)
        conn_failf(c, -ENOMEM, "out of memory");
}

static void deferred_fail_cb(evutil_socket_t fd, short what, void *arg)
{
    qmp_client *c = arg;
    (void)fd; (void)what;
    conn_fail(c, c->deferred_err, &c->deferred_e);
}

/* Report a failure that happened inside qmp_client_connect from the loop, like every other outcome. */
static int connect_fail_later(qmp_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int connect_fail_later(qmp_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    smmu_error_clear(&c->deferred_e);
    va_start(ap, fmt);
    vsnprintf(c->deferred_e.message, sizeof(c->deferred_e.message), fmt, ap);
    va_end(ap);
    c->deferred_e.code = code;
    c->deferred_err = code;
    if (!c->ev_deferred)
        c->ev_deferred = evtimer_new(c->base, deferred_fail_cb, c);
    struct timeval zero = {0, 0};
    evtimer_add(c->ev_deferred, &zero);
    return 0;
}

static int connect_begin(qmp_client *c, qmp_state_cb cb, void *payload)
{
    if (c->state != QMP_STATE_IDLE && c->state != QMP_STATE_CLOSED)
        return -EISCONN;
    c->state_cb = cb;
    c->state_payload = payload;
    c->state = QMP_STATE_CONNECTING;
    memset(&c->greeting, 0, sizeof(c->greeting));
    struct timeval tv = {c->opts.connect_timeout_ms / 1000, (c->opts.connect_timeout_ms % 1000) * 1000};
    c->ev_connect_timer = evtimer_new(c->base, connect_timeout_cb, c);
    if (!c->ev_connect_timer)
        return -ENOMEM;
    evtimer_add(c->ev_connect_timer, &tv);
    return 0;
}

int qmp_client_connect(qmp_client *c, const char *addr, qmp_state_cb cb, void *payload)
{
    struct qmp_addr a;
    struct smmu_error e = SMMU_ERROR_INIT;
    int r = qmp_addr_parse(addr, &a, &e);
    if (r < 0)
        return r;
    if ((r = connect_begin(c, cb, payload)) < 0)
        return r;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    if (c->opts.record) {
        time_t now = time(NULL);
        char ts[64];
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        qmp_client_record_comment(c, "recorded by smmuctl %s from %s at %s", SMMUCTL_VERSION, addr, ts);
    }
    if (a.kind == QMP_ADDR_UNIX) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        c->is_unix = true;
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", a.path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            return connect_fail_later(c, -errno, "socket: %s", strerror(errno));
        if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            int en = errno;
            if (en == ENOENT)
                return connect_fail_later(c, -ENOENT, "cannot connect to QEMU at %s: no such socket (is the "
                                          "VM running with -qmp unix:%s,server=on?)", addr, a.path);
            if (en == ECONNREFUSED)
                return connect_fail_later(c, -ECONNREFUSED, "cannot connect to QEMU at %s: connection refused "
                                          "(stale socket: QEMU is not running?)", addr);
            return connect_fail_later(c, -en, "cannot connect to QEMU at %s: %s", addr, strerror(en));
        }
        if (conn_established(c) < 0)
            return connect_fail_later(c, -ENOMEM, "out of memory");
        return 0;
    }
    /* tcp: every address getaddrinfo gives, in order (localhost may be ::1 first, QEMU on 127.0.0.1) */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    c->is_unix = false;
    r = getaddrinfo(a.host, a.port, &hints, &res);
    if (r != 0)
        return connect_fail_later(c, -EHOSTUNREACH, "cannot resolve %s: %s", addr, gai_strerror(r));
    c->ai_head = c->ai_next = res;
    return tcp_try_next(c, ECONNREFUSED);
}

int qmp_client_connect_fd(qmp_client *c, int fd, qmp_state_cb cb, void *payload)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int r = connect_begin(c, cb, payload);
    if (r < 0)
        return r;
    snprintf(c->addr, sizeof(c->addr), "fd %d", fd);
    c->fd = fd;
    c->is_unix = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (conn_established(c) < 0)
        return connect_fail_later(c, -ENOMEM, "out of memory");
    return 0;
}

void qmp_client_on_state(qmp_client *c, qmp_state_cb cb, void *payload)
{
    c->state_cb = cb;
    c->state_payload = payload;
}

void qmp_client_close(qmp_client *c)
{
    conn_failf(c, -ECONNRESET, "connection to %s closed by smmuctl", c->addr);
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
    conn_release_io(c);
    if (c->ev_deferred)
        event_free(c->ev_deferred);
    while (c->pending) {
        struct qmp_pending *p = c->pending;
        pending_unlink(c, p);
        free(p);
    }
    c->busy = 0;
    subs_sweep(c);
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
    client_hold(c);
    c->state_cb = NULL; /* the owner is going away: no state callbacks */
    if (c->state != QMP_STATE_IDLE && c->state != QMP_STATE_CLOSED) {
        c->state = QMP_STATE_CLOSED;
        c->conn_gen++;
        conn_release_io(c);
    }
    pending_fail_all(c, -ECANCELED, "cancelled: the QMP client was freed");
    for (struct qmp_sub *s = c->subs; s; s = s->next)
        s->dead = true;
    c->dead = true;
    client_release(c);
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
