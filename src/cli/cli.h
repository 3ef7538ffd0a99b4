/* cli.h — shared state and helpers of the smmuctl command-line front-end. */
#ifndef SMMUCTL_CLI_H
#define SMMUCTL_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>
#include <event2/event.h>

#include "smmuctl/error.h"
#include "smmuctl/journal.h"
#include "smmuctl/qmp.h"
#include "smmuctl/txn.h"
#include "smmuctl/xml.h"

/* Exit codes: a documented contract (README "Exit codes"). */
enum {
    EXIT_DONE = 0,        /* done */
    EXIT_FAILED = 1,      /* failed, every change rolled back (QEMU is as before) */
    EXIT_USAGE = 2,       /* usage, bad input or refused plan: nothing that changes QEMU was sent */
    EXIT_UNREACHABLE = 3, /* QEMU unreachable or protocol broken before any change */
    EXIT_INCOMPLETE = 4,  /* an unplug is pending or a rollback could not finish; see status/recover */
};

struct cli {
    /* global options */
    const char *qmp_addr;
    const char *server_addr; /* --server unix:PATH (or SMMUCTL_SERVER): go through `smmuctl serve` */
    const char *vm;
    const char *state_dir;
    const char *sysfs;
    const char *dev;
    double timeout_s;
    bool json;
    const char *record_path;
    int verbose;          /* -1 quiet, 0 normal, 1+ verbose */
    /* command options */
    bool fd_pass, allow_mismatch, no_wait, require_fit;
    const char *iommufd_id, *device_id;
    double unplug_timeout_s;
    const char *format;   /* layout --format */
    unsigned spare;       /* layout --spare (default 1) */
    bool spare_set, no_accel;
    bool xml;                /* topology --xml */
    const char *domain_path; /* --domain FILE (topology, plan, attach) */
    bool force;              /* --force: plan/attach despite domain disagreements */
    struct smmu_domain *domain; /* loaded from domain_path (cli_load_domain) */
    /* command and its arguments */
    const char *command;
    char **args;
    int nargs;
    /* runtime */
    struct event_base *base;
    qmp_client *qmp;
    FILE *record;
};

/* Take the VM's lock, then connect to --qmp (or SMMUCTL_QMP): DESIGN §5 "Locks before sockets" (QEMU serves one
 * monitor client and listens with a backlog of 1, so whoever holds the VM is waited for first). *lock gets the
 * VM's journal when it has one (read-only: no state file is created; NULL otherwise); close it when done. On
 * failure prints the error (text or --json) and returns the exit code to use (2 journal, 3 QEMU); 0 on
 * success. */
int cli_connect(struct cli *cli, const char *command, smmu_journal **lock);
void cli_disconnect(struct cli *cli);

/* Print an error for a person (stderr) or as the --json object {"ok":false,"command":…,"error":{…}} on
 * stdout; returns exit_code. `extra` (stolen, may be NULL) is merged into the JSON object. */
int cli_fail(struct cli *cli, const char *command, int exit_code, const struct smmu_error *e, json_t *extra);
/* Usage error: message on stderr (and --json object), exit code 2. */
int cli_usage_error(struct cli *cli, const char *command, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print a JSON value to stdout: compact one line with --json, indented otherwise. Steals obj. */
void cli_print_json(struct cli *cli, json_t *obj);
/* Diagnostics on stderr unless --quiet (info) / only with --verbose (debug). */
void cli_info(struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_debug(struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The JSON error member for e: {"code":"ETIMEDOUT","class":…,"desc":…,"step":…,"message":…}. */
json_t *cli_error_json(const struct smmu_error *e);
int cli_timeout_ms(const struct cli *cli);
/* Copy `in` to out (len bytes) with control characters written as \\n, \\t, \\xNN: for texts from QEMU or the
 * user printed on a terminal. */
void cli_escape(const char *in, char *out, size_t len);

/* The VM name: --vm, or derived from the canonical QMP address. 0 or an exit code (usage error printed). */
int cli_vm_name(struct cli *cli, const char *command, char *out, size_t len);
/* Open (and lock) the VM's journal under --state-dir. With must_exist and no journal file, *out = NULL
 * and 0 is returned (read-only commands do not create state). Errors are printed; returns an exit code. */
int cli_open_journal(struct cli *cli, const char *command, bool must_exist, smmu_journal **out);
/* Report a journal that could not be opened (busy, corrupt, unusable state dir): exit 2, nothing was sent. */
int cli_fail_journal(struct cli *cli, const char *command, const struct smmu_error *e);

/* Expand the command's DEV arguments: PCI addresses as given, and @FILE (libvirt XML with <hostdev>
 * elements) into their host addresses. *out is a NULL-terminated array (free with cli_devices_free).
 * Errors (unreadable or bad XML, empty list) are printed; returns 0 or an exit code. */
int cli_devices(struct cli *cli, const char *command, char ***out, size_t *n);
void cli_devices_free(char **devs);

/* --domain FILE: load it into cli->domain (0, or exit 2 after printing "<file>:<line>: what"). No-op without it. */
int cli_load_domain(struct cli *cli, const char *command);
/* The domain against topology t: *ndis disagreements; the lines for people go to `text` (unless --json or text
 * NULL). Returns the JSON member (smmu_domain_check_json; new reference), NULL without --domain or on OOM. */
json_t *cli_domain_report(struct cli *cli, const struct smmu_topology *t, FILE *text, size_t *ndis);

/* run.c: run the loop until *flag (set by a library callback) becomes true, or nothing is left to wait for. */
void cli_run_until(struct cli *cli, const bool *flag);
/* Connect c to addr and wait until READY or failure (err set). */
int cli_connect_wait(struct cli *cli, qmp_client *c, const char *addr, struct smmu_error *err);
/* One command on cli->qmp, waited for; *ret gets a new reference to "return" (null when absent). */
int cli_call_wait(struct cli *cli, const char *cmd, json_t *args, json_t **ret, struct smmu_error *err);
/* Discovery + facts (smmu_facts_gather_start), waited for. */
int cli_facts_wait(struct cli *cli, smmu_journal *j, struct smmu_facts *f, struct smmu_error *err);

/* Commands: each returns an exit code. */
int cmd_qmp(struct cli *cli);
int cmd_topology(struct cli *cli);
int cmd_plan(struct cli *cli);
int cmd_attach(struct cli *cli);
int cmd_detach(struct cli *cli);
int cmd_status(struct cli *cli);
int cmd_recover(struct cli *cli);
int cmd_layout(struct cli *cli);
int cmd_serve(struct cli *cli);
/* cmd_serve.c: `serve` has its own option parser (repeatable --qmp/--vm pairs); main() asks first. */
bool cli_is_serve(int argc, char **argv);
int cmd_serve_main(int argc, char **argv);
extern const char cmd_serve_help[];
int cmd_doctor(struct cli *cli);

/* cmd_txn.c: the text of a transaction's report (its --json object), for the direct CLI and --server alike. */
void cli_attach_text(struct cli *cli, const json_t *rep);
void cli_detach_text(struct cli *cli, const json_t *rep);
void cli_status_text(struct cli *cli, const json_t *rep);
/* cmd_server.c: topology|plan|attach|detach|status|recover through the daemon at --server (needs --vm). */
int cli_server_run(struct cli *cli);

#endif
