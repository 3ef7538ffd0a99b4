/* status.c — reconcile the journal with live QEMU; with recover, finish or undo an interrupted transaction.
 * A step machine like attach and detach: recovery first (rollback or unplug), then the journal is compared
 * with the facts, then the iommufd object smmuctl owns is deleted when nothing uses it any more. */
#include "txn/txn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void status_compare(struct smmu_txn *t);

/* ---- an interrupted detach: devices still present get their device_del (again), all in parallel ---- */

static void status_detach_end(struct smmu_txn *t, enum smmu_outcome o)
{
    json_decref(t->recovered);
    t->recovered = json_pack("{s:s,s:s}", "op", "detach", "result", o == SMMU_OUTCOME_DONE ? "finished"
                                                                                          : "incomplete");
    txn_save(t);
    status_compare(t);
}

static void status_detach_unplugged(struct smmu_txn *t, int r)
{
    bool pending = false;
    (void)r;
    for (size_t i = 0; i < t->nids; i++) {
        if (t->out[i] == TXN_DEL_DONE) {
            txn_step_state(t->which[i], SMMU_STEP_DONE);
            smmu_journal_remove_device(t->j, t->ids[i]);
            json_array_append_new(t->finished_ids, json_string(t->ids[i]));
        } else if (t->out[i] == TXN_DEL_PENDING) {
            json_t *jd = smmu_journal_find_device(t->j, t->ids[i]);
            if (jd)
                json_object_set_new(jd, "state", json_string("unplug-pending"));
            txn_step_state(t->which[i], SMMU_STEP_PENDING);
            pending = true;
        } else {
            txn_step_state(t->which[i], t->lost ? SMMU_STEP_SENT : SMMU_STEP_FAILED);
            if (!t->res->error.code)
                smmu_error_copy(&t->res->error, &t->errs[i]);
        }
    }
    if (t->lost) {
        status_detach_end(t, SMMU_OUTCOME_INCOMPLETE);
        return;
    }
    json_object_set_new(smmu_journal_doc(t->j), "txn", json_null());
    status_detach_end(t, pending ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_DONE);
}

static void status_finish_detach(struct smmu_txn *t, json_t *txn)
{
    json_t *steps = json_object_get(txn, "steps"), *step;
    size_t k;
    t->nids = 0;
    if (txn_ctx_alloc(t, json_array_size(steps)) < 0) {
        status_detach_end(t, SMMU_OUTCOME_INCOMPLETE);
        return;
    }
    json_array_foreach(steps, k, step) {
        const char *id = txn_step_str(step, "name");
        if (txn_step_is(step, SMMU_STEP_DONE) || txn_step_is(step, SMMU_STEP_REFUSED) ||
            txn_step_is(step, SMMU_STEP_FAILED))
            continue;
        if (!txn_device_present(t->f, id)) {
            txn_step_state(step, SMMU_STEP_DONE);
            smmu_journal_remove_device(t->j, id);
            json_array_append_new(t->finished_ids, json_string(id));
            continue;
        }
        t->ids[t->nids] = id;
        t->which[t->nids++] = step;
    }
    if (t->nids == 0) {
        json_object_set_new(smmu_journal_doc(t->j), "txn", json_null());
        status_detach_end(t, SMMU_OUTCOME_DONE);
        return;
    }
    int ms = t->opts.unplug_timeout_ms > 0 ? t->opts.unplug_timeout_ms : 10000;
    txn_unplug(t, t->ids, t->nids, t->opts.no_wait ? 0 : ms, t->out, t->errs, status_detach_unplugged);
}

/* ---- an interrupted attach: rolled back ---- */

static void status_rolled_back(struct smmu_txn *t, enum smmu_outcome o)
{
    json_decref(t->rolled);
    t->rolled = json_incref(t->txn);
    json_decref(t->recovered);
    t->recovered = json_pack("{s:s,s:s}", "op", "attach", "result",
                             o == SMMU_OUTCOME_ROLLED_BACK ? "rolled-back" : "incomplete");
    txn_save(t);
    status_compare(t);
}

/* ---- the journal vs QEMU ---- */

/* QEMU is the truth: the vfio-pci devices it has that the journal does not know (cold-plugged, plugged by
 * hand or by another tool), so `status` never says "nothing attached" while QEMU holds devices. */
json_t *smmu_status_unknown_json(const struct smmu_topology *topo, smmu_journal *j)
{
    json_t *out = json_array();
    for (size_t i = 0; topo && i < topo->n_vfio; i++) {
        const struct smmu_vfio_dev *d = &topo->vfio[i];
        if (d->id[0] && j && smmu_journal_find_device(j, d->id))
            continue;
        const struct smmu_rootport *p = d->rootport >= 0 ? &topo->ports[d->rootport] : NULL;
        const char *vs = p && p->vsmmu >= 0 ? topo->vsmmus[p->vsmmu].id : "";
        json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "id", d->id[0] ? d->id : d->path,
                                             "bdf", d->host, "port", p ? p->id : "", "vsmmu", vs, "iommufd",
                                             d->iommufd, "hotplugged", d->hotplugged));
    }
    return out;
}

static json_t *status_unknown(struct smmu_txn *t)
{
    return smmu_status_unknown_json(t->f ? &t->f->topo : NULL, t->j);
}

