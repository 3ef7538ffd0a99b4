/* render.c — the text forms of `topology` and `plan` (see render.h). ASCII only, so that output survives
 * any terminal, log file or grep. */
#include "cli/render.h"

#include <stdlib.h>
#include "smmuctl/host.h"
#include <string.h>

/* ---- topology ---- */

static const struct smmu_vfio_dev *render_vfio_at(const struct smmu_topology *t, const char *path)
{
    for (size_t i = 0; path && *path && i < t->n_vfio; i++)
        if (!strcmp(t->vfio[i].path, path))
            return &t->vfio[i];
    return NULL;
}

/* "rp1a", or "(anonymous)" (the QOM path is printed at the end of the line). */
static void render_port_name(char *buf, size_t len, const struct smmu_rootport *rp)
{
    snprintf(buf, len, "%s", rp->id[0] ? rp->id : "(anonymous)");
}

/* What sits on a port: "free", "nic0 (e1000e)", "hostdev0 (vfio-pci, host 0009:01:00.0, iommufd iommufd0)". */
static void render_occupant(FILE *out, const struct smmu_topology *t, const struct smmu_rootport *rp)
{
    const struct smmu_vfio_dev *d;
    if (!rp->occupant_path[0]) {
        fputs(rp->hotplug && rp->id[0] ? "free" : "empty", out);
        return;
    }
    fprintf(out, "%s (%s", rp->occupant_id[0] ? rp->occupant_id : "anonymous device",
            rp->occupant_driver[0] ? rp->occupant_driver : "unknown type");
    if ((d = render_vfio_at(t, rp->occupant_path)) != NULL) {
        fprintf(out, ", host %s", d->host[0] ? d->host : "passed by fd");
        fprintf(out, ", iommufd %s", d->iommufd[0] ? d->iommufd : "none (legacy container)");
        if (!d->hotplugged)
            fputs(", cold-plugged", out);
    }
    fputc(')', out);
}

/* The reserve hints set on the port ("  windows pref64 256 GiB, mem 16 MiB"); nothing when none is set. */
static void render_windows(FILE *out, const struct smmu_rootport *rp)
{
    const struct { const char *name; const struct smmu_reserve *r; bool bytes; } w[] = {
        {"pref64", &rp->pref64_reserve, true}, {"pref32", &rp->pref32_reserve, true},
        {"mem", &rp->mem_reserve, true}, {"io", &rp->io_reserve, true}, {"bus", &rp->bus_reserve, false},
    };
    bool first = true;
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        char sz[32];
        if (!w[i].r->set)
            continue;
        if (w[i].bytes)
            smmu_host_size_str(w[i].r->value, sz, sizeof(sz));
        else
            snprintf(sz, sizeof(sz), "%llu", (unsigned long long)w[i].r->value);
        fprintf(out, "%s%s %s", first ? "  windows " : ", ", w[i].name, sz);
        first = false;
    }
}

static void render_port_line(FILE *out, const struct smmu_topology *t, size_t i, const char *prefix, bool last,
                             int width, bool with_bus)
{
    const struct smmu_rootport *rp = &t->ports[i];
    char name[SMMU_PATH_LEN + 16];
    render_port_name(name, sizeof(name), rp);
    fprintf(out, "%s%s %-*s  chassis %d port %d  %s", prefix, last ? "`--" : "|--", width, name, rp->chassis,
            rp->port, rp->hotplug ? "hotplug   " : "no-hotplug");
    if (with_bus)
        fprintf(out, "  on %s", rp->bus_name[0] ? rp->bus_name : rp->parent_bus);
    fputs("  ", out);
    render_occupant(out, t, rp);
    render_windows(out, rp);
    if (!rp->id[0])
        fprintf(out, "  [%s: no id, smmuctl cannot plug into it]", rp->path);
    else if (!rp->hotplug)
        fputs("  [hotplug off]", out);
    fputc('\n', out);
}

/* Does a vfio-pci device whose host is unknown (passed by fd) sit behind vSMMU v? Then "not bound" would be
 * a guess: its binding is only known from the journal. */
static bool render_unknown_host_behind(const struct smmu_topology *t, int v)
{
    for (size_t i = 0; i < t->n_vfio; i++) {
        int p = t->vfio[i].rootport;
        if (!t->vfio[i].host[0] && p >= 0 && (size_t)p < t->n_ports && t->ports[p].vsmmu == v)
            return true;
    }
    return false;
}

static int render_name_width(const struct smmu_topology *t)
{
    int w = 0;
    for (size_t i = 0; i < t->n_ports; i++) {
        char name[SMMU_PATH_LEN + 16];
        render_port_name(name, sizeof(name), &t->ports[i]);
        if ((int)strlen(name) > w)
            w = (int)strlen(name);
    }
    return w;
}

