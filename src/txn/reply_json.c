/* reply_json.c — exit codes and --json objects of finished requests (see smmuctl/reply_json.h). */
#include "smmuctl/reply_json.h"
#include "smmuctl/error_json.h"

#include <errno.h>

int smmu_outcome_exit_code(enum smmu_outcome o)
{
    switch (o) {
    case SMMU_OUTCOME_DONE: return SMMU_EXIT_DONE;
    case SMMU_OUTCOME_ROLLED_BACK: return SMMU_EXIT_FAILED;
    case SMMU_OUTCOME_REFUSED: return SMMU_EXIT_USAGE;
    case SMMU_OUTCOME_UNREACHABLE: return SMMU_EXIT_UNREACHABLE;
    default: return SMMU_EXIT_INCOMPLETE;
    }
}

int smmu_reply_exit_code(const struct smmu_reply *rep)
{
    switch (rep->stage) {
    case SMMU_STAGE_CONNECT:
        return rep->error.code == -EINVAL ? SMMU_EXIT_USAGE : SMMU_EXIT_UNREACHABLE;
    case SMMU_STAGE_JOURNAL: /* nothing was sent: a busy VM, a corrupt journal or an unusable state dir */
        return SMMU_EXIT_USAGE;
    case SMMU_STAGE_FACTS: /* nothing changed yet */
        return SMMU_EXIT_UNREACHABLE;
    case SMMU_STAGE_RECOVER:
        return SMMU_EXIT_INCOMPLETE;
    case SMMU_STAGE_PLAN: /* refused: nothing sent */
        return SMMU_EXIT_USAGE;
    case SMMU_STAGE_CANCELLED:
        return SMMU_EXIT_FAILED;
    default:
        return smmu_outcome_exit_code(rep->result.outcome);
    }
}

json_t *smmu_fail_json(const char *command, int exit_code, const struct smmu_error *e, json_t *extra)
{
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_false());
    /* always present (null before a command is known): scripts read it from every object */
    json_object_set_new(o, "command", command ? json_string(command) : json_null());
    json_object_set_new(o, "exit_code", json_integer(exit_code));
    if (extra) {
        json_object_update(o, extra);
        json_decref(extra);
    }
    json_object_set_new(o, "error", smmu_error_json(e));
    return o;
}

json_t *smmu_result_json(const char *command, const struct smmu_result *res)
{
    int code = smmu_outcome_exit_code(res->outcome);
    json_t *o = json_pack("{s:b,s:s,s:i}", "ok", code == 0, "command", command, "exit_code", code);
    if (res->report)
        json_object_update(o, res->report);
    if (res->error.code && code != 0)
        json_object_set_new(o, "error", smmu_error_json(&res->error));
    return o;
}

static json_t *reply_with_warnings(const char *command, json_t *members, const struct smmu_facts *f)
{
    json_t *o = json_pack("{s:b,s:s}", "ok", 1, "command", command);
    json_t *w = json_array();
    json_object_update_new(o, members);
    if (f->warnings[0])
        json_array_append_new(w, json_string(f->warnings));
    json_object_set_new(o, "warnings", w);
    return o;
}

json_t *smmu_topology_reply_json(const struct smmu_facts *f)
{
    return reply_with_warnings("topology", smmu_topology_to_json(&f->topo), f);
}

json_t *smmu_plan_reply_json(const struct smmu_facts *f, const struct smmu_plan *p)
{
    json_t *o = reply_with_warnings("plan", smmu_plan_to_json(&f->topo, p), f);
    json_t *fw = smmu_plan_warnings_json(p); /* devices whose port's windows do not fit their BARs */
    json_array_extend(json_object_get(o, "warnings"), fw);
    json_decref(fw);
    return o;
}

void smmu_journal_error_explain(struct smmu_error *e, const char *state_dir)
{
    /* busy (another smmuctl) and corrupt (the message says what to do) are clear as they are; anything
     * else is the state dir itself: say how to choose another */
    if (e->code != -EBUSY && e->code != -EPROTO && e->code != -EXDEV) /* EXDEV: another VM's journal */
        smmu_error_prefix(e, "state dir %s unusable (%s; choose another with --state-dir DIR or "
                          "SMMUCTL_STATE_DIR)", state_dir, smmu_errno_name(e->code));
}

json_t *smmu_reply_json(const char *command, const struct smmu_reply *rep, const char *state_dir)
{
    struct smmu_error e = rep->error;
    switch (rep->stage) {
    case SMMU_STAGE_TXN:
        if (rep->kind == SMMU_REQ_TOPOLOGY && rep->facts)
            return smmu_topology_reply_json(rep->facts);
        if (rep->kind == SMMU_REQ_PLAN && rep->facts && rep->plan)
            return smmu_plan_reply_json(rep->facts, rep->plan);
        return smmu_result_json(command, &rep->result);
    case SMMU_STAGE_JOURNAL:
        smmu_journal_error_explain(&e, state_dir);
        /* fall through */
    default:
        return smmu_fail_json(command, smmu_reply_exit_code(rep), &e, NULL);
    }
}
