/* sim_cmds.c — QMP commands of the simulated QEMU 11.1.3, with QEMU's argument checks and error texts.
 *
 * Texts marked "observed" come from the transcripts in shared/qemu11/transcripts or from probing real
 * QEMU 11.1.3; the rest follow QEMU's source (object-del "in use", guest unplug errors) and are listed in
 * docs/qmp-sim.md.
 */
#define _GNU_SOURCE
#include "sim.h"
#include "sim_srv.h"
#include "sim_json.h"
#include "smmuctl/host.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PKG "Debian 1:11.1.3+ds-1~bpo13+1"

/* ---- QAPI-style argument checking ---- */

struct arg {
    const char *name;
    char type;      /* s string, i integer, b bool, S list of strings, * anything */
    bool required;
};

static const char *type_word(char t)
{
    switch (t) {
    case 's': return "string";
    case 'i': return "integer";
    case 'b': return "boolean";
    case 'S': return "array";
    default: return "any";
    }
}

/* Visit members in schema order (missing/type errors), then complain about the first extra member. */
static bool check_args(json_t *args, const struct arg *spec, bool allow_extra, struct sim_result *r)
{
    const char *k;
    json_t *v;
    for (const struct arg *a = spec; a && a->name; a++) {
        json_t *x = args ? json_object_get(args, a->name) : NULL;
        bool ok = true;
        if (!x) {
            if (a->required) {
                SIM_ERR(r, "GenericError", "Parameter '%s' is missing", a->name);
                return false;
            }
            continue;
        }
        switch (a->type) {
        case 's': ok = json_is_string(x); break;
        case 'i': ok = json_is_integer(x); break;
        case 'b': ok = json_is_boolean(x); break;
        case 'S':
            ok = json_is_array(x);
            if (ok) {
                size_t i;
                json_t *e;
                json_array_foreach(x, i, e)
                    if (!json_is_string(e)) {
                        SIM_ERR(r, "GenericError", "Invalid parameter type for '%s[%zu]', expected: string",
                                a->name, i);
                        return false;
                    }
            }
            break;
        default: break;
        }
        if (!ok) {
            SIM_ERR(r, "GenericError", "Invalid parameter type for '%s', expected: %s", a->name, type_word(a->type));
            return false;
        }
    }
    if (allow_extra || !args)
        return true;
    json_object_foreach(args, k, v) {
        bool known = false;
        for (const struct arg *a = spec; a && a->name; a++)
            if (!strcmp(a->name, k))
                known = true;
        if (!known) {
            SIM_ERR(r, "GenericError", "Parameter '%s' is unexpected", k);
            return false;
        }
    }
    return true;
}

static const char *sarg(json_t *args, const char *k)
{
    return json_string_value(json_object_get(args, k));
}

/* ---- queries ---- */

static json_t *version_json(void)
{
    return json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "micro", 3, "minor", 1, "major", 11, "package", PKG);
}

static void cmd_query_status(struct sim *s, struct sim_result *r)
{
    static const char *names[] = {"prelaunch", "running", "paused"};
    r->ret = json_pack("{s:s,s:b}", "status", names[s->runstate], "running", s->runstate == RS_RUNNING);
}

/* ---- QOM ---- */

static struct sim_obj *resolve_or_err(struct sim *s, const char *path, struct sim_result *r)
{
    bool amb = false;
    struct sim_obj *o = sim_resolve(s, path, &amb);
    if (!o) {
        if (amb)
            SIM_ERR(r, "GenericError", "Path '%s' is ambiguous", path);
        else
            SIM_ERR(r, "DeviceNotFound", "Device '%s' not found", path);
    }
    return o;
}

static void cmd_qom_list(struct sim *s, json_t *args, struct sim_result *r)
{
    struct sim_obj *o = resolve_or_err(s, sarg(args, "path"), r);
    if (o)
        r->ret = sim_qom_list(s, o);
}

static void cmd_qom_get(struct sim *s, json_t *args, struct sim_result *r)
{
    struct sim_obj *o = resolve_or_err(s, sarg(args, "path"), r);
    char desc[512];
    if (!o)
        return;
    r->ret = sim_qom_get(s, o, sarg(args, "property"), desc, sizeof(desc));
    if (!r->ret)
        SIM_ERR(r, "GenericError", "%s", desc);
}

static void cmd_qom_list_get(struct sim *s, json_t *args, struct sim_result *r)
{
    json_t *paths = json_object_get(args, "paths"), *out = json_array(), *p;
    size_t i;
    json_array_foreach(paths, i, p) {
        struct sim_obj *o = resolve_or_err(s, json_string_value(p), r);
        if (!o) {
            json_decref(out);
            return;
        }
        json_array_append_new(out, json_pack("{s:o}", "properties", sim_qom_values(s, o)));
    }
    r->ret = out;
}

/* ---- fds ---- */

static void cmd_getfd(struct sim *s, json_t *args, struct sim_result *r)
{
    const char *name = sarg(args, "fdname");
    int vfd, fd = sim_take_pending_fd(s, &vfd);
    struct sim_namedfd *f;
    if (fd < 0) {
        SIM_ERR(r, "GenericError", "No file descriptor supplied via SCM_RIGHTS");
        return;
    }
    if (isdigit((unsigned char)name[0])) {
        close(fd);
        sim_vfd_release(s, vfd);
        SIM_ERR(r, "GenericError", "Parameter 'fdname' expects a name not starting with a digit");
        return;
    }
    for (f = s->namedfds; f; f = f->next)
        if (!strcmp(f->name, name)) {
            close(f->fd); /* same name again: QEMU closes the old fd */
            sim_vfd_release(s, f->vfd);
            f->fd = fd;
            f->vfd = vfd;
            r->ret = json_object();
            return;
        }
    f = calloc(1, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->fd = fd;
    f->vfd = vfd;
    f->next = s->namedfds;
    s->namedfds = f;
    r->ret = json_object();
}

static void cmd_closefd(struct sim *s, json_t *args, struct sim_result *r)
{
    const char *name = sarg(args, "fdname");
    for (struct sim_namedfd **pp = &s->namedfds; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->name, name)) {
            struct sim_namedfd *f = *pp;
            *pp = f->next;
            close(f->fd);
            sim_vfd_release(s, f->vfd);
            free(f);
            r->ret = json_object();
            return;
        }
    SIM_ERR(r, "GenericError", "File descriptor named '%s' not found", name);
}

