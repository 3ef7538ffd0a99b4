/* qmp_peer.h — the QEMU end of a socketpair, driven by hand, for client tests that need exact control of what
 * the peer writes and when (reentrancy, partial chunks, fds). Every wait is bounded (QMP_PEER_MS). */
#ifndef SMMU_TEST_QMP_PEER_H
#define SMMU_TEST_QMP_PEER_H

#include <stdbool.h>
#include <event2/event.h>
#include "smmuctl/qmp.h"

#define QMP_PEER_MS 5000

/* QEMU 11's greeting, as QEMU writes it (CRLF). */
extern const char QMP_PEER_GREETING[];

/* What the client's state callback reported. */
struct qmp_peer_state {
    bool done;
    int calls, err;
    char msg[1024];
};
void qmp_peer_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload);

/* Write text to the peer end (asserts it all went). */
void qmp_peer_write(int fd, const char *text);
/* Read one line the client sent (bounded) and return its "id" (static buffer). */
const char *qmp_peer_read_id(int fd);
/* A READY client on a socketpair (greeting and qmp_capabilities done); *peer gets QEMU's end. */
qmp_client *qmp_peer_ready_client(struct event_base *base, int *peer, struct qmp_peer_state *st);
/* Open fds of this process (for leak checks). */
int qmp_peer_count_fds(void);

#endif
