/* sim_model.c — the simulated machine: QOM objects, buses, devices, property tables, fds.
 *
 * Property tables and values are copied from QEMU 11.1.3 sessions (a64-04, a64-05, a64-15 transcripts);
 * instance-property order comes from replaying QEMU's insertion order through sim_ghash.
 */
#define _GNU_SOURCE
#include "sim.h"
#include "sim_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cprop {
    const char *name, *type;
};

#define DEV_COMMON {"parent_bus", "link<bus>"}, {"realized", "bool"}, {"hotplugged", "bool"}, \
                   {"hotpluggable", "bool"}
#define PCI_COMMON {"busnr", "busnr"}, {"failover_pair_id", "str"}, {"x-pcie-ext-tag", "bool"}, \
    {"addr", "str"}, {"romsize", "uint32"}, {"x-pcie-lnksta-dllla", "bool"}, {"rombar", "int32"}, \
    {"x-max-bounce-buffer-size", "size"}, {"x-pcie-ari-nextfn-1", "bool"}, {"x-pcie-err-unc-mask", "bool"}, \
    {"sriov-pf", "str"}, {"acpi-index", "uint32"}, {"multifunction", "bool"}, {"romfile", "str"}

static const struct cprop cp_smmu[] = {
    DEV_COMMON, {"memory", "link<memory-region>"}, {"secure-memory", "link<memory-region>"},
    {"primary-bus", "link<PCI>"}, {"bus_num", "uint8"}, {"smmu_per_bus", "bool"}, {"cmdqv", "OnOffAuto"},
    {"ats", "OnOffAuto"}, {"oas", "OasMode"}, {"ssidsize", "SsidSizeMode"}, {"ril", "OnOffAuto"},
    {"accel", "bool"}, {"stage", "str"}, {"msi-gpa", "uint64"}, {"identifier", "uint8"}, {NULL, NULL}};
static const struct cprop cp_rp[] = {
    DEV_COMMON, PCI_COMMON, {"x-pci-express-writeable-slt-bug", "bool"}, {"port", "uint8"},
    {"aer_log_max", "uint16"}, {"x-do-not-expose-native-hotplug-cap", "bool"}, {"hotplug", "bool"},
    {"slot", "uint16"}, {"chassis", "uint8"}, {"power_controller_present", "bool"},
    {"x-width", "PCIELinkWidth"}, {"mem-reserve", "size"}, {"bus-reserve", "uint32"},
    {"x-speed", "PCIELinkSpeed"}, {"pref64-reserve", "size"}, {"io-reserve", "size"},
    {"pref32-reserve", "size"}, {NULL, NULL}};
static const struct cprop cp_pxb[] = {
    DEV_COMMON, PCI_COMMON, {"bypass_iommu", "bool"}, {"bus_nr", "uint8"}, {"numa_node", "uint16"},
    {NULL, NULL}};
/* vfio-pci: QEMU's ~55 properties with their defaults, in qom-list order (from a64-05) */
struct vprop {
    const char *name, *type, *defval; /* defval: JSON text, NULL = none */
};
static const struct vprop vfio_props[] = {
#include "sim_vfio_props.inc"
    {NULL, NULL, NULL}};
static struct cprop cp_vfio[80];

static const struct cprop *vfio_class_props(void)
{
    static const struct cprop common[] = {DEV_COMMON};
    if (!cp_vfio[0].name) {
        size_t n = 0;
        for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
            cp_vfio[n++] = common[i];
        for (size_t i = 0; vfio_props[i].name && n + 1 < sizeof(cp_vfio) / sizeof(cp_vfio[0]); i++) {
            cp_vfio[n].name = vfio_props[i].name;
            cp_vfio[n++].type = vfio_props[i].type;
        }
    }
    return cp_vfio;
}

static json_t *vfio_default(const char *name)
{
    for (size_t i = 0; vfio_props[i].name; i++)
        if (!strcmp(vfio_props[i].name, name)) {
            const char *dv = vfio_props[i].defval;
            if (dv)
                return sim_json_loads(dv, strlen(dv));
            if (!strcmp(vfio_props[i].type, "str"))
                return json_string("");
            return json_integer(!strcmp(name, "x-nv-gpudirect-clique") ? 255 : 0);
        }
    return NULL;
}
static const struct cprop cp_e1000e[] = {
    DEV_COMMON, PCI_COMMON, {"subsys", "uint16"}, {"subsys_ven", "uint16"}, {"netdev", "str"}, {"init-vet", "bool"},
    {"disable_vnet_hdr", "uint8"}, {"migrate-timadj", "bool"}, {"mac", "str"}, {NULL, NULL}};
static const struct cprop cp_pci[] = {DEV_COMMON, PCI_COMMON, {NULL, NULL}};
static const struct cprop cp_pxbhost[] = {
    DEV_COMMON, {"bypass-iommu", "bool"}, {"x-config-reg-migration-enabled", "bool"}, {NULL, NULL}};
/* a bus's "realized" is an instance property (added at bus init, before its links) */
static const struct cprop cp_pxbbus[] = {{"acpi_uid", "uint32"}, {NULL, NULL}};
static const struct cprop cp_bus[] = {{NULL, NULL}};
static const struct cprop cp_iommufd[] = {{"fd", "string"}, {NULL, NULL}};
static const struct cprop cp_none[] = {{NULL, NULL}};

static const struct cprop *class_props(const struct sim_obj *o)
{
    switch (o->kind) {
    case OBJ_DEV:
        if (!strcmp(o->type, "arm-smmuv3")) return cp_smmu;
        if (!strcmp(o->type, "pcie-root-port")) return cp_rp;
        if (!strcmp(o->type, "pxb-pcie")) return cp_pxb;
        if (!strcmp(o->type, "vfio-pci")) return vfio_class_props();
        if (!strcmp(o->type, "e1000e")) return cp_e1000e;
        return cp_pci;
    case OBJ_BUS: return !strcmp(o->type, "pxb-pcie-bus") ? cp_pxbbus : cp_bus;
    case OBJ_PXB_HOST: return cp_pxbhost;
    case OBJ_IOMMUFD: return cp_iommufd;
    default: return cp_none;
    }
}

/* ---- objects ---- */

struct sim_obj *sim_obj_new(struct sim *s, const char *path, const char *type, enum sim_obj_kind kind)
{
    struct sim_obj *o = calloc(1, sizeof(*o));
    snprintf(o->path, sizeof(o->path), "%s", path);
    snprintf(o->type, sizeof(o->type), "%s", type);
    o->kind = kind;
    o->inst = sim_ghash_new();
    o->next = s->objs;
    s->objs = o;
    return o;
}

static void iprop_free(struct sim_iprop *p)
{
    if (!p)
        return;
    free(p->type);
    json_decref(p->value);
    free(p);
}

