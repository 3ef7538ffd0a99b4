/* discover.c — build a struct smmu_topology from QOM over QMP. See include/smmuctl/vm.h for the plan.
 *
 * Replies are checked before they are used: a reply of the wrong shape (not an array, an entry without
 * "properties", a root port without chassis/port/parent_bus/secondary bus, a vSMMU without primary-bus)
 * fails with -EPROTO naming the command and the QOM path, instead of silently yielding a wrong topology
 * that the planner would then trust. */
#include "smmuctl/vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- a batch of calls in flight at once ---- */

struct vm_call {
    const char *cmd;
    char what[SMMU_PATH_LEN + 64]; /* "qom-list /machine/peripheral", for messages */
    json_t *args;                  /* stolen when sent */
    json_t *ret;                   /* reply (owned) */
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
    if (e && err < 0) {
        smmu_error_copy(&k->e, e);
        /* QEMU's message names only the command; say which path it was about */
        if (e->qmp_class[0])
            snprintf(k->e.message, sizeof(k->e.message), "%s: %s (%s)", k->what, e->qmp_desc, e->qmp_class);
    }
    if (--k->batch->left == 0)
        k->batch->all_done = true;
}

/* Send every call, then pump until all are answered. Returns 0 or the first failure (in call order);
 * with soft_qmp_errors, calls that QEMU refused (-EIO) do not fail the batch (their ret stays NULL). */
static int vm_batch(qmp_client *c, struct vm_call *calls, size_t n, bool soft_qmp_errors, struct smmu_error *err)
{
    struct vm_batch_state b = {0, false};
    for (size_t i = 0; i < n; i++) {
        calls[i].batch = &b;
        int r = qmp_call(c, calls[i].cmd, calls[i].args, NULL, 0, 0, vm_call_cb, &calls[i]);
        calls[i].args = NULL;
        if (r < 0) {
            calls[i].done = true;
            calls[i].err = r;
            smmu_error_set(&calls[i].e, r, "%s: not connected to QEMU", calls[i].what);
        } else {
            b.left++;
        }
    }
    /* every call has its own timeout, so this ends */
    if (b.left > 0)
        qmp_pump_until(qmp_client_base(c), &b.all_done, -1);
    if (!b.all_done) {
        /* The loop ran dry with calls pending: closing fails them now (their callbacks run), so that no
         * callback can run later on memory the caller is about to free. */
        qmp_client_close(c);
    }
    for (size_t i = 0; i < n; i++) {
        if (!calls[i].done) {
            calls[i].err = -ETIMEDOUT;
            smmu_error_set(&calls[i].e, -ETIMEDOUT, "%s: no reply from QEMU", calls[i].what);
        }
        if (calls[i].err < 0 && !(soft_qmp_errors && calls[i].err == -EIO)) {
            smmu_error_copy(err, &calls[i].e);
            return calls[i].err;
        }
    }
    return 0;
}

