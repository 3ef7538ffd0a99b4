/* discover.c — build a struct smmu_topology from QOM over QMP. See include/smmuctl/vm.h for the plan.
 *
 * Replies are checked before they are used: a reply of the wrong shape (not an array, an entry without
 * "properties", a root port without chassis/port/parent_bus/secondary bus, a vSMMU without primary-bus)
 * fails with -EPROTO naming the command and the QOM path, instead of silently yielding a wrong topology
 * that the planner would then trust. */
#include "smmuctl/vm.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- discovery as a step machine: batches of calls in flight at once ---- */

struct vm_call {
    const char *cmd;
    char what[SMMU_PATH_LEN + 64]; /* "qom-list /machine/peripheral", for messages */
    json_t *args;                  /* stolen when sent */
    json_t *ret;                   /* reply (owned) */
    int err;
    struct smmu_error e;
    bool done;
    struct vm_disc *d;
};

struct vm_obj {
    char path[SMMU_PATH_LEN];
    char name[SMMU_ID_LEN];
    char type[64];
    bool anon;
};

/* Where the machine is; each stage sends one batch and resumes in vm_disc_next when it is answered. */
enum vm_stage {
    VM_LISTS,        /* qom-list of the three bases */
    VM_PROPS,        /* properties of the topology's objects */
    VM_BUS_PROPS,    /* properties of the ports' secondary buses */
};

/* Properties of a set of paths: qom-list-get, or (QEMU < 10.1) qom-list + one qom-get per wanted property. */
enum vm_props_phase {
    VM_PP_NONE,      /* nothing to fetch: props is [] */
    VM_PP_LIST_GET,  /* one qom-list-get */
    VM_PP_LISTS,     /* fallback: qom-list of each path */
    VM_PP_GETS,      /* fallback: qom-get of each wanted property */
};

struct vm_disc {
    qmp_client *c;
    struct smmu_topology *t;
    smmu_vm_discover_cb cb;
    void *payload;
    struct smmu_error err;
    enum vm_stage stage;
    /* the batch in flight */
    struct vm_call *calls;
    size_t ncalls, left;
    bool soft_qmp_errors;
    /* stage state */
    struct vm_obj *objs;
    size_t nobjs, npaths, *idx, nv, np, nf, nx;
    bool use_list_get, used_list_get;
    json_t *paths;               /* the paths whose properties are being fetched (owned) */
    json_t *props;               /* their properties, parallel to paths (owned) */
    enum vm_props_phase pp;
    json_t *pp_result;           /* fallback: entries being built */
    json_t **pp_owner;           /* fallback: property objects awaiting their qom-get value */
    size_t pp_k;
};

static void vm_disc_next(struct vm_disc *d);

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
        /* QEMU's message names only the command; say which path it was about (qom-list-get is about all) */
        if (e->qmp_class[0] && strcmp(k->cmd, "qom-list-get"))
            snprintf(k->e.message, sizeof(k->e.message), "%s: %s (%s)", k->what, e->qmp_desc, e->qmp_class);
    }
    if (--k->d->left == 0)
        vm_disc_next(k->d);
}

static void vm_batch_free(struct vm_call *calls, size_t n)
{
    for (size_t i = 0; calls && i < n; i++) {
        json_decref(calls[i].args);
        json_decref(calls[i].ret);
    }
    free(calls);
}

/* A new batch of n calls (args filled by the caller, then vm_batch_send). */
static struct vm_call *vm_batch_new(struct vm_disc *d, size_t n, bool soft_qmp_errors)
{
    vm_batch_free(d->calls, d->ncalls);
    d->calls = calloc(n ? n : 1, sizeof(*d->calls));
    d->ncalls = d->calls ? n : 0;
    d->soft_qmp_errors = soft_qmp_errors;
    for (size_t i = 0; i < d->ncalls; i++)
        d->calls[i].d = d;
    return d->calls;
}

/* Send every call of the batch; vm_disc_next runs once all are answered (each call has its own timeout, so
 * that happens). A call that cannot be sent fails at once. */
