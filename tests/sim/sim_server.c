/* sim_server.c — qmp-sim's event loop: per simulated VM the QMP socket (one client at a time, like QEMU's
 * -qmp chardev), the control socket (line-delimited JSON, many clients), fault injection and unplug timers;
 * signals for the whole process. One loop serves any number of VMs (--vms), each as independent as if it
 * were its own QEMU process: a VM's QMP `quit` or control `quit` ends that VM only.
 */
#define _GNU_SOURCE
#include "sim_server.h"
#include "sim_json.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

struct conn {
    struct sim_srv *srv;
    int fd;
    struct event *ev_read, *ev_write;
    struct evbuffer *out;
    struct sim_json_parser *parser;
    bool negotiated, oob, dead, in_feed, close_after_flush;
};

struct ctl {
    struct sim_srv *srv;
    int fd;
    struct event *ev;
    struct evbuffer *in;
    struct ctl *next;
};

struct utimer {
    struct sim_srv *srv;
    char id[SIM_ID_MAX];
    bool guest_error;
    struct event *ev;
    struct utimer *next;
};

struct sim_loop {
    struct event_base *base;
    struct event *ev_term, *ev_int;
    int live; /* VMs not shut down yet; the loop ends at 0 */
};

struct sim_srv { /* one simulated VM */
    struct sim_loop *loop;
    struct event_base *base;
    struct sim *s;
    struct sim_srv_vm opts;
    int qmp_fd, ctl_fd;
    struct event *ev_accept, *ev_ctl_accept, *ev_quit;
    struct conn *client;
    struct ctl *ctls;
    struct utimer *timers;
    bool quit, down;
    const char *quit_reason; /* SHUTDOWN event's reason */
};

/* ---- output ---- */

static void conn_flush(struct conn *c);

static void conn_send(struct conn *c, json_t *msg)
{
    char *txt = sim_json_dumps(msg);
    evbuffer_add(c->out, txt, strlen(txt));
    evbuffer_add(c->out, "\r\n", 2); /* QEMU ends every message with CRLF */
    free(txt);
    conn_flush(c);
}

static void conn_free(struct conn *c)
{
    if (c->ev_read)
        event_free(c->ev_read);
    if (c->ev_write)
        event_free(c->ev_write);
    evbuffer_free(c->out);
    sim_json_parser_free(c->parser);
    close(c->fd);
    free(c);
}

/* Close the QMP client; the next queued connection (if any) is accepted right away, as QEMU does. */
static void conn_close(struct conn *c)
{
    struct sim_srv *srv = c->srv;
    if (c->dead)
        return;
    c->dead = true;
    if (srv->client == c)
        srv->client = NULL;
    sim_drop_pending_fds(srv->s);
    if (!c->in_feed)
        conn_free(c);
    if (srv->ev_accept && !srv->quit)
        event_add(srv->ev_accept, NULL);
}

static void conn_flush(struct conn *c)
{
    while (evbuffer_get_length(c->out)) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(c->ev_write, NULL);
                return;
            }
            conn_close(c);
            return;
        }
    }
    if (c->close_after_flush)
        conn_close(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_flush(arg);
}

static json_t *timestamp(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return json_pack("{s:I,s:I}", "seconds", (json_int_t)tv.tv_sec, "microseconds", (json_int_t)tv.tv_usec);
}

void sim_srv_event(struct sim_srv *srv, const char *name, json_t *data)
{
    struct conn *c = srv->client;
    json_t *ev;
    if (!c || c->dead || !c->negotiated) { /* QEMU only sends events to negotiated monitors */
        json_decref(data);
        return;
    }
    ev = json_pack("{s:o,s:s}", "timestamp", timestamp(), "event", name);
    if (data)
        json_object_set_new(ev, "data", data);
    conn_send(c, ev);
    json_decref(ev);
}

void sim_srv_unplug_now(struct sim_srv *srv, struct sim *s, struct sim_dev *d)
{
    char id[SIM_ID_MAX], path[SIM_PATH_MAX + 32];
    bool virtio = !strcmp(d->driver, "virtio-net-pci");
    snprintf(id, sizeof(id), "%s", d->id);
    snprintf(path, sizeof(path), "%s", d->obj->path);
    sim_cmd_device_gone(s, d);
    sim_dev_remove(s, d);
    if (virtio) {
        char vb[SIM_PATH_MAX + 64];
        snprintf(vb, sizeof(vb), "%s/virtio-backend", path);
        sim_srv_event(srv, "DEVICE_DELETED", json_pack("{s:s}", "path", vb));
    }
    if (id[0])
        sim_srv_event(srv, "DEVICE_DELETED", json_pack("{s:s,s:s}", "device", id, "path", path));
    else
        sim_srv_event(srv, "DEVICE_DELETED", json_pack("{s:s}", "path", path));
}

