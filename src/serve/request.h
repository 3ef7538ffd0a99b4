/* request.h — what a request body's members must hold (DESIGN §7), after sv_body_parse accepted their
 * names: the types (400: "'devices' must be …", "devices[2] must be …", naming the member) and the values
 * that are bad input though well-formed (422: an empty device list for attach/detach/plan, more ids than
 * devices, unplug_timeout out of (0, 86400], an empty qmp). The backend gets only bodies that pass. */
#ifndef SMMUCTL_SERVE_REQUEST_H
#define SMMUCTL_SERVE_REQUEST_H

#include <jansson.h>

#include "serve/api.h"
#include "smmuctl/error.h"

/* 0 when body (an object) is fit for route id, else 400 or 422 with err->message saying what. */
int sv_request_check_body(enum sv_route_id id, const json_t *body, struct smmu_error *err);

/* Fill err (code -EINVAL, the message) and return status: the shape of every refusal above. */
int sv_request_bad(struct smmu_error *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
