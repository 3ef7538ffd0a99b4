/* discover.c — build a struct smmu_topology from QOM over QMP. See include/smmuctl/vm.h for the plan. */
#include "smmuctl/vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- a batch of calls in flight at once ---- */

struct vm_call {
    const char *cmd;
    json_t *args;          /* stolen when sent */
    json_t *ret;           /* reply (owned) */
    int err;
    struct smmu_error e;
    bool done;
    struct vm_batch_state *batch;
};

struct vm_batch_state {
    size_t left;
    bool all_done;
};

static void vm_call_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct vm_call *k = payload;
    (void)c;
    k->done = true;
    k->err = err;
    if (ret)
        k->ret = json_incref(ret);
    if (e)
        smmu_error_copy(&k->e, e);
    if (--k->batch->left == 0)
        k->batch->all_done = true;
}

/* Send every call, then pump until all are answered. Returns 0 or the first failure (in call order). */
static int vm_batch(qmp_client *c, struct vm_call *calls, size_t n, struct smmu_error *err)
{
    struct vm_batch_state b = {0, false};
    for (size_t i = 0; i < n; i++) {
        calls[i].batch = &b;
        int r = qmp_call(c, calls[i].cmd, calls[i].args, NULL, 0, 0, vm_call_cb, &calls[i]);
        calls[i].args = NULL;
        if (r < 0) {
            calls[i].done = true;
            calls[i].err = r;
            smmu_error_set(&calls[i].e, r, "%s: not connected to QEMU", calls[i].cmd);
        } else {
            b.left++;
        }
    }
    /* every call has its own timeout, so this ends */
    if (b.left > 0)
        qmp_pump_until(qmp_client_base(c), &b.all_done, -1);
    for (size_t i = 0; i < n; i++)
        if (calls[i].err < 0) {
            smmu_error_copy(err, &calls[i].e);
            return calls[i].err;
        }
    return 0;
}

static void vm_batch_free(struct vm_call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(calls[i].args);
        json_decref(calls[i].ret);
    }
    free(calls);
}

/* ---- small helpers ---- */

static const char *last_component(const char *path)
{
    const char *s = path ? strrchr(path, '/') : NULL;
    return s ? s + 1 : (path ? path : "");
}

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

json_t *smmu_vm_prop(json_t *entry, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(entry, "properties"), i, p) {
        const char *n = json_string_value(json_object_get(p, "name"));
        if (n && !strcmp(n, name))
            return json_object_get(p, "value");
    }
    return NULL;
}

/* Find the property whose type is `type` (e.g. "child<PCIE>"), returning its value. */
static json_t *vm_prop_by_type(json_t *entry, const char *type)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(entry, "properties"), i, p) {
        const char *t = json_string_value(json_object_get(p, "type"));
        if (t && !strcmp(t, type))
            return json_object_get(p, "value");
    }
    return NULL;
}

static int prop_int(json_t *entry, const char *name, int dflt)
{
    json_t *v = smmu_vm_prop(entry, name);
    if (json_is_integer(v))
        return (int)json_integer_value(v);
    if (json_is_string(v)) { /* some int properties print as strings (addr) */
        char *end;
        long l = strtol(json_string_value(v), &end, 0);
        return *end ? dflt : (int)l;
    }
    return dflt;
}

