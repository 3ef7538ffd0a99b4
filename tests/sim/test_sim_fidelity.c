/* test_sim_fidelity.c — replay every real QEMU 11.1.3 session the project keeps against qmp-sim.
 *
 * For each transcript in shared/qemu11/transcripts (the raw recordings, copied to tests/data/qemu11-transcripts;
 * qmp-fixtures/ holds copies of some with replay directives), qmp-sim is started with the -device/-netdev/-M
 * arguments of the transcript's "# QEMU command line" header. The C: lines are sent as recorded and every S: line is compared with what
 * qmp-sim answers, as JSON values with event timestamps ignored. Any difference fails, except the
 * exclusions listed below with their reason.
 *
 * The transcripts' comments that describe actions are honoured: client switches and disconnects (a64-02),
 * a reconnect (a64-01), "sleep N s" and "did NOT arrive within N s" (advance qmp-sim's virtual clock through the control socket instead of
 * sleeping), a line sent without its newline, raw bytes shown as \xHH, fds passed with getfd/add-fd, and
 * "no reply"/"NO greeting" (checked as silence after a control round trip, never by sleeping).
 * Consecutive S: lines that contain an event are compared as a set: QEMU itself sends DEVICE_DELETED before
 * or after the device_del reply (a64-16 saw both). After the last line a sentinel command must be answered
 * next, so an extra message fails too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sim_json.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

/* The raw recordings, copied into the repo (a clone has no ../shared); test_copy_current checks the copy
 * against ../shared/qemu11/transcripts where that exists. */
#define TRANSCRIPTS SMMU_SOURCE_DIR "/tests/data/qemu11-transcripts"
#define SHARED_TRANSCRIPTS SMMU_SHARED_DIR "/qemu11/transcripts"

/* S: lines whose content is not compared (one message is still consumed for each). */
struct exclusion {
    const char *file;
    const char *contains; /* a substring of the expected S: line */
    const char *reason;
};

static const struct exclusion exclusions[] = {
    {"a64-03-query-pci-prelaunch.txt", "Bus 248, device",
     "human-monitor-command (HMP \"info pci\") is not modeled"},
    {"a64-03-query-pci-prelaunch.txt", "bus: main-system-bus",
     "human-monitor-command (HMP \"info qtree\") is not modeled"},
    {"discover-a64-qemu11-reserve.txt", "\"QMP\": {\"version\"",
     "the greeting's package: this recording's QEMU is Debian's ds-2 build, qmp-sim greets as the transcripts' ds-1"},
    {NULL, NULL, NULL},
};

/* Whole transcripts not replayed, and why. */
static const struct exclusion skipped_files[] = {
    {"a64-05c-schema-extract.txt", NULL, "schema extract, not a session"},
    {"a64-11-uefi-enumerated.txt", NULL, "needs firmware-numbered buses and query-pci"},
    {"a64-14-cmdline-errors.txt", NULL, "command-line errors, no QMP session"},
    {"x86-01-q35-iommufd-vfio.txt", NULL, "intel-iommu, /machine/unattached listing and query-pci not modeled"},
    {NULL, NULL, NULL},
};

struct client {
    int fd;
    char *buf;
    size_t len, cap;
};

struct replay {
    const char *file;
    struct simh *h;
    struct client cl[2];
    int cur;
    int passfd;
    int sentinel;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Next CRLF-terminated message of client c as raw text (malloc'ed), NULL on timeout/EOF. */
static char *next_raw(struct client *c, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *crlf = c->len >= 2 ? memmem(c->buf, c->len, "\r\n", 2) : NULL;
        struct pollfd p = { c->fd, POLLIN, 0 };
        long left = deadline - now_ms();
        ssize_t n;
        if (crlf) {
            size_t l = (size_t)(crlf - c->buf);
            char *m = strndup(c->buf, l);
            memmove(c->buf, crlf + 2, c->len - l - 2);
            c->len -= l + 2;
            return m;
        }
        if (left < 0 || poll(&p, 1, (int)left) <= 0)
            return NULL;
        if (c->len + 65536 > c->cap) {
            c->cap = (c->len + 65536) * 2;
            c->buf = realloc(c->buf, c->cap);
        }
        n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n <= 0)
            return NULL;
        c->len += (size_t)n;
    }
}

static json_t *norm(const char *text)
{
    json_t *v = sim_json_loads(text, strlen(text));
    if (json_is_object(v))
        json_object_del(v, "timestamp");
    return v;
}

