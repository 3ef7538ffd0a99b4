/* bench_discovery.c — what topology discovery costs the VM: batched (qom-list-get, 3 round trips) versus the
 * per-property path (qom-list + qom-get, what QEMU < 10.1 forces), against real QEMU 11 in one run.
 *
 * QEMU reads QMP input one byte per read() and spends ~0.3 ms of its own CPU per command (FACTS), so the
 * numbers that matter are commands and bytes sent and QEMU's CPU time (utime+stime of its PID), not only wall
 * time. Prints one line per mode and the ratios per-property / batched. Both modes must find the same topology.
 *
 * Usage: bench_discovery [ITERATIONS]   (default 40; QEMU from scripts/install-qemu11)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"
#include "smmuctl/topology.h"
#include "smmuctl/vm.h"
#include "support/qemu.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* QEMU's CPU time so far, in ms (utime + stime from /proc/PID/stat). */
static double qemu_cpu_ms(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ") ": state(3) … utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

struct mode_result {
    double wall_ms, cpu_ms;
    size_t commands, bytes;
    char *topology;
};

static void run_mode(pid_t pid, const char *sock, unsigned flags, int iters, struct mode_result *m)
{
    struct event_base *base = event_base_new();
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    char *rec = NULL;
    size_t reclen = 0;
    FILE *mem = open_memstream(&rec, &reclen);
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    o.record = mem;
    o.negotiate_oob = true;
    if (qmp_client_new(&c, base, &o) < 0 || qmp_client_connect_sync(c, sock, &err) < 0) {
        fprintf(stderr, "connect: %s\n", err.message);
        exit(1);
    }
    fflush(mem);
    long start_off = ftell(mem);
    double cpu0 = qemu_cpu_ms(pid), t0 = now_ms();
    for (int i = 0; i < iters; i++) {
        struct smmu_topology t;
        if (smmu_vm_discover_ex(c, flags, &t, &err) < 0) {
            fprintf(stderr, "discover: %s\n", err.message);
            exit(1);
        }
        if (i == 0) {
            json_t *j = smmu_topology_to_json(&t);
            m->topology = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
            json_decref(j);
        }
        smmu_topology_free(&t);
    }
    m->wall_ms = (now_ms() - t0) / iters;
    m->cpu_ms = (qemu_cpu_ms(pid) - cpu0) / iters;
    fflush(mem);
    /* count what went to QEMU: "C: " lines (+1 byte each for the newline) */
    m->commands = m->bytes = 0;
    for (char *line = rec + start_off; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > 3 && !strncmp(line, "C: ", 3)) {
            m->commands++;
            m->bytes += len - 3 + 1;
        }
        line = nl ? nl + 1 : NULL;
    }
    m->commands /= (size_t)iters;
    m->bytes /= (size_t)iters;
    qmp_client_free(c);
    fclose(mem);
    free(rec);
    event_base_free(base);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 40;
    struct smmu_qemu *q;
    /* A Grace-Blackwell-like VM: four vSMMUs, each on its own pxb-pcie with two root ports, one cold NIC. */
    const char *args[64];
    size_t n = 0;
    static char bufs[32][128];
    int b = 0;
    for (int k = 0; k < 4; k++) {
        snprintf(bufs[b], 128, "pxb-pcie,id=pxb%d,bus_nr=%d,bus=pcie.0", k, 250 - 8 * k);
        args[n++] = "-device"; args[n++] = bufs[b++];
        for (int p = 0; p < 2; p++) {
            snprintf(bufs[b], 128, "pcie-root-port,id=rp%d%c,bus=pxb%d,chassis=%d,port=%d", k, 'a' + p, k,
                     1 + 2 * k + p, 1 + 2 * k + p);
            args[n++] = "-device"; args[n++] = bufs[b++];
        }
        snprintf(bufs[b], 128, "arm-smmuv3,primary-bus=pxb%d,id=vsmmu%d", k, k);
        args[n++] = "-device"; args[n++] = bufs[b++];
    }
    args[n++] = "-netdev"; args[n++] = "user,id=cold0";
    args[n++] = "-device"; args[n++] = "e1000e,netdev=cold0,bus=rp3b,id=coldnic";
    args[n] = NULL;
    if (iters < 1)
        iters = 1;
    if (smmu_qemu_start(&q, "aarch64", args) < 0) {
        fprintf(stderr, "cannot start QEMU 11: %s\n(run scripts/install-qemu11 first)\n", smmu_qemu_last_error());
        return 1;
    }
    struct mode_result batched = {0}, single = {0};
    /* warm-up, then measure each mode; run twice alternating to even out drift */
    run_mode(smmu_qemu_pid(q), smmu_qemu_socket_path(q), 0, 3, &batched);
    free(batched.topology);
    run_mode(smmu_qemu_pid(q), smmu_qemu_socket_path(q), 0, iters, &batched);
    run_mode(smmu_qemu_pid(q), smmu_qemu_socket_path(q), SMMU_VM_NO_QOM_LIST_GET, iters, &single);
    int same = !strcmp(batched.topology, single.topology);
    printf("QEMU 11 aarch64 virt, 4 vSMMUs x 2 root ports, %d discoveries per mode\n", iters);
    printf("%-26s %8s %8s %10s %12s\n", "mode", "commands", "bytes", "wall ms", "QEMU CPU ms");
    printf("%-26s %8zu %8zu %10.3f %12.3f\n", "qom-list-get (batched)", batched.commands, batched.bytes,
           batched.wall_ms, batched.cpu_ms);
    printf("%-26s %8zu %8zu %10.3f %12.3f\n", "qom-list + qom-get", single.commands, single.bytes, single.wall_ms,
           single.cpu_ms);
    printf("ratio per-property/batched: commands %.1fx, bytes %.1fx, wall %.1fx, QEMU CPU %.1fx\n",
           (double)single.commands / (double)batched.commands, (double)single.bytes / (double)batched.bytes,
           single.wall_ms / batched.wall_ms, batched.cpu_ms > 0 ? single.cpu_ms / batched.cpu_ms : 0.0);
    printf("same topology from both: %s\n", same ? "yes" : "NO");
    free(batched.topology);
    free(single.topology);
    smmu_qemu_stop(q);
    return same ? 0 : 1;
}