/* The guest answers a pending unplug: it releases the device (DEVICE_DELETED) or refuses it. */
static void sim_srv_guest_answers(struct sim_srv *srv, struct sim_dev *d, bool guest_error)
{
    if (!d || !d->unplug_pending)
        return;
    if (guest_error) {
        d->unplug_pending = false;
        sim_srv_event(srv, "DEVICE_UNPLUG_GUEST_ERROR", json_pack("{s:s,s:s}", "device", d->id, "path", d->obj->path));
    } else {
        sim_srv_unplug_now(srv, srv->s, d);
    }
}

static void on_utimer(evutil_socket_t fd, short what, void *arg)
{
    struct utimer *t = arg, **pp;
    struct sim_srv *srv = t->srv;
    (void)fd;
    (void)what;
    sim_srv_guest_answers(srv, sim_dev_by_id(srv->s, t->id), t->guest_error);
    for (pp = &srv->timers; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    event_free(t->ev);
    free(t);
}

void sim_srv_unplug_later(struct sim_srv *srv, const char *id, int delay_ms, bool guest_error)
{
    struct utimer *t = calloc(1, sizeof(*t));
    struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };
    t->srv = srv;
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->guest_error = guest_error;
    t->ev = evtimer_new(srv->base, on_utimer, t);
    t->next = srv->timers;
    srv->timers = t;
    evtimer_add(t->ev, &tv);
}

/* The VM shuts down once the current callbacks are done (its reply flushed): see srv_shutdown. */
void sim_srv_request_quit(struct sim_srv *srv)
{
    if (!srv->quit_reason)
        srv->quit_reason = "host-qmp-quit";
    if (srv->quit || srv->down)
        return;
    srv->quit = true;
    if (srv->ev_accept)
        event_del(srv->ev_accept);
    event_active(srv->ev_quit, 0, 0);
}

/* ---- faults ---- */

static bool fault_matches(const struct sim_fault *f, long n, const char *cmd, json_t *args)
{
    if (f->remaining <= 0)
        return false;
    if (f->nth && f->nth != n)
        return false;
    if (f->command[0] && strcmp(f->command, cmd))
        return false;
    if (f->arg_key[0]) {
        const char *v = json_string_value(json_object_get(args, f->arg_key));
        if (!v || strcmp(v, f->arg_val))
            return false;
    }
    return true;
}

static struct sim_fault *fault_find(struct sim *s, long n, const char *cmd, json_t *args)
{
    for (struct sim_fault *f = s->faults; f; f = f->next)
        if (fault_matches(f, n, cmd, args)) {
            f->remaining--;
            return f;
        }
    return NULL;
}

/* ---- QMP request handling (monitor/qmp.c + qapi/qmp-dispatch.c) ---- */

static void reply(struct conn *c, json_t *id, struct sim_result *r)
{
    json_t *m;
    if (r->ret) {
        m = json_pack("{s:O}", "return", r->ret);
        if (id)
            json_object_set(m, "id", id);
    } else {
        m = json_object();
        if (id)
            json_object_set(m, "id", id);
        json_t *e = json_object();
        json_object_set_new(e, "class", json_string(r->klass));
        /* a lexical error's desc quotes raw input bytes (maybe not UTF-8): the serialiser maps them to U+FFFD */
        json_object_set_new(e, "desc", json_stringn_nocheck(r->desc, strlen(r->desc)));
        json_object_set_new(m, "error", e);
    }
    conn_send(c, m);
    json_decref(m);
}

