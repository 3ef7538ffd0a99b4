/* test_e2e_topology.c — `smmuctl topology` (the binary, $SMMUCTL_BIN, as a child process) against real QEMU 11.
 *
 * aarch64 virt: the FACTS topology (two vSMMUs on pxb-pcie pcie.1 / pcie.2, four root ports) plus a
 * cold-plugged e1000e on rp2b, a named root port rp0 and an anonymous one on pcie.0, and an iommufd object
 * added over QMP (getfd of a regular file + object-add, which QEMU accepts: FACTS). The JSON must match what
 * the command line built — ids, chassis/port, pxb bus_nr, occupants — and the text tree must show it.
 * x86_64 q35: root ports on pcie.0, no vSMMU.
 *
 * With SMMUCTL_RECORD_DIR set, the JSON runs also record the QMP session there (--record): that is how
 * qmp-fixtures/discover-a64-qemu11.txt and discover-x86-q35-qemu11.txt were made.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "support/qemu.h"
#include "support/runcli.h"
#include "support/testutil.h"

#define RUN_MS 30000

/* ---- the VMs: one table drives both the command line and the expectations ---- */

struct port_spec {
    const char *id;      /* NULL: anonymous */
    const char *bus;     /* pcie.0, pcie.1, pcie.2 */
    int chassis, port;
    const char *occupant; /* id of a cold-plugged e1000e, or NULL */
};

static const struct port_spec A64_PORTS[] = {
    {"rp1a", "pcie.1", 1, 1, NULL}, {"rp1b", "pcie.1", 2, 2, NULL},
    {"rp2a", "pcie.2", 3, 3, NULL}, {"rp2b", "pcie.2", 4, 4, "coldnic"},
    {"rp0", "pcie.0", 8, 8, NULL},  {NULL, "pcie.0", 9, 0, NULL},
};
static const struct port_spec Q35_PORTS[] = {
    {"rp1", "pcie.0", 1, 1, "coldnic"}, {"rp2", "pcie.0", 2, 2, NULL},
    {"rp3", "pcie.0", 3, 3, NULL},      {NULL, "pcie.0", 9, 0, NULL},
};

struct argv_buf {
    const char *v[64];
    char store[32][160];
    int n, ns;
};

static void av_add(struct argv_buf *a, const char *s)
{
    assert_true(a->n < 63);
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static const char *av_fmt(struct argv_buf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *av_fmt(struct argv_buf *a, const char *fmt, ...)
{
    va_list ap;
    assert_true(a->ns < 32);
    va_start(ap, fmt);
    vsnprintf(a->store[a->ns], sizeof(a->store[0]), fmt, ap);
    va_end(ap);
    return a->store[a->ns++];
}

/* -device arguments for the ports (after the pxbs / vSMMUs of aarch64), e1000e occupants with -netdev user. */
static void add_ports(struct argv_buf *a, const struct port_spec *ports, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct port_spec *p = &ports[i];
        av_add(a, "-device");
        if (p->id)
            av_add(a, av_fmt(a, "pcie-root-port,id=%s,bus=%s,chassis=%d,port=%d", p->id, p->bus, p->chassis, p->port));
        else
            av_add(a, av_fmt(a, "pcie-root-port,bus=%s,chassis=%d", p->bus, p->chassis));
        if (p->occupant) {
            av_add(a, "-netdev");
            av_add(a, av_fmt(a, "user,id=net-%s", p->occupant));
            av_add(a, "-device");
            av_add(a, av_fmt(a, "e1000e,netdev=net-%s,bus=%s,id=%s", p->occupant, p->id, p->occupant));
        }
    }
}

static void a64_args(struct argv_buf *a)
{
    memset(a, 0, sizeof(*a));
    av_add(a, "-device"); av_add(a, "pxb-pcie,id=pcie.1,bus_nr=252,bus=pcie.0");
    av_add(a, "-device"); av_add(a, "pxb-pcie,id=pcie.2,bus_nr=248,bus=pcie.0");
    add_ports(a, A64_PORTS, sizeof(A64_PORTS) / sizeof(A64_PORTS[0]));
    av_add(a, "-device"); av_add(a, "arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1");
    av_add(a, "-device"); av_add(a, "arm-smmuv3,primary-bus=pcie.2,id=smmuv3.2");
}

static void q35_args(struct argv_buf *a)
{
    memset(a, 0, sizeof(*a));
    add_ports(a, Q35_PORTS, sizeof(Q35_PORTS) / sizeof(Q35_PORTS[0]));
}

/* ---- a raw QMP exchange to add iommufd0 (getfd of a regular file, then object-add) ---- */

static char *raw_line(int fd)
{
    static char buf[65536];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        assert_true(poll(&p, 1, 10000) == 1);
        ssize_t r = read(fd, buf + len, 1);
        assert_true(r == 1);
        if (buf[len++] == '\n')
            break;
    }
    buf[len] = 0;
    return buf;
}