static void cmd_add_fd(struct sim *s, json_t *args, struct sim_result *r)
{
    json_t *jid = json_object_get(args, "fdset-id");
    const char *opaque = sarg(args, "opaque");
    int vfd, fd = sim_take_pending_fd(s, &vfd);
    struct sim_fdset *set = NULL, **pp;
    struct sim_fdset_fd *f, **fp;
    int64_t id;
    if (fd < 0) {
        SIM_ERR(r, "GenericError", "No file descriptor supplied via SCM_RIGHTS");
        return;
    }
    if (jid) {
        id = json_integer_value(jid);
        if (id < 0) {
            close(fd);
            sim_vfd_release(s, vfd);
            SIM_ERR(r, "GenericError", "Parameter 'fdset-id' expects a non-negative value");
            return;
        }
    } else {
        id = 0; /* first free id, as QEMU */
        for (struct sim_fdset *x = s->fdsets; x && x->id == id; x = x->next)
            id++;
    }
    for (pp = &s->fdsets; *pp && (*pp)->id < id; pp = &(*pp)->next)
        ;
    if (*pp && (*pp)->id == id)
        set = *pp;
    else {
        set = calloc(1, sizeof(*set));
        set->id = id;
        set->next = *pp;
        *pp = set;
    }
    f = calloc(1, sizeof(*f));
    f->fd = fd;
    f->vfd = vfd;
    if (opaque) {
        snprintf(f->opaque, sizeof(f->opaque), "%s", opaque);
        f->has_opaque = true;
    }
    for (fp = &set->fds; *fp; fp = &(*fp)->next)
        ;
    *fp = f;
    r->ret = json_pack("{s:i,s:I}", "fd", vfd, "fdset-id", (json_int_t)id);
}

static void cmd_remove_fd(struct sim *s, json_t *args, struct sim_result *r)
{
    int64_t id = json_integer_value(json_object_get(args, "fdset-id"));
    json_t *jfd = json_object_get(args, "fd");
    struct sim_fdset **pp;
    for (pp = &s->fdsets; *pp; pp = &(*pp)->next) {
        struct sim_fdset *set = *pp;
        if (set->id != id)
            continue;
        for (struct sim_fdset_fd **fp = &set->fds; *fp;) {
            struct sim_fdset_fd *f = *fp;
            if (!jfd || f->vfd == json_integer_value(jfd)) {
                *fp = f->next;
                close(f->fd);
                sim_vfd_release(s, f->vfd);
                free(f);
                if (jfd)
                    goto done;
            } else {
                fp = &f->next;
            }
        }
        if (!jfd)
            goto done;
        break;
    }
    if (jfd)
        SIM_ERR(r, "GenericError", "File descriptor named 'fdset-id:%lld, fd:%lld' not found", (long long)id,
                (long long)json_integer_value(jfd));
    else
        SIM_ERR(r, "GenericError", "File descriptor named 'fdset-id:%lld' not found", (long long)id);
    return;
done:
    for (pp = &s->fdsets; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id && !(*pp)->fds) {
            struct sim_fdset *set = *pp;
            *pp = set->next;
            free(set);
            break;
        }
    r->ret = json_object();
}

static void cmd_query_fdsets(struct sim *s, struct sim_result *r)
{
    json_t *arr = json_array();
    for (struct sim_fdset *set = s->fdsets; set; set = set->next) {
        json_t *fds = json_array();
        for (struct sim_fdset_fd *f = set->fds; f; f = f->next) {
            json_t *e = json_pack("{s:i}", "fd", f->vfd);
            if (f->has_opaque)
                json_object_set_new(e, "opaque", json_string(f->opaque));
            json_array_append_new(fds, e);
        }
        json_array_insert_new(arr, 0, json_pack("{s:o,s:I}", "fds", fds, "fdset-id", (json_int_t)set->id));
    }
    r->ret = arr;
}

/* ---- objects ---- */

static struct sim_iommufd *iommufd_by_id(struct sim *s, const char *id)
{
    for (struct sim_iommufd *f = s->iommufds; f; f = f->next)
        if (!strcmp(f->id, id))
            return f;
    return NULL;
}

