/* decoder.c — frame and parse QMP messages from a byte stream.
 *
 * QEMU ends each message with CRLF, but nothing here relies on it: a frame is one top-level JSON object,
 * delimited by tracking nesting depth outside strings. Only the bytes of the current frame are buffered,
 * capped at max_size, so a hostile peer cannot make us hold more than that.
 */
#include "smmuctl/qmp_decoder.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct qmp_decoder {
    char *buf;
    size_t len, cap, max;
    unsigned depth;
    bool in_string, escape;
    uint64_t offset;      /* bytes consumed since reset */
    uint64_t msg_start;   /* stream offset of the current frame's first byte */
    uint64_t count;       /* messages completed */
    int failed;           /* sticky error code */
    struct smmu_error fail_err;
};

int qmp_decoder_new(qmp_decoder **out, size_t max_size)
{
    qmp_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->max = max_size ? max_size : QMP_MAX_MESSAGE;
    *out = d;
    return 0;
}

void qmp_decoder_free(qmp_decoder *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d);
}

void qmp_decoder_reset(qmp_decoder *d)
{
    d->len = 0;
    d->depth = 0;
    d->in_string = d->escape = false;
    d->offset = d->msg_start = d->count = 0;
    d->failed = 0;
    smmu_error_clear(&d->fail_err);
}

int qmp_decoder_pending(const qmp_decoder *d)
{
    return d->len > 0;
}

/* Record a sticky protocol error: "QMP message N (at stream byte X): <what>". */
static int decoder_fail(qmp_decoder *d, struct smmu_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int decoder_fail(qmp_decoder *d, struct smmu_error *err, int code, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    d->failed = code;
    smmu_error_set(&d->fail_err, code, "QMP message %llu (at stream byte %llu): %s",
                   (unsigned long long)d->count + 1, (unsigned long long)d->msg_start, what);
    smmu_error_copy(err, &d->fail_err);
    return code;
}

static int decoder_push(qmp_decoder *d, char c, struct smmu_error *err)
{
    if (d->len >= d->max) {
        return decoder_fail(d, err, -EMSGSIZE, "exceeds the %zu-byte limit", d->max);
    }
    if (d->len == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 4096;
        if (ncap > d->max + 1)
            ncap = d->max + 1;
        char *nb = realloc(d->buf, ncap);
        if (!nb)
            return decoder_fail(d, err, -ENOMEM, "out of memory");
        d->buf = nb;
        d->cap = ncap;
    }
    d->buf[d->len++] = c;
    return 0;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static bool decoder_numchar(char c)
{
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

/* True when the digit at buf[i] starts a number's integer part (optionally after its '-'), not the
 * digits of a fraction or an exponent, which must stay as they are. */
static bool decoder_int_start(const char *buf, size_t i)
{
    if (i > 0 && buf[i - 1] == '-')
        i--;
    return i == 0 || !decoder_numchar(buf[i - 1]);
}

/* QEMU prints uint64 properties (e.g. 18446744073709551615) that do not fit jansson's json_int_t.
 * Re-parse such a frame with every integer literal of 19+ digits turned into a real ("….0"): the value
 * stays a number (approximate), everything else is untouched. Returns NULL if it still does not parse. */
static json_t *decoder_parse_bigint(const char *buf, size_t len, json_error_t *jerr)
{
    char *out = malloc(len * 2 + 1);
    size_t o = 0;
    bool in_str = false, esc = false;
    json_t *v;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        out[o++] = c;
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c >= '0' && c <= '9' && decoder_int_start(buf, i)) {
            size_t j = i;
            while (j < len && buf[j] >= '0' && buf[j] <= '9')
                j++;
            bool frac = j < len && (buf[j] == '.' || buf[j] == 'e' || buf[j] == 'E');
            for (size_t k = i + 1; k < j; k++)
                out[o++] = buf[k];
            if (j - i >= 19 && !frac) {
                out[o++] = '.';
                out[o++] = '0';
            }
            i = j - 1;
        }
    }
    v = json_loadb(out, o, 0, jerr);
    free(out);
    return v;
}

/* A frame is complete: parse it and hand it over. */
static int decoder_emit(qmp_decoder *d, qmp_decoder_cb cb, void *payload, struct smmu_error *err)
{
    json_error_t jerr;
    json_t *msg = json_loadb(d->buf, d->len, 0, &jerr);
    int r = 0;
    if (!msg && strstr(jerr.text, "too big"))
        msg = decoder_parse_bigint(d->buf, d->len, &jerr);
    if (!msg) {
        return decoder_fail(d, err, -EPROTO, "invalid JSON: %s (near byte %d of the message)", jerr.text,
                            jerr.position);
    }
    if (!json_is_object(msg)) { /* cannot happen for a '{' frame, kept as a guard */
        const char *kind = json_kind(msg);
        json_decref(msg);
        return decoder_fail(d, err, -EPROTO, "not a JSON object (%s)", kind);
    }
    d->count++;
    if (cb)
        r = cb(msg, d->buf, d->len, payload);
    json_decref(msg);
    d->len = 0;
    if (d->cap > QMP_DECODER_KEEP) { /* grown for a large message: do not keep it while idle */
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
    return r;
}

size_t qmp_decoder_capacity(const qmp_decoder *d)
{
    return d->cap;
}

int qmp_decoder_feed(qmp_decoder *d, const char *buf, size_t len, qmp_decoder_cb cb, void *payload,
                     struct smmu_error *err)
{
    if (d->failed) {
        smmu_error_copy(err, &d->fail_err);
        return d->failed;
    }
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        int r;
        d->offset++;
        if (d->len == 0) {
            /* Between messages: only whitespace may appear. */
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
                continue;
            d->msg_start = d->offset - 1;
            if (c != '{') {
                const char *kind = c == '[' ? "an array" : c == '"' ? "a string"
                                 : (c == '-' || (c >= '0' && c <= '9')) ? "a number"
                                 : (c == 't' || c == 'f' || c == 'n') ? "a literal" : "not JSON";
                return decoder_fail(d, err, -EPROTO, "not a JSON object: it starts as %s (byte 0x%02x)", kind,
                                    (unsigned char)c);
            }
            d->depth = 1;
            d->in_string = d->escape = false;
            if ((r = decoder_push(d, c, err)) < 0)
                return r;
            continue;
        }
        if (c == '\0') /* never valid in JSON text; jansson would skip one after a number */
            return decoder_fail(d, err, -EPROTO, "NUL byte at offset %zu of the message", d->len);
        if ((r = decoder_push(d, c, err)) < 0)
            return r;
        if (d->in_string) {
            if (d->escape)
                d->escape = false;
            else if (c == '\\')
                d->escape = true;
            else if (c == '"')
                d->in_string = false;
            continue;
        }
        switch (c) {
        case '"':
            d->in_string = true;
            break;
        case '{': case '[':
            d->depth++;
            break;
        case '}': case ']':
            if (--d->depth == 0) {
                r = decoder_emit(d, cb, payload, err);
                if (r != 0)
                    return r;
            }
            break;
        default:
            break;
        }
    }
    return 0;
}
