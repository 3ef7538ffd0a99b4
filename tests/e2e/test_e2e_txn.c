/* test_e2e_txn.c — transactions against real QEMU 11 (aarch64 virt, two vSMMUs under TCG).
 *
 * What QEMU cannot do here (no /dev/iommu on a TCG host without CONFIG_IOMMUFD, no real VFIO device) makes
 * the CLI attach fail at a real QEMU error; the tests assert QEMU's own message, exit 1 and that the
 * rollback left QEMU exactly as it was. The library's engine is driven directly with emulated e1000e NICs
 * to exercise the full success path, real DEVICE_DELETED events and undo on a real peer.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"
#include "smmuctl/txn.h"
#include "smmuctl/vm.h"
#include "support/e2e_env.h"
#include "support/fakesys.h"
#include "support/qemu.h"
#include "support/runcli.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"
#define SMMU_B "smmu3.0x0000000017000000"

struct env {
    struct smmu_e2e_env b;
    char dev[4096], rec[4096];
};

static int env_setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    if (smmu_e2e_env_start(&e->b, "e2e-txn",
                           (const char *[]){"-netdev", "user,id=n0", "-netdev", "user,id=n1", "-netdev",
                                            "user,id=cold0", "-device", "e1000e,netdev=cold0,bus=rp2b,id=coldnic",
                                            NULL}) < 0) {
        free(e);
        return -1;
    }
    fakesys_add_dev(e->b.fs, &(struct fakesys_dev){.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci",
                                                   .group = "5", .cdev = "vfio0", .numa_node = "0"});
    fakesys_add_dev(e->b.fs, &(struct fakesys_dev){.bdf = "000a:01:00.0", .smmu = SMMU_B, .driver = "vfio-pci",
                                                   .group = "6", .cdev = "vfio1", .numa_node = "0"});
    snprintf(e->dev, sizeof(e->dev), "%s/dev", e->b.tmp);
    snprintf(e->rec, sizeof(e->rec), "%s/record.txt", e->b.tmp);
    fakesys_write_dev_tree(e->b.fs, e->dev);
    *state = e;
    return 0;
}

static int env_teardown(void **state)
{
    struct env *e = *state;
    if (!e)
        return 0;
    smmu_e2e_env_stop(&e->b);
    free(e);
    return 0;
}

/* smmuctl with the common options; returns its exit status, output in *r. */
static int smmuctl(struct env *e, struct smmu_run *r, const char *const *extra)
{
    const char *const common[] = {"--qmp", smmu_qemu_socket_path(e->b.q), "--state-dir", e->b.state,
                                  "--sysfs", fakesys_root(e->b.fs), "--dev", e->dev, "--timeout", "5", NULL};
    return smmu_run_cli_with(r, common, extra, 60000);
}

/* QEMU's /objects listing as compact JSON (names and types), via the CLI passthrough. */
static char *objects(struct env *e)
{
    struct smmu_run r;
    const char *argv[] = {"--json", "qmp", "qom-list", "{\"path\":\"/objects\"}", NULL};
    assert_int_equal(smmuctl(e, &r, argv), 0);
    json_t *o = json_loads(r.out, 0, NULL);
    assert_non_null(o);
    char *s = json_dumps(json_object_get(o, "return"), JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    smmu_run_free(&r);
    return s;
}

static json_t *parse_out(const struct smmu_run *r)
{
    json_error_t je;
    json_t *o = json_loads(r->out, 0, &je);
    if (!o)
        fail_msg("stdout is not one JSON object (%s): %s\nstderr: %s", je.text, r->out, r->err);
    return o;
}

static void assert_journal_closed(struct env *e)
{
    char path[8192];
    char *vm = NULL;
    /* one journal in the state dir: whatever its name, no open transaction */
    FILE *p;
    snprintf(path, sizeof(path), "ls %s/*.json", e->b.state);
    p = popen(path, "r");
    assert_non_null(p);
    char line[4096];
    assert_non_null(fgets(line, sizeof(line), p));
    pclose(p);
    line[strcspn(line, "\n")] = 0;
    json_t *j = json_load_file(line, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "txn")));
    json_decref(j);
    free(vm);
}