static void cmd_object_add(struct sim *s, json_t *args, struct sim_result *r)
{
    static const struct arg spec[] = {{"qom-type", 's', true}, {"id", 's', true}, {"fd", 's', false}, {0}};
    const char *type = sarg(args, "qom-type"), *id, *fdname;
    int fd = -1, vfd = -1;
    char desc[512];
    if (type && strcmp(type, "iommufd")) {
        SIM_ERR(r, "GenericError", "Parameter 'qom-type' does not accept value '%s'", type);
        return;
    }
    if (!check_args(args, spec, false, r))
        return;
    id = sarg(args, "id");
    fdname = sarg(args, "fd");
    if (fdname) {
        fd = sim_fd_param(s, fdname, &vfd, desc, sizeof(desc));
        if (fd == -1) {
            SIM_ERR(r, "GenericError", "Could not parse remote object fd %s:%s", fdname, desc);
            return;
        }
    } else if (!s->have_dev_iommu) {
        SIM_ERR(r, "GenericError", "/dev/iommu does not exist (is your kernel config missing CONFIG_IOMMUFD?)");
        return;
    }
    if (sim_ghash_contains(s->o_objects->inst, id)) {
        /* the fd was consumed by the property setter and stays open inside QEMU */
        if (fd >= 0 && vfd >= 0)
            sim_keep_fd(s, fdname, "object-add (failed)", fd, vfd);
        SIM_ERR(r, "GenericError", "attempt to add duplicate property '%s' to object (type 'container')", id);
        return;
    }
    {
        struct sim_iommufd *f = calloc(1, sizeof(*f)), **pp;
        char p[SIM_PATH_MAX];
        snprintf(f->id, sizeof(f->id), "%s", id);
        f->fd = vfd >= 0 ? fd : -1; /* numeric fds stay owned by their fdset */
        f->vfd = fd >= 0 ? (vfd >= 0 ? vfd : atoi(fdname)) : -1;
        snprintf(p, sizeof(p), "/objects/%s", id);
        f->obj = sim_obj_new(s, p, "iommufd", OBJ_IOMMUFD);
        sim_obj_set(s->o_objects, id, "child<iommufd>", json_string(p));
        for (pp = &s->iommufds; *pp; pp = &(*pp)->next)
            ;
        *pp = f;
    }
    r->ret = json_object();
}

static void cmd_object_del(struct sim *s, json_t *args, struct sim_result *r)
{
    const char *id = sarg(args, "id");
    struct sim_iommufd *f = iommufd_by_id(s, id), **pp;
    if (!f) {
        SIM_ERR(r, "GenericError", "object '%s' not found", id);
        return;
    }
    for (struct sim_dev *d = s->devs; d; d = d->next)
        if (!strcmp(d->driver, "vfio-pci") && !strcmp(d->iommufd, id)) {
            SIM_ERR(r, "GenericError", "object '%s' is in use, can not be deleted", id);
            return;
        }
    for (pp = &s->iommufds; *pp != f; pp = &(*pp)->next)
        ;
    *pp = f->next;
    sim_obj_unset(s->o_objects, id);
    sim_obj_del(s, f->obj);
    if (f->fd >= 0) /* QEMU never closes it */
        sim_keep_fd(s, id, "iommufd (deleted)", f->fd, f->vfd);
    free(f);
    r->ret = json_object();
}

/* An iommufd object named by a link path: "iommufd0" (partial) or "/objects/iommufd0". */
static struct sim_iommufd *iommufd_by_path(struct sim *s, const char *path)
{
    const char *id = !strncmp(path, "/objects/", 9) ? path + 9 : path;
    if (path[0] == '/' && strncmp(path, "/objects/", 9))
        return NULL;
    return iommufd_by_id(s, id);
}

/* ---- netdevs ---- */

static struct sim_netdev *netdev_by_id(struct sim *s, const char *id)
{
    for (struct sim_netdev *n = s->netdevs; n; n = n->next)
        if (!strcmp(n->id, id))
            return n;
    return NULL;
}

static void cmd_netdev_add(struct sim *s, json_t *args, struct sim_result *r)
{
    static const struct arg spec[] = {{"type", 's', true}, {"id", 's', true}, {0}};
    struct sim_netdev *n;
    if (!check_args(args, spec, true, r))
        return;
    if (netdev_by_id(s, sarg(args, "id"))) {
        SIM_ERR(r, "GenericError", "Duplicate ID '%s'", sarg(args, "id"));
        return;
    }
    n = calloc(1, sizeof(*n));
    snprintf(n->id, sizeof(n->id), "%s", sarg(args, "id"));
    n->next = s->netdevs;
    s->netdevs = n;
    r->ret = json_object();
}

static void cmd_netdev_del(struct sim *s, json_t *args, struct sim_result *r)
{
    const char *id = sarg(args, "id");
    for (struct sim_netdev **pp = &s->netdevs; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            struct sim_netdev *n = *pp;
            *pp = n->next;
            free(n);
            r->ret = json_object();
            return;
        }
    SIM_ERR(r, "DeviceNotFound", "Device '%s' not found", id);
}

/* ---- device_add ---- */

static bool valid_qdev_id(const char *id)
{
    if (!isalpha((unsigned char)id[0]))
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-._", *p))
            return false;
    return true;
}

static bool known_driver(const struct sim *s, const char *drv)
{
    static const char *const k[] = {"vfio-pci", "e1000e", "virtio-net-pci", "pcie-pci-bridge", "pcie-root-port",
                                    "pxb-pcie", NULL};
    if (!strcmp(drv, "arm-smmuv3"))
        return !s->q35;
    for (int i = 0; k[i]; i++)
        if (!strcmp(k[i], drv))
            return true;
    return false;
}

/* Which host device is behind a VFIO cdev fd: the fd's path ends in vfio/devices/vfioM; find the sysfs
 * device whose vfio-dev/ has vfioM. */
static bool host_for_cdev_fd(struct sim *s, int fd, char *bdf, size_t len)
{
    char link[64], target[PATH_MAX], dir[PATH_MAX + 32];
    const char *base;
    ssize_t n;
    DIR *dp;
    struct dirent *de;
    bool found = false;
    if (!s->sysfs[0])
        return false;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return false;
    target[n] = 0;
    base = strrchr(target, '/');
    base = base ? base + 1 : target;
    if (strncmp(base, "vfio", 4))
        return false;
    snprintf(dir, sizeof(dir), "%s/bus/pci/devices", s->sysfs);
    dp = opendir(dir);
    if (!dp)
        return false;
    while (!found && (de = readdir(dp))) {
        char p[PATH_MAX * 2];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s/vfio-dev/%s", dir, de->d_name, base);
        if (!stat(p, &st)) {
            snprintf(bdf, len, "%s", de->d_name);
            found = true;
        }
    }
    closedir(dp);
    return found;
}

