/* plan_json.c — the documented, stable JSON form of a plan (docs/plan-json.md). */
#include "plan_int.h"

static json_t *pj_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *pj_placement(const struct smmu_topology *topo, const struct smmu_placement *pl)
{
    json_t *o = json_object();
    const struct smmu_vsmmu *v = NULL;

    if (topo && pl->vsmmu >= 0 && (size_t)pl->vsmmu < topo->n_vsmmus)
        v = &topo->vsmmus[pl->vsmmu];
    json_object_set_new(o, "bdf", json_string(pl->bdf));
    json_object_set_new(o, "host_smmu", pj_str_or_null(pl->host_smmu));
    json_object_set_new(o, "numa_node", pl->numa_node >= 0 ? json_integer(pl->numa_node) : json_null());
    if (pl->vsmmu < 0)
        json_object_set_new(o, "vsmmu", json_null());
    else if (pl->vsmmu_id[0])
        json_object_set_new(o, "vsmmu", json_string(pl->vsmmu_id));
    else /* an anonymous vSMMU: its QOM path is all there is to name it */
        json_object_set_new(o, "vsmmu", v ? json_string(v->path) : json_null());
    json_object_set_new(o, "pxb", v ? pj_str_or_null(v->pxb_id) : json_null());
    json_object_set_new(o, "bus_nr", v && v->bus_nr >= 0 ? json_integer(v->bus_nr) : json_null());
    json_object_set_new(o, "accel", v ? json_boolean(v->accel) : json_null());
    json_object_set_new(o, "port", json_string(pl->port_id));
    json_object_set_new(o, "device_id", json_string(pl->device_id));
    json_object_set_new(o, "reason", json_string(pl->reason));
    json_object_set_new(o, "mismatch", json_boolean(pl->mismatch));
    json_object_set_new(o, "fits", json_boolean(pl->fits));
    return o;
}

static json_t *pj_step(const struct smmu_step *s)
{
    json_t *o = json_object(), *fds = json_array();
    json_object_set_new(o, "execute", json_string(s->command));
    if (s->args)
        json_object_set(o, "arguments", s->args); /* borrowed: the plan keeps its reference */
    else
        json_object_set_new(o, "arguments", json_object());
    if (s->kind == SMMU_STEP_GETFD)
        json_array_append_new(fds, json_string(s->fd_path));
    json_object_set_new(o, "fds", fds);
    return o;
}

json_t *smmu_plan_warnings_json(const struct smmu_plan *p)
{
    json_t *w = json_array();
    for (size_t i = 0; p && w && i < p->n_placements; i++)
        if (!p->placements[i].fits && p->placements[i].fit[0])
            json_array_append_new(w, json_string(p->placements[i].fit));
    return w;
}

json_t *smmu_plan_to_json(const struct smmu_topology *topo, const struct smmu_plan *p)
{
    json_t *o, *pls, *binds, *steps;
    if (!p)
        return NULL;
    o = json_object();
    pls = json_array();
    binds = json_array();
    steps = json_array();
    json_object_set_new(o, "iommufd", json_string(p->iommufd_id));
    json_object_set_new(o, "creates_iommufd", json_boolean(p->creates_iommufd));
    for (size_t i = 0; i < p->n_placements; i++)
        json_array_append_new(pls, pj_placement(topo, &p->placements[i]));
    json_object_set_new(o, "placements", pls);
    for (size_t i = 0; i < p->n_new_bindings; i++) {
        json_t *b = json_object();
        json_object_set_new(b, "vsmmu", json_string(p->new_bindings[i].vsmmu_id));
        json_object_set_new(b, "host_smmu", json_string(p->new_bindings[i].host_smmu));
        json_array_append_new(binds, b);
    }
    json_object_set_new(o, "new_bindings", binds);
    for (size_t i = 0; i < p->n_steps; i++)
        json_array_append_new(steps, pj_step(&p->steps[i]));
    json_object_set_new(o, "steps", steps);
    return o;
}
