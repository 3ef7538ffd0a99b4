/* notify.c — sd_notify datagrams, the watchdog interval and journald priority prefixes (see notify.h). */
#define _GNU_SOURCE
#include "serve/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int sv_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    socklen_t alen;
    size_t plen;
    int fd, rc = 1;
    if (!path || !path[0])
        return 0;
    plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(a.sun_path))
        return -EINVAL;
    memcpy(a.sun_path, path, plen);
    if (path[0] == '@')
        a.sun_path[0] = 0; /* abstract namespace */
    alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/' ? 1 : 0));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&a, alen) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

uint64_t sv_notify_watchdog_usec(void)
{
    const char *u = getenv("WATCHDOG_USEC"), *p = getenv("WATCHDOG_PID");
    char *end;
    unsigned long long v;
    if (!u || !*u)
        return 0;
    if (p && *p) {
        long pid = strtol(p, &end, 10);
        if (*end || pid != (long)getpid())
            return 0;
    }
    errno = 0;
    v = strtoull(u, &end, 10);
    if (*end || errno || u[0] == '-')
        return 0;
    return v;
}

bool sv_journal_stderr(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char tail;
    if (!js || sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void sv_log_line(bool journal, int priority, const char *text)
{
    char buf[4096];
    size_t n = 0;
    int h = journal ? snprintf(buf, sizeof(buf), "<%d>", priority) : snprintf(buf, sizeof(buf), "smmuctl serve: ");
    n = (size_t)h;
    for (const unsigned char *p = (const unsigned char *)text; *p && n + 6 < sizeof(buf); p++) {
        if (*p == '\n' || *p == '\t') {
            buf[n++] = '\\';
            buf[n++] = *p == '\n' ? 'n' : 't';
        } else if (*p < 0x20 || *p == 0x7f)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\x%02x", *p);
        else
            buf[n++] = (char)*p;
    }
    buf[n++] = '\n';
    if (write(STDERR_FILENO, buf, n) < 0) {
        /* nowhere left to report it */
    }
}
