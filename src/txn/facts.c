/* facts.c — discovery completed with sysfs facts and the journal; planning a request from them. */
#include "smmuctl/txn.h"
#include "smmuctl/vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int facts_push_str(char ***arr, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*arr)[i], s))
            return 0;
    char **na = realloc(*arr, (*n + 1) * sizeof(char *));
    if (!na)
        return -ENOMEM;
    *arr = na;
    if (!(na[*n] = strdup(s)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

static void facts_warn(struct smmu_facts *f, const char *msg)
{
    size_t l = strlen(f->warnings);
    snprintf(f->warnings + l, sizeof(f->warnings) - l, "%s%s", l ? "; " : "", msg);
}

static void facts_bind(struct smmu_facts *f, int v, const char *smmu)
{
    if (v < 0 || (size_t)v >= f->topo.n_vsmmus || !smmu || !*smmu)
        return;
    if (!f->topo.vsmmus[v].bound_smmu[0])
        snprintf(f->topo.vsmmus[v].bound_smmu, sizeof(f->topo.vsmmus[v].bound_smmu), "%s", smmu);
}

/* A binding the journal records (a device's, or a step's): added to f->bindings and to the topology. Nothing
 * when either side is missing. -ENOMEM. */
static int facts_push_binding(struct smmu_facts *f, const char *vs, const char *hs)
{
    if (!vs || !*vs || !hs || !*hs)
        return 0;
    struct smmu_binding *nb = realloc(f->bindings, (f->n_bindings + 1) * sizeof(*nb));
    if (!nb)
        return -ENOMEM;
    f->bindings = nb;
    snprintf(nb[f->n_bindings].vsmmu_id, sizeof(nb->vsmmu_id), "%s", vs);
    snprintf(nb[f->n_bindings].host_smmu, sizeof(nb->host_smmu), "%s", hs);
    f->n_bindings++;
    facts_bind(f, smmu_topology_find_vsmmu(&f->topo, vs), hs);
    return 0;
}

/* The topology is in: complete it with sysfs (synchronous: local files) and the journal. */
static int facts_complete(const char *sysfs_root, smmu_journal *j, struct smmu_facts *f, struct smmu_error *err)
{
    f->vfio_hosts = calloc(f->topo.n_vfio ? f->topo.n_vfio : 1, sizeof(*f->vfio_hosts));
    if (!f->vfio_hosts) {
        smmu_facts_free(f);
        return smmu_error_set(err, -ENOMEM, "out of memory");
    }
    /* vfio-pci devices in the VM: their host SMMU binds their vSMMU */
    for (size_t i = 0; i < f->topo.n_vfio; i++) {
        const struct smmu_vfio_dev *d = &f->topo.vfio[i];
        struct smmu_error e = SMMU_ERROR_INIT;
        if (!d->host[0])
            continue;
        if (facts_push_str(&f->attached, &f->n_attached, d->host) < 0)
            goto oom;
        if (smmu_host_read(sysfs_root, d->host, &f->vfio_hosts[f->n_vfio_hosts], &e) < 0) {
            char w[600];
            snprintf(w, sizeof(w), "vfio-pci %s: host %s not readable in sysfs (%s)", d->id, d->host, e.message);
            facts_warn(f, w);
            continue;
        }
        if (d->rootport >= 0)
            facts_bind(f, f->topo.ports[d->rootport].vsmmu, f->vfio_hosts[f->n_vfio_hosts].smmu);
        f->n_vfio_hosts++;
    }
    if (j) {
        size_t i;
        json_t *d, *txn, *s;
        json_array_foreach(smmu_journal_devices(j), i, d) {
            const char *bdf = json_string_value(json_object_get(d, "bdf"));
            const char *vs = json_string_value(json_object_get(d, "vsmmu"));
            const char *hs = json_string_value(json_object_get(d, "host_smmu"));
            const char *id = json_string_value(json_object_get(d, "id"));
            if (bdf && facts_push_str(&f->attached, &f->n_attached, bdf) < 0)
                goto oom;
            if (bdf && id) {
                void *nv = realloc(f->journal_hosts, (f->n_journal_hosts + 1) * sizeof(*f->journal_hosts));
                if (!nv)
                    goto oom;
                f->journal_hosts = nv;
                snprintf(f->journal_hosts[f->n_journal_hosts].id, SMMU_ID_LEN, "%s", id);
                snprintf(f->journal_hosts[f->n_journal_hosts++].bdf, SMMU_BDF_LEN + 1, "%s", bdf);
            }
            if (facts_push_binding(f, vs, hs) < 0)
                goto oom;
        }
        txn = smmu_journal_txn(j);
        json_array_foreach(json_object_get(txn, "steps"), i, s) {
            const char *port = json_string_value(json_object_get(s, "port"));
            const char *kind = json_string_value(json_object_get(s, "kind"));
            const char *st = json_string_value(json_object_get(s, "state"));
            if (port && *port && facts_push_str(&f->booked, &f->n_booked, port) < 0)
                goto oom;
            /* The bindings an interrupted attach's plan promised: a device_add that was sent may have taken
             * effect (an fd-passed device shows QEMU no host), so its vSMMU is bound until recover settles it. */
            if (kind && !strcmp(kind, "device_add") && st &&
                (!strcmp(st, "sent") || !strcmp(st, "done") || !strcmp(st, "pending")) &&
                facts_push_binding(f, json_string_value(json_object_get(s, "vsmmu")),
                                   json_string_value(json_object_get(s, "host_smmu"))) < 0)
                goto oom;
        }
    }
    /* A vfio-pci device passed by fd (no `host`) that the journal does not explain binds its vSMMU to a host
     * SMMU nobody knows: never treat that vSMMU as free for another SMMU's devices. */
    for (size_t i = 0; i < f->topo.n_vfio; i++) {
        const struct smmu_vfio_dev *d = &f->topo.vfio[i];
        char why[SMMU_ID_LEN + 64];
        if (d->host[0] || d->rootport < 0)
            continue;
        snprintf(why, sizeof(why), "unknown (fd-passed vfio-pci %s)", d->id[0] ? d->id : d->path);
        facts_bind(f, f->topo.ports[d->rootport].vsmmu, why);
    }
    return 0;
oom:
    smmu_facts_free(f);
    return smmu_error_set(err, -ENOMEM, "out of memory");
}

struct facts_gather {
    char *sysfs_root;
    smmu_journal *j;
    struct smmu_facts *f;
    smmu_facts_cb cb;
    void *payload;
};

static void facts_discovered(int err, const struct smmu_error *e, void *payload)
{
    struct facts_gather *g = payload;
    struct smmu_error my = SMMU_ERROR_INIT;
    int r = err;
    if (r < 0)
        smmu_error_copy(&my, e);
    else
        r = facts_complete(g->sysfs_root, g->j, g->f, &my);
    g->cb(r, r < 0 ? &my : NULL, g->payload);
    free(g->sysfs_root);
    free(g);
}

int smmu_facts_gather_start(qmp_client *c, const char *sysfs_root, smmu_journal *j, struct smmu_facts *out,
                            smmu_facts_cb cb, void *payload, struct smmu_error *err)
{
    struct facts_gather *g = calloc(1, sizeof(*g));
    memset(out, 0, sizeof(*out));
    if (!g || !(g->sysfs_root = strdup(sysfs_root ? sysfs_root : "/sys"))) {
        free(g);
        return smmu_error_set(err, -ENOMEM, "out of memory");
    }
    g->j = j;
    g->f = out;
    g->cb = cb;
    g->payload = payload;
    if (smmu_vm_discover_start(c, 0, &out->topo, facts_discovered, g) < 0) {
        free(g->sysfs_root);
        free(g);
        return smmu_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

int smmu_facts_from_topology(const struct smmu_topology *topo, const char *sysfs_root, smmu_journal *j,
                             struct smmu_facts *out, struct smmu_error *err)
{
    memset(out, 0, sizeof(*out));
    if (smmu_topology_copy(&out->topo, topo) < 0)
        return smmu_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < out->topo.n_vsmmus; i++)
        out->topo.vsmmus[i].bound_smmu[0] = 0; /* bindings come from the facts, as after a discovery */
    return facts_complete(sysfs_root ? sysfs_root : "/sys", j, out, err);
}

void smmu_facts_free(struct smmu_facts *f)
{
    smmu_topology_free(&f->topo);
    free(f->vfio_hosts);
    free(f->bindings);
    for (size_t i = 0; i < f->n_attached; i++)
        free(f->attached[i]);
    free(f->attached);
    for (size_t i = 0; i < f->n_booked; i++)
        free(f->booked[i]);
    free(f->booked);
    free(f->journal_hosts);
    memset(f, 0, sizeof(*f));
}

int smmu_facts_plan(const struct smmu_facts *f, const char *sysfs_root, const char *const *devs, size_t n,
                    const struct smmu_plan_opts *opts, struct smmu_plan **out, struct smmu_error *err)
{
    struct smmu_host_dev *hosts;
    int r = 0;
    if (n == 0)
        return smmu_error_set(err, -EINVAL, "no device given");
    hosts = calloc(n, sizeof(*hosts));
    if (!hosts)
        return smmu_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n && r == 0; i++) {
        char bdf[SMMU_BDF_LEN + 1];
        if ((r = smmu_bdf_parse(devs[i], bdf, err)) < 0)
            break;
        r = smmu_host_read(sysfs_root, bdf, &hosts[i], err);
    }
    if (r == 0)
        r = smmu_plan_attach(&f->topo, hosts, n, f->vfio_hosts, f->n_vfio_hosts, f->bindings, f->n_bindings,
                             (const char *const *)f->attached, f->n_attached, (const char *const *)f->booked,
                             f->n_booked, opts, out, err);
    free(hosts);
    return r;
}
