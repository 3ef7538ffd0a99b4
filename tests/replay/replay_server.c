/* replay_server.c — plays a QMP transcript fixture to one client, in its own thread.
 *
 * Framing of client input: the fixture decides. A C: line that parses as a JSON object/array/string is cut out
 * of the stream as one JSON value (the client needs no newline; QEMU does not either); any other C: line is
 * "text up to the next LF"; after !no-newline exactly the line's bytes. Received SCM_RIGHTS fds are counted for
 * the message that contains the LAST byte of the recvmsg() that carried them: Linux may glue earlier plain bytes
 * in front of a message that carries fds, but always stops a read right after it, so the last byte is the one
 * that is known to belong to the fd-carrying write.
 */
#define _GNU_SOURCE
#include "replay_server.h"
#include "replay_fixture.h"
#include "replay_match.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RS_MAX_INPUT (64u << 20)   /* larger than any QMP message smmuctl may send (QEMU's cap is 16 MiB) */
#define RS_MAX_FDS 253
#define RS_SHOW_BYTES 1000

struct rs_fdmark {
    uint64_t off;   /* stream offset of the last byte of the read that carried the fds */
    int n;
};

struct rs_idmap {
    json_t *exp;    /* id in the fixture's C: line */
    json_t *act;    /* id the client sent, NULL when it sent none */
};

struct replay_server {
    struct replay_fixture *fx;
    int line_timeout, end_timeout;
    int listen_fd, conn, stop_rd, stop_wr;
    char *socket_path;

    pthread_t thread;
    bool started, joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, at_end;          /* under mu */

    int result;
    enum replay_failure kind;
    int fail_line;
    char *report;
    size_t rlen, rcap;

    /* client input: buf holds stream bytes [base, base + len) */
    char *buf;
    size_t len, cap;
    uint64_t base;
    bool eof;
    struct rs_fdmark *marks;
    size_t nmarks, capmarks;

    /* id bookkeeping for the current session */
    struct rs_idmap *ids;
    size_t nids, capids;
    json_t *fifo;               /* array of {} (no id) or {"id": X}, one per id-less expected command */

    size_t cur;                 /* index of the item being played */
};

/* ---------- time and waiting ---------- */