void sim_obj_del(struct sim *s, struct sim_obj *o)
{
    struct sim_obj **pp;
    long pos = -1;
    void *v;
    if (!o)
        return;
    for (pp = &s->objs; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    while (sim_ghash_next(o->inst, &pos, NULL, &v))
        iprop_free(v);
    sim_ghash_free(o->inst);
    free(o);
}

void sim_obj_set(struct sim_obj *o, const char *name, const char *type, json_t *value)
{
    struct sim_iprop *p = sim_ghash_lookup(o->inst, name);
    if (p) {
        json_decref(p->value);
        p->value = value;
        return;
    }
    p = calloc(1, sizeof(*p));
    p->type = strdup(type);
    p->value = value;
    sim_ghash_insert(o->inst, name, p);
}

void sim_obj_unset(struct sim_obj *o, const char *name)
{
    iprop_free(sim_ghash_remove(o->inst, name));
}

struct sim_obj *sim_obj_find(struct sim *s, const char *path)
{
    for (struct sim_obj *o = s->objs; o; o = o->next)
        if (!strcmp(o->path, path))
            return o;
    return NULL;
}

struct sim_obj *sim_resolve(struct sim *s, const char *path, bool *ambiguous)
{
    struct sim_obj *found = NULL;
    size_t n = strlen(path);
    if (ambiguous)
        *ambiguous = false;
    if (path[0] == '/') {
        char tmp[SIM_PATH_MAX];
        /* QEMU ignores empty components ("//x" == "/x") and a trailing "/" */
        snprintf(tmp, sizeof(tmp), "%s", path);
        while (strlen(tmp) > 1 && tmp[strlen(tmp) - 1] == '/')
            tmp[strlen(tmp) - 1] = 0;
        return sim_obj_find(s, tmp);
    }
    if (!n)
        return NULL;
    for (struct sim_obj *o = s->objs; o; o = o->next) {
        size_t l = strlen(o->path);
        if (l > n && o->path[l - n - 1] == '/' && !strcmp(o->path + l - n, path)) {
            if (found) {
                if (ambiguous)
                    *ambiguous = true;
                return NULL;
            }
            found = o;
        }
    }
    return found;
}

const char *sim_dev_path(const struct sim_dev *d) { return d->obj->path; }
const char *sim_bus_path(const struct sim_bus *b) { return b->obj->path; }

struct sim_dev *sim_dev_by_id(struct sim *s, const char *id)
{
    for (struct sim_dev *d = s->devs; d; d = d->next)
        if (d->id[0] && !strcmp(d->id, id))
            return d;
    return NULL;
}

struct sim_bus *sim_bus_by_name(struct sim *s, const char *name)
{
    /* QEMU searches the bus tree depth-first from the main system bus: root and pxb buses come before
     * root-port secondary buses (an anonymous port's bus, also named pcie.0, is found second). */
    for (int pass = 0; pass < 2; pass++)
        for (struct sim_bus *b = s->buses; b; b = b->next)
            if ((pass == 0) == (b->kind != BUS_PORT) && !strcmp(b->name, name))
                return b;
    return NULL;
}

static struct sim_bus *bus_new(struct sim *s, const char *name, enum sim_bus_kind kind, const char *path,
                               const char *type)
{
    struct sim_bus *b = calloc(1, sizeof(*b)), **pp;
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->kind = kind;
    b->obj = sim_obj_new(s, path, type, OBJ_BUS);
    b->obj->bus = b;
    sim_obj_set(b->obj, "realized", "bool", json_true());
    for (pp = &s->buses; *pp; pp = &(*pp)->next)
        ;
    *pp = b;
    return b;
}

/* ---- fds ---- */

int sim_vfd_alloc(struct sim *s)
{
    for (int i = SIM_FD_BASE; i < (int)sizeof(s->vfd_used); i++)
        if (!s->vfd_used[i]) {
            s->vfd_used[i] = 1;
            return i;
        }
    return -1;
}

void sim_vfd_release(struct sim *s, int vfd)
{
    if (vfd >= 0 && vfd < (int)sizeof(s->vfd_used))
        s->vfd_used[vfd] = 0;
}

int sim_take_pending_fd(struct sim *s, int *vfd)
{
    int fd;
    if (!s->npending)
        return -1;
    fd = s->pending_fds[0];
    *vfd = s->pending_vfds[0];
    for (int i = 1; i < s->npending; i++) {
        close(s->pending_fds[i]);
        sim_vfd_release(s, s->pending_vfds[i]);
    }
    s->npending = 0;
    return fd;
}

void sim_drop_pending_fds(struct sim *s)
{
    for (int i = 0; i < s->npending; i++) {
        close(s->pending_fds[i]);
        sim_vfd_release(s, s->pending_vfds[i]);
    }
    s->npending = 0;
}

int sim_fd_param(struct sim *s, const char *name, int *vfd, char *desc, size_t desclen)
{
    if (name[0] >= '0' && name[0] <= '9') {
        char *end;
        long n = strtol(name, &end, 10);
        if (*end || n < 0) {
            snprintf(desc, desclen, "Invalid file descriptor number '%s'", name);
            return -1;
        }
        /* a raw number names an fd QEMU already holds: find it among ours */
        for (struct sim_fdset *fs = s->fdsets; fs; fs = fs->next)
            for (struct sim_fdset_fd *f = fs->fds; f; f = f->next)
                if (f->vfd == n) {
                    *vfd = -1; /* still owned by the fdset */
                    return f->fd;
                }
        for (struct sim_namedfd *f = s->namedfds; f; f = f->next)
            if (f->vfd == n) {
                *vfd = -1;
                return f->fd;
            }
        *vfd = -1;
        return -2; /* accepted but not ours (e.g. a number QEMU would hold for itself) */
    }
    for (struct sim_namedfd **pp = &s->namedfds; *pp; pp = &(*pp)->next) {
        struct sim_namedfd *f = *pp;
        if (!strcmp(f->name, name)) {
            int fd = f->fd;
            *vfd = f->vfd;
            *pp = f->next;
            free(f);
            return fd;
        }
    }
    snprintf(desc, desclen, "File descriptor named '%s' has not been found", name);
    return -1;
}

void sim_keep_fd(struct sim *s, const char *name, const char *by, int fd, int vfd)
{
    struct sim_keptfd *k = calloc(1, sizeof(*k));
    snprintf(k->name, sizeof(k->name), "%s", name);
    snprintf(k->by, sizeof(k->by), "%s", by);
    k->fd = fd;
    k->vfd = vfd;
    k->next = s->kept;
    s->kept = k;
}

/* ---- clock / run state ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sim_vclock(struct sim *s)
{
    int64_t t = now_ms();
    if (s->runstate == RS_RUNNING)
        s->vclock_ms += t - s->vclock_last_real;
    s->vclock_last_real = t;
    return s->vclock_ms + s->vclock_offset_ms;
}

void sim_set_runstate(struct sim *s, enum sim_runstate rs)
{
    sim_vclock(s);
    s->runstate = rs;
}

/* ---- machine ---- */

struct sim *sim_new(void)
{
    struct sim *s = calloc(1, sizeof(*s));
    s->unplug_default.mode = UNPLUG_AUTO;
    s->unplug_default.delay_ms = 1;
    s->vclock_last_real = now_ms();
    return s;
}

int sim_machine_init(struct sim *s, bool q35)
{
    struct sim_obj *o;
    s->q35 = q35;
    s->unattached_next = q35 ? 22 : 41;
    sim_obj_new(s, "/machine", q35 ? "pc-q35-11.1-machine" : "virt-11.1-machine", OBJ_OTHER);
    s->o_peripheral = sim_obj_new(s, "/machine/peripheral", "container", OBJ_CONTAINER);
    s->o_anon = sim_obj_new(s, "/machine/peripheral-anon", "container", OBJ_CONTAINER);
    s->o_objects = sim_obj_new(s, "/objects", "container", OBJ_CONTAINER);
    s->root_bus = bus_new(s, "pcie.0", BUS_ROOT, q35 ? "/machine/q35/pcie.0" : "/machine/unattached/device[5]/pcie.0",
                          "PCIE");
    s->root_bus->hotpluggable = false;
    /* the machine's own devices on pcie.0 (their child[N] links come first) */
    sim_obj_set(s->root_bus->obj, "hotplug-handler", "link<hotplug-handler>",
                json_string(q35 ? "/machine/unattached/device[2]" : ""));
    if (q35) {
        sim_obj_set(s->root_bus->obj, "child[0]", "link<mch>", json_string("/machine/q35/mch"));
        sim_obj_set(s->root_bus->obj, "child[1]", "link<ICH9-LPC>", json_string("/machine/unattached/device[2]"));
        sim_obj_set(s->root_bus->obj, "child[2]", "link<ich9-ahci>", json_string("/machine/unattached/device[12]"));
        sim_obj_set(s->root_bus->obj, "child[3]", "link<ICH9-SMB>", json_string("/machine/unattached/device[13]"));
        s->root_bus->max_index = 4;
    } else {
        sim_obj_set(s->root_bus->obj, "child[0]", "link<gpex-root>",
                    json_string("/machine/unattached/device[5]/gpex_root"));
        s->root_bus->max_index = 1;
    }
    /* the host bridge sits in slot 0 (and q35's ICH9 functions in slot 31) */
    s->root_bus->slots[0] = (struct sim_dev *)-1;
    if (q35)
        for (int f = 0; f < 8; f++)
            s->root_bus->slots[0xf8 + f] = (struct sim_dev *)-1;
    o = s->o_objects; /* the monitor is created before the machine's RAM backend */
    sim_obj_set(o, "compat_monitor0", "child<monitor-qmp>", json_string("/objects/compat_monitor0"));
    sim_obj_set(o, q35 ? "pc.ram" : "mach-virt.ram", "child<memory-backend-ram>",
                json_string(q35 ? "/objects/pc.ram" : "/objects/mach-virt.ram"));
    return 0;
}

struct sim_dev *sim_dev_new(struct sim *s, const char *driver, const char *id)
{
    struct sim_dev *d = calloc(1, sizeof(*d)), **pp;
    char path[SIM_PATH_MAX];
    snprintf(d->driver, sizeof(d->driver), "%s", driver);
    d->held_fd = -1;
    d->held_vfd = -1;
    d->numa_node = 128;
    d->hotplug = true;
    d->res_pref64 = d->res_pref32 = d->res_mem = d->res_io = UINT64_MAX;
    d->res_bus = UINT32_MAX;
    d->devfn = -1;
    if (id && id[0]) {
        snprintf(d->id, sizeof(d->id), "%s", id);
        snprintf(path, sizeof(path), "/machine/peripheral/%s", id);
        sim_obj_set(s->o_peripheral, id, "", NULL);
    } else {
        int n = 0;
        char name[32];
        for (;; n++) {
            snprintf(name, sizeof(name), "device[%d]", n);
            if (!sim_ghash_contains(s->o_anon->inst, name))
                break;
        }
        snprintf(d->anon, sizeof(d->anon), "%s", name);
        snprintf(path, sizeof(path), "/machine/peripheral-anon/%s", name);
        sim_obj_set(s->o_anon, name, "", NULL);
    }
    d->obj = sim_obj_new(s, path, driver, OBJ_DEV);
    d->obj->dev = d;
    {
        char ty[64];
        struct sim_obj *c = d->id[0] ? s->o_peripheral : s->o_anon;
        struct sim_iprop *p = sim_ghash_lookup(c->inst, d->id[0] ? d->id : d->anon);
        snprintf(ty, sizeof(ty), "child<%s>", driver);
        free(p->type);
        p->type = strdup(ty);
        p->value = json_string(path);
    }
    for (pp = &s->devs; *pp; pp = &(*pp)->next)
        ;
    *pp = d;
    return d;
}

static void add_mr(struct sim_dev *d, const char *name)
{
    char v[SIM_PATH_MAX + 64];
    snprintf(v, sizeof(v), "%s/%s", d->obj->path, name);
    sim_obj_set(d->obj, name, "child<memory-region>", json_string(v));
}

struct sim_dev *sim_vsmmu_for_bus(struct sim *s, struct sim_bus *bus)
{
    struct sim_bus *root = bus;
    if (bus && bus->kind == BUS_PORT && bus->owner)
        root = bus->owner->parent_bus;
    for (struct sim_dev *d = s->devs; d; d = d->next)
        if (!strcmp(d->driver, "arm-smmuv3") && d->primary_bus == root)
            return d;
    return NULL;
}

/* Attach a device on a bus: slot, child[N] link, QOM instance properties QEMU creates at realize. */
void sim_dev_attach(struct sim *s, struct sim_dev *d, struct sim_bus *bus, int devfn)
{
    char name[64], v[SIM_PATH_MAX];
    d->parent_bus = bus;
    d->devfn = devfn;
    bus->slots[devfn] = d;
    d->child_index = bus->max_index++;
    snprintf(name, sizeof(name), "child[%d]", d->child_index);
    snprintf(v, sizeof(v), "link<%s>", d->driver);
    sim_obj_set(bus->obj, name, v, json_string(d->obj->path));
    if (!strcmp(d->driver, "e1000e")) {
        d->mac_index = s->nic_count++;
        sim_obj_set(d->obj, "bootindex", "int32", json_integer(-1)); /* instance_init */
    }
    if (!strcmp(d->driver, "vfio-pci"))
        sim_obj_set(d->obj, "bootindex", "int32", json_integer(-1));
    add_mr(d, "bus master container[0]");
    if (!strcmp(d->driver, "e1000e")) {
        static const char *mrs[] = {"e1000e-mmio[0]", "e1000e-flash[0]", "e1000e-io[0]", "e1000e-msix[0]",
                                    "msix-table[0]", "msix-pba[0]", "e1000e.rom[0]"};
        for (size_t i = 0; i < sizeof(mrs) / sizeof(mrs[0]); i++)
            add_mr(d, mrs[i]);
    }
    if (bus->kind != BUS_ROOT && bus->kind != BUS_PXB)
        add_mr(d, "bus master[0]"); /* root-bus devices get it at machine-done */
}

void sim_dev_remove(struct sim *s, struct sim_dev *d)
{
    struct sim_dev **pp;
    char name[64];
    if (d->parent_bus) {
        d->parent_bus->slots[d->devfn] = NULL;
        snprintf(name, sizeof(name), "child[%d]", d->child_index);
        sim_obj_unset(d->parent_bus->obj, name);
    }
    if (d->id[0])
        sim_obj_unset(s->o_peripheral, d->id);
    else
        sim_obj_unset(s->o_anon, d->anon);
    sim_obj_del(s, d->obj);
    for (pp = &s->devs; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    if (d->held_fd >= 0) {
        close(d->held_fd);
        sim_vfd_release(s, d->held_vfd);
    }
    free(d);
}

/* ---- property values ---- */

static json_t *pci_common_value(struct sim *s, const struct sim_dev *d, const char *n)
{
    if (!strcmp(n, "busnr")) return json_integer(d->parent_bus ? d->parent_bus->bus_nr : 0);
    if (!strcmp(n, "failover_pair_id")) return json_string("");
    if (!strcmp(n, "x-pcie-ext-tag")) return json_true();
    if (!strcmp(n, "addr")) return json_integer(d->devfn);
    if (!strcmp(n, "romsize")) return json_integer(!strcmp(d->driver, "e1000e") ? 262144 : 4294967295LL);
    if (!strcmp(n, "x-pcie-lnksta-dllla")) return json_true();
    if (!strcmp(n, "rombar")) return json_integer(-1);
    if (!strcmp(n, "x-max-bounce-buffer-size")) return json_integer(4096);
    if (!strcmp(n, "x-pcie-ari-nextfn-1")) return json_false();
    if (!strcmp(n, "x-pcie-err-unc-mask")) return json_true();
    if (!strcmp(n, "sriov-pf")) return json_string("");
    if (!strcmp(n, "acpi-index")) return json_integer(0);
    if (!strcmp(n, "multifunction")) return json_false();
    if (!strcmp(n, "romfile")) return json_string(!strcmp(d->driver, "e1000e") ? "efi-e1000e.rom" : "");
    (void)s;
    return NULL;
}

static bool dev_hotpluggable(const struct sim_dev *d)
{
    if (!strcmp(d->driver, "arm-smmuv3") || !strcmp(d->driver, "pxb-pcie"))
        return false;
    return d->parent_bus && d->parent_bus->hotpluggable;
}

/* Value of class property n of o; NULL = not readable. */
static json_t *class_value(struct sim *s, struct sim_obj *o, const char *n)
{
    struct sim_dev *d = o->dev;
    if (o->kind == OBJ_DEV) {
        if (!strcmp(n, "parent_bus"))
            return json_string(d->parent_bus ? d->parent_bus->obj->path : "/machine/unattached/sysbus");
        if (!strcmp(n, "realized")) return json_true();
        if (!strcmp(n, "hotplugged")) return json_boolean(d->hotplugged);
        if (!strcmp(n, "hotpluggable")) return json_boolean(dev_hotpluggable(d));
        if (!strcmp(d->driver, "arm-smmuv3")) {
            if (!strcmp(n, "memory")) return json_string("/machine/unattached/system[0]");
            if (!strcmp(n, "secure-memory")) return json_string("");
            if (!strcmp(n, "primary-bus")) return json_string(d->primary_bus ? d->primary_bus->obj->path : "");
            if (!strcmp(n, "bus_num")) return json_integer(0);
            if (!strcmp(n, "smmu_per_bus")) return json_true();
            if (!strcmp(n, "accel")) return json_boolean(d->accel);
            if (!strcmp(n, "stage")) return json_string("");
            if (!strcmp(n, "msi-gpa")) return json_integer(0);
            if (!strcmp(n, "identifier")) return json_integer(d->identifier);
            return json_string("auto"); /* cmdqv ats oas ssidsize ril */
        }
        {
            json_t *v = pci_common_value(s, d, n);
            if (v)
                return v;
        }
        if (!strcmp(d->driver, "pcie-root-port")) {
            if (!strcmp(n, "port")) return json_integer(d->port);
            if (!strcmp(n, "aer_log_max")) return json_integer(8);
            if (!strcmp(n, "hotplug")) return json_boolean(d->hotplug);
            if (!strcmp(n, "slot")) return json_integer(d->slot);
            if (!strcmp(n, "chassis")) return json_integer(d->chassis);
            if (!strcmp(n, "power_controller_present")) return json_true();
            if (!strcmp(n, "x-width")) return json_string("32");
            if (!strcmp(n, "x-speed")) return json_string("16");
            if (!strcmp(n, "bus-reserve")) return json_integer(d->res_bus);
            if (!strcmp(n, "pref64-reserve")) return sim_json_u64(d->res_pref64);
            if (!strcmp(n, "pref32-reserve")) return sim_json_u64(d->res_pref32);
            if (!strcmp(n, "mem-reserve")) return sim_json_u64(d->res_mem);
            if (!strcmp(n, "io-reserve")) return sim_json_u64(d->res_io);
            return json_false();
        }
        if (!strcmp(d->driver, "pxb-pcie")) {
            if (!strcmp(n, "bypass_iommu")) return json_false();
            if (!strcmp(n, "bus_nr")) return json_integer(d->bus_nr);
            if (!strcmp(n, "numa_node")) return json_integer(d->numa_node);
        }
        if (!strcmp(d->driver, "vfio-pci")) {
            if (!strcmp(n, "host")) return json_string(d->host[0] ? d->host : "");
            if (!strcmp(n, "sysfsdev")) {
                char p[64];
                if (!d->host[0])
                    return json_string("");
                snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s", d->host);
                return json_string(p);
            }
            if (!strcmp(n, "iommufd")) {
                char p[SIM_PATH_MAX];
                if (!d->iommufd[0])
                    return json_string("");
                snprintf(p, sizeof(p), "/objects/%s", d->iommufd);
                return json_string(p);
            }
            if (!strcmp(n, "fd")) return NULL; /* write-only in QEMU */
            return vfio_default(n);
        }
        if (!strcmp(d->driver, "e1000e")) {
            char mac[32];
            snprintf(mac, sizeof(mac), "52:54:00:12:34:%02x", (0x56 + d->mac_index) & 0xff);
            if (!strcmp(n, "mac")) return json_string(mac);
            if (!strcmp(n, "netdev")) return json_string(d->netdev);
            if (!strcmp(n, "subsys")) return json_integer(0);
            if (!strcmp(n, "subsys_ven")) return json_integer(32902);
            if (!strcmp(n, "disable_vnet_hdr")) return json_integer(0);
            return json_true(); /* init-vet, migrate-timadj */
        }
        return NULL;
    }
    if (o->kind == OBJ_BUS) {
        if (!strcmp(n, "acpi_uid")) return json_integer(o->bus->bus_nr);
        if (!strcmp(n, "realized")) return json_true();
    }
    if (o->kind == OBJ_PXB_HOST) {
        if (!strcmp(n, "parent_bus")) return json_string("/machine/unattached/sysbus");
        if (!strcmp(n, "realized")) return json_true();
        if (!strcmp(n, "x-config-reg-migration-enabled")) return json_true();
        return json_false();
    }
    return NULL; /* iommufd fd: not readable */
}

json_t *sim_qom_list(struct sim *s, struct sim_obj *o)
{
    json_t *arr = json_array(), *inst = json_array();
    const struct cprop *cp = class_props(o);
    const char *k;
    void *v;
    long pos = -1;
    (void)s;
    json_array_append_new(arr, json_pack("{s:s,s:s}", "name", "type", "type", "string"));
    for (; cp->name; cp++)
        json_array_append_new(arr, json_pack("{s:s,s:s}", "name", cp->name, "type", cp->type));
    while (sim_ghash_next(o->inst, &pos, &k, &v)) {
        struct sim_iprop *p = v;
        if (k[0] == '\x01')
            continue;
        json_array_insert_new(inst, 0, json_pack("{s:s,s:s}", "name", k, "type", p->type));
    }
    json_array_extend(arr, inst);
    json_decref(inst);
    return arr;
}

json_t *sim_qom_get(struct sim *s, struct sim_obj *o, const char *prop, char *desc, size_t desclen)
{
    struct sim_iprop *p;
    if (!strcmp(prop, "type"))
        return json_string(o->type);
    for (const struct cprop *cp = class_props(o); cp->name; cp++)
        if (!strcmp(cp->name, prop)) {
            json_t *v = class_value(s, o, prop);
            if (!v)
                snprintf(desc, desclen, "Property '%s.%s' is not readable", o->type, prop);
            return v;
        }
    p = prop[0] != '\x01' ? sim_ghash_lookup(o->inst, prop) : NULL;
    if (p && p->value)
        return json_incref(p->value);
    if (p)
        snprintf(desc, desclen, "Property '%s.%s' is not readable", o->type, prop);
    else
        snprintf(desc, desclen, "Property '%s.%s' not found", o->type, prop);
    return NULL;
}

json_t *sim_qom_values(struct sim *s, struct sim_obj *o)
{
    json_t *arr = json_array(), *inst = json_array();
    const char *k;
    void *v;
    long pos = -1;
    json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "name", "type", "value", o->type, "type", "string"));
    for (const struct cprop *cp = class_props(o); cp->name; cp++) {
        json_t *e = json_pack("{s:s}", "name", cp->name), *val = class_value(s, o, cp->name);
        if (val)
            json_object_set_new(e, "value", val);
        json_object_set_new(e, "type", json_string(cp->type));
        json_array_append_new(arr, e);
    }
    while (sim_ghash_next(o->inst, &pos, &k, &v)) {
        struct sim_iprop *p = v;
        json_t *e;
        if (k[0] == '\x01')
            continue;
        e = json_pack("{s:s}", "name", k);
        if (p->value)
            json_object_set(e, "value", p->value);
        json_object_set_new(e, "type", json_string(p->type));
        json_array_insert_new(inst, 0, e);
    }
    json_array_extend(arr, inst);
    json_decref(inst);
    return arr;
}

