/* sysfs.c — small sysfs readers: paths under a root, symlink basenames, one-line attribute files, listings.
 *
 * Real sysfs never has dangling links or directories where attributes belong, but a fake tree, a racing
 * hot-unplug or a wrong --sysfs root can; each oddity becomes an error naming the path instead of a guess.
 */
#define _GNU_SOURCE
#include "sysfs_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sysfs_path(char *buf, size_t size, const char *root, const char *fmt, ...)
{
    size_t rl = strlen(root);
    va_list ap;
    int n, m;

    while (rl > 1 && root[rl - 1] == '/')
        rl--;
    n = snprintf(buf, size, "%.*s/", (int)rl, root);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    va_start(ap, fmt);
    m = vsnprintf(buf + n, size - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)m >= size - (size_t)n)
        return -ENAMETOOLONG;
    return 0;
}

int sysfs_link_basename(const char *path, char *out, size_t size, bool *present, struct smmu_error *err)
{
    char target[PATH_MAX];
    struct stat st;
    const char *base;
    ssize_t n;

    *present = false;
    out[0] = 0;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return smmu_error_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    if (!S_ISLNK(st.st_mode))
        return smmu_error_set(err, -EINVAL, "%s: not a symlink", path);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return smmu_error_set(err, -errno, "%s: readlink: %s", path, strerror(errno));
    target[n] = 0;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return smmu_error_set(err, -ENOENT, "%s: dangling symlink to %s", path, target);
        return smmu_error_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    while (n > 1 && target[n - 1] == '/')
        target[--n] = 0;
    base = strrchr(target, '/');
    base = base ? base + 1 : target;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return smmu_error_set(err, -EINVAL, "%s: symlink to %s has no usable basename", path, target);
    if (strlen(base) >= size)
        return smmu_error_set(err, -ENAMETOOLONG, "%s: link target name %s is too long (max %zu)", path, base,
                              size - 1);
    memcpy(out, base, strlen(base) + 1);
    *present = true;
    return 0;
}

int sysfs_read_line(const char *path, char *out, size_t size, bool *present, struct smmu_error *err)
{
    char buf[256];
    ssize_t n;
    char *nl;
    int fd;

    *present = false;
    out[0] = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return smmu_error_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    }
    do
        n = read(fd, buf, sizeof(buf) - 1);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        close(fd);
        return smmu_error_set(err, -e, "%s: cannot read: %s", path, strerror(e));
    }
    close(fd);
    buf[n] = 0;
    nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    if ((!nl && (size_t)n == sizeof(buf) - 1) || strlen(buf) >= size)
        return smmu_error_set(err, -EOVERFLOW, "%s: unexpectedly long content", path);
    memcpy(out, buf, strlen(buf) + 1);
    *present = true;
    return 0;
}

int sysfs_read_file(const char *path, char *buf, size_t size, size_t *len, bool *present, struct smmu_error *err)
{
    size_t used = 0;
    ssize_t n;
    int fd;

    *present = false;
    *len = 0;
    buf[0] = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return smmu_error_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    }
    for (;;) {
        n = read(fd, buf + used, size - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return smmu_error_set(err, -e, "%s: cannot read: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used == size - 1) {
            close(fd);
            return smmu_error_set(err, -EOVERFLOW, "%s: unexpectedly long content (over %zu bytes)", path,
                                  size - 2);
        }
    }
    close(fd);
    buf[used] = 0;
    *len = used;
    *present = true;
    return 0;
}

static int sysfs_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void sysfs_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int sysfs_list_dir(const char *path, char ***names, size_t *n, bool *present, struct smmu_error *err)
{
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    *names = NULL;
    *n = 0;
    *present = false;
    d = opendir(path);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return smmu_error_set(err, -errno, "%s: cannot list: %s", path, strerror(errno));
    }
    while ((errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (cnt == cap) {
            char **nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof(*v));
            if (!nv)
                goto nomem;
            v = nv;
        }
        if (!(v[cnt] = strdup(de->d_name)))
            goto nomem;
        cnt++;
    }
    if (errno) {
        int e = errno;
        closedir(d);
        sysfs_names_free(v, cnt);
        return smmu_error_set(err, -e, "%s: cannot list: %s", path, strerror(e));
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof(*v), sysfs_cmp_names);
    *names = v;
    *n = cnt;
    *present = true;
    return 0;
nomem:
    closedir(d);
    sysfs_names_free(v, cnt);
    return smmu_error_set(err, -ENOMEM, "%s: out of memory", path);
}
