/* test_serve_metrics.c — the §7 metric names and the Prometheus text format: HELP/TYPE lines, labels and
 * their escaping, cumulative histogram buckets with +Inf, _sum and _count, a stable order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "serve/metrics.h"

static void has(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(text, want)) {
        fprintf(stderr, "missing line: %s\nin:\n%s", line, text);
        fail();
    }
}

static void test_names_and_values(void **state)
{
    struct sv_metrics *m = sv_metrics_new("0.1.0");
    char *t;
    (void)state;
    sv_metrics_set_vms(m, 1, 5, 2);
    sv_metrics_transaction(m, "detach", "pending");
    sv_metrics_transaction(m, "attach", "done");
    sv_metrics_transaction(m, "attach", "done");
    sv_metrics_rollback(m);
    sv_metrics_set_unplugs_pending(m, 3);
    sv_metrics_reconnect(m);
    sv_metrics_reconnect(m);
    sv_metrics_qmp_round_trip(m, 0.0004);
    sv_metrics_qmp_round_trip(m, 0.003);
    sv_metrics_qmp_round_trip(m, 42);
    sv_metrics_api_request(m, "/v1/vms/{vm}/attach", 200, 0.02);
    sv_metrics_api_request(m, "/v1/vms/{vm}/attach", 200, 0.03);
    sv_metrics_api_request(m, "/healthz", 200, 0.0001);
    t = sv_metrics_render(m);
    assert_non_null(t);
    assert_true(!strncmp(t, "# HELP smmuctl_build_info ", 26));
    has(t, "# TYPE smmuctl_build_info gauge");
    has(t, "smmuctl_build_info{version=\"0.1.0\"} 1");
    has(t, "# TYPE smmuctl_vms gauge");
    has(t, "smmuctl_vms{state=\"connecting\"} 1");
    has(t, "smmuctl_vms{state=\"connected\"} 5");
    has(t, "smmuctl_vms{state=\"disconnected\"} 2");
    has(t, "# TYPE smmuctl_transactions_total counter");
    has(t, "smmuctl_transactions_total{verb=\"attach\",outcome=\"done\"} 2\n"
           "smmuctl_transactions_total{verb=\"detach\",outcome=\"pending\"} 1");
    has(t, "smmuctl_rollbacks_total 1");
    has(t, "# TYPE smmuctl_unplugs_pending gauge");
    has(t, "smmuctl_unplugs_pending 3");
    has(t, "smmuctl_qmp_reconnects_total 2");
    has(t, "# TYPE smmuctl_qmp_round_trip_seconds histogram");
    has(t, "smmuctl_qmp_round_trip_seconds_bucket{le=\"0.0005\"} 1");
    has(t, "smmuctl_qmp_round_trip_seconds_bucket{le=\"0.0025\"} 1");
    has(t, "smmuctl_qmp_round_trip_seconds_bucket{le=\"0.005\"} 2");
    has(t, "smmuctl_qmp_round_trip_seconds_bucket{le=\"10\"} 2");
    has(t, "smmuctl_qmp_round_trip_seconds_bucket{le=\"+Inf\"} 3");
    has(t, "smmuctl_qmp_round_trip_seconds_sum 42.0034");
    has(t, "smmuctl_qmp_round_trip_seconds_count 3");
    has(t, "smmuctl_api_requests_total{route=\"/healthz\",code=\"200\"} 1\n"
           "smmuctl_api_requests_total{route=\"/v1/vms/{vm}/attach\",code=\"200\"} 2");
    has(t, "smmuctl_api_request_duration_seconds_bucket{le=\"0.025\"} 2");
    has(t, "smmuctl_api_request_duration_seconds_count 3");
    assert_int_equal(t[strlen(t) - 1], '\n');
    free(t);
    sv_metrics_free(m);
}

static void test_empty_and_escaping(void **state)
{
    struct sv_metrics *m = sv_metrics_new("1\"2\\3\n");
    char *t;
    (void)state;
    t = sv_metrics_render(m);
    has(t, "smmuctl_build_info{version=\"1\\\"2\\\\3\\n\"} 1");
    has(t, "smmuctl_vms{state=\"connected\"} 0"); /* every state, even at zero */
    has(t, "# TYPE smmuctl_transactions_total counter\n# HELP smmuctl_rollbacks_total Transactions rolled back.");
    has(t, "smmuctl_qmp_round_trip_seconds_bucket{le=\"+Inf\"} 0");
    free(t);
    sv_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_values),
        cmocka_unit_test(test_empty_and_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
