/* test_discover_replay.c — discovery and the `topology` / `plan` commands against fixtures RECORDED FROM REAL
 * QEMU 11.1.3 (qmp-fixtures/discover-a64-qemu11.txt: two vSMMUs, occupied and free ports, an anonymous root
 * port, an iommufd object; discover-x86-q35-qemu11.txt: q35, no vSMMU), and the CLI against synthetic ones.
 *
 * In-process: smmu_vm_discover() on smmuctl's own client must yield exactly the topology the recording shows.
 * CLI: the smmuctl binary ($SMMUCTL_BIN) runs as a child against the qmp-replay program serving a fixture;
 * its stdout (text or --json) and exit code are checked, and so is the replay's verdict (the command sent
 * exactly the recorded queries: plan and topology send nothing else).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"
#include "smmuctl/topology.h"
#include "smmuctl/vm.h"
#include "replay/replay_proc.h"
#include "replay/replay_server.h"
#include "support/fakesys.h"
#include "support/json_expect.h"
#include "support/replay_rig.h"
#include "support/runcli.h"
#include "support/testutil.h"

/* A port's resource reserve members when none is set on QEMU's command line (all unset). */
#define NORES ",'pref64_reserve':null,'mem_reserve':null,'pref32_reserve':null,'io_reserve':null,'bus_reserve':null"

#define RUN_MS 20000
#define S1 "smmu3.0x0000000016000000"
#define S2 "smmu3.0x0000000018000000"
#define A64 "discover-a64-qemu11.txt"
#define Q35 "discover-x86-q35-qemu11.txt"
#define ACCEL "discover-syn-accel-vfio.txt"

static void assert_has(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("output lacks \"%s\":\n%s", needle, text);
}

/* What the recorded aarch64 VM is (see the fixture's header for its command line). */
static const char *A64_TOPO =
    "{'qemu':{'major':11,'minor':1,'micro':3},"
    " 'vsmmus':[{'id':'smmuv3.1','path':'/machine/peripheral/smmuv3.1','accel':false,'identifier':0,'pxb':'pcie.1',"
    "            'bus_nr':252,'numa_node':null,'bound_smmu':null,"
    "            'ports':[{'id':'rp1a','path':'/machine/peripheral/rp1a','chassis':1,'port':1,'hotplug':true,'occupant':null" NORES "},"
    "                     {'id':'rp1b','path':'/machine/peripheral/rp1b','chassis':2,'port':2,'hotplug':true,'occupant':null" NORES "}]},"
    "           {'id':'smmuv3.2','path':'/machine/peripheral/smmuv3.2','accel':false,'identifier':1,'pxb':'pcie.2',"
    "            'bus_nr':248,'numa_node':null,'bound_smmu':null,"
    "            'ports':[{'id':'rp2a','path':'/machine/peripheral/rp2a','chassis':3,'port':3,'hotplug':true,'occupant':null" NORES "},"
    "                     {'id':'rp2b','path':'/machine/peripheral/rp2b','chassis':4,'port':4,'hotplug':true,"
    "                      'occupant':{'id':'coldnic','driver':'e1000e'}" NORES "}]}],"
    " 'other_ports':[{'id':'rp0','path':'/machine/peripheral/rp0','bus':'pcie.0','chassis':8,'port':8,'hotplug':true,"
    "                 'occupant':null" NORES "},"
    "                {'id':null,'path':'/machine/peripheral-anon/device[0]','bus':'pcie.0','chassis':9,'port':0,"
    "                 'hotplug':true,'occupant':null" NORES "}],"
    " 'iommufds':['iommufd0'],'vfio':[]}";

static const char *Q35_TOPO =
    "{'qemu':{'major':11,'minor':1,'micro':3},'vsmmus':[],"
    " 'other_ports':[{'id':'rp1','path':'/machine/peripheral/rp1','bus':'pcie.0','chassis':1,'port':1,'hotplug':true,"
    "                 'occupant':{'id':'coldnic','driver':'e1000e'}" NORES "},"
    "                {'id':'rp2','path':'/machine/peripheral/rp2','bus':'pcie.0','chassis':2,'port':2,'hotplug':true,"
    "                 'occupant':null" NORES "},"
    "                {'id':'rp3','path':'/machine/peripheral/rp3','bus':'pcie.0','chassis':3,'port':3,'hotplug':true,"
    "                 'occupant':null" NORES "},"
    "                {'id':null,'path':'/machine/peripheral-anon/device[0]','bus':'pcie.0','chassis':9,'port':0,"
    "                 'hotplug':true,'occupant':null" NORES "}],"
    " 'iommufds':[],'vfio':[]}";

/* ---- in-process: smmu_vm_discover on the recorded sessions ---- */

static void discover_fixture(const char *name, struct smmu_topology *t)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    struct replay_rig r;
    replay_rig_start(&r, name, 0);
    if (smmu_vm_discover(r.c, t, &err) < 0)
        fail_msg("%s: %s", name, err.message);
    replay_rig_finish(&r);
}

