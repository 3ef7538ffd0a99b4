/* fsutil.c — atomic file replacement (see smmuctl/fsutil.h). */
#define _GNU_SOURCE
#include "smmuctl/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int smmu_write_file_atomic(const char *path, const char *data, size_t len, const char *what, unsigned long *fsyncs,
                           struct smmu_error *err)
{
    char tmp[4200], dir[4200];
    const char *w = what ? what : "", *sp = what ? " " : "";
    size_t off = 0;
    int fd, dfd;
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return smmu_error_set(err, -errno, "cannot write %s%s%s: %s", w, sp, tmp, strerror(errno));
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return smmu_error_set(err, -e, "cannot write %s%s%s: %s", w, sp, tmp, strerror(e));
        }
        off += (size_t)n;
    }
    if (fsyncs)
        ++*fsyncs;
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return smmu_error_set(err, -e, "cannot sync %s%s%s: %s", w, sp, tmp, strerror(e));
    }
    if (close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return smmu_error_set(err, -e, "cannot sync %s%s%s: %s", w, sp, tmp, strerror(e));
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return smmu_error_set(err, -e, "cannot replace %s%s%s: %s", w, sp, path, strerror(e));
    }
    snprintf(dir, sizeof(dir), "%s", path);
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        if (fsyncs)
            ++*fsyncs;
        close(dfd);
    }
    return 0;
}
