/* cmd_server.c — `smmuctl --server unix:PATH --vm NAME topology|plan|attach|detach|status|recover`: the same
 * commands through a running `smmuctl serve` (DESIGN §7, docs/openapi.json), printing the same text, --json
 * object and exit code as the direct CLI. The daemon answers with the CLI's own --json objects (src/txn
 * reply_json); text is printed from them by the direct CLI's own printers: attach/detach/status/recover from
 * the report (cmd_txn.c), topology and plan through render.c after reading the JSON back into the library's
 * structs (smmu_topology_from_json, smmu_plan_from_json), so both paths share one renderer.
 *
 * Routes: topology GET /v1/vms/{vm}/topology; plan, attach, detach POST /v1/vms/{vm}/{verb}?wait=S (202 +
 * Location: followed with GET /v1/operations/{id}?wait=S until it ends); status and recover GET /v1/vms/{vm}
 * (its "status": the daemon reconciles as `recover` does on every connect, so `recover` reports what is
 * still open). topology, plan, status and recover first check that the daemon is connected to the VM's QEMU
 * (GET /v1/vms/{vm} "state"): if not, exit 3 as the direct CLI. Exit codes: the object's exit_code; an error body without one by its HTTP status (400, 404,
 * 405, 409, 413, 422, 429: 2 — nothing was sent; 502: 1; 503: 3); the daemon unreachable: 3. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/render.h"
#include "cli/server_client.h"
#include "smmuctl/error_json.h"

static volatile sig_atomic_t srv_signal; /* the signal that interrupted a mutating command, 0 none */

static void srv_on_signal(int sig)
{
    srv_signal = sig;
}

struct srv {
    struct cli *cli;
    const char *command;
    const char *sock;    /* the socket path (after "unix:") */
    char vm[128];
    char op[128];        /* the operation being followed, "" before the daemon named it */
};

/* The daemon socket from --server: unix:PATH or PATH. NULL when it is not one. */
static const char *srv_socket_path(const char *addr)
{
    if (!strncmp(addr, "unix:", 5))
        return addr[5] ? addr + 5 : NULL;
    if (strchr(addr, ':')) /* tcp:… and friends: the API is on a unix socket only */
        return NULL;
    return *addr ? addr : NULL;
}

static int srv_exit_of_status(int status)
{
    switch (status) {
    case 400: case 404: case 405: case 409: case 413: case 422: case 429: return EXIT_USAGE; /* nothing sent */
    case 502: return EXIT_FAILED;
    case 503: return EXIT_UNREACHABLE;
    default: return status >= 200 && status < 300 ? EXIT_DONE : EXIT_FAILED;
    }
}

/* Print the error of `o` (an object with "error") as the direct CLI does: "smmuctl: COMMAND: message". */
static void srv_error_text(struct srv *s, const json_t *o)
{
    const char *m = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    char esc[4096];
    cli_escape(m && *m ? m : "failed", esc, sizeof(esc));
    fprintf(stderr, "smmuctl: %s: %s\n", s->command, esc);
}

/* The CLI's error object from an API error body {"ok":false,"error":{…}}: command and exit_code added in the
 * CLI's member order (smmu_fail_json). New reference. */
static json_t *srv_cli_error(struct srv *s, const json_t *body, int exit_code)
{
    json_t *o = json_pack("{s:b,s:s,s:i}", "ok", 0, "command", s->command, "exit_code", exit_code);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v)
        if (strcmp(k, "ok") && strcmp(k, "command") && strcmp(k, "exit_code") && strcmp(k, "error"))
            json_object_set(o, k, v);
    v = json_object_get(body, "error");
    json_object_set_new(o, "error", v ? json_incref(v) : json_pack("{s:s,s:s}", "code", "EPROTO", "message",
                                                                    "the daemon's answer has no error member"));
    return o;
}

