/* json_expect.c — expected JSON in C tests (see json_expect.h). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/json_expect.h"

json_t *smmu_test_json(const char *text)
{
    char *s = strdup(text);
    json_error_t je;
    assert_non_null(s);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_t *v = json_loads(s, 0, &je);
    if (!v)
        fail_msg("bad expected JSON (%s at %d): %s", je.text, je.column, s);
    free(s);
    return v;
}

void smmu_test_assert_json_eq(json_t *expected, json_t *actual)
{
    if (!json_equal(expected, actual)) {
        char *e = json_dumps(expected, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        char *a = json_dumps(actual, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        fail_msg("JSON differs.\nexpected: %s\nactual:   %s", e, a);
    }
}

json_t *smmu_test_finding(json_t *doc, const char *check, const char *subject)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(doc, "findings"), i, f)
        if (!strcmp(json_string_value(json_object_get(f, "check")), check) &&
            !strcmp(json_string_value(json_object_get(f, "subject")), subject))
            return f;
    fail_msg("no %s finding for %s", check, subject);
    return NULL;
}
