/* place.c — choosing a vSMMU and a root port for each device of a request (DESIGN §4). Pure. */
#include "plan_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *place_vsmmu_name(const struct smmu_vsmmu *v)
{
    return v->id[0] ? v->id : v->path;
}

/* Record that vSMMU v is bound to smmu (why: its source). A second, different binding is a conflict. */
static int place_bind(struct plan_ctx *c, size_t v, const char *smmu, const char *why, struct smmu_error *err)
{
    if (!smmu || !*smmu)
        return 0;
    if (!c->bound[v][0]) {
        snprintf(c->bound[v], sizeof(c->bound[v]), "%s", smmu);
        snprintf(c->bound_why[v], sizeof(c->bound_why[v]), "%s", why);
        return 0;
    }
    if (!strcmp(c->bound[v], smmu))
        return 0;
    return smmu_error_set(err, -EINVAL, "vSMMU %s has conflicting bindings: %s (%s) and %s (%s)",
                          place_vsmmu_name(&c->topo->vsmmus[v]), c->bound[v], c->bound_why[v], smmu, why);
}

static const struct smmu_host_dev *place_find_host(const struct smmu_host_dev *h, size_t n, const char *bdf)
{
    for (size_t i = 0; h && i < n; i++)
        if (!strcasecmp(h[i].bdf, bdf))
            return &h[i];
    return NULL;
}

int plan_ctx_init(struct plan_ctx *c, const struct smmu_topology *topo, bool allow_mismatch,
                  const struct smmu_host_dev *host_of_vfio, size_t n_host_of_vfio,
                  const struct smmu_binding *bindings, size_t n_bindings,
                  const char *const *booked, size_t n_booked, struct smmu_error *err)
{
    size_t nv = topo->n_vsmmus, np = topo->n_ports;
    char why[160];
    int rc;

    memset(c, 0, sizeof(*c));
    c->topo = topo;
    c->allow_mismatch = allow_mismatch;
    c->booked = booked;
    c->n_booked = booked ? n_booked : 0;
    c->bound = calloc(nv ? nv : 1, sizeof(*c->bound));
    c->bound_why = calloc(nv ? nv : 1, sizeof(*c->bound_why));
    c->order = calloc(nv ? nv : 1, sizeof(*c->order));
    c->new_bindings = calloc(nv ? nv : 1, sizeof(*c->new_bindings));
    c->taken = calloc(np ? np : 1, sizeof(*c->taken));
    if (!c->bound || !c->bound_why || !c->order || !c->new_bindings || !c->taken) {
        plan_ctx_fini(c);
        return smmu_error_set(err, -ENOMEM, "planner: out of memory");
    }

    /* vSMMUs by QEMU's identifier (creation order), the tie-break of every choice. */
    for (size_t i = 0; i < nv; i++) {
        size_t k = i;
        while (k > 0 && topo->vsmmus[c->order[k - 1]].identifier > topo->vsmmus[i].identifier) {
            c->order[k] = c->order[k - 1];
            k--;
        }
        c->order[k] = i;
    }

    for (size_t v = 0; v < nv; v++) {
        rc = place_bind(c, v, topo->vsmmus[v].bound_smmu, "by the discovered topology", err);
        if (rc < 0)
            goto fail;
    }
    for (size_t i = 0; i < topo->n_vfio; i++) {
        const struct smmu_vfio_dev *d = &topo->vfio[i];
        const struct smmu_host_dev *h;
        int rp = d->rootport, v;
        if (rp < 0 || (size_t)rp >= np || !d->host[0])
            continue;
        v = topo->ports[rp].vsmmu;
        if (v < 0 || (size_t)v >= nv)
            continue;
        h = place_find_host(host_of_vfio, n_host_of_vfio, d->host);
        if (!h)
            continue;
        snprintf(why, sizeof(why), "by vfio-pci %s (host %s)", d->id[0] ? d->id : d->path, d->host);
        rc = place_bind(c, (size_t)v, h->smmu, why, err);
        if (rc < 0)
            goto fail;
    }
    for (size_t i = 0; bindings && i < n_bindings; i++) {
        int v = smmu_topology_find_vsmmu(topo, bindings[i].vsmmu_id);
        if (v < 0)
            continue;
        rc = place_bind(c, (size_t)v, bindings[i].host_smmu, "by the journal", err);
        if (rc < 0)
            goto fail;
    }
    return 0;
fail:
    plan_ctx_fini(c);
    return rc;
}

