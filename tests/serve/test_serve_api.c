/* test_serve_api.c — the §7 route table: matching with path parameters, 404 unknown route, 405 with
 * Allow, over-long parameters; request bodies (object only, unknown member named, bad JSON located);
 * the error body equal to the CLI's --json error member; and docs/openapi.json describing exactly the
 * routes (and body members) the router knows. */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "serve/api.h"
#include "smmuctl/error_json.h"

static void test_match(void **state)
{
    struct sv_match m;
    char longp[600];
    (void)state;
    assert_int_equal(sv_route_match("GET", "/healthz", &m), 200);
    assert_int_equal(m.route->id, SV_R_HEALTHZ);
    assert_int_equal(sv_route_match("POST", "/v1/vms/vm-1/attach", &m), 200);
    assert_int_equal(m.route->id, SV_R_ATTACH);
    assert_string_equal(m.vm, "vm-1");
    assert_int_equal(sv_route_match("GET", "/v1/operations/67a1-3", &m), 200);
    assert_string_equal(m.id, "67a1-3");
    assert_string_equal(m.vm, "");
    assert_int_equal(sv_route_match("DELETE", "/v1/vms/a", &m), 200);
    assert_int_equal(m.route->id, SV_R_VM_DELETE);
    assert_int_equal(sv_route_match("POST", "/v1/vms/a", &m), 405);
    assert_string_equal(m.allow, "PUT, GET, DELETE");
    assert_null(m.route);
    assert_int_equal(sv_route_match("GET", "/v1/vms/a/attach", &m), 405);
    assert_string_equal(m.allow, "POST");
    assert_int_equal(sv_route_match("PUT", "/metrics", &m), 405);
    assert_string_equal(m.allow, "GET");
    assert_int_equal(sv_route_match("GET", "/v1/vms/", &m), 404); /* an empty {vm} */
    assert_int_equal(sv_route_match("GET", "/v1/vms/a/b", &m), 404);
    assert_int_equal(sv_route_match("GET", "/v1/vmsx", &m), 404);
    assert_int_equal(sv_route_match("GET", "/healthz/", &m), 404);
    assert_int_equal(sv_route_match("GET", "", &m), 404);
    memcpy(longp, "/v1/vms/", 8);
    memset(longp + 8, 'v', 300);
    longp[308] = 0;
    assert_int_equal(sv_route_match("GET", longp, &m), 400);
}

static const char *const attach_members[] = { "devices", "fd_pass", NULL };

static void test_body(void **state)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    json_t *o;
    (void)state;
    assert_int_equal(sv_body_parse("{\"devices\":[],\"fd_pass\":true}", 29, attach_members, &o, &err), 0);
    assert_true(json_is_true(json_object_get(o, "fd_pass")));
    json_decref(o);
    assert_int_equal(sv_body_parse("", 0, attach_members, &o, &err), 0);
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
    assert_int_equal(sv_body_parse("{\"devices\":[],\"fdpass\":1}", 25, attach_members, &o, &err), -EINVAL);
    assert_null(o);
    assert_string_equal(err.message, "request body: unknown member 'fdpass' (known: devices, fd_pass)");
    assert_int_equal(sv_body_parse("{\"x\":1}", 7, NULL, &o, &err), -EINVAL);
    assert_string_equal(err.message, "request body: unknown member 'x' (known: none)");
    assert_int_equal(sv_body_parse("[1]", 3, attach_members, &o, &err), -EINVAL);
    assert_string_equal(err.message, "request body must be a JSON object");
    assert_int_equal(sv_body_parse("{\"devices\":[}", 13, attach_members, &o, &err), -EINVAL);
    assert_non_null(strstr(err.message, "request body is not valid JSON: "));
    assert_non_null(strstr(err.message, "at line 1 column 13"));
    assert_int_equal(sv_body_parse("{\"a\":1,\"a\":2}", 13, attach_members, &o, &err), -EINVAL);
    assert_non_null(strstr(err.message, "duplicate object key"));
    assert_int_equal(sv_body_parse("{} x", 4, attach_members, &o, &err), -EINVAL); /* trailing garbage */
}