static void bind_vsmmu(struct sim *s, struct sim_dev *d)
{
    struct sim_dev *v = sim_vsmmu_for_bus(s, d->parent_bus);
    d->vsmmu = v;
    if (!v)
        return;
    if (v->vfio_count == 0) {
        snprintf(v->bound_smmu, sizeof(v->bound_smmu), "%s", d->host_smmu);
    } else if (v->accel && strcmp(v->bound_smmu, d->host_smmu)) {
        /* QEMU does not check this; the kernel fails the nested attach later (EINVAL). Record it. */
        struct sim_violation *x = calloc(1, sizeof(*x)), **pp;
        snprintf(x->vsmmu, sizeof(x->vsmmu), "%s", v->id);
        snprintf(x->device, sizeof(x->device), "%s", d->id);
        snprintf(x->host, sizeof(x->host), "%s", d->host);
        snprintf(x->host_smmu, sizeof(x->host_smmu), "%s", d->host_smmu);
        snprintf(x->bound_smmu, sizeof(x->bound_smmu), "%s", v->bound_smmu);
        for (pp = &s->violations; *pp; pp = &(*pp)->next)
            ;
        *pp = x;
    }
    v->vfio_count++;
}

/* Cold-plugged vfio-pci devices bind their vSMMU too (called once after the command line). */
void sim_bind_cold_vfio(struct sim *s)
{
    for (struct sim_dev *d = s->devs; d; d = d->next)
        if (!strcmp(d->driver, "vfio-pci") && d->parent_bus) {
            struct smmu_host_dev hd;
            struct smmu_error err = {0};
            if (s->sysfs[0] && d->host[0] && !smmu_host_read(s->sysfs, d->host, &hd, &err))
                snprintf(d->host_smmu, sizeof(d->host_smmu), "%s", hd.smmu);
            bind_vsmmu(s, d);
        }
}

