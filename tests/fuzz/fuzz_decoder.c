/* fuzz_decoder.c — libFuzzer target for the QMP stream decoder (include/smmuctl/qmp_decoder.h).
 *
 * The input is the byte stream a peer sends. It is decoded several times, each time cut into read()s
 * differently, and every run must agree:
 *   - in one chunk (the reference), one byte per chunk, chunks whose lengths come from the stream's own
 *     bytes (the byte at a chunk's start sets its length, so mutations move the boundaries), and chunks
 *     from a PRNG seeded with a hash of the input;
 *   - each with the default size cap and with a small cap derived from the input (reaches -EMSGSIZE);
 *   - and once more after qmp_decoder_reset() on a used decoder.
 * Invariants (any violation aborts, which libFuzzer and the corpus replay report as a crash):
 *   - every message is a JSON object whose compact re-serialisation parses back to an equal value;
 *   - its raw text starts with '{', ends with '}' and is exactly the next frame of the input (only
 *     whitespace between frames);
 *   - feed() returns 0 or a negative errno (EPROTO, EMSGSIZE); a failure fills err with the same code and
 *     a message, and is sticky: later feeds return it again, with the same message, and emit nothing;
 *   - every split gives the same messages, the same outcome (code and message) and the same pending state;
 *     with the small cap the messages are a prefix of the default run's, and all of them when it succeeds;
 *   - it agrees with jansson alone (JSON_DISABLE_EOF_CHECK, value after value): the messages are the values
 *     jansson reads, and the decoder succeeds with nothing pending exactly when jansson reads the whole
 *     input as objects (unless an integer is too big for jansson: the decoder converts those on purpose;
 *     or the input holds a NUL byte: jansson skips a raw NUL right after a number or literal and then
 *     reports a position one short, so value-after-value reading goes astray there).
 * Leaks are caught by ASan/LSan (fuzzer build, SMMUCTL_SANITIZE build) or valgrind (corpus replay). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "smmuctl/qmp_decoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Report a broken invariant and crash, so the fuzzer saves the input. */
static void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fz_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("fuzz_decoder: invariant broken: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define FZ_CHECK(cond, ...) \
    do { \
        if (!(cond)) \
            fz_fail(__VA_ARGS__); \
    } while (0)

/* What one decode of the whole input produced. */
struct fz_run {
    char **raw;      /* each message's raw text (NUL-terminated copy) */
    size_t *raw_len;
    char **dump;     /* each message re-serialised (compact, key order kept) */
    size_t n;
    int rc;          /* 0 or the sticky error code */
    char msg[sizeof(((struct smmu_error *)0)->message)];
    int pending;
};

static void *fz_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        abort();
    return q;
}

static int fz_collect(json_t *msg, const char *raw, size_t raw_len, void *payload)
{
    struct fz_run *run = payload;
    FZ_CHECK(json_is_object(msg), "message %zu is not an object", run->n + 1);
    FZ_CHECK(raw && raw_len >= 2 && raw[0] == '{' && raw[raw_len - 1] == '}',
             "message %zu: raw text is not a {...} frame (len %zu)", run->n + 1, raw_len);

    char *dump = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    FZ_CHECK(dump != NULL, "message %zu cannot be serialised", run->n + 1);
    json_error_t jerr;
    json_t *back = json_loads(dump, 0, &jerr);
    FZ_CHECK(back != NULL, "message %zu re-serialised as %s does not parse: %s", run->n + 1, dump, jerr.text);
    FZ_CHECK(json_is_object(back) && json_equal(back, msg), "message %zu changes when re-parsed: %s",
             run->n + 1, dump);
    json_decref(back);

    run->raw = fz_xrealloc(run->raw, (run->n + 1) * sizeof(*run->raw));
    run->raw_len = fz_xrealloc(run->raw_len, (run->n + 1) * sizeof(*run->raw_len));
    run->dump = fz_xrealloc(run->dump, (run->n + 1) * sizeof(*run->dump));
    run->raw[run->n] = fz_xrealloc(NULL, raw_len + 1);
    memcpy(run->raw[run->n], raw, raw_len);
    run->raw[run->n][raw_len] = 0;
    run->raw_len[run->n] = raw_len;
    run->dump[run->n] = dump;
    run->n++;
    return 0;
}

