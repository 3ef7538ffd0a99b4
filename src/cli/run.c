/* run.c — the CLI's synchronous face over the library's step machines: start one, run the loop until its
 * callback fires. This is the only place (with the daemon's main) that runs an event loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "smmuctl/vm.h"

void cli_run_until(struct cli *cli, const bool *flag)
{
    while (!*flag)
        if (event_base_loop(cli->base, EVLOOP_ONCE) != 0)
            break; /* nothing left that could ever set the flag: every call has its own timeout */
}

struct cli_wait {
    bool done;
    int err;
    json_t *ret;
    struct smmu_error e;
};

static void cli_wait_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    struct cli_wait *w = payload;
    (void)c;
    w->done = true;
    w->err = err;
    if (e)
        smmu_error_copy(&w->e, e);
    qmp_client_on_state(c, NULL, NULL); /* later disconnects show up as failed calls */
}

int cli_connect_wait(struct cli *cli, qmp_client *c, const char *addr, struct smmu_error *err)
{
    struct cli_wait w = {0};
    int r = qmp_client_connect(c, addr, cli_wait_state_cb, &w);
    if (r < 0)
        return smmu_error_set(err, r, "cannot connect to QEMU at %s: %s", addr ? addr : "(none)",
                              r == -EINVAL ? "bad address (expected PATH, unix:PATH or tcp:HOST:PORT)" : strerror(-r));
    cli_run_until(cli, &w.done);
    if (!w.done) {
        qmp_client_on_state(c, NULL, NULL);
        return smmu_error_set(err, -ETIMEDOUT, "connecting to %s: no outcome", addr);
    }
    if (w.err < 0)
        smmu_error_copy(err, &w.e);
    return w.err;
}

static void cli_wait_call_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct cli_wait *w = payload;
    (void)c;
    w->done = true;
    w->err = err;
    if (ret)
        w->ret = json_incref(ret);
    if (e)
        smmu_error_copy(&w->e, e);
}

int cli_call_wait(struct cli *cli, const char *cmd, json_t *args, json_t **ret, struct smmu_error *err)
{
    struct cli_wait w = {0};
    int r = qmp_call(cli->qmp, cmd, args, NULL, 0, 0, cli_wait_call_cb, &w);
    if (r < 0)
        return smmu_error_set(err, r, "%s: %s", cmd, r == -ENOTCONN ? "not connected to QEMU" : strerror(-r));
    cli_run_until(cli, &w.done);
    if (!w.done) {
        qmp_client_close(cli->qmp); /* fails the call now: nothing may call back into this frame later */
        if (!w.done)
            return smmu_error_set(err, -ETIMEDOUT, "%s: no outcome", cmd);
    }
    if (w.err < 0) {
        smmu_error_copy(err, &w.e);
        json_decref(w.ret);
        return w.err;
    }
    *ret = w.ret ? w.ret : json_null();
    return 0;
}

static void cli_wait_facts_cb(int err, const struct smmu_error *e, void *payload)
{
    struct cli_wait *w = payload;
    w->done = true;
    w->err = err;
    if (e)
        smmu_error_copy(&w->e, e);
}

int cli_facts_wait(struct cli *cli, smmu_journal *j, struct smmu_facts *f, struct smmu_error *err)
{
    struct cli_wait w = {0};
    int r = smmu_facts_gather_start(cli->qmp, cli->sysfs, j, f, cli_wait_facts_cb, &w, err);
    if (r < 0)
        return r;
    cli_run_until(cli, &w.done);
    if (w.err < 0)
        smmu_error_copy(err, &w.e);
    return w.err;
}
