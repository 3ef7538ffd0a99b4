/* peer.c — which QEMU process is at the other end of a unix socket (DESIGN §5 "Whose journal is it"). */
#define _GNU_SOURCE
#include "smmuctl/qmp.h"
#include "smmuctl/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    out->start_time = smmu_proc_start_time(cred.pid, NULL);
    return 0;
}