static int fz_must_not_emit(json_t *msg, const char *raw, size_t raw_len, void *payload)
{
    (void)msg;
    (void)payload;
    fz_fail("a failed decoder emitted a message: %.*s", (int)(raw_len > 200 ? 200 : raw_len), raw);
}

static void fz_run_free(struct fz_run *run)
{
    for (size_t i = 0; i < run->n; i++) {
        free(run->raw[i]);
        free(run->dump[i]);
    }
    free(run->raw);
    free(run->raw_len);
    free(run->dump);
    memset(run, 0, sizeof(*run));
}

/* How the stream is cut into chunks. */
enum fz_split { FZ_ONE_CHUNK, FZ_BYTES, FZ_SELF, FZ_PRNG, FZ_NSPLITS };
static const char *const fz_split_name[FZ_NSPLITS] = {"one chunk", "byte by byte", "self-sized", "prng"};

static uint64_t fz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < size; i++) {
        h ^= data[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t fz_next(uint64_t *s)
{
    /* xorshift64*: only needs to be deterministic per input */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Length of the next chunk at `off` (>= 1). */
static size_t fz_chunk_len(enum fz_split split, const uint8_t *data, size_t size, size_t off, uint64_t *prng)
{
    size_t left = size - off, n;
    switch (split) {
    case FZ_ONE_CHUNK:
        n = left;
        break;
    case FZ_BYTES:
        n = 1;
        break;
    case FZ_SELF:
        n = 1 + data[off] % 37u;
        break;
    default: {
        uint64_t r = fz_next(prng);
        /* mostly short reads, sometimes long ones, like a socket under load */
        n = (r & 3u) ? 1 + (r >> 8) % 8u : 1 + (r >> 8) % 1024u;
        break;
    }
    }
    return n < left ? n : left;
}

/* Decode the whole input with `d` as the given split, checking every feed's return and the stickiness. */
static void fz_decode(qmp_decoder *d, const uint8_t *data, size_t size, enum fz_split split, uint64_t seed,
                      struct fz_run *run)
{
    uint64_t prng = seed | 1u;
    size_t off = 0;
    struct smmu_error err = SMMU_ERROR_INIT;
    memset(run, 0, sizeof(*run));
    /* an empty read changes nothing */
    FZ_CHECK(qmp_decoder_feed(d, (const char *)data, 0, fz_collect, run, &err) == 0, "empty feed failed");
    while (off < size) {
        size_t n = fz_chunk_len(split, data, size, off, &prng);
        int r = qmp_decoder_feed(d, (const char *)data + off, n, fz_collect, run, &err);
        off += n;
        if (r == 0)
            continue;
        FZ_CHECK(r == -EPROTO || r == -EMSGSIZE, "feed returned %d (%s)", r, fz_split_name[split]);
        FZ_CHECK(err.code == r, "feed returned %d but err.code is %d", r, err.code);
        FZ_CHECK(err.message[0] != 0, "feed failed with %d and no message", r);
        run->rc = r;
        snprintf(run->msg, sizeof(run->msg), "%s", err.message);
        break;
    }
    run->pending = qmp_decoder_pending(d) != 0;
    if (run->rc == 0)
        return;
    /* Sticky: the rest of the input, a valid message, and a feed without an error object all get it again. */
    const char *more[] = {(const char *)data + off, "{}\r\n", "{\"return\":{}}"};
    size_t more_len[] = {size - off, 2 + 2, 13};
    for (size_t i = 0; i < 3; i++) {
        struct smmu_error again = SMMU_ERROR_INIT;
        int r = qmp_decoder_feed(d, more[i], more_len[i], fz_must_not_emit, NULL, &again);
        FZ_CHECK(r == run->rc && again.code == r, "failure not sticky: %d then %d", run->rc, r);
        FZ_CHECK(strcmp(again.message, run->msg) == 0, "sticky error changed: '%s' then '%s'", run->msg,
                 again.message);
    }
    FZ_CHECK(qmp_decoder_feed(d, "{}", 2, fz_must_not_emit, NULL, NULL) == run->rc, "failure not sticky (no err)");
}

/* The raw texts are the input's frames, in order, separated by whitespace only. */
static void fz_check_frames(const struct fz_run *run, const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (size_t i = 0; i < run->n; i++) {
        while (off < size && (data[off] == ' ' || data[off] == '\t' || data[off] == '\r' || data[off] == '\n'))
            off++;
        FZ_CHECK(run->raw_len[i] <= size - off && memcmp(data + off, run->raw[i], run->raw_len[i]) == 0,
                 "message %zu's raw text is not the next frame of the input (at byte %zu)", i + 1, off);
        off += run->raw_len[i];
    }
}

static void fz_check_same(const struct fz_run *ref, const struct fz_run *got, const char *what)
{
    FZ_CHECK(got->n == ref->n, "%s: %zu messages, one chunk gave %zu", what, got->n, ref->n);
    for (size_t i = 0; i < ref->n; i++) {
        FZ_CHECK(got->raw_len[i] == ref->raw_len[i] && memcmp(got->raw[i], ref->raw[i], ref->raw_len[i]) == 0,
                 "%s: message %zu differs in raw text", what, i + 1);
        FZ_CHECK(strcmp(got->dump[i], ref->dump[i]) == 0, "%s: message %zu differs: %s vs %s", what, i + 1,
                 got->dump[i], ref->dump[i]);
    }
    FZ_CHECK(got->rc == ref->rc, "%s: outcome %d, one chunk gave %d", what, got->rc, ref->rc);
    FZ_CHECK(strcmp(got->msg, ref->msg) == 0, "%s: error '%s', one chunk gave '%s'", what, got->msg, ref->msg);
    FZ_CHECK(got->pending == ref->pending, "%s: pending %d, one chunk gave %d", what, got->pending, ref->pending);
}

/* All splits with one size cap; returns the one-chunk run in *ref. */
static void fz_all_splits(const uint8_t *data, size_t size, size_t max, uint64_t seed, struct fz_run *ref)
{
    qmp_decoder *d = NULL;
    FZ_CHECK(qmp_decoder_new(&d, max) == 0 && d, "qmp_decoder_new failed");
    fz_decode(d, data, size, FZ_ONE_CHUNK, seed, ref);
    fz_check_frames(ref, data, size);
    for (int s = FZ_BYTES; s < FZ_NSPLITS; s++) {
        struct fz_run run;
        qmp_decoder *fresh = NULL;
        FZ_CHECK(qmp_decoder_new(&fresh, max) == 0, "qmp_decoder_new failed");
        fz_decode(fresh, data, size, (enum fz_split)s, seed, &run);
        fz_check_same(ref, &run, fz_split_name[s]);
        fz_run_free(&run);
        qmp_decoder_free(fresh);
    }
    /* the used (perhaps failed, perhaps mid-message) decoder, reset, behaves like a new one */
    struct fz_run again;
    qmp_decoder_reset(d);
    FZ_CHECK(!qmp_decoder_pending(d), "pending after reset");
    fz_decode(d, data, size, FZ_PRNG, seed ^ 0x5a5a5a5au, &again);
    fz_check_same(ref, &again, "after reset");
    fz_run_free(&again);
    qmp_decoder_free(d);
}

/* The input read by jansson alone, object after object (the decoder's specification, independently). */
struct fz_oracle {
    char **dump;
    size_t n;
    int complete; /* every byte read: objects and whitespace only */
    int too_big;  /* jansson refused an integer as too big, or a NUL byte follows: no comparison from there */
};

static void fz_oracle_read(const uint8_t *data, size_t size, struct fz_oracle *o)
{
    size_t off = 0;
    memset(o, 0, sizeof(*o));
    for (;;) {
        while (off < size && (data[off] == ' ' || data[off] == '\t' || data[off] == '\r' || data[off] == '\n'))
            off++;
        if (off == size) {
            o->complete = 1;
            return;
        }
        if (data[off] != '{')
            return;
        if (memchr(data + off, 0, size - off)) { /* see the header: positions past a NUL are unreliable */
            o->too_big = 1;
            return;
        }
        json_error_t jerr;
        json_t *v = json_loadb((const char *)data + off, size - off, JSON_DISABLE_EOF_CHECK, &jerr);
        if (!v) {
            o->too_big = strstr(jerr.text, "too big") != NULL;
            return;
        }
        FZ_CHECK(json_is_object(v) && jerr.position > 0 && (size_t)jerr.position <= size - off,
                 "jansson read a value of %d bytes at %zu", jerr.position, off);
        o->dump = fz_xrealloc(o->dump, (o->n + 1) * sizeof(*o->dump));
        o->dump[o->n++] = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(v);
        off += (size_t)jerr.position;
    }
}

static void fz_oracle_free(struct fz_oracle *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->dump[i]);
    free(o->dump);
}

static void fz_check_oracle(const struct fz_run *run, const uint8_t *data, size_t size)
{
    struct fz_oracle o;
    fz_oracle_read(data, size, &o);
    size_t common = run->n < o.n ? run->n : o.n;
    for (size_t i = 0; i < common; i++)
        FZ_CHECK(strcmp(run->dump[i], o.dump[i]) == 0, "message %zu: decoder %s, jansson %s", i + 1, run->dump[i],
                 o.dump[i]);
    if (!o.too_big) {
        int ok = run->rc == 0 && !run->pending;
        FZ_CHECK(ok == o.complete, "decoder %s (rc %d, pending %d, '%s'), jansson %s", ok ? "succeeded" : "failed",
                 run->rc, run->pending, run->msg, o.complete ? "read it all" : "did not");
        if (ok)
            FZ_CHECK(run->n == o.n, "decoder %zu messages, jansson %zu", run->n, o.n);
        else
            FZ_CHECK(run->n == o.n, "decoder stopped after %zu messages, jansson after %zu", run->n, o.n);
    }
    fz_oracle_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t seed = fz_hash(data, size);
    struct fz_run full, small;
    /* a cap small enough that fuzzed frames cross it, but not so small that nothing ever decodes */
    size_t cap = 16 + (size_t)(seed % 512u);

    fz_all_splits(data, size, 0, seed, &full);
    fz_check_oracle(&full, data, size);
    fz_all_splits(data, size, cap, seed, &small);

    /* The cap only ever cuts a run short, at a frame over it. */
    FZ_CHECK(small.n <= full.n, "cap %zu: more messages (%zu) than without it (%zu)", cap, small.n, full.n);
    for (size_t i = 0; i < small.n; i++)
        FZ_CHECK(strcmp(small.dump[i], full.dump[i]) == 0, "cap %zu: message %zu differs", cap, i + 1);
    if (small.rc == 0)
        FZ_CHECK(full.rc == 0 && small.n == full.n && small.pending == full.pending,
                 "cap %zu succeeded but the uncapped run did not agree", cap);
    else if (small.rc == -EPROTO) /* the bad frame fit the cap, so the uncapped run failed there too */
        FZ_CHECK(full.rc == -EPROTO && full.n == small.n && strcmp(full.msg, small.msg) == 0,
                 "cap %zu: '%s', but uncapped: %d '%s'", cap, small.msg, full.rc, full.msg);
    else if (small.rc == -EMSGSIZE)
        FZ_CHECK(full.n > small.n || full.rc != 0 || full.pending,
                 "cap %zu: EMSGSIZE though every frame fit uncapped", cap);
    for (size_t i = 0; i < small.n; i++)
        FZ_CHECK(small.raw_len[i] <= cap, "cap %zu: message %zu has %zu bytes", cap, i + 1, small.raw_len[i]);

    fz_run_free(&full);
    fz_run_free(&small);
    return 0;
}
