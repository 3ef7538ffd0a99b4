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

/* Serialise a message the way QEMU prints it: one line, ", " and ": " separators, members in their order,
 * non-ASCII escaped. Returns a malloc'ed string or NULL. */
char *replay_json_dump_qemu(json_t *msg);

#endif