static void cmd_device_add(struct sim *s, json_t *args, struct sim_result *r)
{
    const char *drv, *busname, *id, *k;
    json_t *v, *jdrv = json_object_get(args, "driver");
    struct sim_bus *bus;
    struct sim_dev *occupant, tmp;
    int devfn = -1, fd = -1, vfd = -1, child_index;
    char desc[512];
    bool has_addr = false;

    if (!json_is_string(jdrv)) { /* qdict_get_try_str: a non-string driver is a missing one */
        SIM_ERR(r, "GenericError", "Parameter 'driver' is missing");
        return;
    }
    drv = json_string_value(jdrv);
    if (!known_driver(s, drv)) {
        SIM_ERR(r, "GenericError", "'%s' is not a valid device model name", drv);
        return;
    }
    busname = sarg(args, "bus");
    if (busname) {
        bus = sim_bus_by_name(s, busname);
        if (!bus) {
            SIM_ERR(r, "GenericError", "Bus '%s' not found", busname);
            return;
        }
    } else {
        bus = s->root_bus;
    }
    if (!strcmp(drv, "arm-smmuv3") || !strcmp(drv, "pxb-pcie")) {
        SIM_ERR(r, "GenericError", "Device '%s' does not support hotplugging", drv);
        return;
    }
    if (!bus->hotpluggable) {
        SIM_ERR(r, "GenericError", "Bus '%s' does not support hotplugging", bus->name);
        return;
    }
    id = sarg(args, "id");
    if (id && !valid_qdev_id(id)) {
        SIM_ERR(r, "GenericError", "Invalid qdev ID '%s'", id);
        return;
    }
    if (id && sim_ghash_contains(s->o_peripheral->inst, id)) {
        SIM_ERR(r, "GenericError", "Duplicate device ID '%s'", id);
        return;
    }
    /* properties, in the order given (QEMU sets them from the dict) */
    memset(&tmp, 0, sizeof(tmp));
    json_object_foreach(args, k, v) {
        const char *sv = json_string_value(v);
        if (!strcmp(k, "driver") || !strcmp(k, "bus") || !strcmp(k, "id"))
            continue;
        if (!strcmp(k, "addr")) {
            unsigned slot = 0, fn = 0;
            char extra;
            int n = sv ? sscanf(sv, "%x.%x%c", &slot, &fn, &extra) : 0;
            if (json_is_integer(v)) {
                devfn = (int)json_integer_value(v);
            } else if (n < 1 || n > 2 || slot > 31 || fn > 7) {
                SIM_ERR(r, "GenericError", "Property '%s.addr' doesn't take value '%s'", drv, sv ? sv : "");
                goto fail;
            } else {
                devfn = (int)((slot << 3) | fn);
            }
            has_addr = true;
            continue;
        }
        if (!strcmp(drv, "vfio-pci")) {
            if (!strcmp(k, "host")) {
                char bdf[SMMU_BDF_LEN + 1];
                struct smmu_error err = {0};
                if (!sv || smmu_bdf_parse(sv, bdf, &err) < 0) {
                    SIM_ERR(r, "GenericError", "Property 'vfio-pci.host' doesn't take value '%s'", sv ? sv : "");
                    goto fail;
                }
                snprintf(tmp.host, sizeof(tmp.host), "%s", bdf);
                continue;
            }
            if (!strcmp(k, "sysfsdev")) {
                const char *b = sv ? strrchr(sv, '/') : NULL;
                snprintf(tmp.host, sizeof(tmp.host), "%s", b ? b + 1 : (sv ? sv : ""));
                continue;
            }
            if (!strcmp(k, "iommufd")) {
                /* a link property: resolved as a path of the right type (object_resolve_link) */
                struct sim_iommufd *io = sv ? iommufd_by_path(s, sv) : NULL;
                bool amb = false;
                if (!io) {
                    if (sv && (sim_resolve(s, sv, &amb) || amb))
                        SIM_ERR(r, "GenericError", "Invalid parameter type for 'iommufd', expected: iommufd");
                    else
                        SIM_ERR(r, "DeviceNotFound", "Device '%s' not found", sv ? sv : "");
                    goto fail;
                }
                snprintf(tmp.iommufd, sizeof(tmp.iommufd), "%s", io->id);
                continue;
            }
            if (!strcmp(k, "fd")) {
                if (fd >= 0) {
                    close(fd);
                    sim_vfd_release(s, vfd);
                }
                fd = sim_fd_param(s, sv ? sv : "", &vfd, desc, sizeof(desc));
                if (fd == -1) {
                    SIM_ERR(r, "GenericError", "Could not parse remote object fd %s:%s", sv ? sv : "", desc);
                    goto fail;
                }
                snprintf(tmp.fdname, sizeof(tmp.fdname), "%s", sv);
                continue;
            }
            if (!strncmp(k, "x-", 2) || !strcmp(k, "rombar") || !strcmp(k, "romfile") ||
                !strcmp(k, "multifunction") || !strcmp(k, "enable-migration") || !strcmp(k, "display"))
                continue;
        } else if (!strcmp(drv, "e1000e") || !strcmp(drv, "virtio-net-pci")) {
            if (!strcmp(k, "netdev")) {
                if (!sv || !netdev_by_id(s, sv)) {
                    SIM_ERR(r, "GenericError", "Property '%s.netdev' can't find value '%s'", drv, sv ? sv : "");
                    goto fail;
                }
                for (struct sim_dev *d = s->devs; d; d = d->next)
                    if (!strcmp(d->netdev, sv)) {
                        SIM_ERR(r, "GenericError", "Property '%s.netdev' can't take value '%s', it's in use", drv, sv);
                        goto fail;
                    }
                snprintf(tmp.netdev, sizeof(tmp.netdev), "%s", sv);
                continue;
            }
            if (!strcmp(k, "mac"))
                continue;
        } else if (!strcmp(drv, "pcie-root-port")) {
            if (!strcmp(k, "chassis") || !strcmp(k, "port") || !strcmp(k, "slot") || !strcmp(k, "hotplug"))
                continue;
        }
        SIM_ERR(r, "GenericError", "Property '%s.%s' not found", drv, k);
        goto fail;
    }
    /* qdev_realize puts the device on the bus (child[N], N = the bus's next index) before realizing it:
     * a realize that fails still used up that N. */
    child_index = bus->max_index++;
    /* realize: PCI slot checks (do_pci_register_device) */
    if (devfn < 0) {
        for (devfn = 0; devfn < 256 && bus->slots[devfn]; devfn += 8)
            ;
        if (devfn >= 256) {
            SIM_ERR(r, "GenericError", "PCI: no slot/function available for %s, all in use or reserved", drv);
            goto fail;
        }
    } else if ((occupant = bus->slots[devfn])) {
        SIM_ERR(r, "GenericError", "PCI: slot %d function %d not available for %s, in use by %s,id=%s",
                devfn >> 3, devfn & 7, drv, occupant == (struct sim_dev *)-1 ? "" : occupant->driver,
                occupant == (struct sim_dev *)-1 ? "" : occupant->id);
        goto fail;
    }
    (void)has_addr;
    if (devfn != 0 && bus->kind == BUS_PORT && bus->slots[0]) {
        SIM_ERR(r, "GenericError",
                "PCI: slot 0 function 0 already occupied by %s, new func %s cannot be exposed to guest.",
                bus->slots[0]->driver, drv);
        goto fail;
    }
    /* registered on the bus: the IOMMU address space exists from here on, even if realize fails */
    sim_bus_as(s, bus, devfn);
    if (!strcmp(drv, "vfio-pci")) {
        if (fd < 0 && !tmp.host[0]) {
            SIM_ERR(r, "GenericError", "No provided host device");
            goto fail;
        }
        if (fd >= 0 || fd == -2) {
            if (!tmp.iommufd[0]) {
                SIM_ERR(r, "GenericError", "Use FD passing only with iommufd backend");
                goto fail;
            }
            if (fd < 0 || !host_for_cdev_fd(s, fd, tmp.host, sizeof(tmp.host))) {
                struct sim_iommufd *io = iommufd_by_id(s, tmp.iommufd);
                SIM_ERR(r, "GenericError", "vfio %s: error bind device fd=%d to iommufd=%d: "
                        "Inappropriate ioctl for device", id ? id : "VFIO_FD", vfd >= 0 ? vfd : 0,
                        io && io->vfd >= 0 ? io->vfd : 3);
                goto fail;
            }
        }
        {
            struct smmu_host_dev hd;
            struct smmu_error err = {0};
            if (!s->sysfs[0] || smmu_host_read(s->sysfs, tmp.host, &hd, &err) < 0) {
                SIM_ERR(r, "GenericError", "vfio /sys/bus/pci/devices/%s: no such host device: "
                        "No such file or directory", tmp.host);
                goto fail;
            }
            if (strcmp(hd.driver, "vfio-pci")) {
                if (tmp.iommufd[0])
                    SIM_ERR(r, "GenericError", "vfio %s: vfio /sys/bus/pci/devices/%s/vfio-dev: couldn't open "
                            "directory /sys/bus/pci/devices/%s/vfio-dev: No such file or directory",
                            tmp.host, tmp.host, tmp.host);
                else
                    SIM_ERR(r, "GenericError", "vfio %s: no iommu_group found: No such file or directory", tmp.host);
                goto fail;
            }
            snprintf(tmp.host_smmu, sizeof(tmp.host_smmu), "%s", hd.smmu);
        }
    }
    {
        struct sim_dev *d = sim_dev_new(s, drv, id);
        bus->max_index = child_index; /* sim_dev_attach takes this index */
        d->hotplugged = true;
        snprintf(d->host, sizeof(d->host), "%s", tmp.host);
        snprintf(d->host_smmu, sizeof(d->host_smmu), "%s", tmp.host_smmu);
        snprintf(d->iommufd, sizeof(d->iommufd), "%s", tmp.iommufd);
        snprintf(d->fdname, sizeof(d->fdname), "%s", tmp.fdname);
        snprintf(d->netdev, sizeof(d->netdev), "%s", tmp.netdev);
        if (fd >= 0 && vfd >= 0) {
            d->held_fd = fd;
            d->held_vfd = vfd;
        }
        sim_dev_attach(s, d, bus, devfn);
        sim_endpoint_realized(s, d);
        if (!strcmp(drv, "vfio-pci"))
            bind_vsmmu(s, d);
    }
    r->ret = json_object();
    return;
fail:
    if (fd >= 0 && vfd >= 0) { /* consumed: QEMU closes it when the device is destroyed */
        close(fd);
        sim_vfd_release(s, vfd);
    }
}

