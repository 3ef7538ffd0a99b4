/* qmp_peer.c — a hand-driven QMP peer on a socketpair (see qmp_peer.h). */
#include "qmp_peer.h"
#include "qmp_sync.h"

#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

const char QMP_PEER_GREETING[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 1, \"major\": 11}, \"package\": \"\"}, "
    "\"capabilities\": [\"oob\"]}}\r\n";

int qmp_peer_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

void qmp_peer_write(int fd, const char *text)
{
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
}

const char *qmp_peer_read_id(int fd)
{
    static char id[64];
    char buf[8192];
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        assert_int_equal(poll(&p, 1, QMP_PEER_MS), 1);
        ssize_t r = read(fd, buf + n, 1);
        assert_true(r == 1);
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = 0;
    json_t *j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")) ?: "");
    json_decref(j);
    return id;
}

void qmp_peer_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    struct qmp_peer_state *s = payload;
    (void)c;
    s->done = true;
    s->calls++;
    s->err = err;
    snprintf(s->msg, sizeof(s->msg), "%s", e ? e->message : "");
}

qmp_client *qmp_peer_ready_client(struct event_base *base, int *peer, struct qmp_peer_state *st)
{
    int sv[2];
    qmp_client *c = NULL;
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    char reply[128];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(qmp_client_new(&c, base, &o), 0);
    memset(st, 0, sizeof(*st));
    assert_int_equal(qmp_client_connect_fd(c, sv[0], qmp_peer_state_cb, st), 0);
    qmp_peer_write(sv[1], QMP_PEER_GREETING);
    bool sent = false;
    /* the greeting is read from the loop; qmp_capabilities goes out */
    while (!sent) {
        struct pollfd p = {sv[1], POLLIN, 0};
        event_base_loop(base, EVLOOP_NONBLOCK);
        sent = poll(&p, 1, 10) == 1;
    }
    snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": \"%s\"}\r\n", qmp_peer_read_id(sv[1]));
    qmp_peer_write(sv[1], reply);
    assert_int_equal(qmp_pump_until(base, &st->done, QMP_PEER_MS), 0);
    assert_int_equal(st->err, 0);
    assert_int_equal(qmp_client_state(c), QMP_STATE_READY);
    *peer = sv[1];
    return c;
}
