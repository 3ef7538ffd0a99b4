/* daemon.c — the `smmuctl serve` process (see daemon.h). */
#define _GNU_SOURCE
#include "serve/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/notify.h"

static int log_verbose;
static bool log_journal;

void sv_daemon_log_setup(int verbose)
{
    log_verbose = verbose;
    log_journal = sv_journal_stderr();
}

void sv_daemon_log(int priority, const char *text)
{
    int max = log_verbose < 0 ? SV_LOG_NOTICE : log_verbose == 0 ? SV_LOG_INFO : SV_LOG_DEBUG;
    if (priority <= max)
        sv_log_line(log_journal, priority, text);
}

static void dlog(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dlog(int priority, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sv_daemon_log(priority, buf);
}

static void server_log(void *arg, int priority, const char *text)
{
    sv_daemon_log(priority, text);
}

struct daemon {
    struct event_base *base;
    struct sv_backend *b;
    struct sv_server *s;
    const struct sv_daemon_opts *o;
    struct event *sigterm, *sigint, *sighup, *watchdog, *status;
    bool stopping;
    int notify_failed;
};

/* Point stderr at the log file (at start and on SIGHUP). */
static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    if (dup2(fd, STDERR_FILENO) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    close(fd);
    log_journal = false; /* a file is not the journal */
    return 0;
}

static void notify(struct daemon *d, const char *state)
{
    int r = sv_notify(state);
    if (r < 0 && !d->notify_failed++)
        dlog(SV_LOG_WARNING, "NOTIFY_SOCKET: %s (systemd is not told; further failures not logged)", strerror(-r));
}

static void send_status(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    int c1, c2, c3;
    char buf[160];
    sv_server_vm_counts(d->s, &c1, &c2, &c3);
    snprintf(buf, sizeof(buf), "STATUS=%s%d VMs: %d connected, %d connecting, %d disconnected",
             d->stopping ? "stopping; " : "", c1 + c2 + c3, c2, c1, c3);
    notify(d, buf);
}

/* VM state changes come in bursts (a restart takes every VM back): one STATUS= per 100 ms at most. */
static void on_vm_state(void *arg)
{
    struct daemon *d = arg;
    struct timeval tv = {0, 100000};
    if (!evtimer_pending(d->status, NULL))
        evtimer_add(d->status, &tv);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    notify(arg, "WATCHDOG=1");
}

static void stopped(void *arg)
{
    struct daemon *d = arg;
    dlog(SV_LOG_NOTICE, "stopped");
    event_base_loopbreak(d->base);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    if (d->stopping) {
        dlog(SV_LOG_NOTICE, "%s again: already stopping (in-flight work gets its %d ms)", strsignal((int)sig),
             d->o->server.shutdown_deadline_ms);
        return;
    }
    d->stopping = true;
    dlog(SV_LOG_NOTICE, "%s: stopping", strsignal((int)sig));
    notify(d, "STOPPING=1\nSTATUS=stopping");
    sv_server_shutdown(d->s, stopped, d);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    if (d->o->log_path) {
        int r = open_log(d->o->log_path);
        if (r < 0)
            dlog(SV_LOG_ERR, "SIGHUP: cannot reopen %s: %s (still writing to the old file)", d->o->log_path,
                 strerror(-r));
        else
            dlog(SV_LOG_NOTICE, "SIGHUP: log reopened");
    } else {
        dlog(SV_LOG_NOTICE, "SIGHUP: logging to stderr, nothing to reopen");
    }
}

static int preregister(struct daemon *d)
{
    for (size_t i = 0; i < d->o->nvms; i++) {
        struct smmu_error e = SMMU_ERROR_INIT;
        bool created = false;
        const struct sv_daemon_vm *v = &d->o->vms[i];
        if (d->b->ops->vm_register(d->b, v->name, v->qmp, false, &created, &e) < 0) {
            dlog(SV_LOG_ERR, "--qmp %s --vm %s: %s", v->qmp, v->name, e.message);
            return -1;
        }
        dlog(SV_LOG_INFO, "vm %s: %s (%s)", v->name, created ? "registered" : "already registered", v->qmp);
    }
    return 0;
}

static void daemon_free(struct daemon *d)
{
    struct event *evs[] = { d->sigterm, d->sigint, d->sighup, d->watchdog, d->status };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    sv_server_free(d->s);
}

int sv_daemon_run(struct event_base *base, struct sv_backend *b, const struct sv_daemon_opts *o)
{
    struct daemon d = { .base = base, .b = b, .o = o };
    struct sv_server_opts so = o->server;
    struct smmu_error e = SMMU_ERROR_INIT;
    uint64_t wd;
    int r;
    sv_daemon_log_setup(o->verbose);
    if (o->log_path && (r = open_log(o->log_path)) < 0) {
        fprintf(stderr, "smmuctl serve: --log %s: %s\n", o->log_path, strerror(-r));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    so.log = server_log;
    so.log_arg = &d;
    if (sv_server_new(&d.s, base, b, &so, &e) < 0) {
        dlog(SV_LOG_ERR, "%s", e.message);
        return 2;
    }
    if (preregister(&d) < 0) {
        daemon_free(&d);
        return 2;
    }
    d.sigterm = evsignal_new(base, SIGTERM, on_stop_signal, &d);
    d.sigint = evsignal_new(base, SIGINT, on_stop_signal, &d);
    d.sighup = evsignal_new(base, SIGHUP, on_sighup, &d);
    d.status = evtimer_new(base, send_status, &d);
    if (!d.sigterm || !d.sigint || !d.sighup || !d.status || evsignal_add(d.sigterm, NULL) < 0 ||
        evsignal_add(d.sigint, NULL) < 0 || evsignal_add(d.sighup, NULL) < 0) {
        dlog(SV_LOG_ERR, "cannot set up the signal handlers");
        daemon_free(&d);
        return 2;
    }
    sv_server_on_vm_state(d.s, on_vm_state, &d);
    if ((wd = sv_notify_watchdog_usec()) > 0) {
        struct timeval tv = { (time_t)(wd / 2 / 1000000), (suseconds_t)(wd / 2 % 1000000) };
        d.watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, &d);
        if (d.watchdog)
            event_add(d.watchdog, &tv);
    }
    {
        int c1, c2, c3;
        char buf[200];
        sv_server_vm_counts(d.s, &c1, &c2, &c3);
        snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%d VMs: %d connected, %d connecting, %d disconnected",
                 c1 + c2 + c3, c2, c1, c3);
        dlog(SV_LOG_NOTICE, "listening on unix:%s (state %s, %d VMs)", o->server.listen_path, o->server.state_dir,
             c1 + c2 + c3);
        notify(&d, buf);
    }
    event_base_dispatch(base);
    daemon_free(&d);
    return 0;
}
