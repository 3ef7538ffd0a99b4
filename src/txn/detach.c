/* detach.c — device_del for every device at once, DEVICE_DELETED waited for in parallel. */
#define _GNU_SOURCE
#include "txn/txn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void iommufd_deleted(struct smmu_txn *t, int r, const struct smmu_error *e)
{
    txn_reply_k k = t->fd_k;
    t->fd_k = NULL;
    if (r == -EIO && strstr(e->qmp_desc, "in use")) {
        k(t, 2, NULL); /* QEMU knows a user we did not see */
        return;
    }
    if (r < 0 && !(r == -EIO && strstr(e->qmp_desc, "not found"))) {
        k(t, r, e);
        return;
    }
    json_object_set_new(smmu_journal_doc(t->j), "iommufd", json_null());
    k(t, 0, NULL);
}

void txn_maybe_delete_iommufd(struct smmu_txn *t, txn_reply_k k)
{
    json_t *doc = smmu_journal_doc(t->j);
    json_t *fd = json_object_get(doc, "iommufd");
    const char *id = json_string_value(json_object_get(fd, "id"));
    const struct smmu_facts *f = t->f;
    if (!id || !json_is_true(json_object_get(fd, "owned"))) {
        k(t, 1, NULL);
        return;
    }
    if (json_array_size(smmu_journal_devices(t->j)) > 0) {
        k(t, 2, NULL);
        return;
    }
    for (size_t i = 0; i < f->topo.n_vfio; i++) {
        bool is_gone = false;
        for (size_t g = 0; g < t->ngone; g++)
            is_gone = is_gone || !strcmp(t->gone[g], f->topo.vfio[i].id);
        if (!is_gone && !strcmp(f->topo.vfio[i].iommufd, id)) {
            k(t, 2, NULL);
            return;
        }
    }
    t->fd_k = k;
    txn_send(t, -1, "object-del", json_pack("{s:s}", "id", id), NULL, 0, iommufd_deleted);
}

/* What detach acts on: a vfio-pci device of the VM, or another device smmuctl itself attached (journal). */
struct detach_target {
    const char *id;
    char bdf[SMMU_BDF_LEN + 1];
    const char *port;
};

static int detach_port_of(const struct smmu_topology *t, const char *id)
{
    for (size_t p = 0; p < t->n_ports; p++)
        if (!strcmp(t->ports[p].occupant_id, id))
            return (int)p;
    return -1;
}

/* Resolve a DEV argument (host PCI address or QEMU id). */
static int detach_resolve(smmu_journal *j, const struct smmu_facts *f, const char *dev, struct detach_target *out,
                          struct smmu_error *err)
{
    char bdf[SMMU_BDF_LEN + 1];
    const struct smmu_topology *t = &f->topo;
    json_t *jd = NULL;
    int v = -1;
    memset(out, 0, sizeof(*out));
    if (smmu_bdf_parse(dev, bdf, NULL) == 0) {
        for (size_t i = 0; i < t->n_vfio && v < 0; i++)
            if (!strcmp(t->vfio[i].host, bdf))
                v = (int)i;
        if (v < 0 && (jd = smmu_journal_find_device(j, bdf))) /* fd-passed devices have no `host` in QEMU */
            v = smmu_topology_find_vfio(t, json_string_value(json_object_get(jd, "id")));
        if (v < 0 && !jd)
            return smmu_error_set(err, -EINVAL, "%s is not attached to this VM (no vfio-pci device with host=%s)",
                                  dev, bdf);
    } else {
        v = smmu_topology_find_vfio(t, dev);
        if (v < 0)
            jd = smmu_journal_find_device(j, dev);
    }
    if (v >= 0) {
        const struct smmu_vfio_dev *d = &t->vfio[v];
        out->id = d->id;
        jd = smmu_journal_find_device(j, d->id);
        snprintf(out->bdf, sizeof(out->bdf), "%s", d->host[0] ? d->host : json_string_value(json_object_get(jd, "bdf")) ?: "");
        out->port = d->rootport >= 0 ? t->ports[d->rootport].id : "";
        return 0;
    }
    int p = detach_port_of(t, jd ? json_string_value(json_object_get(jd, "id")) : dev);
    if (jd && p >= 0) { /* a device smmuctl attached that is not vfio-pci (the engine drives any driver) */
        out->id = t->ports[p].occupant_id;
        snprintf(out->bdf, sizeof(out->bdf), "%s", json_string_value(json_object_get(jd, "bdf")) ?: "");
        out->port = t->ports[p].id;
        return 0;
    }
    if (p >= 0)
        return smmu_error_set(err, -EINVAL, "%s is a %s on %s, not a vfio-pci device: smmuctl detaches only "
                              "vfio-pci devices and devices it attached (use `smmuctl qmp device_del` for others)",
                              dev, t->ports[p].occupant_driver, t->ports[p].id);
    return smmu_error_set(err, -EINVAL, "no vfio-pci device '%s' in this VM (give its QEMU id or host PCI address; "
                          "see smmuctl topology)", dev);
}