void plan_ctx_fini(struct plan_ctx *c)
{
    free(c->bound);
    free(c->bound_why);
    free(c->order);
    free(c->taken);
    free(c->new_bindings);
    c->bound = NULL;
    c->bound_why = NULL;
    c->order = NULL;
    c->taken = NULL;
    c->new_bindings = NULL;
    c->n_new_bindings = 0;
}

static bool place_port_usable(const struct plan_ctx *c, size_t i)
{
    const struct smmu_rootport *rp = &c->topo->ports[i];
    if (!rp->id[0] || !rp->hotplug || rp->occupant_id[0] || rp->occupant_path[0] || c->taken[i])
        return false;
    for (size_t k = 0; k < c->n_booked; k++)
        if (c->booked[k] && !strcmp(c->booked[k], rp->id))
            return false;
    /* A vfio-pci device known on this port occupies it even if discovery missed the child link. */
    for (size_t k = 0; k < c->topo->n_vfio; k++)
        if (c->topo->vfio[k].rootport == (int)i)
            return false;
    return true;
}

/* The usable port on vSMMU v (any vSMMU-less port when v < 0) for dev: one whose reserved windows fit the
 * device's BARs first (DESIGN §8), then the lowest (chassis, port); -1 if none. With dev NULL: any usable
 * port (is there room at all?). */
static int place_best_port(const struct plan_ctx *c, int v, const struct smmu_host_dev *dev)
{
    int best = -1;
    bool best_fits = false;
    for (size_t i = 0; i < c->topo->n_ports; i++) {
        const struct smmu_rootport *rp = &c->topo->ports[i];
        bool on = v >= 0 ? rp->vsmmu == v : (rp->vsmmu < 0 || (size_t)rp->vsmmu >= c->topo->n_vsmmus);
        struct smmu_fit f = {.fits = true};
        if (!on || !place_port_usable(c, i))
            continue;
        if (dev)
            smmu_plan_port_fit(rp, dev, &f);
        if (best < 0 || (f.fits && !best_fits) ||
            (f.fits == best_fits &&
             (rp->chassis < c->topo->ports[best].chassis ||
              (rp->chassis == c->topo->ports[best].chassis && rp->port < c->topo->ports[best].port)))) {
            best = (int)i;
            best_fits = f.fits;
        }
    }
    return best;
}

/* The placement's window verdict. The port was the best there was (place_best_port prefers fitting ones), so
 * a port that does not fit means no free port behind that vSMMU does. */
static void place_fit(const struct plan_ctx *c, const struct smmu_host_dev *dev, int v, const struct smmu_rootport *rp,
                      struct smmu_placement *pl)
{
    struct smmu_fit f;
    char what[192], fix[96];
    smmu_plan_port_fit(rp, dev, &f);
    pl->fits = f.fits;
    if (f.fits)
        return;
    smmu_plan_fit_str(rp, &f, what, sizeof(what));
    smmu_plan_fit_fix(rp, &f, fix, sizeof(fix));
    snprintf(pl->fit, sizeof(pl->fit),
             "%s on %s: no free root port %s%s has windows that fit its BARs (%s); the guest may not be able to "
             "assign them. Fix: launch the VM with %s on a pcie-root-port there (libvirt: <qemu:override> of the "
             "root port's properties; see smmuctl layout)",
             dev->bdf, rp->id, v >= 0 ? "behind vSMMU " : "of the VM",
             v >= 0 ? place_vsmmu_name(&c->topo->vsmmus[v]) : "", what, fix);
}

/* Unbound vSMMU v becomes bound to dev's host SMMU by this request (later devices follow it; the caller
 * journals the new binding). */
static void place_bind_new(struct plan_ctx *c, size_t v, const struct smmu_host_dev *dev)
{
    struct smmu_binding *b = &c->new_bindings[c->n_new_bindings++];
    snprintf(c->bound[v], sizeof(c->bound[v]), "%s", dev->smmu);
    snprintf(c->bound_why[v], sizeof(c->bound_why[v]), "by %s in this request", dev->bdf);
    snprintf(b->vsmmu_id, sizeof(b->vsmmu_id), "%s", c->topo->vsmmus[v].id);
    snprintf(b->host_smmu, sizeof(b->host_smmu), "%s", dev->smmu);
}