static void test_recorded_a64(void **state)
{
    struct smmu_topology t;
    (void)state;
    discover_fixture(A64, &t);
    json_t *exp = smmu_test_json(A64_TOPO), *got = smmu_topology_to_json(&t);
    smmu_test_assert_json_eq(exp, got);
    json_decref(exp);
    json_decref(got);
    assert_true(t.has_qom_list_get);
    /* buses are matched by path strings; QEMU's device[N] indexes are whatever they were */
    assert_string_equal(t.vsmmus[0].primary_bus, "/machine/unattached/device[41]/pcie.1");
    int rp1a = smmu_topology_find_port(&t, "rp1a"), rp0 = smmu_topology_find_port(&t, "rp0");
    assert_string_equal(t.ports[rp1a].parent_bus, t.vsmmus[0].primary_bus);
    assert_int_equal(t.ports[rp0].vsmmu, -1);
    assert_string_equal(t.ports[rp0].bus_name, "pcie.0");
    smmu_topology_free(&t);
}

static void test_recorded_q35(void **state)
{
    struct smmu_topology t;
    (void)state;
    discover_fixture(Q35, &t);
    json_t *exp = smmu_test_json(Q35_TOPO), *got = smmu_topology_to_json(&t);
    smmu_test_assert_json_eq(exp, got);
    json_decref(exp);
    json_decref(got);
    smmu_topology_free(&t);
}

/* Root ports launched with resource reserve properties (recorded by tests/e2e/test_e2e_doctor.c): discovery
 * reads them from the batch it already sends. The replay server fails on any command the fixture does not
 * list, and the fixture holds exactly six: the windows cost no extra round trip. */
#define A64_RESERVE "discover-a64-qemu11-reserve.txt"

static void assert_res(const struct smmu_reserve *r, bool set, uint64_t value)
{
    assert_int_equal(r->set, set);
    assert_int_equal(r->value, value);
}

static void test_recorded_a64_reserves(void **state)
{
    struct smmu_topology t;
    char *text = smmu_test_read_file(SMMU_FIXTURES_DIR "/" A64_RESERVE, NULL), *l;
    int commands = 0;
    (void)state;
    assert_non_null(text);
    for (l = text; (l = strstr(l, "\nC: ")); l++)
        commands++;
    free(text);
    assert_int_equal(commands, 6); /* capabilities, 3 qom-list, 2 qom-list-get */
    discover_fixture(A64_RESERVE, &t);
    assert_true(t.has_qom_list_get);
    const struct smmu_rootport *a = &t.ports[smmu_topology_find_port(&t, "rp1a")];
    const struct smmu_rootport *b = &t.ports[smmu_topology_find_port(&t, "rp1b")];
    const struct smmu_rootport *c = &t.ports[smmu_topology_find_port(&t, "rp1c")];
    const struct smmu_rootport *d = &t.ports[smmu_topology_find_port(&t, "rp2a")];
    /* unset: QEMU's 18446744073709551615 (a real after the decoder) and 4294967295 */
    assert_res(&a->pref64_reserve, false, 0);
    assert_res(&a->pref32_reserve, false, 0);
    assert_res(&a->mem_reserve, false, 0);
    assert_res(&a->io_reserve, false, 0);
    assert_res(&a->bus_reserve, false, 0);
    assert_res(&b->pref64_reserve, true, 64ull << 30);
    assert_res(&b->mem_reserve, true, 32ull << 20);
    assert_res(&c->pref64_reserve, true, 256ull << 30);
    assert_res(&c->mem_reserve, true, 16ull << 20);
    assert_res(&d->pref64_reserve, false, 0);
    assert_res(&d->pref32_reserve, true, 16ull << 20);
    assert_res(&d->io_reserve, true, 0);
    assert_res(&d->bus_reserve, true, 2);
    assert_string_equal(t.ports[smmu_topology_find_port(&t, "rp1d")].occupant_id, "nic0");
    smmu_topology_free(&t);
}

/* ---- the CLI against qmp-replay ---- */

struct cli_rig {
    char *dir;          /* temp dir: socket, state dir */
    char sock[600], state[600];
    struct replay_proc *p;
    struct fakesys *fs;
};

