/* plan.c — smmu_plan_attach: check the request as a whole, place every device, then produce the steps.
 * Nothing is produced unless the whole request is placed (DESIGN §4). Pure: no I/O, deterministic. */
#include "plan_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PLAN_DEFAULT_IOMMUFD "iommufd0"

bool plan_id_valid(const char *id, size_t max_len)
{
    size_t n;
    if (!id || !isalpha((unsigned char)id[0]))
        return false;
    for (n = 0; id[n]; n++) {
        unsigned char ch = (unsigned char)id[n];
        if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_')
            return false;
    }
    return n <= max_len;
}

void smmu_plan_default_id(const char *bdf, char out[SMMU_ID_LEN])
{
    snprintf(out, SMMU_ID_LEN, "hostdev-%s", bdf ? bdf : "");
    for (char *c = out; *c; c++)
        if (*c == ':')
            *c = '-';
}

/* What in the VM already carries device id `id` ("" when nothing does). QEMU device ids are one namespace
 * (/machine/peripheral): vSMMUs, pxbs, root ports, their occupants and vfio-pci devices. */
static const char *plan_id_owner(const struct smmu_topology *t, const char *id)
{
    for (size_t i = 0; i < t->n_vsmmus; i++) {
        if (!strcmp(t->vsmmus[i].id, id))
            return "a vSMMU";
        if (!strcmp(t->vsmmus[i].pxb_id, id))
            return "a pxb-pcie";
    }
    for (size_t i = 0; i < t->n_ports; i++) {
        if (!strcmp(t->ports[i].id, id))
            return "a root port";
        if (!strcmp(t->ports[i].occupant_id, id))
            return "a device on a root port";
    }
    for (size_t i = 0; i < t->n_vfio; i++)
        if (!strcmp(t->vfio[i].id, id))
            return "a vfio-pci device";
    return "";
}

/* -EINVAL if bdf is already attached: a vfio-pci device of the topology has it as `host`, or the caller
 * lists it in `attached` (journal devices, fd-passed devices). Names the VM device id when known. */
static int plan_check_attached(const struct smmu_topology *t, const char *bdf, const char *const *attached,
                               size_t n_attached, struct smmu_error *err)
{
    bool listed = false;
    for (size_t i = 0; attached && i < n_attached; i++)
        if (attached[i] && !strcasecmp(attached[i], bdf))
            listed = true;
    for (size_t i = 0; i < t->n_vfio; i++)
        if (!strcasecmp(t->vfio[i].host, bdf))
            return smmu_error_set(err, -EINVAL, "%s: already attached to this VM as %s", bdf,
                                  t->vfio[i].id[0] ? t->vfio[i].id : t->vfio[i].path);
    if (listed)
        return smmu_error_set(err, -EINVAL, "%s: already attached to this VM", bdf);
    return 0;
}

/* Check one requested device against the request so far, the VM and its host facts. */
static int plan_check_device(const struct smmu_topology *t, const struct smmu_host_dev *hosts, size_t i,
                             const char *const *attached, size_t n_attached, bool fd_pass,
                             struct smmu_error *err)
{
    const char *bdf = hosts[i].bdf;
    int rc;

    if (!bdf[0])
        return smmu_error_set(err, -EINVAL, "device %zu of the request has no PCI address", i + 1);
    for (size_t j = 0; j < i; j++)
        if (!strcasecmp(hosts[j].bdf, bdf))
            return smmu_error_set(err, -EINVAL, "%s: listed twice in the request", bdf);
    rc = plan_check_attached(t, bdf, attached, n_attached, err);
    if (rc < 0)
        return rc;
    rc = smmu_host_check(&hosts[i], fd_pass, err);
    if (rc < 0) {
        /* The refusal must name the device: with several devices in a request "group 7 not viable"
         * alone does not say which one. */
        if (err && !strstr(err->message, bdf))
            smmu_error_prefix(err, "%s", bdf);
        return rc;
    }
    return 0;
}

/* The domain's hostdev for bdf, or NULL. */
static const struct smmu_xml_hostdev *plan_domain_hostdev(const struct smmu_plan_opts *opts, const char *bdf)
{
    for (size_t i = 0; opts->domain && i < opts->domain->n_hostdevs; i++)
        if (!strcasecmp(opts->domain->hostdevs[i].bdf, bdf))
            return &opts->domain->hostdevs[i];
    return NULL;
}

/* The root port a domain hostdev's guest address names (t->ports index), -1 when it names none (no address),
 * or <-1 (err set) when it cannot be one: not a root port of the domain, or not in the VM. */
