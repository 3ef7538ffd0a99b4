/* topology.c — plain-data helpers over struct smmu_topology: free, lookups and the stable JSON form
 * (docs/topology-json.md). No QMP here: discovery (src/vm/) fills it, the planner (src/plan/) reads it. */
#include "smmuctl/topology.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void smmu_topology_free(struct smmu_topology *t)
{
    if (!t)
        return;
    free(t->vsmmus);
    free(t->ports);
    free(t->vfio);
    free(t->iommufds);
    free(t->pxbs);
    t->pxbs = NULL;
    t->n_pxbs = 0;
    t->vsmmus = NULL;
    t->ports = NULL;
    t->vfio = NULL;
    t->iommufds = NULL;
    t->n_vsmmus = t->n_ports = t->n_vfio = t->n_iommufds = 0;
}

/* Anonymous entries have id "": they can never be found by id (an empty id names nothing). */
static void *topo_dup(const void *src, size_t n, size_t size, bool *oom)
{
    void *d = malloc(n ? n * size : 1);
    if (!d) {
        *oom = true;
        return NULL;
    }
    if (n)
        memcpy(d, src, n * size);
    return d;
}

int smmu_topology_copy(struct smmu_topology *dst, const struct smmu_topology *src)
{
    bool oom = false;
    *dst = *src;
    dst->vsmmus = topo_dup(src->vsmmus, src->n_vsmmus, sizeof(*src->vsmmus), &oom);
    dst->ports = topo_dup(src->ports, src->n_ports, sizeof(*src->ports), &oom);
    dst->vfio = topo_dup(src->vfio, src->n_vfio, sizeof(*src->vfio), &oom);
    dst->iommufds = topo_dup(src->iommufds, src->n_iommufds, sizeof(*src->iommufds), &oom);
    dst->pxbs = topo_dup(src->pxbs, src->n_pxbs, sizeof(*src->pxbs), &oom);
    if (oom) {
        smmu_topology_free(dst);
        return -ENOMEM;
    }
    return 0;
}

int smmu_topology_find_port(const struct smmu_topology *t, const char *id)
{
    if (!t || !id || !*id)
        return -1;
    for (size_t i = 0; i < t->n_ports; i++)
        if (!strcmp(t->ports[i].id, id))
            return (int)i;
    return -1;
}

int smmu_topology_find_vsmmu(const struct smmu_topology *t, const char *id)
{
    if (!t || !id || !*id)
        return -1;
    for (size_t i = 0; i < t->n_vsmmus; i++)
        if (!strcmp(t->vsmmus[i].id, id))
            return (int)i;
    return -1;
}

int smmu_topology_find_vfio(const struct smmu_topology *t, const char *id)
{
    if (!t || !id || !*id)
        return -1;
    for (size_t i = 0; i < t->n_vfio; i++)
        if (!strcmp(t->vfio[i].id, id))
            return (int)i;
    return -1;
}

int smmu_topology_find_pxb(const struct smmu_topology *t, const char *id)
{
    if (!t || !id || !*id)
        return -1;
    for (size_t i = 0; i < t->n_pxbs; i++)
        if (!strcmp(t->pxbs[i].id, id))
            return (int)i;
    return -1;
}

bool smmu_topology_has_iommufd(const struct smmu_topology *t, const char *id)
{
    if (!t || !id || !*id)
        return false;
    for (size_t i = 0; i < t->n_iommufds; i++)
        if (!strcmp(t->iommufds[i], id))
            return true;
    return false;
}

