/* sim_harness.c — start/stop qmp-sim as a direct child and talk to it (see sim_harness.h). */
#define _GNU_SOURCE
#include "sim_harness.h"
#include "testutil.h"
#include "smmuctl/qmp_decoder.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct simh {
    pid_t pid;
    char *dir;
    char qmp[256], ctl[256];
    int ctl_fd;
    char ctl_buf[1 << 16];
    size_t ctl_len;
    int nvms;           /* --vms: the process handle holds every VM's view (vms[0] is itself) */
    struct simh **vms;
    struct simh *parent; /* a VM's view: the process handle */
    struct simh *next;
};

static struct simh *all;
static int atexit_done;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void stop_all(void)
{
    while (all)
        simh_stop(all);
}

static const char *sim_bin(void)
{
    static char path[1024];
    const char *e = getenv("QMP_SIM_BIN");
    if (e && *e)
        return e;
    snprintf(path, sizeof(path), "%s/tests/sim/qmp-sim", SMMU_BINARY_DIR);
    return path;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Fork + exec qmp-sim with `pre` (its own flags, NULL-terminated) then `args`; wait for it to listen. */
static int spawn(struct simh *h, const char *const *pre, const char *const *args)
{
    int pipefd[2], n = 0, np = 0, rc;
    const char **argv;
    char readyfd[16], c;
    struct pollfd p;
    while (args && args[n])
        n++;
    while (pre[np])
        np++;
    argv = calloc((size_t)(n + np) + 4, sizeof(*argv));
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        free(argv);
        return -errno;
    }
    snprintf(readyfd, sizeof(readyfd), "%d", pipefd[1]);
    argv[0] = sim_bin();
    for (int i = 0; i < np; i++)
        argv[1 + i] = pre[i];
    argv[1 + np] = "--ready-fd";
    argv[2 + np] = readyfd;
    for (int i = 0; i < n; i++)
        argv[3 + np + i] = args[i];
    h->pid = fork();
    if (h->pid < 0) {
        rc = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        free(argv);
        return rc;
    }
    if (h->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fcntl(pipefd[1], F_SETFD, 0); /* the ready fd survives exec */
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "sim_harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    p.fd = pipefd[0];
    p.events = POLLIN;
    rc = poll(&p, 1, h->nvms > 1 ? 60000 : 10000);
    if (rc <= 0 || read(pipefd[0], &c, 1) != 1 || c != 'R') {
        fprintf(stderr, "sim_harness: qmp-sim (%s) did not start listening\n", argv[0]);
        close(pipefd[0]);
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        h->pid = 0;
        free(argv);
        return -EIO;
    }
    close(pipefd[0]);
    free(argv);
    h->next = all;
    all = h;
    if (!atexit_done) {
        atexit(stop_all);
        atexit_done = 1;
    }
    return 0;
}

int simh_start(struct simh **out, const char *const *args)
{
    struct simh *h = calloc(1, sizeof(*h));
    int rc;
    *out = NULL;
    h->ctl_fd = -1;
    h->dir = smmu_test_mkdtemp("qmpsim");
    snprintf(h->qmp, sizeof(h->qmp), "%s/qmp.sock", h->dir);
    snprintf(h->ctl, sizeof(h->ctl), "%s/ctl.sock", h->dir);
    const char *pre[] = {"--qmp", h->qmp, "--control", h->ctl, NULL};
    rc = spawn(h, pre, args);
    if (rc < 0) {
        smmu_test_rmtree(h->dir);
        free(h->dir);
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int simh_start_vms(struct simh **out, int n, const char *const *args)
{
    struct simh *h;
    char nbuf[16];
    int rc;
    *out = NULL;
    if (n < 1)
        return -EINVAL;
    h = calloc(1, sizeof(*h));
    h->ctl_fd = -1;
    h->dir = smmu_test_mkdtemp("qmpsim");
    h->nvms = n;
    h->vms = calloc((size_t)n, sizeof(*h->vms));
    h->vms[0] = h;
    for (int k = 0; k < n; k++) {
        struct simh *v = k ? calloc(1, sizeof(*v)) : h;
        if (k) {
            v->ctl_fd = -1;
            v->parent = h;
            h->vms[k] = v;
        }
        snprintf(v->qmp, sizeof(v->qmp), "%s/vm%d.qmp", h->dir, k);
        snprintf(v->ctl, sizeof(v->ctl), "%s/vm%d.ctl", h->dir, k);
    }
    snprintf(nbuf, sizeof(nbuf), "%d", n);
    const char *pre[] = {"--vms", nbuf, "--dir", h->dir, NULL};
    rc = spawn(h, pre, args);
    if (rc < 0) {
        for (int k = 1; k < n; k++)
            free(h->vms[k]);
        free(h->vms);
        smmu_test_rmtree(h->dir);
        free(h->dir);
        free(h);
        return rc;
    }
    for (int k = 1; k < n; k++)
        h->vms[k]->pid = h->pid;
    *out = h;
    return 0;
}

struct simh *simh_vm(struct simh *h, int k)
{
    if (h->parent)
        h = h->parent;
    if (k == 0 && !h->nvms)
        return h;
    return k >= 0 && k < h->nvms ? h->vms[k] : NULL;
}

int simh_nvms(const struct simh *h)
{
    if (h->parent)
        h = h->parent;
    return h->nvms ? h->nvms : 1;
}

const char *const *simh_topology(int nvsmmu, int ports, int accel)
{
    static char buf[64][96];
    static const char *args[140];
    int n = 0, b = 0, k = 1;
    args[n++] = "-M";
    args[n++] = "virt";
    args[n++] = "-S";
    for (int i = 1; i <= nvsmmu && b < 60; i++) {
        snprintf(buf[b], sizeof(buf[b]), "pxb-pcie,id=pcie.%d,bus_nr=%d,bus=pcie.0,numa_node=%d", i,
                 250 - 8 * (i - 1), (i - 1) / 2);
        args[n++] = "-device";
        args[n++] = buf[b++];
        for (int p = 0; p < ports && b < 62; p++, k++) {
            snprintf(buf[b], sizeof(buf[b]), "pcie-root-port,id=rp%d%c,bus=pcie.%d,chassis=%d,port=%d", i, 'a' + p,
                     i, k, k);
            args[n++] = "-device";
            args[n++] = buf[b++];
        }
        snprintf(buf[b], sizeof(buf[b]), "arm-smmuv3,primary-bus=pcie.%d,id=smmuv3.%d,accel=%s", i, i,
                 accel ? "on" : "off");
        args[n++] = "-device";
        args[n++] = buf[b++];
    }
    args[n] = NULL;
    return args;
}

int simh_start_vm(struct simh **out, int nvsmmu, int ports, int accel, const char *const *extra)
{
    const char *const *topo = simh_topology(nvsmmu, ports, accel);
    const char *argv_all[200];
    int n = 0;
    for (int i = 0; topo[i] && n < 190; i++)
        argv_all[n++] = topo[i];
    for (int i = 0; extra && extra[i] && n < 199; i++)
        argv_all[n++] = extra[i];
    argv_all[n] = NULL;
    return simh_start(out, argv_all);
}

int simh_stop(struct simh *h)
{
    struct simh **pp;
    int status = 0, rc = 0;
    long deadline;
    if (!h)
        return 0;
    if (h->parent) {
        fprintf(stderr, "sim_harness: simh_stop on a VM of a --vms simulator: stop the handle simh_start_vms "
                        "returned\n");
        return -1;
    }
    for (pp = &all; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    if (h->ctl_fd >= 0)
        close(h->ctl_fd);
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        deadline = now_ms() + 5000;
        for (;;) {
            pid_t r = waitpid(h->pid, &status, WNOHANG);
            if (r == h->pid) {
                rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                break;
            }
            if (r < 0) {
                rc = -1;
                break;
            }
            if (now_ms() > deadline) {
                kill(h->pid, SIGKILL);
                waitpid(h->pid, NULL, 0);
                rc = -1;
                break;
            }
            poll(NULL, 0, 5);
        }
    }
    for (int k = 1; k < h->nvms; k++) {
        if (h->vms[k]->ctl_fd >= 0)
            close(h->vms[k]->ctl_fd);
        free(h->vms[k]);
    }
    free(h->vms);
    smmu_test_rmtree(h->dir);
    free(h->dir);
    free(h);
    return rc;
}

const char *simh_qmp_path(const struct simh *h) { return h->qmp; }
const char *simh_control_path(const struct simh *h) { return h->ctl; }
const char *simh_dir(const struct simh *h) { return h->parent ? h->parent->dir : h->dir; }
pid_t simh_pid(const struct simh *h) { return h->pid; }

/* ---- control ---- */

json_t *simh_control(struct simh *h, const char *line)
{
    size_t len = strlen(line), off = 0;
    long deadline = now_ms() + 10000;
    if (h->ctl_fd < 0) {
        h->ctl_fd = unix_connect(h->ctl);
        if (h->ctl_fd < 0) {
            fprintf(stderr, "sim_harness: control connect: %s\n", strerror(-h->ctl_fd));
            h->ctl_fd = -1;
            return NULL;
        }
    }
    while (off < len) {
        ssize_t n = write(h->ctl_fd, line + off, len - off);
        if (n <= 0)
            return NULL;
        off += (size_t)n;
    }
    if (write(h->ctl_fd, "\n", 1) != 1)
        return NULL;
    for (;;) {
        char *nl = memchr(h->ctl_buf, '\n', h->ctl_len);
        struct pollfd p = { h->ctl_fd, POLLIN, 0 };
        ssize_t n;
        if (nl) {
            json_error_t je;
            size_t l = (size_t)(nl - h->ctl_buf);
            json_t *r = json_loadb(h->ctl_buf, l, 0, &je);
            memmove(h->ctl_buf, nl + 1, h->ctl_len - l - 1);
            h->ctl_len -= l + 1;
            return r;
        }
        if (poll(&p, 1, (int)(deadline - now_ms())) <= 0)
            return NULL;
        n = read(h->ctl_fd, h->ctl_buf + h->ctl_len, sizeof(h->ctl_buf) - h->ctl_len);
        if (n <= 0)
            return NULL;
        h->ctl_len += (size_t)n;
    }
}

json_t *simh_dump(struct simh *h)
{
    json_t *r = simh_control(h, "{\"cmd\":\"dump\"}"), *d;
    if (!r)
        return NULL;
    d = json_incref(json_object_get(r, "dump"));
    json_decref(r);
    return d;
}

static int ok_or_complain(json_t *r, const char *what)
{
    int rc = r && json_is_true(json_object_get(r, "ok")) ? 0 : -EINVAL;
    if (rc)
        fprintf(stderr, "sim_harness: %s refused: %s\n", what,
                r ? json_string_value(json_object_get(r, "error")) : "no reply");
    json_decref(r);
    return rc;
}

static int control_with(struct simh *h, const char *cmd, const char *json)
{
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    char *line;
    int rc;
    if (!o) {
        fprintf(stderr, "sim_harness: bad JSON %s: %s\n", json, je.text);
        return -EINVAL;
    }
    json_object_set_new(o, "cmd", json_string(cmd));
    line = json_dumps(o, JSON_COMPACT);
    rc = ok_or_complain(simh_control(h, line), json);
    free(line);
    json_decref(o);
    return rc;
}

int simh_fault(struct simh *h, const char *json) { return control_with(h, "fault", json); }
int simh_unplug(struct simh *h, const char *json) { return control_with(h, "unplug", json); }

int simh_advance(struct simh *h, int ms)
{
    char line[64];
    snprintf(line, sizeof(line), "{\"cmd\":\"advance\",\"ms\":%d}", ms);
    return ok_or_complain(simh_control(h, line), "advance");
}

json_t *simh_dump_device(json_t *dump, const char *id)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(dump, "devices"), i, d)
        if (!strcmp(json_string_value(json_object_get(d, "id")) ?: "", id))
            return d;
    return NULL;
}

/* ---- raw QMP client ---- */

struct rbuf {
    int fd;
    char *buf;
    size_t len, cap;
    json_t *queue; /* events read by simh_qmp_cmd */
    struct rbuf *next;
};

static struct rbuf *rbufs;

static struct rbuf *rbuf_get(int fd)
{
    struct rbuf *b;
    for (b = rbufs; b; b = b->next)
        if (b->fd == fd)
            return b;
    b = calloc(1, sizeof(*b));
    b->fd = fd;
    b->queue = json_array();
    b->next = rbufs;
    rbufs = b;
    return b;
}

int simh_qmp_connect(const struct simh *h)
{
    int fd = unix_connect(h->qmp);
    if (fd >= 0) { /* a recycled fd number must not inherit a previous client's bytes */
        struct rbuf *b = rbuf_get(fd);
        b->len = 0;
        json_array_clear(b->queue);
    }
    return fd;
}

int simh_qmp_send(int fd, const char *text, int passfd)
{
    size_t len = strlen(text);
    char *msg = malloc(len + 2);
    struct iovec iov;
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;
    memcpy(msg, text, len);
    msg[len] = '\n';
    iov.iov_base = msg;
    iov.iov_len = len + 1;
    if (passfd >= 0) {
        struct cmsghdr *c;
        memset(&cm, 0, sizeof(cm));
        mh.msg_control = cm.b;
        mh.msg_controllen = sizeof(cm.b);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &passfd, sizeof(int));
    }
    n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n >= 0 && (size_t)n < len + 1) { /* the rest without fds */
        size_t off = (size_t)n;
        while (off < len + 1) {
            ssize_t m = send(fd, msg + off, len + 1 - off, MSG_NOSIGNAL);
            if (m <= 0)
                break;
            off += (size_t)m;
        }
    }
    free(msg);
    return n < 0 ? -errno : 0;
}

