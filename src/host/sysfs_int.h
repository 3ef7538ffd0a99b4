/* sysfs_int.h — small sysfs readers shared by src/host/ (private to the module).
 *
 * Every failure fills err with a message naming the path, so callers only add the device in front.
 */
#ifndef SMMU_HOST_SYSFS_INT_H
#define SMMU_HOST_SYSFS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include "smmuctl/error.h"

/* buf = root + "/" + printf(fmt, …), with trailing slashes of root dropped. -ENAMETOOLONG if it does not fit. */
int sysfs_path(char *buf, size_t size, const char *root, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Basename of the target of the symlink at path into out. *present = false (and 0) when path does not exist.
 * Errors: path exists but is not a symlink (-EINVAL), dangling link (-ENOENT), basename longer than out
 * (-ENAMETOOLONG), other lstat/readlink/stat failures (their errno). */
int sysfs_link_basename(const char *path, char *out, size_t size, bool *present, struct smmu_error *err);

/* The first line of the file at path (trailing newline stripped) into out. *present = false (and 0) when the
 * file does not exist. Errors: unreadable (its errno), longer than out (-EOVERFLOW). */
int sysfs_read_line(const char *path, char *out, size_t size, bool *present, struct smmu_error *err);

/* The whole file at path into buf (NUL-terminated, *len bytes before the NUL). *present = false (and 0) when
 * it does not exist. Errors: unreadable (its errno), size - 1 bytes or more (-EOVERFLOW). */
int sysfs_read_file(const char *path, char *buf, size_t size, size_t *len, bool *present, struct smmu_error *err);

/* The entry names of directory path, sorted, "." and ".." skipped, as one malloc'ed array of malloc'ed
 * strings (free with sysfs_names_free). *present = false (and 0, *names NULL) when path does not exist. */
int sysfs_list_dir(const char *path, char ***names, size_t *n, bool *present, struct smmu_error *err);
void sysfs_names_free(char **names, size_t n);

#endif