static bool prop_bool(json_t *entry, const char *name, bool dflt)
{
    json_t *v = smmu_vm_prop(entry, name);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *prop_str(json_t *entry, const char *name)
{
    return json_string_value(smmu_vm_prop(entry, name));
}

/* ---- properties of many paths: qom-list-get, or qom-list + qom-get ---- */

/* Properties the fallback fetches one by one (everything the topology needs). */
static bool vm_wanted(const char *name, const char *type)
{
    static const char *const names[] = {"type", "parent_bus", "primary-bus", "accel", "identifier", "bus_nr",
                                        "numa_node", "chassis", "port", "hotplug", "host", "iommufd",
                                        "hotplugged", "acpi_uid", NULL};
    for (size_t i = 0; names[i]; i++)
        if (!strcmp(name, names[i]))
            return true;
    return !strncmp(name, "child[", 6) || (type && !strcmp(type, "child<PCIE>"));
}

static int vm_get_props_fallback(qmp_client *c, json_t *paths, json_t **out, struct smmu_error *err)
{
    size_t n = json_array_size(paths), i, j;
    struct vm_call *lists = calloc(n ? n : 1, sizeof(*lists));
    int r;
    json_t *result = json_array();
    if (!lists)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        lists[i].cmd = "qom-list";
        lists[i].args = json_pack("{s:O}", "path", json_array_get(paths, i));
    }
    r = vm_batch(c, lists, n, err);
    if (r < 0)
        goto out;
    /* one qom-get per wanted property, all in flight together */
    size_t ngets = 0;
    for (i = 0; i < n; i++)
        ngets += json_array_size(lists[i].ret);
    struct vm_call *gets = calloc(ngets ? ngets : 1, sizeof(*gets));
    json_t **owner = calloc(ngets ? ngets : 1, sizeof(*owner));
    size_t k = 0;
    if (!gets || !owner) {
        free(gets);
        free(owner);
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        json_t *entry = json_pack("{s:[]}", "properties"), *p;
        json_array_append_new(result, entry);
        json_array_foreach(lists[i].ret, j, p) {
            const char *name = json_string_value(json_object_get(p, "name"));
            const char *type = json_string_value(json_object_get(p, "type"));
            if (!name || !vm_wanted(name, type))
                continue;
            gets[k].cmd = "qom-get";
            gets[k].args = json_pack("{s:O,s:s}", "path", json_array_get(paths, i), "property", name);
            owner[k] = json_pack("{s:s,s:s}", "name", name, "type", type ? type : "");
            json_array_append(json_object_get(entry, "properties"), owner[k]);
            k++;
        }
    }
    r = vm_batch(c, gets, k, err);
    for (i = 0; i < k; i++) {
        if (r == 0 && gets[i].ret)
            json_object_set(owner[i], "value", gets[i].ret);
        json_decref(owner[i]);
    }
    free(owner);
    vm_batch_free(gets, k);
out:
    vm_batch_free(lists, n);
    if (r < 0) {
        json_decref(result);
        return r;
    }
    *out = result;
    return 0;
}

/* *out: array parallel to paths of {"properties":[…]}. Steals nothing. */
static int vm_get_props(qmp_client *c, json_t *paths, bool *use_list_get, json_t **out, struct smmu_error *err)
{
    if (json_array_size(paths) == 0) {
        *out = json_array();
        return 0;
    }
    if (*use_list_get) {
        json_t *ret = NULL;
        struct smmu_error e = SMMU_ERROR_INIT;
        int r = qmp_call_sync(c, "qom-list-get", json_pack("{s:O}", "paths", paths), NULL, 0, &ret, &e);
        if (r == 0) {
            if (!json_is_array(ret) || json_array_size(ret) != json_array_size(paths)) {
                json_decref(ret);
                return smmu_error_set(err, -EPROTO, "qom-list-get: expected %zu entries in the reply, got %s",
                                      json_array_size(paths), json_is_array(ret) ? "a different count" : "no array");
            }
            *out = ret;
            return 0;
        }
        if (r != -EIO || strcmp(e.qmp_class, "CommandNotFound")) {
            smmu_error_copy(err, &e);
            return r;
        }
        *use_list_get = false; /* QEMU before 10.1: fall back */
    }
    return vm_get_props_fallback(c, paths, out, err);
}

/* ---- topology ---- */

struct vm_obj {
    char path[SMMU_PATH_LEN];
    char name[SMMU_ID_LEN];
    char type[64];
    bool anon;
};