static void cli_start(struct cli_rig *c, const char *fixture)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    char path[512];
    memset(c, 0, sizeof(*c));
    c->dir = smmu_test_mkdtemp("discover-cli");
    snprintf(c->sock, sizeof(c->sock), "%s/qmp.sock", c->dir);
    snprintf(c->state, sizeof(c->state), "%s/state", c->dir);
    snprintf(path, sizeof(path), "%s/%s", SMMU_FIXTURES_DIR, fixture);
    if (replay_proc_start(&c->p, path, c->sock, NULL, &err) < 0)
        fail_msg("qmp-replay: %s", err.message);
    c->fs = fakesys_new(NULL);
    fakesys_add_dev(c->fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = S1, .driver = "vfio-pci",
                                                 .group = "12", .cdev = "vfio3", .numa_node = "0"});
    fakesys_add_dev(c->fs, &(struct fakesys_dev){.bdf = "0009:01:00.1", .smmu = S1, .driver = "vfio-pci",
                                                 .group = "13", .cdev = "vfio4", .numa_node = "0"});
    fakesys_add_dev(c->fs, &(struct fakesys_dev){.bdf = "000a:01:00.0", .smmu = S2, .driver = "vfio-pci",
                                                 .group = "20", .cdev = "vfio5", .numa_node = "1"});
    fakesys_add_dev(c->fs, &(struct fakesys_dev){.bdf = "000a:02:00.0", .smmu = S2, .driver = "vfio-pci",
                                                 .group = "21", .cdev = "vfio6", .numa_node = "1"});
    fakesys_add_dev(c->fs, &(struct fakesys_dev){.bdf = "000b:01:00.0", .smmu = "smmu3.0x000000001a000000",
                                                 .driver = "nvidia", .group = "30", .numa_node = "1"});
}

/* Run smmuctl --qmp SOCK --state-dir STATE --sysfs ROOT <args…>. */
static void cli_run(struct cli_rig *c, struct smmu_run *r, const char *const *args)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = "--qmp";
    argv[n++] = c->sock;
    argv[n++] = "--state-dir";
    argv[n++] = c->state;
    argv[n++] = "--sysfs";
    argv[n++] = fakesys_root(c->fs);
    for (int i = 0; args[i]; i++) {
        assert_true(n < 39);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    smmu_run_cli(r, argv, RUN_MS);
    assert_false(r->timed_out);
}

/* The replay must have been played exactly; nothing left in the state dir (read-only commands). */
static void cli_finish(struct cli_rig *c, bool expect_exact)
{
    int st = replay_proc_wait(c->p, 10000);
    if (expect_exact && st != 0)
        fail_msg("qmp-replay (status %d): %s", st, replay_proc_report(c->p));
    replay_proc_free(c->p);
    assert_int_equal(access(c->state, F_OK), -1);
    fakesys_free(c->fs);
    smmu_test_rmtree(c->dir);
    free(c->dir);
}

static json_t *run_json(const struct smmu_run *r, int want_status)
{
    json_t *o = smmu_run_json(r);
    if (r->status != want_status || !o)
        fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s", r->status, want_status, r->out, r->err);
    return o;
}

static void test_cli_topology_json(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"--json", "topology", NULL});
    json_t *o = run_json(&r, 0), *exp = smmu_test_json(A64_TOPO);
    json_t *want = smmu_test_json("{'ok':true,'command':'topology'}");
    json_object_update(want, exp);
    json_object_set_new(want, "warnings", json_array());
    smmu_test_assert_json_eq(want, o);
    /* one line, members in the documented order */
    assert_int_equal(strchr(r.out, '\n') - r.out + 1, (long)strlen(r.out));
    assert_int_equal(strncmp(r.out, "{\"ok\":true,\"command\":\"topology\",\"qemu\":", 39), 0);
    json_decref(o);
    json_decref(exp);
    json_decref(want);
    smmu_run_free(&r);
    cli_finish(&c, true);
}