static int take_msg(json_t *msg, const char *raw, size_t raw_len, void *payload)
{
    (void)raw;
    (void)raw_len;
    *(json_t **)payload = json_incref(msg);
    return 1;
}

/* Parse with smmuctl's own decoder, so values look exactly as the library sees them (QEMU's uint64
 * values such as 18446744073709551615 become reals, every other integer stays an integer). */
static json_t *parse_line(const char *s, size_t len)
{
    qmp_decoder *d;
    json_t *v = NULL;
    struct smmu_error err = {0};
    if (qmp_decoder_new(&d, 0) < 0)
        return NULL;
    qmp_decoder_feed(d, s, len, take_msg, &v, &err);
    qmp_decoder_free(d);
    return v;
}

static json_t *read_msg(struct rbuf *b, long deadline)
{
    for (;;) {
        char *crlf = b->len >= 2 ? memmem(b->buf, b->len, "\r\n", 2) : NULL;
        struct pollfd p = { b->fd, POLLIN, 0 };
        long left = deadline - now_ms();
        ssize_t n;
        if (crlf) {
            size_t l = (size_t)(crlf - b->buf);
            json_t *v = parse_line(b->buf, l);
            memmove(b->buf, crlf + 2, b->len - l - 2);
            b->len -= l + 2;
            return v;
        }
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return NULL;
        if (b->len + 65536 > b->cap) {
            b->cap = (b->len + 65536) * 2;
            b->buf = realloc(b->buf, b->cap);
        }
        n = read(b->fd, b->buf + b->len, b->cap - b->len);
        if (n <= 0)
            return NULL;
        b->len += (size_t)n;
    }
}