/* Send a line (with fd when >= 0) and return the reply line, skipping events. */
static char *raw_cmd(int fd, const char *line, int pass_fd)
{
    struct iovec iov = {(void *)line, strlen(line)};
    char ctl[CMSG_SPACE(sizeof(int))];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pass_fd >= 0) {
        memset(ctl, 0, sizeof(ctl));
        mh.msg_control = ctl;
        mh.msg_controllen = sizeof(ctl);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    assert_int_equal(sendmsg(fd, &mh, 0), (ssize_t)strlen(line));
    for (;;) {
        char *r = raw_line(fd);
        if (!strstr(r, "\"event\""))
            return r;
    }
}

static void add_iommufd_object(const struct smmu_qemu *q)
{
    char path[512];
    int fd = smmu_qemu_connect(q), file;
    assert_true(fd >= 0);
    assert_non_null(strstr(raw_line(fd), "\"QMP\""));
    assert_non_null(strstr(raw_cmd(fd, "{\"execute\":\"qmp_capabilities\"}\n", -1), "\"return\""));
    snprintf(path, sizeof(path), "%s/fake-iommu", smmu_qemu_tmpdir(q));
    file = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(file >= 0);
    assert_non_null(strstr(raw_cmd(fd, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"fd0\"}}\n", file), "\"return\""));
    close(file);
    char *r = raw_cmd(fd, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\","
                          "\"fd\":\"fd0\"}}\n", -1);
    if (!strstr(r, "\"return\""))
        fail_msg("object-add iommufd0: %s", r);
    close(fd);
}

/* Send each command line in its own session-less sequence on one connection; every reply must be a return. */
static void raw_commands(const struct smmu_qemu *q, const char *const *lines)
{
    int fd = smmu_qemu_connect(q);
    assert_true(fd >= 0);
    assert_non_null(strstr(raw_line(fd), "\"QMP\""));
    assert_non_null(strstr(raw_cmd(fd, "{\"execute\":\"qmp_capabilities\"}\n", -1), "\"return\""));
    for (int i = 0; lines[i]; i++) {
        char *r = raw_cmd(fd, lines[i], -1);
        if (!strstr(r, "\"return\""))
            fail_msg("%s -> %s", lines[i], r);
    }
    close(fd);
}

/* ---- running smmuctl ---- */

struct vm {
    struct smmu_qemu *q;
    char *state;
};

static void vm_start(struct vm *vm, const char *arch, struct argv_buf *a)
{
    smmu_qemu_require();
    memset(vm, 0, sizeof(*vm));
    if (smmu_qemu_start(&vm->q, arch, a->v) < 0)
        fail_msg("QEMU did not start: %s", smmu_qemu_last_error());
    vm->state = smmu_test_mkdtemp("e2e-topo-state");
}

static void vm_stop(struct vm *vm)
{
    smmu_qemu_stop(vm->q);
    smmu_test_rmtree(vm->state);
    free(vm->state);
}

/* smmuctl --qmp SOCK --state-dir STATE [--record DIR/name] [--json] topology */
static void run_topology(struct vm *vm, bool json, const char *record_name, struct smmu_run *r)
{
    const char *args[16];
    char rec[1024];
    int n = 0;
    const char *dir = getenv("SMMUCTL_RECORD_DIR");
    args[n++] = "--qmp";
    args[n++] = smmu_qemu_socket_path(vm->q);
    args[n++] = "--state-dir";
    args[n++] = vm->state;
    if (record_name && dir && *dir) {
        snprintf(rec, sizeof(rec), "%s/%s", dir, record_name);
        unlink(rec);
        args[n++] = "--record";
        args[n++] = rec;
    }
    if (json)
        args[n++] = "--json";
    args[n++] = "topology";
    args[n] = NULL;
    smmu_run_cli(r, args, RUN_MS);
    if (r->status != 0)
        fail_msg("smmuctl topology exited %d\nstdout: %s\nstderr: %s", r->status, r->out, r->err);
}

