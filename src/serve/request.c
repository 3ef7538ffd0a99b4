/* request.c — request bodies beyond their member names (see request.h). */
#define _GNU_SOURCE
#include "serve/request.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>


int sv_request_bad(struct smmu_error *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    err->code = -EINVAL;
    return status;
}

static int want_type(const json_t *body, const char *member, json_type type, const char *what, struct smmu_error *err)
{
    const json_t *v = json_object_get(body, member);
    if (!v)
        return 0;
    if (json_typeof(v) != type && !(type == JSON_REAL && json_is_integer(v)) &&
        !(type == JSON_TRUE && json_is_boolean(v)))
        return sv_request_bad(err, 400, "request body: '%s' must be %s", member, what);
    return 0;
}

int sv_request_check_body(enum sv_route_id id, const json_t *body, struct smmu_error *err)
{
    const json_t *devs = json_object_get(body, "devices"), *v;
    size_t i;
    int r;
    switch (id) {
    case SV_R_VM_PUT:
        if (!json_is_string(json_object_get(body, "qmp")))
            return sv_request_bad(err, 400, "request body: 'qmp' (a string, e.g. \"unix:/run/vm1.qmp\") is required");
        if (!*json_string_value(json_object_get(body, "qmp")))
            return sv_request_bad(err, 422, "request body: 'qmp' is empty");
        return want_type(body, "fd_pass", JSON_TRUE, "true or false", err);
    case SV_R_ATTACH:
    case SV_R_PLAN:
        if (!json_is_array(devs))
            return sv_request_bad(err, 400,
                                  "request body: 'devices' (an array of PCI addresses or {\"xml\":…}) is required");
        if (json_array_size(devs) == 0)
            return sv_request_bad(err, 422, "request body: 'devices' is empty: no device to %s",
                                  id == SV_R_PLAN ? "plan" : "attach");
        json_array_foreach(devs, i, v) {
            if (json_is_string(v))
                continue;
            if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(json_object_get(v, "xml")))
                continue;
            return sv_request_bad(err, 400,
                                  "request body: devices[%zu] must be a PCI address string or {\"xml\":\"<hostdev…>\"}",
                                  i);
        }
        if ((r = want_type(body, "fd_pass", JSON_TRUE, "true or false", err)) ||
            (r = want_type(body, "allow_mismatch", JSON_TRUE, "true or false", err)) ||
            (r = want_type(body, "iommufd", JSON_STRING, "a string", err)) ||
            (r = want_type(body, "ids", JSON_ARRAY, "an array of strings", err)))
            return r;
        v = json_object_get(body, "ids");
        if (v) {
            const json_t *x;
            json_array_foreach(v, i, x)
                if (!json_is_string(x))
                    return sv_request_bad(err, 400, "request body: ids[%zu] must be a string", i);
            if (json_array_size(v) > json_array_size(devs))
                return sv_request_bad(err, 422, "request body: %zu ids for %zu devices", json_array_size(v),
                                      json_array_size(devs));
        }
        return 0;
    case SV_R_DETACH:
        if (!json_is_array(devs))
            return sv_request_bad(err, 400,
                                  "request body: 'devices' (an array of QEMU ids or PCI addresses) is required");
        if (json_array_size(devs) == 0)
            return sv_request_bad(err, 422, "request body: 'devices' is empty: no device to detach");
        json_array_foreach(devs, i, v)
            if (!json_is_string(v))
                return sv_request_bad(err, 400,
                                      "request body: devices[%zu] must be a string (QEMU id or PCI address)", i);
        if ((r = want_type(body, "unplug_timeout", JSON_REAL, "a number of seconds", err)))
            return r;
        v = json_object_get(body, "unplug_timeout");
        if (v && !(json_number_value(v) > 0 && json_number_value(v) <= 86400))
            return sv_request_bad(err, 422,
                                  "request body: 'unplug_timeout' must be more than 0 and at most 86400 seconds");
        return 0;
    case SV_R_DEVICES:
        if (!json_is_array(devs))
            return sv_request_bad(err, 400,
                                  "request body: 'devices' (an array of {\"host\":…, \"id\"?:…}) is required");
        json_array_foreach(devs, i, v) {
            const char *k;
            const json_t *x;
            if (!json_is_object(v) || !json_is_string(json_object_get(v, "host")))
                return sv_request_bad(err, 400, "request body: devices[%zu] must be an object with a 'host' string", i);
            json_object_foreach((json_t *)v, k, x) {
                if (strcmp(k, "host") && strcmp(k, "id"))
                    return sv_request_bad(err, 400,
                                          "request body: devices[%zu]: unknown member '%.100s' (known: host, id)", i, k);
                if (!json_is_string(x))
                    return sv_request_bad(err, 400, "request body: devices[%zu].%s must be a string", i, k);
            }
        }
        return 0;
    default:
        return 0;
    }
}

