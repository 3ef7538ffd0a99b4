/* test_e2e_qmp_cli.c — `smmuctl qmp` (the binary, $SMMUCTL_BIN, as a child process) against real QEMU 11.
 *
 * One aarch64 virt QEMU with the FACTS topology (two pxb-pcie, four root ports, two arm-smmuv3) serves
 * every test in turn (QEMU serves one QMP client at a time, and each smmuctl run disconnects when it exits).
 * What is checked: replies in text and --json, QEMU's own error class/desc (exit 1), usage errors (exit 2,
 * and nothing reaches any monitor), an unreachable monitor (exit 3), both address forms, and --record: a
 * recorded session replays through tests/replay/replay_server to the same output, exactly. The recorded
 * fixtures qmp-fixtures/e2e-qmp-cli-*.txt (made by this test, see record_fixture()) are replayed too, so
 * the recorder's format and the replay server stay compatible.
 *
 * SMMUCTL_RECORD_DIR=DIR: also copy each fresh recording to DIR (how the e2e-*.txt fixtures were made).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "replay/replay_server.h"
#include "support/qemu.h"
#include "support/runcli.h"
#include "support/testutil.h"

#define RUN_MS 20000
#define REPLAY_WAIT_MS 10000

/* The one QEMU of this test program, started by the first test that needs it. */
static struct smmu_qemu *g_qemu;
static char *g_tmp;

static const char *live_sock(void)
{
    smmu_qemu_require();
    if (!g_qemu && smmu_qemu_start(&g_qemu, "aarch64", smmu_qemu_facts_topology()) < 0)
        fail_msg("cannot start QEMU: %s", smmu_qemu_last_error());
    return smmu_qemu_socket_path(g_qemu);
}

static int group_setup(void **state)
{
    (void)state;
    g_tmp = smmu_test_mkdtemp("e2e-qmp-cli");
    return g_tmp ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    smmu_qemu_stop(g_qemu);
    g_qemu = NULL;
    smmu_test_rmtree(g_tmp);
    free(g_tmp);
    return 0;
}

/* A path in this program's temp dir (static buffer ring: up to 8 live at once). */
static const char *tmp_path(const char *name)
{
    static char ring[8][512];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof(ring[0]), "%s/%s", g_tmp, name);
    return p;
}

static void dump_run(const char *what, const struct smmu_run *r)
{
    fprintf(stderr, "%s: exit %d%s\n--- stdout\n%s--- stderr\n%s---\n", what, r->status,
            r->timed_out ? " (timed out)" : "", r->out, r->err);
}

/* Run smmuctl with args; fail the test (showing what it printed) unless it exits with `want`. */
static void run_expect(struct smmu_run *r, const char *const *args, int want)
{
    smmu_run_cli(r, args, RUN_MS);
    if (r->status != want) {
        dump_run("smmuctl", r);
        fail_msg("smmuctl %s %s: exit %d, want %d", args[0], args[1] ? args[1] : "", r->status, want);
    }
}

/* stdout as exactly one JSON object (the --json contract); fails otherwise. */
static json_t *out_object(const struct smmu_run *r)
{
    json_t *o = smmu_run_json(r);
    if (!json_is_object(o)) {
        dump_run("smmuctl", r);
        fail_msg("stdout is not exactly one JSON object");
    }
    /* one object on one line */
    const char *nl = strchr(r->out, '\n');
    assert_non_null(nl);
    assert_string_equal(nl, "\n");
    return o;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "(absent)";
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' not found in:\n%s", needle, hay);
}

/* ---- replies ---- */

static void assert_status_object(json_t *st)
{
    assert_true(json_is_object(st));
    assert_string_equal(jstr(st, "status"), "prelaunch"); /* smmu_qemu_start runs QEMU with -S */
    assert_true(json_is_false(json_object_get(st, "running")));
}

