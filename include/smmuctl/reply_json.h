/* smmuctl/reply_json.h — what a finished request prints: the exit code (DESIGN §2) and the --json object, shared
 * by the CLI (which prints them) and the daemon (which returns them as HTTP bodies and operation results), so
 * both give exactly the same members and codes (DESIGN §7: "the same text, JSON and exit codes"). */
#ifndef SMMUCTL_REPLY_JSON_H
#define SMMUCTL_REPLY_JSON_H

#include <jansson.h>
#include "smmuctl/engine.h"
#include "smmuctl/txn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* DESIGN §2 exit codes. */
enum smmu_exit {
    SMMU_EXIT_DONE = 0,        /* done */
    SMMU_EXIT_FAILED = 1,      /* failed, every change rolled back (QEMU is as before) */
    SMMU_EXIT_USAGE = 2,       /* usage, bad input or refused plan: nothing that changes QEMU was sent */
    SMMU_EXIT_UNREACHABLE = 3, /* QEMU unreachable or protocol broken before any change */
    SMMU_EXIT_INCOMPLETE = 4,  /* an unplug is pending or a rollback could not finish; see status/recover */
};

/* A transaction's outcome as an exit code. */
int smmu_outcome_exit_code(enum smmu_outcome o);
/* The exit code of a request's reply: by the stage it stopped at, else its outcome. */
int smmu_reply_exit_code(const struct smmu_reply *rep);

/* {"ok":false,"command":C (null when NULL),"exit_code":N, <extra's members>,"error":{…}}; extra (may be NULL)
 * is stolen. New reference. */
json_t *smmu_fail_json(const char *command, int exit_code, const struct smmu_error *e, json_t *extra);
/* A transaction's object: {"ok":code==0,"command":C,"exit_code":N, <report members>[,"error":{…}]}. */
json_t *smmu_result_json(const char *command, const struct smmu_result *res);
/* {"ok":true,"command":"topology", <docs/topology-json.md members>,"warnings":[…]}. */
json_t *smmu_topology_reply_json(const struct smmu_facts *f);
/* {"ok":true,"command":"plan", <docs/plan-json.md members>,"warnings":[…]}. */
json_t *smmu_plan_reply_json(const struct smmu_facts *f, const struct smmu_plan *p);
/* A journal-stage error (lock busy, corrupt journal, state dir unusable) as the user is told it: anything but
 * busy / corrupt / another VM's journal is about the state dir itself, which the message then names. */
void smmu_journal_error_explain(struct smmu_error *e, const char *state_dir);
/* The whole reply to `command` as `smmuctl COMMAND --json` prints it (journal errors explained with
 * state_dir). New reference. */
json_t *smmu_reply_json(const char *command, const struct smmu_reply *rep, const char *state_dir);

#ifdef __cplusplus
}
#endif
#endif
