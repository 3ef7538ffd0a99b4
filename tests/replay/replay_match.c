/* replay_match.c — message framing and comparison for the replay server. */
#define _GNU_SOURCE
#include "replay_match.h"

#include <stdint.h>
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

json_t *replay_json_load(const char *text, size_t len, size_t flags, json_error_t *je)
{
    json_t *v = json_loadb(text, len, flags | JSON_ALLOW_NUL, je);
    if (!v)
        v = json_loadb(text, len, flags | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    return v;
}

static size_t skip_blank(const char *t, size_t len, size_t i)
{
    while (i < len && blank(t[i]))
        i++;
    return i;
}

/* End of the JSON value starting at t[i] (no validation beyond framing). */
static int value_end(const char *t, size_t len, size_t i, size_t *end)
{
    size_t e, j = i;
    if (i >= len)
        return -1;
    if (replay_scan_json(t + i, len - i, &e) == 1) {
        *end = i + e;
        return 0;
    }
    if (t[i] == '{' || t[i] == '[' || t[i] == '"')
        return -1;
    while (j < len && t[j] != ',' && t[j] != '}' && t[j] != ']' && !blank(t[j]))
        j++;
    if (j == i)
        return -1;
    *end = j;
    return 0;
}

struct member_span {
    bool found;
    size_t kstart, vstart, vend;   /* key's opening quote, value start, value end */
    size_t prev_comma;             /* the comma before the member, or SIZE_MAX when it is the first */
    size_t next_start;             /* start of the next member's key, or SIZE_MAX when it is the last */
    size_t open, close;            /* positions of the object's braces */
};

static int find_member(const char *t, size_t len, const char *key, struct member_span *m)
{
    size_t i = skip_blank(t, len, 0), klen = strlen(key), comma = SIZE_MAX;
    memset(m, 0, sizeof(*m));
    if (i >= len || t[i] != '{')
        return -1;
    m->open = i;
    i = skip_blank(t, len, i + 1);
    if (i < len && t[i] == '}') {
        m->close = i;
        return 0;
    }
    for (;;) {
        size_t kstart = i, kend, vstart, vend;
        if (i >= len || t[i] != '"' || value_end(t, len, i, &kend) < 0)
            return -1;
        i = skip_blank(t, len, kend);
        if (i >= len || t[i] != ':')
            return -1;
        vstart = skip_blank(t, len, i + 1);
        if (value_end(t, len, vstart, &vend) < 0)
            return -1;
        i = skip_blank(t, len, vend);
        bool is_key = kend - kstart == klen + 2 && !memcmp(t + kstart + 1, key, klen);
        if (is_key) {
            m->found = true;
            m->kstart = kstart;
            m->vstart = vstart;
            m->vend = vend;
            m->prev_comma = comma;
            m->next_start = SIZE_MAX;
        }
        if (i < len && t[i] == ',') {
            comma = i;
            i = skip_blank(t, len, i + 1);
            if (is_key)
                m->next_start = i;
            continue;
        }
        if (i < len && t[i] == '}') {
            m->close = i;
            return 0;
        }
        return -1;
    }
}

/* text[0..a) + mid + text[b..len) */
static char *splice(const char *t, size_t len, size_t a, size_t b, const char *mid)
{
    size_t ml = strlen(mid);
    char *out = malloc(a + ml + (len - b) + 1);
    if (!out)
        return NULL;
    memcpy(out, t, a);
    memcpy(out + a, mid, ml);
    memcpy(out + a + ml, t + b, len - b);
    out[a + ml + len - b] = '\0';
    return out;
}

char *replay_splice_id(const char *text, size_t len, json_t *new_id)
{
    struct member_span m;
    char *idtext = NULL, *mid = NULL, *out = NULL;

    if (find_member(text, len, "id", &m) < 0)
        return NULL;
    if (new_id && !(idtext = replay_json_dump_qemu(new_id)))
        return NULL;
    if (m.found && new_id) {
        out = splice(text, len, m.vstart, m.vend, idtext);
    } else if (m.found) {
        if (m.prev_comma != SIZE_MAX)
            out = splice(text, len, m.prev_comma, m.vend, "");
        else if (m.next_start != SIZE_MAX)
            out = splice(text, len, m.kstart, m.next_start, "");
        else
            out = splice(text, len, m.kstart, m.vend, "");
    } else if (new_id) {
        struct member_span e;
        bool is_error = find_member(text, len, "error", &e) == 0 && e.found;
        bool empty = skip_blank(text, len, m.open + 1) == m.close;
        if (is_error || empty) {
            if (asprintf(&mid, "\"id\": %s%s", idtext, empty ? "" : ", ") >= 0)
                out = splice(text, len, m.open + 1, m.open + 1, mid);
        } else if (asprintf(&mid, ", \"id\": %s", idtext) >= 0) {
            out = splice(text, len, m.close, m.close, mid);
        }
    } else {
        out = strndup(text, len);
    }
    free(mid);
    free(idtext);
    return out;
}
