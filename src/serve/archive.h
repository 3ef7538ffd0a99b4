/* archive.h — operations kept in <state-dir>/operations/<id>.json so that an Idempotency-Key (kept 24 h,
 * idem.h) still names its operation after the 1 h in memory (ops.h) and after a daemon restart. A record is
 * {"operation":<sv_op_json>,"status":<HTTP status>,"time":<seconds>}, written atomically (temp, fsync,
 * rename) when a keyed operation starts and again when it ends. */
#ifndef SMMUCTL_SERVE_ARCHIVE_H
#define SMMUCTL_SERVE_ARCHIVE_H

#include <jansson.h>

#include "serve/ops.h"

/* 0 or a negative errno. */
int sv_archive_write(const char *dir, const struct sv_op *op);
/* The record of id (new reference), or NULL (none, expired, not ours). A record a previous daemon never
 * finished (ids not starting with own_prefix, still running or pending) reads as incomplete, status 202: its
 * transaction is in the VM's journal, which the backend reconciles on connect. */
json_t *sv_archive_read(const char *dir, const char *id, const char *own_prefix);
/* Remove records older than the keys' 24 h (the daemon does it at start). */
void sv_archive_prune(const char *dir);

#endif