/* An error of ours (not the daemon's): printed as the direct CLI prints its own. */
static int srv_fail(struct srv *s, int exit_code, const struct smmu_error *e)
{
    return cli_fail(s->cli, s->command, exit_code, e, NULL);
}

/* A CLI object (a 200 body, an operation's result, a failure's body): print it as the direct CLI would and
 * return its exit code. `text` prints a report (NULL: the command has no report printer here). */
static int srv_print(struct srv *s, json_t *o, int status, void (*text)(struct cli *, const json_t *))
{
    struct cli *cli = s->cli;
    json_t *ec = json_object_get(o, "exit_code");
    int code = json_is_integer(ec) ? (int)json_integer_value(ec)
               : json_is_true(json_object_get(o, "ok")) ? EXIT_DONE : srv_exit_of_status(status);
    bool report = json_object_get(o, "outcome") || json_object_get(o, "attached"); /* a transaction's report */
    if (!json_is_string(json_object_get(o, "command")) || !json_is_integer(ec)) {
        if (!json_is_true(json_object_get(o, "ok"))) { /* an API error body: the CLI's error form */
            json_t *e = srv_cli_error(s, o, code);
            if (cli->json)
                cli_print_json(cli, e);
            else {
                srv_error_text(s, e);
                json_decref(e);
            }
            return code;
        }
    }
    if (cli->json) {
        cli_print_json(cli, json_incref(o));
        return code;
    }
    if (report && text)
        text(cli, o);
    if (code != 0 && json_object_get(o, "error"))
        srv_error_text(s, o);
    return code;
}

/* Wait for the daemon: one request, with what went wrong as the CLI says it (exit 3: unreachable). */
static int srv_request(struct srv *s, const char *method, const char *target, const char *body, double wait_s,
                       struct sc_resp *r)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    /* the daemon answers by ?wait= at the latest; what is beyond that is the daemon not answering */
    int ms = (int)((wait_s + s->cli->timeout_s + 5) * 1000);
    cli_debug(s->cli, "http -> %s %s%s%s", method, target, body ? " " : "", body ? body : "");
    int rc = sc_request(s->sock, method, target, body, ms, &srv_signal, r, &e);
    if (rc == 0) {
        cli_debug(s->cli, "http <- %d%s%s", r->status, r->location[0] ? " Location: " : "", r->location);
        return 0;
    }
    if (rc == -EINTR)
        return -EINTR;
    return srv_fail(s, rc == -ENOMEM ? EXIT_FAILED : EXIT_UNREACHABLE, &e);
}

/* An unknown VM (404 on a VM's route): name it and how to register it. */
static int srv_no_vm(struct srv *s, const json_t *body)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    (void)body;
    smmu_error_set(&e, -ENOENT, "no VM '%s' on the smmuctl daemon at unix:%s: register it with PUT /v1/vms/%s "
                   "(curl --unix-socket %s -X PUT http://localhost/v1/vms/%s -d '{\"qmp\":\"unix:/path/to/qmp\"}') "
                   "or start the daemon with `smmuctl serve --qmp ADDR --vm %s`", s->vm, s->sock, s->vm, s->sock,
                   s->vm, s->vm);
    return srv_fail(s, EXIT_USAGE, &e);
}

/* Interrupted while the daemon works on it: the daemon carries on; say how to follow it. */
static int srv_interrupted(struct srv *s)
{
    cli_info(s->cli, "%s: interrupted (signal %d): the daemon carries on with it%s%s%s; `smmuctl --server unix:%s "
             "--vm %s status` shows where the VM stands", s->command, (int)srv_signal, s->op[0] ? " (operation " : "",
             s->op, s->op[0] ? ": GET /v1/operations/" : "", s->sock, s->vm);
    if (s->op[0])
        cli_info(s->cli, "%s: follow it with curl --unix-socket %s http://localhost/v1/operations/%s", s->command,
                 s->sock, s->op);
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_error_set(&e, -EINTR, "interrupted: the daemon carries on with the %s%s%s; its outcome is not known here",
                   s->command, s->op[0] ? " as operation " : "", s->op);
    return srv_fail(s, EXIT_INCOMPLETE, &e);
}

