/* idem.h — the Idempotency-Key store (DESIGN §7): a POST/PUT with `Idempotency-Key: K` and the same
 * request (method, path and JSON body) within 24 h returns the first operation instead of running again;
 * the same K with another request is refused (422). Kept in <state-dir>/idempotency.json, replaced
 * atomically on every change, so it survives daemon restarts.
 *
 * "The same body" is the same JSON value: the body is compared canonically (keys sorted, compact), as a
 * 64-bit FNV-1a fingerprint of "METHOD PATH\n<canonical body>". */
#ifndef SMMUCTL_SERVE_IDEM_H
#define SMMUCTL_SERVE_IDEM_H

#include <stdint.h>
#include <jansson.h>

#include "smmuctl/error.h"

#define SV_IDEM_TTL_S (24.0 * 3600.0)
#define SV_IDEM_KEY_MAX 255

struct sv_idem;

/* Load (or start empty when the file does not exist) `path`. A file that is not ours is an error
 * (-EINVAL naming the file and what is wrong): the daemon refuses to start rather than forget keys. */
int sv_idem_open(struct sv_idem **out, const char *path, double ttl_s, double now, struct smmu_error *err);
void sv_idem_free(struct sv_idem *s);

/* The fingerprint of a request (body may be NULL). */
uint64_t sv_idem_fingerprint(const char *method, const char *path, const json_t *body);

/* Look K up: 0 = unknown (run it, then sv_idem_put), 1 = the same request seen: *op_id is the first
 * operation's id (borrowed until the next call), -EEXIST = K was used for another request (422),
 * -EINVAL = a malformed key (empty, over 255 bytes, or not visible ASCII). Expired keys are unknown. */
int sv_idem_check(struct sv_idem *s, const char *key, uint64_t fingerprint, double now, const char **op_id);

/* Remember K → op_id and write the file (expired keys are dropped on the way). 0 or negative errno. */
int sv_idem_put(struct sv_idem *s, const char *key, uint64_t fingerprint, const char *op_id, double now,
                struct smmu_error *err);

#endif
