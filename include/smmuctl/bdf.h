/* smmuctl/bdf.h — PCI addresses ("BDF"): the one parser every module uses (util; depends on nothing else). */
#ifndef SMMUCTL_BDF_H
#define SMMUCTL_BDF_H

#include "smmuctl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SMMU_BDF_LEN 13 /* room for "dddd:bb:ss.f" (12) and one spare; buffers are SMMU_BDF_LEN + 1 */

/* Parse "0009:01:00.0" or "01:00.0" (domain 0000), any hex case, into the canonical lowercase "dddd:bb:ss.f"
 * (out has room for SMMU_BDF_LEN + 1; written only on success). Pure, never blocks. Returns 0, or -EINVAL with
 * err (may be NULL) naming the input and the expected forms. */
int smmu_bdf_parse(const char *in, char out[SMMU_BDF_LEN + 1], struct smmu_error *err);

#ifdef __cplusplus
}
#endif
#endif