json_t *simh_qmp_recv(int fd, int timeout_ms)
{
    struct rbuf *b = rbuf_get(fd);
    if (json_array_size(b->queue)) {
        json_t *e = json_incref(json_array_get(b->queue, 0));
        json_array_remove(b->queue, 0);
        return e;
    }
    return read_msg(b, now_ms() + timeout_ms);
}

int simh_qmp_open(const struct simh *h)
{
    int fd = simh_qmp_connect(h);
    json_t *g, *r;
    if (fd < 0)
        return fd;
    g = simh_qmp_recv(fd, 5000);
    r = g ? simh_qmp_cmd(fd, "{\"execute\":\"qmp_capabilities\"}", -1, 5000) : NULL;
    if (!g || !json_object_get(g, "QMP") || !r || !json_object_get(r, "return")) {
        json_decref(g);
        json_decref(r);
        simh_qmp_close(fd);
        return -EPROTO;
    }
    json_decref(g);
    json_decref(r);
    return fd;
}

json_t *simh_qmp_cmd(int fd, const char *cmd_json, int passfd, int timeout_ms)
{
    struct rbuf *b = rbuf_get(fd);
    long deadline = now_ms() + timeout_ms;
    if (simh_qmp_send(fd, cmd_json, passfd) < 0)
        return NULL;
    for (;;) {
        json_t *m = read_msg(b, deadline);
        if (!m)
            return NULL;
        if (json_object_get(m, "return") || json_object_get(m, "error"))
            return m;
        json_array_append_new(b->queue, m);
    }
}

