/* bench_serve.c — one `smmuctl serve` daemon holding many simulated VMs (issues 10.8 and 13.4, 13.6):
 *
 *   RSS per idle VM      the daemon's VmRSS with N VMs registered and connected, minus its VmRSS with none,
 *                        over N (goal <= 64 KiB);
 *   added latency        attach + detach of one device through the API (POST …/attach?wait, POST …/detach?wait)
 *                        at 1,000 transactions a minute spread over the VMs, p50 and p99, next to the same
 *                        transaction run by the library directly (facts, plan, smmu_txn_attach / _detach on its
 *                        own connection to a VM of the same kind) — goal: p99 through the API at most 2 ms over
 *                        the library's p99;
 *   stall isolation      the same transaction on VM 1 while VM 0's QEMU never answers its device_add (qmp-sim
 *                        fault "stall"), next to VM 1 without the stall.
 *
 * Every VM is one qmp-sim VM (qmp-sim --vms N: 4 vSMMUs x 2 root ports, --dev-iommu, guest releases at once),
 * the daemon a direct child (smmuctl serve --listen unix:… --state-dir … --sysfs … --dev …), stopped by PID.
 *
 * Usage: bench_serve [NVMS [TRANSACTIONS]]   (defaults 1000 and 300; SMMUCTL_BENCH_QUICK=1: 100 and 60) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "bench_util.h"
#include "smmuctl/journal.h"
#include "smmuctl/txn.h"
#include "support/fakesys.h"
#include "support/http_client.h"
#include "support/qmp_sync.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define MAXTX 2000
static const char *const BDF = "0009:01:00.0";

static char g_tmp[4096], g_sock[4200], g_state[4200], g_dev[4200], g_libstate[4200];
static struct fakesys *g_fs;
static pid_t g_daemon = -1;
static struct simh *g_sim, *g_libsim;

static void cleanup(void)
{
    bench_serve_stop(g_daemon);
    g_daemon = -1;
    simh_stop(g_sim);
    simh_stop(g_libsim);
    g_sim = g_libsim = NULL;
}

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_serve: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    cleanup();
    exit(1);
}

static int req(const char *method, const char *target, const char *body, char **out)
{
    return bench_http(g_sock, method, target, body, out);
}

/* Wait until every VM is connected (GET /v1/vms). */
static void wait_connected(int n)
{
    for (int i = 0; i < 1200; i++) {
        char *body = NULL;
        if (req("GET", "/v1/vms", NULL, &body) == 200) {
            json_t *o = json_loads(body, 0, NULL);
            size_t k, conn = 0;
            json_t *v;
            json_array_foreach(json_object_get(o, "vms"), k, v)
                conn += !strcmp(json_string_value(json_object_get(v, "state")) ?: "", "connected");
            json_decref(o);
            free(body);
            if ((int)conn == n)
                return;
        } else {
            free(body);
        }
        usleep(100000);
    }
    fail("not all %d VMs connected", n);
}

/* attach + detach of BDF on vm through the API: ms, or fail. */
static double api_tx(int vm)
{
    char target[128], *body = NULL;
    double t0 = bench_now_ms();
    snprintf(target, sizeof(target), "/v1/vms/vm%d/attach?wait=20", vm);
    int st = req("POST", target, "{\"devices\":[\"0009:01:00.0\"]}", &body);
    if (st != 200)
        fail("attach on vm%d: HTTP %d %s", vm, st, body ?: "");
    free(body);
    snprintf(target, sizeof(target), "/v1/vms/vm%d/detach?wait=20", vm);
    st = req("POST", target, "{\"devices\":[\"0009:01:00.0\"],\"unplug_timeout\":5}", &body);
    if (st != 200)
        fail("detach on vm%d: HTTP %d %s", vm, st, body ?: "");
    free(body);
    return bench_now_ms() - t0;
}

