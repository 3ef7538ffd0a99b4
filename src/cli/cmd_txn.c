/* cmd_txn.c — attach, detach, status and recover: the commands that change QEMU, through libsmmuctl's txn. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "smmuctl/qmp_reconnect.h"
#include "smmuctl/txn.h"

/* ---- reconnect after a lost connection: a new client on the same address, retried with backoff (a timer)
 * until --timeout ---- */

struct txn_cli_reconn {
    struct cli *cli;
    qmp_client **c;
    smmu_reconnect_done_fn done;
    void *arg;
};

static void txn_cli_reconnected(int err, qmp_client *n, const struct smmu_error *e, void *payload)
{
    struct txn_cli_reconn *rc = payload;
    struct cli *cli = rc->cli;
    struct smmu_error my = SMMU_ERROR_INIT;
    if (err == 0) {
        *rc->c = n;
    } else {
        /* keep a closed client in place so later calls fail cleanly with -ENOTCONN */
        struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
        smmu_error_copy(&my, e);
        if (qmp_client_new(rc->c, cli->base, &o) < 0)
            *rc->c = NULL;
    }
    cli->qmp = *rc->c;
    smmu_reconnect_done_fn done = rc->done;
    void *arg = rc->arg;
    free(rc);
    done(err, err < 0 ? &my : NULL, arg);
}

static int txn_cli_reconnect(qmp_client **c, void *payload, smmu_reconnect_done_fn done, void *arg)
{
    struct cli *cli = payload;
    struct qmp_reconnect_opts o = QMP_RECONNECT_OPTS_INIT;
    struct txn_cli_reconn *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return -ENOMEM;
    cli_info(cli, "connection to QEMU lost; reconnecting to %s", cli->qmp_addr);
    qmp_client_free(*c);
    *c = NULL;
    cli->qmp = NULL;
    rc->cli = cli;
    rc->c = c;
    rc->done = done;
    rc->arg = arg;
    o.addr = cli->qmp_addr;
    o.client.connect_timeout_ms = cli_timeout_ms(cli);
    o.client.command_timeout_ms = cli_timeout_ms(cli);
    o.client.record = cli->record;
    o.client.negotiate_oob = true;
    o.deadline_ms = cli_timeout_ms(cli); /* the CLI's policy: retry until --timeout */
    int r = qmp_reconnect_start(cli->base, &o, txn_cli_reconnected, rc, NULL);
    if (r < 0) {
        free(rc);
        struct qmp_client_opts co = QMP_CLIENT_OPTS_INIT;
        if (qmp_client_new(c, cli->base, &co) == 0)
            cli->qmp = *c;
    }
    return r;
}

/* Test-only crash injection (the fault-matrix tests): SMMUCTL_TEST_CRASH="K:before" or "K:after" kills this
 * process with SIGKILL before step K is sent, or right after its bytes went out. */
static int txn_cli_crash_hook(int step, int phase, void *payload)
{
    const char *spec = payload;
    char *end;
    long k = strtol(spec, &end, 10);
    if (end == spec || *end != ':')
        return 0;
    if (k == step && ((phase == 0 && !strcmp(end + 1, "before")) || (phase == 1 && !strcmp(end + 1, "after"))))
        raise(SIGKILL);
    return 0;
}

static void txn_cli_opts(struct cli *cli, struct smmu_txn_opts *o)
{
    struct smmu_txn_opts d = SMMU_TXN_OPTS_INIT;
    const char *crash = getenv("SMMUCTL_TEST_CRASH");
    *o = d;
    o->sysfs_root = cli->sysfs;
    o->dev_root = cli->dev;
    o->unplug_timeout_ms = (int)(cli->unplug_timeout_s * 1000 + 0.5);
    o->no_wait = cli->no_wait;
    o->reconnect = txn_cli_reconnect;
    o->reconnect_payload = cli;
    if (crash && *crash) {
        o->step_hook = txn_cli_crash_hook;
        o->step_hook_payload = (void *)crash;
    }
}

/* Run a started operation to completion. */
struct txn_cli_wait {
    bool done;
};

