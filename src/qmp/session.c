/* session.c — the session: QMP greeting and capability negotiation (oob when offered and wanted). */
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

/* ---- greeting and negotiation ---- */

static void negotiate_reply(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    (void)ret; (void)payload;
    if (c->state != QMP_STATE_NEGOTIATING)
        return;
    if (err) {
        struct smmu_error e2 = SMMU_ERROR_INIT;
        smmu_error_copy(&e2, e);
        smmu_error_prefix(&e2, "capability negotiation with %s failed", c->addr);
        qmpc_conn_fail(c, err == -EIO ? -EPROTO : err, &e2);
        return;
    }
    c->state = QMP_STATE_READY;
    if (c->ev_connect_timer) {
        event_free(c->ev_connect_timer);
        c->ev_connect_timer = NULL;
    }
    if (c->state_cb)
        c->state_cb(c, 0, NULL, c->state_payload);
}

void qmpc_handle_greeting(qmp_client *c, json_t *msg, const char *raw, size_t raw_len)
{
    json_t *qmp = json_object_get(msg, "QMP");
    json_t *ver, *caps, *args = NULL;
    size_t i;
    json_t *v;
    if (!json_is_object(qmp)) {
        qmpc_conn_failf(c, -EPROTO, "%s is not a QMP monitor: its first message was %.*s%s", c->addr,
                   (int)(raw_len > 120 ? 120 : raw_len), raw, raw_len > 120 ? "…" : "");
        return;
    }
    ver = json_object_get(json_object_get(qmp, "version"), "qemu");
    c->greeting.major = (int)json_integer_value(json_object_get(ver, "major"));
    c->greeting.minor = (int)json_integer_value(json_object_get(ver, "minor"));
    c->greeting.micro = (int)json_integer_value(json_object_get(ver, "micro"));
    snprintf(c->greeting.package, sizeof(c->greeting.package), "%s",
             json_string_value(json_object_get(json_object_get(qmp, "version"), "package")) ?: "");
    caps = json_object_get(qmp, "capabilities");
    json_array_foreach(caps, i, v)
        if (json_is_string(v) && !strcmp(json_string_value(v), "oob"))
            c->greeting.oob = true;
    qmp_client_record_comment(c, "QEMU version: %d.%d.%d (%s)", c->greeting.major, c->greeting.minor,
                              c->greeting.micro, c->greeting.package);
    c->state = QMP_STATE_NEGOTIATING;
    if (c->opts.negotiate_oob && c->greeting.oob)
        args = json_pack("{s:[s]}", "enable", "oob");
    int r = qmpc_call_submit(c, "qmp_capabilities", args, NULL, 0, -1, negotiate_reply, NULL);
    if (r < 0)
        qmpc_conn_failf(c, r, "sending qmp_capabilities to %s: %s", c->addr, strerror(-r));
}