static void place_fill(struct plan_ctx *c, const struct smmu_host_dev *dev, int v, int port,
                       struct smmu_placement *pl)
{
    const struct smmu_rootport *rp = &c->topo->ports[port];
    snprintf(pl->bdf, sizeof(pl->bdf), "%s", dev->bdf);
    snprintf(pl->host_smmu, sizeof(pl->host_smmu), "%s", dev->smmu);
    pl->numa_node = dev->numa_node;
    pl->vsmmu = v;
    snprintf(pl->vsmmu_id, sizeof(pl->vsmmu_id), "%s", v >= 0 ? c->topo->vsmmus[v].id : "");
    pl->port = port;
    snprintf(pl->port_id, sizeof(pl->port_id), "%s", rp->id);
    c->taken[port] = true;
    place_fit(c, dev, v, rp, pl);
}

/* Why nothing fits: every vSMMU (by identifier) with its binding and state, then a hint about
 * --allow-mismatch where it matters. */
static int place_refuse(struct plan_ctx *c, const struct smmu_host_dev *dev, struct smmu_error *err)
{
    char msg[sizeof(err->message)];
    size_t len = 0;
    bool could_mismatch = false, accel_other = false;

#define PLACE_APPEND(...)                                                                 \
    do {                                                                                  \
        if (len < sizeof(msg))                                                            \
            len += (size_t)snprintf(msg + len, sizeof(msg) - len, __VA_ARGS__);           \
    } while (0)

    PLACE_APPEND("%s (host SMMU %s): no vSMMU can take it: ", dev->bdf, dev->smmu);
    for (size_t k = 0; k < c->topo->n_vsmmus; k++) {
        size_t v = c->order[k];
        const struct smmu_vsmmu *s = &c->topo->vsmmus[v];
        bool has_port = place_best_port(c, (int)v, NULL) >= 0;
        PLACE_APPEND("%s%s%s", k ? ", " : "", place_vsmmu_name(s), s->accel ? " (accel)" : "");
        if (c->bound[v][0]) {
            PLACE_APPEND(" bound to %s", c->bound[v]);
            if (!has_port)
                PLACE_APPEND(strcmp(c->bound[v], dev->smmu) ? " and has no free root port"
                                                            : " but has no free root port");
            else if (strcmp(c->bound[v], dev->smmu)) {
                if (s->accel)
                    accel_other = true;
                else
                    could_mismatch = true;
            }
        } else {
            PLACE_APPEND(" has no free root port");
        }
    }
    if (could_mismatch && !c->allow_mismatch)
        PLACE_APPEND("; --allow-mismatch would place it behind a non-accel vSMMU bound to another host SMMU");
    else if (accel_other && c->allow_mismatch)
        PLACE_APPEND("; --allow-mismatch does not apply to accel vSMMUs");
#undef PLACE_APPEND
    return smmu_error_set(err, -ENOSPC, "%s", msg);
}

/* Describe the ports of a VM without vSMMU briefly, for the refusal. */
static int place_refuse_plain(struct plan_ctx *c, const struct smmu_host_dev *dev, struct smmu_error *err)
{
    size_t occupied = 0, nohp = 0, anon = 0, booked = 0;
    for (size_t i = 0; i < c->topo->n_ports; i++) {
        const struct smmu_rootport *rp = &c->topo->ports[i];
        if (!rp->id[0])
            anon++;
        else if (!rp->hotplug)
            nohp++;
        else if (rp->occupant_id[0] || rp->occupant_path[0] || c->taken[i])
            occupied++;
        else
            booked++;
    }
    return smmu_error_set(err, -ENOSPC,
                          "%s: no free hotpluggable root port (the VM has no vSMMU; %zu root ports: %zu occupied "
                          "or taken by this request, %zu booked by another transaction, %zu not hotpluggable, "
                          "%zu without an id)",
                          dev->bdf, c->topo->n_ports, occupied, booked, nohp, anon);
}

static int place_one(struct plan_ctx *c, const struct smmu_host_dev *dev, struct smmu_placement *pl,
                     struct smmu_error *err);

int plan_place_one(struct plan_ctx *c, const struct smmu_host_dev *dev, struct smmu_placement *pl,
                   struct smmu_error *err)
{
    int rc = place_one(c, dev, pl, err);
    if (rc == 0 && c->require_fit && !pl->fits)
        return smmu_error_set(err, -ENOSPC, "--require-fit: %s", pl->fit);
    return rc;
}

