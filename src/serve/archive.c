/* archive.c — ended operations kept on disk for their Idempotency-Key (see archive.h). */
#define _GNU_SOURCE
#include "serve/archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve/idem.h"

static double arch_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool id_is_safe(const char *id)
{
    if (!*id || strlen(id) > 60)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-'))
            return false;
    return true;
}

int sv_archive_write(const char *dir, const struct sv_op *op)
{
    char path[4096], tmp[4200];
    json_t *rec;
    int fd;
    char *text;
    int r = 0;
    if (!dir || !id_is_safe(sv_op_id(op)))
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/%s.json", dir, sv_op_id(op));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    rec = json_pack("{s:o,s:i,s:f}", "operation", sv_op_json(op), "status", sv_op_status(op), "time", arch_now());
    text = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(rec);
    if (!text)
        return -ENOMEM;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fsync(fd) < 0 || close(fd) < 0 ||
        rename(tmp, path) < 0) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    free(text);
    return r;
}

/* The kept record of an operation not in memory: {"operation":{…},"status":N} or NULL. One that a previous
 * daemon never finished (still running or pending when it stopped) reads as incomplete: its transaction is
 * in the VM's journal, which the backend reconciles on connect. */
json_t *sv_archive_read(const char *dir, const char *id, const char *own_prefix)
{
    char path[4096];
    json_t *rec, *op;
    const char *state;
    if (!dir || !id_is_safe(id))
        return NULL;
    snprintf(path, sizeof(path), "%s/%s.json", dir, id);
    rec = json_load_file(path, 0, NULL);
    if (!rec)
        return NULL;
    op = json_object_get(rec, "operation");
    state = json_string_value(json_object_get(op, "state"));
    if (!json_is_object(op) || !state || arch_now() - json_number_value(json_object_get(rec, "time")) > SV_IDEM_TTL_S) {
        json_decref(rec);
        return NULL;
    }
    if ((!strcmp(state, "running") || !strcmp(state, "pending")) && strncmp(id, own_prefix, strlen(own_prefix))) {
        json_object_set_new(op, "state", json_string("incomplete"));
        json_object_set_new(rec, "status", json_integer(202));
    }
    return rec;
}

/* Records older than the keys' 24 h go (at start). */
void sv_archive_prune(const char *dir)
{
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    time_t now = time(NULL);
    if (!d)
        return;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            difftime(now, st.st_mtime) > SV_IDEM_TTL_S + 3600)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