static void test_query_status_text(void **state)
{
    (void)state;
    struct smmu_run r;
    run_expect(&r, (const char *[]){"--qmp", live_sock(), "qmp", "query-status", NULL}, 0);
    json_t *st = smmu_run_json(&r);
    if (!st)
        fail_msg("stdout is not one JSON value:\n%s", r.out);
    assert_status_object(st);
    assert_string_equal(r.err, "");
    json_decref(st);
    smmu_run_free(&r);
}

static void test_query_status_json(void **state)
{
    (void)state;
    struct smmu_run r;
    run_expect(&r, (const char *[]){"--qmp", live_sock(), "--json", "qmp", "query-status", NULL}, 0);
    json_t *o = out_object(&r);
    assert_true(json_is_true(json_object_get(o, "ok")));
    assert_string_equal(jstr(o, "command"), "qmp");
    assert_string_equal(jstr(o, "execute"), "query-status");
    assert_status_object(json_object_get(o, "return"));
    assert_null(json_object_get(o, "error"));
    json_decref(o);
    smmu_run_free(&r);
}

/* Type of child `name` in a qom-list return array, or NULL. */
static const char *qom_child_type(json_t *list, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        if (strcmp(jstr(e, "name"), name) == 0)
            return json_string_value(json_object_get(e, "type"));
    }
    return NULL;
}

/* The FACTS topology as /machine/peripheral lists it. */
static void assert_facts_peripherals(json_t *list)
{
    static const char *const want[][2] = {
        {"smmuv3.1", "child<arm-smmuv3>"},    {"smmuv3.2", "child<arm-smmuv3>"},
        {"pcie.1", "child<pxb-pcie>"},        {"pcie.2", "child<pxb-pcie>"},
        {"rp1a", "child<pcie-root-port>"},    {"rp1b", "child<pcie-root-port>"},
        {"rp2a", "child<pcie-root-port>"},    {"rp2b", "child<pcie-root-port>"},
    };
    assert_true(json_is_array(list));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *t = qom_child_type(list, want[i][0]);
        if (!t || strcmp(t, want[i][1]) != 0)
            fail_msg("/machine/peripheral/%s: want %s, got %s", want[i][0], want[i][1], t ? t : "(absent)");
    }
}

static void test_qom_list_peripheral(void **state)
{
    (void)state;
    struct smmu_run r;
    run_expect(&r, (const char *[]){"--qmp", live_sock(), "qmp", "qom-list", "{\"path\":\"/machine/peripheral\"}", NULL}, 0);
    json_t *list = smmu_run_json(&r);
    if (!list)
        fail_msg("stdout is not one JSON value:\n%s", r.out);
    assert_facts_peripherals(list);
    json_decref(list);
    smmu_run_free(&r);

    run_expect(&r, (const char *[]){"--qmp", live_sock(), "--json", "qmp", "qom-list", "{\"path\":\"/machine/peripheral\"}", NULL}, 0);
    json_t *o = out_object(&r);
    assert_true(json_is_true(json_object_get(o, "ok")));
    assert_string_equal(jstr(o, "execute"), "qom-list");
    assert_facts_peripherals(json_object_get(o, "return"));
    json_decref(o);
    smmu_run_free(&r);
}

/* ---- QEMU refuses: exit 1 with QEMU's class and desc ---- */

static void test_qemu_error(void **state)
{
    (void)state;
    struct smmu_run r;
    run_expect(&r, (const char *[]){"--qmp", live_sock(), "qmp", "device_del", "{\"id\":\"nope\"}", NULL}, 1);
    assert_string_equal(r.out, "");
    assert_contains(r.err, "DeviceNotFound");
    assert_contains(r.err, "Device 'nope' not found");
    assert_contains(r.err, "device_del");
    smmu_run_free(&r);

    run_expect(&r, (const char *[]){"--qmp", live_sock(), "--json", "qmp", "device_del", "{\"id\":\"nope\"}", NULL}, 1);
    json_t *o = out_object(&r);
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 1);
    assert_string_equal(jstr(o, "execute"), "device_del");
    json_t *e = json_object_get(o, "error");
    assert_string_equal(jstr(e, "class"), "DeviceNotFound");
    assert_string_equal(jstr(e, "desc"), "Device 'nope' not found");
    assert_null(json_object_get(o, "return"));
    json_decref(o);
    smmu_run_free(&r);

    /* QEMU is unharmed and serves the next client */
    run_expect(&r, (const char *[]){"--qmp", live_sock(), "qmp", "query-status", NULL}, 0);
    smmu_run_free(&r);
}

