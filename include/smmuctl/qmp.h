/* smmuctl/qmp.h — asynchronous QMP client on libevent.
 *
 * One client = one connection to one QEMU monitor. Everything happens on the caller's event_base; callbacks
 * run from the loop. Every command carries an id (short decimal strings "1", "2", …); replies are routed by
 * id in any order; a reply with an unknown id is logged (debug) and dropped; an error without an id (QEMU
 * could not parse our bytes) fails every pending call with -EPROTO. Events are delivered to subscribers
 * filtered by name and `data.device`, whenever they arrive — also before the reply of the command that
 * caused them, so register a subscription before sending the command.
 *
 * Reply contract (qmp_reply_cb):
 *   success:      err == 0,           ret = the "return" value (borrowed; json_incref to keep)
 *   QMP error:    err == -EIO,        ret = NULL, e->qmp_class / e->qmp_desc set
 *   transport:    err == -ETIMEDOUT (per-command timeout) | -ECONNRESET (closed) | -EPROTO | -EMSGSIZE
 *                 | -ECANCELED (client freed), ret = NULL, e->message set
 * Every call gets exactly one callback, unless qmp_call() itself returned an error.
 *
 * Callbacks may free the client (qmp_client_free) or issue new calls; the client guards against reentrancy.
 *
 * Contracts: nothing here blocks or runs the event loop; every function returns at once (connect and calls
 * report through their callbacks). Returned pointers (greeting, base) are borrowed from the client and live as
 * long as it does. JSON handed to a callback is borrowed for the callback's duration; `args` given to
 * qmp_call is stolen, also on failure.
 */
#ifndef SMMUCTL_QMP_H
#define SMMUCTL_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>
#include <event2/event.h>
#include "smmuctl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qmp_client qmp_client;
typedef struct qmp_sub qmp_sub;

enum qmp_state {
    QMP_STATE_IDLE = 0,     /* not connected */
    QMP_STATE_CONNECTING,   /* socket connect in progress */
    QMP_STATE_GREETING,     /* connected, waiting for {"QMP":…} */
    QMP_STATE_NEGOTIATING,  /* qmp_capabilities sent */
    QMP_STATE_READY,        /* commands may flow */
    QMP_STATE_CLOSED,       /* disconnected or failed; pending calls have been failed */
};

/* A parsed monitor address: PATH | unix:PATH | tcp:HOST:PORT. */
struct qmp_addr {
    enum { QMP_ADDR_UNIX, QMP_ADDR_TCP } kind;
    char path[108];        /* unix: socket path as given */
    char host[256];        /* tcp */
    char port[16];         /* tcp */
};
int qmp_addr_parse(const char *s, struct qmp_addr *out, struct smmu_error *err);
/* Canonical text ("unix:/abs/path" with the path made absolute and normalised, or "tcp:HOST:PORT"). */
int qmp_addr_canonical(const struct qmp_addr *a, char *buf, size_t len);

struct qmp_greeting {
    int major, minor, micro;
    char package[128];
    bool oob;              /* server offers the oob capability */
};

typedef void (*qmp_reply_cb)(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload);
typedef void (*qmp_event_cb)(qmp_client *c, const char *event, json_t *data, json_t *msg, void *payload);
/* Connection result (err 0: READY) and later disconnects (err -ECONNRESET / -EPROTO / -EMSGSIZE). */
typedef void (*qmp_state_cb)(qmp_client *c, int err, const struct smmu_error *e, void *payload);
/* Log sink for debug/warning lines from the client (level: 0 debug, 1 info, 2 warning). */
typedef void (*qmp_log_fn)(int level, const char *msg, void *payload);

struct qmp_client_opts {
    unsigned version;            /* QMP_CLIENT_OPTS_VERSION */
    int connect_timeout_ms;      /* socket connect + greeting + negotiation; 0 = 10000 */
    int command_timeout_ms;      /* default per-command timeout; 0 = 10000, <0 = none */
    size_t max_message;          /* 0 = QMP_MAX_MESSAGE */
    bool negotiate_oob;          /* enable "oob" when QEMU offers it (default false) */
    FILE *record;                /* if set, every message in both directions is appended (fixture format) */
    qmp_log_fn log;              /* optional */
    void *log_payload;
    bool log_traffic;            /* also log every message both ways at level 0 ("qmp -> …" / "qmp <- …", cut) */
};
#define QMP_CLIENT_OPTS_VERSION 1
#define QMP_CLIENT_OPTS_INIT {QMP_CLIENT_OPTS_VERSION, 0, 0, 0, false, NULL, NULL, NULL}

