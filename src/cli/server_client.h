/* server_client.h — `smmuctl --server unix:PATH`: a small blocking HTTP/1.1 client for the daemon's API
 * (docs/openapi.json) over its unix socket. The CLI is a front-end: it waits with a deadline, never forever,
 * and a signal it was told to watch ends the wait at once. It knows the API only, not src/serve. */
#ifndef SMMUCTL_CLI_SERVER_CLIENT_H
#define SMMUCTL_CLI_SERVER_CLIENT_H

#include <signal.h>
#include <jansson.h>
#include "smmuctl/error.h"

struct sc_resp {
    int status;              /* HTTP status */
    char location[256];      /* Location header, "" when absent */
    char operation[128];     /* Smmuctl-Operation header, "" when absent */
    json_t *body;            /* the body as JSON (NULL when empty or not JSON) */
};

/* One request on its own connection (Connection: close): METHOD target with body (a JSON text, or NULL)
 * sent to the unix socket at path, the whole response read within timeout_ms. When *stop (may be NULL)
 * becomes non-zero (a signal handler) the wait ends with -EINTR. 0 and *r filled (free with sc_resp_free),
 * or a negative errno with e set: -ENOENT / -ECONNREFUSED / -EACCES... (cannot connect), -ETIMEDOUT (no whole
 * answer in time), -EPROTO (not HTTP, or too large), -EINTR. */
int sc_request(const char *path, const char *method, const char *target, const char *body, int timeout_ms,
               volatile sig_atomic_t *stop, struct sc_resp *r, struct smmu_error *e);
void sc_resp_free(struct sc_resp *r);

#endif
