/* peer.c — which QEMU process is at the other end of a unix socket (DESIGN §5 "Whose journal is it"). */
#define _GNU_SOURCE
#include "smmuctl/qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Field 22 of /proc/PID/stat (starttime, clock ticks since boot), after the parenthesised comm (which may
 * itself contain spaces and parentheses: parse from the last ')'). 0 when unreadable. */
static unsigned long long peer_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++; /* " S ppid …": field 3 onwards */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p + 1, ' ');
    }
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

int qmp_client_peer(const qmp_client *c, struct qmp_peer *out)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int fd = qmp_client_socket_fd(c);
    memset(out, 0, sizeof(*out));
    if (fd < 0)
        return -ENOTCONN;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno; /* tcp: ENOPROTOOPT — no identity beyond the address */
    if (cred.pid <= 0)
        return -ENOENT;
    out->pid = cred.pid;
    out->start_time = peer_start_time(cred.pid);
    return 0;
}