/* POST an operation and follow it until it has ended (for the CLI: done, failed, or pending after the unplug
 * timeout). *out: the CLI object (new reference) and *status the HTTP status it came with; or an exit code. */
static int srv_operation(struct srv *s, const char *verb, json_t *req, double wait_s, json_t **out, int *status)
{
    char target[512], *body = json_dumps(req, JSON_COMPACT);
    struct sc_resp r;
    int rc;
    json_decref(req);
    *out = NULL;
    if (!body) {
        struct smmu_error e = SMMU_ERROR_INIT;
        smmu_error_set(&e, -ENOMEM, "out of memory");
        return srv_fail(s, EXIT_FAILED, &e);
    }
    if (wait_s > 3600) /* the most the API accepts (?wait= up to 3600): longer ones are followed below */
        wait_s = 3600;
    snprintf(target, sizeof(target), "/v1/vms/%s/%s?wait=%.3f", s->vm, verb, wait_s);
    rc = srv_request(s, "POST", target, body, wait_s, &r);
    free(body);
    if (rc == -EINTR)
        return srv_interrupted(s);
    if (rc != 0)
        return rc;
    if (r.operation[0])
        snprintf(s->op, sizeof(s->op), "%s", r.operation);
    for (;;) {
        if (r.status == 404 && !s->op[0]) {
            rc = srv_no_vm(s, r.body);
            sc_resp_free(&r);
            return rc;
        }
        if (!r.body) {
            struct smmu_error e = SMMU_ERROR_INIT;
            smmu_error_set(&e, -EPROTO, "the smmuctl daemon at unix:%s answered %d without a JSON body", s->sock,
                           r.status);
            sc_resp_free(&r);
            return srv_fail(s, EXIT_FAILED, &e);
        }
        const char *state = json_string_value(json_object_get(r.body, "state"));
        json_t *result = json_object_get(r.body, "result");
        bool is_op = state && json_object_get(r.body, "verb"); /* an operation ({id, vm, verb, state, result}) */
        if (!is_op) { /* the CLI object itself: 200, or the failure's status */
            *out = json_incref(r.body);
            *status = r.status;
            sc_resp_free(&r);
            return 0;
        }
        /* an operation: ended (200 on GET), or pending with its result (the transaction is over for the CLI:
         * a detach whose unplug is still pending, exit 4), or still running: wait on */
        if (r.status != 202 || (!strcmp(state, "pending") && json_is_object(result))) {
            *out = json_is_object(result) ? json_incref(result) : NULL;
            *status = r.status;
            if (!*out) {
                struct smmu_error e = SMMU_ERROR_INIT;
                smmu_error_set(&e, -EPROTO, "operation %s ended %s without a result", s->op, state);
                sc_resp_free(&r);
                return srv_fail(s, EXIT_FAILED, &e);
            }
            sc_resp_free(&r);
            return 0;
        }
        if (!s->op[0] && json_is_string(json_object_get(r.body, "id")))
            snprintf(s->op, sizeof(s->op), "%s", json_string_value(json_object_get(r.body, "id")));
        sc_resp_free(&r);
        /* a waiting GET is woken when the operation ends or turns pending (a detach the guest has not
         * finished), so one long wait at a time; a timeout just asks again */
        double w = 30;
        snprintf(target, sizeof(target), "/v1/operations/%s?wait=%.3f", s->op, w);
        rc = srv_request(s, "GET", target, NULL, w, &r);
        if (rc == -EINTR)
            return srv_interrupted(s);
        if (rc != 0)
            return rc;
    }
}