static void client_connect(struct replay *r, int i)
{
    r->cl[i].fd = simh_qmp_connect(r->h);
    r->cl[i].len = 0;
    assert_true(r->cl[i].fd >= 0);
}

static void client_close(struct replay *r, int i)
{
    if (r->cl[i].fd >= 0)
        close(r->cl[i].fd);
    r->cl[i].fd = -1;
    r->cl[i].len = 0;
}

/* Silence on the current client: after a control round trip (the loop has run past anything the client
 * sent), nothing is readable. */
static void expect_silence(struct replay *r, int line)
{
    struct client *c = &r->cl[r->cur];
    struct pollfd p = { c->fd, POLLIN, 0 };
    json_decref(simh_dump(r->h));
    if (c->len || poll(&p, 1, 0) > 0)
        fail_msg("%s:%d: expected no message, but one arrived", r->file, line);
}

static size_t unescape(const char *in, char *out)
{
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        unsigned v;
        if (p[0] == '\\' && p[1] == 'x' && sscanf(p + 2, "%2x", &v) == 1) {
            out[o++] = (char)v;
            p += 3;
        } else {
            out[o++] = *p;
        }
    }
    return o;
}

static void send_line(struct replay *r, const char *text, bool newline, int nfds)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 2);
    size_t n = unescape(text, buf);
    int fds[2] = { r->passfd, r->passfd };
    struct iovec iov = { buf, n + (newline ? 1 : 0) };
    union {
        char b[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } cm;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (newline)
        buf[n] = '\n';
    if (nfds) {
        struct cmsghdr *ch;
        memset(&cm, 0, sizeof(cm));
        mh.msg_control = cm.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        ch = CMSG_FIRSTHDR(&mh);
        ch->cmsg_level = SOL_SOCKET;
        ch->cmsg_type = SCM_RIGHTS;
        ch->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(ch), fds, sizeof(int) * (size_t)nfds);
    }
    assert_int_equal(sendmsg(r->cl[r->cur].fd, &mh, MSG_NOSIGNAL), (ssize_t)iov.iov_len);
    free(buf);
}

static const char *excluded(const char *file, const char *expected)
{
    for (const struct exclusion *e = exclusions; e->file; e++)
        if (!strcmp(e->file, file) && strstr(expected, e->contains))
            return e->reason;
    return NULL;
}

/* Compare a group of expected S: lines with as many messages; as a set when the group holds an event. */
static void compare_group(struct replay *r, char **exp, int *lines, int n)
{
    char *got[64];
    bool used[64] = { false }, has_event = false;
    for (int i = 0; i < n; i++) {
        got[i] = next_raw(&r->cl[r->cur], 5000);
        if (!got[i])
            fail_msg("%s:%d: missing message, expected %s", r->file, lines[i], exp[i]);
        if (strstr(exp[i], "\"event\""))
            has_event = true;
    }
    for (int i = 0; i < n; i++) {
        json_t *e = norm(exp[i]);
        const char *why = excluded(r->file, exp[i]);
        bool ok = false;
        for (int j = has_event ? 0 : i; j < (has_event ? n : i + 1); j++) {
            json_t *g;
            if (used[j])
                continue;
            if (why) { /* consumed, not compared */
                used[j] = ok = true;
                break;
            }
            g = norm(got[j]);
            if (g && json_equal(e, g)) {
                used[j] = ok = true;
                json_decref(g);
                break;
            }
            json_decref(g);
        }
        if (!ok)
            fail_msg("%s:%d: message differs\n  QEMU:    %s\n  qmp-sim: %s", r->file, lines[i], exp[i],
                     got[i]);
        json_decref(e);
    }
    for (int i = 0; i < n; i++)
        free(got[i]);
}

static char **split_args(const char *cmdline, int *argc)
{
    char *dup = strdup(strstr(cmdline, "qemu-system-")), *save = NULL, *tok;
    char **argv = calloc(256, sizeof(*argv));
    int n = 0;
    bool skip = false;
    strtok_r(dup, " ", &save); /* the binary */
    while ((tok = strtok_r(NULL, " ", &save)) && n < 250) {
        if (skip) {
            skip = false;
            continue;
        }
        if (!strcmp(tok, "-qmp")) {
            skip = true;
            continue;
        }
        argv[n++] = strdup(tok);
    }
    free(dup);
    *argc = n;
    return argv;
}

static void replay_path(const char *dir, const char *name);

static void replay_file(const char *name)
{
    replay_path(TRANSCRIPTS, name);
}

