/* api.c — the §7 route table, route matching, request bodies and error bodies (see api.h). */
#define _GNU_SOURCE
#include "serve/api.h"
#include "smmuctl/error_json.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *const m_vm_put[] = { "qmp", "fd_pass", NULL };
static const char *const m_attach[] = { "devices", "fd_pass", "iommufd", "ids", "allow_mismatch", NULL };
static const char *const m_plan[] = { "devices", "fd_pass", "iommufd", "ids", "allow_mismatch", NULL };
static const char *const m_detach[] = { "devices", "unplug_timeout", NULL };
static const char *const m_devices[] = { "devices", NULL };

const struct sv_route sv_routes[] = {
    { "GET", "/healthz", SV_R_HEALTHZ, NULL },
    { "GET", "/readyz", SV_R_READYZ, NULL },
    { "GET", "/v1/vms", SV_R_VMS, NULL },
    { "PUT", "/v1/vms/{vm}", SV_R_VM_PUT, m_vm_put },
    { "GET", "/v1/vms/{vm}", SV_R_VM_GET, NULL },
    { "DELETE", "/v1/vms/{vm}", SV_R_VM_DELETE, NULL },
    { "GET", "/v1/vms/{vm}/topology", SV_R_TOPOLOGY, NULL },
    { "POST", "/v1/vms/{vm}/plan", SV_R_PLAN, m_plan },
    { "POST", "/v1/vms/{vm}/attach", SV_R_ATTACH, m_attach },
    { "POST", "/v1/vms/{vm}/detach", SV_R_DETACH, m_detach },
    { "PUT", "/v1/vms/{vm}/devices", SV_R_DEVICES, m_devices },
    { "GET", "/v1/operations/{id}", SV_R_OPERATION, NULL },
    { "GET", "/v1/events", SV_R_EVENTS, NULL },
    { "GET", "/metrics", SV_R_METRICS, NULL },
    { NULL, NULL, 0, NULL },
};

/* Does path match pattern? Fills {vm}/{id}. -1 on a too-long parameter. */
static int match_one(const char *pattern, const char *path, struct sv_match *m)
{
    const char *p = pattern, *s = path;
    char vm[SV_PARAM_MAX] = "", id[SV_PARAM_MAX] = "";
    while (*p && *s) {
        if (*p == '{') {
            const char *pe = strchr(p, '}'), *se = strchrnul(s, '/');
            size_t n = (size_t)(se - s);
            char *dst = !strncmp(p, "{vm}", 4) ? vm : id;
            if (n == 0)
                return 0;
            if (n >= SV_PARAM_MAX)
                return -1;
            memcpy(dst, s, n);
            dst[n] = 0;
            p = pe + 1;
            s = se;
        } else if (*p++ != *s++) {
            return 0;
        }
    }
    if (*p || *s)
        return 0;
    snprintf(m->vm, sizeof(m->vm), "%s", vm);
    snprintf(m->id, sizeof(m->id), "%s", id);
    return 1;
}

int sv_route_match(const char *method, const char *path, struct sv_match *m)
{
    bool path_known = false;
    memset(m, 0, sizeof(*m));
    for (const struct sv_route *r = sv_routes; r->method; r++) {
        struct sv_match tmp;
        int rc = match_one(r->pattern, path, &tmp);
        if (rc < 0)
            return 400;
        if (!rc)
            continue;
        if (!strcmp(r->method, method)) {
            *m = tmp;
            m->route = r;
            m->allow[0] = 0;
            return 200;
        }
        if (!strstr(m->allow, r->method)) {
            size_t n = strlen(m->allow);
            snprintf(m->allow + n, sizeof(m->allow) - n, "%s%s", n ? ", " : "", r->method);
        }
        path_known = true;
    }
    return path_known ? 405 : 404;
}

int sv_body_parse(const char *body, size_t len, const char *const *members, json_t **out, struct smmu_error *err)
{
    json_error_t je;
    json_t *o;
    const char *k;
    json_t *v;
    *out = NULL;
    if (len == 0) {
        *out = json_object();
        return 0;
    }
    o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return smmu_error_set(err, -EINVAL, "request body is not valid JSON: %s at line %d column %d", je.text,
                              je.line, je.column);
    if (!json_is_object(o)) {
        json_decref(o);
        return smmu_error_set(err, -EINVAL, "request body must be a JSON object");
    }
    json_object_foreach(o, k, v) {
        bool known = false;
        for (size_t i = 0; members && members[i]; i++)
            if (!strcmp(members[i], k))
                known = true;
        if (!known) {
            char list[256] = "";
            for (size_t i = 0; members && members[i]; i++) {
                size_t n = strlen(list);
                snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", members[i]);
            }
            smmu_error_set(err, -EINVAL, "request body: unknown member '%.200s' (known: %s)", k,
                           list[0] ? list : "none");
            json_decref(o);
            return -EINVAL;
        }
    }
    *out = o;
    return 0;
}

json_t *sv_error_body(const struct smmu_error *e)
{
    return json_pack("{s:b,s:o}", "ok", 0, "error", smmu_error_json(e));
}
