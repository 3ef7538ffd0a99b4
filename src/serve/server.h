/* server.h — the daemon's HTTP transport (DESIGN §7 "Transport", "Routes", "Events"): evhttp on a unix
 * socket, every §7 route dispatched through api.h to a backend (backend.h), operations with ?wait= and
 * 202 + Location, Idempotency-Key, the server-sent event stream, /metrics, /healthz, /readyz, and the limits
 * (body, headers, idle and slow clients, connections). One event_base; nothing blocks.
 *
 * Status codes (§7): 400 malformed (bad JSON, unknown member, wrong member type, bad query), 404 no such
 * VM / operation / route, 405 with Allow, 409 conflict (VM registered with another body, busy VM),
 * 413 body over max_body (libevent's own reply), 422 bad input or a refused plan (nothing sent) and an
 * Idempotency-Key reused for another request, 429 the VM's queue is full, 502 QEMU refused and everything
 * was rolled back, 503 QEMU unreachable or the daemon shutting down.
 *
 * Operations that end `incomplete` (an unplug still pending at its timeout, a rollback that could not
 * finish) are answered 202 + Location like a running one: the operation's state says what happened.
 *
 * Backend events: `event` callbacks become §7 events (the backend reports vm.connected & co. itself);
 * the server adds `operation.finished` ({"operation","verb","state"}) when an operation reaches a final
 * state. Ended operations that carried an Idempotency-Key are kept in <state-dir>/operations/<id>.json for
 * the key's 24 h, so a repeat after a restart (or after the 1 h in memory) returns the first operation. */
#ifndef SMMUCTL_SERVE_SERVER_H
#define SMMUCTL_SERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

#include "serve/backend.h"
#include "smmuctl/error.h"

struct sv_server;

/* A log line (priority: SV_LOG_* of notify.h). text has no newline. */
typedef void (*sv_log_fn)(void *arg, int priority, const char *text);

struct sv_server_opts {
    const char *listen_path;  /* the unix socket (without "unix:") */
    const char *group;        /* NULL: mode 0600; else 0660 and this group */
    const char *state_dir;    /* idempotency.json, operations/ */
    double wait_default_s;    /* ?wait default for mutating requests (30) */
    double wait_max_s;        /* largest ?wait accepted (3600) */
    double idle_timeout_s;    /* idle or slow client cut (30) */
    double keepalive_s;       /* SSE comment line period (15) */
    size_t max_body;          /* bytes (1 MiB) */
    size_t max_headers;       /* bytes of request line + headers (16 KiB) */
    int max_connections;      /* beyond this, new connections wait in the listen backlog (256) */
    size_t stream_max_buffered; /* an event stream whose client lags this far behind is ended (4 MiB) */
    size_t events_ring;       /* events kept for Last-Event-ID (10,000) */
    int shutdown_deadline_ms; /* in-flight work at SIGTERM (10,000) */
    sv_log_fn log;            /* NULL: sv_log_line(false, …) */
    void *log_arg;
};

/* The defaults above. */
void sv_server_opts_default(struct sv_server_opts *o);

/* Bind the socket (a stale socket file is replaced; a live one — something accepts on it — is refused with
 * -EADDRINUSE), open the Idempotency-Key store and start serving. The backend is borrowed (a server that
 * starts sets its events; a refused one leaves them) and must outlive the server. The process must ignore
 * SIGPIPE (a client that left mid-reply is then a write error). 0 or a negative errno with err filled. */
int sv_server_new(struct sv_server **out, struct event_base *base, struct sv_backend *b,
                  const struct sv_server_opts *o, struct smmu_error *err);

/* SIGTERM: stop accepting (the socket file is removed), answer new mutating requests 503, let the backend
 * finish in-flight work up to the deadline, answer every waiting request with its operation's state, end
 * the event streams, then call done (once). */
void sv_server_shutdown(struct sv_server *s, void (*done)(void *arg), void *arg);

/* Connections open now (tests; bounded by max_connections). */
int sv_server_connections(const struct sv_server *s);
/* Counts of registered VMs by state, for STATUS= and smmuctl_vms. */
void sv_server_vm_counts(struct sv_server *s, int *connecting, int *connected, int *disconnected);
/* Called (if set) whenever a VM changes state: the daemon refreshes STATUS=. */
void sv_server_on_vm_state(struct sv_server *s, void (*fn)(void *arg), void *arg);

/* Closes everything (open connections too); removes the socket file if still bound. */
void sv_server_free(struct sv_server *s);

#endif
