/* listen.h — bind and listen on the daemon's unix socket (DESIGN §7 "Transport"): mode 0600 (umask 0177
 * around bind, so it is never wider), or 0660 and the group with `--group`. An existing socket file that
 * nobody accepts on (a daemon that was killed) is replaced; one that accepts (another daemon) is refused
 * with -EADDRINUSE; any other file is left alone (-EEXIST). */
#ifndef SMMUCTL_SERVE_LISTEN_H
#define SMMUCTL_SERVE_LISTEN_H

#include "smmuctl/error.h"

/* *fd: a non-blocking listening socket (close-on-exec). 0 or a negative errno with err saying what. */
int sv_listen_unix(const char *path, const char *group, int *fd, struct smmu_error *err);

#endif
