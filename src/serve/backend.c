/* backend.c — names of the backend interface's enums (the §7 spellings). */
#include "serve/backend.h"

const char *sv_vm_state_name(enum sv_vm_state s)
{
    switch (s) {
    case SV_VM_CONNECTING: return "connecting";
    case SV_VM_CONNECTED: return "connected";
    case SV_VM_DISCONNECTED: return "disconnected";
    }
    return "unknown";
}

const char *sv_verb_name(enum sv_verb v)
{
    switch (v) {
    case SV_VERB_ATTACH: return "attach";
    case SV_VERB_DETACH: return "detach";
    case SV_VERB_DEVICES: return "devices";
    case SV_VERB_RECOVER: return "recover";
    case SV_VERB_PLAN: return "plan";
    }
    return "unknown";
}

const char *sv_op_state_name(enum sv_op_state s)
{
    switch (s) {
    case SV_OP_RUNNING: return "running";
    case SV_OP_PENDING: return "pending";
    case SV_OP_DONE: return "done";
    case SV_OP_ROLLED_BACK: return "rolled-back";
    case SV_OP_FAILED: return "failed";
    case SV_OP_INCOMPLETE: return "incomplete";
    }
    return "unknown";
}