/* `attach` with `host`: QEMU opens the device itself. Here it fails for real — at object-add when this kernel
 * has no /dev/iommu, else at device_add ("no such host device") — and nothing is left behind. */
static void test_attach_host_rolls_back(void **state)
{
    struct env *e = *state;
    char *before = objects(e);
    struct smmu_run r;
    const char *argv[] = {"--json", "attach", "0009:01:00.0", NULL};
    assert_int_equal(smmuctl(e, &r, argv), 1);
    json_t *o = parse_out(&r);
    json_t *err = json_object_get(o, "error");
    const char *desc = json_string_value(json_object_get(err, "desc"));
    assert_non_null(desc);
    if (access("/dev/iommu", F_OK) == 0) {
        assert_non_null(strstr(desc, "no such host device"));
        assert_string_equal(json_string_value(json_object_get(err, "step")), "device_add hostdev-0009-01-00.0");
    } else {
        assert_string_equal(desc, "/dev/iommu does not exist (is your kernel config missing CONFIG_IOMMUFD?)");
        assert_string_equal(json_string_value(json_object_get(err, "step")), "object-add iommufd0");
    }
    assert_string_equal(json_string_value(json_object_get(err, "class")), "GenericError");
    assert_string_equal(json_string_value(json_object_get(o, "outcome")), "rolled-back");
    char *after = objects(e);
    assert_string_equal(before, after);
    assert_journal_closed(e);
    json_decref(o);
    smmu_run_free(&r);
    free(before);
    free(after);
}

/* With an iommufd object already in the VM, `attach` reuses it and device_add fails with QEMU's real
 * "no such host device"; the rollback must NOT delete the object it did not create. */
static void test_attach_host_reuses_iommufd(void **state)
{
    struct env *e = *state;
    struct event_base *base = event_base_new();
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    char file[8192];
    snprintf(file, sizeof(file), "%s/fake-iommu", e->b.tmp);
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(qmp_client_new(&c, base, NULL), 0);
    assert_int_equal(qmp_client_connect_sync(c, smmu_qemu_socket_path(e->b.q), &err), 0);
    assert_int_equal(qmp_call_sync(c, "getfd", json_pack("{s:s}", "fdname", "pre"), &fd, 1, NULL, &err), 0);
    assert_int_equal(qmp_call_sync(c, "object-add", json_pack("{s:s,s:s,s:s}", "qom-type", "iommufd", "id",
                                                              "iommufd0", "fd", "pre"), NULL, 0, NULL, &err), 0);
    qmp_client_free(c);
    close(fd);

    char *before = objects(e);
    assert_non_null(strstr(before, "iommufd0"));
    struct smmu_run r;
    const char *argv[] = {"--json", "--record", e->rec, "attach", "0009:01:00.0", NULL};
    assert_int_equal(smmuctl(e, &r, argv), 1);
    json_t *o = parse_out(&r);
    json_t *je = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(je, "desc")),
                        "vfio /sys/bus/pci/devices/0009:01:00.0: no such host device: No such file or directory");
    assert_string_equal(json_string_value(json_object_get(je, "step")), "device_add hostdev-0009-01-00.0");
    assert_false(json_is_true(json_object_get(json_object_get(o, "iommufd"), "created")));
    char *after = objects(e);
    assert_string_equal(before, after);
    /* exactly the steps of DESIGN §5: no object-add (reused), one device_add, no object-del */
    char *rec = smmu_test_read_file(e->rec, NULL);
    assert_non_null(rec);
    assert_null(strstr(rec, "\"object-add\""));
    assert_null(strstr(rec, "\"object-del\""));
    assert_non_null(strstr(rec, "\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\","
                                "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"addr\":\"0x0\",\"id\":\"hostdev-0009-01-00.0\"}"));
    assert_journal_closed(e);
    /* clean up for the next test */
    assert_int_equal(qmp_client_new(&c, base, NULL), 0);
    assert_int_equal(qmp_client_connect_sync(c, smmu_qemu_socket_path(e->b.q), &err), 0);
    assert_int_equal(qmp_call_sync(c, "object-del", json_pack("{s:s}", "id", "iommufd0"), NULL, 0, NULL, &err), 0);
    qmp_client_free(c);
    event_base_free(base);
    unlink(e->rec);
    free(rec);
    json_decref(o);
    smmu_run_free(&r);
    free(before);
    free(after);
}