static void vm_batch_send(struct vm_disc *d)
{
    d->left = 1; /* held while sending: a synchronous failure must not resume the machine mid-loop */
    for (size_t i = 0; i < d->ncalls; i++) {
        struct vm_call *k = &d->calls[i];
        d->left++;
        int r = qmp_call(d->c, k->cmd, k->args, NULL, 0, 0, vm_call_cb, k);
        k->args = NULL;
        if (r < 0) {
            k->done = true;
            k->err = r;
            smmu_error_set(&k->e, r, "%s: not connected to QEMU", k->what);
            d->left--;
        }
    }
    if (--d->left == 0)
        vm_disc_next(d);
}

/* The batch's outcome: 0, or the first failure in call order (with soft_qmp_errors, calls QEMU refused
 * (-EIO) do not fail the batch: their ret stays NULL). */
static int vm_batch_result(struct vm_disc *d)
{
    if (!d->calls)
        return smmu_error_set(&d->err, -ENOMEM, "topology discovery: out of memory");
    for (size_t i = 0; i < d->ncalls; i++)
        if (d->calls[i].err < 0 && !(d->soft_qmp_errors && d->calls[i].err == -EIO)) {
            smmu_error_copy(&d->err, &d->calls[i].e);
            return d->calls[i].err;
        }
    return 0;
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

/* A uint64 property ("size", "uint32"): absent → dflt. QEMU prints sizes as bare integers up to 2^64-1, which the
 * decoder turns into reals when they do not fit json_int_t (18446744073709551615 becomes 2^64 as a double):
 * both forms are read, a real at or above 2^64 is UINT64_MAX (the unset value). A negative, fractional or
 * non-number value is -EPROTO naming the object: a wrong window would mislead the planner and doctor. */
static int prop_u64(json_t *entry, const char *path, const char *type, const char *name, uint64_t dflt,
                    uint64_t *out, struct smmu_error *err)
{
    json_t *v = smmu_vm_prop(entry, name);
    *out = dflt;
    if (!v)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) >= 18446744073709551616.0) {
        *out = UINT64_MAX;
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) == (double)(uint64_t)json_real_value(v)) {
        *out = (uint64_t)json_real_value(v);
        return 0;
    }
    return smmu_error_set(err, -EPROTO, "QOM properties of %s (%s): '%s' is not a non-negative integer in QEMU's reply",
                          path, type, name);
}

/* One reserve property: set unless absent or QEMU's unset default. */
static int vm_reserve(struct smmu_rootport *p, json_t *e, const char *type, const char *name, uint64_t unset,
                      struct smmu_reserve *out, struct smmu_error *err)
{
    uint64_t v;
    int r = prop_u64(e, p->path, type, name, unset, &v, err);
    if (r < 0)
        return r;
    out->set = v != unset;
    out->value = out->set ? v : 0;
    return 0;
}

/* The root port's resource reserve properties (DESIGN §8); unset when absent (ioh3420 has none). */
static int vm_port_reserves(struct smmu_rootport *p, json_t *e, const char *type, struct smmu_error *err)
{
    int r;
    if ((r = vm_reserve(p, e, type, "pref64-reserve", SMMU_RESERVE_UNSET, &p->pref64_reserve, err)) < 0 ||
        (r = vm_reserve(p, e, type, "pref32-reserve", SMMU_RESERVE_UNSET, &p->pref32_reserve, err)) < 0 ||
        (r = vm_reserve(p, e, type, "mem-reserve", SMMU_RESERVE_UNSET, &p->mem_reserve, err)) < 0 ||
        (r = vm_reserve(p, e, type, "io-reserve", SMMU_RESERVE_UNSET, &p->io_reserve, err)) < 0)
        return r;
    return vm_reserve(p, e, type, "bus-reserve", SMMU_BUS_RESERVE_UNSET, &p->bus_reserve, err);
}

/* ---- properties of many paths: qom-list-get, or qom-list + qom-get ---- */

/* Properties the fallback fetches one by one (everything the topology needs). */
static bool vm_wanted(const char *name, const char *type)
{
    static const char *const names[] = {"type", "parent_bus", "primary-bus", "accel", "identifier", "bus_nr",
                                        "numa_node", "chassis", "port", "hotplug", "host", "sysfsdev",
                                        "iommufd", "hotplugged", "acpi_uid", "pref64-reserve",
                                        "pref32-reserve", "mem-reserve", "io-reserve", "bus-reserve", NULL};
    for (size_t i = 0; names[i]; i++)
        if (!strcmp(name, names[i]))
            return true;
    return !strncmp(name, "child[", 6) || (type && !strcmp(type, "child<PCIE>"));
}

