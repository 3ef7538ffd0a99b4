/* test_qmp_decoder.c — the QMP stream decoder against recorded QEMU output split every way, and bad input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smmuctl/qmp_decoder.h"
#include "support/testutil.h"

/* Collected messages, compact-dumped for comparison. */
struct sink {
    char **msgs;
    size_t n;
    int stop_after; /* return 1 from the callback after this many (0 = never) */
};

static int sink_cb(json_t *msg, const char *raw, size_t raw_len, void *payload)
{
    struct sink *s = payload;
    assert_true(raw_len > 0);
    assert_int_equal(raw[0], '{');
    assert_int_equal(raw[raw_len - 1], '}');
    s->msgs = realloc(s->msgs, (s->n + 1) * sizeof(char *));
    s->msgs[s->n++] = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS);
    if (s->stop_after && (int)s->n >= s->stop_after)
        return 1;
    return 0;
}

static void sink_free(struct sink *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->msgs[i]);
    free(s->msgs);
    memset(s, 0, sizeof(*s));
}

/* The S: lines of a transcript, as QEMU sent them (CRLF-terminated), plus each line parsed. */
struct stream {
    char *bytes;
    size_t len;
    char **expect;
    size_t n;
};

static void load_stream(const char *name, struct stream *st)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/qemu11/transcripts/%s", SMMU_SHARED_DIR, name);
    char *text = smmu_test_read_file(path, NULL);
    if (!text) { /* CI copies shared/ beside the clone; the fixture copy is the fallback */
        snprintf(path, sizeof(path), "%s/%s", SMMU_FIXTURES_DIR, name);
        text = smmu_test_read_file(path, NULL);
    }
    assert_non_null(text);
    memset(st, 0, sizeof(*st));
    size_t cap = strlen(text) * 2 + 16;
    st->bytes = malloc(cap);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "S: ", 3) != 0)
            continue;
        size_t l = strlen(line + 3);
        memcpy(st->bytes + st->len, line + 3, l);
        st->len += l;
        st->bytes[st->len++] = '\r';
        st->bytes[st->len++] = '\n';
        /* QEMU's uint64 max does not fit json_int_t: the decoder turns it into a real */
        char fixed[65536];
        const char *big = "18446744073709551615";
        size_t fo = 0;
        for (const char *p = line + 3; *p && fo < sizeof(fixed) - 4;) {
            if (!strncmp(p, big, strlen(big))) {
                fo += (size_t)snprintf(fixed + fo, sizeof(fixed) - fo, "%s.0", big);
                p += strlen(big);
            } else {
                fixed[fo++] = *p++;
            }
        }
        fixed[fo] = 0;
        json_error_t je;
        json_t *v = json_loads(fixed, 0, &je);
        assert_non_null(v);
        st->expect = realloc(st->expect, (st->n + 1) * sizeof(char *));
        st->expect[st->n++] = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(v);
    }
    free(text);
    assert_true(st->n > 3);
}

static void free_stream(struct stream *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->expect[i]);
    free(st->expect);
    free(st->bytes);
}

static void assert_sink_matches(const struct sink *s, const struct stream *st)
{
    assert_int_equal(s->n, st->n);
    for (size_t i = 0; i < st->n; i++)
        assert_string_equal(s->msgs[i], st->expect[i]);
}

/* Every split point of a recorded stream into two chunks gives the same messages. */
static void test_every_split_point(void **state)
{
    (void)state;
    const char *names[] = {"a64-01-greeting-capabilities.txt", "a64-12-malformed-json-and-ids.txt"};
    for (size_t k = 0; k < 2; k++) {
        struct stream st;
        load_stream(names[k], &st);
        for (size_t cut = 0; cut <= st.len; cut++) {
            qmp_decoder *d;
            struct sink s = {0};
            struct smmu_error e = SMMU_ERROR_INIT;
            assert_int_equal(qmp_decoder_new(&d, 0), 0);
            assert_int_equal(qmp_decoder_feed(d, st.bytes, cut, sink_cb, &s, &e), 0);
            assert_int_equal(qmp_decoder_feed(d, st.bytes + cut, st.len - cut, sink_cb, &s, &e), 0);
            assert_false(qmp_decoder_pending(d));
            assert_sink_matches(&s, &st);
            sink_free(&s);
            qmp_decoder_free(d);
        }
        free_stream(&st);
    }
}

