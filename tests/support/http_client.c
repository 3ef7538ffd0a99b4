/* http_client.c — see http_client.h. */
#define _GNU_SOURCE
#include "http_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct htc {
    struct event_base *base;
    int fd;
    bool closed;
    char *raw;          /* received, not yet consumed */
    size_t raw_len, raw_cap;
    /* the response being read */
    bool have_head, chunked, done;
    long content_length; /* -1: until close (or chunked) */
    int status;
    char *headers;
    char *body;
    size_t body_len, body_cap;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct htc *htc_connect(struct event_base *base, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct htc *c;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    c->base = base;
    c->fd = fd;
    c->content_length = -1;
    return c;
}

void htc_close(struct htc *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->raw);
    free(c->headers);
    free(c->body);
    free(c);
}

int htc_send(struct htc *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->base)
                htc_pump(c->base); /* let the server read */
            else
                poll(&(struct pollfd){ .fd = c->fd, .events = POLLOUT }, 1, 20);
            continue;
        }
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int htc_send_request(struct htc *c, const char *method, const char *target, const char *extra, const char *body)
{
    char *req = NULL;
    int n, r;
    if (body)
        n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\n%sContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", method, target, extra ? extra : "", strlen(body), body);
    else
        n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", method, target, extra ? extra : "");
    if (n < 0)
        return -ENOMEM;
    r = htc_send(c, req, (size_t)n);
    free(req);
    return r;
}

static void wake(evutil_socket_t fd, short what, void *arg)
{
}

void htc_pump(struct event_base *base)
{
    struct timeval tv = {0, 20000};
    struct event *t = evtimer_new(base, wake, NULL);
    evtimer_add(t, &tv);
    event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

/* Read what the socket has (non-blocking). */
static void fill(struct htc *c)
{
    for (;;) {
        char buf[16384];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            c->closed = true;
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                c->closed = true;
            return;
        }
        if (c->raw_len + (size_t)n + 1 > c->raw_cap) {
            c->raw_cap = (c->raw_len + (size_t)n + 1) * 2;
            c->raw = realloc(c->raw, c->raw_cap);
        }
        memcpy(c->raw + c->raw_len, buf, (size_t)n);
        c->raw_len += (size_t)n;
        c->raw[c->raw_len] = 0;
    }
}

static void consume(struct htc *c, size_t n)
{
    memmove(c->raw, c->raw + n, c->raw_len - n);
    c->raw_len -= n;
    if (c->raw)
        c->raw[c->raw_len] = 0;
}

static void body_add(struct htc *c, const char *p, size_t n)
{
    if (c->body_len + n + 1 > c->body_cap) {
        c->body_cap = (c->body_len + n + 1) * 2;
        c->body = realloc(c->body, c->body_cap);
    }
    memcpy(c->body + c->body_len, p, n);
    c->body_len += n;
    c->body[c->body_len] = 0;
}

static const char *find_header(const char *headers, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = headers; p && *p;) {
        const char *e = strstr(p, "\r\n");
        size_t ll = e ? (size_t)(e - p) : strlen(p);
        if (ll > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(buf, len, "%.*s", (int)(ll - (size_t)(v - p)), v);
            return buf;
        }
        p = e ? e + 2 : NULL;
    }
    return NULL;
}

/* Advance the parser over what was received. */
static void parse(struct htc *c)
{
    if (!c->have_head) {
        char *end = c->raw ? strstr(c->raw, "\r\n\r\n") : NULL;
        char buf[64];
        const char *eol;
        if (!end)
            return;
        *end = 0;
        if (sscanf(c->raw, "HTTP/1.%*d %d", &c->status) != 1)
            c->status = -1;
        eol = strstr(c->raw, "\r\n");
        free(c->headers);
        c->headers = strdup(eol ? eol + 2 : "");
        c->have_head = true;
        c->chunked = find_header(c->headers, "Transfer-Encoding", buf, sizeof(buf)) && strcasestr(buf, "chunked");
        c->content_length = find_header(c->headers, "Content-Length", buf, sizeof(buf)) ? atol(buf) : -1;
        consume(c, (size_t)(end - c->raw) + 4);
        free(c->body);
        c->body = calloc(1, 1);
        c->body_len = 0;
        c->body_cap = 1;
    }
    if (c->done)
        return;
    if (c->chunked) {
        for (;;) {
            char *eol = c->raw ? strstr(c->raw, "\r\n") : NULL;
            unsigned long n;
            if (!eol)
                return;
            n = strtoul(c->raw, NULL, 16);
            if (c->raw_len < (size_t)(eol - c->raw) + 2 + n + 2)
                return;
            body_add(c, eol + 2, n);
            consume(c, (size_t)(eol - c->raw) + 2 + n + 2);
            if (n == 0) {
                c->done = true;
                return;
            }
        }
    } else if (c->content_length >= 0) {
        size_t want = (size_t)c->content_length - c->body_len, n = c->raw_len < want ? c->raw_len : want;
        body_add(c, c->raw, n);
        consume(c, n);
        if (c->body_len == (size_t)c->content_length)
            c->done = true;
    } else {
        body_add(c, c->raw ? c->raw : "", c->raw_len);
        consume(c, c->raw_len);
        if (c->closed)
            c->done = true;
    }
}

