/* json_expect.h — expected JSON in C tests: written with ' for " (readable in C), compared structurally. */
#ifndef SMMU_TEST_JSON_EXPECT_H
#define SMMU_TEST_JSON_EXPECT_H

#include <jansson.h>

/* Parse `text` with every ' read as "; a new reference (caller decrefs). Aborts the test on bad JSON. */
json_t *smmu_test_json(const char *text);
/* Fail the test, showing both documents, unless expected and actual are equal JSON. Borrows both. */
void smmu_test_assert_json_eq(json_t *expected, json_t *actual);
/* The finding {check, subject} of a `doctor --json` document (borrowed); fails the test when there is none. */
json_t *smmu_test_finding(json_t *doctor_doc, const char *check, const char *subject);

#endif
