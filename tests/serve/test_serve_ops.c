/* test_serve_ops.c — the operations registry: ids, states and their JSON, waiters woken by the end (not by
 * pending), unwait, expiry 1 h after the end, the cap (oldest ended dropped first; refused when none ended). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "serve/ops.h"

static int woke;
static struct sv_op *woke_op;

static void on_end(void *arg, struct sv_op *op)
{
    (void)arg;
    woke++;
    woke_op = op;
}

static void test_lifecycle_and_json(void **state)
{
    struct sv_ops *ops = sv_ops_new(10, 3600, "67a1b2");
    struct sv_op *op = sv_ops_create(ops, "vm1", SV_VERB_DETACH, 100);
    struct sv_op_waiter *w;
    json_t *j, *res = json_pack("{s:b,s:s}", "ok", 1, "command", "detach");
    char *txt;
    (void)state;
    assert_string_equal(sv_op_id(op), "67a1b2-1");
    assert_ptr_equal(sv_ops_find(ops, "67a1b2-1"), op);
    assert_null(sv_ops_find(ops, "67a1b2-2"));
    j = sv_op_json(op);
    txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(txt, "{\"id\":\"67a1b2-1\",\"result\":null,\"state\":\"running\",\"verb\":\"detach\",\"vm\":\"vm1\"}");
    free(txt);
    json_decref(j);
    woke = 0;
    w = sv_op_wait(ops, op, on_end, NULL);
    assert_non_null(w);
    sv_op_update(ops, op, SV_OP_PENDING, res, 101); /* pending is no end, but a change the waiter hears of */
    assert_int_equal(woke, 1);
    assert_false(sv_op_ended(op));
    w = sv_op_wait(ops, op, on_end, NULL); /* waiting on a pending op: until it ends */
    assert_non_null(w);
    sv_op_update(ops, op, SV_OP_PENDING, res, 101); /* pending again is no change */
    assert_int_equal(woke, 1);
    sv_op_update(ops, op, SV_OP_DONE, NULL, 102);
    assert_int_equal(woke, 2);
    assert_ptr_equal(woke_op, op);
    j = sv_op_json(op);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "done");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "result"), "command")), "detach");
    json_decref(j);
    /* waiting on an ended op answers at once */
    assert_null(sv_op_wait(ops, op, on_end, NULL));
    assert_int_equal(woke, 3);
    json_decref(res);
    sv_ops_free(ops);
}

static void test_unwait(void **state)
{
    struct sv_ops *ops = sv_ops_new(10, 3600, "x");
    struct sv_op *op = sv_ops_create(ops, "vm1", SV_VERB_ATTACH, 0);
    struct sv_op_waiter *a = sv_op_wait(ops, op, on_end, NULL), *b = sv_op_wait(ops, op, on_end, NULL);
    (void)state;
    woke = 0;
    sv_op_unwait(ops, a); /* the ?wait timer fired */
    sv_op_update(ops, op, SV_OP_FAILED, NULL, 1);
    assert_int_equal(woke, 1);
    (void)b;
    sv_ops_free(ops);
}

static void test_expiry_and_cap(void **state)
{
    struct sv_ops *ops = sv_ops_new(3, 3600, "p");
    struct sv_op *a = sv_ops_create(ops, "a", SV_VERB_ATTACH, 0);
    struct sv_op *b = sv_ops_create(ops, "b", SV_VERB_ATTACH, 0);
    struct sv_op *c = sv_ops_create(ops, "c", SV_VERB_ATTACH, 0), *d;
    (void)state;
    assert_int_equal(sv_ops_count(ops), 3);
    errno = 0;
    assert_null(sv_ops_create(ops, "d", SV_VERB_ATTACH, 1)); /* full and none ended */
    assert_int_equal(errno, EAGAIN);
    sv_op_update(ops, b, SV_OP_DONE, NULL, 10);
    sv_op_update(ops, a, SV_OP_ROLLED_BACK, NULL, 20);
    assert_int_equal(sv_ops_expire(ops, 10 + 3599), 0);
    d = sv_ops_create(ops, "d", SV_VERB_ATTACH, 30); /* full: the oldest in the list that ended goes (a) */
    assert_non_null(d);
    assert_null(sv_ops_find(ops, "p-1"));
    assert_non_null(sv_ops_find(ops, "p-2"));
    assert_string_equal(sv_op_id(d), "p-4");
    assert_int_equal(sv_ops_expire(ops, 10 + 3600), 1); /* b: 1 h after its end */
    assert_null(sv_ops_find(ops, "p-2"));
    assert_int_equal(sv_ops_count(ops), 2);
    /* c ends; d, still running, stays whatever the time */
    sv_op_update(ops, c, SV_OP_INCOMPLETE, NULL, 40);
    assert_int_equal(sv_ops_expire(ops, 1e9), 1);
    assert_int_equal(sv_ops_count(ops), 1);
    assert_non_null(sv_ops_create(ops, "e", SV_VERB_PLAN, 1e9)); /* the tail is still right */
    assert_int_equal(sv_ops_count(ops), 2);
    sv_ops_free(ops);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(sv_op_state_name(SV_OP_ROLLED_BACK), "rolled-back");
    assert_string_equal(sv_op_state_name(SV_OP_INCOMPLETE), "incomplete");
    assert_string_equal(sv_verb_name(SV_VERB_DEVICES), "devices");
    assert_string_equal(sv_vm_state_name(SV_VM_DISCONNECTED), "disconnected");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_and_json),
        cmocka_unit_test(test_unwait),
        cmocka_unit_test(test_expiry_and_cap),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