/* qmp_capabilities' arguments: {"enable": ["oob"]} at most. */
static bool caps_args_ok(json_t *args, struct sim_result *r)
{
    json_t *en = args ? json_object_get(args, "enable") : NULL, *e, *av;
    const char *ak;
    size_t i;
    if (args)
        json_object_foreach(args, ak, av)
            if (strcmp(ak, "enable")) {
                SIM_ERR(r, "GenericError", "Parameter '%s' is unexpected", ak);
                return false;
            }
    if (en && !json_is_array(en)) {
        SIM_ERR(r, "GenericError", "Invalid parameter type for 'enable', expected: array");
        return false;
    }
    json_array_foreach(en, i, e)
        if (!json_is_string(e) || strcmp(json_string_value(e), "oob")) {
            if (json_is_string(e)) /* sic: QEMU 11 names no member here */
                SIM_ERR(r, "GenericError", "Parameter 'null' does not accept value '%s'", json_string_value(e));
            else
                SIM_ERR(r, "GenericError", "Invalid parameter type for 'enable[%zu]', expected: string", i);
            return false;
        }
    return true;
}

static void handle(struct conn *c, json_t *req, const char *perr)
{
    struct sim_srv *srv = c->srv;
    struct sim *s = srv->s;
    struct sim_result r;
    const char *k, *exec_key = NULL, *cmd;
    json_t *v, *id = NULL, *args;
    struct sim_fault *f;
    bool oob;

    memset(&r, 0, sizeof(r));
    if (perr) {
        SIM_ERR(&r, "GenericError", "%s", perr);
        reply(c, NULL, &r);
        return;
    }
    if (!json_is_object(req)) {
        SIM_ERR(&r, "GenericError", "QMP input must be a JSON object");
        reply(c, NULL, &r);
        return;
    }
    id = json_object_get(req, "id");
    json_object_foreach(req, k, v) {
        if (!strcmp(k, "execute") || (!strcmp(k, "exec-oob") && c->oob)) {
            if (!json_is_string(v)) {
                SIM_ERR(&r, "GenericError", "QMP input member '%s' must be a string", k);
                goto error;
            }
            if (exec_key) {
                SIM_ERR(&r, "GenericError", "QMP input member '%s' clashes with '%s'", k, exec_key);
                goto error;
            }
            exec_key = k;
        } else if (!strcmp(k, "arguments")) {
            if (!json_is_object(v)) {
                SIM_ERR(&r, "GenericError", "QMP input member 'arguments' must be an object");
                goto error;
            }
        } else if (strcmp(k, "id")) {
            SIM_ERR(&r, "GenericError", "QMP input member '%s' is unexpected", k);
            goto error;
        }
    }
    if (!exec_key) {
        SIM_ERR(&r, "GenericError", "QMP input lacks member 'execute'");
        goto error;
    }
    cmd = json_string_value(json_object_get(req, exec_key));
    oob = !strcmp(exec_key, "exec-oob");
    args = json_object_get(req, "arguments");
    s->command_count++;

    f = fault_find(s, s->command_count, cmd, args);
    if (f && f->kind == FAULT_CLOSE_BEFORE) {
        conn_close(c);
        return;
    }
    if (f && f->kind == FAULT_FAIL) {
        /* An injected failure stands for an error raised while QEMU executes the command: like every such
         * error of object-add / device_add, it has already consumed a named fd passed as "fd" (FACTS). */
        const char *fdname = json_string_value(json_object_get(args, "fd"));
        if (fdname && (!strcmp(cmd, "object-add") || !strcmp(cmd, "device_add"))) {
            char d[256];
            int vfd = -1, fd = sim_fd_param(s, fdname, &vfd, d, sizeof(d));
            if (fd >= 0 && vfd >= 0) {
                if (!strcmp(cmd, "object-add")) {
                    sim_keep_fd(s, fdname, "object-add (failed)", fd, vfd);
                } else {
                    close(fd);
                    sim_vfd_release(s, vfd);
                }
            }
        }
        SIM_ERR(&r, f->klass[0] ? f->klass : "GenericError", "%s", f->desc[0] ? f->desc : "injected failure");
        goto error;
    }
    if (!c->negotiated) {
        if (strcmp(cmd, "qmp_capabilities")) {
            SIM_ERR(&r, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
            goto error;
        }
        if (!caps_args_ok(args, &r))
            goto error;
        c->oob = json_array_size(json_object_get(args, "enable")) > 0;
        c->negotiated = true;
        r.ret = json_object();
    } else if (!strcmp(cmd, "qmp_capabilities")) {
        /* the marshaller checks the arguments before the command says it is too late */
        if (caps_args_ok(args, &r))
            SIM_ERR(&r, "CommandNotFound", "Capabilities negotiation is already complete, command ignored");
        goto error;
    } else if (!sim_cmd_exists(cmd)) {
        SIM_ERR(&r, "CommandNotFound", "The command %s has not been found", cmd);
        goto error;
    } else if (oob && strcmp(cmd, "migrate-pause")) {
        SIM_ERR(&r, "GenericError", "The command %s does not support OOB", cmd);
        goto error;
    } else {
        sim_cmd_execute(srv, s, cmd, args, &r);
    }
    if (f && f->kind == FAULT_CLOSE_AFTER) {
        json_decref(r.ret);
        conn_close(c);
        return;
    }
    if (f && f->kind == FAULT_STALL) { /* executed, but the reply never comes */
        json_decref(r.ret);
        return;
    }
    if (c->dead)
        return;
    reply(c, id, &r);
    json_decref(r.ret);
    return;
error:
    if (!c->dead)
        reply(c, id, &r);
}

static void on_value(json_t *val, const char *err, void *opaque)
{
    struct conn *c = opaque;
    if (c->dead)
        return;
    handle(c, val, err);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct sim *s = c->srv->s;
    char buf[8192];
    union {
        char b[CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } cm;
    struct iovec iov = { buf, sizeof(buf) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b) };
    ssize_t n;
    (void)what;
    n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    for (struct cmsghdr *ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
        if (ch->cmsg_level == SOL_SOCKET && ch->cmsg_type == SCM_RIGHTS) {
            int nfd = (int)((ch->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *fds = (int *)CMSG_DATA(ch);
            sim_drop_pending_fds(s); /* new fds replace unused old ones (QEMU's tcp_chr_recv) */
            for (int i = 0; i < nfd; i++) {
                if (s->npending < 16) {
                    s->pending_fds[s->npending] = fds[i];
                    s->pending_vfds[s->npending++] = sim_vfd_alloc(s);
                } else {
                    close(fds[i]);
                }
            }
        }
    }
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->in_feed = true;
    sim_json_parser_feed(c->parser, buf, (size_t)n);
    c->in_feed = false;
    if (c->dead)
        conn_free(c);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct sim_srv *srv = arg;
    struct conn *c;
    json_t *greet;
    int fd;
    (void)what;
    if (srv->client)
        return;
    fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    c = calloc(1, sizeof(*c));
    c->srv = srv;
    c->fd = fd;
    c->out = evbuffer_new();
    c->parser = sim_json_parser_new(on_value, c);
    c->ev_read = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->ev_write = event_new(srv->base, fd, EV_WRITE, on_write, c);
    srv->client = c;
    /* one client at a time: stop accepting; later clients wait in the backlog with no greeting */
    event_del(srv->ev_accept);
    event_add(c->ev_read, NULL);
    greet = json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[s]}}", "QMP", "version", "qemu", "micro", 3, "minor", 1,
                      "major", 11, "package", "Debian 1:11.1.3+ds-1~bpo13+1", "capabilities", "oob");
    conn_send(c, greet);
    json_decref(greet);
}