static void test_cli_topology_text(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"topology", NULL});
    assert_int_equal(r.status, 0);
    assert_has(r.out, "QEMU 11.1.3: 2 vSMMUs, 6 root ports (4 free), 1 iommufd object\n");
    assert_has(r.out, "\nvSMMU smmuv3.1  identifier 0, accel off, not bound to a host SMMU\n"
                      "`-- pxb-pcie pcie.1  bus_nr 252, NUMA node unset\n"
                      "    |-- rp1a         chassis 1 port 1  hotplug     free\n"
                      "    `-- rp1b         chassis 2 port 2  hotplug     free\n");
    assert_has(r.out, "\nvSMMU smmuv3.2  identifier 1, accel off, not bound to a host SMMU\n"
                      "`-- pxb-pcie pcie.2  bus_nr 248, NUMA node unset\n"
                      "    |-- rp2a         chassis 3 port 3  hotplug     free\n"
                      "    `-- rp2b         chassis 4 port 4  hotplug     coldnic (e1000e)\n");
    assert_has(r.out, "\nRoot ports behind no vSMMU:\n"
                      "|-- rp0          chassis 8 port 8  hotplug     on pcie.0  free\n"
                      "`-- (anonymous)  chassis 9 port 0  hotplug     on pcie.0  empty  "
                      "[/machine/peripheral-anon/device[0]: no id, smmuctl cannot plug into it]\n");
    assert_has(r.out, "\niommufd objects: iommufd0\n");
    assert_string_equal(r.err, "");
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* accel vSMMUs, a bound vSMMU (cold-plugged vfio-pci whose host is in sysfs), NUMA nodes, vfio occupants */
static void test_cli_topology_text_accel(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, ACCEL);
    cli_run(&c, &r, (const char *[]){"topology", NULL});
    assert_int_equal(r.status, 0);
    assert_has(r.out, "vSMMU smmuv3.1  identifier 0, accel on, bound to host SMMU " S1 "\n"
                      "`-- pxb-pcie pcie.1  bus_nr 252, NUMA node 0\n"
                      "    |-- rp1a  chassis 1 port 1  hotplug     hostdev0 (vfio-pci, host 0009:01:00.0, iommufd "
                      "iommufd0, cold-plugged)\n");
    assert_has(r.out, "vSMMU smmuv3.2  identifier 1, accel on, host SMMU unknown (a vfio-pci passed by fd sits "
                      "behind it)\n"
                      "`-- pxb-pcie pcie.2  bus_nr 248, NUMA node 1\n"
                      "    |-- rp2a  chassis 3 port 3  hotplug     anonymous device (vfio-pci, host passed by fd, "
                      "iommufd iommufd0)\n");
    assert_has(r.out, "Root ports behind no vSMMU: none\n");
    smmu_run_free(&r);
    cli_finish(&c, true);

    /* --json: bound_smmu filled from sysfs */
    cli_start(&c, ACCEL);
    cli_run(&c, &r, (const char *[]){"--json", "topology", NULL});
    json_t *o = run_json(&r, 0);
    json_t *v0 = json_array_get(json_object_get(o, "vsmmus"), 0);
    assert_string_equal(json_string_value(json_object_get(v0, "bound_smmu")), S1);
    assert_true(json_is_true(json_object_get(v0, "accel")));
    json_decref(o);
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* topology --xml on the recorded VM: every pxb (busNr, its slot on pcie.0), every root port with an id on its
 * bus (renumbered: the VM's ids are not libvirt's pci.N, and each rename is noted), one <iommu> per vSMMU in
 * identifier order; the anonymous port and the e1000e are left out with a note. Same facts as `topology`:
 * the replay must be played exactly (nothing else sent). */
static void test_cli_topology_xml(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"topology", "--xml", NULL});
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    assert_has(r.out, "pcie.1=pci.1 pcie.2=pci.2 rp1a=pci.3 rp1b=pci.4 rp2a=pci.5 rp2b=pci.6 rp0=pci.7");
    assert_has(r.out, "  <controller type='pci' index='1' model='pcie-expander-bus'>\n    <model name='pxb-pcie'/>\n"
                      "    <target busNr='252'/>\n"
                      "    <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>\n");
    assert_has(r.out, "  <controller type='pci' index='2' model='pcie-expander-bus'>\n    <model name='pxb-pcie'/>\n"
                      "    <target busNr='248'/>\n"
                      "    <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>\n");
    assert_has(r.out, "  <controller type='pci' index='4' model='pcie-root-port'>\n    <model name='pcie-root-port'/>\n"
                      "    <target chassis='2' port='0x2'/>\n"
                      "    <address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>\n");
    assert_has(r.out, "  <controller type='pci' index='7' model='pcie-root-port'>\n    <model name='pcie-root-port'/>\n"
                      "    <target chassis='8' port='0x8'/>\n"
                      "    <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>\n");
    assert_has(r.out, "  <iommu model='smmuv3'>\n    <driver pciBus='1'/>\n  </iommu>\n"
                      "  <iommu model='smmuv3'>\n    <driver pciBus='2'/>\n  </iommu>\n</devices>\n");
    assert_has(r.out, "<!-- vSMMU smmuv3.2 is iommu1 to libvirt -->");
    assert_has(r.out, "<!-- root port rp2b holds e1000e coldnic: not a hostdev, not described here -->");
    assert_has(r.out, "an anonymous root port (/machine/peripheral-anon/device[0]) is left out");
    assert_null(strstr(r.out, "index='8'"));
    assert_null(strstr(r.out, "<hostdev"));
    assert_null(strstr(r.out, "\n<qemu:override>\n"));
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* Accel vSMMUs with a NUMA node and a cold-plugged vfio-pci: accel='on', <node>, and the hostdev on its root
 * port with <driver iommufd='yes'/> and a ua- alias; the fd-passed one (no host in QOM) is left out, said so.
 * --json carries the same text as "xml" next to the topology members. */
