/* smmuctl/error.h — the error object every library call fills on failure.
 *
 * Contract (systemd/libgit2 style): functions return 0 (or a count) on success and a negative errno on
 * failure; when they fail and were given a `struct smmu_error *`, they fill it. The library never prints
 * and never exits: front-ends (CLI, daemon) turn errors into messages, exit codes and HTTP statuses.
 * The helpers below never block and never allocate; err may be NULL everywhere.
 *
 *   -EIO        QEMU answered with an error: `qmp_class` / `qmp_desc` hold QEMU's class and desc.
 *   -ETIMEDOUT  a reply (or the greeting) did not come in time.
 *   -ECONNRESET the connection closed while the call was pending.
 *   -EPROTO     the peer broke the protocol (malformed or non-object message, id-less error, not QMP).
 *   -EMSGSIZE   a message from the peer exceeded the size cap (16 MiB).
 *   -EINVAL     bad input from the user (BDF, flags, XML): `message` says what and where.
 *   other       system errors (-ENOENT, -EACCES …) from sysfs, sockets, the journal.
 */
#ifndef SMMUCTL_ERROR_H
#define SMMUCTL_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct smmu_error {
    int code;              /* negative errno, 0 when unset */
    char qmp_class[64];    /* QEMU's error class ("GenericError", "DeviceNotFound", …) or "" */
    char qmp_desc[1024];   /* QEMU's error desc, verbatim, or "" */
    char step[128];        /* the transaction step / command that failed ("device_add hostdev-0009-01-00.0") or "" */
    char message[1024];    /* a sentence for a person: what and where */
};

#define SMMU_ERROR_INIT {0, "", "", "", ""}

/* Fill err (if non-NULL) with code and a printf-style message; returns code (negative errno). */
int smmu_error_set(struct smmu_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record QEMU's error class/desc on err and a message "<cmd>: <desc> (<class>)"; returns -EIO. */
int smmu_error_set_qmp(struct smmu_error *err, const char *cmd, const char *cls, const char *desc);

/* Prefix the existing message with "<prefix>: " (e.g. the step name). No-op when err is NULL. */
void smmu_error_prefix(struct smmu_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void smmu_error_clear(struct smmu_error *err);

/* Copy src into dst (dst may be NULL). */
void smmu_error_copy(struct smmu_error *dst, const struct smmu_error *src);

/* Short symbolic name of a negative errno code ("ETIMEDOUT"), for --json output. */
const char *smmu_errno_name(int code);

#ifdef __cplusplus
}
#endif
#endif
