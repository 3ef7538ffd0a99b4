/* fuzz_request.c — the daemon's request parsing (src/serve/api.c, request.c): input = "METHOD PATH\n" + body.
 * The route is matched (200 / 404 / 405 / 400); for a matched route with a body the body is parsed against
 * the route's members and then checked member by member (400 / 422), and every failure must leave a message
 * and an error body that serialises. No crash, no
 * leak, no read past the input. (evhttp parses the HTTP framing itself; this covers what we parse.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/api.h"
#include "serve/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size), *sp;
    char line[1024], method[16];
    struct sv_match m;
    size_t llen = nl ? (size_t)(nl - (const char *)data) : size;
    const char *body = nl ? nl + 1 : (const char *)data + size;
    size_t blen = size - (size_t)(body - (const char *)data);
    int code;
    if (llen >= sizeof(line))
        return 0;
    memcpy(line, data, llen);
    line[llen] = 0;
    if (strlen(line) != llen) /* NUL in the request line: evhttp would refuse it */
        return 0;
    sp = strchr(line, ' ');
    if (!sp || (size_t)(sp - line) >= sizeof(method))
        return 0;
    memcpy(method, line, (size_t)(sp - line));
    method[sp - line] = 0;
    code = sv_route_match(method, sp + 1, &m);
    if (code == 405 && !m.allow[0])
        abort();
    if (code == 200 && m.route->members) {
        struct smmu_error err = SMMU_ERROR_INIT;
        json_t *o = NULL;
        if (sv_body_parse(body, blen, m.route->members, &o, &err) < 0) {
            json_t *e = sv_error_body(&err);
            char *txt = json_dumps(e, JSON_COMPACT);
            if (!o && (!txt || !err.message[0]))
                abort();
            free(txt);
            json_decref(e);
        } else if (!json_is_object(o)) {
            abort();
        } else {
            int st = sv_request_check_body(m.route->id, o, &err);
            if (st != 0 && ((st != 400 && st != 422) || !err.message[0]))
                abort();
        }
        json_decref(o);
    }
    return 0;
}