static int vm_collect(json_t *list, const char *base, bool anon, struct vm_obj **objs, size_t *n,
                      struct smmu_error *err)
{
    size_t i;
    json_t *e;
    if (!json_is_array(list))
        return smmu_error_set(err, -EPROTO, "qom-list %s: the reply is not an array", base);
    json_array_foreach(list, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *type = json_string_value(json_object_get(e, "type"));
        if (!name || !type)
            return smmu_error_set(err, -EPROTO, "qom-list %s: entry %zu lacks name or type", base, i);
        if (strncmp(type, "child<", 6))
            continue;
        struct vm_obj *no = realloc(*objs, (*n + 1) * sizeof(**objs));
        if (!no)
            return -ENOMEM;
        *objs = no;
        struct vm_obj *o = &no[(*n)++];
        memset(o, 0, sizeof(*o));
        snprintf(o->path, sizeof(o->path), "%s/%s", base, name);
        copy_str(o->name, sizeof(o->name), anon ? "" : name);
        snprintf(o->type, sizeof(o->type), "%.*s", (int)(strlen(type) - 7), type + 6);
        o->anon = anon;
    }
    return 0;
}

static bool is_root_port_type(const char *t)
{
    return !strcmp(t, "pcie-root-port") || !strcmp(t, "ioh3420");
}

static bool is_vfio_type(const char *t)
{
    return !strcmp(t, "vfio-pci") || !strcmp(t, "vfio-pci-nohotplug");
}

static int port_cmp(const void *a, const void *b)
{
    const struct smmu_rootport *x = a, *y = b;
    if (x->chassis != y->chassis)
        return x->chassis - y->chassis;
    if (x->port != y->port)
        return x->port - y->port;
    return strcmp(x->path, y->path);
}

static int vsmmu_cmp(const void *a, const void *b)
{
    const struct smmu_vsmmu *x = a, *y = b;
    if (x->identifier != y->identifier)
        return x->identifier - y->identifier;
    return strcmp(x->path, y->path);
}

