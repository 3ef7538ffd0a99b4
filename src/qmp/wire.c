/* wire.c — the wire: the output queue (write interest armed only while data is queued; fds sent with
 * their command's first chunk), reading, decoding and dispatching messages. */
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

void qmpc_out_free_all(qmp_client *c)
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

/* ---- writing ---- */

static void write_arm(qmp_client *c)
{
    if (c->ev_write && c->out_head && !event_pending(c->ev_write, EV_WRITE, NULL))
        event_add(c->ev_write, NULL);
}

/* Write as much as the socket takes. Returns 0, or a negative errno after failing the connection. */
int qmpc_write_flush(qmp_client *c)
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
            qmpc_conn_failf(c, -ECONNRESET, "writing to QEMU at %s: %s", c->addr, strerror(errno));
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

void qmpc_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    qmpc_write_flush(arg);
}

/* Queue text (which gets a trailing newline) with fds (dup'ed here). */
int qmpc_out_queue(qmp_client *c, const char *text, const int *fds, size_t nfds)
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
    qmpc_record(c, "C: ", text, len);
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    return 0;
}

/* Build and queue one command; the pending entry is created before the bytes can leave. */
static int on_message(json_t *msg, const char *raw, size_t raw_len, void *payload)
{
    qmp_client *c = payload;
    qmpc_record(c, "S: ", raw, raw_len);
    if (c->state == QMP_STATE_GREETING) {
        qmpc_handle_greeting(c, msg, raw, raw_len);
    } else if (json_is_string(json_object_get(msg, "event"))) {
        qmpc_subs_dispatch(c, json_string_value(json_object_get(msg, "event")), json_object_get(msg, "data"), msg);
    } else if (json_object_get(msg, "return") || json_object_get(msg, "error")) {
        qmpc_handle_reply(c, msg);
    } else if (json_object_get(msg, "QMP")) {
        qmpc_log(c, 1, "ignoring a second greeting");
    } else {
        qmpc_log(c, 1, "ignoring a message that is neither reply nor event: %.*s", (int)(raw_len > 200 ? 200 : raw_len),
                   raw);
    }
    /* stop feeding if a callback closed or freed the client, or closed it and connected again (the rest of
     * this chunk belongs to the old connection) */
    return (c->dead || c->state == QMP_STATE_CLOSED || c->fd < 0 || c->conn_gen != c->read_gen) ? 1 : 0;
}

void qmpc_read_cb(evutil_socket_t fd, short what, void *arg)
{
    qmp_client *c = arg;
    char buf[65536];
    ssize_t n;
    (void)what;
    qmpc_hold(c);
    c->read_gen = c->conn_gen;
    for (int rounds = 0; rounds < 16 && !c->dead && c->fd == fd && c->conn_gen == c->read_gen; rounds++) {
        n = read(fd, buf, sizeof(buf));
        if (n == 0) {
            if (c->state == QMP_STATE_GREETING)
                qmpc_conn_failf(c, -ECONNRESET, "%s closed the connection before sending a QMP greeting", c->addr);
            else
                qmpc_conn_failf(c, -ECONNRESET, "QEMU at %s closed the connection", c->addr);
            break;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                qmpc_conn_failf(c, -ECONNRESET, "reading from QEMU at %s: %s", c->addr, strerror(errno));
            break;
        }
        struct smmu_error e = SMMU_ERROR_INIT;
        int r = qmp_decoder_feed(c->dec, buf, (size_t)n, on_message, c, &e);
        if (r < 0) {
            smmu_error_prefix(&e, "protocol error from %s", c->addr);
            qmpc_conn_fail(c, r, &e);
            break;
        }
        if ((size_t)n < sizeof(buf))
            break;
    }
    qmpc_release(c);
}
