/* topology_from_json.c — smmu_topology_from_json: the inverse of smmu_topology_to_json (docs/topology-json.md),
 * for a front-end that gets the document from elsewhere (`smmuctl --server`, whose daemon answers
 * `topology --json`) and prints it with the renderer the direct CLI uses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smmuctl/topology.h"

struct tfj {
    struct smmu_topology *t;
    struct smmu_error *e;
    int r;
};

static int tfj_bad(struct tfj *x, const char *what)
{
    if (x->r == 0) {
        x->r = -EPROTO;
        smmu_error_set(x->e, -EPROTO, "topology JSON: %s", what);
    }
    return -1;
}

/* A string member (null or absent: "") into buf; anything else is malformed. */
static void tfj_str(struct tfj *x, const json_t *o, const char *name, char *buf, size_t len)
{
    const json_t *v = json_object_get(o, name);
    buf[0] = 0;
    if (!v || json_is_null(v))
        return;
    if (!json_is_string(v)) {
        char m[96];
        snprintf(m, sizeof(m), "'%s' is not a string", name);
        tfj_bad(x, m);
        return;
    }
    snprintf(buf, len, "%s", json_string_value(v));
}

/* An integer member; null or absent: dflt. */
static int tfj_int(struct tfj *x, const json_t *o, const char *name, int dflt)
{
    const json_t *v = json_object_get(o, name);
    if (!v || json_is_null(v))
        return dflt;
    if (!json_is_integer(v)) {
        char m[96];
        snprintf(m, sizeof(m), "'%s' is not an integer", name);
        tfj_bad(x, m);
        return dflt;
    }
    return (int)json_integer_value(v);
}

static void tfj_reserve(const json_t *o, const char *name, struct smmu_reserve *r)
{
    const json_t *v = json_object_get(o, name);
    double d = json_is_real(v) ? json_real_value(v) : 0;
    r->set = json_is_number(v);
    if (json_is_integer(v))
        r->value = (uint64_t)json_integer_value(v);
    else /* beyond json_int_t (to_json writes a real): as near as a double says, within uint64_t */
        r->value = d >= 18446744073709551615.0 ? UINT64_MAX : d > 0 ? (uint64_t)d : 0;
}

/* One port object onto t->ports[t->n_ports++], behind vSMMU v (-1: none). */
static void tfj_port(struct tfj *x, const json_t *o, int v)
{
    struct smmu_rootport *rp = &x->t->ports[x->t->n_ports++];
    const json_t *occ = json_object_get(o, "occupant");
    memset(rp, 0, sizeof(*rp));
    if (!json_is_object(o)) {
        tfj_bad(x, "a port is not an object");
        return;
    }
    tfj_str(x, o, "id", rp->id, sizeof(rp->id));
    tfj_str(x, o, "path", rp->path, sizeof(rp->path));
    tfj_str(x, o, "bus", rp->bus_name, sizeof(rp->bus_name));
    rp->chassis = tfj_int(x, o, "chassis", 0);
    rp->port = tfj_int(x, o, "port", 0);
    rp->hotplug = json_is_true(json_object_get(o, "hotplug"));
    rp->vsmmu = v;
    rp->slot = -1;
    if (json_is_object(occ)) {
        tfj_str(x, occ, "id", rp->occupant_id, sizeof(rp->occupant_id));
        tfj_str(x, occ, "driver", rp->occupant_driver, sizeof(rp->occupant_driver));
        /* not in the document: a QOM path that names the occupant (vfio entries point at it below) */
        snprintf(rp->occupant_path, sizeof(rp->occupant_path), "%s/%s", rp->path,
                 rp->occupant_id[0] ? rp->occupant_id : "(anonymous)");
    } else if (occ && !json_is_null(occ)) {
        tfj_bad(x, "'occupant' is neither an object nor null");
    }
    tfj_reserve(o, "pref64_reserve", &rp->pref64_reserve);
    tfj_reserve(o, "mem_reserve", &rp->mem_reserve);
    tfj_reserve(o, "pref32_reserve", &rp->pref32_reserve);
    tfj_reserve(o, "io_reserve", &rp->io_reserve);
    tfj_reserve(o, "bus_reserve", &rp->bus_reserve);
}

