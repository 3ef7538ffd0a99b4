/* sim_ghash.c — GLib GHashTable's slot algorithm, reproduced for iteration order (see sim_ghash.h). */
#include "sim_ghash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SHIFT 3
enum { UNUSED = 0, TOMBSTONE = 1 };

static const uint32_t prime_mod[] = {
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521,
    131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393,
};

struct sim_ghash {
    uint32_t size, mod, mask;
    uint32_t nnodes, noccupied;
    uint32_t *hashes;
    char **keys;
    void **vals;
};

static uint32_t str_hash(const char *s)
{
    uint32_t h = 5381;
    for (const signed char *p = (const signed char *)s; *p; p++)
        h = (h << 5) + h + (uint32_t)(int32_t)*p;
    return h;
}

static void set_shift(struct sim_ghash *h, int shift)
{
    h->size = 1u << shift;
    h->mod = prime_mod[shift];
    h->mask = h->size - 1;
}

static uint32_t to_index(const struct sim_ghash *h, uint32_t hash)
{
    return (uint32_t)(hash * 11u) % h->mod;
}

struct sim_ghash *sim_ghash_new(void)
{
    struct sim_ghash *h = calloc(1, sizeof(*h));
    set_shift(h, MIN_SHIFT);
    h->hashes = calloc(h->size, sizeof(*h->hashes));
    h->keys = calloc(h->size, sizeof(*h->keys));
    h->vals = calloc(h->size, sizeof(*h->vals));
    return h;
}

void sim_ghash_free(struct sim_ghash *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->size; i++)
        free(h->keys[i]);
    free(h->hashes);
    free(h->keys);
    free(h->vals);
    free(h);
}

static uint32_t lookup_node(const struct sim_ghash *h, const char *key, uint32_t *hash_out)
{
    uint32_t hash = str_hash(key), idx, first_tomb = 0, step = 0;
    int have_tomb = 0;
    if (hash < 2)
        hash = 2;
    *hash_out = hash;
    idx = to_index(h, hash);
    while (h->hashes[idx] != UNUSED) {
        if (h->hashes[idx] == hash && h->keys[idx] && !strcmp(h->keys[idx], key))
            return idx;
        if (h->hashes[idx] == TOMBSTONE && !have_tomb) {
            first_tomb = idx;
            have_tomb = 1;
        }
        step++;
        idx = (idx + step) & h->mask;
    }
    return have_tomb ? first_tomb : idx;
}

static int find_closest_shift(int n)
{
    int i;
    for (i = 0; n; i++)
        n >>= 1;
    return i;
}

static void resize(struct sim_ghash *h)
{
    uint32_t old_size = h->size, bm_size;
    uint8_t *bm;
    int shift = find_closest_shift((int)(h->nnodes * 1.333));
    if (shift < MIN_SHIFT)
        shift = MIN_SHIFT;
    set_shift(h, shift);
    if (h->size > old_size) {
        h->hashes = realloc(h->hashes, h->size * sizeof(*h->hashes));
        h->keys = realloc(h->keys, h->size * sizeof(*h->keys));
        h->vals = realloc(h->vals, h->size * sizeof(*h->vals));
        memset(h->hashes + old_size, 0, (h->size - old_size) * sizeof(*h->hashes));
        memset(h->keys + old_size, 0, (h->size - old_size) * sizeof(*h->keys));
        memset(h->vals + old_size, 0, (h->size - old_size) * sizeof(*h->vals));
    }
    bm_size = h->size > old_size ? h->size : old_size;
    bm = calloc(bm_size, 1);
    for (uint32_t i = 0; i < old_size; i++) {
        uint32_t node_hash = h->hashes[i];
        char *key;
        void *val;
        if (node_hash < 2) {
            h->hashes[i] = UNUSED;
            continue;
        }
        if (bm[i])
            continue;
        h->hashes[i] = UNUSED;
        key = h->keys[i];
        val = h->vals[i];
        h->keys[i] = NULL;
        h->vals[i] = NULL;
        for (;;) {
            uint32_t hv = to_index(h, node_hash), step = 0, replaced;
            while (bm[hv]) {
                step++;
                hv = (hv + step) & h->mask;
            }
            bm[hv] = 1;
            replaced = h->hashes[hv];
            h->hashes[hv] = node_hash;
            if (replaced < 2) {
                h->keys[hv] = key;
                h->vals[hv] = val;
                break;
            }
            node_hash = replaced;
            {
                char *k2 = h->keys[hv];
                void *v2 = h->vals[hv];
                h->keys[hv] = key;
                h->vals[hv] = val;
                key = k2;
                val = v2;
            }
        }
    }
    free(bm);
    if (h->size < old_size) {
        h->hashes = realloc(h->hashes, h->size * sizeof(*h->hashes));
        h->keys = realloc(h->keys, h->size * sizeof(*h->keys));
        h->vals = realloc(h->vals, h->size * sizeof(*h->vals));
    }
    h->noccupied = h->nnodes;
}

static void maybe_resize(struct sim_ghash *h)
{
    uint32_t nocc = h->noccupied, size = h->size;
    if ((size > h->nnodes * 4 && size > 1u << MIN_SHIFT) || size <= nocc + nocc / 16)
        resize(h);
}

void sim_ghash_insert(struct sim_ghash *h, const char *key, void *val)
{
    uint32_t hash, idx = lookup_node(h, key, &hash), old = h->hashes[idx];
    if (old >= 2) {
        h->vals[idx] = val;
        return;
    }
    h->hashes[idx] = hash;
    h->keys[idx] = strdup(key);
    h->vals[idx] = val;
    h->nnodes++;
    if (old == UNUSED) {
        h->noccupied++;
        maybe_resize(h);
    }
}

void *sim_ghash_remove(struct sim_ghash *h, const char *key)
{
    uint32_t hash, idx = lookup_node(h, key, &hash);
    void *val;
    if (h->hashes[idx] < 2)
        return NULL;
    val = h->vals[idx];
    h->hashes[idx] = TOMBSTONE;
    free(h->keys[idx]);
    h->keys[idx] = NULL;
    h->vals[idx] = NULL;
    h->nnodes--;
    maybe_resize(h);
    return val;
}

void *sim_ghash_lookup(const struct sim_ghash *h, const char *key)
{
    uint32_t hash, idx = lookup_node(h, key, &hash);
    return h->hashes[idx] >= 2 ? h->vals[idx] : NULL;
}

int sim_ghash_contains(const struct sim_ghash *h, const char *key)
{
    uint32_t hash, idx = lookup_node(h, key, &hash);
    return h->hashes[idx] >= 2;
}

size_t sim_ghash_size(const struct sim_ghash *h)
{
    return h->nnodes;
}

int sim_ghash_next(const struct sim_ghash *h, long *pos, const char **key, void **val)
{
    for (long i = *pos + 1; i < (long)h->size; i++) {
        if (h->hashes[i] >= 2) {
            *pos = i;
            if (key)
                *key = h->keys[i];
            if (val)
                *val = h->vals[i];
            return 1;
        }
    }
    *pos = (long)h->size;
    return 0;
}