/* ---- checks ---- */

static json_t *find_port(json_t *ports, const struct port_spec *p)
{
    size_t i;
    json_t *o;
    json_array_foreach(ports, i, o) {
        const char *id = json_string_value(json_object_get(o, "id"));
        if (p->id ? (id && !strcmp(id, p->id))
                  : (!id && json_integer_value(json_object_get(o, "chassis")) == p->chassis))
            return o;
    }
    return NULL;
}

/* Every port of the table is in `ports` exactly as the command line made it, and nothing else is. */
static void check_ports(json_t *ports, const struct port_spec *spec, size_t n, const char *bus, bool other)
{
    size_t expected = 0;
    for (size_t i = 0; i < n; i++) {
        const struct port_spec *p = &spec[i];
        if (strcmp(p->bus, bus))
            continue;
        expected++;
        json_t *o = find_port(ports, p);
        if (!o)
            fail_msg("port %s (chassis %d) not found on %s", p->id ? p->id : "(anonymous)", p->chassis, bus);
        assert_int_equal(json_integer_value(json_object_get(o, "chassis")), p->chassis);
        assert_int_equal(json_integer_value(json_object_get(o, "port")), p->port);
        assert_true(json_is_true(json_object_get(o, "hotplug")));
        if (p->id) {
            char want[128];
            snprintf(want, sizeof(want), "/machine/peripheral/%s", p->id);
            assert_string_equal(json_string_value(json_object_get(o, "path")), want);
        } else {
            assert_true(json_is_null(json_object_get(o, "id")));
            assert_non_null(strstr(json_string_value(json_object_get(o, "path")), "/machine/peripheral-anon/"));
        }
        if (other)
            assert_string_equal(json_string_value(json_object_get(o, "bus")), bus);
        else
            assert_null(json_object_get(o, "bus"));
        json_t *occ = json_object_get(o, "occupant");
        if (p->occupant) {
            assert_string_equal(json_string_value(json_object_get(occ, "id")), p->occupant);
            assert_string_equal(json_string_value(json_object_get(occ, "driver")), "e1000e");
        } else {
            assert_true(json_is_null(occ));
        }
    }
    assert_int_equal(json_array_size(ports), expected);
}

static void check_vsmmu(json_t *v, const char *id, int identifier, const char *pxb, int bus_nr)
{
    char path[128];
    snprintf(path, sizeof(path), "/machine/peripheral/%s", id);
    assert_string_equal(json_string_value(json_object_get(v, "id")), id);
    assert_string_equal(json_string_value(json_object_get(v, "path")), path);
    assert_true(json_is_false(json_object_get(v, "accel")));
    assert_int_equal(json_integer_value(json_object_get(v, "identifier")), identifier);
    assert_string_equal(json_string_value(json_object_get(v, "pxb")), pxb);
    assert_int_equal(json_integer_value(json_object_get(v, "bus_nr")), bus_nr);
    assert_true(json_is_null(json_object_get(v, "numa_node"))); /* QEMU's 128 = unset */
    assert_true(json_is_null(json_object_get(v, "bound_smmu")));
}

static json_t *parse_ok(const struct smmu_run *r, const char *command)
{
    json_t *o = smmu_run_json(r);
    if (!o)
        fail_msg("stdout is not one JSON object: %s", r->out);
    assert_true(json_is_true(json_object_get(o, "ok")));
    assert_string_equal(json_string_value(json_object_get(o, "command")), command);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "qemu"), "major")), 11);
    return o;
}

static void assert_has(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("text output lacks \"%s\":\n%s", needle, text);
}

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* ---- tests ---- */

