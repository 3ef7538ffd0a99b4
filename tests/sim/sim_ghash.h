/* sim_ghash.h — a string-keyed table that iterates in exactly the order GLib's GHashTable (2.84) does.
 *
 * QEMU keeps QOM properties in a GHashTable with g_str_hash, and qom-list prints them by walking it (then
 * reversing, since the list is prepended). Replaying QEMU's insert/remove sequence through the same
 * algorithm (open addressing, quadratic probing, hash*11 % prime, tombstones, in-place resize) reproduces
 * QEMU's order, including after unplug/replug. Values are opaque pointers owned by the caller.
 */
#ifndef SIM_GHASH_H
#define SIM_GHASH_H

#include <stddef.h>

struct sim_ghash;

struct sim_ghash *sim_ghash_new(void);
void sim_ghash_free(struct sim_ghash *h);
/* Insert or replace; the key is copied. */
void sim_ghash_insert(struct sim_ghash *h, const char *key, void *val);
/* Remove; returns the value that was stored (NULL if absent). */
void *sim_ghash_remove(struct sim_ghash *h, const char *key);
void *sim_ghash_lookup(const struct sim_ghash *h, const char *key);
int sim_ghash_contains(const struct sim_ghash *h, const char *key);
size_t sim_ghash_size(const struct sim_ghash *h);
/* Iterate in table order: returns the next slot index > *pos holding an entry, or 0 at the end.
 * Start with *pos = -1 (as in GLib). */
int sim_ghash_next(const struct sim_ghash *h, long *pos, const char **key, void **val);

#endif