static int place_one(struct plan_ctx *c, const struct smmu_host_dev *dev, struct smmu_placement *pl,
                     struct smmu_error *err)
{
    const struct smmu_topology *t = c->topo;
    const char *smmu = dev->smmu;
    int port, pick = -1, pick_port = -1;
    const char *full_bound = NULL;

    memset(pl, 0, sizeof(*pl));
    if (t->n_vsmmus == 0) {
        port = place_best_port(c, -1, dev);
        if (port < 0)
            return place_refuse_plain(c, dev, err);
        place_fill(c, dev, -1, port, pl);
        snprintf(pl->reason, sizeof(pl->reason),
                 "the VM has no vSMMU: first free hotpluggable root port %s", t->ports[port].id);
        return 0;
    }

    /* 1. a vSMMU already bound to this host SMMU (lowest identifier with a free port). */
    for (size_t k = 0; k < t->n_vsmmus; k++) {
        size_t v = c->order[k];
        if (strcmp(c->bound[v], smmu))
            continue;
        port = place_best_port(c, (int)v, dev);
        if (port < 0) {
            if (!full_bound)
                full_bound = place_vsmmu_name(&t->vsmmus[v]);
            continue;
        }
        place_fill(c, dev, (int)v, port, pl);
        snprintf(pl->reason, sizeof(pl->reason), "vSMMU %s already bound to %s %s",
                 place_vsmmu_name(&t->vsmmus[v]), smmu, c->bound_why[v]);
        return 0;
    }

    /* 2. an unbound vSMMU with a free port: same NUMA node as the device first, then lowest identifier.
     * It is bound to this host SMMU from now on, so later devices of the request follow it. */
    for (int numa_pass = 1; numa_pass >= 0 && pick < 0; numa_pass--) {
        if (numa_pass && dev->numa_node < 0)
            continue;
        for (size_t k = 0; k < t->n_vsmmus && pick < 0; k++) {
            size_t v = c->order[k];
            if (c->bound[v][0] || (numa_pass && t->vsmmus[v].numa_node != dev->numa_node))
                continue;
            port = place_best_port(c, (int)v, dev);
            if (port >= 0) {
                pick = (int)v;
                pick_port = port;
                if (numa_pass)
                    snprintf(pl->reason, sizeof(pl->reason), "unbound vSMMU %s on NUMA node %d, now bound to %s",
                             place_vsmmu_name(&t->vsmmus[v]), dev->numa_node, smmu);
                else
                    snprintf(pl->reason, sizeof(pl->reason), "unbound vSMMU %s (lowest identifier %d), now bound to %s",
                             place_vsmmu_name(&t->vsmmus[v]), t->vsmmus[v].identifier, smmu);
            }
        }
    }
    if (pick >= 0) {
        char reason[sizeof(pl->reason)];
        memcpy(reason, pl->reason, sizeof(reason));
        place_fill(c, dev, pick, pick_port, pl);
        if (full_bound)
            snprintf(pl->reason, sizeof(pl->reason), "vSMMU %s (bound to %s) has no free root port; %s",
                     full_bound, smmu, reason);
        else
            memcpy(pl->reason, reason, sizeof(reason));
        place_bind_new(c, (size_t)pick, dev);
        return 0;
    }

    /* 3. --allow-mismatch: a NON-accel vSMMU bound to another host SMMU (never an accel one: the kernel
     * would fail the vIOMMU later with EINVAL, QEMU does not check). The binding stays as it was. */
    if (c->allow_mismatch) {
        for (size_t k = 0; k < t->n_vsmmus; k++) {
            size_t v = c->order[k];
            if (t->vsmmus[v].accel || !c->bound[v][0] || !strcmp(c->bound[v], smmu))
                continue;
            port = place_best_port(c, (int)v, dev);
            if (port < 0)
                continue;
            place_fill(c, dev, (int)v, port, pl);
            pl->mismatch = true;
            snprintf(pl->reason, sizeof(pl->reason), "--allow-mismatch: vSMMU %s is bound to %s, not %s",
                     place_vsmmu_name(&t->vsmmus[v]), c->bound[v], smmu);
            return 0;
        }
    }
    return place_refuse(c, dev, err);
}

