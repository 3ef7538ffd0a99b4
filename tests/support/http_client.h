/* http_client.h — a small HTTP/1.1 client over a unix socket for the daemon's tests. It runs on the test's
 * event_base: waiting for a reply pumps that loop (so an in-process server answers meanwhile), until the
 * condition holds or a bound passes (a failure, not a measurement). Content-Length, chunked and
 * until-close bodies; a streamed body (SSE) can be read while it grows. */
#ifndef SMMU_HTTP_CLIENT_H
#define SMMU_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

struct htc;

struct htc_resp {
    int status;        /* 0 when nothing (complete) arrived */
    char *headers;     /* the header lines, "\r\n"-separated */
    char *body;        /* NUL-terminated */
    size_t body_len;
};

/* Connect to the unix socket at path; NULL (errno) on failure. base may be NULL for a server in another
 * process (waits then poll the socket). */
struct htc *htc_connect(struct event_base *base, const char *path);
void htc_close(struct htc *c);
/* Write all of data (blocking; test requests are small). */
int htc_send(struct htc *c, const void *data, size_t len);
/* A whole request: METHOD TARGET HTTP/1.1 with Host, the extra header lines (each ending in "\r\n", may be
 * NULL), Content-Length for body (NULL: none). */
int htc_send_request(struct htc *c, const char *method, const char *target, const char *extra, const char *body);
/* Wait for the next whole response; 0, -ETIMEDOUT, or -ECONNRESET when the server closed before it was whole.
 * r is filled (free with htc_resp_free). */
int htc_read_response(struct htc *c, struct htc_resp *r, double bound_s);
/* A streamed response: wait for its header (0) — then htc_body() grows as the loop is pumped. */
int htc_read_head(struct htc *c, struct htc_resp *r, double bound_s);
/* Wait until the body received so far contains needle (0), -ETIMEDOUT, -ECONNRESET (closed, not found). */
int htc_wait_body(struct htc *c, const char *needle, double bound_s);
const char *htc_body(const struct htc *c);
/* Wait until the server closes the connection: 0, or -ETIMEDOUT. */
int htc_wait_closed(struct htc *c, double bound_s);
/* Pump the loop once (at most ~20 ms). */
void htc_pump(struct event_base *base);
/* The value of a response header (case-insensitive name) into buf; NULL when absent. */
const char *htc_header(const struct htc_resp *r, const char *name, char *buf, size_t len);
void htc_resp_free(struct htc_resp *r);

/* One request on its own connection ("Connection: close"): status (and r filled), or a negative errno. */
int htc_request(struct event_base *base, const char *sock, const char *method, const char *target,
                const char *extra, const char *body, struct htc_resp *r);

#endif