/* ---- control channel ---- */

static int parse_fault_kind(const char *k, enum sim_fault_kind *out)
{
    if (!k || !strcmp(k, "fail")) *out = FAULT_FAIL;
    else if (!strcmp(k, "close-before")) *out = FAULT_CLOSE_BEFORE;
    else if (!strcmp(k, "close-after")) *out = FAULT_CLOSE_AFTER;
    else if (!strcmp(k, "stall")) *out = FAULT_STALL;
    else return -1;
    return 0;
}

int sim_srv_add_fault(struct sim *s, json_t *spec, char *err, size_t errlen)
{
    struct sim_fault *f = calloc(1, sizeof(*f)), **pp;
    json_t *arg = json_object_get(spec, "arg");
    if (parse_fault_kind(json_string_value(json_object_get(spec, "kind")), &f->kind) < 0) {
        snprintf(err, errlen, "unknown fault kind (fail, close-before, close-after, stall)");
        free(f);
        return -1;
    }
    f->nth = (long)json_integer_value(json_object_get(spec, "nth"));
    snprintf(f->command, sizeof(f->command), "%s", json_string_value(json_object_get(spec, "command")) ?: "");
    snprintf(f->klass, sizeof(f->klass), "%s", json_string_value(json_object_get(spec, "class")) ?: "GenericError");
    snprintf(f->desc, sizeof(f->desc), "%s", json_string_value(json_object_get(spec, "desc")) ?: "injected failure");
    f->remaining = json_object_get(spec, "count") ? (int)json_integer_value(json_object_get(spec, "count")) : 1;
    if (json_is_object(arg)) {
        const char *k;
        json_t *v;
        json_object_foreach(arg, k, v) {
            snprintf(f->arg_key, sizeof(f->arg_key), "%s", k);
            snprintf(f->arg_val, sizeof(f->arg_val), "%s", json_string_value(v) ?: "");
            break;
        }
    }
    if (!f->nth && !f->command[0]) {
        snprintf(err, errlen, "a fault needs \"nth\" or \"command\"");
        free(f);
        return -1;
    }
    for (pp = &s->faults; *pp; pp = &(*pp)->next)
        ;
    *pp = f;
    return 0;
}

