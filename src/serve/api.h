/* api.h — the daemon's HTTP API surface without the transport (DESIGN §7 "Routes"): the route table,
 * matching a method + path to a route with its path parameters (404 unknown route, 405 with the Allow
 * list), request bodies (a JSON object whose members are all known, else 400 naming the member) and the
 * error body {"ok":false,"error":{…}} exactly as the CLI's --json error member (smmu_error_json). */
#ifndef SMMUCTL_SERVE_API_H
#define SMMUCTL_SERVE_API_H

#include <stddef.h>
#include <jansson.h>

#include "smmuctl/error.h"

enum sv_route_id {
    SV_R_HEALTHZ, SV_R_READYZ, SV_R_METRICS, SV_R_EVENTS,
    SV_R_VMS, SV_R_VM_PUT, SV_R_VM_GET, SV_R_VM_DELETE,
    SV_R_TOPOLOGY, SV_R_PLAN, SV_R_ATTACH, SV_R_DETACH, SV_R_DEVICES, SV_R_OPERATION,
};

struct sv_route {
    const char *method;
    const char *pattern;   /* "/v1/vms/{vm}/attach": {name} matches one non-empty segment */
    enum sv_route_id id;
    const char *const *members; /* accepted body members (NULL-terminated); NULL = no body */
};

/* Every route of §7, in the order of DESIGN §7; ends with {NULL}. */
extern const struct sv_route sv_routes[];

#define SV_PARAM_MAX 256

struct sv_match {
    const struct sv_route *route;
    char vm[SV_PARAM_MAX]; /* {vm}, "" if none */
    char id[SV_PARAM_MAX]; /* {id}, "" if none */
    char allow[128];       /* on 405: "GET, PUT, DELETE" */
};

/* Match `path` (no query string; percent-encoded segments are compared as given). 200 matched, 404 no
 * route has this path, 405 the path exists for other methods (m->allow lists them, in table order; HEAD is
 * not served), 400 a path parameter longer than SV_PARAM_MAX-1. */
int sv_route_match(const char *method, const char *path, struct sv_match *m);

/* Parse a request body that must be a JSON object with only `members` (NULL-terminated). An empty body is
 * {}. 0 and *out (new reference), or -EINVAL with err->message naming the problem:
 *   "request body is not valid JSON: <jansson's text> at line L column C"
 *   "request body must be a JSON object"
 *   "request body: unknown member 'x' (known: a, b)" */
int sv_body_parse(const char *body, size_t len, const char *const *members, json_t **out, struct smmu_error *err);

/* {"ok":false,"error":{code,class?,desc?,step?,message}}: new reference. */
json_t *sv_error_body(const struct smmu_error *e);

#endif
