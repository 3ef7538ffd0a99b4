/* smmuctl/qmp_reconnect.h — connect (again) to a QEMU monitor with backoff, on the event loop.
 *
 * Attempts a new client on `addr` at once, then after 100 ms, doubling to 5 s, each delay jittered by up to
 * ±25 % (DESIGN §7: many VMs that lost QEMU together do not retry in lock-step), until an attempt reaches
 * READY or the deadline passes. Timers only: it never sleeps and never runs the loop.
 *
 * Ownership: the new client is handed to `done` (err 0) and the caller owns it from then on. On failure
 * (err < 0: the last attempt's error, e borrowed for the callback) no client is left behind.
 */
#ifndef SMMUCTL_QMP_RECONNECT_H
#define SMMUCTL_QMP_RECONNECT_H

#include "smmuctl/qmp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qmp_reconnect qmp_reconnect;

struct qmp_reconnect_opts {
    unsigned version;              /* QMP_RECONNECT_OPTS_VERSION */
    const char *addr;              /* PATH | unix:PATH | tcp:HOST:PORT (copied) */
    struct qmp_client_opts client; /* for every attempt's client */
    int deadline_ms;               /* give up once this long has passed since start; <0: never */
    int initial_ms;                /* first delay; 0 = 100 */
    int max_ms;                    /* delay cap; 0 = 5000 */
};
#define QMP_RECONNECT_OPTS_VERSION 1
#define QMP_RECONNECT_OPTS_INIT {QMP_RECONNECT_OPTS_VERSION, NULL, QMP_CLIENT_OPTS_INIT, -1, 0, 0}

/* err 0: c is READY (caller owns it; its state callback is unset). err < 0: c is NULL. */
typedef void (*qmp_reconnect_cb)(int err, qmp_client *c, const struct smmu_error *e, void *payload);

/* Start; returns 0 (cb runs once from the loop, never from inside this call) or -ENOMEM / -EINVAL. *out
 * (may be NULL) is valid until cb runs or qmp_reconnect_cancel. */
int qmp_reconnect_start(struct event_base *base, const struct qmp_reconnect_opts *o, qmp_reconnect_cb cb,
                        void *payload, qmp_reconnect **out);
/* Stop trying: frees everything; cb is not called. */
void qmp_reconnect_cancel(qmp_reconnect *r);
/* The attempt in progress (its qmp_client_state says connecting / greeting / negotiating), or NULL while
 * waiting between attempts. Borrowed. */
qmp_client *qmp_reconnect_client(const qmp_reconnect *r);
/* Attempts made so far (tests). */
unsigned qmp_reconnect_attempts(const qmp_reconnect *r);

#ifdef __cplusplus
}
#endif
#endif
