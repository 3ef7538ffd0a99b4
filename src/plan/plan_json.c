/* plan_json.c — the documented, stable JSON form of a plan (docs/plan-json.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- the inverse: a plan document back into a struct (for `smmuctl --server plan`) ---- */

static int pfj_bad(struct smmu_error *err, const char *what)
{
    smmu_error_set(err, -EPROTO, "plan JSON: %s", what);
    return -EPROTO;
}

static void pfj_str(const json_t *o, const char *name, char *buf, size_t len)
{
    const char *s = json_string_value(json_object_get(o, name));
    snprintf(buf, len, "%s", s ? s : "");
}

static int pfj_placement(const struct smmu_topology *topo, const json_t *o, struct smmu_placement *pl,
                         struct smmu_error *err)
{
    const json_t *vs = json_object_get(o, "vsmmu");
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "bdf")) ||
        !json_is_string(json_object_get(o, "port")) || !json_is_string(json_object_get(o, "device_id")))
        return pfj_bad(err, "a placement is not an object with bdf, port and device_id");
    pfj_str(o, "bdf", pl->bdf, sizeof(pl->bdf));
    pfj_str(o, "host_smmu", pl->host_smmu, sizeof(pl->host_smmu));
    pl->numa_node = json_is_integer(json_object_get(o, "numa_node")) ? (int)json_integer_value(json_object_get(o, "numa_node")) : -1;
    pl->vsmmu = -1;
    if (json_is_string(vs)) {
        const char *name = json_string_value(vs);
        pl->vsmmu = smmu_topology_find_vsmmu(topo, name);
        if (pl->vsmmu >= 0) {
            snprintf(pl->vsmmu_id, sizeof(pl->vsmmu_id), "%s", name);
        } else { /* an anonymous vSMMU is named by its QOM path */
            for (size_t i = 0; topo && i < topo->n_vsmmus && pl->vsmmu < 0; i++)
                if (!topo->vsmmus[i].id[0] && !strcmp(topo->vsmmus[i].path, name))
                    pl->vsmmu = (int)i;
            if (pl->vsmmu < 0)
                return pfj_bad(err, "a placement names a vSMMU the topology does not have");
        }
    } else if (vs && !json_is_null(vs)) {
        return pfj_bad(err, "a placement's 'vsmmu' is neither a string nor null");
    }
    pfj_str(o, "port", pl->port_id, sizeof(pl->port_id));
    pl->port = smmu_topology_find_port(topo, pl->port_id);
    pfj_str(o, "device_id", pl->device_id, sizeof(pl->device_id));
    pfj_str(o, "reason", pl->reason, sizeof(pl->reason));
    pl->mismatch = json_is_true(json_object_get(o, "mismatch"));
    pl->fits = json_is_true(json_object_get(o, "fits"));
    pl->fit[0] = 0; /* for people only: the document's "warnings" carry it */
    return 0;
}

static int pfj_step(const json_t *o, struct smmu_step *s, struct smmu_error *err)
{
    const char *ex = json_string_value(json_object_get(o, "execute"));
    const json_t *args = json_object_get(o, "arguments"), *fds = json_object_get(o, "fds");
    if (!ex || !json_is_object(args))
        return pfj_bad(err, "a step is not an object with execute and arguments");
    if (!strcmp(ex, "getfd")) {
        s->kind = SMMU_STEP_GETFD;
        s->command = "getfd";
        pfj_str(args, "fdname", s->name, sizeof(s->name));
        if (json_is_string(json_array_get(fds, 0)))
            snprintf(s->fd_path, sizeof(s->fd_path), "%s", json_string_value(json_array_get(fds, 0)));
    } else if (!strcmp(ex, "object-add")) {
        s->kind = SMMU_STEP_OBJECT_ADD;
        s->command = "object-add";
        pfj_str(args, "id", s->name, sizeof(s->name));
    } else if (!strcmp(ex, "device_add")) {
        s->kind = SMMU_STEP_DEVICE_ADD;
        s->command = "device_add";
        pfj_str(args, "id", s->name, sizeof(s->name));
        pfj_str(args, "bus", s->port, sizeof(s->port));
        pfj_str(args, "host", s->bdf, sizeof(s->bdf));
    } else {
        return pfj_bad(err, "a step's command is none of getfd, object-add, device_add");
    }
    s->args = json_deep_copy(args);
    return s->args ? 0 : -ENOMEM;
}

int smmu_plan_from_json(const struct smmu_topology *topo, const json_t *doc, struct smmu_plan **out,
                        struct smmu_error *err)
{
    const json_t *pls = json_object_get(doc, "placements"), *binds = json_object_get(doc, "new_bindings");
    const json_t *steps = json_object_get(doc, "steps"), *v;
    struct smmu_plan *p;
    size_t i;
    int r = 0;
    *out = NULL;
    if (!json_is_object(doc) || !json_is_string(json_object_get(doc, "iommufd")) || !json_is_array(pls) ||
        !json_is_array(binds) || !json_is_array(steps))
        return pfj_bad(err, "not a plan object (iommufd, placements, new_bindings, steps)");
    if (!(p = calloc(1, sizeof(*p))) || !(p->placements = calloc(json_array_size(pls) + 1, sizeof(*p->placements))) ||
        !(p->steps = calloc(json_array_size(steps) + 1, sizeof(*p->steps))) ||
        !(p->new_bindings = calloc(json_array_size(binds) + 1, sizeof(*p->new_bindings)))) {
        smmu_plan_free(p);
        smmu_error_set(err, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    pfj_str(doc, "iommufd", p->iommufd_id, sizeof(p->iommufd_id));
    p->creates_iommufd = json_is_true(json_object_get(doc, "creates_iommufd"));
    json_array_foreach(pls, i, v) {
        if ((r = pfj_placement(topo, v, &p->placements[i], err)) < 0)
            break;
        p->n_placements++;
    }
    json_array_foreach(binds, i, v) {
        if (r < 0)
            break;
        if (!json_is_string(json_object_get(v, "vsmmu")) || !json_is_string(json_object_get(v, "host_smmu"))) {
            r = pfj_bad(err, "a new binding is not {vsmmu, host_smmu}");
            break;
        }
        pfj_str(v, "vsmmu", p->new_bindings[i].vsmmu_id, sizeof(p->new_bindings[i].vsmmu_id));
        pfj_str(v, "host_smmu", p->new_bindings[i].host_smmu, sizeof(p->new_bindings[i].host_smmu));
        p->n_new_bindings++;
    }
    json_array_foreach(steps, i, v) {
        if (r < 0)
            break;
        p->n_steps++; /* freed with the plan even when half filled */
        if ((r = pfj_step(v, &p->steps[i], err)) < 0) {
            if (r == -ENOMEM)
                smmu_error_set(err, -ENOMEM, "out of memory");
            break;
        }
    }
    if (r < 0) {
        smmu_plan_free(p);
        return r;
    }
    *out = p;
    return 0;
}
