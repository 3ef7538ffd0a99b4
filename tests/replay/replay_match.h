/* replay_match.h — cutting client messages out of a byte stream and comparing them with fixture lines. */
#ifndef SMMU_REPLAY_MATCH_H
#define SMMU_REPLAY_MATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* Scan one JSON object, array or string at buf[0] (no leading blanks). Returns 1 and *end (one past its last
 * byte) when complete, 0 when more bytes are needed, -1 when buf[0] does not start such a value. Brackets
 * inside strings and escaped quotes are handled; nothing else is validated (the parser does that). */
int replay_scan_json(const char *buf, size_t len, size_t *end);

/* Compare two values as JSON, ignoring a top-level "id" member when both are objects. */
bool replay_json_equal_noid(json_t *expected, json_t *actual);

/* Describe the first difference between expected and actual (id ignored at the top level) as
 * ".path: expected X, got Y" into buf. */
void replay_json_diff(json_t *expected, json_t *actual, char *buf, size_t len);

/* Trim blanks (space, tab, CR, LF) at both ends of [*p, *p + *len). */
void replay_trim(const char **p, size_t *len);

/* Parse JSON text; values jansson cannot hold (integers beyond 64 bits signed, e.g. QEMU's uint64
 * 18446744073709551615) are retried with integers read as reals, so such messages can still be classified
 * and compared (both sides of a comparison go through this function). flags: extra jansson decode flags. */
json_t *replay_json_load(const char *text, size_t len, size_t flags, json_error_t *je);

/* Rewrite the top-level "id" member of the JSON object `text` (len bytes) and leave every other byte as it
 * is: new_id NULL removes the member; a missing member is inserted where QEMU puts it (first in an "error"
 * reply, last otherwise). Returns a malloc'ed NUL-terminated string, or NULL if the text is not an object. */
char *replay_splice_id(const char *text, size_t len, json_t *new_id);

/* Serialise a message the way QEMU prints it: one line, ", " and ": " separators, members in their order,
 * non-ASCII escaped. Returns a malloc'ed string or NULL. */
char *replay_json_dump_qemu(json_t *msg);

#endif