static void txn_cli_done(struct smmu_result *res, void *payload)
{
    (void)res;
    ((struct txn_cli_wait *)payload)->done = true;
}

static void txn_cli_wait(struct cli *cli, int started, struct txn_cli_wait *w, struct smmu_result *res)
{
    if (started < 0) {
        res->outcome = SMMU_OUTCOME_ROLLED_BACK; /* could not start: nothing was sent */
        return;
    }
    cli_run_until(cli, &w->done);
}

static void txn_cli_status(struct cli *cli, smmu_journal *j, struct smmu_facts *f, bool recover,
                           const struct smmu_txn_opts *o, struct smmu_result *res)
{
    struct txn_cli_wait w = {false};
    txn_cli_wait(cli, smmu_txn_status_start(&cli->qmp, j, f, recover, o, res, txn_cli_done, &w, NULL), &w, res);
}

static int txn_exit_code(enum smmu_outcome o)
{
    switch (o) {
    case SMMU_OUTCOME_DONE: return EXIT_DONE;
    case SMMU_OUTCOME_ROLLED_BACK: return EXIT_FAILED;
    case SMMU_OUTCOME_REFUSED: return EXIT_USAGE;
    case SMMU_OUTCOME_UNREACHABLE: return EXIT_UNREACHABLE;
    default: return EXIT_INCOMPLETE;
    }
}

/* Print the result: --json object, or text lines produced by `text`. */
static int txn_finish(struct cli *cli, const char *command, struct smmu_result *res,
                      void (*text)(struct cli *, const json_t *report))
{
    int code = txn_exit_code(res->outcome);
    if (cli->json) {
        json_t *o = json_pack("{s:b,s:s,s:i}", "ok", code == 0, "command", command, "exit_code", code);
        if (res->report)
            json_object_update(o, res->report);
        if (res->error.code && code != 0)
            json_object_set_new(o, "error", cli_error_json(&res->error));
        cli_print_json(cli, o);
    } else {
        if (res->report)
            text(cli, res->report);
        if (res->error.code && code != 0)
            fprintf(stderr, "smmuctl: %s: %s\n", command, res->error.message);
    }
    smmu_result_fini(res);
    return code;
}

/* Open journal + gather facts: the common start of every command here. */
static int txn_begin(struct cli *cli, const char *command, smmu_journal **j, struct smmu_facts *f)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    int r;
    if ((r = cli_connect(cli, command)) != 0)
        return r;
    if ((r = cli_open_journal(cli, command, false, j)) != 0)
        return r;
    if (cli_facts_wait(cli, *j, f, &e) < 0) {
        smmu_journal_close(*j);
        *j = NULL;
        return cli_fail(cli, command, EXIT_UNREACHABLE, &e, NULL); /* nothing changed yet */
    }
    if (f->warnings[0])
        cli_info(cli, "warning: %s", f->warnings);
    return 0;
}

/* An interrupted transaction left by a crashed smmuctl is finished before new work starts. */
static int txn_recover_first(struct cli *cli, const char *command, smmu_journal *j, struct smmu_facts *f,
                             const struct smmu_txn_opts *o)
{
    struct smmu_result res;
    struct smmu_error e = SMMU_ERROR_INIT;
    if (!smmu_journal_txn(j))
        return 0;
    cli_info(cli, "an interrupted %s transaction is in the journal: recovering it first",
             json_string_value(json_object_get(smmu_journal_txn(j), "op")));
    txn_cli_status(cli, j, f, true, o, &res);
    smmu_result_fini(&res);
    if (smmu_journal_txn(j)) {
        smmu_error_set(&e, -EBUSY, "an interrupted transaction could not be recovered; run `smmuctl recover`");
        return cli_fail(cli, command, EXIT_INCOMPLETE, &e, NULL);
    }
    /* the VM changed: look again */
    smmu_facts_free(f);
    if (cli_facts_wait(cli, j, f, &e) < 0)
        return cli_fail(cli, command, EXIT_UNREACHABLE, &e, NULL);
    return 0;
}