/* "" → null, so that absent values look the same in every member. */
static json_t *topo_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *topo_int_or_null(int v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

/* A reserve value in bytes (or buses); null when unset. Beyond json_int_t (≥ 2^63, which QEMU accepts but no
 * window needs) it is a real, as the QMP decoder reads such numbers. */
static json_t *topo_reserve(const struct smmu_reserve *r)
{
    if (!r->set)
        return json_null();
    return r->value <= (uint64_t)INT64_MAX ? json_integer((json_int_t)r->value) : json_real((double)r->value);
}

static json_t *topo_port_to_json(const struct smmu_topology *t, size_t i, bool with_bus)
{
    const struct smmu_rootport *rp = &t->ports[i];
    json_t *o = json_object();
    json_object_set_new(o, "id", topo_str_or_null(rp->id));
    json_object_set_new(o, "path", json_string(rp->path));
    if (with_bus)
        json_object_set_new(o, "bus", topo_str_or_null(rp->bus_name));
    json_object_set_new(o, "chassis", json_integer(rp->chassis));
    json_object_set_new(o, "port", json_integer(rp->port));
    json_object_set_new(o, "hotplug", json_boolean(rp->hotplug));
    if (rp->occupant_id[0] || rp->occupant_path[0]) {
        json_t *occ = json_object();
        json_object_set_new(occ, "id", topo_str_or_null(rp->occupant_id));
        json_object_set_new(occ, "driver", topo_str_or_null(rp->occupant_driver));
        json_object_set_new(o, "occupant", occ);
    } else {
        json_object_set_new(o, "occupant", json_null());
    }
    json_object_set_new(o, "pref64_reserve", topo_reserve(&rp->pref64_reserve));
    json_object_set_new(o, "mem_reserve", topo_reserve(&rp->mem_reserve));
    json_object_set_new(o, "pref32_reserve", topo_reserve(&rp->pref32_reserve));
    json_object_set_new(o, "io_reserve", topo_reserve(&rp->io_reserve));
    json_object_set_new(o, "bus_reserve", topo_reserve(&rp->bus_reserve));
    return o;
}

/* Port order in the JSON is (chassis, port, id, index), whatever order discovery found them in, so that two
 * discoveries of the same VM print the same document. */
static bool topo_port_before(const struct smmu_topology *t, size_t a, size_t b)
{
    const struct smmu_rootport *pa = &t->ports[a], *pb = &t->ports[b];
    if (pa->chassis != pb->chassis)
        return pa->chassis < pb->chassis;
    if (pa->port != pb->port)
        return pa->port < pb->port;
    int c = strcmp(pa->id, pb->id);
    return c ? c < 0 : a < b;
}

/* Indices of the ports for which vsmmu == want (or, with want == -2, those behind no known vSMMU), sorted.
 * Insertion sort: a VM has tens of ports, and qsort has no context argument (keeps this thread-safe). */
size_t smmu_topology_ports_of(const struct smmu_topology *t, int want, size_t *idx)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_ports; i++) {
        int v = t->ports[i].vsmmu;
        bool other = v < 0 || (size_t)v >= t->n_vsmmus;
        if (!(want == -2 ? other : v == want))
            continue;
        size_t k = n++;
        while (k > 0 && topo_port_before(t, i, idx[k - 1])) {
            idx[k] = idx[k - 1];
            k--;
        }
        idx[k] = i;
    }
    return n;
}

json_t *smmu_topology_to_json(const struct smmu_topology *t)
{
    json_t *root = json_object();
    json_t *qemu = json_object(), *vsmmus = json_array(), *other = json_array();
    json_t *fds = json_array(), *vfio = json_array();
    size_t *idx = calloc(t && t->n_ports ? t->n_ports : 1, sizeof(*idx));

    if (!root || !qemu || !vsmmus || !other || !fds || !vfio || !idx) {
        json_decref(root); json_decref(qemu); json_decref(vsmmus);
        json_decref(other); json_decref(fds); json_decref(vfio);
        free(idx);
        return NULL;
    }
    json_object_set_new(qemu, "major", json_integer(t ? t->qemu_major : 0));
    json_object_set_new(qemu, "minor", json_integer(t ? t->qemu_minor : 0));
    json_object_set_new(qemu, "micro", json_integer(t ? t->qemu_micro : 0));
    json_object_set_new(root, "qemu", qemu);

    for (size_t v = 0; t && v < t->n_vsmmus; v++) {
        const struct smmu_vsmmu *s = &t->vsmmus[v];
        json_t *o = json_object(), *ports = json_array();
        json_object_set_new(o, "id", topo_str_or_null(s->id));
        json_object_set_new(o, "path", json_string(s->path));
        json_object_set_new(o, "accel", json_boolean(s->accel));
        json_object_set_new(o, "identifier", json_integer(s->identifier));
        json_object_set_new(o, "pxb", topo_str_or_null(s->pxb_id));
        json_object_set_new(o, "bus_nr", topo_int_or_null(s->bus_nr));
        json_object_set_new(o, "numa_node", topo_int_or_null(s->numa_node));
        json_object_set_new(o, "bound_smmu", topo_str_or_null(s->bound_smmu));
        size_t n = smmu_topology_ports_of(t, (int)v, idx);
        for (size_t k = 0; k < n; k++)
            json_array_append_new(ports, topo_port_to_json(t, idx[k], false));
        json_object_set_new(o, "ports", ports);
        json_array_append_new(vsmmus, o);
    }
    json_object_set_new(root, "vsmmus", vsmmus);

    if (t) {
        size_t n = smmu_topology_ports_of(t, -2, idx);
        for (size_t k = 0; k < n; k++)
            json_array_append_new(other, topo_port_to_json(t, idx[k], true));
    }
    json_object_set_new(root, "other_ports", other);

    for (size_t i = 0; t && i < t->n_iommufds; i++)
        json_array_append_new(fds, json_string(t->iommufds[i]));
    json_object_set_new(root, "iommufds", fds);

    for (size_t i = 0; t && i < t->n_vfio; i++) {
        const struct smmu_vfio_dev *d = &t->vfio[i];
        json_t *o = json_object();
        int rp = d->rootport;
        json_object_set_new(o, "id", topo_str_or_null(d->id));
        json_object_set_new(o, "host", topo_str_or_null(d->host));
        json_object_set_new(o, "iommufd", topo_str_or_null(d->iommufd));
        json_object_set_new(o, "port", rp >= 0 && (size_t)rp < t->n_ports ? topo_str_or_null(t->ports[rp].id)
                                                                            : json_null());
        json_object_set_new(o, "hotplugged", json_boolean(d->hotplugged));
        json_array_append_new(vfio, o);
    }
    json_object_set_new(root, "vfio", vfio);
    free(idx);
    return root;
}