void render_topology(FILE *out, const struct smmu_topology *t)
{
    size_t *idx = calloc(t->n_ports ? t->n_ports : 1, sizeof(*idx));
    int width = render_name_width(t);
    size_t free_ports = 0, n;

    if (!idx) {
        fputs("smmuctl: out of memory\n", stderr);
        return;
    }
    for (size_t i = 0; i < t->n_ports; i++)
        free_ports += t->ports[i].id[0] && t->ports[i].hotplug && !t->ports[i].occupant_path[0];
    fprintf(out, "QEMU %d.%d.%d: %zu vSMMU%s, %zu root port%s (%zu free), %zu iommufd object%s\n", t->qemu_major,
            t->qemu_minor, t->qemu_micro, t->n_vsmmus, t->n_vsmmus == 1 ? "" : "s", t->n_ports,
            t->n_ports == 1 ? "" : "s", free_ports, t->n_iommufds, t->n_iommufds == 1 ? "" : "s");

    for (size_t v = 0; v < t->n_vsmmus; v++) {
        const struct smmu_vsmmu *s = &t->vsmmus[v];
        fprintf(out, "\nvSMMU %s  identifier %d, accel %s, %s%s\n", s->id[0] ? s->id : s->path, s->identifier,
                s->accel ? "on" : "off",
                !strncmp(s->bound_smmu, "unknown", 7) || (!s->bound_smmu[0] && render_unknown_host_behind(t, (int)v))
                    ? "host SMMU unknown (a vfio-pci passed by fd sits behind it)"
                : s->bound_smmu[0] ? "bound to host SMMU "
                                   : "not bound to a host SMMU",
                !strncmp(s->bound_smmu, "unknown", 7) ? "" : s->bound_smmu);
        fprintf(out, "`-- pxb-pcie %s  bus_nr ", s->pxb_id[0] ? s->pxb_id : s->primary_bus);
        if (s->bus_nr >= 0)
            fprintf(out, "%d", s->bus_nr);
        else
            fputs("unknown", out);
        if (s->numa_node >= 0)
            fprintf(out, ", NUMA node %d\n", s->numa_node);
        else
            fputs(", NUMA node unset\n", out);
        n = smmu_topology_ports_of(t, (int)v, idx);
        if (n == 0)
            fputs("    (no root ports)\n", out);
        for (size_t k = 0; k < n; k++)
            render_port_line(out, t, idx[k], "    ", k + 1 == n, width, false);
    }
    if (t->n_vsmmus == 0)
        fputs("\nNo vSMMU (arm-smmuv3): devices go to any free hotpluggable root port.\n", out);

    n = smmu_topology_ports_of(t, -2, idx);
    fprintf(out, "\nRoot ports behind no vSMMU:%s\n", n ? "" : " none");
    for (size_t k = 0; k < n; k++)
        render_port_line(out, t, idx[k], "", k + 1 == n, width, true);

    fputs("\niommufd objects:", out);
    for (size_t i = 0; i < t->n_iommufds; i++)
        fprintf(out, "%s %s", i ? "," : "", t->iommufds[i]);
    fputs(t->n_iommufds ? "\n" : " none\n", out);

    /* vfio-pci devices the tree above does not show (not on a known root port) */
    bool header = false;
    for (size_t i = 0; i < t->n_vfio; i++) {
        const struct smmu_vfio_dev *d = &t->vfio[i];
        if (d->rootport >= 0 && (size_t)d->rootport < t->n_ports)
            continue;
        if (!header)
            fputs("vfio-pci devices on no root port:\n", out);
        header = true;
        fprintf(out, "  %s (host %s, iommufd %s)\n", d->id[0] ? d->id : d->path, d->host[0] ? d->host : "passed by fd",
                d->iommufd[0] ? d->iommufd : "none");
    }
    free(idx);
}

/* ---- plan ---- */

void render_plan(FILE *out, const struct smmu_topology *t, const struct smmu_plan *p)
{
    for (size_t i = 0; i < p->n_placements; i++) {
        const struct smmu_placement *pl = &p->placements[i];
        const struct smmu_vsmmu *v = NULL;
        if (t && pl->vsmmu >= 0 && (size_t)pl->vsmmu < t->n_vsmmus)
            v = &t->vsmmus[pl->vsmmu];
        if (i > 0)
            fputc('\n', out);
        fprintf(out, "%s -> root port %s as %s%s\n", pl->bdf, pl->port_id, pl->device_id,
                pl->mismatch ? "  [SMMU MISMATCH, --allow-mismatch]" : "");
        fprintf(out, "  host SMMU  %s", pl->host_smmu[0] ? pl->host_smmu : "(none)");
        if (pl->numa_node >= 0)
            fprintf(out, " (NUMA node %d)", pl->numa_node);
        fputc('\n', out);
        if (v) {
            fprintf(out, "  vSMMU      %s (identifier %d, accel %s) on pxb-pcie %s", v->id[0] ? v->id : v->path,
                    v->identifier, v->accel ? "on" : "off", v->pxb_id[0] ? v->pxb_id : "?");
            if (v->bus_nr >= 0)
                fprintf(out, " bus_nr %d", v->bus_nr);
            fputc('\n', out);
        } else {
            fputs("  vSMMU      none (the VM has no vSMMU)\n", out);
        }
        fprintf(out, "  reason     %s\n", pl->reason);
    }
    if (p->n_new_bindings) {
        fputs("\nNew bindings:", out);
        for (size_t i = 0; i < p->n_new_bindings; i++)
            fprintf(out, "%s %s -> %s", i ? "," : "", p->new_bindings[i].vsmmu_id, p->new_bindings[i].host_smmu);
        fputc('\n', out);
    }
    fprintf(out, "\nQMP commands attach would send (in order; iommufd object %s %s):\n", p->iommufd_id,
            p->creates_iommufd ? "created" : "reused");
    for (size_t i = 0; i < p->n_steps; i++) {
        const struct smmu_step *s = &p->steps[i];
        json_t *cmd = json_pack("{s:s,s:O}", "execute", s->command, "arguments", s->args ? s->args : json_null());
        char *text = cmd ? json_dumps(cmd, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        fprintf(out, "  %zu. %s", i + 1, text ? text : "?");
        if (s->kind == SMMU_STEP_GETFD)
            fprintf(out, "  + fd of %s (SCM_RIGHTS)", s->fd_path);
        fputc('\n', out);
        free(text);
        json_decref(cmd);
    }
}
