/* client_int.h — private to src/qmp/: the client object shared by the files of the QMP client.
 *
 * The client is split by concern: client.c (lifetime, pinning while dispatching), connect.c (unix/tcp
 * connect, teardown), session.c (greeting, capability negotiation), wire.c (output queue with SCM_RIGHTS fds,
 * reading, decoding and dispatch), calls.c (ids, pending calls, replies, timeouts), events.c (subscriptions),
 * record.c (the transcript recorder). Reentrancy: callbacks may issue calls, close or free the client;
 * `busy` pins the object while dispatching and a free requested meanwhile is finished when the last frame
 * unwinds (qmpc_hold / qmpc_release).
 */
#ifndef SMMUCTL_QMP_CLIENT_INT_H
#define SMMUCTL_QMP_CLIENT_INT_H

#include <netdb.h>
#include <time.h>
#include "smmuctl/qmp.h"
#include "smmuctl/qmp_decoder.h"

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
    json_t *args;             /* kept only while an observer is set */
    struct timespec sent;
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
    qmp_call_observer observer;
    void *observer_payload;
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

/* ---- lifetime and logging (client.c) ---- */
void qmpc_log(qmp_client *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void qmpc_hold(qmp_client *c);
bool qmpc_release(qmp_client *c);

/* ---- recorder (record.c) ---- */
void qmpc_record(qmp_client *c, const char *prefix, const char *data, size_t len);

/* ---- event subscriptions (events.c) ---- */
void qmpc_subs_sweep(qmp_client *c);
void qmpc_subs_dispatch(qmp_client *c, const char *event, json_t *data, json_t *msg);

/* ---- calls, ids and replies (calls.c) ---- */
void qmpc_pending_unlink(qmp_client *c, struct qmp_pending *p);
void qmpc_pending_fail_all(qmp_client *c, int code, const char *why);
int qmpc_call_submit(qmp_client *c, const char *cmd, json_t *args, const int *fds, size_t nfds, int timeout_ms,
                    qmp_reply_cb cb, void *payload);
void qmpc_handle_reply(qmp_client *c, json_t *msg);

/* ---- connection set-up and teardown (connect.c) ---- */
void qmpc_conn_release_io(qmp_client *c);
void qmpc_conn_fail(qmp_client *c, int code, const struct smmu_error *why);
void qmpc_conn_failf(qmp_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- wire: queued output with fds, reading and decoding (wire.c) ---- */
void qmpc_out_free_all(qmp_client *c);
int qmpc_write_flush(qmp_client *c);
void qmpc_write_cb(evutil_socket_t fd, short what, void *arg);
int qmpc_out_queue(qmp_client *c, const char *text, const int *fds, size_t nfds);
void qmpc_read_cb(evutil_socket_t fd, short what, void *arg);

/* ---- session: greeting and capability negotiation (session.c) ---- */
void qmpc_handle_greeting(qmp_client *c, json_t *msg, const char *raw, size_t raw_len);

#endif