int sim_srv_set_unplug(struct sim *s, json_t *spec, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(spec, "id"));
    const char *mode = json_string_value(json_object_get(spec, "mode"));
    struct sim_unplug_cfg c = { UNPLUG_EVENT, 1, false };
    struct sim_unplug_rule *r;
    if (json_object_get(spec, "delay_ms"))
        c.delay_ms = (int)json_integer_value(json_object_get(spec, "delay_ms"));
    c.before_reply = json_is_true(json_object_get(spec, "before_reply"));
    if (!mode || !strcmp(mode, "event")) c.mode = UNPLUG_EVENT;
    else if (!strcmp(mode, "never")) c.mode = UNPLUG_NEVER;
    else if (!strcmp(mode, "guest-error")) c.mode = UNPLUG_GUEST_ERROR;
    else if (!strcmp(mode, "auto")) c.mode = UNPLUG_AUTO;
    else {
        snprintf(err, errlen, "unknown unplug mode (event, never, guest-error, auto)");
        return -1;
    }
    if (!id || !id[0] || !strcmp(id, "*")) {
        s->unplug_default = c;
        return 0;
    }
    for (r = s->unplug_rules; r; r = r->next)
        if (!strcmp(r->id, id)) {
            r->cfg = c;
            return 0;
        }
    r = calloc(1, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->cfg = c;
    r->next = s->unplug_rules;
    s->unplug_rules = r;
    return 0;
}

static void ctl_free(struct ctl *c)
{
    struct ctl **pp;
    for (pp = &c->srv->ctls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    event_free(c->ev);
    evbuffer_free(c->in);
    close(c->fd);
    free(c);
}

static void ctl_reply(struct ctl *c, json_t *m)
{
    char *txt = json_dumps(m, JSON_COMPACT);
    size_t len = strlen(txt), off = 0;
    while (off < len) {
        ssize_t n = write(c->fd, txt + off, len - off);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            break;
        }
        off += (size_t)n;
    }
    if (write(c->fd, "\n", 1) < 0) {
        /* peer gone: its read event will clean up */
    }
    free(txt);
}