/* ---- usage errors: exit 2, a clear message, nothing sent ---- */

/* A unix socket that listens but never accepts: a client's connect() would queue on it. */
static int listen_unaccepted(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_true(strlen(path) < sizeof(a.sun_path));
    strcpy(a.sun_path, path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

/* Nobody connected to the listener since it was made. */
static void assert_no_connection(int lfd, const char *what)
{
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0) {
        close(c);
        fail_msg("%s: smmuctl connected to the monitor", what);
    }
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

struct usage_case {
    const char *what;
    const char *args[4]; /* after "--qmp SOCK [--json]" */
    const char *needle;  /* in the message */
};

static void test_usage_errors_send_nothing(void **state)
{
    (void)state;
    static const struct usage_case cases[] = {
        {"bad JSON-ARGS", {"qmp", "qom-list", "{\"path\":", NULL}, "JSON-ARGS"},
        {"JSON-ARGS not an object", {"qmp", "qom-list", "[\"/machine\"]", NULL}, "JSON-ARGS must be a JSON object"},
        {"JSON-ARGS trailing junk", {"qmp", "qom-list", "{\"path\":\"/machine\"} x", NULL}, "JSON-ARGS"},
        {"missing QMP command", {"qmp", NULL}, "usage: smmuctl qmp COMMAND [JSON-ARGS]"},
        {"too many arguments", {"qmp", "qom-list", "{}", "{}"}, "usage: smmuctl qmp COMMAND [JSON-ARGS]"},
        {"unknown command", {"qmpp", "query-status", NULL}, "unknown command 'qmpp'"},
    };
    const char *lsock = tmp_path("unaccepted.sock");
    int lfd = listen_unaccepted(lsock);
    const char *rec = tmp_path("usage-record.txt");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int json = 0; json < 2; json++) {
            /* at a listener that would show any connection, and at the live QEMU with --record: the
             * record file stays empty (the recorder writes a header as soon as it connects) */
            for (int live = 0; live < 2; live++) {
                const char *args[12];
                size_t n = 0;
                struct smmu_run r;
                args[n++] = "--qmp";
                args[n++] = live ? live_sock() : lsock;
                if (live) {
                    unlink(rec);
                    args[n++] = "--record";
                    args[n++] = rec;
                }
                if (json)
                    args[n++] = "--json";
                for (size_t k = 0; k < 4 && cases[i].args[k]; k++)
                    args[n++] = cases[i].args[k];
                args[n] = NULL;
                smmu_run_cli(&r, args, RUN_MS);
                if (r.status != 2) {
                    dump_run(cases[i].what, &r);
                    fail_msg("%s (json %d, live %d): exit %d, want 2", cases[i].what, json, live, r.status);
                }
                if (json) {
                    json_t *o = out_object(&r);
                    assert_true(json_is_false(json_object_get(o, "ok")));
                    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 2);
                    assert_string_equal(jstr(json_object_get(o, "error"), "code"), "EINVAL");
                    assert_contains(jstr(json_object_get(o, "error"), "message"), cases[i].needle);
                    json_decref(o);
                } else {
                    assert_string_equal(r.out, "");
                    assert_contains(r.err, cases[i].needle);
                }
                if (live) {
                    struct stat st;
                    /* an unknown command fails before --record is opened; the others leave it empty */
                    if (stat(rec, &st) == 0 && st.st_size != 0)
                        fail_msg("%s: smmuctl talked to QEMU (--record wrote %lld bytes)", cases[i].what,
                                 (long long)st.st_size);
                } else {
                    assert_no_connection(lfd, cases[i].what);
                }
                smmu_run_free(&r);
            }
        }
    }
    /* no COMMAND at all: the usage text on stderr */
    struct smmu_run r;
    run_expect(&r, (const char *[]){"--qmp", lsock, NULL}, 2);
    assert_contains(r.err, "qmp COMMAND [JSON-ARGS]");
    assert_no_connection(lfd, "no command");
    smmu_run_free(&r);
    close(lfd);
    unlink(lsock);
}