int qmp_client_new(qmp_client **out, struct event_base *base, const struct qmp_client_opts *opts);
/* Fails all pending calls with -ECANCELED (callbacks run), closes the socket, frees. Safe from callbacks. */
void qmp_client_free(qmp_client *c);

/* Start connecting; `cb` is called once with the outcome, and again on every later disconnect.
 * A peer that accepts but stays silent gets a greeting timeout whose message says another client may hold
 * the monitor; a peer that sends something other than a QMP greeting gets -EPROTO "not a QMP monitor". */
int qmp_client_connect(qmp_client *c, const char *addr, qmp_state_cb cb, void *payload);
/* The same over an already connected stream socket (tests: socketpair); the client takes ownership. */
int qmp_client_connect_fd(qmp_client *c, int fd, qmp_state_cb cb, void *payload);
/* Replace the state callback (NULL: none). */
void qmp_client_on_state(qmp_client *c, qmp_state_cb cb, void *payload);
/* Close the connection: pending calls fail with -ECONNRESET, subscribers are told (event NULL). */
void qmp_client_close(qmp_client *c);

enum qmp_state qmp_client_state(const qmp_client *c);
const struct qmp_greeting *qmp_client_greeting(const qmp_client *c);
struct event_base *qmp_client_base(const qmp_client *c);
/* The connected socket (for SO_PEERCRED and the like; borrowed: never close it), or -1 when not connected. */
int qmp_client_socket_fd(const qmp_client *c);
/* The QEMU instance behind a unix socket: the peer's pid (SO_PEERCRED) and that process's start time
 * (/proc/PID/stat field 22, clock ticks since boot; 0 if unreadable), which together survive pid reuse.
 * Returns 0, -ENOTCONN, or the getsockopt errno (a tcp socket has no peer credentials). Never blocks. */
struct qmp_peer {
    int pid;
    unsigned long long start_time;
};
int qmp_client_peer(const qmp_client *c, struct qmp_peer *out);
/* Number of calls awaiting a reply. */
size_t qmp_client_pending(const qmp_client *c);

/* Send `cmd` with `args` (stolen; may be NULL) and optional fds (sent with SCM_RIGHTS together with this
 * command's bytes; the caller keeps its fds open, the kernel duplicates them). timeout_ms: 0 = default,
 * <0 = none. Returns 0 and queues, or -ENOTCONN / -EINVAL (fds on a tcp socket) without calling cb. */
int qmp_call(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, int timeout_ms,
             qmp_reply_cb cb, void *payload);

/* Observe every call's outcome on this client (one observer; NULL removes it): called once per call that was
 * queued, just before that call's own callback, with the command, its arguments as sent (borrowed; NULL when
 * none), the outcome as the callback gets it (err, ret) and the seconds since it was queued. The daemon keeps
 * a VM's facts exact from what QEMU confirmed, and measures round trips, with it. It must not free the client. */
typedef void (*qmp_call_observer)(qmp_client *c, const char *cmd, const json_t *args, int err, const json_t *ret,
                                  double seconds, void *payload);
void qmp_client_observe(qmp_client *c, qmp_call_observer fn, void *payload);

/* Subscribe to events named `event` (NULL = all) whose data.device equals `device` (NULL = any).
 * On disconnect the callback is called once with event == NULL and data == NULL.
 * The subscription lives until qmp_unsubscribe() or qmp_client_free(). */
int qmp_subscribe(qmp_client *c, const char *event, const char *device, qmp_event_cb cb, void *payload,
                  qmp_sub **out);
void qmp_unsubscribe(qmp_sub *s);

/* ---- transcript recorder (fixture format, see qmp-fixtures/README.md) ---- */
/* Write a `# …` comment line to the record file, if any. */
void qmp_client_record_comment(qmp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
