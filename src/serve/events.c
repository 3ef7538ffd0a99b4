/* events.c — the event ring, SSE rendering, replay and subscribers (see events.h). */
#define _GNU_SOURCE
#include "serve/events.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slot {
    uint64_t seq; /* 0 = empty */
    char *type, *vm, *sse;
};

struct sv_event_sub {
    char *vm;
    sv_event_fn fn;
    void *arg;
    bool gone;
    struct sv_event_sub *next;
};

struct sv_events {
    struct slot *ring;
    size_t cap;
    uint64_t last;
    struct sv_event_sub *subs;
    int delivering; /* >0 while callbacks run: unsubscribe only marks */
};

struct sv_events *sv_events_new(size_t cap)
{
    struct sv_events *ev = calloc(1, sizeof(*ev));
    if (!ev || cap == 0 || !(ev->ring = calloc(cap, sizeof(*ev->ring)))) {
        free(ev);
        return NULL;
    }
    ev->cap = cap;
    return ev;
}

static void slot_clear(struct slot *s)
{
    free(s->type);
    free(s->vm);
    free(s->sse);
    memset(s, 0, sizeof(*s));
}

void sv_events_free(struct sv_events *ev)
{
    if (!ev)
        return;
    for (size_t i = 0; i < ev->cap; i++)
        slot_clear(&ev->ring[i]);
    while (ev->subs) {
        struct sv_event_sub *s = ev->subs;
        ev->subs = s->next;
        free(s->vm);
        free(s);
    }
    free(ev->ring);
    free(ev);
}

/* RFC 3339 UTC with milliseconds: "2026-12-07T12:00:00.123Z". */
static json_t *time_json(double t)
{
    time_t sec = (time_t)floor(t);
    int ms = (int)((t - (double)sec) * 1000.0);
    struct tm tm;
    char buf[64];
    gmtime_r(&sec, &tm);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ms < 0 ? 0 : ms > 999 ? 999 : ms);
    return json_string(buf);
}

/* data: {"vm":…,"time":…, then data's members}; one line (JSON has no raw newlines when compact). */
static char *render(uint64_t seq, const char *type, const char *vm, const json_t *data, double t)
{
    json_t *o = json_object();
    const char *k;
    json_t *v;
    char *d, *out = NULL;
    json_object_set_new(o, "vm", vm ? json_string(vm) : json_null());
    json_object_set_new(o, "time", time_json(t));
    json_object_foreach((json_t *)data, k, v)
        if (strcmp(k, "vm") && strcmp(k, "time"))
            json_object_set(o, k, v);
    d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!d)
        return NULL;
    if (seq ? asprintf(&out, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)seq, type, d) < 0
            : asprintf(&out, "event: %s\ndata: %s\n\n", type, d) < 0)
        out = NULL;
    free(d);
    return out;
}

static bool vm_matches(const char *filter, const char *vm)
{
    return !filter || !vm || !strcmp(filter, vm);
}

static void deliver(struct sv_events *ev, const struct sv_event *e)
{
    struct sv_event_sub **pp;
    ev->delivering++;
    for (struct sv_event_sub *s = ev->subs; s; s = s->next)
        if (!s->gone && vm_matches(s->vm, e->vm))
            s->fn(s->arg, e);
    ev->delivering--;
    if (ev->delivering)
        return;
    for (pp = &ev->subs; *pp;) {
        struct sv_event_sub *s = *pp;
        if (s->gone) {
            *pp = s->next;
            free(s->vm);
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

uint64_t sv_events_add(struct sv_events *ev, const char *type, const char *vm, const json_t *data, double t)
{
    uint64_t seq = ev->last + 1;
    struct slot *s = &ev->ring[(seq - 1) % ev->cap];
    struct sv_event e;
    slot_clear(s);
    s->sse = render(seq, type, vm, data, t);
    s->type = strdup(type);
    s->vm = vm ? strdup(vm) : NULL;
    if (!s->sse || !s->type || (vm && !s->vm)) {
        slot_clear(s);
        return 0;
    }
    s->seq = seq;
    ev->last = seq;
    e = (struct sv_event){ seq, s->type, s->vm, s->sse };
    deliver(ev, &e);
    return seq;
}

uint64_t sv_events_last(const struct sv_events *ev)
{
    return ev->last;
}

size_t sv_events_replay(struct sv_events *ev, uint64_t last_id, const char *vm, double now, sv_event_fn fn,
                        void *arg)
{
    uint64_t oldest = ev->last >= ev->cap ? ev->last - ev->cap + 1 : 1, from;
    size_t n = 0;
    if (last_id == 0)
        return 0;
    if (last_id > ev->last || last_id + 1 < oldest) {
        json_t *d = json_pack("{s:I,s:I}", "last_event_id", (json_int_t)last_id, "oldest", (json_int_t)oldest);
        char *txt = render(0, "events.lost", NULL, d, now);
        json_decref(d);
        if (txt) {
            struct sv_event e = { 0, "events.lost", NULL, txt };
            fn(arg, &e);
            free(txt);
            n++;
        }
        from = oldest;
    } else {
        from = last_id + 1;
    }
    for (uint64_t q = from; q <= ev->last; q++) {
        struct slot *s = &ev->ring[(q - 1) % ev->cap];
        if (s->seq == q && vm_matches(vm, s->vm)) {
            struct sv_event e = { s->seq, s->type, s->vm, s->sse };
            fn(arg, &e);
            n++;
        }
    }
    return n;
}

struct sv_event_sub *sv_events_subscribe(struct sv_events *ev, const char *vm, sv_event_fn fn, void *arg)
{
    struct sv_event_sub *s = calloc(1, sizeof(*s));
    if (!s || (vm && !(s->vm = strdup(vm)))) {
        free(s);
        return NULL;
    }
    s->fn = fn;
    s->arg = arg;
    s->next = ev->subs;
    ev->subs = s;
    return s;
}

void sv_events_unsubscribe(struct sv_events *ev, struct sv_event_sub *sub)
{
    struct sv_event_sub **pp;
    if (!sub)
        return;
    if (ev->delivering) {
        sub->gone = true;
        return;
    }
    for (pp = &ev->subs; *pp; pp = &(*pp)->next)
        if (*pp == sub) {
            *pp = sub->next;
            free(sub->vm);
            free(sub);
            return;
        }
}

uint64_t sv_events_parse_id(const char *s, int *ok)
{
    char *end;
    unsigned long long v;
    *ok = 0;
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return 0;
    *ok = 1;
    return v;
}
