/* cmd_txn.c — attach, detach, status and recover: the commands that change QEMU, through libsmmuctl's txn. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "smmuctl/engine.h"
#include "smmuctl/reply_json.h"

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

/* Print the result: --json object, or text lines produced by `text`. */
static int txn_finish(struct cli *cli, const char *command, const struct smmu_result *res,
                      void (*text)(struct cli *, const json_t *report))
{
    int code = smmu_outcome_exit_code(res->outcome);
    if (cli->json) {
        cli_print_json(cli, smmu_result_json(command, res));
    } else {
        if (res->report)
            text(cli, res->report);
        if (res->error.code && code != 0) {
            char msg[4 * sizeof(res->error.message)];
            cli_escape(res->error.message, msg, sizeof(msg));
            fprintf(stderr, "smmuctl: %s: %s\n", command, msg);
        }
    }
    return code;
}

/* ---- one request on a VM handle, run to completion on the CLI's loop ---- */

struct txn_cli_run {
    struct cli *cli;
    const char *command;
    void (*text)(struct cli *, const json_t *report);
    smmu_op *op;
    bool done;
    int code;
    struct cli_progress *progress; /* the "still working" line on a terminal */
};

static void txn_cli_log(int level, const char *msg, void *payload)
{
    struct cli *cli = payload;
    if (level == 0)
        cli_debug(cli, "%s", msg);
    else
        cli_info(cli, "%s", msg);
}

static void txn_cli_done(smmu_vm *vm, const struct smmu_reply *rep, void *payload)
{
    struct txn_cli_run *run = payload;
    struct cli *cli = run->cli;
    const char *command = run->command;
    (void)vm;
    run->done = true;
    run->op = NULL;
    cli_progress_stop(run->progress); /* erase it before the result is printed */
    run->progress = NULL;
    switch (rep->stage) {
    case SMMU_STAGE_TXN:
        if (cli->domain && rep->facts) { /* --force went past disagreements: say so */
            size_t ndis = 0;
            json_t *dom = cli_domain_report(cli, &rep->facts->topo, NULL, &ndis);
            if (ndis)
                cli_info(cli, "warning: --force: attached despite %zu disagreement(s) with %s", ndis, cli->domain_path);
            if (dom && rep->result.report)
                json_object_set(rep->result.report, "domain", dom);
            json_decref(dom);
        }
        run->code = txn_finish(cli, command, &rep->result, run->text);
        break;
    case SMMU_STAGE_JOURNAL: /* nothing was sent: a busy VM, a corrupt journal or an unusable state dir */
        run->code = cli_fail_journal(cli, command, &rep->error);
        break;
    case SMMU_STAGE_PLAN: {
        /* --domain: list every disagreement (the refusal's message may be cut short) */
        size_t ndis = 0;
        json_t *dom = rep->facts ? cli_domain_report(cli, &rep->facts->topo, stderr, &ndis) : NULL;
        run->code = cli_fail(cli, command, smmu_reply_exit_code(rep), &rep->error,
                             dom ? json_pack("{s:o}", "domain", dom) : NULL);
        break;
    }
    default: /* stopped before the transaction: the exit code by the stage (smmuctl/reply_json.h) */
        run->code = cli_fail(cli, command, smmu_reply_exit_code(rep), &rep->error, NULL);
        break;
    }
}

/* SIGINT/SIGTERM/SIGHUP (DESIGN §5 "Signals"): cancel the request; a second one while rolling back is
 * reported and ignored. */
static void txn_cli_signal(evutil_socket_t sig, short what, void *arg)
{
    struct txn_cli_run *run = arg;
    (void)what;
    if (!run->op)
        return;
    if (smmu_op_cancel(run->op) == 0)
        cli_info(run->cli, "%s: interrupted (signal %d): no further step; finishing what was started",
                 run->command, (int)sig);
    else
        cli_info(run->cli, "%s: signal %d ignored: the rollback is running (kill -9 leaves it to `smmuctl "
                 "recover`)", run->command, (int)sig);
}

