/* smmuctl/error_json.h — the error object as JSON, shared by the CLI's --json output and the daemon's
 * {"ok":false,"error":{…}} replies (DESIGN §2, §7), so both print exactly the same members. */
#ifndef SMMUCTL_ERROR_JSON_H
#define SMMUCTL_ERROR_JSON_H

#include <jansson.h>

#include "smmuctl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* {"code":"ETIMEDOUT","class":…,"desc":…,"step":…,"message":…}: class, desc and step only when set; message
 * "unknown error" when e is NULL or has none. New reference (NULL only when out of memory). */
json_t *smmu_error_json(const struct smmu_error *e);

#ifdef __cplusplus
}
#endif
#endif
