/* journal.c — per-VM journal file: flock, atomic replace, JSON document. See include/smmuctl/journal.h. */
#define _GNU_SOURCE
#include "smmuctl/journal.h"
#include "smmuctl/fsutil.h"
#include "smmuctl/proc.h"
#include "smmuctl/qmp.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct smmu_journal {
    char dir[4096];
    char path[4096];
    char lock_path[4096];
    int lock_fd;
    json_t *doc;
    char *saved; /* the text the file holds (as loaded or last written), NULL if unknown */
    bool on_disk; /* the file exists (loaded or written) */
    unsigned long writes, fsyncs; /* smmu_journal_counters */
};

int smmu_journal_check_name(const char *vm, struct smmu_error *err)
{
    size_t n = vm ? strlen(vm) : 0;
    if (n == 0 || n > 100)
        return smmu_error_set(err, -EINVAL, "VM name '%s' must be 1 to 100 characters", vm ? vm : "");
    if (vm[0] == '.')
        return smmu_error_set(err, -EINVAL, "VM name '%s' must not start with '.'", vm);
    for (size_t i = 0; i < n; i++) {
        char c = vm[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return smmu_error_set(err, -EINVAL, "VM name '%s': character '%c' at position %zu is not allowed "
                                  "(use letters, digits, '.', '_' and '-')", vm, c, i + 1);
    }
    return 0;
}

void smmu_journal_name_from_addr(const char *canonical, char *out, size_t len)
{
    const char *s = canonical;
    size_t o = 0;
    if (!strncmp(s, "unix:", 5))
        s += 5;
    while (*s == '/')
        s++;
    for (; *s && o + 1 < len && o < 100; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '-';
        out[o++] = ok ? c : '_';
    }
    if (o == 0 && len > 1)
        out[o++] = 'v';
    if (out[0] == '.')
        out[0] = '_';
    out[o] = 0;
}

static int journal_mkdir_p(const char *dir, struct smmu_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return smmu_error_set(err, -errno, "cannot create state directory %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return smmu_error_set(err, -errno, "cannot create state directory %s: %s", tmp, strerror(errno));
    return 0;
}

#define JOURNAL_CMD_MAX 400 /* the holder's command as written in the lock file and compared (truncated alike) */

/* This process's /proc/self/cmdline as one line (arguments joined by spaces, control characters as '?');
 * "" when unreadable. */
static void journal_cmdline(char *out, size_t len)
{
    out[0] = 0;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t m = read(fd, out, len - 1);
    close(fd);
    if (m <= 0)
        return;
    while (m > 0 && out[m - 1] == 0)
        m--;
    out[m] = 0;
    for (ssize_t i = 0; i < m; i++)
        if (out[i] == 0)
            out[i] = ' '; /* NUL-separated arguments */
        else if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            out[i] = '?';
}

/* " (pid N: smmuctl --qmp … detach hostdev0)" for the holder the lock file names: "PID START\nCOMMAND\n",
 * written by the holder once it has the lock (START: its /proc start time). "" unless that very process is
 * still alive — never name a dead process: the lock may be held by a child that inherited it after the writer
 * exited (a zombie until reaped), the holder may not have written yet, or the pid may belong to another program
 * by now (then its start time differs). The command is the one the holder wrote: its own /proc/self/cmdline,
 * which is what the user typed even under a wrapper such as valgrind. */
#define JOURNAL_NOTE_MAX 300 /* the holder's note (the daemon: "server unix:PATH") */

/* What the lock file names, when that very process still holds it: pid, command and the note (line 3,
 * optional). Returns the pid, or 0 (gone, a zombie, another process now, or nothing written yet). */
static long journal_lock_read(int lock_fd, char *cmd_out, size_t cmd_len, char *note_out, size_t note_len)
{
    char buf[64 + JOURNAL_CMD_MAX + JOURNAL_NOTE_MAX + 4] = "";
    ssize_t n = pread(lock_fd, buf, sizeof(buf) - 1, 0);
    char *end;
    cmd_out[0] = 0;
    note_out[0] = 0;
    buf[n > 0 ? n : 0] = 0;
    long pid = strtol(buf, &end, 10);
    if (end == buf || pid <= 0 || *end != ' ')
        return 0;
    char *p = end + 1;
    unsigned long long start = strtoull(p, &end, 10);
    if (end == p || start == 0 || *end != '\n')
        return 0;
    char *cmd = end + 1, *note = cmd + strcspn(cmd, "\n");
    if (*note)
        *note++ = 0;
    note[strcspn(note, "\n")] = 0;
    bool zombie;
    if (smmu_proc_start_time((pid_t)pid, &zombie) != start || zombie || !cmd[0])
        return 0; /* gone, a zombie, or another process now */
    snprintf(cmd_out, cmd_len, "%s", cmd);
    snprintf(note_out, note_len, "%s", note);
    return pid;
}

/* " (pid N: smmuctl --qmp … detach hostdev0)" for the holder the lock file names: "PID START\nCOMMAND\n[NOTE\n]",
 * written by the holder once it has the lock (START: its /proc start time). "" unless that very process is
 * still the holder: it may have exited (a zombie until reaped), the holder may not have written yet, or the
 * pid may belong to another program by now (then its start time differs). The command is the one the holder
 * wrote: its own /proc/self/cmdline, so a wrapper (valgrind) or argv rewriting cannot make it unnamed. */
static void journal_lock_holder(int lock_fd, char *out, size_t len)
{
    char cmd[JOURNAL_CMD_MAX], note[JOURNAL_NOTE_MAX];
    long pid = journal_lock_read(lock_fd, cmd, sizeof(cmd), note, sizeof(note));
    out[0] = 0;
    if (pid > 0)
        snprintf(out, len, " (pid %ld: %s)", pid, cmd);
}

/* The lock is held by a daemon that wrote "server ADDR": fill the error (use --server ADDR) and return true. */
static bool journal_held_by_server(int lock_fd, const char *lock_path, struct smmu_error *err)
{
    char cmd[JOURNAL_CMD_MAX], note[JOURNAL_NOTE_MAX];
    long pid = journal_lock_read(lock_fd, cmd, sizeof(cmd), note, sizeof(note));
    if (pid <= 0 || strncmp(note, "server ", 7) || !note[7])
        return false;
    smmu_error_set(err, -EBUSY, "this VM is managed by smmuctl serve (pid %ld): use --server %s (lock %s)", pid,
                   note + 7, lock_path);
    return true;
}

static int journal_write_holder(smmu_journal *j, const char *note)
{
    char cmd[JOURNAL_CMD_MAX], who[64 + JOURNAL_CMD_MAX + JOURNAL_NOTE_MAX + 4];
    journal_cmdline(cmd, sizeof(cmd));
    int n = snprintf(who, sizeof(who), "%d %llu\n%s\n", (int)getpid(), smmu_proc_start_time(0, NULL), cmd);
    if (note && *note)
        n += snprintf(who + n, sizeof(who) - (size_t)n, "%.*s\n", JOURNAL_NOTE_MAX - 1, note);
    if (ftruncate(j->lock_fd, 0) < 0 || pwrite(j->lock_fd, who, (size_t)n, 0) != n)
        return -errno;
    return 0;
}

int smmu_journal_set_note(smmu_journal *j, const char *note)
{
    return journal_write_holder(j, note);
}

int smmu_journal_busy_server(const char *state_dir, const char *vm, struct smmu_error *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.lock", state_dir, vm);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK && journal_held_by_server(fd, path, err);
    close(fd);
    return held;
}

static int journal_lock(smmu_journal *j, int wait_ms, struct smmu_error *err)
{
    struct timespec start, now;
    j->lock_fd = open(j->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->lock_fd < 0)
        return smmu_error_set(err, -errno, "cannot open lock file %s: %s", j->lock_path, strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (flock(j->lock_fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return smmu_error_set(err, -errno, "cannot lock %s: %s", j->lock_path, strerror(errno));
        /* DESIGN §7: a VM the daemon holds is not waited for: the error names the daemon and --server */
        if (journal_held_by_server(j->lock_fd, j->lock_path, err))
            return -EBUSY;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= wait_ms) {
            char who[400];
            journal_lock_holder(j->lock_fd, who, sizeof(who));
            return smmu_error_set(err, -EBUSY, "another smmuctl%s is working on this VM (lock %s held for "
                                  "over %d ms)", who, j->lock_path, wait_ms);
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* Note who we are in the lock file (pid and command), for the message of whoever waits behind us. */
    (void)journal_write_holder(j, NULL);
    return 0;
}

/* Is `v` (member `key` of an object) of the expected JSON type? Absent members are fine only when optional. */
static bool journal_member_ok(json_t *obj, const char *key, json_type want, bool nullable, bool optional)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return optional;
    if (nullable && json_is_null(v))
        return true;
    return json_typeof(v) == want || (want == JSON_TRUE && json_is_boolean(v));
}

/* The document's shape, as the code that reads it relies on (journal.h); a violation is corruption, exactly
 * like a parse error: never guessed at, never rewritten. why = "" when the document is sound. */
static void journal_check_schema(json_t *doc, char *why, size_t len)
{
    static const char *const dev_str[] = {"id", "bdf", "host_smmu", "vsmmu", "port", "state"};
    static const char *const step_str[] = {"kind", "name", "state"};
    json_t *v, *d, *txn, *s;
    size_t i;
    if (!json_is_object(doc)) {
        snprintf(why, len, "not a JSON object");
        return;
    }
    v = json_object_get(doc, "version");
    if (!json_is_integer(v) || json_integer_value(v) != 1) {
        snprintf(why, len, "not a version 1 journal: \"version\" is %s", !v ? "missing"
                 : json_is_integer(v) ? "an unknown version" : "not a number");
        return;
    }
    if (!journal_member_ok(doc, "devices", JSON_ARRAY, false, true)) {
        snprintf(why, len, "\"devices\" is not an array");
        return;
    }
    if (!journal_member_ok(doc, "iommufd", JSON_OBJECT, true, true) ||
        (json_is_object(json_object_get(doc, "iommufd")) &&
         !journal_member_ok(json_object_get(doc, "iommufd"), "id", JSON_STRING, false, false))) {
        snprintf(why, len, "\"iommufd\" is not null or an object with a string \"id\"");
        return;
    }
    json_array_foreach(json_object_get(doc, "devices"), i, d) {
        if (!json_is_object(d)) {
            snprintf(why, len, "devices[%zu] is not an object", i);
            return;
        }
        for (size_t k = 0; k < sizeof(dev_str) / sizeof(dev_str[0]); k++)
            if (!journal_member_ok(d, dev_str[k], JSON_STRING, false, k != 0)) {
                snprintf(why, len, "devices[%zu].%s is %s", i, dev_str[k],
                         json_object_get(d, dev_str[k]) ? "not a string" : "missing");
                return;
            }
    }
    txn = json_object_get(doc, "txn");
    if (txn && !json_is_null(txn)) {
        if (!json_is_object(txn) || !journal_member_ok(txn, "op", JSON_STRING, false, false) ||
            !journal_member_ok(txn, "steps", JSON_ARRAY, false, false)) {
            snprintf(why, len, "\"txn\" is not null or an object with a string \"op\" and a \"steps\" array");
            return;
        }
        json_array_foreach(json_object_get(txn, "steps"), i, s) {
            if (!json_is_object(s)) {
                snprintf(why, len, "txn.steps[%zu] is not an object", i);
                return;
            }
            for (size_t k = 0; k < sizeof(step_str) / sizeof(step_str[0]); k++)
                if (!journal_member_ok(s, step_str[k], JSON_STRING, false, false)) {
                    snprintf(why, len, "txn.steps[%zu].%s is %s", i, step_str[k],
                             json_object_get(s, step_str[k]) ? "not a string" : "missing");
                    return;
                }
        }
    }
}

int smmu_journal_open(const char *state_dir, const char *vm, const char *qmp_canonical, int wait_ms,
                      smmu_journal **out, struct smmu_error *err)
{
    smmu_journal *j;
    int r;
    if ((r = smmu_journal_check_name(vm, err)) < 0)
        return r;
    j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->lock_fd = -1;
    snprintf(j->dir, sizeof(j->dir), "%s", state_dir);
    snprintf(j->path, sizeof(j->path), "%s/%s.json", state_dir, vm);
    snprintf(j->lock_path, sizeof(j->lock_path), "%s/%s.lock", state_dir, vm);
    if ((r = journal_mkdir_p(state_dir, err)) < 0 || (r = journal_lock(j, wait_ms, err)) < 0) {
        smmu_journal_close(j);
        return r;
    }
    FILE *f = fopen(j->path, "r");
    if (f) {
        json_error_t je;
        j->doc = json_loadf(f, 0, &je);
        fclose(f);
        char why[256] = "";
        if (!j->doc)
            snprintf(why, sizeof(why), "%s at line %d", je.text, je.line);
        else
            journal_check_schema(j->doc, why, sizeof(why));
        if (why[0]) {
            r = smmu_error_set(err, -EPROTO, "journal %s is corrupt (%s); it was left untouched: move it "
                               "away after checking the VM by hand", j->path, why);
            smmu_journal_close(j);
            return r;
        }
        j->saved = json_dumps(j->doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER); /* as save would write it */
        j->on_disk = true;
    } else if (errno != ENOENT) {
        r = smmu_error_set(err, -errno, "cannot read journal %s: %s", j->path, strerror(errno));
        smmu_journal_close(j);
        return r;
    } else {
        /* no file yet: nothing is written until the document holds something (journal.h) */
        j->doc = json_pack("{s:i,s:s,s:s,s:n,s:[],s:n}", "version", 1, "vm", vm, "qmp",
                           qmp_canonical ? qmp_canonical : "", "iommufd", "devices", "txn");
        j->saved = json_dumps(j->doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    }
    *out = j;
    return 0;
}

void smmu_journal_close(smmu_journal *j)
{
    if (!j)
        return;
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the flock */
    json_decref(j->doc);
    free(j->saved);
    free(j);
}

json_t *smmu_journal_doc(smmu_journal *j)
{
    return j->doc;
}

const char *smmu_journal_path(const smmu_journal *j)
{
    return j->path;
}

/* No device, no transaction, no iommufd object: nothing worth a file. */
static bool journal_empty(json_t *doc)
{
    json_t *fd = json_object_get(doc, "iommufd"), *txn = json_object_get(doc, "txn");
    return json_array_size(json_object_get(doc, "devices")) == 0 && (!txn || json_is_null(txn)) &&
           (!fd || json_is_null(fd)) && json_array_size(json_object_get(doc, "voided")) == 0;
}

enum smmu_owner smmu_journal_owner_check(smmu_journal *j, const char *canonical, const struct qmp_peer *peer,
                                         char *why, size_t len)
{
    json_t *doc = j->doc, *q = json_object_get(doc, "qemu");
    const char *addr = json_string_value(json_object_get(doc, "qmp"));
    why[0] = 0;
    if (journal_empty(doc))
        return SMMU_OWNER_SAME; /* nothing to protect: whoever connects takes it over */
    if (addr && *addr && canonical && *canonical && strcmp(addr, canonical)) {
        snprintf(why, len, "journal %s belongs to the QEMU at %s, not %s: nothing was sent (give the --vm name "
                 "of this VM, or --qmp %s to finish that VM's work)", j->path, addr, canonical, addr);
        return SMMU_OWNER_OTHER_ADDRESS;
    }
    if (peer && peer->pid > 0 && json_is_object(q)) {
        json_int_t opid = json_integer_value(json_object_get(q, "pid"));
        json_int_t ostart = json_integer_value(json_object_get(q, "start"));
        if (opid != peer->pid || (ostart && peer->start_time && (unsigned long long)ostart != peer->start_time)) {
            snprintf(why, len, "QEMU at %s was restarted (pid %lld then, pid %d now): the journal's transaction and "
                     "devices belonged to the old QEMU and are forgotten; nothing is undone in the new one",
                     canonical ? canonical : "?", (long long)opid, peer->pid);
            return SMMU_OWNER_RESTARTED;
        }
    }
    return SMMU_OWNER_SAME;
}

void smmu_journal_owner_set(smmu_journal *j, const char *canonical, const struct qmp_peer *peer)
{
    if (canonical && *canonical)
        json_object_set_new(j->doc, "qmp", json_string(canonical));
    if (peer && peer->pid > 0)
        json_object_set_new(j->doc, "qemu", json_pack("{s:i,s:I}", "pid", peer->pid, "start",
                                                      (json_int_t)peer->start_time));
}

/* Append the string id to ids unless it is there already. */
static void journal_void_id(json_t *ids, json_t *id)
{
    size_t i;
    json_t *v;
    if (!json_is_string(id))
        return;
    json_array_foreach(ids, i, v)
        if (json_equal(v, id))
            return;
    json_array_append(ids, id);
}

json_t *smmu_journal_void(smmu_journal *j)
{
    json_t *voided = json_object_get(j->doc, "voided");
    json_t *ids = json_is_array(voided) ? json_incref(voided) : json_array(), *d;
    size_t i;
    json_array_foreach(json_object_get(j->doc, "devices"), i, d)
        journal_void_id(ids, json_object_get(d, "id"));
    /* and the devices the open transaction plugged or may have plugged (device_add sent, done or pending):
     * an attach killed mid-way has them only there */
    json_t *txn = json_object_get(j->doc, "txn");
    json_array_foreach(json_is_object(txn) ? json_object_get(txn, "steps") : NULL, i, d) {
        const char *kind = json_string_value(json_object_get(d, "kind"));
        const char *state = json_string_value(json_object_get(d, "state"));
        if (kind && state && !strcmp(kind, "device_add") &&
            (!strcmp(state, "sent") || !strcmp(state, "done") || !strcmp(state, "pending") ||
             !strcmp(state, "refused")))
            journal_void_id(ids, json_object_get(d, "name"));
    }
    json_object_set(j->doc, "voided", ids);
    json_object_set_new(j->doc, "devices", json_array());
    json_object_set_new(j->doc, "txn", json_null());
    json_object_set_new(j->doc, "iommufd", json_null()); /* the old QEMU's object died with it */
    return ids;
}

int smmu_journal_save(smmu_journal *j, struct smmu_error *err)
{
    int r;
    char *text = json_dumps(j->doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    size_t len;
    if (!text)
        return smmu_error_set(err, -ENOMEM, "journal: out of memory");
    if (!j->on_disk && journal_empty(j->doc)) { /* never create a journal that records nothing */
        free(text);
        return 0;
    }
    if (j->saved && !strcmp(j->saved, text)) { /* what the file already holds: no write, no fsync, and a */
        free(text);                            /* read-only command leaves no journal behind */
        return 0;
    }
    free(j->saved);
    j->saved = NULL; /* unknown until this write has landed */
    len = strlen(text);
    char *withnl = malloc(len + 2);
    if (!withnl) {
        free(text);
        return smmu_error_set(err, -ENOMEM, "journal: out of memory");
    }
    memcpy(withnl, text, len);
    withnl[len] = '\n';
    r = smmu_write_file_atomic(j->path, withnl, len + 1, "journal", &j->fsyncs, err);
    free(withnl);
    if (r < 0) {
        free(text);
        return r;
    }
    j->writes++;
    j->saved = text;
    j->on_disk = true;
    return 0;
}

void smmu_journal_counters(const smmu_journal *j, unsigned long *writes, unsigned long *fsyncs)
{
    *writes = j->writes;
    *fsyncs = j->fsyncs;
}

json_t *smmu_journal_devices(smmu_journal *j)
{
    json_t *d = json_object_get(j->doc, "devices");
    if (!json_is_array(d)) {
        json_object_set_new(j->doc, "devices", json_array());
        d = json_object_get(j->doc, "devices");
    }
    return d;
}

json_t *smmu_journal_txn(smmu_journal *j)
{
    json_t *t = json_object_get(j->doc, "txn");
    return json_is_object(t) ? t : NULL;
}

json_t *smmu_journal_find_device(smmu_journal *j, const char *key)
{
    size_t i;
    json_t *d;
    json_array_foreach(smmu_journal_devices(j), i, d) {
        const char *id = json_string_value(json_object_get(d, "id"));
        const char *bdf = json_string_value(json_object_get(d, "bdf"));
        if ((id && !strcmp(id, key)) || (bdf && !strcmp(bdf, key)))
            return d;
    }
    return NULL;
}

void smmu_journal_remove_device(smmu_journal *j, const char *id)
{
    json_t *devs = smmu_journal_devices(j), *d;
    size_t i;
    json_array_foreach(devs, i, d) {
        const char *did = json_string_value(json_object_get(d, "id"));
        if (did && !strcmp(did, id)) {
            json_array_remove(devs, i);
            return;
        }
    }
}