/* ---- device_del ---- */

static struct sim_unplug_cfg unplug_cfg(struct sim *s, struct sim_dev *d)
{
    struct sim_unplug_cfg c = s->unplug_default;
    for (struct sim_unplug_rule *u = s->unplug_rules; u; u = u->next)
        if (!strcmp(u->id, d->id))
            c = u->cfg;
    if (c.mode == UNPLUG_AUTO) {
        bool acpi = s->q35 && d->parent_bus && d->parent_bus->kind == BUS_PORT && d->parent_bus->owner &&
                    d->parent_bus->owner->parent_bus == s->root_bus;
        /* no guest: a powered slot (cold-plugged device) or ACPI hotplug never completes */
        c.mode = (!d->hotplugged || acpi) ? UNPLUG_NEVER : UNPLUG_EVENT;
    }
    return c;
}

static void device_del(struct sim_srv *srv, struct sim *s, json_t *args, struct sim_result *r)
{
    const char *id = sarg(args, "id");
    struct sim_obj *o;
    struct sim_dev *d;
    struct sim_unplug_cfg c;
    char path[SIM_PATH_MAX];
    if (id[0] == '/')
        snprintf(path, sizeof(path), "%s", id);
    else
        snprintf(path, sizeof(path), "/machine/peripheral/%s", id);
    o = sim_obj_find(s, path);
    if (!o) {
        SIM_ERR(r, "DeviceNotFound", "Device '%s' not found", id);
        return;
    }
    if (o->kind != OBJ_DEV) {
        SIM_ERR(r, "GenericError", "%s is not a device", id);
        return;
    }
    d = o->dev;
    if (!strcmp(d->driver, "arm-smmuv3") || !strcmp(d->driver, "pxb-pcie")) {
        SIM_ERR(r, "GenericError", "Device '%s' does not support hotplugging", d->driver);
        return;
    }
    if (!d->parent_bus || !d->parent_bus->hotpluggable) {
        SIM_ERR(r, "GenericError", "Bus '%s' does not support hotplugging",
                d->parent_bus ? d->parent_bus->name : "main-system-bus");
        return;
    }
    if (d->unplug_pending && (d->unplug_expires_vms == 0 || d->unplug_expires_vms > sim_vclock(s))) {
        SIM_ERR(r, "GenericError", "Device %s is already in the process of unplug", d->id);
        return;
    }
    c = unplug_cfg(s, d);
    r->ret = json_object();
    switch (c.mode) {
    case UNPLUG_NEVER:
        d->unplug_pending = true;
        d->unplug_expires_vms = sim_vclock(s) + 5000;
        break;
    case UNPLUG_GUEST_ERROR:
        d->unplug_pending = true;
        d->unplug_expires_vms = sim_vclock(s) + 5000;
        sim_srv_unplug_later(srv, d->id, c.delay_ms, true);
        break;
    default:
        d->unplug_pending = true;
        d->unplug_expires_vms = 0;
        if (c.before_reply)
            sim_srv_unplug_now(srv, s, d);
        else
            sim_srv_unplug_later(srv, d->id, c.delay_ms, false);
        break;
    }
}

/* Called by the server when a device leaves: vSMMU binding ends with its last vfio-pci device. */
void sim_cmd_device_gone(struct sim *s, struct sim_dev *d)
{
    if (d->vsmmu && !strcmp(d->driver, "vfio-pci")) {
        struct sim_dev *v = sim_dev_by_id(s, d->vsmmu->id);
        if (v && --v->vfio_count <= 0) {
            v->vfio_count = 0;
            v->bound_smmu[0] = 0;
        }
    }
}

/* ---- query-pci (virt, before firmware numbered the buses: what a64-03/a64-10 show) ---- */