/* ---- unreachable: exit 3 ---- */

static void test_unreachable(void **state)
{
    (void)state;
    /* nothing at the path; a socket file nobody listens on (connect: ECONNREFUSED) */
    const char *missing = tmp_path("no-such.sock");
    const char *dead = tmp_path("dead.sock");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    strcpy(a.sun_path, dead);
    unlink(dead);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd); /* the file stays, nothing listens */

    const char *paths[] = {missing, dead};
    for (size_t i = 0; i < 2; i++) {
        char unix_addr[600];
        snprintf(unix_addr, sizeof(unix_addr), "unix:%s", paths[i]);
        struct smmu_run r;
        run_expect(&r, (const char *[]){"--qmp", paths[i], "qmp", "query-status", NULL}, 3);
        assert_string_equal(r.out, "");
        assert_contains(r.err, paths[i]);
        smmu_run_free(&r);

        run_expect(&r, (const char *[]){"--qmp", unix_addr, "--json", "qmp", "query-status", NULL}, 3);
        json_t *o = out_object(&r);
        assert_true(json_is_false(json_object_get(o, "ok")));
        assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 3);
        assert_contains(jstr(json_object_get(o, "error"), "message"), paths[i]);
        json_decref(o);
        smmu_run_free(&r);
    }
    unlink(dead);
}

/* ---- address forms ---- */

static void test_unix_prefix_and_plain_path(void **state)
{
    (void)state;
    char unix_addr[600];
    struct smmu_run plain, prefixed;
    snprintf(unix_addr, sizeof(unix_addr), "unix:%s", live_sock());
    run_expect(&plain, (const char *[]){"--qmp", live_sock(), "qmp", "query-status", NULL}, 0);
    run_expect(&prefixed, (const char *[]){"--qmp", unix_addr, "qmp", "query-status", NULL}, 0);
    json_t *st = smmu_run_json(&prefixed);
    assert_non_null(st);
    assert_status_object(st);
    json_decref(st);
    assert_string_equal(plain.out, prefixed.out);
    smmu_run_free(&plain);
    smmu_run_free(&prefixed);
}

/* ---- --record, then replay the recording ---- */

/* The JSON messages of a fixture's lines with `prefix` ("C: " / "S: "), in order (new array). */
static json_t *fixture_messages(const char *path, const char *prefix)
{
    char *text = smmu_test_read_file(path, NULL);
    json_t *arr = json_array();
    assert_non_null(text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, prefix, 3) != 0)
            continue;
        json_error_t je;
        json_t *m = json_loads(line + 3, 0, &je);
        if (!m)
            fail_msg("%s: a %sline is not JSON (%s): %s", path, prefix, je.text, line);
        json_array_append_new(arr, m);
    }
    free(text);
    return arr;
}

/* Run `args` (after "--qmp ADDR") against a replay of `fixture` on a fresh socket; returns the run, and
 * fails unless the replay matched exactly. */
static void run_replayed(struct smmu_run *r, const char *fixture, const char *const *args, int want)
{
    struct replay_server *s = NULL;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct replay_opts o = REPLAY_OPTS_INIT;
    const char *sock = tmp_path("replay.sock");
    const char *argv[16];
    size_t n = 0;
    o.line_timeout_ms = RUN_MS;
    if (replay_server_start_opts(&s, fixture, sock, NULL, &o, &err) < 0)
        fail_msg("replay of %s: %s", fixture, err.message);
    argv[n++] = "--qmp";
    argv[n++] = sock;
    for (size_t k = 0; args[k] && n < 15; k++)
        argv[n++] = args[k];
    argv[n] = NULL;
    smmu_run_cli(r, argv, RUN_MS);
    int w = replay_server_wait(s, REPLAY_WAIT_MS);
    if (w != 0) {
        dump_run("smmuctl against the replay", r);
        fail_msg("replay of %s did not match (%d): %s", fixture, w, replay_server_report(s));
    }
    replay_server_free(s);
    if (r->status != want) {
        dump_run("smmuctl against the replay", r);
        fail_msg("against the replay of %s: exit %d, want %d", fixture, r->status, want);
    }
}