json_t *simh_qmp_wait_event(int fd, const char *name, const char *device, int timeout_ms)
{
    struct rbuf *b = rbuf_get(fd);
    long deadline = now_ms() + timeout_ms;
    size_t i;
    json_t *e;
    json_array_foreach(b->queue, i, e) {
        const char *dev = json_string_value(json_object_get(json_object_get(e, "data"), "device"));
        if (!strcmp(json_string_value(json_object_get(e, "event")) ?: "", name) &&
            (!device || (dev && !strcmp(dev, device)))) {
            json_incref(e);
            json_array_remove(b->queue, i);
            return e;
        }
    }
    for (;;) {
        json_t *m = read_msg(b, deadline);
        const char *dev;
        if (!m)
            return NULL;
        dev = json_string_value(json_object_get(json_object_get(m, "data"), "device"));
        if (!strcmp(json_string_value(json_object_get(m, "event")) ?: "", name) &&
            (!device || (dev && !strcmp(dev, device))))
            return m;
        json_array_append_new(b->queue, m);
    }
}

int simh_is_error(const json_t *reply, const char *klass, const char *desc)
{
    json_t *e = json_object_get(reply, "error");
    const char *k = json_string_value(json_object_get(e, "class"));
    const char *d = json_string_value(json_object_get(e, "desc"));
    if (!e || !k || !d || strcmp(k, klass))
        return 0;
    return !desc || !strcmp(d, desc);
}

void simh_qmp_close(int fd)
{
    for (struct rbuf **pp = &rbufs; *pp; pp = &(*pp)->next)
        if ((*pp)->fd == fd) {
            struct rbuf *b = *pp;
            *pp = b->next;
            free(b->buf);
            json_decref(b->queue);
            free(b);
            break;
        }
    close(fd);
}