static json_t *pci_bridge_entry(const struct sim_dev *d, int busnr)
{
    return json_pack("{s:i,s:i,s:{s:{s:{s:i,s:I},s:{s:i,s:I},s:i,s:{s:i,s:i},s:i,s:i}},s:s,s:i,s:i,"
                     "s:{s:i,s:s},s:{s:i,s:i},s:i,s:[{s:b,s:b,s:i,s:i,s:i,s:s}]}",
                     "irq_pin", 1, "bus", busnr,
                     "pci_bridge", "bus", "prefetchable_range", "limit", 1048575, "base", (json_int_t)4293918720LL,
                     "memory_range", "limit", 1048575, "base", (json_int_t)4293918720LL, "secondary", 0,
                     "io_range", "limit", 4095, "base", 61440, "number", 0, "subordinate", 0,
                     "qdev_id", d->id, "irq", 0, "slot", d->devfn >> 3,
                     "class_info", "class", 1540, "desc", "PCI bridge", "id", "device", 12, "vendor", 6966,
                     "function", d->devfn & 7, "regions", "prefetch", 0, "mem_type_64", 0, "bar", 0, "size", 4096,
                     "address", -1, "type", "memory");
}

static json_t *host_bridge_entry(const char *qdev_id, int slot, int device)
{
    return json_pack("{s:i,s:i,s:s,s:i,s:{s:i,s:s},s:{s:i,s:i,s:i,s:i},s:i,s:[]}", "irq_pin", 0, "bus", 0,
                     "qdev_id", qdev_id, "slot", slot, "class_info", "class", 1536, "desc", "Host bridge", "id",
                     "device", device, "subsystem-vendor", 6900, "vendor", 6966, "subsystem", 4352, "function", 0,
                     "regions");
}

static void cmd_query_pci(struct sim *s, struct sim_result *r)
{
    json_t *out = json_array();
    struct sim_bus *roots[64];
    int n = 0;
    if (s->q35) {
        SIM_ERR(r, "GenericError", "query-pci is not simulated for q35");
        json_decref(out);
        return;
    }
    for (struct sim_bus *b = s->buses; b; b = b->next)
        if (b->kind == BUS_PXB && n < 64)
            roots[n++] = b;
    /* expander root buses newest first, then pcie.0; bridges behind root ports are not numbered yet, so
     * nothing behind a root port is listed */
    for (int i = n - 1; i >= 0; i--) {
        struct sim_bus *b = roots[i];
        json_t *devs = json_array();
        for (int devfn = 0; devfn < 256; devfn++) {
            struct sim_dev *d = b->slots[devfn];
            if (d && d != (struct sim_dev *)-1 && !strcmp(d->driver, "pcie-root-port"))
                json_array_append_new(devs, pci_bridge_entry(d, b->bus_nr));
        }
        json_array_append_new(out, json_pack("{s:i,s:o}", "bus", b->bus_nr, "devices", devs));
    }
    {
        json_t *devs = json_array();
        for (int devfn = 0; devfn < 256; devfn++) {
            struct sim_dev *d = s->root_bus->slots[devfn];
            if (!d)
                continue;
            if (d == (struct sim_dev *)-1)
                json_array_append_new(devs, host_bridge_entry("", devfn >> 3, 8));
            else if (!strcmp(d->driver, "pxb-pcie"))
                json_array_append_new(devs, host_bridge_entry(d->id, devfn >> 3, 11));
            else if (!strcmp(d->driver, "pcie-root-port"))
                json_array_append_new(devs, pci_bridge_entry(d, 0));
        }
        json_array_append_new(out, json_pack("{s:i,s:o}", "bus", 0, "devices", devs));
    }
    r->ret = out;
}

/* ---- introspection, served from real QEMU 11.1.3 replies ---- */

struct canned {
    const char *cmd, *args, *reply;
};
static const struct canned canned[] = {
#include "sim_canned.inc"
    {NULL, NULL, NULL}};

static bool canned_command(const char *name)
{
    for (const struct canned *c = canned; c->cmd; c++)
        if (!strcmp(c->cmd, name))
            return true;
    return false;
}

/* The recorded reply for exactly these arguments; otherwise QEMU's answer for an unknown type. */
static void cmd_canned(const char *name, json_t *args, struct sim_result *r)
{
    json_t *empty = json_object();
    char *key = json_dumps(args ? args : empty, JSON_COMPACT | JSON_SORT_KEYS);
    const char *tn = sarg(args, "typename");
    json_decref(empty);
    for (const struct canned *c = canned; c->cmd; c++)
        if (!strcmp(c->cmd, name) && key && !strcmp(c->args, key)) {
            json_t *m = sim_json_loads(c->reply, strlen(c->reply)), *e = json_object_get(m, "error");
            if (e)
                SIM_ERR(r, json_string_value(json_object_get(e, "class")), "%s",
                        json_string_value(json_object_get(e, "desc")));
            else
                r->ret = json_incref(json_object_get(m, "return"));
            json_decref(m);
            free(key);
            return;
        }
    free(key);
    if (!strcmp(name, "qom-list-types"))
        r->ret = json_array(); /* not recorded: nothing implements it, as far as the simulator knows */
    else if (!strcmp(name, "qom-list-properties"))
        SIM_ERR(r, "DeviceNotFound", "Class '%s' not found", tn ? tn : "");
    else
        SIM_ERR(r, "DeviceNotFound", "Device '%s' not found", tn ? tn : "");
}

/* ---- table ---- */

static const char *const commands[] = {
    "qmp_capabilities", "query-version", "query-status", "query-target", "query-name", "query-uuid",
    "qom-list", "qom-get", "qom-list-get", "getfd", "closefd", "add-fd", "remove-fd", "query-fdsets",
    "object-add", "object-del", "device_add", "device_del", "netdev_add", "netdev_del", "cont", "stop",
    "quit", "migrate-pause", "query-pci", NULL};

bool sim_cmd_exists(const char *name)
{
    if (canned_command(name))
        return true;
    for (int i = 0; commands[i]; i++)
        if (!strcmp(commands[i], name))
            return true;
    return false;
}