/* Start fetching the properties of d->paths into d->props (resumes in vm_disc_next). With use_list_get one
 * qom-list-get; QEMU before 10.1 (CommandNotFound) falls back to qom-list each path, then one qom-get per
 * wanted property, each stage pipelined. A property QEMU refuses to read is left without a value (as
 * qom-list-get does). Returns 1 when started, 0 when there is nothing to fetch (d->props is then []). */
static int vm_props_start(struct vm_disc *d)
{
    size_t n = json_array_size(d->paths);
    json_decref(d->props);
    d->props = NULL;
    if (n == 0) {
        d->pp = VM_PP_NONE;
        d->props = json_array();
        return d->props ? 0 : smmu_error_set(&d->err, -ENOMEM, "topology discovery: out of memory");
    }
    if (d->use_list_get) {
        struct vm_call *k = vm_batch_new(d, 1, false);
        d->pp = VM_PP_LIST_GET;
        if (k) {
            k->cmd = "qom-list-get";
            snprintf(k->what, sizeof(k->what), "qom-list-get of %zu paths", n);
            k->args = json_pack("{s:O}", "paths", d->paths);
        }
    } else {
        struct vm_call *lists = vm_batch_new(d, n, false);
        d->pp = VM_PP_LISTS;
        for (size_t i = 0; lists && i < n; i++) {
            const char *p = json_string_value(json_array_get(d->paths, i));
            lists[i].cmd = "qom-list";
            snprintf(lists[i].what, sizeof(lists[i].what), "qom-list %s", p);
            lists[i].args = json_pack("{s:s}", "path", p);
        }
    }
    vm_batch_send(d);
    return 1;
}

/* The fallback's qom-list replies are in: one qom-get per wanted property. */
static int vm_props_gets(struct vm_disc *d)
{
    size_t n = json_array_size(d->paths), i, j, ngets = 0, k = 0;
    struct vm_call *lists = d->calls;
    for (i = 0; i < n; i++) {
        if (!json_is_array(lists[i].ret))
            return smmu_error_set(&d->err, -EPROTO, "%s: the reply is not an array", lists[i].what);
        ngets += json_array_size(lists[i].ret);
    }
    json_t *result = json_array();
    json_t **owner = calloc(ngets ? ngets : 1, sizeof(*owner));
    struct vm_call *gets = calloc(ngets ? ngets : 1, sizeof(*gets));
    if (!result || !owner || !gets) {
        json_decref(result);
        free(owner);
        free(gets);
        return smmu_error_set(&d->err, -ENOMEM, "topology discovery: out of memory");
    }
    for (i = 0; i < n; i++) {
        const char *path = json_string_value(json_array_get(d->paths, i));
        json_t *entry = json_pack("{s:[]}", "properties"), *p;
        json_array_append_new(result, entry);
        json_array_foreach(lists[i].ret, j, p) {
            const char *name = json_string_value(json_object_get(p, "name"));
            const char *type = json_string_value(json_object_get(p, "type"));
            if (!name || !vm_wanted(name, type))
                continue;
            gets[k].cmd = "qom-get";
            gets[k].d = d;
            snprintf(gets[k].what, sizeof(gets[k].what), "qom-get %s %s", path, name);
            gets[k].args = json_pack("{s:s,s:s}", "path", path, "property", name);
            owner[k] = json_pack("{s:s,s:s}", "name", name, "type", type ? type : "");
            json_array_append(json_object_get(entry, "properties"), owner[k]);
            k++;
        }
    }
    vm_batch_free(d->calls, d->ncalls);
    d->calls = gets;
    d->ncalls = k;
    d->soft_qmp_errors = true;
    d->pp = VM_PP_GETS;
    d->pp_result = result;
    d->pp_owner = owner;
    d->pp_k = k;
    vm_batch_send(d);
    return 1;
}

static void vm_props_owner_free(struct vm_disc *d)
{
    for (size_t i = 0; d->pp_owner && i < d->pp_k; i++)
        json_decref(d->pp_owner[i]);
    free(d->pp_owner);
    d->pp_owner = NULL;
    d->pp_k = 0;
    json_decref(d->pp_result);
    d->pp_result = NULL;
}

