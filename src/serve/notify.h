/* notify.h — systemd integration without libsystemd: sd_notify datagrams (READY=1, STATUS=, STOPPING=1,
 * WATCHDOG=1) to $NOTIFY_SOCKET, the watchdog interval from $WATCHDOG_USEC, and journald priority prefixes
 * ("<N>") when stderr is the journal ($JOURNAL_STREAM names stderr's device:inode). */
#ifndef SMMUCTL_SERVE_NOTIFY_H
#define SMMUCTL_SERVE_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Send `state` (e.g. "READY=1\nSTATUS=3 VMs, 3 connected") as one datagram to $NOTIFY_SOCKET (a path, or
 * "@name" for the abstract namespace). 1 when sent, 0 when not under systemd (unset), negative errno when
 * the socket is unusable. */
int sv_notify(const char *state);

/* The watchdog interval in microseconds when $WATCHDOG_USEC is set (and $WATCHDOG_PID, if set, is this
 * process); 0 otherwise. Send "WATCHDOG=1" at least every half of it. */
uint64_t sv_notify_watchdog_usec(void);

/* True when stderr is the systemd journal's stream ($JOURNAL_STREAM = "DEV:INO" of fd 2). */
bool sv_journal_stderr(void);

/* syslog priorities for log lines */
enum { SV_LOG_ERR = 3, SV_LOG_WARNING = 4, SV_LOG_NOTICE = 5, SV_LOG_INFO = 6, SV_LOG_DEBUG = 7 };

/* Write one log line to stderr: "<N>text\n" when journal is true, else "smmuctl serve: text\n".
 * Control characters in text are escaped (a line stays one line). */
void sv_log_line(bool journal, int priority, const char *text);

#endif