void sim_cmd_execute(struct sim_srv *srv, struct sim *s, const char *name, json_t *args, struct sim_result *r)
{
    static const struct arg none[] = {{0}};
    static const struct arg a_path[] = {{"path", 's', true}, {0}};
    static const struct arg a_get[] = {{"path", 's', true}, {"property", 's', true}, {0}};
    static const struct arg a_paths[] = {{"paths", 'S', true}, {0}};
    static const struct arg a_fdname[] = {{"fdname", 's', true}, {0}};
    static const struct arg a_addfd[] = {{"fdset-id", 'i', false}, {"opaque", 's', false}, {0}};
    static const struct arg a_rmfd[] = {{"fdset-id", 'i', true}, {"fd", 'i', false}, {0}};
    static const struct arg a_id[] = {{"id", 's', true}, {0}};

    if (!strcmp(name, "query-version")) {
        if (check_args(args, none, false, r))
            r->ret = version_json();
    } else if (!strcmp(name, "query-status")) {
        if (check_args(args, none, false, r))
            cmd_query_status(s, r);
    } else if (!strcmp(name, "query-target")) {
        if (check_args(args, none, false, r))
            r->ret = json_pack("{s:s}", "arch", s->q35 ? "x86_64" : "aarch64");
    } else if (!strcmp(name, "query-name")) {
        if (check_args(args, none, false, r))
            r->ret = json_object();
    } else if (!strcmp(name, "query-uuid")) {
        if (check_args(args, none, false, r))
            r->ret = json_pack("{s:s}", "UUID", "00000000-0000-0000-0000-000000000000");
    } else if (!strcmp(name, "qom-list")) {
        if (check_args(args, a_path, false, r))
            cmd_qom_list(s, args, r);
    } else if (!strcmp(name, "qom-get")) {
        if (check_args(args, a_get, false, r))
            cmd_qom_get(s, args, r);
    } else if (!strcmp(name, "qom-list-get")) {
        if (check_args(args, a_paths, false, r))
            cmd_qom_list_get(s, args, r);
    } else if (!strcmp(name, "getfd")) {
        if (check_args(args, a_fdname, false, r))
            cmd_getfd(s, args, r);
    } else if (!strcmp(name, "closefd")) {
        if (check_args(args, a_fdname, false, r))
            cmd_closefd(s, args, r);
    } else if (!strcmp(name, "add-fd")) {
        if (check_args(args, a_addfd, false, r))
            cmd_add_fd(s, args, r);
    } else if (!strcmp(name, "remove-fd")) {
        if (check_args(args, a_rmfd, false, r))
            cmd_remove_fd(s, args, r);
    } else if (!strcmp(name, "query-fdsets")) {
        if (check_args(args, none, false, r))
            cmd_query_fdsets(s, r);
    } else if (!strcmp(name, "object-add")) {
        json_t *a = args ? args : json_object();
        if (!json_object_get(a, "qom-type"))
            SIM_ERR(r, "GenericError", "Parameter 'qom-type' is missing");
        else
            cmd_object_add(s, a, r);
        if (!args)
            json_decref(a);
    } else if (!strcmp(name, "object-del")) {
        if (check_args(args, a_id, false, r))
            cmd_object_del(s, args, r);
    } else if (!strcmp(name, "device_add")) {
        json_t *a = args ? args : json_object();
        cmd_device_add(s, a, r);
        if (!args)
            json_decref(a);
    } else if (!strcmp(name, "device_del")) {
        if (check_args(args, a_id, false, r))
            device_del(srv, s, args, r);
    } else if (!strcmp(name, "netdev_add")) {
        json_t *a = args ? args : json_object();
        cmd_netdev_add(s, a, r);
        if (!args)
            json_decref(a);
    } else if (!strcmp(name, "netdev_del")) {
        if (check_args(args, a_id, false, r))
            cmd_netdev_del(s, args, r);
    } else if (!strcmp(name, "cont")) {
        if (check_args(args, none, false, r)) {
            if (s->runstate != RS_RUNNING) {
                sim_set_runstate(s, RS_RUNNING);
                sim_srv_event(srv, "RESUME", NULL);
            }
            r->ret = json_object();
        }
    } else if (!strcmp(name, "stop")) {
        if (check_args(args, none, false, r)) {
            if (s->runstate == RS_RUNNING) {
                sim_set_runstate(s, RS_PAUSED);
                sim_srv_event(srv, "STOP", NULL);
            }
            r->ret = json_object();
        }
    } else if (!strcmp(name, "quit")) {
        if (check_args(args, none, false, r)) {
            r->ret = json_object();
            sim_srv_request_quit(srv);
        }
    } else if (!strcmp(name, "query-pci")) {
        if (check_args(args, none, false, r))
            cmd_query_pci(s, r);
    } else if (canned_command(name)) {
        static const struct arg a_type[] = {{"typename", 's', true}, {0}};
        static const struct arg a_types[] = {{"implements", 's', false}, {"abstract", 'b', false}, {0}};
        const struct arg *spec = !strcmp(name, "qom-list-types") ? a_types
                                 : (!strcmp(name, "query-qmp-schema") || !strcmp(name, "query-commands")) ? none
                                                                                                           : a_type;
        if (check_args(args, spec, false, r))
            cmd_canned(name, args, r);
    } else if (!strcmp(name, "migrate-pause")) {
        SIM_ERR(r, "GenericError",
                "migrate-pause is currently only supported during postcopy-active or postcopy-recover state");
    } else {
        SIM_ERR(r, "CommandNotFound", "The command %s has not been found", name);
    }
}