/* A batch of the props fetch was answered: 1 more to come (a batch was sent), 0 d->props is complete,
 * <0 failed (d->err set). */
static int vm_props_step(struct vm_disc *d)
{
    size_t n = json_array_size(d->paths), i;
    int r;
    json_t *ret, *e;
    switch (d->pp) {
    case VM_PP_NONE:
        return 0;
    case VM_PP_LIST_GET:
        if (!d->calls)
            return smmu_error_set(&d->err, -ENOMEM, "topology discovery: out of memory");
        if (d->calls[0].err == -EIO && !strcmp(d->calls[0].e.qmp_class, "CommandNotFound")) {
            d->use_list_get = false; /* QEMU before 10.1: fall back */
            return vm_props_start(d);
        }
        if ((r = vm_batch_result(d)) < 0)
            return r;
        ret = d->calls[0].ret;
        if (!json_is_array(ret) || json_array_size(ret) != n)
            return smmu_error_set(&d->err, -EPROTO, "qom-list-get of %zu paths: the reply is %s", n,
                                  json_is_array(ret) ? "an array of a different length" : "not an array");
        json_array_foreach(ret, i, e) {
            if (!json_is_object(e) || !json_is_array(json_object_get(e, "properties")))
                return smmu_error_set(&d->err, -EPROTO, "qom-list-get: the entry for %s has no \"properties\" array",
                                      json_string_value(json_array_get(d->paths, i)));
        }
        d->used_list_get = true;
        d->props = json_incref(ret);
        return 0;
    case VM_PP_LISTS:
        if ((r = vm_batch_result(d)) < 0)
            return r;
        return vm_props_gets(d);
    default:
        if ((r = vm_batch_result(d)) < 0) {
            vm_props_owner_free(d);
            return r;
        }
        for (i = 0; i < d->pp_k; i++)
            if (d->calls[i].ret)
                json_object_set(d->pp_owner[i], "value", d->calls[i].ret);
        d->props = json_incref(d->pp_result);
        vm_props_owner_free(d);
        return 0;
    }
}

/* ---- topology ---- */

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
        p->slot = prop_int(e, "addr", -1); /* devfn; absent in the qom-get fallback */
        p->slot = p->slot >= 0 ? p->slot >> 3 : -1;
        if ((r = vm_port_reserves(p, e, o->type, err)) < 0)
            return r;
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
    struct smmu_pxb *x = &t->pxbs[t->n_pxbs++];
    int numa_x = prop_int(e, "numa_node", -1), slot = prop_int(e, "addr", -1);
    copy_str(x->id, sizeof(x->id), o->anon ? "" : o->name);
    copy_str(x->path, sizeof(x->path), o->path);
    x->bus_nr = prop_int(e, "bus_nr", -1);
    x->numa_node = (numa_x < 0 || numa_x >= 128) ? -1 : numa_x;
    x->slot = slot >= 0 ? slot >> 3 : -1;
    x->vsmmu = -1;
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

static void vm_disc_free(struct vm_disc *d)
{
    vm_batch_free(d->calls, d->ncalls);
    vm_props_owner_free(d);
    free(d->objs);
    free(d->idx);
    json_decref(d->paths);
    json_decref(d->props);
    free(d);
}

static void vm_disc_finish(struct vm_disc *d, int r)
{
    if (r < 0) {
        if (!d->err.message[0])
            smmu_error_set(&d->err, r, "topology discovery failed: %s", strerror(-r));
        smmu_topology_free(d->t);
    } else {
        d->t->has_qom_list_get = d->used_list_get;
    }
    d->cb(r, r < 0 ? &d->err : NULL, d->payload);
    vm_disc_free(d);
}

