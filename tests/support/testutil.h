/* testutil.h — small helpers shared by all tests. */
#ifndef SMMU_TESTUTIL_H
#define SMMU_TESTUTIL_H

#include <stddef.h>

/* A fresh temporary directory under $TMPDIR (or /tmp) named after `tag`; caller frees the string and
 * removes the tree with smmu_test_rmtree(). Aborts the test on failure. */
char *smmu_test_mkdtemp(const char *tag);
/* rm -rf path (no symlink following). */
void smmu_test_rmtree(const char *path);
/* Read a whole file into a NUL-terminated malloc'ed buffer (NULL on error); *len gets its size if non-NULL. */
char *smmu_test_read_file(const char *path, size_t *len);
/* How many times needle occurs in text (non-overlapping). */
size_t smmu_test_count(const char *text, const char *needle);

#endif