/* ---- attach ---- */

static void attach_text(struct cli *cli, const json_t *rep)
{
    size_t i;
    json_t *d;
    const char *outcome = json_string_value(json_object_get(rep, "outcome"));
    json_array_foreach(json_object_get(rep, "devices"), i, d) {
        const char *st = json_string_value(json_object_get(d, "state"));
        if (outcome && !strcmp(outcome, "done"))
            printf("attached %s as %s on %s behind %s (host SMMU %s)\n", json_string_value(json_object_get(d, "bdf")),
                   json_string_value(json_object_get(d, "id")), json_string_value(json_object_get(d, "port")),
                   json_string_value(json_object_get(d, "vsmmu"))[0] ? json_string_value(json_object_get(d, "vsmmu"))
                                                                      : "no vSMMU",
                   json_string_value(json_object_get(d, "host_smmu")));
        else
            printf("%s (%s): %s\n", json_string_value(json_object_get(d, "bdf")),
                   json_string_value(json_object_get(d, "id")),
                   !strcmp(st, "sent-no-reply") ? "sent, no reply; recover will settle it" : st);
    }
    if (outcome && !strcmp(outcome, "rolled-back"))
        printf("attach failed; every change was rolled back: QEMU is as before\n");
    else if (outcome && !strcmp(outcome, "incomplete"))
        printf("attach failed and the rollback is not finished: see `smmuctl status`\n");
    (void)cli;
}

int cmd_attach(struct cli *cli)
{
    smmu_journal *j = NULL;
    struct smmu_facts f;
    struct smmu_plan *p = NULL;
    struct smmu_plan_opts po = SMMU_PLAN_OPTS_INIT;
    struct smmu_txn_opts to;
    struct smmu_result res;
    struct smmu_error e = SMMU_ERROR_INIT;
    char **devs = NULL;
    size_t n = 0;
    int r;

    if ((r = cli_devices(cli, "attach", &devs, &n)) != 0)
        return r;
    txn_cli_opts(cli, &to);
    if ((r = txn_begin(cli, "attach", &j, &f)) != 0) {
        cli_devices_free(devs);
        return r;
    }
    if ((r = txn_recover_first(cli, "attach", j, &f, &to)) != 0)
        goto out;
    po.fd_pass = cli->fd_pass;
    po.allow_mismatch = cli->allow_mismatch;
    po.iommufd_id = cli->iommufd_id;
    po.device_id = cli->device_id;
    po.dev_root = cli->dev;
    if (smmu_facts_plan(&f, cli->sysfs, (const char *const *)devs, n, &po, &p, &e) < 0) {
        r = cli_fail(cli, "attach", EXIT_USAGE, &e, NULL);
        goto out;
    }
    {
        struct txn_cli_wait w = {false};
        txn_cli_wait(cli, smmu_txn_attach_start(&cli->qmp, j, &f, p, &to, &res, txn_cli_done, &w, NULL), &w, &res);
    }
    r = txn_finish(cli, "attach", &res, attach_text);
out:
    smmu_plan_free(p);
    smmu_facts_free(&f);
    smmu_journal_close(j);
    cli_devices_free(devs);
    return r;
}

/* ---- detach ---- */

static void detach_text(struct cli *cli, const json_t *rep)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(rep, "devices"), i, d) {
        const char *oc = json_string_value(json_object_get(d, "outcome"));
        const char *msg = json_string_value(json_object_get(d, "message"));
        printf("%-24s %-14s %s%s%s\n", json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "bdf")), !strcmp(oc, "done") ? "detached" : oc,
               msg ? ": " : "", msg ? msg : "");
    }
    json_t *fd = json_object_get(rep, "iommufd");
    const char *act = json_string_value(json_object_get(fd, "action"));
    if (act && !strcmp(act, "deleted"))
        printf("iommufd object %s deleted (no vfio-pci device uses it any more)\n",
               json_string_value(json_object_get(fd, "id")) ?: "");
    (void)cli;
}