static int plan_domain_port(const struct smmu_topology *t, const struct smmu_plan_opts *opts, const char *bdf,
                            char *why, size_t why_len, struct smmu_error *err)
{
    const struct smmu_xml_hostdev *h = plan_domain_hostdev(opts, bdf);
    const char *file = opts->domain_file ? opts->domain_file : "the domain";
    const struct smmu_domain_ctrl *k;
    char id[32];
    int p;
    if (!h || !h->has_guest_addr)
        return -1;
    unsigned bus = h->guest_addr.bus;
    snprintf(why, why_len, "the guest address in %s line %ld (bus 0x%02x: root port pci.%u)", file, h->line, bus, bus);
    if (bus == 0)
        return smmu_error_set(err, -EINVAL, "%s: the guest address in %s line %ld is on bus 0x00, pcie.0 itself: a "
                              "device is hot-plugged into a root port (bus = the root port's controller index)",
                              bdf, file, h->line);
    if (h->guest_addr.slot || h->guest_addr.function || h->guest_addr.domain)
        return smmu_error_set(err, -EINVAL, "%s: the guest address in %s line %ld is slot 0x%02x function %u on bus "
                              "0x%02x: a root port has only slot 0 function 0", bdf, file, h->line, h->guest_addr.slot,
                              h->guest_addr.function, bus);
    k = smmu_domain_find_ctrl(opts->domain, (int)bus);
    if (!k)
        return smmu_error_set(err, -EINVAL, "%s: the guest address in %s line %ld names bus 0x%02x, but the domain has "
                              "no controller with index %u", bdf, file, h->line, bus, bus);
    if (k->model != SMMU_DOMAIN_ROOT_PORT)
        return smmu_error_set(err, -EINVAL, "%s: the guest address in %s line %ld names controller index %u, a %s (line "
                              "%ld), not a pcie-root-port: devices are hot-plugged into root ports only", bdf, file,
                              h->line, bus, k->model_name, k->line);
    snprintf(id, sizeof(id), "pci.%u", bus);
    if ((p = smmu_topology_find_port(t, id)) < 0)
        return smmu_error_set(err, -EINVAL, "%s: the guest address in %s line %ld names root port %s, which the VM "
                              "does not have", bdf, file, h->line, id);
    return p;
}

/* Unless --force, every disagreement of the domain with the VM refuses the plan, all of them listed. */
static int plan_domain_agrees(const struct smmu_topology *t, const struct smmu_plan_opts *opts, struct smmu_error *err)
{
    struct smmu_domain_issue *v = NULL;
    size_t n = 0, nd, len;
    char msg[sizeof(err->message)];
    int rc;
    if (!opts->domain || opts->force)
        return 0;
    if ((rc = smmu_domain_check(opts->domain, t, &v, &n, err)) < 0)
        return rc;
    if (!(nd = smmu_domain_disagreements(v, n))) {
        free(v);
        return 0;
    }
    len = (size_t)snprintf(msg, sizeof(msg), "%s disagrees with the live VM (%zu): ",
                           opts->domain_file ? opts->domain_file : "the domain", nd);
    for (size_t i = 0, k = 0; i < n && len < sizeof(msg); i++) {
        if (v[i].note)
            continue;
        k++;
        if (v[i].line > 0)
            len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s%zu) line %ld: %s", k > 1 ? "; " : "", k,
                                    v[i].line, v[i].message);
        else
            len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s%zu) %s", k > 1 ? "; " : "", k, v[i].message);
    }
    free(v);
    if (len < sizeof(msg))
        snprintf(msg + len, sizeof(msg) - len, "; --force to go on anyway");
    return smmu_error_set(err, -EINVAL, "%s", msg);
}

/* Device ids: --id (checked for syntax up front) or the default; not in use in the VM. */
static int plan_device_ids(const struct smmu_topology *t, struct smmu_plan *p, const struct smmu_plan_opts *opts,
                           struct smmu_error *err)
{
    for (size_t i = 0; i < p->n_placements; i++) {
        struct smmu_placement *pl = &p->placements[i];
        const char *owner;
        const struct smmu_xml_hostdev *h = plan_domain_hostdev(opts, pl->bdf);
        if (opts->device_id) {
            snprintf(pl->device_id, sizeof(pl->device_id), "%s", opts->device_id);
        } else if (h && h->alias[0]) {
            size_t max = opts->fd_pass ? SMMU_ID_LEN - 1 - strlen("-cdev") : SMMU_ID_LEN - 1;
            if (!plan_id_valid(h->alias, max))
                return smmu_error_set(err, -EINVAL, "%s: alias %s (%s line %ld) is not a valid QEMU id", pl->bdf,
                                      h->alias, opts->domain_file ? opts->domain_file : "domain", h->line);
            snprintf(pl->device_id, sizeof(pl->device_id), "%s", h->alias);
        } else {
            smmu_plan_default_id(pl->bdf, pl->device_id);
        }
        owner = plan_id_owner(t, pl->device_id);
        if (*owner)
            return smmu_error_set(err, -EINVAL, "%s: device id %s is already used in the VM by %s", pl->bdf,
                                  pl->device_id, owner);
    }
    return 0;
}