static void test_cli_topology_xml_accel(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, ACCEL);
    cli_run(&c, &r, (const char *[]){"topology", "--xml", NULL});
    assert_int_equal(r.status, 0);
    assert_has(r.out, "    <target busNr='252'>\n      <node>0</node>\n    </target>\n");
    assert_has(r.out, "    <target busNr='248'>\n      <node>1</node>\n    </target>\n");
    assert_has(r.out, "<!-- pxb-pcie pcie.1 with vSMMU smmuv3.1, bound to host SMMU " S1 " -->");
    assert_has(r.out, "    <driver pciBus='1' accel='on'/>\n");
    assert_has(r.out, "    <driver pciBus='2' accel='on'/>\n");
    assert_has(r.out, "  <hostdev mode='subsystem' type='pci' managed='no'>\n"
                      "    <driver iommufd='yes'/>\n"
                      "    <source>\n"
                      "      <address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/>\n"
                      "    </source>\n"
                      "    <alias name='ua-hostdev0'/>\n"
                      "    <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>\n"
                      "  </hostdev>\n");
    assert_has(r.out, "vfio-pci /machine/peripheral-anon/device[0] is left out: passed by fd, and neither QEMU nor the journal knows");
    assert_int_equal(smmu_test_count(r.out, "<hostdev "), 1);
    smmu_run_free(&r);
    cli_finish(&c, true);

    cli_start(&c, ACCEL);
    cli_run(&c, &r, (const char *[]){"--json", "topology", "--xml", NULL});
    json_t *o = run_json(&r, 0);
    assert_non_null(json_object_get(o, "vsmmus"));
    assert_has(json_string_value(json_object_get(o, "xml")), "<alias name='ua-hostdev0'/>");
    json_decref(o);
    smmu_run_free(&r);
    cli_finish(&c, true);

    /* --xml is topology's alone */
    cli_start(&c, ACCEL);
    cli_run(&c, &r, (const char *[]){"plan", "--xml", "0009:01:00.1", NULL});
    assert_int_equal(r.status, 2);
    assert_has(r.err, "option --xml is only valid with: topology");
    smmu_run_free(&r);
    cli_finish(&c, false);
}

static const char *A64_PLAN =
    "{'ok':true,'command':'plan','iommufd':'iommufd0','creates_iommufd':false,"
    " 'placements':["
    "  {'bdf':'0009:01:00.0','host_smmu':'" S1 "','numa_node':0,'vsmmu':'smmuv3.1','pxb':'pcie.1','bus_nr':252,"
    "   'accel':false,'port':'rp1a','device_id':'hostdev-0009-01-00.0',"
    "   'reason':'unbound vSMMU smmuv3.1 (lowest identifier 0), now bound to " S1 "','mismatch':false,'fits':true},"
    "  {'bdf':'000a:01:00.0','host_smmu':'" S2 "','numa_node':1,'vsmmu':'smmuv3.2','pxb':'pcie.2','bus_nr':248,"
    "   'accel':false,'port':'rp2a','device_id':'hostdev-000a-01-00.0',"
    "   'reason':'unbound vSMMU smmuv3.2 (lowest identifier 1), now bound to " S2 "','mismatch':false,'fits':true},"
    "  {'bdf':'0009:01:00.1','host_smmu':'" S1 "','numa_node':0,'vsmmu':'smmuv3.1','pxb':'pcie.1','bus_nr':252,"
    "   'accel':false,'port':'rp1b','device_id':'hostdev-0009-01-00.1',"
    "   'reason':'vSMMU smmuv3.1 already bound to " S1 " by 0009:01:00.0 in this request','mismatch':false,'fits':true}],"
    " 'new_bindings':[{'vsmmu':'smmuv3.1','host_smmu':'" S1 "'},{'vsmmu':'smmuv3.2','host_smmu':'" S2 "'}],"
    " 'steps':["
    "  {'execute':'device_add','arguments':{'driver':'vfio-pci','host':'0009:01:00.0','iommufd':'iommufd0','bus':'rp1a',"
    "   'addr':'0x0','id':'hostdev-0009-01-00.0'},'fds':[]},"
    "  {'execute':'device_add','arguments':{'driver':'vfio-pci','host':'000a:01:00.0','iommufd':'iommufd0','bus':'rp2a',"
    "   'addr':'0x0','id':'hostdev-000a-01-00.0'},'fds':[]},"
    "  {'execute':'device_add','arguments':{'driver':'vfio-pci','host':'0009:01:00.1','iommufd':'iommufd0','bus':'rp1b',"
    "   'addr':'0x0','id':'hostdev-0009-01-00.1'},'fds':[]}],"
    " 'warnings':[]}";

/* Devices on two host SMMUs go behind the two vSMMUs, each SMMU's devices sharing one. */
static void test_cli_plan_json(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"--json", "plan", "0009:01:00.0", "000a:01:00.0", "0009:01:00.1", NULL});
    json_t *o = run_json(&r, 0), *exp = smmu_test_json(A64_PLAN);
    smmu_test_assert_json_eq(exp, o);
    json_decref(o);
    json_decref(exp);
    smmu_run_free(&r);
    cli_finish(&c, true);
}

