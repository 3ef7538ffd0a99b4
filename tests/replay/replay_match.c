/* replay_match.c — message framing and comparison for the replay server. */
#include "replay_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int replay_scan_json(const char *buf, size_t len, size_t *end)
{
    int depth = 0;
    bool in_str = false, esc = false;

    if (len == 0)
        return 0;
    if (buf[0] != '{' && buf[0] != '[' && buf[0] != '"')
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"') {
                in_str = false;
                if (depth == 0) {
                    *end = i + 1;
                    return 1;
                }
            }
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0) {
            *end = i + 1;
            return 1;
        }
    }
    return 0;
}

/* A shallow copy of an object without its "id" (new reference); other values are returned with a new ref. */
static json_t *noid(json_t *v)
{
    if (!json_is_object(v) || !json_object_get(v, "id"))
        return json_incref(v);
    json_t *c = json_copy(v);
    json_object_del(c, "id");
    return c;
}

bool replay_json_equal_noid(json_t *expected, json_t *actual)
{
    json_t *a = noid(expected), *b = noid(actual);
    bool eq = json_equal(a, b);
    json_decref(a);
    json_decref(b);
    return eq;
}

static void short_dump(json_t *v, char *buf, size_t len)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s) {
        snprintf(buf, len, "?");
        return;
    }
    if (strlen(s) > 120)
        snprintf(buf, len, "%.117s...", s);
    else
        snprintf(buf, len, "%s", s);
    free(s);
}

static const char *type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Returns true when a difference was written. */
static bool diff_rec(json_t *e, json_t *a, char *path, size_t plen, char *buf, size_t len)
{
    char es[160], as[160];
    size_t pl = strlen(path);

    if (json_equal(e, a))
        return false;
    if (json_typeof(e) != json_typeof(a) && !(json_is_boolean(e) && json_is_boolean(a))) {
        short_dump(e, es, sizeof(es));
        short_dump(a, as, sizeof(as));
        snprintf(buf, len, "%s: expected %s %s, got %s %s", pl ? path : ".", type_name(e), es, type_name(a), as);
        return true;
    }
    if (json_is_object(e)) {
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v) {
            json_t *av = json_object_get(a, k);
            if (!av) {
                short_dump(v, es, sizeof(es));
                snprintf(buf, len, "%s: member \"%s\" missing (expected %s)", pl ? path : ".", k, es);
                return true;
            }
            snprintf(path + pl, plen - pl, ".%s", k);
            if (diff_rec(v, av, path, plen, buf, len))
                return true;
            path[pl] = '\0';
        }
        json_object_foreach(a, k, v) {
            if (!json_object_get(e, k)) {
                short_dump(v, as, sizeof(as));
                snprintf(buf, len, "%s: unexpected member \"%s\": %s", pl ? path : ".", k, as);
                return true;
            }
        }
        return false;
    }
    if (json_is_array(e)) {
        size_t i, ne = json_array_size(e), na = json_array_size(a);
        for (i = 0; i < ne && i < na; i++) {
            snprintf(path + pl, plen - pl, "[%zu]", i);
            if (diff_rec(json_array_get(e, i), json_array_get(a, i), path, plen, buf, len))
                return true;
            path[pl] = '\0';
        }
        snprintf(buf, len, "%s: expected %zu elements, got %zu", pl ? path : ".", ne, na);
        return true;
    }
    short_dump(e, es, sizeof(es));
    short_dump(a, as, sizeof(as));
    snprintf(buf, len, "%s: expected %s, got %s", pl ? path : ".", es, as);
    return true;
}

void replay_json_diff(json_t *expected, json_t *actual, char *buf, size_t len)
{
    char path[512] = "";
    json_t *e = noid(expected), *a = noid(actual);
    if (len)
        buf[0] = '\0';
    if (!diff_rec(e, a, path, sizeof(path), buf, len))
        snprintf(buf, len, "no difference");
    json_decref(e);
    json_decref(a);
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void replay_trim(const char **p, size_t *len)
{
    while (*len && blank((*p)[0]))
        (*p)++, (*len)--;
    while (*len && blank((*p)[*len - 1]))
        (*len)--;
}

char *replay_json_dump_qemu(json_t *msg)
{
    /* Without JSON_COMPACT and without indentation jansson separates with ", " and ": ", like QEMU. */
    return json_dumps(msg, JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
}