static void detach_end(struct smmu_txn *t)
{
    struct smmu_result *res = t->res;
    size_t n = t->nids;
    if (t->lost)
        res->outcome = SMMU_OUTCOME_INCOMPLETE;
    else if (t->ngone == n && t->fdst >= 0)
        res->outcome = SMMU_OUTCOME_DONE;
    else if (t->ngone == 0 && t->npending == 0)
        res->outcome = SMMU_OUTCOME_ROLLED_BACK;
    else
        res->outcome = SMMU_OUTCOME_INCOMPLETE;
    res->report = json_pack("{s:s,s:O,s:{s:s?,s:s}}", "outcome",
                            res->outcome == SMMU_OUTCOME_DONE ? "done"
                            : res->outcome == SMMU_OUTCOME_ROLLED_BACK ? "failed" : "incomplete",
                            "devices", t->report_devs, "iommufd", "id",
                            t->fd_id[0] ? t->fd_id : NULL, "action",
                            t->fdst == 0 ? "deleted" : t->fdst == 2 ? "kept" : t->fdst == 1 ? "none" : "error");
    txn_finish(t);
}

static void detach_iommufd_done(struct smmu_txn *t, int r, const struct smmu_error *e)
{
    t->fdst = r;
    if (r < 0 && !t->res->error.code)
        smmu_error_copy(&t->res->error, e);
    json_object_set_new(smmu_journal_doc(t->j), "txn", json_null());
    txn_save(t);
    detach_end(t);
}

static void detach_unplugged(struct smmu_txn *t, int r)
{
    smmu_journal *j = t->j;
    struct smmu_result *res = t->res;
    json_t *doc = smmu_journal_doc(j);
    (void)r;
    for (size_t i = 0; i < t->nids; i++) {
        json_t *step = json_array_get(t->steps, i);
        json_t *rd = txn_report_device(step, txn_del_name(t->out[i]));
        json_object_del(rd, "state");
        json_object_set_new(rd, "outcome", json_string(txn_del_name(t->out[i])));
        if (t->out[i] != TXN_DEL_DONE)
            json_object_set_new(rd, "message", json_string(t->errs[i].message));
        json_array_append_new(t->report_devs, rd);
        switch (t->out[i]) {
        case TXN_DEL_DONE:
            txn_step_state(step, SMMU_STEP_DONE);
            smmu_journal_remove_device(j, t->ids[i]);
            t->gone[t->ngone++] = t->ids[i];
            break;
        case TXN_DEL_PENDING: {
            json_t *jd = smmu_journal_find_device(j, t->ids[i]);
            txn_step_state(step, SMMU_STEP_PENDING);
            if (!jd) { /* not attached by smmuctl (cold-plugged or by hand): track the pending unplug anyway */
                jd = txn_report_device(step, "unplug-pending");
                json_array_append_new(smmu_journal_devices(j), jd);
            }
            json_object_set_new(jd, "state", json_string("unplug-pending"));
            t->npending++;
            break;
        }
        case TXN_DEL_REFUSED:
            txn_step_state(step, SMMU_STEP_REFUSED);
            t->nfailed++;
            if (!res->error.code)
                smmu_error_copy(&res->error, &t->errs[i]);
            break;
        default:
            txn_step_state(step, t->lost ? SMMU_STEP_SENT : SMMU_STEP_FAILED);
            t->nfailed++;
            if (!res->error.code)
                smmu_error_copy(&res->error, &t->errs[i]);
            break;
        }
    }
    t->fdst = 1;
    /* the id is kept aside: a deleted object leaves the journal */
    snprintf(t->fd_id, sizeof(t->fd_id), "%s", txn_step_str(json_object_get(doc, "iommufd"), "id"));
    if (!t->lost) {
        txn_maybe_delete_iommufd(t, detach_iommufd_done);
        return;
    }
    if (!res->error.code)
        smmu_error_set(&res->error, -ENOTCONN, "QEMU became unreachable during detach");
    txn_save(t);
    detach_end(t);
}