/* GET a VM's route: 0 and *out (the body), or an exit code (printed). */
static int srv_get(struct srv *s, const char *target, json_t **out, int *status)
{
    struct sc_resp r;
    int rc = srv_request(s, "GET", target, NULL, 0, &r);
    *out = NULL;
    if (rc != 0)
        return rc == -EINTR ? srv_interrupted(s) : rc;
    if (r.status == 404) {
        rc = srv_no_vm(s, r.body);
        sc_resp_free(&r);
        return rc;
    }
    if (!r.body) {
        struct smmu_error e = SMMU_ERROR_INIT;
        smmu_error_set(&e, -EPROTO, "the smmuctl daemon at unix:%s answered %d without a JSON body", s->sock, r.status);
        sc_resp_free(&r);
        return srv_fail(s, EXIT_FAILED, &e);
    }
    *out = json_incref(r.body);
    *status = r.status;
    sc_resp_free(&r);
    return 0;
}

static void srv_warnings(struct srv *s, const json_t *o)
{
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(o, "warnings"), i, w)
        cli_info(s->cli, "warning: %s", json_string_value(w));
}

static int srv_vm_connected(struct srv *s, json_t **out);

static int srv_topology(struct srv *s)
{
    char target[256];
    json_t *o;
    int status, rc;
    if ((rc = srv_vm_connected(s, &o)) != 0)
        return rc;
    json_decref(o);
    snprintf(target, sizeof(target), "/v1/vms/%s/topology", s->vm);
    if ((rc = srv_get(s, target, &o, &status)) != 0)
        return rc;
    if (status != 200 || s->cli->json) {
        rc = srv_print(s, o, status, NULL);
        json_decref(o);
        return rc;
    }
    struct smmu_topology t;
    struct smmu_error e = SMMU_ERROR_INIT;
    if ((rc = smmu_topology_from_json(o, &t, &e)) < 0) {
        json_decref(o);
        smmu_error_prefix(&e, "the daemon's topology");
        return srv_fail(s, EXIT_FAILED, &e);
    }
    srv_warnings(s, o);
    render_topology(stdout, &t);
    fflush(stdout);
    smmu_topology_free(&t);
    json_decref(o);
    return EXIT_DONE;
}

/* The attach/plan body: the CLI's options as the API's members (only those given). */
static json_t *srv_attach_body(struct srv *s, char **devs, size_t n)
{
    struct cli *cli = s->cli;
    json_t *o = json_object(), *d = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(d, json_string(devs[i]));
    json_object_set_new(o, "devices", d);
    if (cli->fd_pass)
        json_object_set_new(o, "fd_pass", json_true());
    if (cli->iommufd_id)
        json_object_set_new(o, "iommufd", json_string(cli->iommufd_id));
    if (cli->device_id)
        json_object_set_new(o, "ids", json_pack("[s]", cli->device_id));
    if (cli->allow_mismatch)
        json_object_set_new(o, "allow_mismatch", json_true());
    return o;
}

static double srv_wait(const struct cli *cli)
{
    /* the daemon's default is 30 s; an attach waits for QMP replies of up to --timeout each */
    double w = cli->timeout_s * 6;
    return w < 30 ? 30 : w;
}