static int64_t rs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd (if >= 0) has `events`, the deadline passes (-ETIMEDOUT) or a stop was requested (-ECANCELED). */
static int rs_poll(struct replay_server *s, int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p[2] = {{s->stop_rd, POLLIN, 0}, {fd, events, 0}};
        int64_t left = deadline - rs_now_ms();
        int r;
        if (left < 0)
            left = 0;
        r = poll(p, fd >= 0 ? 2 : 1, (int)(left > 600000 ? 600000 : left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (p[0].revents)
            return -ECANCELED;
        if (fd >= 0 && p[1].revents)
            return 1;
        if (rs_now_ms() >= deadline)
            return -ETIMEDOUT;
    }
}

/* ---------- report ---------- */

static void rs_report_add(struct replay_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rs_report_add(struct replay_server *s, const char *fmt, ...)
{
    va_list ap;
    char *line = NULL;
    int n;
    va_start(ap, fmt);
    n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (s->rlen + (size_t)n + 1 > s->rcap) {
        size_t ncap = (s->rlen + (size_t)n + 1) * 2;
        char *r = realloc(s->report, ncap);
        if (!r) {
            free(line);
            return;
        }
        s->report = r;
        s->rcap = ncap;
    }
    memcpy(s->report + s->rlen, line, (size_t)n + 1);
    s->rlen += (size_t)n;
    free(line);
}

/* Length of the valid UTF-8 sequence at p (2..4), or 0. */
static size_t rs_utf8_len(const unsigned char *p, size_t left)
{
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : 0;
    if (p[0] >= 0xf5 || n > left)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Append bytes readable: control bytes and invalid UTF-8 as \xHH (as the fixtures write them), cut long ones. */
static void rs_report_bytes(struct replay_server *s, const char *label, const char *data, size_t len)
{
    size_t show = len > RS_SHOW_BYTES ? RS_SHOW_BYTES : len;
    char *out = malloc(show * 4 + 1);
    size_t o = 0;
    if (!out)
        return;
    for (size_t i = 0; i < show; i++) {
        unsigned char c = (unsigned char)data[i];
        size_t u;
        if (c >= 0x80 && (u = rs_utf8_len((const unsigned char *)data + i, show - i))) {
            memcpy(out + o, data + i, u);
            o += u;
            i += u - 1;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)sprintf(out + o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    if (show < len)
        rs_report_add(s, "  %s%s… (%zu bytes in all)\n", label, out, len);
    else
        rs_report_add(s, "  %s%s\n", label, out);
    free(out);
}

/* Show the fixture lines played just before item `idx`, so a reader sees where the session was. */
static void rs_report_context(struct replay_server *s, size_t idx)
{
    size_t from = idx, shown = 0;
    while (from > 0 && shown < 3) {
        from--;
        if (s->fx->items[from].kind == REPLAY_ITEM_SEND || s->fx->items[from].kind == REPLAY_ITEM_EXPECT)
            shown++;
    }
    if (!shown)
        return;
    rs_report_add(s, "  played before it:\n");
    for (size_t i = from; i < idx && i < s->fx->n; i++) {
        const struct replay_item *it = &s->fx->items[i];
        char label[64];
        if (it->kind != REPLAY_ITEM_SEND && it->kind != REPLAY_ITEM_EXPECT)
            continue;
        snprintf(label, sizeof(label), "  line %d %s ", it->line, it->raw ? "!raw" : replay_item_kind_name(it->kind));
        rs_report_bytes(s, label, it->text, it->len);
    }
}

/* Record the first failure; later ones are consequences and are ignored. `it` NULL: not tied to a line. */
static int rs_fail(struct replay_server *s, enum replay_failure kind, int result, const struct replay_item *it,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int rs_fail(struct replay_server *s, enum replay_failure kind, int result, const struct replay_item *it,
                   const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (s->kind != REPLAY_OK)
        return s->result;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->kind = kind;
    s->result = result;
    s->fail_line = it ? it->line : 0;
    if (it)
        rs_report_add(s, "%s:%d: %s\n", s->fx->path, it->line, msg);
    else
        rs_report_add(s, "%s: %s\n", s->fx->path, msg);
    return result;
}

/* ---------- client input ---------- */

static void rs_reset_session(struct replay_server *s)
{
    s->len = 0;
    s->base = 0;
    s->eof = false;
    s->nmarks = 0;
    for (size_t i = 0; i < s->nids; i++) {
        json_decref(s->ids[i].exp);
        json_decref(s->ids[i].act);
    }
    s->nids = 0;
    json_array_clear(s->fifo);
}

static void rs_close_conn(struct replay_server *s)
{
    if (s->conn >= 0)
        close(s->conn);
    s->conn = -1;
}

/* Read once. nowait: do not block (-EAGAIN when nothing is there). Returns bytes read, 0 at EOF, -errno. */
static int rs_recv(struct replay_server *s, int64_t deadline, bool nowait)
{
    union {
        char b[CMSG_SPACE(RS_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov;
    struct msghdr mh;
    ssize_t n;
    int nfds = 0, r;

    if (s->conn < 0 || s->eof)
        return 0;
    if (!nowait && (r = rs_poll(s, s->conn, POLLIN, deadline)) < 0)
        return r;
    if (s->cap - s->len < 65536) {
        if (s->cap + 65536 > RS_MAX_INPUT)
            return -EMSGSIZE;
        char *nb = realloc(s->buf, s->cap + 65536);
        if (!nb)
            return -ENOMEM;
        s->buf = nb;
        s->cap += 65536;
    }
    iov.iov_base = s->buf + s->len;
    iov.iov_len = s->cap - s->len;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.b;
    mh.msg_controllen = sizeof(cbuf.b);
    do
        n = recvmsg(s->conn, &mh, MSG_CMSG_CLOEXEC | (nowait ? MSG_DONTWAIT : 0));
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
        n = 0;
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            close(fd);   /* only the count matters here */
        }
        nfds += (int)k;
    }
    if (mh.msg_flags & MSG_CTRUNC)
        nfds += 1;   /* more than RS_MAX_FDS: the count is wrong anyway, make sure it cannot match */
    s->len += (size_t)n;
    if (n == 0) {
        s->eof = true;
        return 0;
    }
    if (nfds) {
        if (s->nmarks == s->capmarks) {
            size_t nc = s->capmarks ? s->capmarks * 2 : 8;
            struct rs_fdmark *m = realloc(s->marks, nc * sizeof(*m));
            if (!m)
                return -ENOMEM;
            s->marks = m;
            s->capmarks = nc;
        }
        s->marks[s->nmarks++] = (struct rs_fdmark){s->base + s->len - 1, nfds};
    }
    return (int)n;
}

/* Drop `k` bytes from the front; return the fds that came with them. */
static int rs_consume(struct replay_server *s, size_t k)
{
    uint64_t upto = s->base + k;
    size_t keep = 0;
    int nfds = 0;
    for (size_t i = 0; i < s->nmarks; i++) {
        if (s->marks[i].off < upto)
            nfds += s->marks[i].n;
        else
            s->marks[keep++] = s->marks[i];
    }
    s->nmarks = keep;
    if (s->len > k)
        memmove(s->buf, s->buf + k, s->len - k);
    s->len -= k;
    s->base = upto;
    return nfds;
}

static bool rs_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t rs_first_nonblank(const struct replay_server *s)
{
    size_t i = 0;
    while (i < s->len && rs_blank(s->buf[i]))
        i++;
    return i;
}

/* ---------- ids ---------- */

static struct rs_idmap *rs_id_lookup(struct replay_server *s, json_t *exp)
{
    for (size_t i = s->nids; i-- > 0;)
        if (json_equal(s->ids[i].exp, exp))
            return &s->ids[i];
    return NULL;
}

static void rs_note_ids(struct replay_server *s, json_t *expected, json_t *actual)
{
    json_t *eid = json_is_object(expected) ? json_object_get(expected, "id") : NULL;
    json_t *aid = json_is_object(actual) ? json_object_get(actual, "id") : NULL;

    if (!eid) {
        json_t *entry = json_object();
        if (aid)
            json_object_set(entry, "id", aid);
        json_array_append_new(s->fifo, entry);
        return;
    }
    struct rs_idmap *m = rs_id_lookup(s, eid);
    if (!m) {
        if (s->nids == s->capids) {
            size_t nc = s->capids ? s->capids * 2 : 16;
            struct rs_idmap *n = realloc(s->ids, nc * sizeof(*n));
            if (!n)
                return;
            s->ids = n;
            s->capids = nc;
        }
        m = &s->ids[s->nids++];
        m->exp = json_incref(eid);
        m->act = NULL;
    }
    json_decref(m->act);
    m->act = aid ? json_incref(aid) : NULL;
}

/* The bytes to send instead of the fixture's S: line when an id must be substituted (malloc'ed, no CRLF), or
 * NULL to send the line verbatim. Only the id's bytes change: re-serialising would alter QEMU's formatting and
 * values jansson cannot hold (uint64 18446744073709551615 in a64-15). *oom set on allocation failure. */
static char *rs_substitute(struct replay_server *s, const struct replay_item *it, bool *oom)
{
    json_t *msg = it->json, *id = json_object_get(msg, "id"), *entry, *new_id;
    char *out;

    *oom = false;
    if (id) {
        struct rs_idmap *m = rs_id_lookup(s, id);
        if (!m || (m->act && json_equal(m->act, id)))
            return NULL;
        new_id = m->act;
        entry = NULL;
    } else {
        if (!json_object_get(msg, "return") && !json_object_get(msg, "error"))
            return NULL;
        if (json_array_size(s->fifo) == 0)
            return NULL;
        entry = json_incref(json_array_get(s->fifo, 0));
        json_array_remove(s->fifo, 0);
        new_id = json_object_get(entry, "id");
        if (!new_id) {
            json_decref(entry);
            return NULL;
        }
    }
    out = replay_splice_id(it->text, it->len, new_id);
    *oom = !out;
    json_decref(entry);
    return out;
}

/* ---------- steps ---------- */

static int rs_send(struct replay_server *s, const struct replay_item *it)
{
    char *owned = NULL;
    const char *data = it->text;
    size_t dlen = it->len, off = 0;
    int64_t deadline = rs_now_ms() + s->line_timeout;
    int r = 0;

    if (s->conn < 0)
        return rs_fail(s, REPLAY_FAIL_IO, -EIO, it, "cannot send this line: no client is connected");
    if (!it->raw) {
        bool oom;
        char *text = rs_substitute(s, it, &oom);
        if (oom)
            return rs_fail(s, REPLAY_FAIL_IO, -ENOMEM, it, "out of memory");
        if (asprintf(&owned, "%s\r\n", text ? text : it->text) < 0) {
            free(text);
            return rs_fail(s, REPLAY_FAIL_IO, -ENOMEM, it, "out of memory");
        }
        free(text);
        data = owned;
        dlen = strlen(owned);
    }
    while (off < dlen) {
        ssize_t n = send(s->conn, data + off, dlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            r = rs_poll(s, s->conn, POLLOUT, deadline);
            if (r == -ETIMEDOUT) {
                r = rs_fail(s, REPLAY_FAIL_MISSING, -EBADMSG, it,
                            "the client did not read this line within %d ms (%zu of %zu bytes sent)",
                            s->line_timeout, off, dlen);
                break;
            }
            if (r == -ECANCELED) {
                r = rs_fail(s, REPLAY_FAIL_MISSING, -ETIMEDOUT, it, "replay stopped while sending this line");
                break;
            }
            if (r < 0)
                break;
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET)
            r = rs_fail(s, REPLAY_FAIL_MISSING, -EBADMSG, it,
                        "the client closed the connection before receiving this line");
        else
            r = rs_fail(s, REPLAY_FAIL_IO, -EIO, it, "send: %s", strerror(errno));
        break;
    }
    free(owned);
    return r < 0 ? r : 0;
}

/* A wait on the client ended without the expected message: say why, with what had arrived so far. */
static int rs_fail_waiting(struct replay_server *s, const struct replay_item *it, int r, const char *what)
{
    size_t skip = rs_first_nonblank(s);
    if (r == -ETIMEDOUT)
        rs_fail(s, REPLAY_FAIL_MISSING, -EBADMSG, it, "missing: %s did not come within %d ms", what,
                s->line_timeout);
    else if (r == -ECANCELED)
        rs_fail(s, REPLAY_FAIL_MISSING, -ETIMEDOUT, it,
                "missing: %s — replay stopped by replay_server_wait() before it came", what);
    else if (r == 0)
        rs_fail(s, REPLAY_FAIL_MISSING, -EBADMSG, it, "missing: the client closed the connection; expected %s",
                what);
    else if (r == -EMSGSIZE)
        rs_fail(s, REPLAY_FAIL_UNEXPECTED, -EBADMSG, it, "the client sent more than %u bytes without a match",
                RS_MAX_INPUT);
    else
        rs_fail(s, REPLAY_FAIL_IO, -EIO, it, "receive: %s", strerror(-r));
    if (it && it->kind == REPLAY_ITEM_EXPECT)
        rs_report_bytes(s, "expected C: ", it->text, it->len);
    if (skip < s->len)
        rs_report_bytes(s, "received so far (incomplete): ", s->buf + skip, s->len - skip);
    return s->result;
}

static int rs_expect(struct replay_server *s, const struct replay_item *it)
{
    int64_t deadline = rs_now_ms() + s->line_timeout;

    for (;;) {
        size_t skip = 0, mlen = 0, consumed = 0;
        bool got = false;
        int r;

        /* A fragment sent without newline may start with blanks of its own: skip only line ends before it. */
        while (skip < s->len && (it->exact ? (s->buf[skip] == '\r' || s->buf[skip] == '\n') : rs_blank(s->buf[skip])))
            skip++;
        const char *p = s->buf + skip;
        size_t avail = s->len - skip;

        if (it->exact) {
            if (avail >= it->len) {
                mlen = it->len;
                consumed = skip + mlen;
                got = true;
            }
        } else if (it->json && avail && (r = replay_scan_json(p, avail, &mlen)) >= 0) {
            if (r == 1) {
                got = true;
                consumed = skip + mlen;
                /* the rest of the line (blanks up to and including LF) belongs to this message */
                while (consumed < s->len && rs_blank(s->buf[consumed]))
                    if (s->buf[consumed++] == '\n')
                        break;
            }
        } else {
            const char *nl = avail ? memchr(p, '\n', avail) : NULL;
            if (nl) {
                mlen = (size_t)(nl - p);
                consumed = skip + mlen + 1;
                got = true;
            }
        }

        if (got) {
            bool match;
            char diff[700] = "";
            json_t *actual = NULL;
            const char *a = p, *e = it->text;
            size_t alen = mlen, elen = it->len;

            if (it->exact) {
                match = alen == elen && !memcmp(a, e, alen);
            } else if (it->json) {
                json_error_t je;
                actual = replay_json_load(a, alen, JSON_DECODE_ANY, &je);
                if (!actual) {
                    match = false;
                    snprintf(diff, sizeof(diff), "the client's message is not valid JSON: %s", je.text);
                } else if (!(match = replay_json_equal_noid(it->json, actual))) {
                    replay_json_diff(it->json, actual, diff, sizeof(diff));
                }
            } else {
                replay_trim(&a, &alen);
                replay_trim(&e, &elen);
                match = alen == elen && !memcmp(a, e, alen);
            }
            if (!match) {
                rs_fail(s, REPLAY_FAIL_UNEXPECTED, -EBADMSG, it, "unexpected message from the client");
                rs_report_bytes(s, "expected C: ", it->text, it->len);
                rs_report_bytes(s, "actual   C: ", p, mlen);
                if (diff[0])
                    rs_report_add(s, "  difference: %s%s\n", diff,
                                  actual ? " (compared as JSON; the id member is ignored)" : "");
                else
                    rs_report_add(s, "  compared as %s\n",
                                  it->exact ? "exact bytes (!no-newline)" : "text (the C: line is not JSON)");
                json_decref(actual);
                return s->result;
            }
            int nfds = rs_consume(s, consumed);
            if (nfds != it->nfds) {
                json_decref(actual);
                return rs_fail(s, REPLAY_FAIL_FDS, -EBADMSG, it,
                               "wrong fd count: the message came with %d fd%s via SCM_RIGHTS, the fixture says %d",
                               nfds, nfds == 1 ? "" : "s", it->nfds);
            }
            if (it->json)
                rs_note_ids(s, it->json, actual);
            json_decref(actual);
            return 0;
        }
        if (s->eof)
            return rs_fail_waiting(s, it, 0, "this C: line");
        r = rs_recv(s, deadline, false);
        if (r <= 0)
            return rs_fail_waiting(s, it, r, "this C: line");
    }
}

/* Read everything that is already there without waiting. */
static int rs_drain_nowait(struct replay_server *s)
{
    int r;
    while ((r = rs_recv(s, 0, true)) > 0)
        ;
    return r == -EAGAIN ? 0 : r;
}

static int rs_expect_close(struct replay_server *s, const struct replay_item *it)
{
    int64_t deadline = rs_now_ms() + s->line_timeout;
    for (;;) {
        size_t skip = rs_first_nonblank(s);
        if (skip < s->len) {
            rs_fail(s, REPLAY_FAIL_UNEXPECTED, -EBADMSG, it,
                    "the client sent a message where it should close the connection");
            rs_report_bytes(s, "actual   C: ", s->buf + skip, s->len - skip);
            return s->result;
        }
        if (s->eof || s->conn < 0) {
            rs_close_conn(s);
            return 0;
        }
        int r = rs_recv(s, deadline, false);
        if (r < 0)
            return rs_fail_waiting(s, it, r, "the client's close");
    }
}

static int rs_server_close(struct replay_server *s, const struct replay_item *it)
{
    int r = rs_drain_nowait(s);
    size_t skip = rs_first_nonblank(s);
    if (r < 0 && r != -EMSGSIZE)
        return rs_fail_waiting(s, it, r, "nothing");
    if (skip < s->len) {
        rs_fail(s, REPLAY_FAIL_UNEXPECTED, -EBADMSG, it,
                "the client sent a message the fixture does not have before the server closes here");
        rs_report_bytes(s, "actual   C: ", s->buf + skip, s->len - skip);
        return s->result;
    }
    rs_close_conn(s);
    return 0;
}

static int rs_accept(struct replay_server *s, const struct replay_item *it)
{
    int64_t deadline = rs_now_ms() + s->line_timeout;
    int r, fd;

    rs_close_conn(s);
    rs_reset_session(s);
    for (;;) {
        r = rs_poll(s, s->listen_fd, POLLIN, deadline);
        if (r < 0)
            return rs_fail_waiting(s, it, r, "a client connection");
        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
            return rs_fail(s, REPLAY_FAIL_IO, -EIO, it, "accept: %s", strerror(errno));
    }
    s->conn = fd;
    return 0;
}

/* After the last line: the client may close; anything it sends is an extra message. */
static void rs_finish(struct replay_server *s)
{
    int64_t deadline = rs_now_ms() + s->end_timeout;
    int r;

    pthread_mutex_lock(&s->mu);
    s->at_end = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);

    while (s->conn >= 0) {
        size_t skip = rs_first_nonblank(s);
        if (skip < s->len) {
            rs_fail(s, REPLAY_FAIL_EXTRA, -EBADMSG, NULL,
                    "extra message from the client after the end of the fixture (last line %d)",
                    s->fx->n ? s->fx->items[s->fx->n - 1].line : 0);
            rs_report_bytes(s, "actual   C: ", s->buf + skip, s->len - skip);
            rs_report_context(s, s->fx->n);
            return;
        }
        if (s->eof)
            return;
        r = rs_recv(s, deadline, false);
        if (r == -ECANCELED)
            r = rs_drain_nowait(s) ?: -ETIMEDOUT;
        if (r == -ETIMEDOUT) {
            /* one last look at what is already there */
            skip = rs_first_nonblank(s);
            if (skip >= s->len)
                return;
        } else if (r < 0) {
            rs_fail(s, REPLAY_FAIL_IO, -EIO, NULL, "receive after the end of the fixture: %s", strerror(-r));
            return;
        }
    }
}

static void *rs_thread(void *arg)
{
    struct replay_server *s = arg;
    int r = 0;

    if (s->listen_fd >= 0 && s->conn < 0) {
        struct replay_item first = {.line = s->fx->n ? s->fx->items[0].line : 0};
        r = rs_accept(s, &first);
    }
    for (s->cur = 0; r == 0 && s->cur < s->fx->n; s->cur++) {
        const struct replay_item *it = &s->fx->items[s->cur];
        switch (it->kind) {
        case REPLAY_ITEM_SEND:
            r = rs_send(s, it);
            break;
        case REPLAY_ITEM_EXPECT:
            r = rs_expect(s, it);
            break;
        case REPLAY_ITEM_DELAY:
            r = rs_poll(s, -1, 0, rs_now_ms() + it->ms);
            r = r == -ETIMEDOUT ? 0 : rs_fail_waiting(s, it, r, "the end of this !delay");
            break;
        case REPLAY_ITEM_TIMEOUT:
            s->line_timeout = it->ms;
            break;
        case REPLAY_ITEM_CLOSE:
            r = rs_server_close(s, it);
            break;
        case REPLAY_ITEM_EXPECT_CLOSE:
            r = rs_expect_close(s, it);
            break;
        case REPLAY_ITEM_ACCEPT:
            r = rs_accept(s, it);
            break;
        }
        if (r < 0)
            rs_report_context(s, s->cur);
    }
    if (r == 0)
        rs_finish(s);
    rs_close_conn(s);

    pthread_mutex_lock(&s->mu);
    s->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------- lifecycle ---------- */

/* Listen on `path`; bind to a temporary name and rename, so that the path exists only once it accepts. */
static int rs_listen(struct replay_server *s, const char *path, struct smmu_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char tmp[sizeof(sa.sun_path)];
    struct stat st;
    bool use_tmp;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return smmu_error_set(err, -ENAMETOOLONG, "%s: socket path too long", path);
    use_tmp = (size_t)snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) < sizeof(tmp);
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return smmu_error_set(err, -errno, "socket: %s", strerror(errno));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", use_tmp ? tmp : path);
    unlink(tmp);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0 ||
        (use_tmp && rename(tmp, path) < 0)) {
        int e = errno;
        close(fd);
        if (use_tmp)
            unlink(tmp);
        return smmu_error_set(err, -e, "%s: cannot listen: %s", path, strerror(e));
    }
    s->listen_fd = fd;
    s->socket_path = strdup(path);
    return 0;
}

int replay_server_start_opts(struct replay_server **out, const char *fixture_path, const char *socket_path,
                             int *client_fd, const struct replay_opts *opts, struct smmu_error *err)
{
    struct replay_server *s;
    struct replay_fixture *fx;
    pthread_condattr_t ca;
    int r, pfd[2];

    if (client_fd)
        *client_fd = -1;
    r = replay_fixture_load(&fx, fixture_path, err);
    if (r < 0)
        return r;
    if (fx->needs_listener && !socket_path) {
        replay_fixture_free(fx);
        return smmu_error_set(err, -EINVAL, "%s: the fixture uses !accept, which needs a listening socket",
                              fixture_path);
    }
    if (!socket_path && !client_fd) {
        replay_fixture_free(fx);
        return smmu_error_set(err, -EINVAL, "replay_server_start: neither a socket path nor client_fd");
    }
    s = calloc(1, sizeof(*s));
    if (!s || pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(s);
        replay_fixture_free(fx);
        return smmu_error_set(err, -ENOMEM, "replay server: out of resources");
    }
    s->fx = fx;
    s->stop_rd = pfd[0];
    s->stop_wr = pfd[1];
    s->listen_fd = s->conn = -1;
    s->line_timeout = opts && opts->line_timeout_ms > 0 ? opts->line_timeout_ms : 5000;
    s->end_timeout = opts && opts->end_timeout_ms > 0 ? opts->end_timeout_ms : 5000;
    s->fifo = json_array();
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);

    if (socket_path) {
        r = rs_listen(s, socket_path, err);
    } else {
        int sv[2];
        r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        if (r < 0) {
            r = smmu_error_set(err, -errno, "socketpair: %s", strerror(errno));
        } else {
            s->conn = sv[0];
            *client_fd = sv[1];
        }
    }
    if (r == 0 && (r = -pthread_create(&s->thread, NULL, rs_thread, s)) < 0)
        smmu_error_set(err, r, "pthread_create: %s", strerror(-r));
    if (r < 0) {
        if (!socket_path && *client_fd >= 0)
            close(*client_fd);
        replay_server_free(s);
        return r;
    }
    s->started = true;
    *out = s;
    return 0;
}

int replay_server_start(struct replay_server **out, const char *fixture_path, const char *socket_path,
                        int *client_fd)
{
    return replay_server_start_opts(out, fixture_path, socket_path, client_fd, NULL, NULL);
}

static void rs_stop(struct replay_server *s)
{
    ssize_t n;
    do
        n = write(s->stop_wr, "x", 1);
    while (n < 0 && errno == EINTR);
}

/* Wait until the thread has reached the end of the fixture or finished; false on timeout. */
static bool rs_wait_end(struct replay_server *s, int timeout_ms)
{
    struct timespec ts;
    bool reached;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->done && !s->at_end)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    reached = s->done || s->at_end;
    pthread_mutex_unlock(&s->mu);
    return reached;
}

int replay_server_wait_played(struct replay_server *s, int timeout_ms)
{
    if (!s->started || s->joined)
        return 0;
    return rs_wait_end(s, timeout_ms < 0 ? 0 : timeout_ms) ? 0 : -ETIMEDOUT;
}

int replay_server_wait(struct replay_server *s, int timeout_ms)
{
    if (!s->started || s->joined)
        return s->result;
    if (timeout_ms >= 0) {
        rs_wait_end(s, timeout_ms);
        rs_stop(s);
    }
    pthread_join(s->thread, NULL);
    s->joined = true;
    return s->result;
}

const char *replay_server_report(const struct replay_server *s)
{
    return s->report ? s->report : "";
}

enum replay_failure replay_server_failure(const struct replay_server *s)
{
    return s->kind;
}

int replay_server_failure_line(const struct replay_server *s)
{
    return s->fail_line;
}

void replay_server_free(struct replay_server *s)
{
    if (!s)
        return;
    if (s->started && !s->joined) {
        rs_stop(s);
        pthread_join(s->thread, NULL);
    }
    rs_close_conn(s);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->socket_path)
        unlink(s->socket_path);
    close(s->stop_rd);
    close(s->stop_wr);
    rs_reset_session(s);
    json_decref(s->fifo);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    replay_fixture_free(s->fx);
    free(s->socket_path);
    free(s->ids);
    free(s->marks);
    free(s->buf);
    free(s->report);
    free(s);
}