/* The same transaction by the library on its own connection and journal. */
static double lib_tx(struct event_base *base, const char *sock)
{
    struct qmp_client_opts co = QMP_CLIENT_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_plan_opts po = SMMU_PLAN_OPTS_INIT;
    struct smmu_txn_opts to = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    struct smmu_facts f;
    struct smmu_plan *p = NULL;
    smmu_journal *j = NULL;
    qmp_client *c = NULL;
    const char *devs[] = {BDF};
    co.negotiate_oob = true;
    to.sysfs_root = fakesys_root(g_fs);
    to.unplug_timeout_ms = 5000;
    double t0 = bench_now_ms();
    if (qmp_client_new(&c, base, &co) < 0 || qmp_client_connect_sync(c, sock, &e) < 0 ||
        smmu_journal_open(g_libstate, "lib", "", 2000, &j, &e) < 0 ||
        smmu_facts_gather(c, fakesys_root(g_fs), j, &f, &e) < 0)
        fail("library: %s", e.message);
    if (smmu_facts_plan(&f, fakesys_root(g_fs), devs, 1, &po, &p, &e) < 0)
        fail("library plan: %s", e.message);
    smmu_txn_attach(&c, j, &f, p, &to, &res);
    smmu_facts_free(&f);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fail("library attach: %s", res.error.message);
    smmu_result_fini(&res);
    if (smmu_facts_gather(c, fakesys_root(g_fs), j, &f, &e) < 0)
        fail("library facts: %s", e.message);
    smmu_txn_detach(&c, j, &f, devs, 1, &to, &res);
    smmu_facts_free(&f);
    if (res.outcome != SMMU_OUTCOME_DONE)
        fail("library detach: %s", res.error.message);
    smmu_result_fini(&res);
    double ms = bench_now_ms() - t0;
    smmu_plan_free(p);
    smmu_journal_close(j);
    qmp_client_free(c);
    return ms;
}