static void replay_path(const char *dir, const char *name)
{
    char path[1024], *text, *save = NULL, *line;
    char **lines = NULL;
    int nlines = 0, argc = 0;
    char **argv = NULL;
    struct replay r = { .file = name, .cur = 0 };
    char *grp[64];
    int grp_lines[64], ng = 0;
    char passpath[1100];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    text = smmu_test_read_file(path, NULL);
    assert_non_null(text);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lines = realloc(lines, sizeof(*lines) * (size_t)(nlines + 1));
        lines[nlines++] = line;
    }
    for (int i = 0; i < nlines && i < 10; i++)
        if (lines[i][0] == '#' && strstr(lines[i], "qemu-system-")) {
            argv = split_args(lines[i], &argc);
            break;
        }
    assert_non_null(argv);
    argv[argc] = NULL;
    assert_int_equal(simh_start(&r.h, (const char *const *)argv), 0);
    snprintf(passpath, sizeof(passpath), "%s/passed-fd-target", simh_dir(r.h));
    r.passfd = open(passpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(r.passfd >= 0);
    r.cl[0].fd = r.cl[1].fd = -1;
    client_connect(&r, 0);

    for (int i = 0; i < nlines; i++) {
        const char *l = lines[i];
        if (!strncmp(l, "S: ", 3)) {
            grp[ng] = (char *)l + 3;
            grp_lines[ng++] = i + 1;
            if (ng == 64 || i + 1 >= nlines || strncmp(lines[i + 1], "S: ", 3)) {
                compare_group(&r, grp, grp_lines, ng);
                ng = 0;
            }
            continue;
        }
        if (!strncmp(l, "C: ", 3)) {
            bool newline = !(i + 1 < nlines && strstr(lines[i + 1], "WITHOUT a trailing newline"));
            int nfds = 0;
            const char *prev = i > 0 ? lines[i - 1] : "";
            if (strstr(l, "\"getfd\"") || strstr(l, "\"add-fd\"")) {
                if (prev[0] != '#' || !strstr(prev, "without"))
                    nfds = strstr(prev, "two fds") ? 2 : 1;
            }
            send_line(&r, l + 3, newline, nfds);
            continue;
        }
        if (l[0] != '#')
            continue;
        if (strstr(l, "--- client A ---") || strstr(l, "--- client B ---")) {
            r.cur = strstr(l, "client B") ? 1 : 0;
            if (r.cl[r.cur].fd < 0)
                client_connect(&r, r.cur);
        } else if (strstr(l, "client A disconnects")) {
            client_close(&r, 0);
        } else if (strstr(l, "close the connection and connect again")) {
            client_close(&r, r.cur);
            client_connect(&r, r.cur);
        } else if (strstr(l, "no reply within") || strstr(l, "NO greeting within")) {
            expect_silence(&r, i + 1);
        } else if (strstr(l, "# sleep ")) {
            int secs = atoi(strstr(l, "# sleep ") + 8);
            assert_int_equal(simh_advance(r.h, secs * 1000), 0);
        } else if (strstr(l, "did NOT arrive within ")) { /* the recorder waited that long */
            int secs = atoi(strstr(l, "did NOT arrive within ") + 22);
            assert_int_equal(simh_advance(r.h, secs * 1000), 0);
        }
    }
    /* nothing extra: the next message must be the sentinel's reply */
    {
        struct client *c = &r.cl[r.cur];
        char *m;
        json_t *v;
        const char *s = "{\"execute\":\"query-status\",\"id\":\"__sentinel__\"}\n";
        assert_int_equal(write(c->fd, s, strlen(s)), (ssize_t)strlen(s));
        m = next_raw(c, 5000);
        json_t *want = json_string("__sentinel__");
        v = m ? sim_json_loads(m, strlen(m)) : NULL;
        if (!v || !json_equal(json_object_get(v, "id"), want))
            fail_msg("%s: extra message after the last line: %s", name, m ? m : "(none)");
        json_decref(v);
        json_decref(want);
        free(m);
    }
    client_close(&r, 0);
    client_close(&r, 1);
    close(r.passfd);
    free(r.cl[0].buf);
    free(r.cl[1].buf);
    assert_int_equal(simh_stop(r.h), 0);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
    free(lines);
    free(text);
}

