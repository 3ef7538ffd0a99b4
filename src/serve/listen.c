/* listen.c — the daemon's unix socket (see listen.h). */
#define _GNU_SOURCE
#include "serve/listen.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int sv_listen_unix(const char *path, const char *group, int *out, struct smmu_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;
    mode_t old;
    gid_t gid = (gid_t)-1;
    *out = -1;
    if (strlen(path) >= sizeof(sa.sun_path))
        return smmu_error_set(err, -ENAMETOOLONG, "--listen %s: the path is longer than %zu bytes", path,
                              sizeof(sa.sun_path) - 1);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (group) {
        struct group gr, *res = NULL;
        char buf[4096];
        if (getgrnam_r(group, &gr, buf, sizeof(buf), &res) != 0 || !res)
            return smmu_error_set(err, -EINVAL, "--group %s: no such group", group);
        gid = res->gr_gid;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return smmu_error_set(err, -EEXIST, "--listen %s: exists and is not a socket; not replacing it", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return smmu_error_set(err, -errno, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            return smmu_error_set(err, -EADDRINUSE,
                                  "--listen %s: another daemon is accepting on this socket; stop it first or "
                                  "choose another path", path);
        }
        close(fd);
        if (unlink(path) < 0 && errno != ENOENT)
            return smmu_error_set(err, -errno, "--listen %s: cannot remove the stale socket: %s", path,
                                  strerror(errno));
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return smmu_error_set(err, -errno, "socket: %s", strerror(errno));
    old = umask(0177); /* the file is created 0600; never wider, not even for a moment */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        umask(old);
        close(fd);
        return smmu_error_set(err, -e, "--listen %s: %s", path, strerror(e));
    }
    umask(old);
    if (group && (chown(path, (uid_t)-1, gid) < 0 || chmod(path, 0660) < 0)) {
        int e = errno;
        close(fd);
        unlink(path);
        return smmu_error_set(err, -e, "--group %s: cannot give %s to the group: %s", group, path, strerror(e));
    }
    if (listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return smmu_error_set(err, -e, "--listen %s: listen: %s", path, strerror(e));
    }
    *out = fd;
    return 0;
}