/* Round trip 1 answered: collect the objects, ask for the properties of those that make up the topology. */
static int vm_disc_lists_done(struct vm_disc *d)
{
    static const char *const bases[3] = {"/machine/peripheral", "/machine/peripheral-anon", "/objects"};
    int r;
    if ((r = vm_batch_result(d)) < 0 ||
        (r = vm_collect(d->calls[0].ret, bases[0], false, &d->objs, &d->nobjs, &d->err)) < 0 ||
        (r = vm_collect(d->calls[1].ret, bases[1], true, &d->objs, &d->nobjs, &d->err)) < 0 ||
        (r = vm_collect_iommufds(d->calls[2].ret, d->t, &d->err)) < 0)
        return r;
    d->idx = calloc(d->nobjs ? d->nobjs : 1, sizeof(*d->idx)); /* objs index for each path */
    if (!d->idx || !(d->paths = json_array()))
        return smmu_error_set(&d->err, -ENOMEM, "topology discovery: out of memory");
    for (size_t i = 0; i < d->nobjs; i++) {
        const char *ty = d->objs[i].type;
        if (!strcmp(ty, "arm-smmuv3") || !strcmp(ty, "pxb-pcie") || is_root_port_type(ty) || is_vfio_type(ty)) {
            json_array_append_new(d->paths, json_string(d->objs[i].path));
            d->idx[d->npaths++] = i;
            d->nv += !strcmp(ty, "arm-smmuv3");
            d->np += is_root_port_type(ty);
            d->nf += is_vfio_type(ty);
            d->nx += !strcmp(ty, "pxb-pcie");
        }
    }
    d->stage = VM_PROPS;
    return vm_props_start(d);
}

/* Round trip 2 answered: build vSMMUs, ports and vfio devices; ask for the ports' secondary buses. */
static int vm_disc_props_done(struct vm_disc *d)
{
    struct smmu_topology *t = d->t;
    json_t *props = d->props;
    size_t i;
    int r;
    t->vsmmus = calloc(d->nv ? d->nv : 1, sizeof(*t->vsmmus));
    t->ports = calloc(d->np ? d->np : 1, sizeof(*t->ports));
    t->vfio = calloc(d->nf ? d->nf : 1, sizeof(*t->vfio));
    t->pxbs = calloc(d->nx ? d->nx : 1, sizeof(*t->pxbs));
    if (!t->vsmmus || !t->ports || !t->vfio || !t->pxbs)
        return smmu_error_set(&d->err, -ENOMEM, "topology discovery: out of memory");
    for (i = 0; i < d->npaths; i++)
        if ((r = vm_add_object(t, &d->objs[d->idx[i]], json_array_get(props, i), &d->err)) < 0)
            return r;
    for (i = 0; i < d->npaths; i++)
        if (!strcmp(d->objs[d->idx[i]].type, "pxb-pcie"))
            vm_add_pxb(t, &d->objs[d->idx[i]], json_array_get(props, i));
    qsort(t->vsmmus, t->n_vsmmus, sizeof(*t->vsmmus), vsmmu_cmp);
    qsort(t->ports, t->n_ports, sizeof(*t->ports), port_cmp);
    for (size_t x = 0; x < t->n_pxbs; x++)
        for (size_t v = 0; v < t->n_vsmmus; v++)
            if (t->pxbs[x].id[0] && !strcmp(t->vsmmus[v].pxb_id, t->pxbs[x].id))
                t->pxbs[x].vsmmu = (int)v;
    for (size_t p = 0; p < t->n_ports; p++)
        for (size_t v = 0; v < t->n_vsmmus; v++)
            if (t->vsmmus[v].primary_bus[0] && !strcmp(t->ports[p].parent_bus, t->vsmmus[v].primary_bus))
                t->ports[p].vsmmu = (int)v;
    json_decref(d->paths);
    if (!(d->paths = json_array()))
        return smmu_error_set(&d->err, -ENOMEM, "topology discovery: out of memory");
    for (size_t p = 0; p < t->n_ports; p++)
        json_array_append_new(d->paths, json_string(t->ports[p].sec_bus));
    d->stage = VM_BUS_PROPS;
    return vm_props_start(d);
}

/* Round trip 3 answered: occupants. */
static void vm_disc_bus_done(struct vm_disc *d)
{
    struct smmu_topology *t = d->t;
    for (size_t p = 0; p < t->n_ports; p++)
        vm_add_occupant(&t->ports[p], json_array_get(d->props, p));
    /* vfio devices → their root port (the port whose occupant they are) */
    for (size_t f = 0; f < t->n_vfio; f++)
        for (size_t p = 0; p < t->n_ports; p++)
            if (!strcmp(t->ports[p].occupant_path, t->vfio[f].path))
                t->vfio[f].rootport = (int)p;
}