int smmu_topology_from_json(const json_t *doc, struct smmu_topology *t, struct smmu_error *err)
{
    struct tfj x = {t, err, 0};
    const json_t *q = json_object_get(doc, "qemu"), *vs = json_object_get(doc, "vsmmus");
    const json_t *other = json_object_get(doc, "other_ports"), *fds = json_object_get(doc, "iommufds");
    const json_t *vfio = json_object_get(doc, "vfio"), *v;
    size_t i, k, nports = 0;

    memset(t, 0, sizeof(*t));
    if (!json_is_object(doc) || !json_is_object(q) || !json_is_array(vs) || !json_is_array(other) ||
        !json_is_array(fds) || !json_is_array(vfio)) {
        tfj_bad(&x, "not a topology object (qemu, vsmmus, other_ports, iommufds, vfio)");
        return x.r;
    }
    t->qemu_major = tfj_int(&x, q, "major", 0);
    t->qemu_minor = tfj_int(&x, q, "minor", 0);
    t->qemu_micro = tfj_int(&x, q, "micro", 0);
    json_array_foreach(vs, i, v)
        nports += json_array_size(json_object_get(v, "ports"));
    nports += json_array_size(other);
    t->vsmmus = calloc(json_array_size(vs) + 1, sizeof(*t->vsmmus));
    t->ports = calloc(nports + 1, sizeof(*t->ports));
    t->vfio = calloc(json_array_size(vfio) + 1, sizeof(*t->vfio));
    t->iommufds = calloc(json_array_size(fds) + 1, sizeof(*t->iommufds));
    t->pxbs = calloc(1, sizeof(*t->pxbs));
    if (!t->vsmmus || !t->ports || !t->vfio || !t->iommufds || !t->pxbs) {
        smmu_topology_free(t);
        smmu_error_set(err, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    json_array_foreach(vs, i, v) {
        struct smmu_vsmmu *s = &t->vsmmus[t->n_vsmmus++];
        const json_t *p, *ports = json_object_get(v, "ports");
        if (!json_is_object(v) || !json_is_array(ports)) {
            tfj_bad(&x, "a vSMMU is not an object with 'ports'");
            break;
        }
        tfj_str(&x, v, "id", s->id, sizeof(s->id));
        tfj_str(&x, v, "path", s->path, sizeof(s->path));
        s->accel = json_is_true(json_object_get(v, "accel"));
        s->identifier = tfj_int(&x, v, "identifier", 0);
        tfj_str(&x, v, "pxb", s->pxb_id, sizeof(s->pxb_id));
        s->bus_nr = tfj_int(&x, v, "bus_nr", -1);
        s->numa_node = tfj_int(&x, v, "numa_node", -1);
        tfj_str(&x, v, "bound_smmu", s->bound_smmu, sizeof(s->bound_smmu));
        json_array_foreach(ports, k, p)
            tfj_port(&x, p, (int)i);
    }
    json_array_foreach(other, i, v)
        tfj_port(&x, v, -1);
    json_array_foreach(fds, i, v) {
        if (!json_is_string(v)) {
            tfj_bad(&x, "an iommufd is not a string");
            break;
        }
        snprintf(t->iommufds[t->n_iommufds++], SMMU_ID_LEN, "%s", json_string_value(v));
    }
    json_array_foreach(vfio, i, v) {
        struct smmu_vfio_dev *d = &t->vfio[t->n_vfio++];
        char port[SMMU_ID_LEN];
        if (!json_is_object(v)) {
            tfj_bad(&x, "a vfio device is not an object");
            break;
        }
        tfj_str(&x, v, "id", d->id, sizeof(d->id));
        tfj_str(&x, v, "host", d->host, sizeof(d->host));
        tfj_str(&x, v, "iommufd", d->iommufd, sizeof(d->iommufd));
        tfj_str(&x, v, "port", port, sizeof(port));
        d->hotplugged = json_is_true(json_object_get(v, "hotplugged"));
        d->rootport = smmu_topology_find_port(t, port);
        if (d->rootport >= 0 && t->ports[d->rootport].occupant_path[0])
            snprintf(d->path, sizeof(d->path), "%s", t->ports[d->rootport].occupant_path);
        else /* on no known port: the document does not say where; a path of its own */
            snprintf(d->path, sizeof(d->path), "/machine/peripheral/%s", d->id[0] ? d->id : "(anonymous)");
    }
    if (x.r < 0)
        smmu_topology_free(t);
    return x.r;
}