static void test_a64_json_matches_command_line(void **state)
{
    struct argv_buf a;
    struct vm vm;
    struct smmu_run r;
    (void)state;
    a64_args(&a);
    vm_start(&vm, "aarch64", &a);
    add_iommufd_object(vm.q);
    run_topology(&vm, true, "discover-a64-qemu11.rec", &r);
    json_t *o = parse_ok(&r, "topology");
    json_t *vs = json_object_get(o, "vsmmus");
    size_t np = sizeof(A64_PORTS) / sizeof(A64_PORTS[0]);
    assert_int_equal(json_array_size(vs), 2);
    check_vsmmu(json_array_get(vs, 0), "smmuv3.1", 0, "pcie.1", 252);
    check_vsmmu(json_array_get(vs, 1), "smmuv3.2", 1, "pcie.2", 248);
    check_ports(json_object_get(json_array_get(vs, 0), "ports"), A64_PORTS, np, "pcie.1", false);
    check_ports(json_object_get(json_array_get(vs, 1), "ports"), A64_PORTS, np, "pcie.2", false);
    check_ports(json_object_get(o, "other_ports"), A64_PORTS, np, "pcie.0", true);
    /* order: by (chassis, port) */
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(o, "other_ports"), 0), "id")),
                        "rp0");
    json_t *fds = json_object_get(o, "iommufds");
    assert_int_equal(json_array_size(fds), 1);
    assert_string_equal(json_string_value(json_array_get(fds, 0)), "iommufd0");
    assert_int_equal(json_array_size(json_object_get(o, "vfio")), 0);
    assert_int_equal(json_array_size(json_object_get(o, "warnings")), 0);
    json_decref(o);
    smmu_run_free(&r);
    /* a read-only command leaves no journal (or lock) behind */
    assert_int_equal(dir_entries(vm.state), 0);
    vm_stop(&vm);
}

static void test_a64_text_tree(void **state)
{
    struct argv_buf a;
    struct vm vm;
    struct smmu_run r;
    (void)state;
    a64_args(&a);
    vm_start(&vm, "aarch64", &a);
    run_topology(&vm, false, NULL, &r);
    assert_has(r.out, "QEMU 11.");
    assert_has(r.out, "2 vSMMUs, 6 root ports (4 free), 0 iommufd objects");
    assert_has(r.out, "vSMMU smmuv3.1  identifier 0, accel off, not bound to a host SMMU");
    assert_has(r.out, "pxb-pcie pcie.1  bus_nr 252, NUMA node unset");
    assert_has(r.out, "vSMMU smmuv3.2  identifier 1, accel off");
    assert_has(r.out, "pxb-pcie pcie.2  bus_nr 248");
    assert_has(r.out, "rp2b         chassis 4 port 4  hotplug     coldnic (e1000e)");
    assert_has(r.out, "|-- rp1a         chassis 1 port 1  hotplug     free");
    assert_has(r.out, "(anonymous)  chassis 9 port 0  hotplug     on pcie.0  empty  [/machine/peripheral-anon/device[0]: "
                      "no id, smmuctl cannot plug into it]");
    assert_has(r.out, "rp0          chassis 8 port 8  hotplug     on pcie.0  free");
    assert_has(r.out, "iommufd objects: none");
    /* the tree: vSMMU, then its pxb, then its ports, in that order */
    const char *v1 = strstr(r.out, "vSMMU smmuv3.1"), *x1 = strstr(r.out, "pxb-pcie pcie.1");
    const char *p1 = strstr(r.out, "rp1b"), *v2 = strstr(r.out, "vSMMU smmuv3.2");
    assert_true(v1 && x1 && p1 && v2 && v1 < x1 && x1 < p1 && p1 < v2);
    assert_string_equal(r.err, "");
    smmu_run_free(&r);
    vm_stop(&vm);
}