static int srv_plan(struct srv *s, char **devs, size_t n)
{
    json_t *o, *t;
    int status, rc;
    for (size_t i = 0; i < n; i++) { /* as the direct plan: every DEV must be a PCI address */
        struct smmu_error e = SMMU_ERROR_INIT;
        char bdf[SMMU_BDF_LEN + 1];
        if (smmu_bdf_parse(devs[i], bdf, &e) < 0)
            return srv_fail(s, EXIT_USAGE, &e);
    }
    if ((rc = srv_vm_connected(s, &o)) != 0)
        return rc;
    json_decref(o);
    if ((rc = srv_operation(s, "plan", srv_attach_body(s, devs, n), srv_wait(s->cli), &o, &status)) != 0)
        return rc;
    if (status != 200 || s->cli->json || !json_is_true(json_object_get(o, "ok"))) {
        rc = srv_print(s, o, status, NULL);
        json_decref(o);
        return rc;
    }
    /* text: the plan names vSMMUs and ports of the topology it was made on; the daemon keeps that one (a plan
     * sends nothing and changes nothing), so its topology now is the plan's */
    char target[256];
    snprintf(target, sizeof(target), "/v1/vms/%s/topology", s->vm);
    if ((rc = srv_get(s, target, &t, &status)) != 0) {
        json_decref(o);
        return rc;
    }
    struct smmu_topology topo;
    struct smmu_plan *plan = NULL;
    struct smmu_error e = SMMU_ERROR_INIT;
    if (status != 200 || smmu_topology_from_json(t, &topo, &e) < 0) {
        if (status != 200)
            rc = srv_print(s, t, status, NULL);
        else {
            smmu_error_prefix(&e, "the daemon's topology");
            rc = srv_fail(s, EXIT_FAILED, &e);
        }
        json_decref(o);
        json_decref(t);
        return rc;
    }
    if (smmu_plan_from_json(&topo, o, &plan, &e) < 0) {
        smmu_error_prefix(&e, "the daemon's plan");
        rc = srv_fail(s, EXIT_FAILED, &e);
    } else {
        render_plan(stdout, &topo, plan);
        fflush(stdout);
        srv_warnings(s, o);
        rc = EXIT_DONE;
    }
    smmu_plan_free(plan);
    smmu_topology_free(&topo);
    json_decref(o);
    json_decref(t);
    return rc;
}

/* attach and detach: SIGINT/SIGTERM/SIGHUP end the wait, not the daemon's work (there is no cancel in the API) */
static int srv_txn(struct srv *s, const char *verb, json_t *body, double wait_s,
                   void (*text)(struct cli *, const json_t *))
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa = {.sa_handler = srv_on_signal}, old[3];
    json_t *o;
    int status, rc;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &sa, &old[i]);
    rc = srv_operation(s, verb, body, wait_s, &o, &status);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
    if (rc != 0)
        return rc;
    rc = srv_print(s, o, status, text);
    json_decref(o);
    return rc;
}

/* The VM's entry (GET /v1/vms/NAME) once the daemon is connected to its QEMU: 0 and *out, or an exit code
 * (printed). A VM the daemon is not connected to is unreachable (3), as QEMU is for the direct CLI — after
 * --timeout for one still connecting; the daemon may still answer from what it kept, but the direct CLI could
 * not, so neither does this. */
