/* events.c — event subscriptions: filtered by name and data.device, swept safely while dispatching. */
#define _GNU_SOURCE
#include "qmp/client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- subscriptions ---- */

void qmpc_subs_sweep(qmp_client *c)
{
    if (c->busy)
        return;
    for (struct qmp_sub **pp = &c->subs; *pp;) {
        struct qmp_sub *s = *pp;
        if (s->dead) {
            *pp = s->next;
            free(s->event);
            free(s->device);
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

void qmpc_subs_dispatch(qmp_client *c, const char *event, json_t *data, json_t *msg)
{
    const char *device = NULL;
    json_t *dv = data ? json_object_get(data, "device") : NULL;
    if (json_is_string(dv))
        device = json_string_value(dv);
    unsigned gen = c->conn_gen;
    qmpc_hold(c);
    for (struct qmp_sub *s = c->subs; s && !c->dead; s = s->next) {
        if (event && c->conn_gen != gen)
            break; /* a subscriber closed the connection: the others were told; no event after that */
        if (s->dead)
            continue;
        if (event && s->event && strcmp(s->event, event))
            continue;
        if (event && s->device && (!device || strcmp(s->device, device)))
            continue;
        s->cb(c, event, data, msg, s->payload);
    }
    if (qmpc_release(c))
        qmpc_subs_sweep(c);
}

int qmp_subscribe(qmp_client *c, const char *event, const char *device, qmp_event_cb cb, void *payload,
                  qmp_sub **out)
{
    struct qmp_sub *s = calloc(1, sizeof(*s));
    if (!s || !cb) {
        free(s);
        return s ? -EINVAL : -ENOMEM;
    }
    s->c = c;
    s->cb = cb;
    s->payload = payload;
    if ((event && !(s->event = strdup(event))) || (device && !(s->device = strdup(device)))) {
        free(s->event);
        free(s);
        return -ENOMEM;
    }
    /* append: subscribers are told in subscription order */
    struct qmp_sub **pp = &c->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    if (out)
        *out = s;
    return 0;
}

void qmp_unsubscribe(qmp_sub *s)
{
    if (!s)
        return;
    s->dead = true;
    qmpc_subs_sweep(s->c);
}
