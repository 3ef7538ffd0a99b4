/* sim_main.c — qmp-sim: a stateful QEMU 11.1.3 QMP simulator for tests, fault injection, benchmarks and the
 * demo. Command line: QEMU-style topology arguments plus simulator flags (see usage() and docs/qmp-sim.md).
 * With --vms N --dir DIR one process plays N independent VMs with the same command line (DIR/vmK.qmp,
 * DIR/vmK.ctl, K from 0).
 */
#define _GNU_SOURCE
#include "sim.h"
#include "sim_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SIM_VMS_MAX 10000

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qmp-sim --qmp PATH | -qmp unix:PATH[,server=on,wait=off]  [options] [QEMU topology args]\n"
        "       qmp-sim --vms N --dir DIR  [options] [QEMU topology args]\n"
        "  --vms N --dir DIR           N independent VMs (each the whole command line) on DIR/vmK.qmp with\n"
        "                              control sockets DIR/vmK.ctl, K = 0..N-1 (no --qmp/--control then)\n"
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
        "  --dump-on-exit FILE         write the state dump on exit (with --vms: FILE holds %%d, replaced by K)\n"
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

/* Build one VM's model from the command line (the second pass: everything but the simulator flags
 * parsed by main). Returns 0, or the exit code. */
static int build_vm(struct sim *s, int argc, char **argv, const char *machine)
{
    char msg[1024];
    bool prelaunch = false;
    int i;
    char m[32];
    snprintf(m, sizeof(m), "%s", machine);
    *strchrnul(m, ',') = 0;
    if (strcmp(m, "virt") && strcmp(m, "q35")) {
        fprintf(stderr, "qmp-sim: machine '%s' not simulated (virt, q35)\n", m);
        return 2;
    }
    for (i = 1; i + 1 < argc; i++) /* before any device: cold vfio-pci reads it */
        if (!strcmp(argv[i], "--sysfs"))
            snprintf(s->sysfs, sizeof(s->sysfs), "%s", argv[i + 1]);
    sim_machine_init(s, !strcmp(m, "q35"));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-S")) { prelaunch = true; continue; }
        if (!strcmp(a, "--dev-iommu")) { s->have_dev_iommu = true; continue; }
        if (!strcmp(a, "-nodefaults"))
            continue;
        if (!strcmp(a, "-device")) {
            if (sim_cold_device(s, v, msg, sizeof(msg)) < 0) {
                fprintf(stderr, "qmp-sim: %s\n", msg);
                return 1;
            }
        } else if (!strcmp(a, "-object")) {
            if (sim_cold_object(s, v, msg, sizeof(msg)) < 0) {
                fprintf(stderr, "qmp-sim: %s\n", msg);
                return 1;
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
                return 2;
        } else if (!strcmp(a, "--unplug")) {
            if (json_flag(s, v, sim_srv_set_unplug) < 0)
                return 2;
        }
        if (v && a[0] == '-' && strcmp(a, "-S") && strcmp(a, "-nodefaults") && strcmp(a, "--dev-iommu"))
            i++;
    }
    sim_machine_done(s);
    sim_bind_cold_vfio(s);
    s->runstate = prelaunch ? RS_PRELAUNCH : RS_RUNNING;
    return 0;
}

