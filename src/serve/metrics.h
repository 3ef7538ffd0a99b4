/* metrics.h — the daemon's metrics with the exact DESIGN §7 names, rendered in the Prometheus text format
 * (version 0.0.4) for GET /metrics:
 *   smmuctl_build_info{version}                      gauge 1
 *   smmuctl_vms{state}                               gauge (connecting, connected, disconnected; always all three)
 *   smmuctl_transactions_total{verb,outcome}         counter
 *   smmuctl_rollbacks_total                          counter
 *   smmuctl_unplugs_pending                          gauge
 *   smmuctl_qmp_reconnects_total                     counter
 *   smmuctl_qmp_round_trip_seconds                   histogram
 *   smmuctl_api_requests_total{route,code}           counter (route = the router's pattern, e.g. /v1/vms/{vm})
 *   smmuctl_api_request_duration_seconds             histogram
 * No I/O, no clock: callers pass durations. */
#ifndef SMMUCTL_SERVE_METRICS_H
#define SMMUCTL_SERVE_METRICS_H

struct sv_metrics;

struct sv_metrics *sv_metrics_new(const char *version);
void sv_metrics_free(struct sv_metrics *m);

void sv_metrics_set_vms(struct sv_metrics *m, int connecting, int connected, int disconnected);
void sv_metrics_transaction(struct sv_metrics *m, const char *verb, const char *outcome);
void sv_metrics_rollback(struct sv_metrics *m);
void sv_metrics_set_unplugs_pending(struct sv_metrics *m, int n);
void sv_metrics_reconnect(struct sv_metrics *m);
void sv_metrics_qmp_round_trip(struct sv_metrics *m, double seconds);
void sv_metrics_api_request(struct sv_metrics *m, const char *route, int code, double seconds);

/* The whole exposition text (malloc'ed, caller frees); NULL when out of memory. */
char *sv_metrics_render(const struct sv_metrics *m);

/* The histograms' upper bounds in seconds (then +Inf). */
#define SV_METRICS_BUCKETS 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10

#endif
