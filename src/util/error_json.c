/* error_json.c — struct smmu_error as the JSON error member of --json output and API replies. */
#include "smmuctl/error_json.h"

json_t *smmu_error_json(const struct smmu_error *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "code", json_string(smmu_errno_name(e ? e->code : 0)));
    if (e && e->qmp_class[0])
        json_object_set_new(o, "class", json_string(e->qmp_class));
    if (e && e->qmp_desc[0])
        json_object_set_new(o, "desc", json_string(e->qmp_desc));
    if (e && e->step[0])
        json_object_set_new(o, "step", json_string(e->step));
    json_object_set_new(o, "message", json_string(e && e->message[0] ? e->message : "unknown error"));
    return o;
}