static int srv_vm_connected(struct srv *s, json_t **out)
{
    char target[256];
    json_t *o;
    int status, rc;
    struct timespec t0, now;
    *out = NULL;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(target, sizeof(target), "/v1/vms/%s", s->vm);
    for (;;) {
        if ((rc = srv_get(s, target, &o, &status)) != 0)
            return rc;
        if (status != 200) {
            rc = srv_print(s, o, status, NULL);
            json_decref(o);
            return rc;
        }
        const char *st = json_string_value(json_object_get(o, "state"));
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (st && !strcmp(st, "connected")) {
            *out = o;
            return 0;
        }
        if (!st || strcmp(st, "connecting") || el >= s->cli->timeout_s) {
            struct smmu_error e = SMMU_ERROR_INIT;
            smmu_error_set(&e, -ENOTCONN, "QEMU of VM %s is unreachable: the smmuctl daemon at unix:%s is %s to %s",
                           s->vm, s->sock, st && !strcmp(st, "connecting") ? "still connecting" : "reconnecting",
                           json_string_value(json_object_get(o, "qmp")) ?: "it");
            json_decref(o);
            return srv_fail(s, EXIT_UNREACHABLE, &e);
        }
        json_decref(o);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* status and recover: the VM's entry, its "status" (the daemon's journal and kept facts). */
static int srv_status(struct srv *s, bool recover)
{
    json_t *o;
    int rc;
    if ((rc = srv_vm_connected(s, &o)) != 0)
        return rc;
    json_t *rep = json_object_get(o, "status");
    if (!json_is_object(rep)) {
        struct smmu_error e = SMMU_ERROR_INIT;
        smmu_error_set(&e, -EPROTO, "the smmuctl daemon at unix:%s sent VM %s without its status", s->sock, s->vm);
        json_decref(o);
        return srv_fail(s, EXIT_FAILED, &e);
    }
    rep = json_deep_copy(rep);
    json_decref(o);
    if (recover) /* what `recover` would print: the daemon recovered when it connected */
        json_object_set_new(rep, "command", json_string("recover"));
    rc = srv_print(s, rep, 200, cli_status_text);
    json_decref(rep);
    return rc;
}

int cli_server_run(struct cli *cli)
{
    struct srv s = {cli, cli->command, NULL, "", ""};
    struct smmu_error e = SMMU_ERROR_INIT;
    const char *cmd = cli->command;
    char **devs = NULL;
    size_t n = 0;
    int rc;

    if (!(s.sock = srv_socket_path(cli->server_addr)))
        return cli_usage_error(cli, cmd, "--server: '%s' is not unix:PATH (the daemon's socket, smmuctl serve "
                               "--listen unix:PATH)", cli->server_addr);
    if (!cli->vm)
        return cli_usage_error(cli, cmd, "--server needs --vm NAME: the daemon holds any number of VMs");
    if (smmu_journal_check_name(cli->vm, &e) < 0)
        return cli_fail(cli, cmd, EXIT_USAGE, &e, NULL);
    snprintf(s.vm, sizeof(s.vm), "%s", cli->vm);
    {
        const char *bad = cli->domain_path ? "--domain" : cli->force ? "--force" : cli->require_fit ? "--require-fit"
                          : cli->xml ? "--xml" : cli->no_wait ? "--no-wait" : cli->record_path ? "--record" : NULL;
        if (bad)
            return cli_usage_error(cli, cmd, "%s is not available with --server (the daemon's API has no such "
                                   "member); run it directly with --qmp on a VM no daemon holds", bad);
    }
    if (!strcmp(cmd, "topology")) {
        if (cli->nargs)
            return cli_usage_error(cli, cmd, "topology takes no arguments (got '%s')", cli->args[0]);
        return srv_topology(&s);
    }
    if (!strcmp(cmd, "status") || !strcmp(cmd, "recover")) {
        if (cli->nargs)
            return cli_usage_error(cli, cmd, "'%s' takes no arguments (got '%s')", cmd, cli->args[0]);
        return srv_status(&s, !strcmp(cmd, "recover"));
    }
    if (!strcmp(cmd, "plan") && cli->nargs == 0)
        return cli_usage_error(cli, "plan", "usage: smmuctl plan DEV... (a PCI address like 0009:01:00.0, or @FILE "
                               "with libvirt <hostdev> XML)");
    if (strcmp(cmd, "plan") && strcmp(cmd, "attach") && strcmp(cmd, "detach"))
        return cli_usage_error(cli, cmd, "'%s' does not go through the daemon: --server takes topology, plan, attach, "
                               "detach, status and recover", cmd);
    if ((rc = cli_devices(cli, cmd, &devs, &n)) != 0)
        return rc;
    if (!strcmp(cmd, "plan"))
        rc = srv_plan(&s, devs, n);
    else if (!strcmp(cmd, "attach"))
        rc = srv_txn(&s, "attach", srv_attach_body(&s, devs, n), srv_wait(cli), cli_attach_text);
    else {
        json_t *d = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(d, json_string(devs[i]));
        rc = srv_txn(&s, "detach", json_pack("{s:o,s:f}", "devices", d, "unplug_timeout", cli->unplug_timeout_s),
                     cli->unplug_timeout_s, cli_detach_text);
    }
    cli_devices_free(devs);
    return rc;
}
