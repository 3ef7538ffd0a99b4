/* detach.c — device_del for every device at once, DEVICE_DELETED waited for in parallel. */
#define _GNU_SOURCE
#include "txn/txn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int txn_maybe_delete_iommufd(struct txn_ctx *t, const struct smmu_facts *f, const char *const *gone, size_t ngone,
                             struct smmu_error *err)
{
    json_t *doc = smmu_journal_doc(t->j);
    json_t *fd = json_object_get(doc, "iommufd");
    const char *id = json_string_value(json_object_get(fd, "id"));
    if (!id || !json_is_true(json_object_get(fd, "owned")))
        return 1;
    if (json_array_size(smmu_journal_devices(t->j)) > 0)
        return 2;
    for (size_t i = 0; i < f->topo.n_vfio; i++) {
        bool is_gone = false;
        for (size_t g = 0; g < ngone; g++)
            is_gone = is_gone || !strcmp(gone[g], f->topo.vfio[i].id);
        if (!is_gone && !strcmp(f->topo.vfio[i].iommufd, id))
            return 2;
    }
    int r = txn_send(t, -1, "object-del", json_pack("{s:s}", "id", id), NULL, 0, NULL, err);
    if (r == -EIO && strstr(err->qmp_desc, "in use"))
        return 2; /* QEMU knows a user we did not see */
    if (r < 0 && !(r == -EIO && strstr(err->qmp_desc, "not found")))
        return r;
    json_object_set_new(doc, "iommufd", json_null());
    return 0;
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

int smmu_txn_detach(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, const char *const *devs, size_t n,
                    const struct smmu_txn_opts *opts, struct smmu_result *res)
{
    struct txn_ctx t = {c, j, opts, res, false};
    json_t *doc = smmu_journal_doc(j), *txn, *steps = json_array(), *report_devs = json_array();
    const char **ids = calloc(n ? n : 1, sizeof(*ids));
    const char **gone = calloc(n ? n : 1, sizeof(*gone));
    enum txn_del *out = calloc(n ? n : 1, sizeof(*out));
    struct smmu_error *errs = calloc(n ? n : 1, sizeof(*errs));
    size_t ngone = 0, npending = 0, nfailed = 0;
    char ts[32];
    time_t now = time(NULL);
    int rc = 0;

    memset(res, 0, sizeof(*res));
    if (!ids || !gone || !out || !errs) {
        rc = smmu_error_set(&res->error, -ENOMEM, "out of memory");
        res->outcome = SMMU_OUTCOME_REFUSED;
        goto done;
    }
    if (n == 0) {
        rc = smmu_error_set(&res->error, -EINVAL, "no device given");
        res->outcome = SMMU_OUTCOME_REFUSED;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        struct detach_target tg;
        if ((rc = detach_resolve(j, f, devs[i], &tg, &res->error)) < 0) {
            res->outcome = SMMU_OUTCOME_REFUSED;
            goto done;
        }
        ids[i] = tg.id;
        if (!ids[i][0]) {
            rc = smmu_error_set(&res->error, -EINVAL, "%s is an anonymous vfio-pci device (no id): QEMU cannot "
                                "unplug it by name", devs[i]);
            res->outcome = SMMU_OUTCOME_REFUSED;
            goto done;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(ids[k], ids[i])) {
                rc = smmu_error_set(&res->error, -EINVAL, "%s is listed twice (device %s)", devs[i], ids[i]);
                res->outcome = SMMU_OUTCOME_REFUSED;
                goto done;
            }
        json_t *jd = smmu_journal_find_device(j, tg.id);
        json_array_append_new(steps, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kind", "device_del", "name", tg.id,
                                               "bdf", tg.bdf, "port", tg.port,
                                               "vsmmu", txn_step_str(jd, "vsmmu"), "host_smmu",
                                               txn_step_str(jd, "host_smmu"), "state", "sent"));
    }
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    txn = json_pack("{s:s,s:i,s:s,s:O}", "op", "detach", "pid", (int)getpid(), "started", ts, "steps", steps);
    json_object_set_new(doc, "txn", txn);
    if ((rc = txn_save(&t)) < 0) {
        json_object_set_new(doc, "txn", json_null());
        res->outcome = SMMU_OUTCOME_ROLLED_BACK;
        goto done;
    }