/* A device whose port is fixed (a domain hostdev's guest address): take it if it keeps the SMMU rules of
 * DESIGN §4 — the port is free and hot-pluggable, and behind the vSMMU bound to the device's host SMMU, or an
 * unbound one (bound from now on), or (--allow-mismatch) a non-accel one bound elsewhere. Else -EINVAL saying
 * which rule it breaks. `why` names the constraint's source for messages. */
static int place_port(struct plan_ctx *c, const struct smmu_host_dev *dev, int port, const char *why,
                      struct smmu_placement *pl, struct smmu_error *err);

int plan_place_port(struct plan_ctx *c, const struct smmu_host_dev *dev, int port, const char *why,
                    struct smmu_placement *pl, struct smmu_error *err)
{
    int rc = place_port(c, dev, port, why, pl, err);
    if (rc == 0 && c->require_fit && !pl->fits)
        return smmu_error_set(err, -ENOSPC, "--require-fit: %s", pl->fit);
    return rc;
}

static int place_port(struct plan_ctx *c, const struct smmu_host_dev *dev, int port, const char *why,
                      struct smmu_placement *pl, struct smmu_error *err)
{
    const struct smmu_topology *t = c->topo;
    const struct smmu_rootport *rp = &t->ports[port];
    const char *smmu = dev->smmu;
    int v = rp->vsmmu;

    memset(pl, 0, sizeof(*pl));
    if (!rp->hotplug)
        return smmu_error_set(err, -EINVAL, "%s: %s names root port %s, which is not hot-pluggable", dev->bdf, why,
                              rp->id);
    if (!place_port_usable(c, (size_t)port))
        return smmu_error_set(err, -EINVAL, "%s: %s names root port %s, which is not free (%s)", dev->bdf, why, rp->id,
                              rp->occupant_id[0] ? rp->occupant_id : c->taken[port] ? "taken by another device of "
                              "this request" : "occupied or booked by another transaction");
    if (t->n_vsmmus == 0) {
        place_fill(c, dev, -1, port, pl);
        snprintf(pl->reason, sizeof(pl->reason), "%s (the VM has no vSMMU)", why);
        return 0;
    }
    if (v < 0 || (size_t)v >= t->n_vsmmus)
        return smmu_error_set(err, -EINVAL, "%s (host SMMU %s): %s names root port %s, which sits behind no vSMMU: "
                              "the device would bypass the vSMMU that must mirror its host SMMU", dev->bdf, smmu, why,
                              rp->id);
    if (!strcmp(c->bound[v], smmu)) {
        place_fill(c, dev, v, port, pl);
        snprintf(pl->reason, sizeof(pl->reason), "%s; vSMMU %s already bound to %s %s", why,
                 place_vsmmu_name(&t->vsmmus[v]), smmu, c->bound_why[v]);
        return 0;
    }
    if (!c->bound[v][0]) {
        place_fill(c, dev, v, port, pl);
        snprintf(pl->reason, sizeof(pl->reason), "%s; unbound vSMMU %s, now bound to %s", why,
                 place_vsmmu_name(&t->vsmmus[v]), smmu);
        place_bind_new(c, (size_t)v, dev);
        return 0;
    }
    if (t->vsmmus[v].accel)
        return smmu_error_set(err, -EINVAL, "%s (host SMMU %s): %s names root port %s, behind accel vSMMU %s bound to %s "
                              "%s: an accel vSMMU takes only devices of its own host SMMU (--allow-mismatch does not "
                              "apply)", dev->bdf, smmu, why, rp->id, place_vsmmu_name(&t->vsmmus[v]), c->bound[v],
                              c->bound_why[v]);
    if (!c->allow_mismatch)
        return smmu_error_set(err, -EINVAL, "%s (host SMMU %s): %s names root port %s, behind vSMMU %s bound to %s %s "
                              "(--allow-mismatch would allow it: the vSMMU is not accel)", dev->bdf, smmu, why, rp->id,
                              place_vsmmu_name(&t->vsmmus[v]), c->bound[v], c->bound_why[v]);
    place_fill(c, dev, v, port, pl);
    pl->mismatch = true;
    snprintf(pl->reason, sizeof(pl->reason), "%s; --allow-mismatch: vSMMU %s is bound to %s, not %s", why,
             place_vsmmu_name(&t->vsmmus[v]), c->bound[v], smmu);
    return 0;
}