/* `attach --fd-pass`: getfd + object-add succeed for real (QEMU does not check the fd), device_add with `fd`
 * fails with QEMU's real bind error; the rollback deletes the iommufd0 it created and sends no pointless
 * closefd for names QEMU consumed. */
static void test_attach_fd_pass_rolls_back(void **state)
{
    struct env *e = *state;
    char *before = objects(e);
    struct smmu_run r;
    const char *argv[] = {"--json", "--record", e->rec, "attach", "--fd-pass", "0009:01:00.0", NULL};
    assert_int_equal(smmuctl(e, &r, argv), 1);
    json_t *o = parse_out(&r);
    json_t *je = json_object_get(o, "error");
    const char *desc = json_string_value(json_object_get(je, "desc"));
    assert_non_null(desc);
    assert_non_null(strstr(desc, "vfio hostdev-0009-01-00.0: error bind device fd="));
    assert_non_null(strstr(desc, "to iommufd="));
    assert_string_equal(json_string_value(json_object_get(je, "step")), "device_add hostdev-0009-01-00.0");
    /* every step's final state */
    const char *want[][2] = {{"getfd", "undone"}, {"object-add", "undone"}, {"getfd", "undone"}, {"device_add", "failed"}};
    json_t *steps = json_object_get(o, "steps");
    assert_int_equal(json_array_size(steps), 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(json_string_value(json_object_get(json_array_get(steps, i), "execute")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(json_array_get(steps, i), "state")), want[i][1]);
    }
    char *after = objects(e);
    assert_string_equal(before, after);
    char *rec = smmu_test_read_file(e->rec, NULL);
    assert_non_null(rec);
    assert_null(strstr(rec, "closefd"));
    assert_non_null(strstr(rec, "\"execute\":\"object-del\",\"arguments\":{\"id\":\"iommufd0\"}"));
    assert_non_null(strstr(rec, "!fds 1\nC: {\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"iommufd0-fd\"}"));
    assert_journal_closed(e);
    unlink(e->rec);
    free(rec);
    json_decref(o);
    smmu_run_free(&r);
    free(before);
    free(after);
}

/* How many of QEMU's open fds (/proc/PID/fd) point at `target` (a path; NULL: all but sockets). */
static int qemu_fds(struct env *e, const char *target)
{
    char dir[64], link[4200], path[4400];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)smmu_qemu_pid(e->b.q));
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        ssize_t l = readlink(path, link, sizeof(link) - 1);
        if (l < 0)
            continue; /* closed meanwhile (QEMU's own threads open and close fds): not one of ours */
        link[l] = 0;
        /* all: every fd but sockets — QEMU closes a monitor client's socket some time after the client left */
        n += target ? !strcmp(link, target) : strncmp(link, "socket:", 7) != 0;
    }
    closedir(d);
    return n;
}

/* Issue 15.9: a rolled-back `attach --fd-pass` leaves exactly one fd inside QEMU — the /dev/iommu it was
 * passed, which QEMU's iommufd backend never closes (not even on object-del; README) — and nothing else:
 * the vfio cdev fd is not left open and every getfd name QEMU did not consume was closed. Counted in
 * /proc/QEMU/fd around the attach. */