/* One byte per read (the big topology discovery session), and all of it in one read. */
static void test_byte_at_a_time_and_one_chunk(void **state)
{
    (void)state;
    struct stream st;
    load_stream("a64-15-topology-discovery.txt", &st);
    qmp_decoder *d;
    struct sink s = {0};
    assert_int_equal(qmp_decoder_new(&d, 0), 0);
    for (size_t i = 0; i < st.len; i++) {
        assert_int_equal(qmp_decoder_feed(d, st.bytes + i, 1, sink_cb, &s, NULL), 0);
        /* a message is pending exactly while we are inside one */
    }
    assert_sink_matches(&s, &st);
    sink_free(&s);
    qmp_decoder_reset(d);
    assert_int_equal(qmp_decoder_feed(d, st.bytes, st.len, sink_cb, &s, NULL), 0);
    assert_sink_matches(&s, &st);
    sink_free(&s);
    qmp_decoder_free(d);
    free_stream(&st);
}

static void test_separators_and_strings(void **state)
{
    (void)state;
    /* LF, CRLF, no separator, braces and escaped quotes inside strings, nested arrays */
    const char *in = "{\"a\":1}\n{\"b\":\"}{\"}\r\n{\"c\":\"x\\\"}y\\\\\"}{\"d\":[{\"e\":[]}]}   \t";
    qmp_decoder *d;
    struct sink s = {0};
    assert_int_equal(qmp_decoder_new(&d, 0), 0);
    assert_int_equal(qmp_decoder_feed(d, in, strlen(in), sink_cb, &s, NULL), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.msgs[0], "{\"a\":1}");
    assert_string_equal(s.msgs[1], "{\"b\":\"}{\"}");
    assert_string_equal(s.msgs[2], "{\"c\":\"x\\\"}y\\\\\"}");
    assert_string_equal(s.msgs[3], "{\"d\":[{\"e\":[]}]}");
    assert_false(qmp_decoder_pending(d));
    /* a half message stays pending */
    assert_int_equal(qmp_decoder_feed(d, "{\"x\":", 5, sink_cb, &s, NULL), 0);
    assert_true(qmp_decoder_pending(d));
    assert_int_equal(s.n, 4);
    assert_int_equal(qmp_decoder_feed(d, "2}", 2, sink_cb, &s, NULL), 0);
    assert_int_equal(s.n, 5);
    sink_free(&s);
    qmp_decoder_free(d);
}

/* uint64 values beyond json_int_t (QEMU prints them) decode as reals; other numbers are untouched. */
static void test_big_integers(void **state)
{
    (void)state;
    const char *in = "{\"a\":18446744073709551615,\"b\":\"18446744073709551615\",\"c\":[-9223372036854775809],"
                     "\"d\":42,\"e\":1.5e3}";
    qmp_decoder *d;
    struct sink s = {0};
    assert_int_equal(qmp_decoder_new(&d, 0), 0);
    assert_int_equal(qmp_decoder_feed(d, in, strlen(in), sink_cb, &s, NULL), 0);
    assert_int_equal(s.n, 1);
    json_t *v = json_loads(s.msgs[0], 0, NULL);
    assert_true(json_is_real(json_object_get(v, "a")));
    assert_true(json_real_value(json_object_get(v, "a")) > 1.8e19);
    assert_string_equal(json_string_value(json_object_get(v, "b")), "18446744073709551615");
    assert_true(json_is_real(json_array_get(json_object_get(v, "c"), 0)));
    assert_int_equal(json_integer_value(json_object_get(v, "d")), 42);
    assert_true(json_is_real(json_object_get(v, "e")));
    json_decref(v);
    sink_free(&s);
    qmp_decoder_free(d);
}

/* A too-big integer in the same message as a long fraction or exponent: only integer literals become
 * reals; the fraction's and exponent's digits stay as they are (they used to get ".0" appended, so the
 * whole message failed as invalid JSON). Seed: tests/fuzz/corpus/decoder/seed-edge-bigint-fraction. */
