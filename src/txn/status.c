/* status.c — reconcile the journal with live QEMU; with recover, finish or undo an interrupted transaction. */
#include "txn/txn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Finish an interrupted detach: devices still present get their device_del (again), all in parallel. */
static enum smmu_outcome status_finish_detach(struct txn_ctx *t, const struct smmu_facts *f, json_t *txn,
                                              json_t *finished)
{
    json_t *steps = json_object_get(txn, "steps"), *step;
    size_t k, n = 0;
    const char **ids = calloc(json_array_size(steps) + 1, sizeof(*ids));
    json_t **which = calloc(json_array_size(steps) + 1, sizeof(*which));
    bool pending = false;
    if (!ids || !which) {
        free(ids);
        free(which);
        return SMMU_OUTCOME_INCOMPLETE;
    }
    json_array_foreach(steps, k, step) {
        const char *id = txn_step_str(step, "name");
        if (txn_step_is(step, "done") || txn_step_is(step, "refused") || txn_step_is(step, "failed"))
            continue;
        if (!txn_device_present(f, id)) {
            txn_step_state(step, "done");
            smmu_journal_remove_device(t->j, id);
            json_array_append_new(finished, json_string(id));
            continue;
        }
        ids[n] = id;
        which[n++] = step;
    }
    if (n > 0) {
        enum txn_del *out = calloc(n, sizeof(*out));
        struct smmu_error *errs = calloc(n, sizeof(*errs));
        int ms = t->opts->unplug_timeout_ms > 0 ? t->opts->unplug_timeout_ms : 10000;
        if (out && errs) {
            txn_unplug(t, ids, n, t->opts->no_wait ? 0 : ms, out, errs);
            for (size_t i = 0; i < n; i++) {
                if (out[i] == TXN_DEL_DONE) {
                    txn_step_state(which[i], "done");
                    smmu_journal_remove_device(t->j, ids[i]);
                    json_array_append_new(finished, json_string(ids[i]));
                } else if (out[i] == TXN_DEL_PENDING) {
                    json_t *jd = smmu_journal_find_device(t->j, ids[i]);
                    if (jd)
                        json_object_set_new(jd, "state", json_string("unplug-pending"));
                    txn_step_state(which[i], "pending");
                    pending = true;
                } else {
                    txn_step_state(which[i], t->lost ? "sent" : "failed");
                    if (!t->res->error.code)
                        smmu_error_copy(&t->res->error, &errs[i]);
                }
            }
        }
        free(out);
        free(errs);
    }
    free(ids);
    free(which);
    if (t->lost)
        return SMMU_OUTCOME_INCOMPLETE;
    json_object_set_new(smmu_journal_doc(t->j), "txn", json_null());
    return pending ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_DONE;
}

int smmu_txn_status(qmp_client **c, smmu_journal *j, const struct smmu_facts *f, bool recover,
                    const struct smmu_txn_opts *opts, struct smmu_result *res)
{
    struct txn_ctx t = {c, j, opts, res, false};
    json_t *doc = smmu_journal_doc(j);
    json_t *finished = json_array(), *vanished = json_array(), *attached = json_array(), *pending = json_array();
    json_t *interrupted = NULL, *recovered = json_null(), *d;
    json_t *rolled = NULL; /* the attach rolled back just now: its undone devices are gone, whatever facts say */
    const char **gone = NULL;
    size_t ngone = 0, i;
    struct smmu_error e = SMMU_ERROR_INIT;

    memset(res, 0, sizeof(*res));
    json_t *txn = smmu_journal_txn(j);
    bool recovering = txn && recover; /* an open transaction is being finished: QEMU may change */
    if (recovering) {
        const char *op = txn_step_str(txn, "op");
        enum smmu_outcome o;
        json_incref(txn);
        if (!strcmp(op, "attach")) {
            o = txn_rollback_attach(&t, txn);
            rolled = json_incref(txn);
            json_decref(recovered);
            recovered = json_pack("{s:s,s:s}", "op", "attach", "result",
                                  o == SMMU_OUTCOME_ROLLED_BACK ? "rolled-back" : "incomplete");
        } else {
            o = status_finish_detach(&t, f, txn, finished);
            json_decref(recovered);
            recovered = json_pack("{s:s,s:s}", "op", "detach", "result", o == SMMU_OUTCOME_DONE ? "finished"
                                                                                                  : "incomplete");
        }
        json_decref(txn);
        txn_save(&t);
    }
    /* Devices the journal knows vs devices QEMU has. A device rolled back just now is gone from QEMU but
     * facts were gathered before: check the journal's own step states first. */
    /* room for every id that can be called gone: finished by the detach above or by the loop below, undone */
    gone = calloc(json_array_size(finished) + json_array_size(smmu_journal_devices(j)) +
                  json_array_size(json_object_get(rolled, "steps")) + 1, sizeof(*gone));
    for (i = 0; gone && i < json_array_size(smmu_journal_devices(j));) {
        d = json_array_get(smmu_journal_devices(j), i);
        const char *id = txn_step_str(d, "id");
        const char *state = txn_step_str(d, "state");
        if (!txn_device_present(f, id)) {
            /* gone from QEMU: a finished unplug, or removed behind smmuctl's back */
            json_array_append_new(!strcmp(state, "unplug-pending") ? finished : vanished, json_string(id));
            json_array_remove(smmu_journal_devices(j), i);
            continue;
        }
        if (!strcmp(state, "unplug-pending"))
            json_array_append(pending, d);
        else
            json_array_append(attached, d);
        i++;
    }
    if (!t.lost && json_array_size(pending) == 0) {
        /* every finished id is gone from QEMU too */
        size_t k;
        json_t *id;
        json_array_foreach(finished, k, id)
            if (gone)
                gone[ngone++] = json_string_value(id);
        json_array_foreach(json_object_get(rolled, "steps"), k, id)
            if (gone && !strcmp(txn_step_str(id, "kind"), "device_add") && txn_step_is(id, "undone"))
                gone[ngone++] = txn_step_str(id, "name");
        int r = txn_maybe_delete_iommufd(&t, f, gone, ngone, &e);
        if (r < 0 && !res->error.code)
            smmu_error_copy(&res->error, &e);
    }
    txn_save(&t);
    txn = smmu_journal_txn(j);
    interrupted = txn ? json_deep_copy(txn) : json_null();
    /* lost while recovering: the rollback could not finish, the journal holds it (4, not 3: "before any change") */
    res->outcome = (t.lost ? (recovering ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_UNREACHABLE)
                    : (txn || json_array_size(pending) > 0) ? SMMU_OUTCOME_INCOMPLETE : SMMU_OUTCOME_DONE);
    if (t.lost && !res->error.code)
        smmu_error_set(&res->error, -ENOTCONN, "QEMU became unreachable");
    res->report = json_pack("{s:o,s:o,s:o,s:o,s:o,s:O,s:o}", "attached", attached, "pending", pending, "finished",
                            finished, "vanished", vanished, "interrupted", interrupted, "iommufd",
                            json_object_get(doc, "iommufd") ? json_object_get(doc, "iommufd") : json_null(),
                            "recovered", recovered);
    free(gone);
    json_decref(rolled);
    return res->outcome == SMMU_OUTCOME_DONE ? 0 : (res->error.code ? res->error.code : -EINPROGRESS);
}