int smmu_vm_discover(qmp_client *c, struct smmu_topology *t, struct smmu_error *err)
{
    static const char *const bases[3] = {"/machine/peripheral", "/machine/peripheral-anon", "/objects"};
    struct vm_call *lists = calloc(3, sizeof(*lists));
    struct vm_obj *objs = NULL;
    size_t nobjs = 0, i;
    json_t *paths = json_array(), *props = NULL, *bus_paths = json_array(), *bus_props = NULL;
    bool use_list_get = true;
    int r;
    const struct qmp_greeting *g = qmp_client_greeting(c);

    memset(t, 0, sizeof(*t));
    t->qemu_major = g->major;
    t->qemu_minor = g->minor;
    t->qemu_micro = g->micro;
    if (!lists) {
        r = -ENOMEM;
        goto out;
    }
    /* Round trip 1: the three listings, pipelined. */
    for (i = 0; i < 3; i++) {
        lists[i].cmd = "qom-list";
        lists[i].args = json_pack("{s:s}", "path", bases[i]);
    }
    if ((r = vm_batch(c, lists, 3, err)) < 0)
        goto out;
    if ((r = vm_collect(lists[0].ret, bases[0], false, &objs, &nobjs, err)) < 0 ||
        (r = vm_collect(lists[1].ret, bases[1], true, &objs, &nobjs, err)) < 0)
        goto out;
    {
        size_t j;
        json_t *e;
        json_array_foreach(lists[2].ret, j, e) {
            const char *type = json_string_value(json_object_get(e, "type"));
            const char *name = json_string_value(json_object_get(e, "name"));
            if (!type || !name || strcmp(type, "child<iommufd>"))
                continue;
            void *nb = realloc(t->iommufds, (t->n_iommufds + 1) * sizeof(*t->iommufds));
            if (!nb) {
                r = -ENOMEM;
                goto out;
            }
            t->iommufds = nb;
            copy_str(t->iommufds[t->n_iommufds++], SMMU_ID_LEN, name);
        }
    }

    /* Round trip 2: every property of the objects that make up the topology. */
    size_t *idx = calloc(nobjs ? nobjs : 1, sizeof(*idx)); /* objs index for each path */
    size_t npaths = 0;
    if (!idx) {
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < nobjs; i++) {
        const char *ty = objs[i].type;
        if (!strcmp(ty, "arm-smmuv3") || !strcmp(ty, "pxb-pcie") || is_root_port_type(ty) || is_vfio_type(ty)) {
            json_array_append_new(paths, json_string(objs[i].path));
            idx[npaths++] = i;
        }
    }
    r = vm_get_props(c, paths, &use_list_get, &props, err);
    if (r < 0) {
        free(idx);
        goto out;
    }
    t->has_qom_list_get = use_list_get;

    /* vSMMUs, root ports, vfio devices */
    size_t nv = 0, np = 0, nf = 0;
    for (i = 0; i < npaths; i++) {
        const char *ty = objs[idx[i]].type;
        nv += !strcmp(ty, "arm-smmuv3");
        np += is_root_port_type(ty);
        nf += is_vfio_type(ty);
    }
    t->vsmmus = calloc(nv ? nv : 1, sizeof(*t->vsmmus));
    t->ports = calloc(np ? np : 1, sizeof(*t->ports));
    t->vfio = calloc(nf ? nf : 1, sizeof(*t->vfio));
    if (!t->vsmmus || !t->ports || !t->vfio) {
        free(idx);
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < npaths; i++) {
        struct vm_obj *o = &objs[idx[i]];
        json_t *e = json_array_get(props, i);
        if (!strcmp(o->type, "arm-smmuv3")) {
            struct smmu_vsmmu *v = &t->vsmmus[t->n_vsmmus++];
            copy_str(v->id, sizeof(v->id), o->name);
            copy_str(v->path, sizeof(v->path), o->path);
            v->accel = prop_bool(e, "accel", false);
            v->identifier = prop_int(e, "identifier", (int)t->n_vsmmus - 1);
            copy_str(v->primary_bus, sizeof(v->primary_bus), prop_str(e, "primary-bus"));
            copy_str(v->pxb_id, sizeof(v->pxb_id), last_component(v->primary_bus));
            v->bus_nr = -1;
            v->numa_node = -1;
        } else if (is_root_port_type(o->type)) {
            struct smmu_rootport *p = &t->ports[t->n_ports++];
            json_t *sec = vm_prop_by_type(e, "child<PCIE>");
            copy_str(p->id, sizeof(p->id), o->name);
            copy_str(p->path, sizeof(p->path), o->path);
            p->chassis = prop_int(e, "chassis", 0);
            p->port = prop_int(e, "port", 0);
            p->hotplug = prop_bool(e, "hotplug", true);
            copy_str(p->parent_bus, sizeof(p->parent_bus), prop_str(e, "parent_bus"));
            copy_str(p->bus_name, sizeof(p->bus_name), last_component(p->parent_bus));
            copy_str(p->sec_bus, sizeof(p->sec_bus), json_string_value(sec));
            p->vsmmu = -1;
        } else if (is_vfio_type(o->type)) {
            struct smmu_vfio_dev *f = &t->vfio[t->n_vfio++];
            copy_str(f->id, sizeof(f->id), o->name);
            copy_str(f->path, sizeof(f->path), o->path);
            const char *host = prop_str(e, "host");
            if (host && *host && smmu_bdf_parse(host, f->host, NULL) < 0)
                copy_str(f->host, sizeof(f->host), ""); /* not a PCI address (sysfsdev=…): unknown host */
            copy_str(f->iommufd, sizeof(f->iommufd), last_component(prop_str(e, "iommufd")));
            f->hotplugged = prop_bool(e, "hotplugged", false);
            f->rootport = -1;
            /* remember the parent bus in path-sized scratch: matched to ports below */
        }
    }
    /* pxb bus_nr / numa_node for each vSMMU (the pxb's id is the last component of its primary bus) */
    for (i = 0; i < npaths; i++) {
        struct vm_obj *o = &objs[idx[i]];
        json_t *e = json_array_get(props, i);
        if (strcmp(o->type, "pxb-pcie"))
            continue;
        for (size_t v = 0; v < t->n_vsmmus; v++) {
            if (o->anon || strcmp(t->vsmmus[v].pxb_id, o->name))
                continue;
            t->vsmmus[v].bus_nr = prop_int(e, "bus_nr", -1);
            int numa = prop_int(e, "numa_node", -1);
            t->vsmmus[v].numa_node = (numa < 0 || numa >= 128) ? -1 : numa; /* 128 = NUMA_NODE_UNASSIGNED */
        }
    }
    qsort(t->vsmmus, t->n_vsmmus, sizeof(*t->vsmmus), vsmmu_cmp);
    qsort(t->ports, t->n_ports, sizeof(*t->ports), port_cmp);
    for (size_t p = 0; p < t->n_ports; p++)
        for (size_t v = 0; v < t->n_vsmmus; v++)
            if (t->vsmmus[v].primary_bus[0] && !strcmp(t->ports[p].parent_bus, t->vsmmus[v].primary_bus))
                t->ports[p].vsmmu = (int)v;

    /* Round trip 3: the ports' secondary buses, whose child[N] links are the occupants. */
    for (size_t p = 0; p < t->n_ports; p++)
        json_array_append_new(bus_paths, json_string(t->ports[p].sec_bus[0] ? t->ports[p].sec_bus : t->ports[p].path));
    r = vm_get_props(c, bus_paths, &use_list_get, &bus_props, err);
    if (r < 0) {
        free(idx);
        goto out;
    }
    for (size_t p = 0; p < t->n_ports; p++) {
        json_t *e = json_array_get(bus_props, p), *prop;
        size_t j;
        if (!t->ports[p].sec_bus[0])
            continue;
        json_array_foreach(json_object_get(e, "properties"), j, prop) {
            const char *name = json_string_value(json_object_get(prop, "name"));
            const char *type = json_string_value(json_object_get(prop, "type"));
            const char *val = json_string_value(json_object_get(prop, "value"));
            if (!name || strncmp(name, "child[", 6) || !type || strncmp(type, "link<", 5) || !val || !*val)
                continue;
            struct smmu_rootport *rp = &t->ports[p];
            if (rp->occupant_path[0] && strcmp(val, rp->occupant_path) > 0)
                continue; /* keep one occupant per port: the lowest path (function 0 of a multifunction set) */
            copy_str(rp->occupant_path, sizeof(rp->occupant_path), val);
            copy_str(rp->occupant_id, sizeof(rp->occupant_id),
                     strncmp(val, "/machine/peripheral-anon/", 25) ? last_component(val) : "");
            snprintf(rp->occupant_driver, sizeof(rp->occupant_driver), "%.*s", (int)(strlen(type) - 6), type + 5);
        }
    }
    /* vfio devices → their root port (the port whose occupant they are) */
    for (size_t f = 0; f < t->n_vfio; f++)
        for (size_t p = 0; p < t->n_ports; p++)
            if (!strcmp(t->ports[p].occupant_path, t->vfio[f].path))
                t->vfio[f].rootport = (int)p;
    free(idx);
    r = 0;
out:
    if (lists)
        vm_batch_free(lists, 3);
    free(objs);
    json_decref(paths);
    json_decref(props);
    json_decref(bus_paths);
    json_decref(bus_props);
    if (r < 0) {
        if (err && !err->message[0])
            smmu_error_set(err, r, "topology discovery failed: %s", strerror(-r));
        smmu_topology_free(t);
    }
    return r;
}

int smmu_vm_qom_exists(qmp_client *c, const char *path, struct smmu_error *err)
{
    char parent[SMMU_PATH_LEN];
    const char *name = last_component(path);
    json_t *ret = NULL, *e;
    size_t i;
    int r, found = 0;
    snprintf(parent, sizeof(parent), "%.*s", (int)(name - path > 1 ? name - path - 1 : 1), path);
    r = qmp_call_sync(c, "qom-list", json_pack("{s:s}", "path", parent), NULL, 0, &ret, err);
    if (r < 0)
        return r;
    json_array_foreach(ret, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && !strcmp(n, name))
            found = 1;
    }
    json_decref(ret);
    return found;
}
