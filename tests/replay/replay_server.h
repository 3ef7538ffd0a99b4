/* replay_server.h — a fake QEMU monitor that plays a QMP transcript fixture (qmp-fixtures/README.md).
 *
 * The server runs in its own thread. It walks the fixture in order: S: lines are sent (CRLF added, byte for
 * byte unless an id must be substituted), C: lines are awaited and compared, directives act. The first
 * difference stops the replay and is kept as a readable report (fixture file:line, expected vs actual).
 * Every wait is bounded (per awaited line, default 5 s), so a broken client never hangs a test.
 */
#ifndef SMMU_REPLAY_SERVER_H
#define SMMU_REPLAY_SERVER_H

#include "smmuctl/error.h"

struct replay_server;

struct replay_opts {
    int line_timeout_ms;   /* bound for each wait on the client (a C: line, a close, a connection); 0 = 5000 */
    int end_timeout_ms;    /* after the last line: how long to watch for extra messages / the client's close
                              when nobody calls replay_server_wait with a timeout; 0 = 5000 */
};
#define REPLAY_OPTS_INIT {0, 0}

enum replay_failure {
    REPLAY_OK = 0,
    REPLAY_FAIL_UNEXPECTED,   /* the client sent something other than the expected C: line (or did not close) */
    REPLAY_FAIL_MISSING,      /* an expected message/close/connection did not come: client closed, or timeout */
    REPLAY_FAIL_EXTRA,        /* the client sent a message after the end of the fixture (or before a !close) */
    REPLAY_FAIL_FDS,          /* the message came with the wrong number of SCM_RIGHTS fds */
    REPLAY_FAIL_IO,           /* a socket error, or sending while no client is connected */
};

/* Load the fixture and start serving it.
 * socket_path NULL: a socketpair; *client_fd receives the client end (caller owns it, close-on-exec).
 * socket_path set: listen on that unix socket (the path appears only once it is listening, so a client may
 * connect as soon as it exists; a stale socket there is replaced) and accept one client; client_fd may be NULL.
 * Returns 0, or a negative errno with err filled (bad fixture: -EINVAL "file:line: what is wrong").
 * A fixture with !accept needs socket_path. */
int replay_server_start_opts(struct replay_server **out, const char *fixture_path, const char *socket_path,
                             int *client_fd, const struct replay_opts *opts, struct smmu_error *err);
int replay_server_start(struct replay_server **out, const char *fixture_path, const char *socket_path,
                        int *client_fd);

/* Wait for the replay to finish. timeout_ms >= 0: wait at most that long for the server to reach the end of
 * the fixture, then stop it (messages the client already sent are still checked for extras; a replay stopped
 * before its end fails as "missing"). timeout_ms < 0: let the server finish by itself (the client closes, or
 * end_timeout_ms passes) — what a server in front of a separate process wants.
 * Returns 0 when the whole fixture was played exactly, -EBADMSG on a difference, -ETIMEDOUT when stopped before
 * the end, -EIO on a socket error. May be called again (returns the same result). */
int replay_server_wait(struct replay_server *s, int timeout_ms);

/* Wait (at most timeout_ms) until the server has played every line of the fixture, or stopped on a failure,
 * without stopping it. 0 when it has, -ETIMEDOUT otherwise. Call it before closing a client whose last
 * messages are S: lines it does not wait for (events after the last reply), so closing does not race them. */
int replay_server_wait_played(struct replay_server *s, int timeout_ms);

/* Read these after replay_server_wait() (the server thread writes them until then).
 * "" when the replay matched; otherwise the report (valid until replay_server_free). */
const char *replay_server_report(const struct replay_server *s);
enum replay_failure replay_server_failure(const struct replay_server *s);
/* Fixture line of the failure (0 when none, or at the end of the fixture). */
int replay_server_failure_line(const struct replay_server *s);

/* Stops the server if still running, closes its sockets, removes the socket file, frees. */
void replay_server_free(struct replay_server *s);

#endif