    int unplug_ms = opts->no_wait ? 0 : (opts->unplug_timeout_ms > 0 ? opts->unplug_timeout_ms : 10000);
    txn_unplug(&t, ids, n, unplug_ms, out, errs);

    for (size_t i = 0; i < n; i++) {
        json_t *step = json_array_get(steps, i);
        json_t *rd = txn_report_device(step, txn_del_name(out[i]));
        json_object_del(rd, "state");
        json_object_set_new(rd, "outcome", json_string(txn_del_name(out[i])));
        if (out[i] != TXN_DEL_DONE)
            json_object_set_new(rd, "message", json_string(errs[i].message));
        json_array_append_new(report_devs, rd);
        switch (out[i]) {
        case TXN_DEL_DONE:
            txn_step_state(step, "done");
            smmu_journal_remove_device(j, ids[i]);
            gone[ngone++] = ids[i];
            break;
        case TXN_DEL_PENDING: {
            json_t *jd = smmu_journal_find_device(j, ids[i]);
            txn_step_state(step, "pending");
            if (!jd) { /* not attached by smmuctl (cold-plugged or by hand): track the pending unplug anyway */
                jd = txn_report_device(step, "unplug-pending");
                json_array_append_new(smmu_journal_devices(j), jd);
            }
            json_object_set_new(jd, "state", json_string("unplug-pending"));
            npending++;
            break;
        }
        case TXN_DEL_REFUSED:
            txn_step_state(step, "refused");
            nfailed++;
            if (!res->error.code)
                smmu_error_copy(&res->error, &errs[i]);
            break;
        default:
            txn_step_state(step, t.lost ? "sent" : "failed");
            nfailed++;
            if (!res->error.code)
                smmu_error_copy(&res->error, &errs[i]);
            break;
        }
    }
    int fdst = 1;
    char fd_id[SMMU_ID_LEN];
    snprintf(fd_id, sizeof(fd_id), "%s", txn_step_str(json_object_get(doc, "iommufd"), "id"));
    if (!t.lost) {
        struct smmu_error e = SMMU_ERROR_INIT;
        fdst = txn_maybe_delete_iommufd(&t, f, gone, ngone, &e);
        if (fdst < 0 && !res->error.code)
            smmu_error_copy(&res->error, &e);
        json_object_set_new(doc, "txn", json_null());
    } else if (!res->error.code) {
        smmu_error_set(&res->error, -ENOTCONN, "QEMU became unreachable during detach");
    }
    txn_save(&t);
    if (t.lost)
        res->outcome = SMMU_OUTCOME_INCOMPLETE;
    else if (ngone == n && fdst >= 0)
        res->outcome = SMMU_OUTCOME_DONE;
    else if (ngone == 0 && npending == 0)
        res->outcome = SMMU_OUTCOME_ROLLED_BACK;
    else
        res->outcome = SMMU_OUTCOME_INCOMPLETE;
    res->report = json_pack("{s:s,s:O,s:{s:s?,s:s}}", "outcome",
                            res->outcome == SMMU_OUTCOME_DONE ? "done"
                            : res->outcome == SMMU_OUTCOME_ROLLED_BACK ? "failed" : "incomplete",
                            "devices", report_devs, "iommufd", "id", fd_id[0] ? fd_id : NULL, "action",
                            fdst == 0 ? "deleted" : fdst == 2 ? "kept" : fdst == 1 ? "none" : "error");
    rc = res->outcome == SMMU_OUTCOME_DONE ? 0 : (res->error.code ? res->error.code : -EIO);
done:
    json_decref(steps);
    json_decref(report_devs);
    free(ids);
    free(gone);
    free(out);
    free(errs);
    return rc;
}
