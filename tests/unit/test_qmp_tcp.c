/* test_qmp_tcp.c — the client over tcp:HOST:PORT (loopback), address parsing, and connection failures. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"

static const char GREETING[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 1, \"major\": 11}, \"package\": \"\"}, "
    "\"capabilities\": [\"oob\"]}}\r\n";

struct server {
    int lfd;
    int port;
    pthread_t th;
};

/* Read one line (a command) from fd; returns its "id" as a string or NULL. */
static char *read_cmd_id(int fd)
{
    char buf[4096];
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return NULL;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = 0;
    json_t *j = json_loads(buf, 0, NULL);
    char *id = j ? strdup(json_string_value(json_object_get(j, "id")) ?: "") : NULL;
    json_decref(j);
    return id;
}

/* A minimal QMP peer: greeting, then {"return":{"status":"running"}} to every command. */
static void *serve(void *arg)
{
    struct server *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (write(fd, GREETING, sizeof(GREETING) - 1) < 0)
        goto out;
    for (;;) {
        char *id = read_cmd_id(fd);
        if (!id)
            break;
        char reply[256];
        int len = snprintf(reply, sizeof(reply), "{\"return\": {\"status\": \"running\"}, \"id\": \"%s\"}\r\n", id);
        free(id);
        if (write(fd, reply, (size_t)len) != len)
            break;
    }
out:
    close(fd);
    return NULL;
}

static void server_start(struct server *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &l), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static void test_tcp_round_trip(void **state)
{
    (void)state;
    struct server s;
    server_start(&s);
    struct event_base *base = event_base_new();
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    char addr[64];
    json_t *ret = NULL;
    snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", s.port);
    assert_int_equal(qmp_client_new(&c, base, NULL), 0);
    assert_int_equal(qmp_client_connect_sync(c, addr, &err), 0);
    assert_int_equal(qmp_client_greeting(c)->major, 11);
    assert_int_equal(qmp_call_sync(c, "query-status", NULL, NULL, 0, &ret, &err), 0);
    assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
    json_decref(ret);
    /* fds cannot travel over tcp: refused before anything is sent */
    int fd = 0;
    assert_int_equal(qmp_call(c, "getfd", json_pack("{s:s}", "fdname", "x"), &fd, 1, 0, NULL, NULL), -EINVAL);
    qmp_client_free(c);
    event_base_free(base);
    server_stop(&s);
}

/* A host name with several addresses: each is tried in turn (localhost may resolve to ::1 first while QEMU
 * listens on 127.0.0.1 only). */
static void test_tcp_host_name(void **state)
{
    (void)state;
    struct server s;
    server_start(&s);
    struct event_base *base = event_base_new();
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp:localhost:%d", s.port);
    assert_int_equal(qmp_client_new(&c, base, NULL), 0);
    if (qmp_client_connect_sync(c, addr, &err) < 0)
        fail_msg("%s: %s", addr, err.message);
    assert_int_equal(qmp_call_sync(c, "query-status", NULL, NULL, 0, NULL, &err), 0);
    qmp_client_free(c);
    event_base_free(base);
    server_stop(&s);
}

static void test_tcp_refused(void **state)
{
    (void)state;
    /* a port nobody listens on: bind one, note it, close it */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &l), 0);
    close(lfd);
    struct event_base *base = event_base_new();
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", ntohs(a.sin_port));
    assert_int_equal(qmp_client_new(&c, base, NULL), 0);
    assert_int_equal(qmp_client_connect_sync(c, addr, &err), -ECONNREFUSED);
    assert_non_null(strstr(err.message, addr));
    assert_int_equal(qmp_client_state(c), QMP_STATE_CLOSED);
    qmp_client_free(c);
    event_base_free(base);
}

static void test_addr_parse(void **state)
{
    (void)state;
    struct qmp_addr a;
    struct smmu_error e = SMMU_ERROR_INIT;
    char buf[512];
    assert_int_equal(qmp_addr_parse("/run/vm1.qmp", &a, &e), 0);
    assert_int_equal(a.kind, QMP_ADDR_UNIX);
    assert_int_equal(qmp_addr_parse("unix:/run/vm1.qmp", &a, &e), 0);
    assert_string_equal(a.path, "/run/vm1.qmp");
    assert_int_equal(qmp_addr_canonical(&a, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "unix:/run/vm1.qmp");
    assert_int_equal(qmp_addr_parse("unix:/run//x/../vm1.qmp", &a, &e), 0);
    assert_int_equal(qmp_addr_canonical(&a, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "unix:/run/vm1.qmp");
    assert_int_equal(qmp_addr_parse("tcp:localhost:4444", &a, &e), 0);
    assert_int_equal(a.kind, QMP_ADDR_TCP);
    assert_string_equal(a.host, "localhost");
    assert_string_equal(a.port, "4444");
    assert_int_equal(qmp_addr_parse("tcp:[::1]:4444", &a, &e), 0);
    assert_string_equal(a.host, "::1");
    static const char *const bad[][2] = {
        {"", "empty QMP address"},
        {"unix:", "empty socket path"},
        {"tcp:host", "expected tcp:HOST:PORT"},
        {"tcp::4444", "expected tcp:HOST:PORT"},
        {"tcp:host:", "expected tcp:HOST:PORT"},
        {"tcp:host:44x", "is not a number"},
        {"tcp:host:70000", "out of range"},
        {"unix:/run/vm1.qmp,server=on", "no ,options"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        smmu_error_clear(&e);
        assert_int_equal(qmp_addr_parse(bad[i][0], &a, &e), -EINVAL);
        if (!strstr(e.message, bad[i][1]))
            fail_msg("'%s': message '%s' lacks '%s'", bad[i][0], e.message, bad[i][1]);
    }
    char longp[200];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = 0;
    assert_int_equal(qmp_addr_parse(longp, &a, &e), -EINVAL);
    assert_non_null(strstr(e.message, "path too long"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_round_trip),
        cmocka_unit_test(test_tcp_host_name),
        cmocka_unit_test(test_tcp_refused),
        cmocka_unit_test(test_addr_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
