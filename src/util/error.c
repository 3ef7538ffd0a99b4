#define _GNU_SOURCE
/* error.c — struct smmu_error helpers. */
#include "smmuctl/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int smmu_error_set(struct smmu_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

int smmu_error_set_qmp(struct smmu_error *err, const char *cmd, const char *cls, const char *desc)
{
    if (err) {
        err->code = -EIO;
        snprintf(err->qmp_class, sizeof(err->qmp_class), "%s", cls ? cls : "");
        snprintf(err->qmp_desc, sizeof(err->qmp_desc), "%s", desc ? desc : "");
        snprintf(err->message, sizeof(err->message), "%s: %s (%s)", cmd ? cmd : "QEMU",
                 desc ? desc : "", cls ? cls : "");
    }
    return -EIO;
}

void smmu_error_prefix(struct smmu_error *err, const char *fmt, ...)
{
    char prefix[512], old[sizeof(err->message)];
    va_list ap;
    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof(old));
    snprintf(err->message, sizeof(err->message), "%s: %s", prefix, old);
}

void smmu_error_clear(struct smmu_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

void smmu_error_copy(struct smmu_error *dst, const struct smmu_error *src)
{
    if (dst && src && dst != src)
        memcpy(dst, src, sizeof(*dst));
}

const char *smmu_errno_name(int code)
{
    switch (-code) {
    case 0: return "OK";
    case EIO: return "EIO";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNRESET: return "ECONNRESET";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EPROTO: return "EPROTO";
    case EMSGSIZE: return "EMSGSIZE";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOSPC: return "ENOSPC";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case ENODEV: return "ENODEV";
    case ENOTCONN: return "ENOTCONN";
    case ECANCELED: return "ECANCELED";
    case EINPROGRESS: return "EINPROGRESS";
    case EPERM: return "EPERM";
    default: {
        const char *n = code < 0 ? strerrorname_np(-code) : NULL; /* glibc ≥ 2.32: ENOTDIR, EROFS, … */
        return n ? n : "ERROR";
    }
    }
}
