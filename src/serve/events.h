/* events.h — the daemon's event stream (DESIGN §7 "Events"): a ring of the last N events (10,000 in the
 * daemon) with increasing sequence ids, rendered once as server-sent-event records
 *   id: <seq>\nevent: <type>\ndata: {"vm":…,"time":…, …}\n\n
 * replay for a client resuming with Last-Event-ID (an "events.lost" record first when the gap is older than
 * the ring), and live subscribers. No I/O: the HTTP layer writes the records. */
#ifndef SMMUCTL_SERVE_EVENTS_H
#define SMMUCTL_SERVE_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define SV_EVENTS_RING 10000

struct sv_events;

/* One record: what a subscriber receives. sse is the whole SSE text (ends with a blank line). */
struct sv_event {
    uint64_t seq;
    const char *type;
    const char *vm;  /* NULL for process-wide events */
    const char *sse;
};

/* cap: ring size (≥ 1). NULL when out of memory. */
struct sv_events *sv_events_new(size_t cap);
void sv_events_free(struct sv_events *ev);

/* Append an event: data (borrowed, may be NULL) holds the members after "vm" and "time"; time is the
 * wall-clock seconds (time(NULL) in the daemon, fixed in tests). Delivered to every subscriber whose filter
 * matches. Returns its seq (from 1). */
uint64_t sv_events_add(struct sv_events *ev, const char *type, const char *vm, const json_t *data, double time);

/* The newest seq (0 when none yet). */
uint64_t sv_events_last(const struct sv_events *ev);

typedef void (*sv_event_fn)(void *arg, const struct sv_event *e);

/* Replay for a client that saw everything up to last_id (0: a new client, nothing replayed): every kept
 * event with seq > last_id whose vm matches (vm NULL = all; process-wide events go to everyone), in order.
 * If events after last_id have already left the ring, an "events.lost" record comes first
 * (data {"vm":null,"time":…,"last_event_id":last_id,"oldest":<oldest seq kept>}, no id line), then every
 * kept event. A last_id beyond the newest seq (a previous daemon's numbering) is lost the same way.
 * Returns the number of records. */
size_t sv_events_replay(struct sv_events *ev, uint64_t last_id, const char *vm, double now, sv_event_fn fn,
                        void *arg);

/* Live delivery of later events matching vm (NULL = all). Returns a handle for sv_events_unsubscribe. */
struct sv_event_sub *sv_events_subscribe(struct sv_events *ev, const char *vm, sv_event_fn fn, void *arg);
/* Safe from inside a delivery callback (also for other subscribers). */
void sv_events_unsubscribe(struct sv_events *ev, struct sv_event_sub *sub);

/* Parse a Last-Event-ID header value: decimal seq. 0 and *ok false when malformed. */
uint64_t sv_events_parse_id(const char *s, int *ok);

/* The keep-alive comment line sent every 15 s on an idle stream. */
#define SV_EVENTS_KEEPALIVE ": keep-alive\n\n"

#endif