static int txn_cli_run(struct cli *cli, const char *command, struct smmu_request *req,
                       void (*text)(struct cli *, const json_t *report))
{
    struct smmu_vm_opts o = SMMU_VM_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct txn_cli_run run = {cli, command, text, NULL, false, EXIT_FAILED, NULL};
    const char *crash = getenv("SMMUCTL_TEST_CRASH");
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    struct event *sev[3] = {NULL, NULL, NULL};
    char vm_name[128];
    smmu_vm *vm = NULL;
    int r;

    if (!cli->qmp_addr || !*cli->qmp_addr)
        return cli_usage_error(cli, command, "no QMP monitor given: use --qmp PATH|unix:PATH|tcp:HOST:PORT or set "
                               "SMMUCTL_QMP");
    if ((r = cli_vm_name(cli, command, vm_name, sizeof(vm_name))) != 0)
        return r;
    o.qmp_addr = cli->qmp_addr;
    o.vm_name = vm_name;
    o.state_dir = cli->state_dir;
    o.sysfs_root = cli->sysfs;
    o.dev_root = cli->dev;
    o.connect_timeout_ms = cli_timeout_ms(cli);
    o.command_timeout_ms = cli_timeout_ms(cli);
    o.lock_wait_ms = 60000;
    o.connect_deadline_ms = 0;                  /* one attempt: unreachable is exit 3 at once */
    o.reconnect_deadline_ms = cli_timeout_ms(cli); /* the CLI's policy: retry until --timeout */
    o.negotiate_oob = true; /* FACTS: ~0.83x QEMU CPU per command; we always send ids anyway */
    o.record = cli->record;
    o.log = txn_cli_log;
    o.log_payload = cli;
    o.log_qmp = cli->verbose >= 1; /* -v: every QMP message, at debug level */
    if (crash && *crash) {
        o.step_hook = txn_cli_crash_hook;
        o.step_hook_payload = (void *)crash;
    }
    if ((r = smmu_vm_new(cli->base, &o, &vm, &e)) < 0)
        return cli_fail(cli, command, r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE, &e, NULL);
    if (smmu_vm_submit(vm, req, txn_cli_done, &run, &run.op) < 0) {
        smmu_vm_free(vm);
        smmu_error_set(&e, -ENOMEM, "out of memory");
        return cli_fail(cli, command, EXIT_FAILED, &e, NULL);
    }
    for (int i = 0; i < 3; i++)
        if ((sev[i] = evsignal_new(cli->base, sigs[i], txn_cli_signal, &run)))
            evsignal_add(sev[i], NULL);
    run.progress = cli_progress_start(cli, command, vm, req->kind == SMMU_REQ_DETACH && !req->no_wait
                                                            ? (req->unplug_timeout_ms ? req->unplug_timeout_ms : 10000)
                                                            : 0);
    cli_run_until(cli, &run.done);
    cli_progress_stop(run.progress);
    for (int i = 0; i < 3; i++)
        if (sev[i])
            event_free(sev[i]);
    smmu_vm_free(vm); /* the callback fired: nothing is left running */
    return run.code;
}

/* ---- attach ---- */

void cli_attach_text(struct cli *cli, const json_t *rep)
{
    size_t i;
    json_t *d;
    const char *outcome = json_string_value(json_object_get(rep, "outcome"));
    json_array_foreach(json_object_get(rep, "warnings"), i, d)
        cli_info(cli, "warning: %s", json_string_value(d));
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
    struct smmu_request req = {SMMU_REQ_ATTACH, NULL, 0, SMMU_PLAN_OPTS_INIT, 0, false};
    char **devs = NULL;
    size_t n = 0;
    int r;

    if ((r = cli_devices(cli, "attach", &devs, &n)) != 0)
        return r;
    req.devs = (const char *const *)devs;
    req.n_devs = n;
    req.plan.fd_pass = cli->fd_pass;
    req.plan.allow_mismatch = cli->allow_mismatch;
    req.plan.iommufd_id = cli->iommufd_id;
    req.plan.device_id = cli->device_id;
    req.plan.dev_root = cli->dev;
    req.plan.require_fit = cli->require_fit;
    req.plan.domain = cli->domain; /* borrowed: lives until main() returns, after the request */
    req.plan.domain_file = cli->domain_path;
    req.plan.force = cli->force;
    req.unplug_timeout_ms = (int)(cli->unplug_timeout_s * 1000 + 0.5);
    r = txn_cli_run(cli, "attach", &req, cli_attach_text);
    cli_devices_free(devs);
    return r;
}