/* Resume after a batch was answered (or a stage had nothing to send). Loops while stages complete at once. */
static void vm_disc_next(struct vm_disc *d)
{
    int r;
    for (;;) {
        switch (d->stage) {
        case VM_LISTS:
            r = vm_disc_lists_done(d);
            break;
        case VM_PROPS:
            if ((r = vm_props_step(d)) == 0)
                r = vm_disc_props_done(d);
            break;
        default:
            if ((r = vm_props_step(d)) == 0) {
                vm_disc_bus_done(d);
                vm_disc_finish(d, 0);
                return;
            }
            break;
        }
        if (r < 0) {
            vm_disc_finish(d, r);
            return;
        }
        if (r > 0)
            return; /* a batch is in flight */
        /* r == 0: the stage had nothing to fetch; go on with the next one */
    }
}

int smmu_vm_discover_start(qmp_client *c, unsigned flags, struct smmu_topology *t, smmu_vm_discover_cb cb,
                           void *payload)
{
    static const char *const bases[3] = {"/machine/peripheral", "/machine/peripheral-anon", "/objects"};
    const struct qmp_greeting *g = qmp_client_greeting(c);
    struct vm_disc *d;
    struct vm_call *lists;

    memset(t, 0, sizeof(*t));
    if (!cb || !(d = calloc(1, sizeof(*d))))
        return -ENOMEM;
    if (g) {
        t->qemu_major = g->major;
        t->qemu_minor = g->minor;
        t->qemu_micro = g->micro;
    }
    d->c = c;
    d->t = t;
    d->cb = cb;
    d->payload = payload;
    d->use_list_get = !(flags & SMMU_VM_NO_QOM_LIST_GET);
    d->stage = VM_LISTS;
    /* Round trip 1: the three listings, pipelined. */
    lists = vm_batch_new(d, 3, false);
    for (size_t i = 0; lists && i < 3; i++) {
        lists[i].cmd = "qom-list";
        snprintf(lists[i].what, sizeof(lists[i].what), "qom-list %s", bases[i]);
        lists[i].args = json_pack("{s:s}", "path", bases[i]);
    }
    vm_batch_send(d);
    return 0;
}

struct vm_exists {
    char parent[SMMU_PATH_LEN];
    char name[SMMU_ID_LEN];
    smmu_vm_exists_cb cb;
    void *payload;
};

static void vm_exists_cb(qmp_client *c, int err, json_t *ret, const struct smmu_error *e, void *payload)
{
    struct vm_exists *x = payload;
    struct smmu_error my = SMMU_ERROR_INIT;
    json_t *ent;
    size_t i;
    int found = 0;
    (void)c;
    if (err < 0) {
        smmu_error_copy(&my, e);
        found = err;
    } else if (!json_is_array(ret)) {
        found = smmu_error_set(&my, -EPROTO, "qom-list %s: the reply is not an array", x->parent);
    } else {
        json_array_foreach(ret, i, ent) {
            const char *n = json_string_value(json_object_get(ent, "name"));
            if (n && !strcmp(n, x->name))
                found = 1;
        }
    }
    x->cb(found, found < 0 ? &my : NULL, x->payload);
    free(x);
}

int smmu_vm_qom_exists_start(qmp_client *c, const char *path, smmu_vm_exists_cb cb, void *payload,
                             struct smmu_error *err)
{
    const char *name = last_component(path);
    struct vm_exists *x = calloc(1, sizeof(*x));
    int r;
    if (!x)
        return smmu_error_set(err, -ENOMEM, "out of memory");
    snprintf(x->parent, sizeof(x->parent), "%.*s", (int)(name - path > 1 ? name - path - 1 : 1), path);
    snprintf(x->name, sizeof(x->name), "%s", name);
    x->cb = cb;
    x->payload = payload;
    r = qmp_call(c, "qom-list", json_pack("{s:s}", "path", x->parent), NULL, 0, 0, vm_exists_cb, x);
    if (r < 0) {
        free(x);
        return smmu_error_set(err, r, "qom-list %s: %s", path, r == -ENOTCONN ? "not connected to QEMU" : strerror(-r));
    }
    return 0;
}