static void vm_batch_free(struct vm_call *calls, size_t n)
{
    for (size_t i = 0; calls && i < n; i++) {
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
        const char *s = json_string_value(v);
        long l = strtol(s, &end, 0);
        return (*end || end == s) ? dflt : (int)l;
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

/* A property the topology cannot do without: -EPROTO naming the object when it is absent or mistyped. */
static int need_prop(json_t *entry, const char *path, const char *type, const char *name, bool integer,
                     struct smmu_error *err)
{
    json_t *v = smmu_vm_prop(entry, name);
    if (integer ? json_is_integer(v) : json_is_string(v))
        return 0;
    return smmu_error_set(err, -EPROTO, "QOM properties of %s (%s): %s '%s' in QEMU's reply", path, type,
                          v ? (integer ? "non-integer" : "non-string") : "no property", name);
}

/* ---- properties of many paths: qom-list-get, or qom-list + qom-get ---- */

/* Properties the fallback fetches one by one (everything the topology needs). */
static bool vm_wanted(const char *name, const char *type)
{
    static const char *const names[] = {"type", "parent_bus", "primary-bus", "accel", "identifier", "bus_nr",
                                        "numa_node", "chassis", "port", "hotplug", "host", "sysfsdev",
                                        "iommufd", "hotplugged", "acpi_uid", NULL};
    for (size_t i = 0; names[i]; i++)
        if (!strcmp(name, names[i]))
            return true;
    return !strncmp(name, "child[", 6) || (type && !strcmp(type, "child<PCIE>"));
}

/* QEMU before 10.1 has no qom-list-get: qom-list each path, then one qom-get per wanted property, each
 * stage pipelined. A property QEMU refuses to read is left without a value (as qom-list-get does). */
static int vm_get_props_fallback(qmp_client *c, json_t *paths, json_t **out, struct smmu_error *err)
{
    size_t n = json_array_size(paths), i, j, ngets = 0, k = 0;
    struct vm_call *lists = calloc(n ? n : 1, sizeof(*lists)), *gets = NULL;
    json_t **owner = NULL, *result = json_array();
    int r;
    if (!lists || !result) {
        r = smmu_error_set(err, -ENOMEM, "topology discovery: out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        const char *p = json_string_value(json_array_get(paths, i));
        lists[i].cmd = "qom-list";
        snprintf(lists[i].what, sizeof(lists[i].what), "qom-list %s", p);
        lists[i].args = json_pack("{s:s}", "path", p);
    }
    if ((r = vm_batch(c, lists, n, false, err)) < 0)
        goto out;
    for (i = 0; i < n; i++) {
        if (!json_is_array(lists[i].ret)) {
            r = smmu_error_set(err, -EPROTO, "%s: the reply is not an array", lists[i].what);
            goto out;
        }
        ngets += json_array_size(lists[i].ret);
    }
    gets = calloc(ngets ? ngets : 1, sizeof(*gets));
    owner = calloc(ngets ? ngets : 1, sizeof(*owner));
    if (!gets || !owner) {
        r = smmu_error_set(err, -ENOMEM, "topology discovery: out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        const char *path = json_string_value(json_array_get(paths, i));
        json_t *entry = json_pack("{s:[]}", "properties"), *p;
        json_array_append_new(result, entry);
        json_array_foreach(lists[i].ret, j, p) {
            const char *name = json_string_value(json_object_get(p, "name"));
            const char *type = json_string_value(json_object_get(p, "type"));
            if (!name || !vm_wanted(name, type))
                continue;
            gets[k].cmd = "qom-get";
            snprintf(gets[k].what, sizeof(gets[k].what), "qom-get %s %s", path, name);
            gets[k].args = json_pack("{s:s,s:s}", "path", path, "property", name);
            owner[k] = json_pack("{s:s,s:s}", "name", name, "type", type ? type : "");
            json_array_append(json_object_get(entry, "properties"), owner[k]);
            k++;
        }
    }
    r = vm_batch(c, gets, k, true, err);
    for (i = 0; r == 0 && i < k; i++)
        if (gets[i].ret)
            json_object_set(owner[i], "value", gets[i].ret);
out:
    for (i = 0; owner && i < k; i++)
        json_decref(owner[i]);
    free(owner);
    vm_batch_free(gets, k);
    vm_batch_free(lists, n);
    if (r < 0) {
        json_decref(result);
        return r;
    }
    *out = result;
    return 0;
}

/* *out: array parallel to paths of {"properties":[…]} (each entry checked). Steals nothing.
 * *use_list_get: try qom-list-get (cleared when QEMU does not know it); *used set when it answered. */
static int vm_get_props(qmp_client *c, json_t *paths, bool *use_list_get, bool *used, json_t **out,
                        struct smmu_error *err)
{
    size_t n = json_array_size(paths);
    *out = NULL;
    if (n == 0) {
        *out = json_array();
        return *out ? 0 : -ENOMEM;
    }
    if (*use_list_get) {
        json_t *ret = NULL, *e;
        struct smmu_error qe = SMMU_ERROR_INIT;
        size_t i;
        int r = qmp_call_sync(c, "qom-list-get", json_pack("{s:O}", "paths", paths), NULL, 0, &ret, &qe);
        if (r == 0) {
            if (!json_is_array(ret) || json_array_size(ret) != n) {
                r = smmu_error_set(err, -EPROTO, "qom-list-get of %zu paths: the reply is %s", n,
                                   json_is_array(ret) ? "an array of a different length" : "not an array");
                json_decref(ret);
                return r;
            }
            json_array_foreach(ret, i, e) {
                if (!json_is_object(e) || !json_is_array(json_object_get(e, "properties"))) {
                    r = smmu_error_set(err, -EPROTO, "qom-list-get: the entry for %s has no \"properties\" array",
                                       json_string_value(json_array_get(paths, i)));
                    json_decref(ret);
                    return r;
                }
            }
            *used = true;
            *out = ret;
            return 0;
        }
        if (r != -EIO || strcmp(qe.qmp_class, "CommandNotFound")) {
            smmu_error_copy(err, &qe);
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
        size_t tl;
        if (!name || !type)
            return smmu_error_set(err, -EPROTO, "qom-list %s: entry %zu lacks name or type", base, i);
        tl = strlen(type);
        if (strncmp(type, "child<", 6) || tl < 8 || type[tl - 1] != '>')
            continue;
        struct vm_obj *no = realloc(*objs, (*n + 1) * sizeof(**objs));
        if (!no)
            return smmu_error_set(err, -ENOMEM, "topology discovery: out of memory");
        *objs = no;
        struct vm_obj *o = &no[(*n)++];
        memset(o, 0, sizeof(*o));
        snprintf(o->path, sizeof(o->path), "%s/%s", base, name);
        copy_str(o->name, sizeof(o->name), anon ? "" : name);
        snprintf(o->type, sizeof(o->type), "%.*s", (int)(tl - 7), type + 6);
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

/* The iommufd objects of a qom-list /objects reply. */
static int vm_collect_iommufds(json_t *list, struct smmu_topology *t, struct smmu_error *err)
{
    size_t j;
    json_t *e;
    if (!json_is_array(list))
        return smmu_error_set(err, -EPROTO, "qom-list /objects: the reply is not an array");
    json_array_foreach(list, j, e) {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!type || !name)
            return smmu_error_set(err, -EPROTO, "qom-list /objects: entry %zu lacks name or type", j);
        if (strcmp(type, "child<iommufd>"))
            continue;
        void *nb = realloc(t->iommufds, (t->n_iommufds + 1) * sizeof(*t->iommufds));
        if (!nb)
            return smmu_error_set(err, -ENOMEM, "topology discovery: out of memory");
        t->iommufds = nb;
        copy_str(t->iommufds[t->n_iommufds++], SMMU_ID_LEN, name);
    }
    return 0;
}

/* One object of round trip 2 into the topology. */
static int vm_add_object(struct smmu_topology *t, const struct vm_obj *o, json_t *e, struct smmu_error *err)
{
    int r;
    if (!strcmp(o->type, "arm-smmuv3")) {
        if ((r = need_prop(e, o->path, o->type, "primary-bus", false, err)) < 0)
            return r;
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
        json_t *sec = vm_prop_by_type(e, "child<PCIE>");
        if ((r = need_prop(e, o->path, o->type, "parent_bus", false, err)) < 0 ||
            (r = need_prop(e, o->path, o->type, "chassis", true, err)) < 0 ||
            (r = need_prop(e, o->path, o->type, "port", true, err)) < 0)
            return r;
        if (!json_is_string(sec) || !*json_string_value(sec))
            return smmu_error_set(err, -EPROTO, "QOM properties of %s (%s): no secondary bus (child<PCIE>) "
                                  "in QEMU's reply", o->path, o->type);
        struct smmu_rootport *p = &t->ports[t->n_ports++];
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
        const char *host = prop_str(e, "host"), *sysfsdev = prop_str(e, "sysfsdev");
        char bdf[SMMU_BDF_LEN + 1];
        copy_str(f->id, sizeof(f->id), o->name);
        copy_str(f->path, sizeof(f->path), o->path);
        /* `host`, or the device named by `sysfsdev=/sys/bus/pci/devices/B`; "" when passed by fd */
        if (!(host && *host) && sysfsdev && *sysfsdev)
            host = last_component(sysfsdev);
        if (host && *host && smmu_bdf_parse(host, bdf, NULL) == 0)
            copy_str(f->host, sizeof(f->host), bdf);
        copy_str(f->iommufd, sizeof(f->iommufd), last_component(prop_str(e, "iommufd")));
        f->hotplugged = prop_bool(e, "hotplugged", false);
        f->rootport = -1;
    }
    return 0;
}

/* A pxb-pcie's bus_nr / numa_node onto the vSMMU whose primary bus it provides (the bus is named after
 * the pxb's id: the last component of the vSMMU's primary-bus path). */
static void vm_add_pxb(struct smmu_topology *t, const struct vm_obj *o, json_t *e)
{
    for (size_t v = 0; v < t->n_vsmmus; v++) {
        if (o->anon || strcmp(t->vsmmus[v].pxb_id, o->name))
            continue;
        t->vsmmus[v].bus_nr = prop_int(e, "bus_nr", -1);
        int numa = prop_int(e, "numa_node", -1);
        t->vsmmus[v].numa_node = (numa < 0 || numa >= 128) ? -1 : numa; /* 128 = NUMA_NODE_UNASSIGNED */
    }
}

/* Occupants of port p from its secondary bus's properties: child[N] links to devices. */
static void vm_add_occupant(struct smmu_rootport *rp, json_t *e)
{
    json_t *prop;
    size_t j;
    json_array_foreach(json_object_get(e, "properties"), j, prop) {
        const char *name = json_string_value(json_object_get(prop, "name"));
        const char *type = json_string_value(json_object_get(prop, "type"));
        const char *val = json_string_value(json_object_get(prop, "value"));
        size_t tl = type ? strlen(type) : 0;
        if (!name || strncmp(name, "child[", 6) || tl < 7 || strncmp(type, "link<", 5) || !val || !*val)
            continue;
        if (rp->occupant_path[0] && strcmp(val, rp->occupant_path) > 0)
            continue; /* keep one occupant per port: the lowest path (function 0 of a multifunction set) */
        copy_str(rp->occupant_path, sizeof(rp->occupant_path), val);
        copy_str(rp->occupant_id, sizeof(rp->occupant_id),
                 strncmp(val, "/machine/peripheral-anon/", 25) ? last_component(val) : "");
        snprintf(rp->occupant_driver, sizeof(rp->occupant_driver), "%.*s", (int)(tl - 6), type + 5);
    }
}

int smmu_vm_discover(qmp_client *c, struct smmu_topology *t, struct smmu_error *err)
{
    return smmu_vm_discover_ex(c, 0, t, err);
}

int smmu_vm_discover_ex(qmp_client *c, unsigned flags, struct smmu_topology *t, struct smmu_error *err)
{
    static const char *const bases[3] = {"/machine/peripheral", "/machine/peripheral-anon", "/objects"};
    struct vm_call *lists = calloc(3, sizeof(*lists));
    struct vm_obj *objs = NULL;
    size_t nobjs = 0, i, npaths = 0, *idx = NULL;
    json_t *paths = json_array(), *props = NULL, *bus_paths = json_array(), *bus_props = NULL;
    bool use_list_get = !(flags & SMMU_VM_NO_QOM_LIST_GET), used_list_get = false;
    int r;
    const struct qmp_greeting *g = qmp_client_greeting(c);

    memset(t, 0, sizeof(*t));
    if (g) {
        t->qemu_major = g->major;
        t->qemu_minor = g->minor;
        t->qemu_micro = g->micro;
    }
    if (!lists || !paths || !bus_paths) {
        r = smmu_error_set(err, -ENOMEM, "topology discovery: out of memory");
        goto out;
    }
    /* Round trip 1: the three listings, pipelined. */
    for (i = 0; i < 3; i++) {
        lists[i].cmd = "qom-list";
        snprintf(lists[i].what, sizeof(lists[i].what), "qom-list %s", bases[i]);
        lists[i].args = json_pack("{s:s}", "path", bases[i]);
    }
    if ((r = vm_batch(c, lists, 3, false, err)) < 0 ||
        (r = vm_collect(lists[0].ret, bases[0], false, &objs, &nobjs, err)) < 0 ||
        (r = vm_collect(lists[1].ret, bases[1], true, &objs, &nobjs, err)) < 0 ||
        (r = vm_collect_iommufds(lists[2].ret, t, err)) < 0)
        goto out;

    /* Round trip 2: every property of the objects that make up the topology. */
    idx = calloc(nobjs ? nobjs : 1, sizeof(*idx)); /* objs index for each path */
    if (!idx) {
        r = smmu_error_set(err, -ENOMEM, "topology discovery: out of memory");
        goto out;
    }
    size_t nv = 0, np = 0, nf = 0;
    for (i = 0; i < nobjs; i++) {
        const char *ty = objs[i].type;
        if (!strcmp(ty, "arm-smmuv3") || !strcmp(ty, "pxb-pcie") || is_root_port_type(ty) || is_vfio_type(ty)) {
            json_array_append_new(paths, json_string(objs[i].path));
            idx[npaths++] = i;
            nv += !strcmp(ty, "arm-smmuv3");
            np += is_root_port_type(ty);
            nf += is_vfio_type(ty);
        }
    }
    if ((r = vm_get_props(c, paths, &use_list_get, &used_list_get, &props, err)) < 0)
        goto out;

    t->vsmmus = calloc(nv ? nv : 1, sizeof(*t->vsmmus));
    t->ports = calloc(np ? np : 1, sizeof(*t->ports));
    t->vfio = calloc(nf ? nf : 1, sizeof(*t->vfio));
    if (!t->vsmmus || !t->ports || !t->vfio) {
        r = smmu_error_set(err, -ENOMEM, "topology discovery: out of memory");
        goto out;
    }
    for (i = 0; i < npaths; i++)
        if ((r = vm_add_object(t, &objs[idx[i]], json_array_get(props, i), err)) < 0)
            goto out;
    for (i = 0; i < npaths; i++)
        if (!strcmp(objs[idx[i]].type, "pxb-pcie"))
            vm_add_pxb(t, &objs[idx[i]], json_array_get(props, i));
    qsort(t->vsmmus, t->n_vsmmus, sizeof(*t->vsmmus), vsmmu_cmp);
    qsort(t->ports, t->n_ports, sizeof(*t->ports), port_cmp);
    for (size_t p = 0; p < t->n_ports; p++)
        for (size_t v = 0; v < t->n_vsmmus; v++)
            if (t->vsmmus[v].primary_bus[0] && !strcmp(t->ports[p].parent_bus, t->vsmmus[v].primary_bus))
                t->ports[p].vsmmu = (int)v;

    /* Round trip 3: the ports' secondary buses, whose child[N] links are the occupants. */
    for (size_t p = 0; p < t->n_ports; p++)
        json_array_append_new(bus_paths, json_string(t->ports[p].sec_bus));
    if ((r = vm_get_props(c, bus_paths, &use_list_get, &used_list_get, &bus_props, err)) < 0)
        goto out;
    for (size_t p = 0; p < t->n_ports; p++)
        vm_add_occupant(&t->ports[p], json_array_get(bus_props, p));
    /* vfio devices → their root port (the port whose occupant they are) */
    for (size_t f = 0; f < t->n_vfio; f++)
        for (size_t p = 0; p < t->n_ports; p++)
            if (!strcmp(t->ports[p].occupant_path, t->vfio[f].path))
                t->vfio[f].rootport = (int)p;
    t->has_qom_list_get = used_list_get;
    r = 0;
out:
    vm_batch_free(lists, 3);
    free(objs);
    free(idx);
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
    if (!json_is_array(ret)) {
        json_decref(ret);
        return smmu_error_set(err, -EPROTO, "qom-list %s: the reply is not an array", parent);
    }
    json_array_foreach(ret, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && !strcmp(n, name))
            found = 1;
    }
    json_decref(ret);
    return found;
}