/* Pump until cond(c) or the bound; 0, -ETIMEDOUT, -ECONNRESET. */
static int wait_for(struct htc *c, bool (*cond)(struct htc *c, const void *arg), const void *arg, double bound_s)
{
    double end = now_s() + bound_s;
    for (;;) {
        fill(c);
        parse(c);
        if (cond(c, arg))
            return 0;
        if (c->closed)
            return -ECONNRESET;
        if (now_s() > end)
            return -ETIMEDOUT;
        if (c->base)
            htc_pump(c->base);
        else
            poll(&(struct pollfd){ .fd = c->fd, .events = POLLIN }, 1, 20);
    }
}

static bool have_head(struct htc *c, const void *arg) { return c->have_head; }
static bool have_all(struct htc *c, const void *arg) { return c->have_head && c->done; }
static bool have_needle(struct htc *c, const void *arg)
{
    return c->have_head && c->body && strstr(c->body, arg);
}

static void hand_over(struct htc *c, struct htc_resp *r)
{
    r->status = c->status;
    r->headers = c->headers ? strdup(c->headers) : strdup("");
    r->body = c->body ? strdup(c->body) : strdup("");
    r->body_len = c->body_len;
}

int htc_read_response(struct htc *c, struct htc_resp *r, double bound_s)
{
    int rc;
    memset(r, 0, sizeof(*r));
    rc = wait_for(c, have_all, NULL, bound_s);
    if (rc == -ECONNRESET && c->have_head && !c->chunked && c->content_length < 0)
        rc = 0; /* until-close body */
    if (rc == 0) {
        hand_over(c, r);
        c->have_head = c->done = false; /* ready for the next response on this connection */
        c->status = 0;
    }
    return rc;
}

int htc_read_head(struct htc *c, struct htc_resp *r, double bound_s)
{
    int rc;
    memset(r, 0, sizeof(*r));
    rc = wait_for(c, have_head, NULL, bound_s);
    if (rc == 0) {
        r->status = c->status;
        r->headers = strdup(c->headers);
        r->body = strdup("");
    }
    return rc;
}

int htc_wait_body(struct htc *c, const char *needle, double bound_s)
{
    return wait_for(c, have_needle, needle, bound_s);
}

const char *htc_body(const struct htc *c)
{
    return c->body ? c->body : "";
}

static bool is_closed(struct htc *c, const void *arg) { return c->closed; }

int htc_wait_closed(struct htc *c, double bound_s)
{
    int rc = wait_for(c, is_closed, NULL, bound_s);
    return rc == -ECONNRESET ? 0 : rc;
}

const char *htc_header(const struct htc_resp *r, const char *name, char *buf, size_t len)
{
    return find_header(r->headers, name, buf, len);
}

void htc_resp_free(struct htc_resp *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

int htc_request(struct event_base *base, const char *sock, const char *method, const char *target,
                const char *extra, const char *body, struct htc_resp *r)
{
    char hdrs[4096];
    struct htc *c = htc_connect(base, sock);
    int rc;
    memset(r, 0, sizeof(*r));
    if (!c)
        return -errno;
    snprintf(hdrs, sizeof(hdrs), "%sConnection: close\r\n", extra ? extra : "");
    rc = htc_send_request(c, method, target, hdrs, body);
    if (rc == 0)
        rc = htc_read_response(c, r, 30);
    htc_close(c);
    return rc < 0 ? rc : r->status;
}
