/* smmuctl/qmp_decoder.h — QMP stream decoder: bytes in, JSON objects out.
 *
 * Independent of line breaks and read boundaries: several messages in one chunk, one message over many
 * chunks, CRLF or LF or no separator at all. It frames top-level JSON values by tracking string/escape
 * state and nesting depth, then parses each frame with jansson (which rejects bad UTF-8).
 * A frame over `max_size` bytes, a top-level value that is not an object, or a frame that does not parse
 * is a protocol error: feed() returns it, the decoder stays failed, and no memory beyond max_size+chunk
 * is ever held. No I/O, no event loop (hiredis style): the client and the simulator both use it.
 * Contracts: nothing blocks; qmp_decoder_new returns 0 or -ENOMEM; the caller owns the decoder.
 */
#ifndef SMMUCTL_QMP_DECODER_H
#define SMMUCTL_QMP_DECODER_H

#include <stddef.h>
#include <jansson.h>
#include "smmuctl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QMP_MAX_MESSAGE (16u * 1024u * 1024u)

typedef struct qmp_decoder qmp_decoder;

/* One decoded message. `msg` is owned by the callee only if it json_incref()s it (the decoder drops its
 * reference after the callback). `raw`/`raw_len` is the message's exact text (without the separator).
 * Return 0 to go on, non-zero to stop feeding (feed then returns that value). The rest of that chunk is
 * discarded: stop only when the stream is being abandoned (the client does so when a callback closed it). */
typedef int (*qmp_decoder_cb)(json_t *msg, const char *raw, size_t raw_len, void *payload);

/* max_size 0 means QMP_MAX_MESSAGE. */
int qmp_decoder_new(qmp_decoder **out, size_t max_size);
void qmp_decoder_free(qmp_decoder *d);

/* Feed bytes. Returns 0, a callback's non-zero value, or on a protocol violation -EPROTO / -EMSGSIZE
 * with err filled ("message 3 at byte 1042: not a JSON object (array)"). After an error, feed() keeps
 * returning it until qmp_decoder_reset(). */
int qmp_decoder_feed(qmp_decoder *d, const char *buf, size_t len, qmp_decoder_cb cb, void *payload,
                     struct smmu_error *err);

/* True when a message has started but not finished (bytes are buffered). */
int qmp_decoder_pending(const qmp_decoder *d);

/* Forget buffered bytes and any error (e.g. on reconnect); counters restart. */
void qmp_decoder_reset(qmp_decoder *d);

/* Between messages the decoder keeps at most this much buffer: a bigger one, grown for a large message (a
 * topology's qom-list-get reply is ~47 KB for 4 vSMMUs, ~2.3 MB for 64), is released once that message is
 * handed over, so an idle connection does not hold its largest message's worth of memory (the daemon keeps one
 * connection per VM). */
#define QMP_DECODER_KEEP 16384
/* Bytes of buffer the decoder holds now (its capacity, not what is buffered). */
size_t qmp_decoder_capacity(const qmp_decoder *d);

#ifdef __cplusplus
}
#endif
#endif
