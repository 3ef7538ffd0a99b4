/* metrics.c — counters, gauges and histograms with §7 names, and their Prometheus text (see metrics.h). */
#define _GNU_SOURCE
#include "serve/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds[] = { SV_METRICS_BUCKETS };
#define NB (sizeof(bounds) / sizeof(bounds[0]))

struct hist {
    unsigned long long buckets[NB]; /* per bound, not cumulative */
    unsigned long long count;
    double sum;
};

/* A labelled counter: labels already rendered ('verb="attach",outcome="done"'). */
struct lc {
    char *labels;
    unsigned long long n;
    struct lc *next;
};

struct sv_metrics {
    char *version;
    int vms[3];
    struct lc *txns, *api;
    unsigned long long rollbacks, reconnects;
    int unplugs_pending;
    struct hist rtt, api_dur;
};

struct sv_metrics *sv_metrics_new(const char *version)
{
    struct sv_metrics *m = calloc(1, sizeof(*m));
    if (m && !(m->version = strdup(version ? version : ""))) {
        free(m);
        m = NULL;
    }
    return m;
}

static void lc_free(struct lc *l)
{
    while (l) {
        struct lc *n = l->next;
        free(l->labels);
        free(l);
        l = n;
    }
}

void sv_metrics_free(struct sv_metrics *m)
{
    if (!m)
        return;
    lc_free(m->txns);
    lc_free(m->api);
    free(m->version);
    free(m);
}

/* A label value in the text format: backslash, double quote and newline escaped. */
static void esc(char *out, size_t len, const char *v)
{
    size_t n = 0;
    for (; v && *v && n + 3 < len; v++) {
        if (*v == '\\' || *v == '"') {
            out[n++] = '\\';
            out[n++] = *v;
        } else if (*v == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *v;
        }
    }
    out[n] = 0;
}

/* Keep the list sorted by labels: the output is stable whatever the order of first use. */
static void lc_inc(struct lc **head, const char *labels)
{
    struct lc **pp, *l;
    for (pp = head; *pp; pp = &(*pp)->next) {
        int c = strcmp((*pp)->labels, labels);
        if (c == 0) {
            (*pp)->n++;
            return;
        }
        if (c > 0)
            break;
    }
    l = calloc(1, sizeof(*l));
    if (!l || !(l->labels = strdup(labels))) {
        free(l);
        return;
    }
    l->n = 1;
    l->next = *pp;
    *pp = l;
}

void sv_metrics_set_vms(struct sv_metrics *m, int connecting, int connected, int disconnected)
{
    m->vms[0] = connecting;
    m->vms[1] = connected;
    m->vms[2] = disconnected;
}

void sv_metrics_transaction(struct sv_metrics *m, const char *verb, const char *outcome)
{
    char v[128], o[128], l[300];
    esc(v, sizeof(v), verb);
    esc(o, sizeof(o), outcome);
    snprintf(l, sizeof(l), "verb=\"%s\",outcome=\"%s\"", v, o);
    lc_inc(&m->txns, l);
}

void sv_metrics_rollback(struct sv_metrics *m) { m->rollbacks++; }
void sv_metrics_set_unplugs_pending(struct sv_metrics *m, int n) { m->unplugs_pending = n; }
void sv_metrics_reconnect(struct sv_metrics *m) { m->reconnects++; }

static void observe(struct hist *h, double s)
{
    size_t i;
    if (s < 0)
        s = 0;
    for (i = 0; i < NB; i++)
        if (s <= bounds[i]) {
            h->buckets[i]++;
            break;
        }
    h->count++;
    h->sum += s;
}

void sv_metrics_qmp_round_trip(struct sv_metrics *m, double seconds) { observe(&m->rtt, seconds); }

void sv_metrics_api_request(struct sv_metrics *m, const char *route, int code, double seconds)
{
    char r[256], l[320];
    esc(r, sizeof(r), route);
    snprintf(l, sizeof(l), "route=\"%s\",code=\"%d\"", r, code);
    lc_inc(&m->api, l);
    observe(&m->api_dur, seconds);
}

static void put_hist(FILE *f, const char *name, const char *help, const struct hist *h)
{
    unsigned long long cum = 0;
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < NB; i++) {
        cum += h->buckets[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], cum);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, h->count, name, h->sum, name,
            h->count);
}

static void put_lc(FILE *f, const char *name, const char *help, const struct lc *l)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (; l; l = l->next)
        fprintf(f, "%s{%s} %llu\n", name, l->labels, l->n);
}

char *sv_metrics_render(const struct sv_metrics *m)
{
    static const char *states[] = { "connecting", "connected", "disconnected" };
    char *buf = NULL, v[256];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    esc(v, sizeof(v), m->version);
    fprintf(f, "# HELP smmuctl_build_info The smmuctl version serving.\n# TYPE smmuctl_build_info gauge\n"
               "smmuctl_build_info{version=\"%s\"} 1\n", v);
    fprintf(f, "# HELP smmuctl_vms Registered VMs by connection state.\n# TYPE smmuctl_vms gauge\n");
    for (int i = 0; i < 3; i++)
        fprintf(f, "smmuctl_vms{state=\"%s\"} %d\n", states[i], m->vms[i]);
    put_lc(f, "smmuctl_transactions_total", "Transactions finished, by verb and outcome.", m->txns);
    fprintf(f, "# HELP smmuctl_rollbacks_total Transactions rolled back.\n# TYPE smmuctl_rollbacks_total counter\n"
               "smmuctl_rollbacks_total %llu\n", m->rollbacks);
    fprintf(f, "# HELP smmuctl_unplugs_pending Device unplugs waiting for the guest.\n"
               "# TYPE smmuctl_unplugs_pending gauge\nsmmuctl_unplugs_pending %d\n", m->unplugs_pending);
    fprintf(f, "# HELP smmuctl_qmp_reconnects_total QMP reconnections.\n# TYPE smmuctl_qmp_reconnects_total "
               "counter\nsmmuctl_qmp_reconnects_total %llu\n", m->reconnects);
    put_hist(f, "smmuctl_qmp_round_trip_seconds", "QMP command round trips.", &m->rtt);
    put_lc(f, "smmuctl_api_requests_total", "API requests, by route and status code.", m->api);
    put_hist(f, "smmuctl_api_request_duration_seconds", "API request durations.", &m->api_dur);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
