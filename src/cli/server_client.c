/* server_client.c — the blocking HTTP/1.1 client of `smmuctl --server` (see server_client.h). */
#define _GNU_SOURCE
#include "cli/server_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SC_MAX_RESPONSE (64u << 20) /* the daemon's answers are small; a topology of a huge VM is < 1 MiB */

static long long sc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sc_resp_free(struct sc_resp *r)
{
    if (!r)
        return;
    json_decref(r->body);
    r->body = NULL;
}

/* Wait for fd to be ready for `events` until the deadline: 0, -ETIMEDOUT or -EINTR (stop set). */
static int sc_wait(int fd, short events, long long deadline, volatile sig_atomic_t *stop)
{
    for (;;) {
        if (stop && *stop)
            return -EINTR;
        long long left = deadline - sc_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, left > 250 ? 250 : (int)left); /* wake now and then: a signal may race the poll */
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* The value of header `name` in the header block [h, end) into buf ("" when absent). */
static void sc_header(const char *h, const char *end, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    buf[0] = 0;
    for (const char *p = h; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(eol - v);
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, v, vl);
            buf[vl] = 0;
            return;
        }
        p = eol + 2;
    }
}

/* Decode a chunked body in place; its new length, or -1 when malformed. */
static long sc_unchunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long n = strtoul(b + in, &end, 16);
        char *eol = memmem(b + in, len - in, "\r\n", 2);
        if (!eol || end == b + in)
            return -1;
        in = (size_t)(eol - b) + 2;
        if (n == 0)
            return (long)out;
        if (n > len - in)
            return -1;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
        if (in > len)
            return -1;
    }
}

int sc_request(const char *path, const char *method, const char *target, const char *body, int timeout_ms,
               volatile sig_atomic_t *stop, struct sc_resp *r, struct smmu_error *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    long long deadline = sc_now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    char *req = NULL, *buf = NULL;
    size_t blen = 0, bcap = 0;
    int fd = -1, rc;

    memset(r, 0, sizeof(*r));
    if (strlen(path) >= sizeof(sa.sun_path)) {
        smmu_error_set(e, -ENAMETOOLONG, "the daemon's socket path %s is too long for a unix socket", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        rc = -errno;
        smmu_error_set(e, rc, "socket: %s", strerror(errno));
        return rc;
    }
    /* a unix connect to a listening socket completes at once (the daemon's loop accepts it later) */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        smmu_error_set(e, rc, "cannot connect to the smmuctl daemon at unix:%s: %s (is `smmuctl serve --listen "
                       "unix:%s` running?)", path, strerror(errno), path);
        goto out;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int n = body ? asprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json"
                            "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                            method, target, strlen(body), body)
                 : asprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json"
                            "\r\n\r\n", method, target);
    if (n < 0) {
        req = NULL;
        rc = -ENOMEM;
        smmu_error_set(e, rc, "out of memory");
        goto out;
    }
    for (size_t off = 0; off < (size_t)n;) {
        if ((rc = sc_wait(fd, POLLOUT, deadline, stop)) < 0)
            goto io_err;
        ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0) {
            rc = -errno;
            smmu_error_set(e, rc, "sending to the smmuctl daemon at unix:%s: %s", path, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    /* read until the whole response is in (Content-Length, chunked) or the daemon closes */
    for (;;) {
        if (bcap - blen < 65536) {
            if (bcap > SC_MAX_RESPONSE) {
                rc = -EPROTO;
                smmu_error_set(e, rc, "the smmuctl daemon at unix:%s sent more than %u MiB", path, SC_MAX_RESPONSE >> 20);
                goto out;
            }
            char *nb = realloc(buf, bcap ? bcap * 2 : 65536);
            if (!nb) {
                rc = -ENOMEM;
                smmu_error_set(e, rc, "out of memory");
                goto out;
            }
            buf = nb;
            bcap = bcap ? bcap * 2 : 65536;
        }
        char *hend = blen ? memmem(buf, blen, "\r\n\r\n", 4) : NULL;
        if (hend) {
            char cl[32], te[32];
            sc_header(buf, hend + 2, "Content-Length", cl, sizeof(cl));
            sc_header(buf, hend + 2, "Transfer-Encoding", te, sizeof(te));
            size_t have = blen - (size_t)(hend + 4 - buf);
            if (cl[0] && !strcasestr(te, "chunked") && have >= strtoull(cl, NULL, 10))
                break;
            if (strcasestr(te, "chunked") && have >= 5 && !memcmp(buf + blen - 5, "0\r\n\r\n", 5))
                break;
        }
        if ((rc = sc_wait(fd, POLLIN, deadline, stop)) < 0)
            goto io_err;
        ssize_t got = recv(fd, buf + blen, bcap - blen - 1, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got < 0) {
            rc = -errno;
            smmu_error_set(e, rc, "reading from the smmuctl daemon at unix:%s: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        blen += (size_t)got;
    }
    buf[blen] = 0;
    {
        char *hend = memmem(buf, blen, "\r\n\r\n", 4);
        int st = 0;
        if (!hend || sscanf(buf, "HTTP/1.%*d %d", &st) != 1 || st < 100 || st > 599) {
            rc = -EPROTO;
            smmu_error_set(e, rc, "the smmuctl daemon at unix:%s %s", path,
                           blen ? "answered something that is not HTTP/1.1" : "closed the connection without an answer");
            goto out;
        }
        char cl[32], te[32];
        sc_header(buf, hend + 2, "Content-Length", cl, sizeof(cl));
        sc_header(buf, hend + 2, "Transfer-Encoding", te, sizeof(te));
        sc_header(buf, hend + 2, "Location", r->location, sizeof(r->location));
        sc_header(buf, hend + 2, "Smmuctl-Operation", r->operation, sizeof(r->operation));
        char *b = hend + 4;
        size_t bl = blen - (size_t)(b - buf);
        if (strcasestr(te, "chunked")) {
            long k = sc_unchunk(b, bl);
            if (k < 0) {
                rc = -EPROTO;
                smmu_error_set(e, rc, "the smmuctl daemon at unix:%s sent a malformed chunked body", path);
                goto out;
            }
            bl = (size_t)k;
        } else if (cl[0] && strtoull(cl, NULL, 10) < bl) {
            bl = strtoull(cl, NULL, 10);
        }
        r->status = st;
        r->body = bl ? json_loadb(b, bl, JSON_DECODE_ANY, NULL) : NULL;
        if (r->body && !json_is_object(r->body)) {
            json_decref(r->body);
            r->body = NULL;
        }
    }
    rc = 0;
    goto out;
io_err:
    if (rc == -EINTR)
        smmu_error_set(e, rc, "interrupted");
    else if (rc == -ETIMEDOUT)
        smmu_error_set(e, rc, "the smmuctl daemon at unix:%s did not answer %s %s within %.3g s", path, method, target,
                       timeout_ms / 1000.0);
    else
        smmu_error_set(e, rc, "talking to the smmuctl daemon at unix:%s: %s", path, strerror(-rc));
out:
    if (fd >= 0)
        close(fd);
    free(req);
    free(buf);
    return rc;
}
