/* smmuctl/fsutil.h — small file helpers shared by the journal (txn), the daemon's registrations and its
 * Idempotency-Key store (serve) (util; depends on nothing else). */
#ifndef SMMUCTL_FSUTIL_H
#define SMMUCTL_FSUTIL_H

#include <stddef.h>
#include "smmuctl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Replace `path` atomically with len bytes of data: write `<path>.tmp.<pid>` (mode 0600), fsync it, rename it
 * over path, fsync the directory. A reader sees the old file or the new one, never a part. `what` names the
 * file in messages ("journal" → "cannot write journal …"; NULL: "cannot write …"). fsyncs (may be NULL) is
 * increased by the fsync calls made (file, directory). 0 or a negative errno with err set (temp removed). */
int smmu_write_file_atomic(const char *path, const char *data, size_t len, const char *what, unsigned long *fsyncs,
                           struct smmu_error *err);

#ifdef __cplusplus
}
#endif
#endif