/* ---- cold plug from the command line ---- */

/* key=value,... → json object (first bare word = driver/type) */
static json_t *parse_opts(const char *spec, const char *first_key)
{
    json_t *o = json_object();
    char *dup = strdup(spec), *save = NULL, *tok;
    int i = 0;
    for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save), i++) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            json_object_set_new(o, i == 0 ? first_key : tok, json_string(i == 0 ? tok : "on"));
            continue;
        }
        *eq = 0;
        json_object_set_new(o, tok, json_string(eq + 1));
    }
    free(dup);
    return o;
}

static const char *opt(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool opt_bool(json_t *o, const char *k)
{
    const char *v = opt(o, k);
    return v && (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes"));
}

/* QEMU's qemu_strtosz for a "size" property: decimal (a fraction only with a unit) or 0x hex (no unit), then at
 * most one unit letter of B K M G T P E (any case, powers of 1024), below 2^64. -1 when QEMU would refuse it. */
static int parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "BKMGTPE";
    const char *p = s, *u;
    uint64_t val = 0, mul = 1;
    double frac = 0;
    bool hex = !strncmp(s, "0x", 2) || !strncmp(s, "0X", 2);
    if (hex) {
        p += 2;
        if (!*p)
            return -1;
        for (; *p; p++) {
            int dgt = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
                    : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10 : -1;
            if (dgt < 0 || val > (UINT64_MAX >> 4))
                return -1;
            val = val << 4 | (uint64_t)dgt;
        }
        *out = val;
        return 0;
    }
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (val > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        val = val * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        double scale = 0.1;
        if (p[1] < '0' || p[1] > '9')
            return -1;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    if (*p) {
        char c = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        if (!(u = strchr(units, c)) || p[1])
            return -1;
        for (long k = u - units; k > 0; k--)
            mul <<= 10;
    }
    if (frac != 0 && mul == 1)
        return -1;
    if (val > UINT64_MAX / mul || (frac != 0 && val * mul > UINT64_MAX - (uint64_t)(frac * (double)mul)))
        return -1;
    *out = val * mul + (uint64_t)(frac * (double)mul);
    return 0;
}

/* The resource reserve properties of a pcie-root-port spec, with QEMU's property errors ("expects size",
 * "expects integer", "expects uint32_t") and then its realize errors (pci_bridge_qemu_reserve_cap_init) in
 * QEMU's order. 0, or -1 with msg. */
static int rp_reserves(json_t *o, const char *spec, struct sim_dev *tmp, bool realize, char *msg, size_t msglen)
{
    static const char *const names[] = {"mem-reserve", "pref64-reserve", "io-reserve", "pref32-reserve"};
    uint64_t *slots[] = {&tmp->res_mem, &tmp->res_pref64, &tmp->res_io, &tmp->res_pref32};
    const char *b = opt(o, "bus-reserve");
    if (!realize) {
        tmp->res_pref64 = tmp->res_pref32 = tmp->res_mem = tmp->res_io = UINT64_MAX;
        tmp->res_bus = UINT32_MAX;
        for (size_t i = 0; i < 4; i++) {
            const char *v = opt(o, names[i]);
            if (v && parse_size(v, slots[i]) < 0) {
                snprintf(msg, msglen, "-device %s: Parameter '%s' expects size", spec, names[i]);
                return -1;
            }
        }
        if (b) {
            char *end;
            long long l;
            errno = 0;
            l = strtoll(b, &end, 0);
            if (end == b || *end || errno) {
                snprintf(msg, msglen, "-device %s: Parameter 'bus-reserve' expects integer", spec);
                return -1;
            }
            if (l < 0 || l > (long long)UINT32_MAX) {
                snprintf(msg, msglen, "-device %s: Parameter 'bus-reserve' expects uint32_t", spec);
                return -1;
            }
            tmp->res_bus = (uint32_t)l;
        }
        return 0;
    }
    if (tmp->res_pref32 != UINT64_MAX && tmp->res_pref64 != UINT64_MAX) {
        snprintf(msg, msglen, "-device %s: PCI resource reserve cap: PREF32 and PREF64 conflict", spec);
        return -1;
    }
    if (tmp->res_mem != UINT64_MAX && tmp->res_mem >= (4ull << 30)) {
        snprintf(msg, msglen, "-device %s: PCI resource reserve cap: mem-reserve must be less than 4G", spec);
        return -1;
    }
    if (tmp->res_pref32 != UINT64_MAX && tmp->res_pref32 >= (4ull << 30)) {
        snprintf(msg, msglen, "-device %s: PCI resource reserve cap: pref32-reserve  must be less than 4G", spec);
        return -1;
    }
    return 0;
}

static int parse_addr(const char *a)
{
    unsigned slot = 0, fn = 0;
    if (!a)
        return -1;
    if (sscanf(a, "%x.%x", &slot, &fn) < 1)
        return -1;
    return (int)((slot << 3) | (fn & 7));
}

static int first_free(struct sim_bus *b)
{
    for (int devfn = 0; devfn < 256; devfn += 8)
        if (!b->slots[devfn])
            return devfn;
    return -1;
}

static void smmu_as_once(struct sim *s, struct sim_bus *bus, int devfn)
{
    struct sim_dev *smmu = sim_vsmmu_for_bus(s, bus);
    char name[96], v[SIM_PATH_MAX + 96];
    if (!smmu)
        return;
    /* one address space per (bus, devfn), cached for the VM's lifetime (unplug/replug reuses it) */
    if (bus->as_done[devfn])
        return;
    bus->as_done[devfn] = true;
    snprintf(name, sizeof(name), "smmuv3-iommu-memory-region-%d-%d[0]", devfn, s->mr_index++);
    snprintf(v, sizeof(v), "%s/%s", smmu->obj->path, name);
    sim_obj_set(smmu->obj, name, "child<smmuv3-iommu-memory-region>", json_string(v));
}

void sim_bus_as(struct sim *s, struct sim_bus *bus, int devfn)
{
    if (bus && bus->kind == BUS_PORT)
        smmu_as_once(s, bus, devfn);
}

void sim_endpoint_realized(struct sim *s, struct sim_dev *d)
{
    if (d->parent_bus && d->parent_bus->kind == BUS_PORT)
        smmu_as_once(s, d->parent_bus, d->devfn);
}

static void rp_realize(struct sim *s, struct sim_dev *d)
{
    char bp[SIM_PATH_MAX + 64];
    const char *bname = d->id[0] ? d->id : "pcie.0";
    static const char *win[] = {"pci_bridge_pref_mem[0]", "pci_bridge_mem[0]", "pci_bridge_io[1]",
                                "pci_bridge_vga_io_lo[0]", "pci_bridge_vga_io_hi[0]", "pci_bridge_vga_mem[0]"};
    /* pci_bridge_initfn: the secondary bus (qbus_init) first, then the bridge's address spaces */
    snprintf(bp, sizeof(bp), "%s/%s", d->obj->path, bname);
    d->sec_bus = bus_new(s, bname, BUS_PORT, bp, "PCIE");
    d->sec_bus->owner = d;
    d->sec_bus->hotpluggable = d->hotplug;
    d->sec_bus->bus_nr = 0;
    sim_obj_set(d->sec_bus->obj, "hotplug-handler", "link<hotplug-handler>",
                json_string(s->q35 && d->parent_bus == s->root_bus ? "/machine/unattached/device[2]" : d->obj->path));
    sim_obj_set(d->obj, bname, "child<PCIE>", json_string(bp));
    add_mr(d, "pci_bridge_pci[0]");
    add_mr(d, "pci_bridge_io[0]");
    for (size_t i = 0; i < sizeof(win) / sizeof(win[0]); i++)
        add_mr(d, win[i]);
    add_mr(d, "pcie-root-port-msix[0]");
    add_mr(d, "msix-table[0]");
    add_mr(d, "msix-pba[0]");
}

int sim_cold_device(struct sim *s, const char *spec, char *msg, size_t msglen)
{
    json_t *o = parse_opts(spec, "driver");
    const char *drv = opt(o, "driver"), *id = opt(o, "id"), *busname = opt(o, "bus");
    struct sim_dev *d, rp_res;
    struct sim_bus *bus = NULL;
    int devfn, rc = -1;
    if (!drv) {
        snprintf(msg, msglen, "-device %s: Parameter 'driver' is missing", spec);
        goto out;
    }
    if (id && sim_dev_by_id(s, id)) {
        snprintf(msg, msglen, "-device %s: Duplicate device ID '%s'", spec, id);
        goto out;
    }
    if (!strcmp(drv, "arm-smmuv3")) {
        const char *pb = opt(o, "primary-bus");
        struct sim_bus *b = pb ? sim_bus_by_name(s, pb) : NULL;
        if (s->q35) {
            snprintf(msg, msglen, "-device %s: 'arm-smmuv3' is not a valid device model name", spec);
            goto out;
        }
        if (!pb) {
            snprintf(msg, msglen, "-device %s: SMMU is not attached to any PCI bus!", spec);
            goto out;
        }
        if (!b) {
            snprintf(msg, msglen, "-device %s: Device '%s' not found", spec, pb);
            goto out;
        }
        if (b->kind == BUS_PORT) {
            snprintf(msg, msglen, "-device %s: SMMU should be attached to a default PCIe root complex(pcie.0) "
                     "or a pxb-pcie based root complex", spec);
            goto out;
        }
        for (struct sim_dev *x = s->devs; x; x = x->next)
            if (!strcmp(x->driver, "arm-smmuv3") && x->primary_bus == b) {
                snprintf(msg, msglen, "-device %s: An iommu is already attached to this bus", spec);
                goto out;
            }
        d = sim_dev_new(s, drv, id);
        d->primary_bus = b;
        d->accel = opt_bool(o, "accel");
        d->identifier = s->smmu_count++;
        add_mr(d, "arm-smmuv3[0]");
        for (int i = 0; i < 4; i++) {
            char n[32], v[96];
            snprintf(n, sizeof(n), "sysbus-irq[%d]", i);
            snprintf(v, sizeof(v), "/machine/unattached/device[1]/unnamed-gpio-in[%d]", 112 + 4 * d->identifier + i);
            sim_obj_set(d->obj, n, "link<irq>", json_string(v));
        }
        rc = 0;
        goto out;
    }
    if (strcmp(drv, "pxb-pcie") && strcmp(drv, "pcie-root-port") && strcmp(drv, "vfio-pci") &&
        strcmp(drv, "e1000e") && strcmp(drv, "virtio-net-pci") && strcmp(drv, "pcie-pci-bridge")) {
        snprintf(msg, msglen, "-device %s: '%s' is not a valid device model name", spec, drv);
        goto out;
    }
    bus = busname ? sim_bus_by_name(s, busname) : s->root_bus;
    if (!bus) {
        snprintf(msg, msglen, "-device %s: Bus '%s' not found", spec, busname);
        goto out;
    }
    if (!strcmp(drv, "pcie-root-port") && rp_reserves(o, spec, &rp_res, false, msg, msglen) < 0)
        goto out;
    devfn = opt(o, "addr") ? parse_addr(opt(o, "addr")) : first_free(bus);
    if (devfn < 0 || devfn > 255 || bus->slots[devfn]) {
        snprintf(msg, msglen, "-device %s: PCI: no slot/function available for %s, all in use or reserved",
                 spec, drv);
        goto out;
    }
    if (!strcmp(drv, "pcie-root-port") && rp_reserves(o, spec, &rp_res, true, msg, msglen) < 0)
        goto out;
    if (!strcmp(drv, "vfio-pci")) {
        if (!opt(o, "host") && !opt(o, "fd")) {
            snprintf(msg, msglen, "-device %s: No provided host device", spec);
            goto out;
        }
    }
    d = sim_dev_new(s, drv, id);
    sim_dev_attach(s, d, bus, devfn);
    if (!strcmp(drv, "pxb-pcie")) {
        char hp[64], bp[SIM_PATH_MAX];
        const char *nn = opt(o, "numa_node");
        d->bus_nr = opt(o, "bus_nr") ? atoi(opt(o, "bus_nr")) : 0;
        if (nn)
            d->numa_node = atoi(nn);
        snprintf(hp, sizeof(hp), "/machine/unattached/device[%d]", s->unattached_next++);
        d->pxb_host = sim_obj_new(s, hp, "pxb-host", OBJ_PXB_HOST);
        d->pxb_host->dev = d;
        snprintf(bp, sizeof(bp), "%s/%s", hp, d->id[0] ? d->id : "pcie.0");
        d->sec_bus = bus_new(s, d->id[0] ? d->id : "pcie.0", BUS_PXB, bp, "pxb-pcie-bus");
        d->sec_bus->owner = d;
        d->sec_bus->bus_nr = d->bus_nr;
        d->sec_bus->hotpluggable = false;
        sim_obj_set(d->sec_bus->obj, "hotplug-handler", "link<hotplug-handler>", json_string(""));
        sim_obj_set(d->pxb_host, d->sec_bus->name, "child<pxb-pcie-bus>", json_string(bp));
    } else if (!strcmp(drv, "pcie-root-port")) {
        d->chassis = opt(o, "chassis") ? atoi(opt(o, "chassis")) : 0;
        d->port = opt(o, "port") ? atoi(opt(o, "port")) : 0;
        d->slot = opt(o, "slot") ? atoi(opt(o, "slot")) : 0;
        if (opt(o, "hotplug"))
            d->hotplug = opt_bool(o, "hotplug");
        d->res_pref64 = rp_res.res_pref64;
        d->res_pref32 = rp_res.res_pref32;
        d->res_mem = rp_res.res_mem;
        d->res_io = rp_res.res_io;
        d->res_bus = rp_res.res_bus;
        rp_realize(s, d);
    } else {
        if (opt(o, "host"))
            snprintf(d->host, sizeof(d->host), "%s", opt(o, "host"));
        if (opt(o, "iommufd"))
            snprintf(d->iommufd, sizeof(d->iommufd), "%s", opt(o, "iommufd"));
        if (opt(o, "netdev"))
            snprintf(d->netdev, sizeof(d->netdev), "%s", opt(o, "netdev"));
        sim_endpoint_realized(s, d);
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int sim_cold_object(struct sim *s, const char *spec, char *msg, size_t msglen)
{
    json_t *o = parse_opts(spec, "qom-type");
    const char *type = opt(o, "qom-type"), *id = opt(o, "id");
    int rc = -1;
    if (!type || strcmp(type, "iommufd") || !id) {
        snprintf(msg, msglen, "-object %s: only iommufd objects with an id are simulated", spec);
        goto out;
    }
    {
        struct sim_iommufd *f = calloc(1, sizeof(*f)), **pp;
        char p[SIM_PATH_MAX];
        snprintf(f->id, sizeof(f->id), "%s", id);
        f->fd = f->vfd = -1;
        snprintf(p, sizeof(p), "/objects/%s", id);
        f->obj = sim_obj_new(s, p, "iommufd", OBJ_IOMMUFD);
        sim_obj_set(s->o_objects, id, "child<iommufd>", json_string(p));
        for (pp = &s->iommufds; *pp; pp = &(*pp)->next)
            ;
        *pp = f;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* Machine-done: devices directly on root buses get their bus-master region and IOMMU address space,
 * root buses walked in reverse registration order (QEMU's notifier list is LIFO), slots ascending. */
void sim_machine_done(struct sim *s)
{
    struct sim_bus *roots[256];
    int n = 0;
    if (s->q35) { /* ACPI PCI hotplug numbers the bridges' buses, newest first */
        int nports = 0, k = 0;
        for (struct sim_bus *b = s->buses; b; b = b->next)
            nports += b->kind == BUS_PORT;
        for (struct sim_bus *b = s->buses; b; b = b->next)
            if (b->kind == BUS_PORT)
                sim_obj_set(b->obj, "acpi-pcihp-bsel", "uint32", json_integer(nports - 1 - k++));
    }
    /* Every PCI bus registered a machine-done notifier when it was created, and QEMU runs them newest first:
     * each gives its devices their bus-master address space, behind a vSMMU an IOMMU memory region numbered by
     * the global counter. So the devices behind the last root port come first, the pxbs' own ports last. */
    for (struct sim_bus *b = s->buses; b; b = b->next)
        if (n < 256)
            roots[n++] = b;
    for (int i = n - 1; i >= 0; i--)
        for (int devfn = 0; devfn < 256; devfn++) {
            struct sim_dev *d = roots[i]->slots[devfn];
            if (!d || d == (struct sim_dev *)-1)
                continue;
            if (roots[i]->kind == BUS_ROOT || roots[i]->kind == BUS_PXB)
                add_mr(d, "bus master[0]"); /* port-bus devices got theirs at attach */
            smmu_as_once(s, roots[i], devfn);
        }
}

/* ---- dump ---- */

json_t *sim_dump(struct sim *s)
{
    json_t *r = json_object(), *devs = json_array(), *objs = json_array(), *fds = json_object(), *sets = json_array(),
           *viol = json_array(), *pend = json_array(), *vs = json_array(), *kept = json_array(), *nets = json_array();
    static const char *rs[] = {"prelaunch", "running", "paused"};
    for (struct sim_iommufd *f = s->iommufds; f; f = f->next) {
        int users = 0;
        for (struct sim_dev *d = s->devs; d; d = d->next)
            if (!strcmp(d->iommufd, f->id))
                users++;
        json_array_append_new(objs, json_pack("{s:s,s:s,s:i}", "id", f->id, "qom-type", "iommufd", "users", users));
    }
    for (struct sim_dev *d = s->devs; d; d = d->next) {
        json_t *e = json_pack("{s:s,s:s,s:s,s:b}", "id", d->id, "path", d->obj->path, "driver", d->driver,
                              "hotplugged", d->hotplugged);
        if (d->parent_bus)
            json_object_set_new(e, "bus", json_string(d->parent_bus->owner && d->parent_bus->owner->id[0]
                                                          ? d->parent_bus->owner->id : d->parent_bus->name));
        if (!strcmp(d->driver, "vfio-pci")) {
            json_object_set_new(e, "host", json_string(d->host));
            json_object_set_new(e, "host_smmu", json_string(d->host_smmu));
            json_object_set_new(e, "iommufd", json_string(d->iommufd));
            if (d->vsmmu)
                json_object_set_new(e, "vsmmu", json_string(d->vsmmu->id));
        }
        if (d->netdev[0])
            json_object_set_new(e, "netdev", json_string(d->netdev));
        json_object_set_new(e, "unplug_pending", json_boolean(d->unplug_pending));
        json_array_append_new(devs, e);
        if (d->unplug_pending)
            json_array_append_new(pend, json_string(d->id));
        if (!strcmp(d->driver, "arm-smmuv3"))
            json_array_append_new(vs, json_pack("{s:s,s:b,s:i,s:s,s:i}", "id", d->id, "accel", d->accel,
                                                "identifier", d->identifier, "bound_smmu", d->bound_smmu,
                                                "vfio_devices", d->vfio_count));
    }
    for (struct sim_namedfd *f = s->namedfds; f; f = f->next)
        json_object_set_new(fds, f->name, json_integer(f->vfd));
    for (struct sim_fdset *fs = s->fdsets; fs; fs = fs->next) {
        json_t *l = json_array();
        for (struct sim_fdset_fd *f = fs->fds; f; f = f->next)
            json_array_append_new(l, json_integer(f->vfd));
        json_array_append_new(sets, json_pack("{s:I,s:o}", "fdset-id", (json_int_t)fs->id, "fds", l));
    }
    for (struct sim_keptfd *k = s->kept; k; k = k->next)
        json_array_append_new(kept, json_pack("{s:s,s:s,s:i}", "name", k->name, "by", k->by, "fd", k->vfd));
    for (struct sim_violation *v = s->violations; v; v = v->next)
        json_array_append_new(viol, json_pack("{s:s,s:s,s:s,s:s,s:s}", "vsmmu", v->vsmmu, "device", v->device,
                                              "host", v->host, "host_smmu", v->host_smmu,
                                              "bound_smmu", v->bound_smmu));
    for (struct sim_netdev *n = s->netdevs; n; n = n->next)
        json_array_append_new(nets, json_string(n->id));
    json_object_set_new(r, "machine", json_string(s->q35 ? "q35" : "virt"));
    json_object_set_new(r, "status", json_string(rs[s->runstate]));
    json_object_set_new(r, "objects", objs);
    json_object_set_new(r, "devices", devs);
    json_object_set_new(r, "vsmmus", vs);
    json_object_set_new(r, "pending_unplugs", pend);
    json_object_set_new(r, "fds", fds);
    json_object_set_new(r, "fdsets", sets);
    json_object_set_new(r, "kept_fds", kept);
    json_object_set_new(r, "netdevs", nets);
    json_object_set_new(r, "violations", viol);
    json_object_set_new(r, "command_count", json_integer(s->command_count));
    json_object_set_new(r, "vclock_ms", json_integer(sim_vclock(s)));
    return r;
}

void sim_free(struct sim *s)
{
    if (!s)
        return;
    while (s->devs)
        sim_dev_remove(s, s->devs);
    while (s->buses) {
        struct sim_bus *b = s->buses;
        s->buses = b->next;
        free(b);
    }
    while (s->objs)
        sim_obj_del(s, s->objs);
    while (s->iommufds) {
        struct sim_iommufd *f = s->iommufds;
        s->iommufds = f->next;
        if (f->fd >= 0)
            close(f->fd);
        free(f);
    }
    while (s->netdevs) {
        struct sim_netdev *n = s->netdevs;
        s->netdevs = n->next;
        free(n);
    }
    while (s->namedfds) {
        struct sim_namedfd *f = s->namedfds;
        s->namedfds = f->next;
        close(f->fd);
        free(f);
    }
    while (s->fdsets) {
        struct sim_fdset *fs = s->fdsets;
        s->fdsets = fs->next;
        while (fs->fds) {
            struct sim_fdset_fd *f = fs->fds;
            fs->fds = f->next;
            close(f->fd);
            free(f);
        }
        free(fs);
    }
    while (s->kept) {
        struct sim_keptfd *k = s->kept;
        s->kept = k->next;
        if (k->fd >= 0)
            close(k->fd);
        free(k);
    }
    sim_drop_pending_fds(s);
    while (s->faults) {
        struct sim_fault *f = s->faults;
        s->faults = f->next;
        free(f);
    }
    while (s->unplug_rules) {
        struct sim_unplug_rule *r = s->unplug_rules;
        s->unplug_rules = r->next;
        free(r);
    }
    while (s->violations) {
        struct sim_violation *v = s->violations;
        s->violations = v->next;
        free(v);
    }
    free(s);
}
