/* sim_srv.h — the glue between QMP commands (sim_cmds.c) and the server loop (sim_server.c). */
#ifndef SIM_SRV_H
#define SIM_SRV_H

#include <stdbool.h>
#include <jansson.h>

#include "sim.h"

struct sim_srv;

/* Result of one command: either ret (a value) or an error (klass + desc). */
struct sim_result {
    json_t *ret;
    char klass[64];
    char desc[1024];
};

#define SIM_ERR(r, k, ...) do { snprintf((r)->klass, sizeof((r)->klass), "%s", k); \
                                snprintf((r)->desc, sizeof((r)->desc), __VA_ARGS__); } while (0)

/* Execute a negotiated-mode command. Events go out through sim_srv_event*. */
void sim_cmd_execute(struct sim_srv *srv, struct sim *s, const char *name, json_t *args, struct sim_result *r);
/* True if the command exists (for CommandNotFound). */
bool sim_cmd_exists(const char *name);

/* Emit an event now (queued in order on the client's output, dropped when no negotiated client). */
void sim_srv_event(struct sim_srv *srv, const char *name, json_t *data /* stolen, may be NULL */);
/* DEVICE_DELETED / DEVICE_UNPLUG_GUEST_ERROR for a device after delay_ms (0 = next loop turn). */
void sim_srv_unplug_later(struct sim_srv *srv, const char *id, int delay_ms, bool guest_error);
/* Remove a device now and emit DEVICE_DELETED (also used by the timer). */
void sim_srv_unplug_now(struct sim_srv *srv, struct sim *s, struct sim_dev *d);
/* Ask the loop to exit after this command's reply is flushed. */
void sim_srv_request_quit(struct sim_srv *srv);

#endif
