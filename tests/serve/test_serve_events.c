/* test_serve_events.c — the event ring: SSE records, sequence ids, VM filter, Last-Event-ID resume with
 * events.lost when the gap left the ring, live subscribers (also unsubscribing from inside a delivery). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "serve/events.h"

#define T0 1796644800.25 /* 2026-12-07T12:00:00.250Z */

struct got {
    char text[8192];
    int n;
    uint64_t seqs[64];
};

static void collect(void *arg, const struct sv_event *e)
{
    struct got *g = arg;
    strncat(g->text, e->sse, sizeof(g->text) - strlen(g->text) - 1);
    if (g->n < 64)
        g->seqs[g->n] = e->seq;
    g->n++;
}

static void test_record_format(void **state)
{
    struct sv_events *ev = sv_events_new(8);
    json_t *d = json_pack("{s:s,s:s,s:s}", "device", "hostdev0", "vm", "ignored", "host", "0009:01:00.0");
    struct got g = {0};
    (void)state;
    assert_int_equal(sv_events_add(ev, "device.attached", "vm1", d, T0), 1);
    assert_int_equal(sv_events_add(ev, "vm.connected", "vm2", NULL, T0), 2);
    assert_int_equal(sv_events_last(ev), 2);
    assert_int_equal(sv_events_replay(ev, 0, NULL, T0, collect, &g), 0); /* a new client gets only live ones */
    assert_int_equal(sv_events_replay(ev, 1, NULL, T0, collect, &g), 1);
    assert_string_equal(g.text, "id: 2\nevent: vm.connected\n"
                                "data: {\"vm\":\"vm2\",\"time\":\"2026-12-07T12:00:00.250Z\"}\n\n");
    memset(&g, 0, sizeof(g));
    sv_events_subscribe(ev, NULL, collect, &g);
    sv_events_add(ev, "device.attached", "vm1", d, T0);
    assert_string_equal(g.text, "id: 3\nevent: device.attached\ndata: {\"vm\":\"vm1\",\"time\":"
                                "\"2026-12-07T12:00:00.250Z\",\"device\":\"hostdev0\",\"host\":\"0009:01:00.0\"}\n\n");
    json_decref(d);
    sv_events_free(ev);
}

static void test_resume_and_filter(void **state)
{
    struct sv_events *ev = sv_events_new(100);
    struct got g = {0};
    (void)state;
    for (int i = 0; i < 10; i++)
        sv_events_add(ev, "device.detached", i % 2 ? "odd" : "even", NULL, T0);
    sv_events_add(ev, "events.test", NULL, NULL, T0); /* process-wide: every filter sees it */
    assert_int_equal(sv_events_replay(ev, 4, "odd", T0, collect, &g), 4);
    assert_int_equal(g.seqs[0], 6);
    assert_int_equal(g.seqs[1], 8);
    assert_int_equal(g.seqs[2], 10);
    assert_int_equal(g.seqs[3], 11);
    assert_null(strstr(g.text, "events.lost"));
    memset(&g, 0, sizeof(g));
    assert_int_equal(sv_events_replay(ev, 11, NULL, T0, collect, &g), 0); /* up to date */
    sv_events_free(ev);
}

static void test_gap_older_than_ring(void **state)
{
    struct sv_events *ev = sv_events_new(5);
    struct got g = {0};
    (void)state;
    for (int i = 0; i < 12; i++)
        sv_events_add(ev, "vm.reconciled", "a", NULL, T0); /* keeps 8..12 */
    assert_int_equal(sv_events_replay(ev, 7, NULL, T0, collect, &g), 5); /* 8 is kept: nothing lost */
    assert_int_equal(g.seqs[0], 8);
    memset(&g, 0, sizeof(g));
    assert_int_equal(sv_events_replay(ev, 3, NULL, T0, collect, &g), 6);
    assert_int_equal(g.seqs[0], 0);
    assert_int_equal(g.seqs[1], 8);
    assert_int_equal(g.seqs[5], 12);
    {
        const char *want = "event: events.lost\ndata: {\"vm\":null,\"time\":\"2026-12-07T12:00:00.250Z\","
                           "\"last_event_id\":3,\"oldest\":8}\n\nid: 8\n";
        assert_memory_equal(g.text, want, strlen(want));
    }
    /* an id from a previous daemon (beyond ours): lost, then everything kept */
    memset(&g, 0, sizeof(g));
    assert_int_equal(sv_events_replay(ev, 500, NULL, T0, collect, &g), 6);
    assert_non_null(strstr(g.text, "\"last_event_id\":500,\"oldest\":8}"));
    assert_int_equal(g.seqs[1], 8);
    sv_events_free(ev);
}

struct selfremove {
    struct sv_events *ev;
    struct sv_event_sub *sub, *other;
    int n;
};

static void drop_both(void *arg, const struct sv_event *e)
{
    struct selfremove *s = arg;
    (void)e;
    s->n++;
    sv_events_unsubscribe(s->ev, s->sub);
    sv_events_unsubscribe(s->ev, s->other);
}

static void test_subscribers(void **state)
{
    struct sv_events *ev = sv_events_new(4);
    struct got ga = {0}, gb = {0};
    struct selfremove sr = { ev, NULL, NULL, 0 };
    struct sv_event_sub *a;
    (void)state;
    a = sv_events_subscribe(ev, "a", collect, &ga);
    sv_events_subscribe(ev, NULL, collect, &gb);
    sv_events_add(ev, "x", "a", NULL, T0);
    sv_events_add(ev, "x", "b", NULL, T0);
    assert_int_equal(ga.n, 1);
    assert_int_equal(gb.n, 2);
    sv_events_unsubscribe(ev, a);
    sv_events_add(ev, "x", "a", NULL, T0);
    assert_int_equal(ga.n, 1);
    /* a callback that removes itself and another subscriber (delivered before or after it) */
    sr.other = sv_events_subscribe(ev, NULL, collect, &ga);
    sr.sub = sv_events_subscribe(ev, NULL, drop_both, &sr);
    sv_events_add(ev, "x", "a", NULL, T0);
    sv_events_add(ev, "x", "a", NULL, T0);
    assert_int_equal(sr.n, 1);
    assert_int_equal(ga.n, 1); /* removed during the first delivery, before its turn */
    assert_int_equal(gb.n, 5);
    sv_events_free(ev);
}

static void test_parse_id(void **state)
{
    int ok;
    (void)state;
    assert_int_equal(sv_events_parse_id("42", &ok), 42);
    assert_true(ok);
    assert_int_equal(sv_events_parse_id("0", &ok), 0);
    assert_true(ok);
    sv_events_parse_id("", &ok);
    assert_false(ok);
    sv_events_parse_id("-1", &ok);
    assert_false(ok);
    sv_events_parse_id("12x", &ok);
    assert_false(ok);
    sv_events_parse_id("99999999999999999999999", &ok);
    assert_false(ok);
    sv_events_parse_id(NULL, &ok);
    assert_false(ok);
    assert_null(sv_events_new(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_format),
        cmocka_unit_test(test_resume_and_filter),
        cmocka_unit_test(test_gap_older_than_ring),
        cmocka_unit_test(test_subscribers),
        cmocka_unit_test(test_parse_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