static void ctl_command(struct ctl *c, const char *line)
{
    struct sim_srv *srv = c->srv;
    json_error_t jerr;
    json_t *m = json_loads(line, 0, &jerr), *res;
    const char *cmd = json_string_value(json_object_get(m, "cmd"));
    char err[256] = "";
    if (!cmd) {
        res = json_pack("{s:b,s:s}", "ok", 0, "error", "expected {\"cmd\": …}");
    } else if (!strcmp(cmd, "dump")) {
        res = json_pack("{s:b,s:o}", "ok", 1, "dump", sim_dump(srv->s));
    } else if (!strcmp(cmd, "fault")) {
        res = sim_srv_add_fault(srv->s, m, err, sizeof(err)) < 0 ? json_pack("{s:b,s:s}", "ok", 0, "error", err)
                                                                   : json_pack("{s:b}", "ok", 1);
    } else if (!strcmp(cmd, "clear-faults")) {
        while (srv->s->faults) {
            struct sim_fault *f = srv->s->faults;
            srv->s->faults = f->next;
            free(f);
        }
        res = json_pack("{s:b}", "ok", 1);
    } else if (!strcmp(cmd, "unplug")) {
        res = sim_srv_set_unplug(srv->s, m, err, sizeof(err)) < 0 ? json_pack("{s:b,s:s}", "ok", 0, "error", err)
                                                                    : json_pack("{s:b}", "ok", 1);
        /* a device whose unplug is already pending (e.g. mode never): the guest acts on it as set — with
         * delay_ms 0 before this reply, so a test that got the reply knows it happened (no waiting) */
        const char *uid = json_string_value(json_object_get(m, "id"));
        const char *umode = json_string_value(json_object_get(m, "mode"));
        struct sim_dev *ud = uid && uid[0] ? sim_dev_by_id(srv->s, uid) : NULL;
        bool gerr = umode && !strcmp(umode, "guest-error");
        int udelay = (int)json_integer_value(json_object_get(m, "delay_ms"));
        if (json_is_true(json_object_get(res, "ok")) && ud && ud->unplug_pending &&
            (!umode || !strcmp(umode, "event") || gerr)) {
            if (udelay > 0)
                sim_srv_unplug_later(srv, uid, udelay, gerr);
            else
                sim_srv_guest_answers(srv, ud, gerr);
        }
    } else if (!strcmp(cmd, "advance")) {
        /* move the virtual clock (it only runs while the guest runs, as QEMU_CLOCK_VIRTUAL) */
        if (srv->s->runstate == RS_RUNNING)
            srv->s->vclock_offset_ms += json_integer_value(json_object_get(m, "ms"));
        res = json_pack("{s:b,s:I}", "ok", 1, "vclock_ms", (json_int_t)sim_vclock(srv->s));
    } else if (!strcmp(cmd, "event")) {
        /* emit an arbitrary event (e.g. a guest-initiated one) */
        const char *name = json_string_value(json_object_get(m, "event"));
        json_t *data = json_object_get(m, "data");
        if (name)
            sim_srv_event(srv, name, data ? json_incref(data) : NULL);
        res = json_pack("{s:b}", "ok", name != NULL);
    } else if (!strcmp(cmd, "quit")) {
        res = json_pack("{s:b}", "ok", 1);
        srv->quit_reason = "host-signal"; /* as if the VM's manager had signalled it */
        sim_srv_request_quit(srv);
    } else {
        res = json_pack("{s:b,s:s}", "ok", 0, "error", "unknown cmd (dump, fault, clear-faults, unplug, advance, "
                                                      "event, quit)");
    }
    ctl_reply(c, res);
    json_decref(res);
    json_decref(m);
}

static void on_ctl_read(evutil_socket_t fd, short what, void *arg)
{
    struct ctl *c = arg;
    int n;
    char *line;
    size_t len;
    (void)what;
    n = evbuffer_read(c->in, fd, 65536);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    while ((line = evbuffer_readln(c->in, &len, EVBUFFER_EOL_LF))) {
        if (len)
            ctl_command(c, line);
        free(line);
    }
    if (n <= 0)
        ctl_free(c);
}

static void on_ctl_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct sim_srv *srv = arg;
    struct ctl *c;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    (void)what;
    if (fd < 0)
        return;
    c = calloc(1, sizeof(*c));
    c->srv = srv;
    c->fd = fd;
    c->in = evbuffer_new();
    c->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_ctl_read, c);
    c->next = srv->ctls;
    srv->ctls = c;
    event_add(c->ev, NULL);
}

/* ---- setup ---- */

/* Listen on a unix socket that appears at `path` only once it accepts connections: bind a temporary
 * name, listen, then rename into place — clients that poll for the path never see ECONNREFUSED. */
static int listen_unix(const char *path, int backlog)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    char tmp[sizeof(a.sun_path) + 32];
    int fd;
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    if (strlen(tmp) >= sizeof(a.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", tmp);
    unlink(tmp);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, backlog) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    return fd;
}

/* QEMU says SHUTDOWN before it exits (flushed best effort), then the VM's sockets go away; the dump is
 * written; the loop ends with the last VM. */