#define REPLAY(fn, file) static void fn(void **state) { (void)state; replay_file(file); }
REPLAY(test_a64_01, "a64-01-greeting-capabilities.txt")
REPLAY(test_a64_02, "a64-02-second-client.txt")
REPLAY(test_a64_03, "a64-03-query-pci-prelaunch.txt")
REPLAY(test_a64_04, "a64-04-qom-topology.txt")
REPLAY(test_a64_05, "a64-05-device-properties.txt")
REPLAY(test_a64_05b, "a64-05b-query-qmp-schema.txt")
REPLAY(test_a64_06, "a64-06-iommufd-object.txt")
REPLAY(test_a64_07, "a64-07-vfio-pci-device-add.txt")
REPLAY(test_a64_08, "a64-08-fd-passing.txt")
REPLAY(test_a64_09, "a64-09-device-add-placement-errors.txt")
REPLAY(test_a64_10, "a64-10-device-del-events.txt")
REPLAY(test_a64_12, "a64-12-malformed-json-and-ids.txt")
REPLAY(test_a64_13, "a64-13-oob.txt")
REPLAY(test_a64_15, "a64-15-topology-discovery.txt")
REPLAY(test_a64_16, "a64-16-device-del-ordering.txt")

/* Recordings from real QEMU 11 kept in qmp-fixtures/ for what the transcripts do not cover (their header has
 * the QEMU command line on one line): root ports with resource reserve properties, as discovery reads them. */
static void test_fixture_reserves(void **state)
{
    (void)state;
    replay_path(SMMU_FIXTURES_DIR, "discover-a64-qemu11-reserve.txt");
}

/* Every transcript in the directory is either replayed above or skipped with a reason: a new recording
 * cannot be silently left out. */
static void test_every_transcript_accounted(void **state)
{
    static const char *replayed[] = {
        "a64-01-greeting-capabilities.txt", "a64-02-second-client.txt", "a64-03-query-pci-prelaunch.txt",
        "a64-04-qom-topology.txt",
        "a64-05-device-properties.txt", "a64-05b-query-qmp-schema.txt",
        "a64-06-iommufd-object.txt", "a64-07-vfio-pci-device-add.txt", "a64-08-fd-passing.txt",
        "a64-09-device-add-placement-errors.txt", "a64-10-device-del-events.txt",
        "a64-12-malformed-json-and-ids.txt", "a64-13-oob.txt", "a64-15-topology-discovery.txt",
        "a64-16-device-del-ordering.txt", NULL};
    char cmd[1200];
    FILE *p;
    char name[512];
    (void)state;
    snprintf(cmd, sizeof(cmd), "ls %s", TRANSCRIPTS);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(name, sizeof(name), p)) {
        bool known = false;
        name[strcspn(name, "\n")] = 0;
        if (!strstr(name, ".txt"))
            continue;
        for (int i = 0; replayed[i]; i++)
            known |= !strcmp(replayed[i], name);
        for (const struct exclusion *e = skipped_files; e->file; e++)
            known |= !strcmp(e->file, name);
        if (!known)
            fail_msg("transcript %s is neither replayed nor skipped with a reason", name);
    }
    pclose(p);
}

/* The copy in the repo is the shared recordings, byte for byte, file for file (skipped without ../shared). */
static void test_copy_current(void **state)
{
    (void)state;
    struct stat st;
    if (stat(SHARED_TRANSCRIPTS, &st) < 0) {
        fprintf(stderr, "note: no %s here: the copy in tests/data is not compared\n", SHARED_TRANSCRIPTS);
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "diff -r -q %s %s", SHARED_TRANSCRIPTS, TRANSCRIPTS);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("tests/data/qemu11-transcripts differs from %s (above): copy it again", SHARED_TRANSCRIPTS);
}

static int have_transcripts(void **state)
{
    struct stat st;
    (void)state;
    if (stat(TRANSCRIPTS, &st) < 0) {
        fprintf(stderr, "no transcripts at %s\n", TRANSCRIPTS);
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_current),
        cmocka_unit_test(test_every_transcript_accounted),
        cmocka_unit_test(test_a64_01), cmocka_unit_test(test_a64_02), cmocka_unit_test(test_a64_03),
        cmocka_unit_test(test_a64_04),
        cmocka_unit_test(test_a64_05), cmocka_unit_test(test_a64_05b),
        cmocka_unit_test(test_a64_06), cmocka_unit_test(test_a64_07), cmocka_unit_test(test_a64_08),
        cmocka_unit_test(test_a64_09), cmocka_unit_test(test_a64_10), cmocka_unit_test(test_a64_12),
        cmocka_unit_test(test_a64_13), cmocka_unit_test(test_a64_15), cmocka_unit_test(test_a64_16),
        cmocka_unit_test(test_fixture_reserves),
    };
    return cmocka_run_group_tests(tests, have_transcripts, NULL);
}
