/* test_serve_idem.c — the Idempotency-Key store: same key + same request → the first op (whatever the
 * member order), other request → -EEXIST (422), 24 h expiry, malformed keys, persistence across a reopen
 * (a daemon restart), and a corrupt file refused with its name. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "serve/idem.h"
#include "support/testutil.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_same_other_expired(void **state)
{
    char *dir = smmu_test_mkdtemp("idem"), path[512];
    struct sv_idem *s;
    struct smmu_error err = SMMU_ERROR_INIT;
    json_t *b1 = json_loads("{\"devices\":[\"0009:01:00.0\"],\"fd_pass\":true}", 0, NULL);
    json_t *b1r = json_loads("{\"fd_pass\":true,\"devices\":[\"0009:01:00.0\"]}", 0, NULL);
    json_t *b2 = json_loads("{\"devices\":[\"0019:01:00.0\"]}", 0, NULL);
    uint64_t f1 = sv_idem_fingerprint("POST", "/v1/vms/a/attach", b1);
    const char *op = NULL;
    struct stat st;
    (void)state;
    assert_int_equal(sv_idem_fingerprint("POST", "/v1/vms/a/attach", b1r), f1);
    assert_true(sv_idem_fingerprint("POST", "/v1/vms/b/attach", b1) != f1);
    assert_true(sv_idem_fingerprint("POST", "/v1/vms/a/attach", b2) != f1);
    snprintf(path, sizeof(path), "%s/idempotency.json", dir);
    assert_int_equal(sv_idem_open(&s, path, SV_IDEM_TTL_S, 1000, &err), 0);
    assert_int_equal(sv_idem_check(s, "k1", f1, 1000, &op), 0);
    assert_int_equal(sv_idem_put(s, "k1", f1, "op-1", 1000, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(sv_idem_check(s, "k1", f1, 1000 + 3600, &op), 1);
    assert_string_equal(op, "op-1");
    assert_int_equal(sv_idem_check(s, "k1", sv_idem_fingerprint("POST", "/v1/vms/a/attach", b2), 1001, &op),
                     -EEXIST);
    assert_int_equal(sv_idem_check(s, "k1", f1, 1000 + SV_IDEM_TTL_S, &op), 0); /* 24 h later: new */
    assert_int_equal(sv_idem_check(s, "", f1, 1000, &op), -EINVAL);
    assert_int_equal(sv_idem_check(s, "with space", f1, 1000, &op), -EINVAL);
    {
        char longkey[300];
        memset(longkey, 'a', 256);
        longkey[256] = 0;
        assert_int_equal(sv_idem_check(s, longkey, f1, 1000, &op), -EINVAL);
        assert_int_equal(sv_idem_put(s, longkey, f1, "op-9", 1000, &err), -EINVAL);
        assert_non_null(strstr(err.message, "Idempotency-Key must be 1-255 visible ASCII characters"));
    }
    sv_idem_free(s);
    json_decref(b1);
    json_decref(b1r);
    json_decref(b2);
    smmu_test_rmtree(dir);
    free(dir);
}

static void test_survives_restart(void **state)
{
    char *dir = smmu_test_mkdtemp("idem"), path[512], *txt;
    struct sv_idem *s;
    struct smmu_error err = SMMU_ERROR_INIT;
    const char *op = NULL;
    (void)state;
    snprintf(path, sizeof(path), "%s/idempotency.json", dir);
    assert_int_equal(sv_idem_open(&s, path, SV_IDEM_TTL_S, 0, &err), 0);
    assert_int_equal(sv_idem_put(s, "old", 7, "op-1", 0, &err), 0);
    assert_int_equal(sv_idem_put(s, "new", 8, "op-2", 80000, &err), 0);
    sv_idem_free(s);
    assert_int_equal(sv_idem_open(&s, path, SV_IDEM_TTL_S, 80001, &err), 0); /* "restarted" */
    assert_int_equal(sv_idem_check(s, "new", 8, 80001, &op), 1);
    assert_string_equal(op, "op-2");
    assert_int_equal(sv_idem_check(s, "new", 9, 80001, &op), -EEXIST);
    assert_int_equal(sv_idem_put(s, "later", 10, "op-3", 90000, &err), 0); /* drops "old" (25 h) */
    sv_idem_free(s);
    txt = smmu_test_read_file(path, NULL);
    assert_null(strstr(txt, "\"old\""));
    assert_non_null(strstr(txt, "\"new\":{\"fingerprint\":\"0000000000000008\",\"op\":\"op-2\""));
    free(txt);
    smmu_test_rmtree(dir);
    free(dir);
}

static void test_corrupt_file(void **state)
{
    char *dir = smmu_test_mkdtemp("idem"), path[512];
    struct sv_idem *s;
    struct smmu_error err = SMMU_ERROR_INIT;
    (void)state;
    snprintf(path, sizeof(path), "%s/idempotency.json", dir);
    write_file(path, "{\"version\":1,\"keys\":");
    assert_int_equal(sv_idem_open(&s, path, SV_IDEM_TTL_S, 0, &err), -EINVAL);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "not JSON (line 1:"));
    write_file(path, "{\"version\":2,\"keys\":{}}");
    assert_int_equal(sv_idem_open(&s, path, SV_IDEM_TTL_S, 0, &err), -EINVAL);
    assert_non_null(strstr(err.message, "no \"version\": 1"));
    write_file(path, "{\"version\":1,\"keys\":[]}");
    assert_int_equal(sv_idem_open(&s, path, SV_IDEM_TTL_S, 0, &err), -EINVAL);
    assert_non_null(strstr(err.message, "\"keys\" is not an object"));
    write_file(path, "{\"version\":1,\"keys\":{\"k\":{\"op\":\"x\",\"time\":1}}}");
    assert_int_equal(sv_idem_open(&s, path, SV_IDEM_TTL_S, 0, &err), -EINVAL);
    assert_non_null(strstr(err.message, "key 'k' lacks fingerprint, op or time"));
    smmu_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_other_expired),
        cmocka_unit_test(test_survives_restart),
        cmocka_unit_test(test_corrupt_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
