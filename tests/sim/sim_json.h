/* sim_json.h — QEMU's JSON dialect, both directions, for qmp-sim.
 *
 * Input: a streaming lexer + parser that behaves like QEMU's qobject/json-{lexer,streamer,parser}.c:
 * tokens are grouped by brace/bracket depth, a value completes when the depth returns to 0, every lexical
 * error ("stray 'x'") and every top-level bad token ("invalid keyword 'this'") is reported on its own with
 * "LINE:COL: " of the offending token (lines and columns count from 1 over the whole connection), the lexer
 * then skips to a resynchronisation point exactly as QEMU's IN_RECOVERY state does. Single-quoted strings
 * are accepted, as QEMU does. Integers beyond int64 become reals.
 *
 * Output: QEMU's compact-with-spaces format ({"a": 1, "b": [1, 2]}), every non-ASCII or control character
 * as \uXXXX (upper-case hex), invalid UTF-8 as \uFFFD, keys in insertion order, reals with %.17g.
 * A real equal to 2^64 (how uint64 18446744073709551615 is held, jansson having no uint64) prints as
 * 18446744073709551615.
 */
#ifndef SIM_JSON_H
#define SIM_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct sim_json_parser;

/* Called once per complete top-level value (err NULL, val borrowed) or per error (val NULL, err text). */
typedef void (*sim_json_emit_cb)(json_t *val, const char *err, void *opaque);

struct sim_json_parser *sim_json_parser_new(sim_json_emit_cb cb, void *opaque);
void sim_json_parser_free(struct sim_json_parser *p);
/* Feed bytes; emits zero or more values/errors synchronously. */
void sim_json_parser_feed(struct sim_json_parser *p, const char *buf, size_t len);
/* True when tokens of an unfinished value are buffered. */
int sim_json_parser_pending(const struct sim_json_parser *p);

/* Serialise like QEMU (no trailing newline). Caller frees. */
char *sim_json_dumps(const json_t *v);

/* Parse one complete JSON text with the same rules (big integers as reals); NULL on error. */
json_t *sim_json_loads(const char *text, size_t len);

/* The uint64 max QEMU prints for "size"/reserve properties. */
json_t *sim_json_u64max(void);
/* A uint64 property value as the decoder holds what QEMU prints: an integer up to INT64_MAX, above that a
 * real (UINT64_MAX as 2^64, which prints as 18446744073709551615; an integral real prints as an integer). */
json_t *sim_json_u64(uint64_t v);

#endif