/* DIR/vmK.EXT; -1 when too long. */
static int vm_path(char *out, size_t len, const char *dir, int k, const char *ext)
{
    int n = snprintf(out, len, "%s/vm%d.%s", dir, k, ext);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The --dump-on-exit FILE of VM k: its first %d replaced by k; -1 when too long. */
static int vm_dump_path(char *out, size_t len, const char *pattern, int k)
{
    const char *p = strstr(pattern, "%d");
    int n = snprintf(out, len, "%.*s%d%s", (int)(p - pattern), pattern, k, p + 2);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* With many VMs the listening sockets alone need 2 fds each: raise the soft fd limit to the hard one. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    const char *machine = "virt", *qmp_path = NULL, *control_path = NULL, *dump_path = NULL, *dir = NULL;
    struct sim_srv_vm *vms = NULL;
    char qmp_buf[4096], (*names)[3][256] = NULL;
    int rc = 2, i, nvms = 0, ready_fd = -1;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-S") || !strcmp(a, "-nodefaults") || !strcmp(a, "--dev-iommu"))
            continue;
        if (!v) {
            fprintf(stderr, "qmp-sim: %s needs an argument\n", a);
            return 2;
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
            qmp_path = qmp_buf;
            i++;
        } else if (!strcmp(a, "--control")) { control_path = v; i++; }
        else if (!strcmp(a, "--dump-on-exit")) { dump_path = v; i++; }
        else if (!strcmp(a, "--ready-fd")) { ready_fd = atoi(v); i++; }
        else if (!strcmp(a, "--dir")) { dir = v; i++; }
        else if (!strcmp(a, "--vms")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > SIM_VMS_MAX) {
                fprintf(stderr, "qmp-sim: --vms '%s': expected a number from 1 to %d\n", v, SIM_VMS_MAX);
                return 2;
            }
            nvms = (int)n;
            i++;
        } else if (!strcmp(a, "--sysfs") || !strcmp(a, "-device") || !strcmp(a, "-object") ||
                 !strcmp(a, "-netdev") || !strcmp(a, "--fault") || !strcmp(a, "--unplug") ||
                 !strcmp(a, "-display") || !strcmp(a, "-accel") || !strcmp(a, "-m") || !strcmp(a, "-cpu") ||
                 !strcmp(a, "-smp") || !strcmp(a, "-bios") || !strcmp(a, "-L") || !strcmp(a, "-name") ||
                 !strcmp(a, "-monitor") || !strcmp(a, "-serial") || !strcmp(a, "-numa") ||
                 !strcmp(a, "-object-ignored"))
            i++; /* second pass (build_vm) */
        else {
            fprintf(stderr, "qmp-sim: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (nvms) {
        if (!dir || qmp_path || control_path) {
            fprintf(stderr, "qmp-sim: --vms needs --dir DIR and takes no --qmp/--control (each VM listens on "
                            "DIR/vmK.qmp and DIR/vmK.ctl)\n");
            return 2;
        }
        if (dump_path && !strstr(dump_path, "%d")) {
            fprintf(stderr, "qmp-sim: with --vms, --dump-on-exit FILE needs %%d (replaced by the VM number)\n");
            return 2;
        }
        raise_nofile();
    } else if (dir) {
        fprintf(stderr, "qmp-sim: --dir goes with --vms N\n");
        return 2;
    } else if (!qmp_path) {
        usage(stderr);
        return 2;
    }
    vms = calloc(nvms ? (size_t)nvms : 1, sizeof(*vms));
    if (!nvms) {
        vms[0] = (struct sim_srv_vm){ sim_new(), qmp_path, control_path, dump_path };
        rc = build_vm(vms[0].s, argc, argv, machine);
        if (rc == 0)
            rc = sim_srv_run(vms, 1, ready_fd);
        sim_free(vms[0].s);
        free(vms);
        return rc;
    }
    names = calloc((size_t)nvms, sizeof(*names));
    rc = 0;
    for (i = 0; i < nvms && rc == 0; i++) {
        if (vm_path(names[i][0], sizeof(names[i][0]), dir, i, "qmp") < 0 ||
            vm_path(names[i][1], sizeof(names[i][1]), dir, i, "ctl") < 0 ||
            (dump_path && vm_dump_path(names[i][2], sizeof(names[i][2]), dump_path, i) < 0)) {
            fprintf(stderr, "qmp-sim: --dir '%s': path too long for VM %d's sockets\n", dir, i);
            rc = 2;
            break;
        }
        vms[i] = (struct sim_srv_vm){ sim_new(), names[i][0], names[i][1], dump_path ? names[i][2] : NULL };
        rc = build_vm(vms[i].s, argc, argv, machine);
    }
    if (rc == 0)
        rc = sim_srv_run(vms, nvms, ready_fd);
    for (i = 0; i < nvms; i++)
        if (vms[i].s)
            sim_free(vms[i].s);
    free(vms);
    free(names);
    return rc;
}