int smmu_txn_detach_start(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const char *const *devs,
                          size_t n, const struct smmu_txn_opts *opts, struct smmu_result *res,
                          smmu_txn_done_fn done, void *payload, smmu_txn **out)
{
    struct smmu_txn *t = txn_ctx_new(c, j, f, opts, res, done, payload);
    json_t *doc = smmu_journal_doc(j), *txn;
    char ts[32];
    time_t now = time(NULL);

    if (out)
        *out = NULL;
    if (!t || txn_ctx_alloc(t, n) < 0 || !(t->steps = json_array()) || !(t->report_devs = json_array())) {
        if (t)
            txn_ctx_discard(t);
        return smmu_error_set(&res->error, -ENOMEM, "out of memory");
    }
    if (out)
        *out = t;
    t->nids = n;
    if (n == 0) {
        smmu_error_set(&res->error, -EINVAL, "no device given");
        res->outcome = SMMU_OUTCOME_REFUSED;
        txn_finish(t);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct detach_target tg;
        if (detach_resolve(j, f, devs[i], &tg, &res->error) < 0) {
            res->outcome = SMMU_OUTCOME_REFUSED;
            txn_finish(t);
            return 0;
        }
        t->ids[i] = tg.id;
        if (!t->ids[i][0]) {
            smmu_error_set(&res->error, -EINVAL, "%s is an anonymous vfio-pci device (no id): QEMU cannot "
                           "unplug it by name", devs[i]);
            res->outcome = SMMU_OUTCOME_REFUSED;
            txn_finish(t);
            return 0;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(t->ids[k], t->ids[i])) {
                smmu_error_set(&res->error, -EINVAL, "%s is listed twice (device %s)", devs[i], t->ids[i]);
                res->outcome = SMMU_OUTCOME_REFUSED;
                txn_finish(t);
                return 0;
            }
        json_t *jd = smmu_journal_find_device(j, tg.id);
        json_array_append_new(t->steps, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kind", "device_del", "name",
                                                  tg.id, "bdf", tg.bdf, "port", tg.port,
                                                  "vsmmu", txn_step_str(jd, "vsmmu"), "host_smmu",
                                                  txn_step_str(jd, "host_smmu"), "state", "sent"));
    }
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    txn = json_pack("{s:s,s:i,s:s,s:O}", "op", "detach", "pid", (int)getpid(), "started", ts, "steps", t->steps);
    json_object_set_new(doc, "txn", txn);
    if (txn_save(t) < 0) {
        json_object_set_new(doc, "txn", json_null());
        res->outcome = SMMU_OUTCOME_ROLLED_BACK;
        txn_finish(t);
        return 0;
    }
    int unplug_ms = opts->no_wait ? 0 : (opts->unplug_timeout_ms > 0 ? opts->unplug_timeout_ms : 10000);
    txn_unplug(t, t->ids, n, unplug_ms, t->out, t->errs, detach_unplugged);
    return 0;
}
