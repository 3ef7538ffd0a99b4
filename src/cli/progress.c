/* progress.c — see progress.h. */
#include "cli/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

struct cli_progress {
    struct cli *cli;
    const char *command;
    smmu_vm *vm;
    int unplug_timeout_ms;
    struct event *tick;
    struct timespec start;
};

static struct cli_progress *progress_shown; /* the one whose line is on the terminal, if any */

/* Whole seconds since the start, rounded: the tick's timer runs from the loop's cached time, which may be a
 * little older than `start`, so the first tick can come at 0.99 s. */
static long progress_elapsed_s(const struct cli_progress *p)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (long long)(now.tv_sec - p->start.tv_sec) * 1000 + (now.tv_nsec - p->start.tv_nsec) / 1000000;
    return (long)((ms + 500) / 1000);
}

/* What the handle is waiting for, in words. */
static const char *progress_what(const struct cli_progress *p, char *buf, size_t len)
{
    switch (smmu_vm_state(p->vm)) {
    case SMMU_VM_CONNECTING:
    case SMMU_VM_GREETING:
    case SMMU_VM_NEGOTIATING:
        return "waiting for the VM (its lock, or QEMU's monitor)";
    case SMMU_VM_LOST:
        return "the connection to QEMU broke: reconnecting";
    case SMMU_VM_RECONCILING:
        return "settling an interrupted transaction first";
    case SMMU_VM_READY:
        if (p->unplug_timeout_ms > 0) {
            snprintf(buf, len, "waiting for the guest to release the devices (up to %d s)",
                     (p->unplug_timeout_ms + 999) / 1000);
            return buf;
        }
        return "waiting for QEMU";
    case SMMU_VM_CLOSED:
        break;
    }
    return "finishing";
}

static void progress_tick(evutil_socket_t fd, short what, void *arg)
{
    struct cli_progress *p = arg;
    char buf[128];
    (void)fd;
    (void)what;
    /* "\r" + erase-to-end: one line, rewritten in place */
    fprintf(stderr, "\rsmmuctl: %s: %s… %ld s\033[K", p->command, progress_what(p, buf, sizeof(buf)),
            progress_elapsed_s(p));
    fflush(stderr);
    progress_shown = p;
}

struct cli_progress *cli_progress_start(struct cli *cli, const char *command, smmu_vm *vm, int unplug_timeout_ms)
{
    if (cli->verbose < 0 || !isatty(STDERR_FILENO))
        return NULL;
    struct cli_progress *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cli = cli;
    p->command = command;
    p->vm = vm;
    p->unplug_timeout_ms = unplug_timeout_ms;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    p->tick = event_new(cli->base, -1, EV_PERSIST, progress_tick, p);
    struct timeval tv = {1, 0}; /* quick commands never show it */
    if (!p->tick || event_add(p->tick, &tv) < 0) {
        if (p->tick)
            event_free(p->tick);
        free(p);
        return NULL;
    }
    return p;
}

void cli_progress_clear(struct cli *cli)
{
    (void)cli;
    if (!progress_shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    progress_shown = NULL;
}

void cli_progress_stop(struct cli_progress *p)
{
    if (!p)
        return;
    if (progress_shown == p)
        cli_progress_clear(p->cli);
    event_free(p->tick);
    free(p);
}