int cmd_detach(struct cli *cli)
{
    smmu_journal *j = NULL;
    struct smmu_facts f;
    struct smmu_txn_opts to;
    struct smmu_result res;
    char **devs = NULL;
    size_t n = 0;
    int r;

    if ((r = cli_devices(cli, "detach", &devs, &n)) != 0)
        return r;
    txn_cli_opts(cli, &to);
    if ((r = txn_begin(cli, "detach", &j, &f)) != 0) {
        cli_devices_free(devs);
        return r;
    }
    if ((r = txn_recover_first(cli, "detach", j, &f, &to)) == 0) {
        struct txn_cli_wait w = {false};
        txn_cli_wait(cli, smmu_txn_detach_start(&cli->qmp, j, &f, (const char *const *)devs, n, &to, &res,
                                                txn_cli_done, &w, NULL), &w, &res);
        r = txn_finish(cli, "detach", &res, detach_text);
    }
    smmu_facts_free(&f);
    smmu_journal_close(j);
    cli_devices_free(devs);
    return r;
}

/* ---- status / recover ---- */

static void status_text(struct cli *cli, const json_t *rep)
{
    size_t i;
    json_t *d, *txn = json_object_get(rep, "interrupted");
    json_t *att = json_object_get(rep, "attached"), *pen = json_object_get(rep, "pending");
    printf("attached (%zu):\n", json_array_size(att));
    json_array_foreach(att, i, d)
        printf("  %-24s %-14s on %-10s behind %s (host SMMU %s)\n", json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "bdf")), json_string_value(json_object_get(d, "port")),
               json_string_value(json_object_get(d, "vsmmu")), json_string_value(json_object_get(d, "host_smmu")));
    printf("pending unplugs (%zu):\n", json_array_size(pen));
    json_array_foreach(pen, i, d)
        printf("  %-24s %-14s waiting for the guest to release it (DEVICE_DELETED)\n",
               json_string_value(json_object_get(d, "id")), json_string_value(json_object_get(d, "bdf")));
    json_array_foreach(json_object_get(rep, "finished"), i, d)
        printf("finished: %s is gone from QEMU (unplug completed)\n", json_string_value(d));
    json_array_foreach(json_object_get(rep, "vanished"), i, d)
        printf("note: %s was removed from QEMU outside smmuctl; forgotten\n", json_string_value(d));
    json_t *rec = json_object_get(rep, "recovered");
    if (json_is_object(rec))
        printf("recovered an interrupted %s: %s\n", json_string_value(json_object_get(rec, "op")),
               json_string_value(json_object_get(rec, "result")));
    if (json_is_object(txn)) {
        printf("interrupted transaction: %s started %s by pid %lld — run `smmuctl recover`\n",
               json_string_value(json_object_get(txn, "op")), json_string_value(json_object_get(txn, "started")),
               (long long)json_integer_value(json_object_get(txn, "pid")));
        json_array_foreach(json_object_get(txn, "steps"), i, d)
            printf("  %-10s %-28s %s\n", json_string_value(json_object_get(d, "kind")),
                   json_string_value(json_object_get(d, "name")), json_string_value(json_object_get(d, "state")));
    } else {
        printf("no interrupted transaction\n");
    }
    (void)cli;
}

static int status_or_recover(struct cli *cli, const char *command, bool recover)
{
    smmu_journal *j = NULL;
    struct smmu_facts f;
    struct smmu_txn_opts to;
    struct smmu_result res;
    int r;
    if (cli->nargs > 0)
        return cli_usage_error(cli, command, "'%s' takes no arguments (got '%s')", command, cli->args[0]);
    txn_cli_opts(cli, &to);
    if ((r = txn_begin(cli, command, &j, &f)) != 0)
        return r;
    txn_cli_status(cli, j, &f, recover, &to, &res);
    r = txn_finish(cli, command, &res, status_text);
    smmu_facts_free(&f);
    smmu_journal_close(j);
    return r;
}

int cmd_status(struct cli *cli)
{
    return status_or_recover(cli, "status", false);
}

int cmd_recover(struct cli *cli)
{
    return status_or_recover(cli, "recover", true);
}
