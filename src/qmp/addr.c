/* addr.c — QMP monitor addresses: PATH | unix:PATH | tcp:HOST:PORT. */
#include "smmuctl/qmp.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int qmp_addr_parse(const char *s, struct qmp_addr *out, struct smmu_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return smmu_error_set(err, -EINVAL, "empty QMP address (expected PATH, unix:PATH or tcp:HOST:PORT)");
    if (!strncmp(s, "tcp:", 4)) {
        const char *hp = s + 4, *colon = strrchr(hp, ':');
        size_t hlen;
        if (!colon || colon == hp || !colon[1])
            return smmu_error_set(err, -EINVAL, "bad QMP address '%s': expected tcp:HOST:PORT", s);
        hlen = (size_t)(colon - hp);
        if (hp[0] == '[' && hlen >= 2 && hp[hlen - 1] == ']') { /* tcp:[::1]:4444 */
            hp++;
            hlen -= 2;
        }
        if (hlen >= sizeof(out->host) || strlen(colon + 1) >= sizeof(out->port))
            return smmu_error_set(err, -EINVAL, "bad QMP address '%s': host or port too long", s);
        for (const char *p = colon + 1; *p; p++)
            if (*p < '0' || *p > '9')
                return smmu_error_set(err, -EINVAL, "bad QMP address '%s': port '%s' is not a number", s,
                                      colon + 1);
        long port = strtol(colon + 1, NULL, 10);
        if (port < 1 || port > 65535)
            return smmu_error_set(err, -EINVAL, "bad QMP address '%s': port %ld out of range 1-65535", s, port);
        out->kind = QMP_ADDR_TCP;
        memcpy(out->host, hp, hlen);
        out->host[hlen] = 0;
        snprintf(out->port, sizeof(out->port), "%ld", port);
        return 0;
    }
    const char *path = !strncmp(s, "unix:", 5) ? s + 5 : s;
    if (!*path)
        return smmu_error_set(err, -EINVAL, "bad QMP address '%s': empty socket path", s);
    if (strlen(path) >= sizeof(out->path))
        return smmu_error_set(err, -EINVAL, "bad QMP address '%s': path too long for a unix socket (%zu "
                              "bytes; at most %zu): use a shorter path or a symlink to its directory", s,
                              strlen(path), sizeof(out->path) - 1);
    if (strchr(path, ',')) /* a QEMU-style "unix:/p,server=on" pasted from a command line */
        return smmu_error_set(err, -EINVAL, "bad QMP address '%s': give only the socket path (no ,options)", s);
    out->kind = QMP_ADDR_UNIX;
    snprintf(out->path, sizeof(out->path), "%s", path);
    return 0;
}

/* Lexically normalise an absolute path: collapse //, drop ., resolve .. (no symlink resolution). */
static void addr_normalise(char *p)
{
    char out[PATH_MAX];
    size_t o = 0;
    const char *s = p;
    while (*s) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 1 && s[0] == '.') {
            /* skip */
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
        } else if (o + n + 2 < sizeof(out)) {
            out[o++] = '/';
            memcpy(out + o, s, n);
            o += n;
        }
        s += n;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = 0;
    strcpy(p, out);
}

int qmp_addr_canonical(const struct qmp_addr *a, char *buf, size_t len)
{
    if (a->kind == QMP_ADDR_TCP)
        return snprintf(buf, len, "tcp:%s:%s", a->host, a->port) < (int)len ? 0 : -ENAMETOOLONG;
    char abs[PATH_MAX * 2];
    if (a->path[0] == '/') {
        snprintf(abs, sizeof(abs), "%s", a->path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return -errno;
        snprintf(abs, sizeof(abs), "%s/%s", cwd, a->path);
    }
    addr_normalise(abs);
    return snprintf(buf, len, "unix:%s", abs) < (int)len ? 0 : -ENAMETOOLONG;
}
