/* record.c — the transcript recorder: every message both ways, in the fixture format (qmp-fixtures/README.md). */
#define _GNU_SOURCE
#include "qmp/client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TRAFFIC_SHOWN 600 /* bytes of a message the traffic log shows (a qom-list-get reply is ~45 KB) */

void qmpc_record(qmp_client *c, const char *prefix, const char *data, size_t len)
{
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (c->opts.log_traffic && c->opts.log) { /* "C: " is ours → QEMU, "S: " QEMU's */
        const char *dir = prefix[0] == 'C' ? "qmp ->" : "qmp <-";
        if (len > TRAFFIC_SHOWN)
            qmpc_log(c, 0, "%s %.*s … (%zu bytes)", dir, TRAFFIC_SHOWN, data, len);
        else
            qmpc_log(c, 0, "%s %.*s", dir, (int)len, data);
    }
    if (!c->opts.record)
        return;
    fprintf(c->opts.record, "%s%.*s\n", prefix, (int)len, data);
    fflush(c->opts.record);
}

void qmp_client_record_comment(qmp_client *c, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    if (!c->opts.record)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    for (char *line = buf, *nl; line; line = nl) {
        nl = strchr(line, '\n');
        if (nl)
            *nl++ = 0;
        fprintf(c->opts.record, "# %s\n", line);
    }
    fflush(c->opts.record);
}