static void srv_shutdown(struct sim_srv *srv)
{
    if (srv->down)
        return;
    srv->down = true;
    if (srv->client && !srv->client->dead) {
        sim_srv_event(srv, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 0, "reason",
                                                 srv->quit_reason ? srv->quit_reason : "host-signal"));
        if (srv->client && !srv->client->dead)
            evbuffer_write(srv->client->out, srv->client->fd);
    }
    /* sockets and dump before the client's EOF: a client that saw EOF finds them gone / written */
    if (srv->ev_accept)
        event_free(srv->ev_accept);
    if (srv->ev_ctl_accept)
        event_free(srv->ev_ctl_accept);
    srv->ev_accept = srv->ev_ctl_accept = NULL;
    if (srv->qmp_fd >= 0) {
        close(srv->qmp_fd);
        unlink(srv->opts.qmp_path);
        srv->qmp_fd = -1;
    }
    if (srv->ctl_fd >= 0) {
        close(srv->ctl_fd);
        unlink(srv->opts.control_path);
        srv->ctl_fd = -1;
    }
    if (srv->opts.dump_path) {
        json_t *d = sim_dump(srv->s);
        if (json_dump_file(d, srv->opts.dump_path, JSON_INDENT(2)) < 0)
            fprintf(stderr, "qmp-sim: cannot write %s\n", srv->opts.dump_path);
        json_decref(d);
    }
    if (srv->client) {
        srv->client->dead = true;
        conn_free(srv->client);
        srv->client = NULL;
    }
    while (srv->ctls)
        ctl_free(srv->ctls);
    while (srv->timers) {
        struct utimer *t = srv->timers;
        srv->timers = t->next;
        event_free(t->ev);
        free(t);
    }
    if (--srv->loop->live == 0)
        event_base_loopexit(srv->base, NULL);
}

static void on_quit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    srv_shutdown(arg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sim_srv *vms = arg;
    (void)sig;
    (void)what;
    for (int i = 0; vms[i].loop; i++)
        if (!vms[i].down) {
            vms[i].quit_reason = "host-signal";
            sim_srv_request_quit(&vms[i]);
        }
}

static int srv_listen(struct sim_srv *srv)
{
    const struct sim_srv_vm *o = &srv->opts;
    srv->qmp_fd = listen_unix(o->qmp_path, 1); /* like QEMU's -qmp socket: a second connect may see EAGAIN */
    if (srv->qmp_fd < 0) {
        fprintf(stderr, "qmp-sim: cannot listen on %s: %s\n", o->qmp_path, strerror(errno));
        return -1;
    }
    if (o->control_path) {
        srv->ctl_fd = listen_unix(o->control_path, 16);
        if (srv->ctl_fd < 0) {
            fprintf(stderr, "qmp-sim: cannot listen on %s: %s\n", o->control_path, strerror(errno));
            return -1;
        }
        srv->ev_ctl_accept = event_new(srv->base, srv->ctl_fd, EV_READ | EV_PERSIST, on_ctl_accept, srv);
        event_add(srv->ev_ctl_accept, NULL);
    }
    srv->ev_accept = event_new(srv->base, srv->qmp_fd, EV_READ | EV_PERSIST, on_accept, srv);
    event_add(srv->ev_accept, NULL);
    return 0;
}

int sim_srv_run(const struct sim_srv_vm *vms, int n, int ready_fd)
{
    struct sim_loop loop = {0};
    struct sim_srv *srv = calloc((size_t)n + 1, sizeof(*srv)); /* a zeroed sentinel ends the array */
    int rc = 0, i;
    signal(SIGPIPE, SIG_IGN);
    loop.base = event_base_new();
    for (i = 0; i < n; i++) {
        srv[i] = (struct sim_srv){ .loop = &loop, .base = loop.base, .s = vms[i].s, .opts = vms[i],
                                   .qmp_fd = -1, .ctl_fd = -1 };
        srv[i].ev_quit = event_new(loop.base, -1, 0, on_quit, &srv[i]);
        loop.live++;
    }
    for (i = 0; i < n && rc == 0; i++)
        if (srv_listen(&srv[i]) < 0)
            rc = 1;
    if (rc == 0) {
        loop.ev_term = evsignal_new(loop.base, SIGTERM, on_signal, srv);
        loop.ev_int = evsignal_new(loop.base, SIGINT, on_signal, srv);
        event_add(loop.ev_term, NULL);
        event_add(loop.ev_int, NULL);
        if (ready_fd >= 0) { /* tell the parent we listen */
            if (write(ready_fd, "R", 1) < 0) {
                /* parent gone: keep serving anyway */
            }
            close(ready_fd);
        }
        event_base_dispatch(loop.base);
    }
    for (i = 0; i < n; i++) {
        srv_shutdown(&srv[i]);
        event_free(srv[i].ev_quit);
    }
    if (loop.ev_term)
        event_free(loop.ev_term);
    if (loop.ev_int)
        event_free(loop.ev_int);
    event_base_free(loop.base);
    free(srv);
    return rc;
}
