/* reconnect.c — attempts with jittered exponential backoff on a timer. See include/smmuctl/qmp_reconnect.h. */
#include "smmuctl/qmp_reconnect.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct qmp_reconnect {
    struct event_base *base;
    struct qmp_reconnect_opts o;
    char *addr;
    qmp_reconnect_cb cb;
    void *payload;
    struct event *timer;
    qmp_client *c;          /* the attempt in progress */
    struct timespec start;
    int delay_ms;
    unsigned attempts;
    uint64_t rng;           /* xorshift state: per object, no global state */
    struct smmu_error last;
};

static long reconnect_elapsed_ms(const struct qmp_reconnect *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - r->start.tv_sec) * 1000 + (now.tv_nsec - r->start.tv_nsec) / 1000000;
}

static int reconnect_jitter(struct qmp_reconnect *r, int ms)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    int span = ms / 2; /* ±25 % */
    return span > 0 ? ms - span / 2 + (int)(r->rng % (uint64_t)(span + 1)) : ms;
}

static void reconnect_free(qmp_reconnect *r)
{
    if (r->timer)
        event_free(r->timer);
    if (r->c)
        qmp_client_free(r->c);
    free(r->addr);
    free(r);
}

static void reconnect_end(qmp_reconnect *r, int err)
{
    qmp_client *c = err == 0 ? r->c : NULL;
    struct smmu_error e = r->last;
    qmp_reconnect_cb cb = r->cb;
    void *payload = r->payload;
    if (c) {
        qmp_client_on_state(c, NULL, NULL);
        r->c = NULL;
    }
    reconnect_free(r);
    cb(err, c, err < 0 ? &e : NULL, payload);
}

static void reconnect_attempt(qmp_reconnect *r);

/* An attempt failed: wait the next delay, or give up at the deadline. */
static void reconnect_again(qmp_reconnect *r)
{
    long left = r->o.deadline_ms < 0 ? -1 : r->o.deadline_ms - reconnect_elapsed_ms(r);
    int max_ms = r->o.max_ms > 0 ? r->o.max_ms : 5000;
    if (left == 0 || (left < 0 && r->o.deadline_ms >= 0)) {
        reconnect_end(r, r->last.code ? r->last.code : -ECONNREFUSED);
        return;
    }
    int ms = reconnect_jitter(r, r->delay_ms);
    if (left >= 0 && ms > left)
        ms = (int)left; /* one last attempt at the deadline */
    r->delay_ms = r->delay_ms * 2 > max_ms ? max_ms : r->delay_ms * 2;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

static void reconnect_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    qmp_reconnect *r = payload;
    (void)c;
    if (err == 0) {
        reconnect_end(r, 0);
        return;
    }
    smmu_error_copy(&r->last, e);
    if (!r->last.code)
        r->last.code = err;
    qmp_client_on_state(r->c, NULL, NULL);
    qmp_client_free(r->c); /* safe from its own callback */
    r->c = NULL;
    reconnect_again(r);
}

static void reconnect_attempt(qmp_reconnect *r)
{
    int rc;
    r->attempts++;
    if ((rc = qmp_client_new(&r->c, r->base, &r->o.client)) < 0) {
        smmu_error_set(&r->last, rc, "cannot create a QMP client: %s", strerror(-rc));
        reconnect_again(r);
        return;
    }
    rc = qmp_client_connect(r->c, r->addr, reconnect_state_cb, r);
    if (rc < 0) {
        smmu_error_set(&r->last, rc, "cannot connect to QEMU at %s: %s", r->addr,
                       rc == -EINVAL ? "bad address (expected PATH, unix:PATH or tcp:HOST:PORT)" : strerror(-rc));
        qmp_client_free(r->c);
        r->c = NULL;
        reconnect_again(r);
    }
}

static void reconnect_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    reconnect_attempt(arg);
}

int qmp_reconnect_start(struct event_base *base, const struct qmp_reconnect_opts *o, qmp_reconnect_cb cb,
                        void *payload, qmp_reconnect **out)
{
    qmp_reconnect *r;
    if (out)
        *out = NULL;
    if (!o || !o->addr || !cb)
        return -EINVAL;
    if (!(r = calloc(1, sizeof(*r))))
        return -ENOMEM;
    r->base = base;
    r->o = *o;
    r->cb = cb;
    r->payload = payload;
    r->addr = strdup(o->addr);
    r->timer = evtimer_new(base, reconnect_timer_cb, r);
    if (!r->addr || !r->timer) {
        reconnect_free(r);
        return -ENOMEM;
    }
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    r->rng = ((uint64_t)r->start.tv_nsec << 20) ^ (uint64_t)(uintptr_t)r ^ 0x9e3779b97f4a7c15ull;
    r->delay_ms = o->initial_ms > 0 ? o->initial_ms : 100;
    /* the first attempt runs from the loop too: cb is never called from inside start */
    struct timeval zero = {0, 0};
    evtimer_add(r->timer, &zero);
    if (out)
        *out = r;
    return 0;
}

void qmp_reconnect_cancel(qmp_reconnect *r)
{
    if (r)
        reconnect_free(r);
}

unsigned qmp_reconnect_attempts(const qmp_reconnect *r)
{
    return r ? r->attempts : 0;
}

qmp_client *qmp_reconnect_client(const qmp_reconnect *r)
{
    return r ? r->c : NULL;
}