static void test_fd_pass_rollback_leaves_only_the_iommu_fd(void **state)
{
    struct env *e = *state;
    char iommu[4200], cdev[4200], *ri, *rc;
    snprintf(iommu, sizeof(iommu), "%s/iommu", e->dev);
    snprintf(cdev, sizeof(cdev), "%s/vfio/devices/vfio0", e->dev);
    ri = realpath(iommu, NULL);
    rc = realpath(cdev, NULL);
    assert_non_null(ri);
    assert_non_null(rc);
    int all = qemu_fds(e, NULL), iommu_fds = qemu_fds(e, ri), cdev_fds = qemu_fds(e, rc);
    struct smmu_run r;
    assert_int_equal(smmuctl(e, &r, (const char *[]){"--json", "attach", "--fd-pass", "0009:01:00.0", NULL}), 1);
    json_t *o = parse_out(&r);
    assert_string_equal(json_string_value(json_object_get(o, "outcome")), "rolled-back");
    assert_true(json_is_true(json_object_get(json_object_get(o, "iommufd"), "created")));
    json_decref(o);
    smmu_run_free(&r);
    assert_int_equal(qemu_fds(e, ri), iommu_fds + 1); /* QEMU's: it never closes a passed /dev/iommu */
    assert_int_equal(qemu_fds(e, rc), cdev_fds);      /* the cdev: closed by QEMU when the realize failed */
    assert_int_equal(qemu_fds(e, NULL), all + 1);     /* no other file: no getfd name left behind */
    free(ri);
    free(rc);
}

/* Issue 15.3 on real QEMU 11 (it serves one client and listens with a backlog of 1): four smmuctl attach at
 * once take turns on the VM's lock before connecting. Each reaches QEMU and ends at QEMU's own refusal (exit
 * 1, rolled back: no vfio device here) — none fails with exit 3 (EAGAIN, "no QMP greeting") — and QEMU is
 * as before. */
static void test_four_concurrent_attaches_take_turns(void **state)
{
    struct env *e = *state;
    char *before = objects(e);
    enum { N = 4 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            struct smmu_run r;
            char path[4200];
            int st = smmuctl(e, &r, (const char *[]){"--json", "attach", "0009:01:00.0", NULL});
            snprintf(path, sizeof(path), "%s/attach%d.out", e->b.tmp, i);
            FILE *fp = fopen(path, "w");
            if (fp) {
                fprintf(fp, "%s\n--- stderr\n%s", r.out ? r.out : "", r.err ? r.err : "");
                fclose(fp);
            }
            _exit(st < 0 ? 126 : st);
        }
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        int st = 0;
        char path[4200];
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        snprintf(path, sizeof(path), "%s/attach%d.out", e->b.tmp, i);
        char *out = smmu_test_read_file(path, NULL);
        assert_non_null(out);
        /* QEMU's refusal, as a lone run gets it: exit 1 with QEMU's error class */
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 1 || !strstr(out, "\"class\":\"GenericError\"") ||
            !strstr(out, "\"outcome\":\"rolled-back\"")) {
            fprintf(stderr, "attach %d: status %d\n%s\n", i, st, out);
            bad++;
        }
        free(out);
    }
    assert_int_equal(bad, 0);
    char *after = objects(e);
    assert_string_equal(before, after);
    assert_journal_closed(e);
    free(before);
    free(after);
}

/* ---- the library engine with emulated NICs ---- */

static void plan_add_nic(struct smmu_plan *p, const char *id, const char *netdev, const char *port)
{
    p->steps = realloc(p->steps, (p->n_steps + 1) * sizeof(*p->steps));
    struct smmu_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof(*s));
    s->kind = SMMU_STEP_DEVICE_ADD;
    s->command = "device_add";
    snprintf(s->name, sizeof(s->name), "%s", id);
    snprintf(s->port, sizeof(s->port), "%s", port);
    s->args = json_pack("{s:s,s:s,s:s,s:s,s:s}", "driver", "e1000e", "netdev", netdev, "bus", port, "addr", "0x0",
                        "id", id);
}

struct engine {
    struct event_base *base;
    qmp_client *c;
    smmu_journal *j;
    struct smmu_facts f;
};

static void engine_open(struct env *e, struct engine *g)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    g->base = event_base_new();
    assert_int_equal(qmp_client_new(&g->c, g->base, NULL), 0);
    assert_int_equal(qmp_client_connect_sync(g->c, smmu_qemu_socket_path(e->b.q), &err), 0);
    assert_int_equal(smmu_journal_open(e->b.state, "engine", "", 1000, &g->j, &err), 0);
    assert_int_equal(smmu_facts_gather(g->c, fakesys_root(e->b.fs), g->j, &g->f, &err), 0);
}