static void test_error_body_is_cli_error(void **state)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    json_t *b, *want;
    char *txt;
    (void)state;
    smmu_error_set_qmp(&e, "device_add", "GenericError", "Bus 'rp9' not found");
    snprintf(e.step, sizeof(e.step), "device_add hostdev0");
    b = sv_error_body(&e);
    want = json_pack("{s:b,s:o}", "ok", 0, "error", smmu_error_json(&e));
    assert_true(json_equal(b, want));
    txt = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(txt, "{\"ok\":false,\"error\":{\"code\":\"EIO\",\"class\":\"GenericError\",\"desc\":\"Bus 'rp9' "
                             "not found\",\"step\":\"device_add hostdev0\",\"message\":\"device_add: Bus 'rp9' not "
                             "found (GenericError)\"}}");
    free(txt);
    json_decref(b);
    json_decref(want);
}

static json_t *openapi(void)
{
    char path[1024];
    json_error_t je;
    json_t *d;
    snprintf(path, sizeof(path), "%s/docs/openapi.json", SMMU_SOURCE_DIR);
    d = json_load_file(path, 0, &je);
    if (!d)
        fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
    assert_non_null(d);
    return d;
}

static void lower(char *out, const char *in)
{
    while (*in)
        *out++ = (char)tolower((unsigned char)*in++);
    *out = 0;
}

static void test_openapi_matches_router(void **state)
{
    json_t *d = openapi(), *paths = json_object_get(d, "paths"), *p, *op;
    const char *pat, *meth;
    size_t routes = 0, described = 0;
    (void)state;
    assert_string_equal(json_string_value(json_object_get(d, "openapi")), "3.0.3");
    for (const struct sv_route *r = sv_routes; r->method; r++, routes++) {
        char m[16];
        json_t *props;
        lower(m, r->method);
        op = json_object_get(json_object_get(paths, r->pattern), m);
        if (!op)
            fprintf(stderr, "openapi.json lacks %s %s\n", r->method, r->pattern);
        assert_non_null(op);
        /* the body members the router accepts are the schema's properties, no more, no less */
        props = NULL;
        if (json_object_get(op, "requestBody")) {
            json_t *schema = json_object_get(json_object_get(json_object_get(json_object_get(op, "requestBody"),
                                                                             "content"), "application/json"), "schema");
            const char *ref = json_string_value(json_object_get(schema, "$ref"));
            assert_non_null(ref);
            props = json_object_get(json_object_get(json_object_get(json_object_get(d, "components"), "schemas"),
                                                    strrchr(ref, '/') + 1), "properties");
            assert_non_null(props);
        }
        assert_int_equal(props != NULL, r->members != NULL);
        if (props) {
            size_t n = 0;
            for (; r->members[n]; n++)
                assert_non_null(json_object_get(props, r->members[n]));
            assert_int_equal(json_object_size(props), n);
        }
    }
    json_object_foreach(paths, pat, p)
        json_object_foreach(p, meth, op) {
            char up[16];
            size_t i;
            bool found = false;
            for (i = 0; meth[i] && i < sizeof(up) - 1; i++)
                up[i] = (char)toupper((unsigned char)meth[i]);
            up[i] = 0;
            for (const struct sv_route *r = sv_routes; r->method; r++)
                if (!strcmp(r->pattern, pat) && !strcmp(r->method, up))
                    found = true;
            if (!found)
                fprintf(stderr, "openapi.json has %s %s, the router does not\n", up, pat);
            assert_true(found);
            described++;
        }
    assert_int_equal(described, routes);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_error_body_is_cli_error),
        cmocka_unit_test(test_openapi_matches_router),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