static void test_big_integer_beside_long_fraction(void **state)
{
    (void)state;
    const char *in = "{\"a\":18446744073709551615,\"b\":3.14159265358979323846264,\"c\":-1234567890123456789012,"
                     "\"d\":2e-1234567890123456789,\"e\":1E+0000000000000000000001,\"f\":[7]}";
    qmp_decoder *d;
    struct sink s = {0};
    struct smmu_error e = SMMU_ERROR_INIT;
    assert_int_equal(qmp_decoder_new(&d, 0), 0);
    int r = qmp_decoder_feed(d, in, strlen(in), sink_cb, &s, &e);
    if (r != 0)
        fail_msg("feed: %d %s", r, e.message);
    assert_int_equal(s.n, 1);
    json_t *v = json_loads(s.msgs[0], 0, NULL);
    assert_true(json_real_value(json_object_get(v, "a")) > 1.8e19);
    assert_true(json_real_value(json_object_get(v, "b")) > 3.14159 && json_real_value(json_object_get(v, "b")) < 3.1416);
    assert_true(json_real_value(json_object_get(v, "c")) < -1.2e21);
    assert_true(json_is_real(json_object_get(v, "d")));
    assert_true(json_real_value(json_object_get(v, "e")) == 10.0);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(v, "f"), 0)), 7);
    json_decref(v);
    sink_free(&s);
    qmp_decoder_free(d);
}

static void test_callback_stops_feed(void **state)
{
    (void)state;
    qmp_decoder *d;
    struct sink s = {.stop_after = 1};
    assert_int_equal(qmp_decoder_new(&d, 0), 0);
    assert_int_equal(qmp_decoder_feed(d, "{}{}", 4, sink_cb, &s, NULL), 1);
    assert_int_equal(s.n, 1);
    sink_free(&s);
    qmp_decoder_free(d);
}

struct bad_case {
    const char *input;
    int code;
    const char *needle; /* substring of the error message */
};

static void test_bad_input(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"this is not json", -EPROTO, "not a JSON object: it starts as a literal"},
        {"{\"return\":{}}\r\nxyz", -EPROTO, "QMP message 2 (at stream byte 15)"},
        {"[1, 2]", -EPROTO, "starts as an array"},
        {"\"just a string\"", -EPROTO, "starts as a string"},
        {"42", -EPROTO, "starts as a number"},
        {"@", -EPROTO, "starts as not JSON (byte 0x40)"},
        {"{\"a\": }", -EPROTO, "invalid JSON"},
        {"{\"a\": tru}", -EPROTO, "invalid JSON"},
        {"{\"a\": \"\xff\xfe\"}", -EPROTO, "invalid JSON"},        /* bad UTF-8 */
        {"{\"a\": \"\xc3\x28\"}", -EPROTO, "invalid JSON"},        /* bad continuation byte */
        {"{\"a\": 1]", -EPROTO, "invalid JSON"},                   /* mismatched close */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qmp_decoder *d;
        struct sink s = {0};
        struct smmu_error e = SMMU_ERROR_INIT;
        assert_int_equal(qmp_decoder_new(&d, 0), 0);
        int r = qmp_decoder_feed(d, cases[i].input, strlen(cases[i].input), sink_cb, &s, &e);
        if (r != cases[i].code || !strstr(e.message, cases[i].needle))
            fail_msg("case %zu (%s): got %d '%s', want %d containing '%s'", i, cases[i].input, r, e.message,
                     cases[i].code, cases[i].needle);
        assert_int_equal(e.code, cases[i].code);
        /* sticky: further input is refused with the same error */
        struct smmu_error e2 = SMMU_ERROR_INIT;
        assert_int_equal(qmp_decoder_feed(d, "{}", 2, sink_cb, &s, &e2), cases[i].code);
        assert_string_equal(e2.message, e.message);
        /* reset clears it */
        qmp_decoder_reset(d);
        size_t before = s.n;
        assert_int_equal(qmp_decoder_feed(d, "{}", 2, sink_cb, &s, NULL), 0);
        assert_int_equal(s.n, before + 1);
        sink_free(&s);
        qmp_decoder_free(d);
    }
}

/* A raw NUL byte is never valid JSON text, not even after a number (where jansson would skip it). */
static void test_nul_byte(void **state)
{
    (void)state;
    static const char in[] = "{\"a\":1\0}";
    qmp_decoder *d;
    struct sink s = {0};
    struct smmu_error e = SMMU_ERROR_INIT;
    assert_int_equal(qmp_decoder_new(&d, 0), 0);
    assert_int_equal(qmp_decoder_feed(d, in, sizeof(in) - 1, sink_cb, &s, &e), -EPROTO);
    assert_non_null(strstr(e.message, "NUL byte at offset 6 of the message"));
    assert_int_equal(s.n, 0);
    qmp_decoder_free(d);
}

/* A message over the cap fails as soon as it passes the cap, without buffering the rest. */
/* A large message's buffer is released once the message is handed over; a split message still decodes across
 * the release, and small messages keep a small buffer (an idle connection holds at most QMP_DECODER_KEEP). */
