/* daemon.h — the `smmuctl serve` process around the server (DESIGN §7 "Process"): signals, systemd
 * notification and logs, on one event loop.
 *
 *   SIGTERM/SIGINT  STOPPING=1, stop accepting, in-flight work gets up to 10 s (the backend journals the rest),
 *                   waiting requests answered, exit 0; a second signal meanwhile is logged and changes nothing
 *   SIGHUP          reopen the log file (--log FILE; logrotate's copy-less rotation), or note it on stderr
 *   READY=1         once the socket listens and the registrations (the backend's and the --qmp/--vm pairs) are
 *                   loaded — so a unit ordered After= it can connect at once
 *   STATUS=         "N VMs: a connected, b connecting, c disconnected", refreshed as VMs change state
 *   WATCHDOG=1      every half of $WATCHDOG_USEC while the loop runs
 * Log lines carry "<N>" priority prefixes when stderr is the journal ($JOURNAL_STREAM). */
#ifndef SMMUCTL_SERVE_DAEMON_H
#define SMMUCTL_SERVE_DAEMON_H

#include <event2/event.h>

#include "serve/backend.h"
#include "serve/server.h"

struct sv_daemon_vm {
    const char *name, *qmp;
};

struct sv_daemon_opts {
    struct sv_server_opts server; /* log/log_arg are the daemon's own */
    const struct sv_daemon_vm *vms; /* --qmp ADDR --vm NAME pairs, registered before READY=1 */
    size_t nvms;
    const char *log_path;          /* NULL: stderr */
    int verbose;                   /* -1 notices and worse, 0 + info, 1 + debug */
};

/* The log sink the daemon uses (also for the backend): priority is SV_LOG_*. */
void sv_daemon_log(int priority, const char *text);
/* Set the verbosity and the journal flag sv_daemon_log uses (sv_daemon_run does it too). */
void sv_daemon_log_setup(int verbose);

/* Run until SIGTERM/SIGINT. The backend is borrowed. Returns the exit code: 0 after a clean stop, 2 when
 * the daemon cannot start (socket, state dir, a pair conflicting with a registration), said on the log. */
int sv_daemon_run(struct event_base *base, struct sv_backend *b, const struct sv_daemon_opts *o);

#endif
