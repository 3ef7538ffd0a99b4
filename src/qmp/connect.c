/* connect.c — connecting (unix, tcp trying every address in order, an fd given) and tearing down. */
#define _GNU_SOURCE
#include "qmp/client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- connection teardown ---- */

static void tcp_forget_addrs(qmp_client *c);

void qmpc_conn_release_io(qmp_client *c)
{
    tcp_forget_addrs(c);
    if (c->ev_read) { event_free(c->ev_read); c->ev_read = NULL; }
    if (c->ev_write) { event_free(c->ev_write); c->ev_write = NULL; }
    if (c->ev_connect_timer) { event_free(c->ev_connect_timer); c->ev_connect_timer = NULL; }
    if (c->fd >= 0) { close(c->fd); c->fd = -1; }
    qmpc_out_free_all(c);
}

/* Tear the connection down with `code`: pending calls fail, subscribers and the state callback are told. */
void qmpc_conn_fail(qmp_client *c, int code, const struct smmu_error *why)
{
    enum qmp_state was = c->state;
    if (was == QMP_STATE_CLOSED || was == QMP_STATE_IDLE)
        return;
    c->state = QMP_STATE_CLOSED;
    c->conn_gen++;
    qmpc_conn_release_io(c);
    qmpc_hold(c);
    qmp_client_record_comment(c, "connection ended: %s", why ? why->message : "closed");
    qmpc_pending_fail_all(c, code == -EPROTO || code == -EMSGSIZE ? code : -ECONNRESET,
                     why ? why->message : "connection closed");
    if (!c->dead && was == QMP_STATE_READY)
        qmpc_subs_dispatch(c, NULL, NULL, NULL);
    if (!c->dead && c->state_cb)
        c->state_cb(c, code, why, c->state_payload);
    qmpc_release(c);
}

void qmpc_conn_failf(qmp_client *c, int code, const char *fmt, ...)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    e.code = code;
    qmpc_conn_fail(c, code, &e);
}

/* ---- connecting ---- */

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    qmp_client *c = arg;
    (void)fd; (void)what;
    if (c->state == QMP_STATE_CONNECTING)
        qmpc_conn_failf(c, -ETIMEDOUT, "connecting to %s timed out", c->addr);
    else if (c->state == QMP_STATE_GREETING)
        qmpc_conn_failf(c, -ETIMEDOUT,
                   "no QMP greeting from %s within %d ms: another client probably holds this monitor (QEMU "
                   "serves one client per QMP socket and keeps later ones waiting silently), or the peer is "
                   "not QEMU", c->addr, c->opts.connect_timeout_ms);
    else if (c->state == QMP_STATE_NEGOTIATING)
        qmpc_conn_failf(c, -ETIMEDOUT, "no reply to qmp_capabilities from %s within %d ms", c->addr,
                   c->opts.connect_timeout_ms);
}

/* The socket is connected: wait for the greeting. */
static int conn_established(qmp_client *c)
{
    c->state = QMP_STATE_GREETING;
    qmp_decoder_reset(c->dec);
    c->ev_read = event_new(c->base, c->fd, EV_READ | EV_PERSIST, qmpc_read_cb, c);
    c->ev_write = event_new(c->base, c->fd, EV_WRITE, qmpc_write_cb, c);
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
        qmpc_conn_failf(c, -soerr, "cannot connect to QEMU at %s: %s", c->addr, strerror(soerr));
        return;
    }
    tcp_forget_addrs(c);
    if (conn_established(c) < 0)
        qmpc_conn_failf(c, -ENOMEM, "out of memory");
}

static void deferred_fail_cb(evutil_socket_t fd, short what, void *arg)
{
    qmp_client *c = arg;
    (void)fd; (void)what;
    qmpc_conn_fail(c, c->deferred_err, &c->deferred_e);
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
            struct stat st;
            if ((en == ECONNREFUSED || en == ENOTSOCK) && stat(a.path, &st) == 0 && !S_ISSOCK(st.st_mode))
                return connect_fail_later(c, -ENOTSOCK, "cannot connect to QEMU at %s: not a socket (%s is a %s; "
                                          "give the path of the VM's -qmp unix socket)", addr, a.path,
                                          S_ISDIR(st.st_mode) ? "directory" : "regular file or device");
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
    qmpc_conn_failf(c, -ECONNRESET, "connection to %s closed by smmuctl", c->addr);
}
