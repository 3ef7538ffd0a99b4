/* idem.c — the Idempotency-Key store (see idem.h): a JSON object in a file
 *   {"version":1,"keys":{"K":{"fingerprint":"<16 hex>","op":"<id>","time":<seconds>}, …}}
 * loaded at start, replaced atomically (temp file, fsync, rename, fsync dir) on every put. */
#define _GNU_SOURCE
#include "serve/idem.h"
#include "smmuctl/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sv_idem {
    char *path;
    double ttl;
    json_t *keys; /* K -> {"fingerprint","op","time"} */
};

uint64_t sv_idem_fingerprint(const char *method, const char *path, const json_t *body)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    char *canon = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    const char *parts[] = { method ? method : "", " ", path ? path : "", "\n", canon ? canon : "" };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
            h ^= *p;
            h *= 0x100000001b3ULL;
        }
    free(canon);
    return h;
}

static int bad_file(struct smmu_error *err, const char *path, const char *what)
{
    return smmu_error_set(err, -EINVAL, "idempotency store %s: %s (move it away to start without the keys)", path,
                          what);
}

int sv_idem_open(struct sv_idem **out, const char *path, double ttl_s, double now, struct smmu_error *err)
{
    struct sv_idem *s;
    json_error_t je;
    json_t *root = NULL, *keys, *v;
    const char *k;
    *out = NULL;
    if (access(path, F_OK) == 0) {
        root = json_load_file(path, 0, &je);
        if (!root) {
            char what[300];
            snprintf(what, sizeof(what), "not JSON (line %d: %s)", je.line, je.text);
            return bad_file(err, path, what);
        }
        if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1 ||
            !json_is_integer(json_object_get(root, "version"))) {
            json_decref(root);
            return bad_file(err, path, "no \"version\": 1");
        }
        keys = json_object_get(root, "keys");
        if (!json_is_object(keys)) {
            json_decref(root);
            return bad_file(err, path, "\"keys\" is not an object");
        }
        json_object_foreach(keys, k, v)
            if (!json_is_string(json_object_get(v, "fingerprint")) || !json_is_string(json_object_get(v, "op")) ||
                !json_is_number(json_object_get(v, "time"))) {
                char what[400];
                snprintf(what, sizeof(what), "key '%.255s' lacks fingerprint, op or time", k);
                json_decref(root);
                return bad_file(err, path, what);
            }
    } else if (errno != ENOENT) {
        return smmu_error_set(err, -errno, "idempotency store %s: %s", path, strerror(errno));
    }
    s = calloc(1, sizeof(*s));
    s->path = strdup(path);
    s->ttl = ttl_s;
    s->keys = root ? json_incref(json_object_get(root, "keys")) : json_object();
    json_decref(root);
    (void)now;
    *out = s;
    return 0;
}

void sv_idem_free(struct sv_idem *s)
{
    if (!s)
        return;
    json_decref(s->keys);
    free(s->path);
    free(s);
}

static int key_ok(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > SV_IDEM_KEY_MAX)
        return 0;
    for (; *key; key++)
        if (*key < 0x21 || *key > 0x7e)
            return 0;
    return 1;
}

static void fp_hex(char out[17], uint64_t fp)
{
    snprintf(out, 17, "%016" PRIx64, fp);
}

int sv_idem_check(struct sv_idem *s, const char *key, uint64_t fingerprint, double now, const char **op_id)
{
    json_t *e;
    char hex[17];
    if (!key_ok(key))
        return -EINVAL;
    e = json_object_get(s->keys, key);
    if (!e || now - json_number_value(json_object_get(e, "time")) >= s->ttl)
        return 0;
    fp_hex(hex, fingerprint);
    if (strcmp(json_string_value(json_object_get(e, "fingerprint")), hex))
        return -EEXIST;
    *op_id = json_string_value(json_object_get(e, "op"));
    return 1;
}

int sv_idem_put(struct sv_idem *s, const char *key, uint64_t fingerprint, const char *op_id, double now,
                struct smmu_error *err)
{
    json_t *root;
    const char *k;
    json_t *v;
    void *tmp;
    char hex[17], *text;
    int rc;
    if (!key_ok(key))
        return smmu_error_set(err, -EINVAL, "Idempotency-Key must be 1-%d visible ASCII characters",
                              SV_IDEM_KEY_MAX);
    json_object_foreach_safe(s->keys, tmp, k, v)
        if (now - json_number_value(json_object_get(v, "time")) >= s->ttl)
            json_object_del(s->keys, k);
    fp_hex(hex, fingerprint);
    json_object_set_new(s->keys, key, json_pack("{s:s,s:s,s:f}", "fingerprint", hex, "op", op_id, "time", now));
    root = json_pack("{s:i,s:O}", "version", 1, "keys", s->keys);
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        return smmu_error_set(err, -ENOMEM, "out of memory");
    rc = smmu_write_file_atomic(s->path, text, strlen(text), NULL, NULL, err);
    free(text);
    return rc;
}