static void status_end(struct smmu_txn *t)
{
    struct smmu_result *res = t->res;
    json_t *doc = smmu_journal_doc(t->j);
    json_t *voided = json_object_get(doc, "voided"), *id;
    size_t k;
    json_array_foreach(voided, k, id) /* devices of a restarted QEMU's journal: reported once, then forgotten */
        json_array_append(t->st_vanished, id);
    json_object_del(doc, "voided");
    txn_save(t);
    json_t *txn = smmu_journal_txn(t->j);
    json_t *interrupted = txn ? json_deep_copy(txn) : json_null();
    /* lost while recovering: the rollback could not finish, the journal holds it (4, not 3: "before any change") */
    res->outcome = (t->lost ? (t->recovering ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_UNREACHABLE)
                    : (txn || json_array_size(t->st_pending) > 0) ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_DONE);
    if (t->lost && !res->error.code)
        smmu_error_set(&res->error, -ENOTCONN, "QEMU became unreachable");
    res->report = json_pack("{s:O,s:O,s:o,s:O,s:O,s:o,s:O,s:O}", "attached", t->st_attached, "pending",
                            t->st_pending, "unknown", status_unknown(t), "finished", t->finished_ids, "vanished",
                            t->st_vanished, "interrupted", interrupted, "iommufd",
                            json_object_get(doc, "iommufd") ? json_object_get(doc, "iommufd") : json_null(),
                            "recovered", t->recovered);
    txn_finish(t);
}

static void status_iommufd_done(struct smmu_txn *t, int r, const struct smmu_error *e)
{
    if (r < 0 && !t->res->error.code)
        smmu_error_copy(&t->res->error, e);
    status_end(t);
}

static void status_compare(struct smmu_txn *t)
{
    smmu_journal *j = t->j;
    json_t *d;
    size_t i;
    /* Devices the journal knows vs devices QEMU has. A device rolled back just now is gone from QEMU but
     * facts were gathered before: check the journal's own step states first. */
    /* room for every id that can be called gone: finished by the detach above or by the loop below, undone */
    free(t->gone);
    t->ngone = 0;
    t->gone = calloc(json_array_size(t->finished_ids) + json_array_size(smmu_journal_devices(j)) +
                     json_array_size(json_object_get(t->rolled, "steps")) + 1, sizeof(*t->gone));
    for (i = 0; t->gone && i < json_array_size(smmu_journal_devices(j));) {
        d = json_array_get(smmu_journal_devices(j), i);
        const char *id = txn_step_str(d, "id");
        const char *state = txn_step_str(d, "state");
        if (!txn_device_present(t->f, id)) {
            /* gone from QEMU: a finished unplug, or removed behind smmuctl's back */
            json_array_append_new(!strcmp(state, "unplug-pending") ? t->finished_ids : t->st_vanished,
                                  json_string(id));
            json_array_remove(smmu_journal_devices(j), i);
            continue;
        }
        json_array_append(!strcmp(state, "unplug-pending") ? t->st_pending : t->st_attached, d);
        i++;
    }
    if (!t->lost && json_array_size(t->st_pending) == 0) {
        /* every finished id is gone from QEMU too */
        size_t k;
        json_t *id;
        json_array_foreach(t->finished_ids, k, id)
            if (t->gone)
                t->gone[t->ngone++] = json_string_value(id);
        json_array_foreach(json_object_get(t->rolled, "steps"), k, id)
            if (t->gone && !strcmp(txn_step_str(id, "kind"), "device_add") && txn_step_is(id, SMMU_STEP_UNDONE))
                t->gone[t->ngone++] = txn_step_str(id, "name");
        txn_maybe_delete_iommufd(t, status_iommufd_done);
        return;
    }
    status_end(t);
}

int smmu_txn_status_start(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, bool recover,
                          const struct smmu_txn_opts *opts, struct smmu_result *res, smmu_txn_done_fn done,
                          void *payload, smmu_txn **out)
{
    struct smmu_txn *t = txn_ctx_new(c, j, f, opts, res, done, payload);
    if (out)
        *out = NULL;
    if (!t || !(t->finished_ids = json_array()) || !(t->st_attached = json_array()) ||
        !(t->st_pending = json_array()) || !(t->st_vanished = json_array()) || !(t->recovered = json_null())) {
        if (t)
            txn_ctx_discard(t);
        return smmu_error_set(&res->error, -ENOMEM, "out of memory");
    }
    if (out)
        *out = t;
    json_t *txn = smmu_journal_txn(j);
    t->recover = recover;
    t->recovering = txn && recover; /* an open transaction is being finished: QEMU may change */
    if (t->recovering) {
        if (!strcmp(txn_step_str(txn, "op"), "attach")) {
            if (txn_ctx_alloc(t, 1) < 0) {
                txn_ctx_discard(t);
                return smmu_error_set(&res->error, -ENOMEM, "out of memory");
            }
            txn_rollback_attach(t, txn, status_rolled_back);
        } else {
            json_decref(t->txn);
            t->txn = json_incref(txn);
            status_finish_detach(t, t->txn);
        }
        return 0;
    }
    status_compare(t);
    return 0;
}