static void test_cli_plan_text(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"plan", "0009:01:00.0", "000a:01:00.0", NULL});
    assert_int_equal(r.status, 0);
    assert_has(r.out, "0009:01:00.0 -> root port rp1a as hostdev-0009-01-00.0\n"
                      "  host SMMU  " S1 " (NUMA node 0)\n"
                      "  vSMMU      smmuv3.1 (identifier 0, accel off) on pxb-pcie pcie.1 bus_nr 252\n"
                      "  reason     unbound vSMMU smmuv3.1 (lowest identifier 0), now bound to " S1 "\n");
    assert_has(r.out, "000a:01:00.0 -> root port rp2a as hostdev-000a-01-00.0\n"
                      "  host SMMU  " S2 " (NUMA node 1)\n"
                      "  vSMMU      smmuv3.2 (identifier 1, accel off) on pxb-pcie pcie.2 bus_nr 248\n");
    assert_has(r.out, "New bindings: smmuv3.1 -> " S1 ", smmuv3.2 -> " S2 "\n");
    assert_has(r.out, "QMP commands attach would send (in order; iommufd object iommufd0 reused):\n"
                      "  1. {\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                      "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"addr\":\"0x0\",\"id\":\"hostdev-0009-01-00.0\"}}\n"
                      "  2. {\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"000a:01:00.0\","
                      "\"iommufd\":\"iommufd0\",\"bus\":\"rp2a\",\"addr\":\"0x0\",\"id\":\"hostdev-000a-01-00.0\"}}\n");
    assert_null(strstr(r.out, "  3. "));
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* --fd-pass: getfd steps carry the cdev under --dev; --iommufd names a new object, created first. */
static void test_cli_plan_fd_pass(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    char devroot[700], want[800];
    (void)state;
    cli_start(&c, A64);
    snprintf(devroot, sizeof(devroot), "%s/dev", c.dir);
    cli_run(&c, &r, (const char *[]){"--dev", devroot, "--fd-pass", "--iommufd", "ifd1", "--id", "gpu0", "plan",
                                     "000a:01:00.0", NULL});
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof(want),
             "  1. {\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"ifd1-fd\"}}  + fd of %s/iommu (SCM_RIGHTS)\n"
             "  2. {\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"ifd1\",\"fd\":\"ifd1-fd\"}}\n"
             "  3. {\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"gpu0-cdev\"}}  + fd of %s/vfio/devices/vfio5 (SCM_RIGHTS)\n"
             "  4. {\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"fd\":\"gpu0-cdev\",\"iommufd\":\"ifd1\","
             "\"bus\":\"rp1a\",\"addr\":\"0x0\",\"id\":\"gpu0\"}}\n",
             devroot, devroot);
    assert_has(r.out, want);
    assert_has(r.out, "(in order; iommufd object ifd1 created)");
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* @FILE: libvirt <hostdev> XML gives the same plan as the addresses. */
static void test_cli_plan_xml(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    char xml[700], arg[710];
    (void)state;
    cli_start(&c, A64);
    snprintf(xml, sizeof(xml), "%s/hostdevs.xml", c.dir);
    FILE *f = fopen(xml, "w");
    assert_non_null(f);
    fputs("<devices>\n"
          "  <hostdev mode='subsystem' type='pci' managed='no'>\n"
          "    <driver iommufd='yes'/>\n"
          "    <source><address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/></source>\n"
          "  </hostdev>\n"
          "  <hostdev mode='subsystem' type='pci' managed='no'>\n"
          "    <source><address domain='0x000a' bus='0x01' slot='0x00' function='0x0'/></source>\n"
          "  </hostdev>\n"
          "</devices>\n", f);
    fclose(f);
    snprintf(arg, sizeof(arg), "@%s", xml);
    cli_run(&c, &r, (const char *[]){"--json", "plan", arg, "0009:01:00.1", NULL});
    json_t *o = run_json(&r, 0), *exp = smmu_test_json(A64_PLAN);
    smmu_test_assert_json_eq(exp, o);
    json_decref(o);
    json_decref(exp);
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* A q35 VM without vSMMU: the lowest free hotpluggable root ports with an id. */
static void test_cli_plan_q35(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, Q35);
    cli_run(&c, &r, (const char *[]){"--json", "plan", "000a:01:00.0", "0009:01:00.0", NULL});
    json_t *o = run_json(&r, 0);
    json_t *pl = json_object_get(o, "placements");
    assert_int_equal(json_array_size(pl), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(pl, 0), "port")), "rp2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(pl, 1), "port")), "rp3");
    assert_true(json_is_null(json_object_get(json_array_get(pl, 0), "vsmmu")));
    assert_true(json_is_null(json_object_get(json_array_get(pl, 0), "accel")));
    assert_true(json_is_true(json_object_get(o, "creates_iommufd")));
    assert_int_equal(json_array_size(json_object_get(o, "new_bindings")), 0);
    json_t *steps = json_object_get(o, "steps");
    assert_int_equal(json_array_size(steps), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 0), "execute")), "object-add");
    json_decref(o);
    smmu_run_free(&r);
    cli_finish(&c, true);

    /* text: says there is no vSMMU */
    cli_start(&c, Q35);
    cli_run(&c, &r, (const char *[]){"plan", "000a:01:00.0", NULL});
    assert_int_equal(r.status, 0);
    assert_has(r.out, "000a:01:00.0 -> root port rp2 as hostdev-000a-01-00.0\n");
    assert_has(r.out, "  vSMMU      none (the VM has no vSMMU)\n");
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* Refusals: exit 2, the planner's reason, nothing but discovery sent. */
static void test_cli_plan_refused(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    /* two devices of S2 but only one free port behind any vSMMU it could use */
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"--json", "plan", "0009:01:00.0", "0009:01:00.1", "000a:01:00.0", "000a:02:00.0",
                                     NULL});
    json_t *o = run_json(&r, 2);
    json_t *e = json_object_get(o, "error");
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_string_equal(json_string_value(json_object_get(o, "command")), "plan");
    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "ENOSPC");
    assert_has(json_string_value(json_object_get(e, "message")), "000a:02:00.0");
    json_decref(o);
    smmu_run_free(&r);
    cli_finish(&c, true);

    /* a device on another driver: text, reason on stderr */
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"plan", "000b:01:00.0", NULL});
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    assert_has(r.err, "smmuctl: plan: 000b:01:00.0");
    assert_has(r.err, "nvidia");
    smmu_run_free(&r);
    cli_finish(&c, true);

    /* no such device */
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"plan", "0a:01.0", NULL});
    assert_int_equal(r.status, 2);
    assert_has(r.err, "0000:0a:01.0");
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* --allow-mismatch reaches the planner: it relaxes the rule behind a non-accel vSMMU only. */
static void test_cli_plan_allow_mismatch(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    /* non-accel (recorded VM): the second B device goes behind A's vSMMU, flagged */
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"--allow-mismatch", "--json", "plan", "0009:01:00.0", "000a:01:00.0",
                                     "000a:02:00.0", NULL});
    json_t *o = run_json(&r, 0);
    json_t *p2 = json_array_get(json_object_get(o, "placements"), 2);
    assert_string_equal(json_string_value(json_object_get(p2, "vsmmu")), "smmuv3.1");
    assert_string_equal(json_string_value(json_object_get(p2, "port")), "rp1b");
    assert_true(json_is_true(json_object_get(p2, "mismatch")));
    json_decref(o);
    smmu_run_free(&r);
    cli_finish(&c, true);
    /* text marks it */
    cli_start(&c, A64);
    cli_run(&c, &r, (const char *[]){"--allow-mismatch", "plan", "0009:01:00.0", "000a:01:00.0", "000a:02:00.0", NULL});
    assert_int_equal(r.status, 0);
    assert_has(r.out, "000a:02:00.0 -> root port rp1b as hostdev-000a-02-00.0  [SMMU MISMATCH, --allow-mismatch]\n");
    smmu_run_free(&r);
    cli_finish(&c, true);

    /* accel vSMMUs: never, even with the flag. smmuv3.1 is bound to S1 by hostdev0; smmuv3.2 holds a vfio-pci
     * passed by fd whose host SMMU nobody knows (no journal), so it is not free either. */
    cli_start(&c, ACCEL);
    cli_run(&c, &r, (const char *[]){"--allow-mismatch", "--json", "plan", "000a:01:00.0", "000a:02:00.0", NULL});
    o = run_json(&r, 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")), "ENOSPC");
    assert_has(json_string_value(json_object_get(json_object_get(o, "error"), "message")), "000a:01:00.0");
    assert_has(json_string_value(json_object_get(json_object_get(o, "error"), "message")),
               "smmuv3.2 (accel) bound to unknown (fd-passed vfio-pci");
    json_decref(o);
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* Bindings from the journal (when it exists) steer placement and show in topology. */
static void test_cli_journal_bindings(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    char jpath[700];
    (void)state;
    cli_start(&c, A64);
    assert_int_equal(mkdir(c.state, 0700), 0);
    snprintf(jpath, sizeof(jpath), "%s/vm1.json", c.state);
    FILE *f = fopen(jpath, "w");
    assert_non_null(f);
    fputs("{\"version\":1,\"vm\":\"vm1\",\"qmp\":\"\",\"iommufd\":null,\"devices\":[{\"id\":\"gpu9\",\"bdf\":\"0009:07:00.0\","
          "\"host_smmu\":\"" S2 "\",\"vsmmu\":\"smmuv3.1\",\"port\":\"rp1a\",\"fd_pass\":true,\"state\":\"attached\"}],"
          "\"txn\":null}\n", f);
    fclose(f);
    cli_run(&c, &r, (const char *[]){"--vm", "vm1", "--json", "plan", "0009:01:00.0", NULL});
    json_t *o = run_json(&r, 0);
    json_t *p0 = json_array_get(json_object_get(o, "placements"), 0);
    /* smmuv3.1 is S2's per the journal, so S1's device goes behind smmuv3.2 */
    assert_string_equal(json_string_value(json_object_get(p0, "vsmmu")), "smmuv3.2");
    assert_string_equal(json_string_value(json_object_get(p0, "port")), "rp2a");
    json_decref(o);
    smmu_run_free(&r);
    /* the journal is read, not rewritten */
    char *after = smmu_test_read_file(jpath, NULL);
    assert_non_null(strstr(after, "\"gpu9\""));
    free(after);
    int st = replay_proc_wait(c.p, 10000);
    if (st != 0)
        fail_msg("qmp-replay: %s", replay_proc_report(c.p));
    replay_proc_free(c.p);

    struct smmu_error err = SMMU_ERROR_INIT;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", SMMU_FIXTURES_DIR, A64);
    assert_int_equal(replay_proc_start(&c.p, path, c.sock, NULL, &err), 0);
    cli_run(&c, &r, (const char *[]){"--vm", "vm1", "--json", "topology", NULL});
    o = run_json(&r, 0);
    json_t *v0 = json_array_get(json_object_get(o, "vsmmus"), 0);
    assert_string_equal(json_string_value(json_object_get(v0, "bound_smmu")), S2);
    json_decref(o);
    smmu_run_free(&r);
    assert_int_equal(replay_proc_wait(c.p, 10000), 0);
    replay_proc_free(c.p);
    fakesys_free(c.fs);
    smmu_test_rmtree(c.dir);
    free(c.dir);
}

/* A reply of the wrong shape is "protocol broken": exit 3, with --json an EPROTO error object. */
static void test_cli_malformed(void **state)
{
    struct cli_rig c;
    struct smmu_run r;
    (void)state;
    cli_start(&c, "discover-syn-bad-port-no-chassis.txt");
    cli_run(&c, &r, (const char *[]){"--json", "plan", "0009:01:00.0", NULL});
    json_t *o = run_json(&r, 3);
    json_t *e = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "EPROTO");
    assert_has(json_string_value(json_object_get(e, "message")), "/machine/peripheral/rp1a (pcie-root-port)");
    json_decref(o);
    smmu_run_free(&r);
    cli_finish(&c, true);

    cli_start(&c, "discover-syn-bad-list-not-array.txt");
    cli_run(&c, &r, (const char *[]){"topology", NULL});
    assert_int_equal(r.status, 3);
    assert_string_equal(r.out, "");
    assert_has(r.err, "smmuctl: topology: discovering the topology: qom-list /machine/peripheral: the reply is not "
                      "an array");
    smmu_run_free(&r);
    cli_finish(&c, true);
}