static double pct(double *v, int n, double p)
{
    struct bench_stat s = bench_stat_of(v, n); /* sorts */
    (void)s;
    int i = (int)(p * (n - 1) + 0.5);
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

int main(int argc, char **argv)
{
    int nvm = argc > 1 ? atoi(argv[1]) : (bench_quick() ? 100 : 1000);
    int ntx = argc > 2 ? atoi(argv[2]) : (bench_quick() ? 60 : 300);
    if (nvm < 2 || ntx < 2 || ntx > MAXTX) {
        fprintf(stderr, "usage: bench_serve [NVMS >= 2 [TRANSACTIONS 2..%d]]\n", MAXTX);
        return 2;
    }
    char *tmp = smmu_test_mkdtemp("bench-serve");
    snprintf(g_tmp, sizeof(g_tmp), "%s", tmp);
    snprintf(g_sock, sizeof(g_sock), "%s/api.sock", g_tmp);
    snprintf(g_state, sizeof(g_state), "%s/state", g_tmp);
    snprintf(g_libstate, sizeof(g_libstate), "%s/libstate", g_tmp);
    snprintf(g_dev, sizeof(g_dev), "%s/dev", g_tmp);
    g_fs = fakesys_new(NULL);
    fakesys_add_dev(g_fs, &(struct fakesys_dev){.bdf = BDF, .smmu = "smmu3.0x0000000016000000", .driver = "vfio-pci",
                                                .group = "10", .cdev = "vfio0", .numa_node = "0"});
    fakesys_write_dev_tree(g_fs, g_dev);
    const char *const *topo = simh_topology(4, 2, 0);
    const char *sargs[64];
    size_t n = 0;
    for (size_t i = 0; topo[i]; i++)
        sargs[n++] = topo[i];
    sargs[n++] = "--sysfs";
    sargs[n++] = fakesys_root(g_fs);
    sargs[n++] = "--dev-iommu";
    sargs[n++] = "--unplug";
    sargs[n++] = "{\"mode\":\"event\",\"delay_ms\":0}";
    sargs[n] = NULL;
    if (simh_start_vms(&g_sim, nvm, sargs) < 0 || simh_start(&g_libsim, sargs) < 0)
        fail("cannot start qmp-sim");

    char log[4300];
    snprintf(log, sizeof(log), "%s/serve.log", g_tmp);
    if ((g_daemon = bench_serve_start(g_sock, g_state, fakesys_root(g_fs), g_dev, log)) < 0)
        fail("cannot start smmuctl serve");
    usleep(300000);
    long rss0 = bench_rss_kib(g_daemon);
    double t0 = bench_now_ms();
    for (int k = 0; k < nvm; k++) {
        char target[64], body[4400];
        snprintf(target, sizeof(target), "/v1/vms/vm%d", k);
        snprintf(body, sizeof(body), "{\"qmp\":\"unix:%s\"}", simh_qmp_path(simh_vm(g_sim, k)));
        int st = req("PUT", target, body, NULL);
        if (st != 201 && st != 200)
            fail("PUT %s: HTTP %d", target, st);
    }
    wait_connected(nvm);
    double reg_ms = bench_now_ms() - t0;
    usleep(500000);
    long rss1 = bench_rss_kib(g_daemon);
    printf("smmuctl serve with %d qmp-sim VMs (registered and connected in %.0f ms): RSS %ld KiB idle, %ld KiB "
           "empty\n", nvm, reg_ms, rss1, rss0);
    bench_figure(&(struct bench_fig){"6", "serve.rss_per_vm", "smmuctl serve: RSS per idle VM", "KiB",
                                     bench_exact((double)(rss1 - rss0) / nvm), NULL, bench_exact(0),
                                     BENCH_GOAL_VALUE_LE, 64, NULL});

    /* latency at 1,000 transactions a minute, over the VMs; the library's in the same run, interleaved */
    static double api[MAXTX], lib[MAXTX];
    struct event_base *base = event_base_new();
    lib_tx(base, simh_qmp_path(g_libsim)); /* warm-up */
    api_tx(0);
    double start = bench_now_ms();
    for (int t = 0; t < ntx; t++) {
        double due = start + t * 60.0; /* 1,000 a minute */
        double now = bench_now_ms();
        if (due > now)
            usleep((useconds_t)((due - now) * 1e3));
        api[t] = api_tx((int)(((unsigned)t * 7919u) % (unsigned)nvm));
        lib[t] = lib_tx(base, simh_qmp_path(g_libsim));
    }
    double a50 = pct(api, ntx, 0.5), a99 = pct(api, ntx, 0.99), l50 = pct(lib, ntx, 0.5), l99 = pct(lib, ntx, 0.99);
    char note[160];
    snprintf(note, sizeof(note), "%d transactions at 1,000/min over %d VMs; p50 %.2f ms vs library %.2f ms", ntx, nvm,
             a50, l50);
    bench_figure(&(struct bench_fig){"6", "serve.latency.p50", "attach+detach through the API: p50", "ms",
                                     bench_exact(a50), "library directly", bench_exact(l50), BENCH_GOAL_NONE, 0, note});
    bench_figure(&(struct bench_fig){"6", "serve.latency.p99", "attach+detach through the API: p99", "ms",
                                     bench_exact(a99), "library directly", bench_exact(l99), BENCH_GOAL_NONE, 0, NULL});
    bench_figure(&(struct bench_fig){"6", "serve.latency.p99_added", "attach+detach: API p99 minus library p99", "ms",
                                     bench_exact(a99 - l99), NULL, bench_exact(0), BENCH_GOAL_VALUE_LE, 2.0,
                                     "negative: the daemon's kept topology saves the library's discovery"});

    /* stall isolation: VM 0's QEMU never answers its device_add */
    double calm[31], stalled[31];
    int ns = bench_quick() ? 7 : 21;
    for (int i = 0; i < ns; i++)
        calm[i] = api_tx(1);
    if (simh_fault(simh_vm(g_sim, 0), "{\"kind\":\"stall\",\"command\":\"device_add\"}") < 0)
        fail("qmp-sim refused the stall fault");
    char *body = NULL;
    int st = req("POST", "/v1/vms/vm0/attach?wait=0", "{\"devices\":[\"0009:01:00.0\"]}", &body);
    free(body);
    if (st != 202)
        fail("the stalled attach on vm0 answered HTTP %d, not 202", st);
    for (int i = 0; i < ns; i++)
        stalled[i] = api_tx(1);
    bench_figure(&(struct bench_fig){"6", "serve.stall_isolation", "attach+detach on VM 1 while VM 0's QEMU stalls",
                                     "ms", bench_stat_of(stalled, ns), "VM 1 without the stall",
                                     bench_stat_of(calm, ns), BENCH_GOAL_NONE, 0,
                                     "VM 0's attach stays in flight (202) the whole time"});
    event_base_free(base);
    cleanup();
    fakesys_free(g_fs);
    smmu_test_rmtree(tmp);
    free(tmp);
    return 0;
}