static void engine_refresh(struct engine *g, struct env *e)
{
    struct smmu_error err = SMMU_ERROR_INIT;
    smmu_facts_free(&g->f);
    assert_int_equal(smmu_facts_gather(g->c, fakesys_root(e->b.fs), g->j, &g->f, &err), 0);
}

static void engine_close(struct engine *g)
{
    smmu_facts_free(&g->f);
    smmu_journal_close(g->j);
    qmp_client_free(g->c);
    event_base_free(g->base);
}

static char *topology_text(const struct smmu_facts *f)
{
    json_t *t = smmu_topology_to_json(&f->topo);
    char *s = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(t);
    return s;
}

static void test_engine_attach_detach_nic(void **state)
{
    struct env *e = *state;
    struct engine g;
    struct smmu_plan p = {0};
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    engine_open(e, &g);
    char *start = topology_text(&g.f);
    snprintf(p.iommufd_id, sizeof(p.iommufd_id), "iommufd0");
    plan_add_nic(&p, "nic0", "n0", "rp1a");

    assert_int_equal(smmu_txn_attach(&g.c, g.j, &g.f, &p, &o, &res), 0);
    assert_int_equal(res.outcome, SMMU_OUTCOME_DONE);
    assert_string_equal(json_string_value(json_object_get(res.report, "outcome")), "done");
    json_t *rd = json_array_get(json_object_get(res.report, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(rd, "id")), "nic0");
    assert_string_equal(json_string_value(json_object_get(rd, "state")), "attached");
    assert_string_equal(json_string_value(json_object_get(rd, "port")), "rp1a");
    smmu_result_fini(&res);
    engine_refresh(&g, e);
    int rp = smmu_topology_find_port(&g.f.topo, "rp1a");
    assert_true(rp >= 0);
    assert_string_equal(g.f.topo.ports[rp].occupant_id, "nic0");
    assert_string_equal(g.f.topo.ports[rp].occupant_driver, "e1000e");
    assert_true(g.f.topo.ports[rp].vsmmu >= 0);
    assert_string_equal(g.f.topo.vsmmus[g.f.topo.ports[rp].vsmmu].id, "smmuv3.1");
    assert_non_null(smmu_journal_find_device(g.j, "nic0"));
    assert_null(smmu_journal_txn(g.j));

    /* detach: real device_del, real DEVICE_DELETED (a hot-plugged device in an empty port goes at once) */
    const char *ids[] = {"nic0"};
    o.unplug_timeout_ms = 5000;
    assert_int_equal(smmu_txn_detach(&g.c, g.j, &g.f, ids, 1, &o, &res), 0);
    assert_int_equal(res.outcome, SMMU_OUTCOME_DONE);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(res.report, "devices"), 0),
                                                          "outcome")), "done");
    smmu_result_fini(&res);
    assert_null(smmu_journal_find_device(g.j, "nic0"));
    engine_refresh(&g, e);
    char *end = topology_text(&g.f);
    assert_string_equal(start, end);
    free(start);
    free(end);
    json_decref(p.steps[0].args);
    free(p.steps);
    engine_close(&g);
}

/* The second device_add fails (occupied port): the first device is unplugged again for real. */
static void test_engine_undo_on_real_error(void **state)
{
    struct env *e = *state;
    struct engine g;
    struct smmu_plan p = {0};
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    engine_open(e, &g);
    char *start = topology_text(&g.f);
    snprintf(p.iommufd_id, sizeof(p.iommufd_id), "iommufd0");
    plan_add_nic(&p, "nic1", "n1", "rp1b");
    plan_add_nic(&p, "nic2", "n0", "rp2b"); /* coldnic is there */
    o.unplug_timeout_ms = 5000;

    assert_int_equal(smmu_txn_attach(&g.c, g.j, &g.f, &p, &o, &res), -EIO);
    assert_int_equal(res.outcome, SMMU_OUTCOME_ROLLED_BACK);
    assert_string_equal(res.error.qmp_class, "GenericError");
    assert_string_equal(res.error.qmp_desc, "PCI: slot 0 function 0 not available for e1000e, in use by e1000e,id=coldnic");
    assert_string_equal(res.error.step, "device_add nic2");
    json_t *steps = json_object_get(res.report, "steps");
    assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 0), "state")), "undone");
    assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 1), "state")), "failed");
    smmu_result_fini(&res);
    assert_null(smmu_journal_txn(g.j));
    assert_null(smmu_journal_find_device(g.j, "nic1"));
    engine_refresh(&g, e);
    char *end = topology_text(&g.f);
    assert_string_equal(start, end);
    free(start);
    free(end);
    for (size_t i = 0; i < p.n_steps; i++)
        json_decref(p.steps[i].args);
    free(p.steps);
    engine_close(&g);
}