/* Usage errors are found before QEMU is contacted (the socket does not even exist); QEMU gone → 3. */
static void test_cli_usage_and_unreachable(void **state)
{
    struct smmu_run r;
    char *dir = smmu_test_mkdtemp("discover-cli-usage");
    char sock[600];
    (void)state;
    snprintf(sock, sizeof(sock), "%s/none.sock", dir);
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--state-dir", dir, "plan", NULL}, RUN_MS);
    assert_int_equal(r.status, 2);
    smmu_run_free(&r);
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--state-dir", dir, "--json", "plan", "zz:1", NULL}, RUN_MS);
    json_t *o = run_json(&r, 2);
    assert_has(json_string_value(json_object_get(json_object_get(o, "error"), "message")), "zz:1");
    json_decref(o);
    smmu_run_free(&r);
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--state-dir", dir, "topology", "extra", NULL}, RUN_MS);
    assert_int_equal(r.status, 2);
    smmu_run_free(&r);
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--state-dir", dir, "--json", "plan", "0009:01:00.0", NULL}, RUN_MS);
    o = run_json(&r, 3);
    assert_int_equal(json_integer_value(json_object_get(o, "exit_code")), 3);
    json_decref(o);
    smmu_run_free(&r);
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--state-dir", dir, "topology", NULL}, RUN_MS);
    assert_int_equal(r.status, 3);
    assert_has(r.err, "smmuctl: topology: ");
    smmu_run_free(&r);
    /* option scope: --fd-pass is a plan/attach option */
    smmu_run_cli(&r, (const char *[]){"--qmp", sock, "topology", "--fd-pass", NULL}, RUN_MS);
    assert_int_equal(r.status, 2);
    smmu_run_free(&r);
    smmu_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recorded_a64),
        cmocka_unit_test(test_recorded_q35),
        cmocka_unit_test(test_recorded_a64_reserves),
        cmocka_unit_test(test_cli_topology_json),
        cmocka_unit_test(test_cli_topology_text),
        cmocka_unit_test(test_cli_topology_text_accel),
        cmocka_unit_test(test_cli_topology_xml),
        cmocka_unit_test(test_cli_topology_xml_accel),
        cmocka_unit_test(test_cli_plan_json),
        cmocka_unit_test(test_cli_plan_text),
        cmocka_unit_test(test_cli_plan_fd_pass),
        cmocka_unit_test(test_cli_plan_xml),
        cmocka_unit_test(test_cli_plan_q35),
        cmocka_unit_test(test_cli_plan_refused),
        cmocka_unit_test(test_cli_plan_allow_mismatch),
        cmocka_unit_test(test_cli_journal_bindings),
        cmocka_unit_test(test_cli_malformed),
        cmocka_unit_test(test_cli_usage_and_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