static void test_q35_no_vsmmu(void **state)
{
    struct argv_buf a;
    struct vm vm;
    struct smmu_run r;
    (void)state;
    q35_args(&a);
    vm_start(&vm, "x86_64", &a);
    run_topology(&vm, true, "discover-x86-q35-qemu11.rec", &r);
    json_t *o = parse_ok(&r, "topology");
    assert_int_equal(json_array_size(json_object_get(o, "vsmmus")), 0);
    check_ports(json_object_get(o, "other_ports"), Q35_PORTS, sizeof(Q35_PORTS) / sizeof(Q35_PORTS[0]), "pcie.0", true);
    assert_int_equal(json_array_size(json_object_get(o, "iommufds")), 0);
    json_decref(o);
    smmu_run_free(&r);

    run_topology(&vm, false, NULL, &r);
    assert_has(r.out, "0 vSMMUs, 4 root ports (2 free)");
    assert_has(r.out, "No vSMMU (arm-smmuv3): devices go to any free hotpluggable root port.");
    assert_has(r.out, "rp1          chassis 1 port 1  hotplug     on pcie.0  coldnic (e1000e)");
    smmu_run_free(&r);
    vm_stop(&vm);
}

/* Devices hot-plugged at run time are occupants too: a named one, and one without an id. */
static void test_a64_hotplugged_occupants(void **state)
{
    struct argv_buf a;
    struct vm vm;
    struct smmu_run r;
    (void)state;
    a64_args(&a);
    vm_start(&vm, "aarch64", &a);
    raw_commands(vm.q, (const char *const[]){
        "{\"execute\":\"netdev_add\",\"arguments\":{\"type\":\"user\",\"id\":\"hn0\"}}\n",
        "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"e1000e\",\"netdev\":\"hn0\",\"bus\":\"rp1b\","
        "\"addr\":\"0x0\",\"id\":\"nic0\"}}\n",
        "{\"execute\":\"netdev_add\",\"arguments\":{\"type\":\"user\",\"id\":\"hn1\"}}\n",
        "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"e1000e\",\"netdev\":\"hn1\",\"bus\":\"rp0\","
        "\"addr\":\"0x0\"}}\n",
        NULL});
    run_topology(&vm, true, NULL, &r);
    json_t *o = parse_ok(&r, "topology");
    json_t *rp1b = json_array_get(json_object_get(json_array_get(json_object_get(o, "vsmmus"), 0), "ports"), 1);
    assert_string_equal(json_string_value(json_object_get(rp1b, "id")), "rp1b");
    json_t *occ = json_object_get(rp1b, "occupant");
    assert_string_equal(json_string_value(json_object_get(occ, "id")), "nic0");
    assert_string_equal(json_string_value(json_object_get(occ, "driver")), "e1000e");
    json_t *rp0 = json_array_get(json_object_get(o, "other_ports"), 0);
    assert_string_equal(json_string_value(json_object_get(rp0, "id")), "rp0");
    occ = json_object_get(rp0, "occupant");
    assert_true(json_is_null(json_object_get(occ, "id"))); /* anonymous device */
    assert_string_equal(json_string_value(json_object_get(occ, "driver")), "e1000e");
    json_decref(o);
    smmu_run_free(&r);
    run_topology(&vm, false, NULL, &r);
    assert_has(r.out, "2 vSMMUs, 6 root ports (2 free)");
    assert_has(r.out, "rp1b         chassis 2 port 2  hotplug     nic0 (e1000e)");
    assert_has(r.out, "rp0          chassis 8 port 8  hotplug     on pcie.0  anonymous device (e1000e)");
    smmu_run_free(&r);
    vm_stop(&vm);
}

/* QEMU gone: exit 3, and with --json one error object. */
static void test_unreachable(void **state)
{
    struct argv_buf a;
    struct vm vm;
    struct smmu_run r;
    char sock[1024];
    (void)state;
    a64_args(&a);
    vm_start(&vm, "aarch64", &a);
    snprintf(sock, sizeof(sock), "%s", smmu_qemu_socket_path(vm.q));
    smmu_qemu_stop(vm.q);
    vm.q = NULL;
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--state-dir", vm.state, "--json", "topology", NULL}, RUN_MS);
    assert_int_equal(r.status, 3);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 3);
    assert_non_null(json_object_get(json_object_get(o, "error"), "message"));
    json_decref(o);
    smmu_run_free(&r);
    vm_stop(&vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_a64_json_matches_command_line, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_a64_text_tree, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_a64_hotplugged_occupants, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_q35_no_vsmmu, smmu_qemu_teardown),
        cmocka_unit_test_teardown(test_unreachable, smmu_qemu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