/* ---- detach ---- */

void cli_detach_text(struct cli *cli, const json_t *rep)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(rep, "devices"), i, d) {
        const char *oc = json_string_value(json_object_get(d, "outcome"));
        const char *msg = json_string_value(json_object_get(d, "message"));
        char esc[4096];
        cli_escape(msg ? msg : "", esc, sizeof(esc));
        printf("%-24s %-14s %s%s%s\n", json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "bdf")), !strcmp(oc, "done") ? "detached" : oc,
               msg ? ": " : "", esc);
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
    struct smmu_request req = {SMMU_REQ_DETACH, NULL, 0, SMMU_PLAN_OPTS_INIT, 0, false};
    char **devs = NULL;
    size_t n = 0;
    int r;

    if ((r = cli_devices(cli, "detach", &devs, &n)) != 0)
        return r;
    req.devs = (const char *const *)devs;
    req.n_devs = n;
    req.unplug_timeout_ms = (int)(cli->unplug_timeout_s * 1000 + 0.5);
    req.no_wait = cli->no_wait;
    r = txn_cli_run(cli, "detach", &req, cli_detach_text);
    cli_devices_free(devs);
    return r;
}

/* ---- status / recover ---- */

void cli_status_text(struct cli *cli, const json_t *rep)
{
    size_t i;
    json_t *d, *txn = json_object_get(rep, "interrupted");
    json_t *att = json_object_get(rep, "attached"), *pen = json_object_get(rep, "pending");
    printf("attached (%zu):\n", json_array_size(att));
    json_array_foreach(att, i, d)
        printf("  %-24s %-14s on %-10s behind %s (host SMMU %s)\n", json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "bdf")), json_string_value(json_object_get(d, "port")),
               json_string_value(json_object_get(d, "vsmmu")), json_string_value(json_object_get(d, "host_smmu")));
    json_t *unk = json_object_get(rep, "unknown");
    if (json_array_size(unk) > 0) {
        printf("vfio-pci devices in QEMU that smmuctl did not attach (%zu):\n", json_array_size(unk));
        json_array_foreach(unk, i, d) {
            const char *bdf = json_string_value(json_object_get(d, "bdf"));
            const char *port = json_string_value(json_object_get(d, "port"));
            printf("  %-24s %-14s on %-10s %s\n", json_string_value(json_object_get(d, "id")),
                   bdf && *bdf ? bdf : "(fd-passed)", port && *port ? port : "?",
                   json_is_true(json_object_get(d, "hotplugged")) ? "hot-plugged" : "cold-plugged");
        }
    }
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
    struct smmu_request req = {recover ? SMMU_REQ_RECOVER : SMMU_REQ_STATUS, NULL, 0, SMMU_PLAN_OPTS_INIT, 0,
                               false};
    if (cli->nargs > 0)
        return cli_usage_error(cli, command, "'%s' takes no arguments (got '%s')", command, cli->args[0]);
    req.unplug_timeout_ms = (int)(cli->unplug_timeout_s * 1000 + 0.5);
    req.no_wait = cli->no_wait;
    return txn_cli_run(cli, command, &req, cli_status_text);
}

int cmd_status(struct cli *cli)
{
    return status_or_recover(cli, "status", false);
}

int cmd_recover(struct cli *cli)
{
    return status_or_recover(cli, "recover", true);
}