static void test_large_message_buffer_released(void **state)
{
    (void)state;
    qmp_decoder *d;
    struct sink s = {0};
    struct smmu_error e = SMMU_ERROR_INIT;
    size_t n = 200000;
    char *big = malloc(n + 16);
    assert_int_equal(qmp_decoder_new(&d, 0), 0);
    /* {"return":"xxxx…"} of ~200 KB, fed in two halves: buffered in between, so the buffer is large */
    memcpy(big, "{\"return\":\"", 11);
    memset(big + 11, 'x', n - 13);
    memcpy(big + n - 2, "\"}", 2);
    assert_int_equal(qmp_decoder_feed(d, big, n / 2, sink_cb, &s, &e), 0);
    assert_true(qmp_decoder_pending(d));
    assert_true(qmp_decoder_capacity(d) >= n / 2);
    /* the rest, and a small message in the same chunk: both decoded, the large buffer gone afterwards */
    memcpy(big + n, "\r\n{\"a\":1}\r\n", 11);
    assert_int_equal(qmp_decoder_feed(d, big + n / 2, n - n / 2 + 11, sink_cb, &s, &e), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(strlen(s.msgs[0]), n); /* its compact dump is the message itself */
    assert_string_equal(s.msgs[1], "{\"a\":1}");
    assert_false(qmp_decoder_pending(d));
    assert_true(qmp_decoder_capacity(d) <= QMP_DECODER_KEEP);
    /* small messages: a small buffer is kept for them */
    assert_int_equal(qmp_decoder_feed(d, "{\"b\":2}", 7, sink_cb, &s, &e), 0);
    assert_int_equal(s.n, 3);
    assert_true(qmp_decoder_capacity(d) > 0 && qmp_decoder_capacity(d) <= QMP_DECODER_KEEP);
    free(big);
    sink_free(&s);
    qmp_decoder_free(d);
}

static void test_oversize(void **state)
{
    (void)state;
    qmp_decoder *d;
    struct sink s = {0};
    struct smmu_error e = SMMU_ERROR_INIT;
    assert_int_equal(qmp_decoder_new(&d, 1024), 0);
    /* exactly at the cap is fine */
    char buf[1100];
    memset(buf, 'a', sizeof(buf));
    buf[0] = '{'; buf[1] = '"'; buf[1021] = '"'; buf[1022] = ':'; buf[1023] = '1';
    /* {"aaa…a":1  is 1024 bytes without the closing brace → 1025 with it */
    assert_int_equal(qmp_decoder_feed(d, buf, 1024, sink_cb, &s, &e), 0);
    assert_int_equal(qmp_decoder_feed(d, "}", 1, sink_cb, &s, &e), -EMSGSIZE);
    assert_non_null(strstr(e.message, "exceeds the 1024-byte limit"));
    qmp_decoder_reset(d);
    buf[1023] = '}'; buf[1022] = '1'; buf[1021] = ':'; buf[1020] = '"';
    assert_int_equal(qmp_decoder_feed(d, buf, 1024, sink_cb, &s, &e), 0);
    assert_int_equal(s.n, 1);
    /* a never-ending string over the default cap: fed in chunks, fails at 16 MiB */
    qmp_decoder *big;
    assert_int_equal(qmp_decoder_new(&big, 0), 0);
    char *chunk = malloc(1 << 20);
    memset(chunk, 'x', 1 << 20);
    chunk[0] = '{'; chunk[1] = '"';
    int r = 0;
    size_t fed = 0;
    while (r == 0 && fed < 32u * 1024 * 1024) {
        r = qmp_decoder_feed(big, chunk, 1 << 20, sink_cb, &s, &e);
        fed += 1 << 20;
        chunk[0] = chunk[1] = 'x';
    }
    assert_int_equal(r, -EMSGSIZE);
    assert_true(fed <= QMP_MAX_MESSAGE + (1u << 20));
    free(chunk);
    qmp_decoder_free(big);
    sink_free(&s);
    qmp_decoder_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_byte_at_a_time_and_one_chunk),
        cmocka_unit_test(test_separators_and_strings),
        cmocka_unit_test(test_big_integers),
        cmocka_unit_test(test_big_integer_beside_long_fraction),
        cmocka_unit_test(test_callback_stops_feed),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_large_message_buffer_released),
        cmocka_unit_test(test_nul_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
