/* sim_main.c — qmp-sim: a stateful QEMU 11.1.3 QMP simulator for tests, fault injection, benchmarks and the
 * demo. Command line: QEMU-style topology arguments plus simulator flags (see usage() and docs/qmp-sim.md).
 */
#define _GNU_SOURCE
#include "sim.h"
#include "sim_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qmp-sim --qmp PATH | -qmp unix:PATH[,server=on,wait=off]  [options] [QEMU topology args]\n"
        "  -M virt|q35                 machine (default virt; q35: no arm-smmuv3, ACPI hotplug on pcie.0)\n"
        "  -device SPEC                pxb-pcie, pcie-root-port, arm-smmuv3, vfio-pci, e1000e, virtio-net-pci,\n"
        "                              pcie-pci-bridge (cold-plugged, QEMU syntax)\n"
        "  -object iommufd,id=ID       a cold iommufd object\n"
        "  -netdev TYPE,id=ID          a netdev (for cold e1000e)\n"
        "  -S                          start in prelaunch (default: running)\n"
        "  --sysfs DIR                 fake host sysfs (vfio-pci host=/fd= succeed for devices bound to vfio-pci)\n"
        "  --dev-iommu                 object-add iommufd without fd succeeds (as if /dev/iommu existed)\n"
        "  --control PATH              control socket (line-delimited JSON: dump, fault, unplug, advance, quit)\n"
        "  --fault JSON                e.g. '{\"kind\":\"fail\",\"command\":\"device_add\",\"arg\":{\"id\":\"h0\"},\n"
        "                              \"class\":\"GenericError\",\"desc\":\"boom\"}' or '{\"kind\":\"stall\",\"nth\":5}'\n"
        "  --unplug JSON               e.g. '{\"id\":\"h0\",\"mode\":\"event\",\"delay_ms\":20,\"before_reply\":true}'\n"
        "                              (mode: event, never, guest-error, auto; no id = default for all)\n"
        "  --dump-on-exit FILE         write the state dump on exit\n"
        "  Ignored: -nodefaults -display X -accel X -m X -cpu X -smp X -bios X -L X -name X -numa X\n"
        "           (pxb-pcie numa_node= is accepted without -numa, unlike QEMU)\n");
}

static int json_flag(struct sim *s, const char *txt, int (*fn)(struct sim *, json_t *, char *, size_t))
{
    json_error_t je;
    json_t *j = json_loads(txt, 0, &je);
    char err[256];
    int rc;
    if (!j) {
        fprintf(stderr, "qmp-sim: bad JSON '%s': %s\n", txt, je.text);
        return -1;
    }
    rc = fn(s, j, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "qmp-sim: %s: %s\n", txt, err);
    json_decref(j);
    return rc;
}

int main(int argc, char **argv)
{
    struct sim_srv_opts o = { .ready_fd = -1 };
    struct sim *s = sim_new();
    const char *machine = "virt";
    char qmp_buf[4096], msg[1024];
    bool prelaunch = false;
    int rc = 2, i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(a, "-S") || !strcmp(a, "-nodefaults") || !strcmp(a, "--dev-iommu"))
            continue;
        if (!v) {
            fprintf(stderr, "qmp-sim: %s needs an argument\n", a);
            goto out;
        }
        if (!strcmp(a, "-M") || !strcmp(a, "-machine")) {
            machine = v;
            i++;
        } else if (!strcmp(a, "--qmp") || !strcmp(a, "-qmp")) {
            const char *p = v;
            if (!strncmp(p, "unix:", 5))
                p += 5;
            snprintf(qmp_buf, sizeof(qmp_buf), "%s", p);
            *strchrnul(qmp_buf, ',') = 0;
            o.qmp_path = qmp_buf;
            i++;
        } else if (!strcmp(a, "--control")) { o.control_path = v; i++; }
        else if (!strcmp(a, "--sysfs")) { snprintf(s->sysfs, sizeof(s->sysfs), "%s", v); i++; }
        else if (!strcmp(a, "--dump-on-exit")) { o.dump_path = v; i++; }
        else if (!strcmp(a, "--ready-fd")) { o.ready_fd = atoi(v); i++; }
        else if (!strcmp(a, "-device") || !strcmp(a, "-object") || !strcmp(a, "-netdev") || !strcmp(a, "--fault") ||
                 !strcmp(a, "--unplug") || !strcmp(a, "-display") || !strcmp(a, "-accel") || !strcmp(a, "-m") ||
                 !strcmp(a, "-cpu") || !strcmp(a, "-smp") || !strcmp(a, "-bios") || !strcmp(a, "-L") ||
                 !strcmp(a, "-name") || !strcmp(a, "-monitor") || !strcmp(a, "-serial") ||
                 !strcmp(a, "-numa") || !strcmp(a, "-object-ignored"))
            i++; /* second pass */
        else {
            fprintf(stderr, "qmp-sim: unknown argument '%s'\n", a);
            usage(stderr);
            goto out;
        }
    }
    if (!o.qmp_path) {
        usage(stderr);
        goto out;
    }
    {
        char m[32];
        snprintf(m, sizeof(m), "%s", machine);
        *strchrnul(m, ',') = 0;
        if (strcmp(m, "virt") && strcmp(m, "q35")) {
            fprintf(stderr, "qmp-sim: machine '%s' not simulated (virt, q35)\n", m);
            goto out;
        }
        sim_machine_init(s, !strcmp(m, "q35"));
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-S")) { prelaunch = true; continue; }
        if (!strcmp(a, "--dev-iommu")) { s->have_dev_iommu = true; continue; }
        if (!strcmp(a, "-nodefaults"))
            continue;
        if (!strcmp(a, "-device")) {
            if (sim_cold_device(s, v, msg, sizeof(msg)) < 0) {
                fprintf(stderr, "qmp-sim: %s\n", msg);
                rc = 1;
                goto out;
            }
        } else if (!strcmp(a, "-object")) {
            if (sim_cold_object(s, v, msg, sizeof(msg)) < 0) {
                fprintf(stderr, "qmp-sim: %s\n", msg);
                rc = 1;
                goto out;
            }
        } else if (!strcmp(a, "-netdev")) {
            const char *id = strstr(v, "id=");
            struct sim_netdev *n = calloc(1, sizeof(*n));
            snprintf(n->id, sizeof(n->id), "%s", id ? id + 3 : "");
            *strchrnul(n->id, ',') = 0;
            n->next = s->netdevs;
            s->netdevs = n;
        } else if (!strcmp(a, "--fault")) {
            if (json_flag(s, v, sim_srv_add_fault) < 0)
                goto out;
        } else if (!strcmp(a, "--unplug")) {
            if (json_flag(s, v, sim_srv_set_unplug) < 0)
                goto out;
        }
        if (v && a[0] == '-' && strcmp(a, "-S") && strcmp(a, "-nodefaults") && strcmp(a, "--dev-iommu"))
            i++;
    }
    sim_machine_done(s);
    sim_bind_cold_vfio(s);
    s->runstate = prelaunch ? RS_PRELAUNCH : RS_RUNNING;
    rc = sim_srv_run(s, &o);
out:
    sim_free(s);
    return rc;
}