/* device_add refused before QEMU set its properties ("Bus 'nope' not found") leaves the getfd name in QEMU: the
 * rollback must closefd it (a realize error, by contrast, consumes it: test_attach_fd_pass_rolls_back). */
static void test_engine_closes_unconsumed_fd_name(void **state)
{
    struct env *e = *state;
    struct engine g;
    struct smmu_plan p = {0};
    struct smmu_txn_opts o = SMMU_TXN_OPTS_INIT;
    struct smmu_result res;
    char file[8192];
    snprintf(file, sizeof(file), "%s/fake-cdev", e->b.tmp);
    close(open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    engine_open(e, &g);
    snprintf(p.iommufd_id, sizeof(p.iommufd_id), "iommufd0");
    p.steps = calloc(2, sizeof(*p.steps));
    p.n_steps = 2;
    p.steps[0].kind = SMMU_STEP_GETFD;
    p.steps[0].command = "getfd";
    snprintf(p.steps[0].name, sizeof(p.steps[0].name), "nic9-cdev");
    snprintf(p.steps[0].fd_path, sizeof(p.steps[0].fd_path), "%s", file);
    p.steps[0].args = json_pack("{s:s}", "fdname", "nic9-cdev");
    p.steps[1].kind = SMMU_STEP_DEVICE_ADD;
    p.steps[1].command = "device_add";
    snprintf(p.steps[1].name, sizeof(p.steps[1].name), "nic9");
    p.steps[1].args = json_pack("{s:s,s:s,s:s,s:s,s:s}", "driver", "vfio-pci", "fd", "nic9-cdev", "bus", "nope", "addr",
                                "0x0", "id", "nic9");
    assert_int_equal(smmu_txn_attach(&g.c, g.j, &g.f, &p, &o, &res), -EIO);
    assert_int_equal(res.outcome, SMMU_OUTCOME_ROLLED_BACK);
    assert_string_equal(res.error.qmp_desc, "Bus 'nope' not found");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(res.report, "steps"), 0),
                                                          "state")), "undone");
    smmu_result_fini(&res);
    /* the name is gone from QEMU: the rollback closed it */
    struct smmu_error err = SMMU_ERROR_INIT;
    assert_int_equal(qmp_call_sync(g.c, "closefd", json_pack("{s:s}", "fdname", "nic9-cdev"), NULL, 0, NULL, &err),
                     -EIO);
    assert_string_equal(err.qmp_desc, "File descriptor named 'nic9-cdev' not found");
    for (size_t i = 0; i < p.n_steps; i++)
        json_decref(p.steps[i].args);
    free(p.steps);
    engine_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attach_host_rolls_back),
        cmocka_unit_test(test_attach_host_reuses_iommufd),
        cmocka_unit_test(test_attach_fd_pass_rolls_back),
        cmocka_unit_test(test_fd_pass_rollback_leaves_only_the_iommu_fd),
        cmocka_unit_test(test_four_concurrent_attaches_take_turns),
        cmocka_unit_test(test_engine_attach_detach_nic),
        cmocka_unit_test(test_engine_undo_on_real_error),
        cmocka_unit_test(test_engine_closes_unconsumed_fd_name),
    };
    return cmocka_run_group_tests(tests, env_setup, env_teardown);
}