void smmu_plan_free(struct smmu_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; p->steps && i < p->n_steps; i++)
        json_decref(p->steps[i].args);
    free(p->steps);
    free(p->placements);
    free(p->new_bindings);
    free(p);
}

int smmu_plan_attach(const struct smmu_topology *topo,
                     const struct smmu_host_dev *hosts, size_t n,
                     const struct smmu_host_dev *host_of_vfio, size_t n_host_of_vfio,
                     const struct smmu_binding *bindings, size_t n_bindings,
                     const char *const *attached, size_t n_attached,
                     const char *const *booked, size_t n_booked,
                     const struct smmu_plan_opts *opts,
                     struct smmu_plan **out, struct smmu_error *err)
{
    static const struct smmu_plan_opts defaults = SMMU_PLAN_OPTS_INIT;
    struct plan_ctx ctx;
    struct smmu_plan *p = NULL;
    const char *fd_id;
    size_t fd_max;
    int rc;

    if (out)
        *out = NULL;
    if (!opts)
        opts = &defaults;
    if (!topo || !out || (n && !hosts))
        return smmu_error_set(err, -EINVAL, "smmu_plan_attach: missing topology, hosts or result pointer");
    if (opts->version != SMMU_PLAN_OPTS_VERSION)
        return smmu_error_set(err, -EINVAL, "smmu_plan_attach: unknown options version %u", opts->version);
    if (n == 0)
        return smmu_error_set(err, -EINVAL, "no device to attach");
    if (opts->device_id && n != 1)
        return smmu_error_set(err, -EINVAL, "--id names one device, but the request has %zu", n);
    if (opts->device_id) {
        /* The fd name "<id>-cdev" must fit an id buffer too. */
        size_t max = opts->fd_pass ? SMMU_ID_LEN - 1 - strlen("-cdev") : SMMU_ID_LEN - 1;
        if (!plan_id_valid(opts->device_id, max))
            return smmu_error_set(err, -EINVAL,
                                  "--id '%s' is not a valid QEMU id (a letter, then letters, digits, '-', '.' "
                                  "or '_'; at most %zu characters)", opts->device_id, max);
    }
    fd_id = opts->iommufd_id ? opts->iommufd_id : PLAN_DEFAULT_IOMMUFD;
    fd_max = opts->fd_pass ? SMMU_ID_LEN - 1 - strlen("-fd") : SMMU_ID_LEN - 1;
    if (!plan_id_valid(fd_id, fd_max))
        return smmu_error_set(err, -EINVAL, "--iommufd '%s' is not a valid QEMU id", fd_id);

    for (size_t i = 0; i < n; i++) {
        rc = plan_check_device(topo, hosts, i, attached, n_attached, opts->fd_pass, err);
        if (rc < 0)
            return rc;
    }

    rc = plan_domain_agrees(topo, opts, err);
    if (rc < 0)
        return rc;
    rc = plan_ctx_init(&ctx, topo, opts->allow_mismatch, host_of_vfio, n_host_of_vfio, bindings, n_bindings,
                       booked, n_booked, err);
    if (rc < 0)
        return rc;
    ctx.require_fit = opts->require_fit;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->placements = calloc(n, sizeof(*p->placements)))) {
        rc = smmu_error_set(err, -ENOMEM, "planner: out of memory");
        goto fail;
    }
    /* devices whose port the domain fixes first, so that no free choice takes their port */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            char why[256];
            int port = opts->domain ? plan_domain_port(topo, opts, hosts[i].bdf, why, sizeof(why), err) : -1;
            if (port < -1) {
                rc = port;
                goto fail;
            }
            if ((port >= 0) != (pass == 0))
                continue;
            rc = port >= 0 ? plan_place_port(&ctx, &hosts[i], port, why, &p->placements[i], err)
                           : plan_place_one(&ctx, &hosts[i], &p->placements[i], err);
            if (rc < 0)
                goto fail;
            p->n_placements++;
        }
    }
    rc = plan_device_ids(topo, p, opts, err);
    if (rc < 0)
        goto fail;

    snprintf(p->iommufd_id, sizeof(p->iommufd_id), "%s", fd_id);
    p->creates_iommufd = !smmu_topology_has_iommufd(topo, fd_id);
    /* Hand the request's new bindings over to the plan (the caller journals them). */
    p->new_bindings = ctx.new_bindings;
    p->n_new_bindings = ctx.n_new_bindings;
    ctx.new_bindings = NULL;
    ctx.n_new_bindings = 0;

    rc = plan_build_steps(p, hosts, opts, err);
    if (rc < 0)
        goto fail;
    plan_ctx_fini(&ctx);
    *out = p;
    return 0;
fail:
    plan_ctx_fini(&ctx);
    smmu_plan_free(p);
    return rc;
}