/* Copy a fresh recording to $SMMUCTL_RECORD_DIR/name, if set (to refresh qmp-fixtures/e2e-*.txt). */
static void keep_recording(const char *rec, const char *name)
{
    const char *dir = getenv("SMMUCTL_RECORD_DIR");
    if (!dir || !*dir)
        return;
    size_t len;
    char *text = smmu_test_read_file(rec, &len);
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(text);
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    free(text);
}

struct rec_case {
    const char *name;      /* recording file name */
    const char *args[6];   /* after "--qmp ADDR --record FILE" */
    int exit_code;
    const char *execute;   /* the passthrough command the recording must hold */
};

static void test_record_then_replay(void **state)
{
    (void)state;
    static const struct rec_case cases[] = {
        {"e2e-qmp-cli-query-status.txt", {"qmp", "query-status", NULL}, 0, "query-status"},
        {"e2e-qmp-cli-qom-list.txt", {"qmp", "qom-list", "{\"path\":\"/machine/peripheral\"}", NULL}, 0, "qom-list"},
        {"e2e-qmp-cli-qom-list-json.txt", {"--json", "qmp", "qom-list", "{\"path\":\"/machine/peripheral\"}", NULL}, 0,
         "qom-list"},
        {"e2e-qmp-cli-device-del-error.txt", {"qmp", "device_del", "{\"id\":\"nope\"}", NULL}, 1, "device_del"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *rec = tmp_path(cases[i].name);
        const char *argv[16];
        size_t n = 0;
        struct smmu_run live, replayed;
        unlink(rec);
        argv[n++] = "--qmp";
        argv[n++] = live_sock();
        argv[n++] = "--record";
        argv[n++] = rec;
        for (size_t k = 0; cases[i].args[k]; k++)
            argv[n++] = cases[i].args[k];
        argv[n] = NULL;
        run_expect(&live, argv, cases[i].exit_code);

        /* The recording is the whole session: greeting, oob negotiation and its reply, the command and QEMU's
         * reply to it. */
        json_t *c = fixture_messages(rec, "C: "), *s = fixture_messages(rec, "S: ");
        if (json_array_size(c) != 2 || json_array_size(s) != 3) {
            char *text = smmu_test_read_file(rec, NULL);
            fail_msg("%s: want 2 C: and 3 S: lines, got %zu and %zu:\n%s", cases[i].name, json_array_size(c),
                     json_array_size(s), text ? text : "(unreadable)");
        }
        assert_non_null(json_object_get(json_array_get(s, 0), "QMP"));
        json_t *neg = json_array_get(c, 0);
        assert_string_equal(jstr(neg, "execute"), "qmp_capabilities");
        json_t *want_enable = json_pack("[s]", "oob");
        assert_true(json_equal(json_object_get(json_object_get(neg, "arguments"), "enable"), want_enable));
        json_decref(want_enable);
        assert_string_equal(jstr(json_array_get(c, 1), "execute"), cases[i].execute);
        assert_non_null(json_object_get(json_array_get(s, 1), "return"));
        json_t *reply = json_array_get(s, 2);
        assert_true(json_equal(json_object_get(reply, "id"), json_object_get(json_array_get(c, 1), "id")));
        assert_non_null(json_object_get(reply, cases[i].exit_code ? "error" : "return"));
        json_decref(c);
        json_decref(s);
        keep_recording(rec, cases[i].name);

        /* Replayed, the same command prints the same, byte for byte, and the replay matches exactly. */
        run_replayed(&replayed, rec, cases[i].args, cases[i].exit_code);
        assert_string_equal(replayed.out, live.out);
        assert_string_equal(replayed.err, live.err);
        smmu_run_free(&live);
        smmu_run_free(&replayed);
    }
}

/* ---- the checked-in recordings (qmp-fixtures/e2e-qmp-cli-*.txt) still replay ---- */

/* The `return` (or `error`) of the fixture's last reply. */
static json_t *fixture_last_reply(const char *path, const char *member)
{
    json_t *s = fixture_messages(path, "S: ");
    json_t *v = json_incref(json_object_get(json_array_get(s, json_array_size(s) - 1), member));
    json_decref(s);
    if (!v)
        fail_msg("%s: the last S: line has no '%s'", path, member);
    return v;
}

static void test_checked_in_fixtures_replay(void **state)
{
    (void)state;
    struct smmu_run r;
    char path[1024];

    /* qom-list as recorded from QEMU 11.1.3: the text output is the reply's return, and shows the topology */
    snprintf(path, sizeof(path), "%s/e2e-qmp-cli-qom-list.txt", SMMU_FIXTURES_DIR);
    run_replayed(&r, path, (const char *[]){"qmp", "qom-list", "{\"path\":\"/machine/peripheral\"}", NULL}, 0);
    json_t *got = smmu_run_json(&r), *want = fixture_last_reply(path, "return");
    assert_non_null(got);
    assert_true(json_equal(got, want));
    assert_facts_peripherals(got);
    json_decref(got);
    json_decref(want);
    smmu_run_free(&r);

    /* the same recording serves --json too: the C: lines do not depend on the output format */
    run_replayed(&r, path, (const char *[]){"--json", "qmp", "qom-list", "{\"path\":\"/machine/peripheral\"}", NULL}, 0);
    json_t *o = out_object(&r);
    assert_true(json_is_true(json_object_get(o, "ok")));
    assert_facts_peripherals(json_object_get(o, "return"));
    json_decref(o);
    smmu_run_free(&r);

    /* QEMU's DeviceNotFound, as recorded */
    snprintf(path, sizeof(path), "%s/e2e-qmp-cli-device-del-error.txt", SMMU_FIXTURES_DIR);
    run_replayed(&r, path, (const char *[]){"--json", "qmp", "device_del", "{\"id\":\"nope\"}", NULL}, 1);
    o = out_object(&r);
    want = fixture_last_reply(path, "error");
    assert_string_equal(jstr(want, "class"), "DeviceNotFound");
    assert_string_equal(jstr(json_object_get(o, "error"), "class"), jstr(want, "class"));
    assert_string_equal(jstr(json_object_get(o, "error"), "desc"), "Device 'nope' not found");
    json_decref(want);
    json_decref(o);
    smmu_run_free(&r);

    /* a different command than recorded is a mismatch the replay reports (the check has teeth) */
    snprintf(path, sizeof(path), "%s/e2e-qmp-cli-qom-list.txt", SMMU_FIXTURES_DIR);
    {
        struct replay_server *s = NULL;
        struct smmu_error err = SMMU_ERROR_INIT;
        const char *sock = tmp_path("replay-mismatch.sock");
        assert_int_equal(replay_server_start_opts(&s, path, sock, NULL, NULL, &err), 0);
        smmu_run_cli(&r, (const char *[]){"--qmp", sock, "qmp", "qom-list", "{\"path\":\"/machine\"}", NULL}, RUN_MS);
        assert_int_equal(replay_server_wait(s, REPLAY_WAIT_MS), -EBADMSG);
        assert_int_equal(replay_server_failure(s), REPLAY_FAIL_UNEXPECTED);
        assert_contains(replay_server_report(s), "/machine");
        replay_server_free(s);
        assert_int_not_equal(r.status, 0);
        smmu_run_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_status_text),
        cmocka_unit_test(test_query_status_json),
        cmocka_unit_test(test_qom_list_peripheral),
        cmocka_unit_test(test_qemu_error),
        cmocka_unit_test(test_usage_errors_send_nothing),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_unix_prefix_and_plain_path),
        cmocka_unit_test(test_record_then_replay),
        cmocka_unit_test(test_checked_in_fixtures_replay),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
