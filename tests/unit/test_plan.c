/* test_plan.c — the pure placement planner (DESIGN §4, §5), table-driven.
 *
 * Each case is data: a topology (built from a compact description), the requested devices' host facts as
 * plain structs, the known bindings / attached / booked lists, the options, and either the expected
 * placements (vSMMU, port, id, mismatch, a reason substring), steps and new bindings, or the expected error
 * code and message substrings. Every case runs as its own cmocka test, named after the case. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smmuctl/plan.h"

/* ---- topology descriptions ------------------------------------------------------------------------- */

struct tb_vsmmu {
    const char *id;
    int identifier;
    bool accel;
    int numa;          /* pxb numa_node, -1 unset */
    const char *bound; /* topology bound_smmu, NULL none */
};
struct tb_port {
    const char *id;       /* "" anonymous; NULL ends the list */
    const char *on;       /* vSMMU id, NULL = behind no vSMMU */
    int chassis, port;
    bool nohotplug;
    const char *occupant; /* occupant id, NULL free */
    const char *driver;
};
struct tb_vfio {
    const char *id;   /* NULL ends the list */
    const char *host; /* "" fd-passed */
    const char *port; /* root port id */
};
struct tb_topo {
    struct tb_vsmmu vs[5];
    struct tb_port ports[10];
    struct tb_vfio vfio[4];
    const char *iommufds[3];
};

#define S1 "smmu3.0x0000000016000000"
#define S2 "smmu3.0x0000000017000000"
#define S3 "smmu3.0x0000000018000000"
#define VS(id, ident, accel, numa, bound) {id, ident, accel, numa, bound}

/* Two non-accel vSMMUs, QEMU's FACTS topology: smmuv3.1 (rp1a, rp1b), smmuv3.2 (rp2a). The ports are
 * listed out of (chassis, port) order on purpose, so "first in the array" is never "lowest". */
static const struct tb_topo T_TWO = {
    .vs = {VS("smmuv3.1", 0, false, -1, NULL), VS("smmuv3.2", 1, false, -1, NULL)},
    .ports = {{"rp1b", "smmuv3.1", 2, 2}, {"rp2a", "smmuv3.2", 3, 3}, {"rp1a", "smmuv3.1", 1, 1}},
};
/* Identifier order differs from array order: smmuv3.b (identifier 1) comes first in the array. */
static const struct tb_topo T_REV = {
    .vs = {VS("smmuv3.b", 1, false, -1, NULL), VS("smmuv3.a", 0, false, -1, NULL)},
    .ports = {{"rpb", "smmuv3.b", 1, 1}, {"rpa", "smmuv3.a", 2, 1}},
};
/* smmuv3.1 is bound to S1 by a cold-plugged vfio-pci device (host 0009:00:00.0) on rp1a. */
static const struct tb_topo T_COLD = {
    .vs = {VS("smmuv3.1", 0, false, -1, NULL), VS("smmuv3.2", 1, false, -1, NULL)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}, {"rp1b", "smmuv3.1", 2, 2}, {"rp2a", "smmuv3.2", 3, 3}},
    .vfio = {{"cold0", "0009:00:00.0", "rp1a"}},
};
/* Both vSMMUs bound (by the discovered topology), each with free ports. */
static const struct tb_topo T_BOUND = {
    .vs = {VS("smmuv3.1", 0, false, -1, S1), VS("smmuv3.2", 1, false, -1, S2)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}, {"rp2a", "smmuv3.2", 3, 3}},
};
/* smmuv3.1 bound to S1 and full (an e1000e and a non-hotpluggable port); smmuv3.2 bound to S2 and full. */
static const struct tb_topo T_FULL = {
    .vs = {VS("smmuv3.1", 0, false, -1, S1), VS("smmuv3.2", 1, false, -1, S2)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1, false, "nic0", "e1000e"}, {"rp1b", "smmuv3.1", 2, 2, true},
              {"rp2a", "smmuv3.2", 3, 3, false, "nic1", "e1000e"}},
};
/* smmuv3.1 bound to S1 and full; smmuv3.3 unbound with a free port. */
static const struct tb_topo T_FULL_SPARE = {
    .vs = {VS("smmuv3.1", 0, false, -1, S1), VS("smmuv3.3", 2, false, -1, NULL)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1, false, "nic0", "e1000e"}, {"rp3a", "smmuv3.3", 5, 5}},
};
/* smmuv3.1 accel bound to S1 (free port), smmuv3.2 non-accel bound to S2 (free port). */
static const struct tb_topo T_ACCEL = {
    .vs = {VS("smmuv3.1", 0, true, -1, S1), VS("smmuv3.2", 1, false, -1, S2)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}, {"rp2a", "smmuv3.2", 3, 3}},
};
/* Only an accel vSMMU, bound to S1, with a free port. */
static const struct tb_topo T_ACCEL_ONLY = {
    .vs = {VS("smmuv3.1", 0, true, -1, S1)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}},
};
/* NUMA: smmuv3.1 on node 0, smmuv3.2 on node 1, smmuv3.3 unset; smmuv3.4 on node 1 but full. */
static const struct tb_topo T_NUMA = {
    .vs = {VS("smmuv3.1", 0, false, 0, NULL), VS("smmuv3.2", 1, false, 1, NULL), VS("smmuv3.3", 2, false, -1, NULL),
           VS("smmuv3.4", 3, false, 1, NULL)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}, {"rp2a", "smmuv3.2", 2, 1}, {"rp3a", "smmuv3.3", 3, 1},
              {"rp4a", "smmuv3.4", 4, 1, false, "nic4", "e1000e"}},
};
/* NUMA with room: smmuv3.1 on node 0 (two ports), smmuv3.2 on node 1. */
static const struct tb_topo T_NUMA2 = {
    .vs = {VS("smmuv3.1", 0, false, 0, NULL), VS("smmuv3.2", 1, false, 1, NULL)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}, {"rp1b", "smmuv3.1", 2, 1}, {"rp2a", "smmuv3.2", 3, 1}},
};
/* Ports that must be skipped on a vSMMU: anonymous, not hotpluggable (both lower chassis than rp1z). */
static const struct tb_topo T_SKIP = {
    .vs = {VS("smmuv3.1", 0, false, -1, NULL)},
    .ports = {{"", "smmuv3.1", 1, 1}, {"rp1n", "smmuv3.1", 2, 1, true}, {"rp1z", "smmuv3.1", 9, 1}},
};
/* A VM without vSMMU (q35 or plain virt): anonymous, non-hotplug, occupied and free ports. */
static const struct tb_topo T_PLAIN = {
    .ports = {{"", NULL, 1, 1}, {"rpnohp", NULL, 2, 1, true}, {"rpocc", NULL, 3, 1, false, "nic0", "e1000e"},
              {"rpb", NULL, 5, 1}, {"rpc", NULL, 4, 10}, {"rpa", NULL, 4, 9}},
};
static const struct tb_topo T_PLAIN_FULL = {
    .ports = {{"", NULL, 1, 1}, {"rpnohp", NULL, 2, 1, true}, {"rpocc", NULL, 3, 1, false, "nic0", "e1000e"}},
};
/* The iommufd object exists already. */
static const struct tb_topo T_FD = {
    .vs = {VS("smmuv3.1", 0, false, -1, NULL)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}, {"rp1b", "smmuv3.1", 2, 2}},
    .iommufds = {"iommufd0"},
};
/* A vfio-pci device already carries the default id of 0009:01:00.0 (with another host). */
static const struct tb_topo T_IDCLASH = {
    .vs = {VS("smmuv3.1", 0, false, -1, NULL)},
    .ports = {{"rp1a", "smmuv3.1", 1, 1}, {"rp1b", "smmuv3.1", 2, 2}},
    .vfio = {{"hostdev-0009-01-00.0", "0009:00:00.0", "rp1a"}},
};

static void tb_build(const struct tb_topo *tb, struct smmu_topology *t)
{
    size_t nv = 0, np = 0, nf = 0, ni = 0;
    memset(t, 0, sizeof(*t));
    t->qemu_major = 11;
    t->qemu_minor = 1;
    t->qemu_micro = 3;
    while (nv < 5 && tb->vs[nv].id)
        nv++;
    while (np < 10 && tb->ports[np].id)
        np++;
    while (nf < 4 && tb->vfio[nf].id)
        nf++;
    while (ni < 3 && tb->iommufds[ni])
        ni++;
    t->vsmmus = calloc(nv + 1, sizeof(*t->vsmmus));
    t->ports = calloc(np + 1, sizeof(*t->ports));
    t->vfio = calloc(nf + 1, sizeof(*t->vfio));
    t->iommufds = calloc(ni + 1, sizeof(*t->iommufds));
    assert_non_null(t->vsmmus);
    assert_non_null(t->ports);
    assert_non_null(t->vfio);
    assert_non_null(t->iommufds);
    t->n_vsmmus = nv;
    t->n_ports = np;
    t->n_vfio = nf;
    t->n_iommufds = ni;
    for (size_t i = 0; i < nv; i++) {
        struct smmu_vsmmu *v = &t->vsmmus[i];
        snprintf(v->id, sizeof(v->id), "%s", tb->vs[i].id);
        snprintf(v->path, sizeof(v->path), "/machine/peripheral/%s", tb->vs[i].id);
        v->accel = tb->vs[i].accel;
        v->identifier = tb->vs[i].identifier;
        snprintf(v->pxb_id, sizeof(v->pxb_id), "pcie.%zu", i + 1);
        snprintf(v->primary_bus, sizeof(v->primary_bus), "/machine/unattached/device[%zu]/pcie.%zu", 40 + i, i + 1);
        v->bus_nr = 252 - 4 * (int)i;
        v->numa_node = tb->vs[i].numa;
        snprintf(v->bound_smmu, sizeof(v->bound_smmu), "%s", tb->vs[i].bound ? tb->vs[i].bound : "");
    }
    for (size_t i = 0; i < np; i++) {
        const struct tb_port *d = &tb->ports[i];
        struct smmu_rootport *rp = &t->ports[i];
        snprintf(rp->id, sizeof(rp->id), "%s", d->id);
        if (d->id[0])
            snprintf(rp->path, sizeof(rp->path), "/machine/peripheral/%s", d->id);
        else
            snprintf(rp->path, sizeof(rp->path), "/machine/peripheral-anon/device[%zu]", i);
        rp->chassis = d->chassis;
        rp->port = d->port;
        rp->hotplug = !d->nohotplug;
        rp->vsmmu = -1;
        for (size_t v = 0; d->on && v < nv; v++)
            if (!strcmp(t->vsmmus[v].id, d->on))
                rp->vsmmu = (int)v;
        if (d->on)
            assert_true(rp->vsmmu >= 0);
        if (rp->vsmmu >= 0) {
            snprintf(rp->parent_bus, sizeof(rp->parent_bus), "%s", t->vsmmus[rp->vsmmu].primary_bus);
            snprintf(rp->bus_name, sizeof(rp->bus_name), "%s", t->vsmmus[rp->vsmmu].pxb_id);
        } else {
            snprintf(rp->parent_bus, sizeof(rp->parent_bus), "/machine/q35/pcie.0");
            snprintf(rp->bus_name, sizeof(rp->bus_name), "pcie.0");
        }
        if (d->occupant) {
            snprintf(rp->occupant_id, sizeof(rp->occupant_id), "%s", d->occupant);
            snprintf(rp->occupant_path, sizeof(rp->occupant_path), "/machine/peripheral/%s", d->occupant);
            snprintf(rp->occupant_driver, sizeof(rp->occupant_driver), "%s", d->driver ? d->driver : "");
        }
    }
    for (size_t i = 0; i < nf; i++) {
        struct smmu_vfio_dev *f = &t->vfio[i];
        snprintf(f->id, sizeof(f->id), "%s", tb->vfio[i].id);
        snprintf(f->path, sizeof(f->path), "/machine/peripheral/%s", tb->vfio[i].id);
        snprintf(f->host, sizeof(f->host), "%s", tb->vfio[i].host);
        snprintf(f->iommufd, sizeof(f->iommufd), "iommufd0");
        f->rootport = smmu_topology_find_port(t, tb->vfio[i].port);
        assert_true(f->rootport >= 0);
        /* Discovery sees the device as the port's occupant too. */
        struct smmu_rootport *rp = &t->ports[f->rootport];
        snprintf(rp->occupant_id, sizeof(rp->occupant_id), "%s", f->id);
        snprintf(rp->occupant_path, sizeof(rp->occupant_path), "%s", f->path);
        snprintf(rp->occupant_driver, sizeof(rp->occupant_driver), "vfio-pci");
    }
    for (size_t i = 0; i < ni; i++)
        snprintf(t->iommufds[i], sizeof(t->iommufds[i]), "%s", tb->iommufds[i]);
}

/* ---- host facts ------------------------------------------------------------------------------------- */

#define DEVF(b, smmu_, drv, group, cdev_, numa, culprits)                                                    \
    {.bdf = b, .smmu = smmu_, .driver = drv, .iommu_group = group, .cdev = cdev_, .numa_node = numa,            \
     .vendor = "0x10de", .device = "0x2335", .group_culprits = culprits}
#define DEV(b, smmu_, numa) DEVF(b, smmu_, "vfio-pci", 7, "vfio3", numa, "")

#define A "0009:01:00.0"
#define B "0009:02:00.0"
#define C "000a:01:00.0"
#define E "000b:01:00.0"

/* ---- cases ------------------------------------------------------------------------------------------ */

struct want_pl {
    const char *vsmmu;  /* NULL: behind no vSMMU */
    const char *port;   /* NULL ends the list */
    const char *id;     /* NULL: the default id */
    bool mismatch;
    const char *reason; /* substring, NULL unchecked */
};

struct plan_case {
    const char *name;
    const struct tb_topo *topo;
    const struct smmu_host_dev *devs;
    size_t n;
    const struct smmu_host_dev *vfio_hosts;
    size_t n_vfio_hosts;
    const struct smmu_binding *bindings;
    size_t n_bindings;
    const char *const *attached;
    size_t n_attached;
    const char *const *booked;
    size_t n_booked;
    bool fd_pass, allow_mismatch;
    const char *iommufd, *id, *dev_root;
    /* expectations */
    int rc;
    const char *msg[4];          /* substrings of err.message (NULL-terminated) */
    const char *not_msg;         /* must not appear in the message */
    struct want_pl pl[4];
    const char *steps;           /* "getfd:iommufd0-fd object-add:iommufd0 ..." (command:name), NULL unchecked */
    const char *new_bindings;    /* "smmuv3.1=S1 ..." space separated, NULL unchecked, "" none */
};

#define LIST(T, field, ...) .field = (const T[]){__VA_ARGS__}, .n_##field = sizeof((const T[]){__VA_ARGS__}) / sizeof(T)
#define DEVS(...) .devs = (const struct smmu_host_dev[]){__VA_ARGS__}, \
                  .n = sizeof((const struct smmu_host_dev[]){__VA_ARGS__}) / sizeof(struct smmu_host_dev)
#define VFIO_HOSTS(...) LIST(struct smmu_host_dev, vfio_hosts, __VA_ARGS__)
#define BINDINGS(...) LIST(struct smmu_binding, bindings, __VA_ARGS__)
#define ATTACHED(...) .attached = (const char *const[]){__VA_ARGS__}, \
                      .n_attached = sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)
#define BOOKED(...) .booked = (const char *const[]){__VA_ARGS__}, \
                    .n_booked = sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)

static const struct plan_case cases[] = {
    /* ---- rule 2: an unbound vSMMU, lowest identifier; it becomes bound ---- */
    {.name = "first device binds the lowest-identifier vSMMU, lowest (chassis, port)",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)),
     .pl = {{"smmuv3.1", "rp1a", NULL, false, "unbound vSMMU smmuv3.1 (lowest identifier 0), now bound to " S1}},
     .steps = "object-add:iommufd0 device_add:hostdev-0009-01-00.0", .new_bindings = "smmuv3.1=" S1},
    {.name = "identifier order, not array order",
     .topo = &T_REV, DEVS(DEV(A, S1, -1)), .pl = {{"smmuv3.a", "rpa"}}, .new_bindings = "smmuv3.a=" S1},
    /* ---- rule 1: the vSMMU already bound to S, from each source ---- */
    {.name = "bound by a cold-plugged vfio-pci device (host facts by BDF)",
     .topo = &T_COLD, DEVS(DEV(A, S1, -1)), VFIO_HOSTS(DEV("0009:00:00.0", S1, -1)),
     .pl = {{"smmuv3.1", "rp1b", NULL, false, "vSMMU smmuv3.1 already bound to " S1 " by vfio-pci cold0 (host 0009:00:00.0)"}},
     .new_bindings = ""},
    {.name = "a device of another SMMU avoids the vSMMU bound by a cold-plugged device",
     .topo = &T_COLD, DEVS(DEV(A, S2, -1)), VFIO_HOSTS(DEV("0009:00:00.0", S1, -1)),
     .pl = {{"smmuv3.2", "rp2a"}}, .new_bindings = "smmuv3.2=" S2},
    {.name = "cold-plugged device with unknown host facts binds nothing",
     .topo = &T_COLD, DEVS(DEV(A, S2, -1)), .pl = {{"smmuv3.1", "rp1b"}}, .new_bindings = "smmuv3.1=" S2},
    {.name = "bound by the journal",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), BINDINGS({"smmuv3.2", S1}),
     .pl = {{"smmuv3.2", "rp2a", NULL, false, "already bound to " S1 " by the journal"}}, .new_bindings = ""},
    {.name = "journal binding of an unknown vSMMU is ignored",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), BINDINGS({"smmuv3.9", S1}),
     .pl = {{"smmuv3.1", "rp1a"}}, .new_bindings = "smmuv3.1=" S1},
    {.name = "bound by the discovered topology",
     .topo = &T_BOUND, DEVS(DEV(A, S2, -1)), .pl = {{"smmuv3.2", "rp2a", NULL, false, "already bound"}},
     .new_bindings = ""},
    {.name = "agreeing bindings from vfio and journal are fine",
     .topo = &T_COLD, DEVS(DEV(A, S1, -1)), VFIO_HOSTS(DEV("0009:00:00.0", S1, -1)), BINDINGS({"smmuv3.1", S1}),
     .pl = {{"smmuv3.1", "rp1b"}}},
    {.name = "conflicting bindings are an error",
     .topo = &T_COLD, DEVS(DEV(A, S1, -1)), VFIO_HOSTS(DEV("0009:00:00.0", S1, -1)), BINDINGS({"smmuv3.1", S2}),
     .rc = -EINVAL, .msg = {"vSMMU smmuv3.1 has conflicting bindings: " S1 " (by vfio-pci cold0 (host 0009:00:00.0)) and " S2 " (by the journal)"}},
    {.name = "bound vSMMU full: an unbound vSMMU takes the device and says why",
     .topo = &T_FULL_SPARE, DEVS(DEV(A, S1, -1)),
     .pl = {{"smmuv3.3", "rp3a", NULL, false, "vSMMU smmuv3.1 (bound to " S1 ") has no free root port"}},
     .new_bindings = "smmuv3.3=" S1},
    /* ---- rule 3: refusals ---- */
    {.name = "no vSMMU for this host SMMU",
     .topo = &T_BOUND, DEVS(DEV(A, S3, -1)), .rc = -ENOSPC,
     .msg = {A " (host SMMU " S3 "): no vSMMU can take it", "smmuv3.1 bound to " S1, "smmuv3.2 bound to " S2,
             "--allow-mismatch would"}},
    {.name = "all ports full",
     .topo = &T_FULL, DEVS(DEV(A, S1, -1)), .rc = -ENOSPC,
     .msg = {"smmuv3.1 bound to " S1 " but has no free root port", "smmuv3.2 bound to " S2 " and has no free root port"},
     .not_msg = "--allow-mismatch"},
    {.name = "all ports booked by other transactions",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), BOOKED("rp1a", "rp1b", "rp2a"), .rc = -ENOSPC,
     .msg = {"smmuv3.1 has no free root port, smmuv3.2 has no free root port"}},
    {.name = "accel mismatch refused even with --allow-mismatch",
     .topo = &T_ACCEL_ONLY, DEVS(DEV(A, S2, -1)), .allow_mismatch = true, .rc = -ENOSPC,
     .msg = {"smmuv3.1 (accel) bound to " S1, "does not apply to accel"}},
    {.name = "accel mismatch refused without --allow-mismatch, no hint",
     .topo = &T_ACCEL_ONLY, DEVS(DEV(A, S2, -1)), .rc = -ENOSPC, .msg = {"smmuv3.1 (accel) bound to " S1},
     .not_msg = "--allow-mismatch"},
    {.name = "non-accel mismatch refused without --allow-mismatch",
     .topo = &T_BOUND, DEVS(DEV(A, S3, -1)), .rc = -ENOSPC, .msg = {"--allow-mismatch would place it"}},
    {.name = "non-accel mismatch allowed with --allow-mismatch",
     .topo = &T_BOUND, DEVS(DEV(A, S3, -1)), .allow_mismatch = true,
     .pl = {{"smmuv3.1", "rp1a", NULL, true, "--allow-mismatch: vSMMU smmuv3.1 is bound to " S1 ", not " S3}},
     .new_bindings = ""},
    {.name = "--allow-mismatch skips the accel vSMMU for the non-accel one",
     .topo = &T_ACCEL, DEVS(DEV(A, S3, -1)), .allow_mismatch = true,
     .pl = {{"smmuv3.2", "rp2a", NULL, true, "bound to " S2}}},
    {.name = "--allow-mismatch never used when a proper place exists",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), BINDINGS({"smmuv3.1", S2}), .allow_mismatch = true,
     .pl = {{"smmuv3.2", "rp2a", NULL, false}}, .new_bindings = "smmuv3.2=" S1},
    /* ---- host facts ---- */
    {.name = "group not viable",
     .topo = &T_TWO, DEVS(DEVF(A, S1, "vfio-pci", 7, "vfio3", -1, "0009:01:00.1 (nvidia)")), .rc = -EBUSY,
     .msg = {A, "group 7 not viable", "0009:01:00.1 (nvidia)"}},
    {.name = "wrong driver",
     .topo = &T_TWO, DEVS(DEVF(A, S1, "nvidia", 7, "vfio3", -1, "")), .rc = -EBUSY, .msg = {A, "nvidia", "vfio-pci"}},
    {.name = "no IOMMU",
     .topo = &T_TWO, DEVS(DEVF(A, "", "vfio-pci", -1, "vfio3", -1, "")), .rc = -ENODEV, .msg = {A, "IOMMU"}},
    {.name = "no cdev with --fd-pass",
     .topo = &T_TWO, DEVS(DEVF(A, S1, "vfio-pci", 7, "", -1, "")), .fd_pass = true, .rc = -ENODEV, .msg = {A, "cdev"}},
    {.name = "no cdev is fine without --fd-pass",
     .topo = &T_TWO, DEVS(DEVF(A, S1, "vfio-pci", 7, "", -1, "")), .pl = {{"smmuv3.1", "rp1a"}}},
    /* ---- request checks ---- */
    {.name = "duplicate in the request",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEV(A, S1, -1)), .rc = -EINVAL, .msg = {A, "listed twice"}},
    {.name = "already attached (vfio-pci in the topology) names the VM device id",
     .topo = &T_COLD, DEVS(DEV("0009:00:00.0", S1, -1)), .rc = -EINVAL,
     .msg = {"0009:00:00.0", "already attached", "cold0"}},
    {.name = "already attached (listed by the caller)",
     .topo = &T_TWO, DEVS(DEV(B, S1, -1), DEV(A, S1, -1)), ATTACHED("0009:07:00.0", A), .rc = -EINVAL,
     .msg = {A ": already attached to this VM"}},
    /* ---- multi-device requests ---- */
    {.name = "two devices of one host SMMU share a vSMMU",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEV(B, S1, -1)),
     .pl = {{"smmuv3.1", "rp1a"}, {"smmuv3.1", "rp1b", NULL, false, "already bound to " S1 " by 0009:01:00.0 in this request"}},
     .steps = "object-add:iommufd0 device_add:hostdev-0009-01-00.0 device_add:hostdev-0009-02-00.0",
     .new_bindings = "smmuv3.1=" S1},
    {.name = "three devices on two host SMMUs",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEV(C, S2, -1), DEV(B, S1, -1)),
     .pl = {{"smmuv3.1", "rp1a"}, {"smmuv3.2", "rp2a"}, {"smmuv3.1", "rp1b"}},
     .new_bindings = "smmuv3.1=" S1 " smmuv3.2=" S2},
    {.name = "one bad device refuses the whole request",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEVF(C, S2, "nvidia", 7, "vfio3", -1, "")), .rc = -EBUSY, .msg = {C, "nvidia"}},
    {.name = "one unplaceable device refuses the whole request",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEV(C, S2, -1), DEV(E, S3, -1)), .rc = -ENOSPC,
     .msg = {E " (host SMMU " S3 ")", "smmuv3.1 bound to " S1, "smmuv3.2 bound to " S2}},
    {.name = "third device of one SMMU overflows into the next unbound vSMMU",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEV(B, S1, -1), DEV(C, S1, -1)),
     .pl = {{"smmuv3.1", "rp1a"}, {"smmuv3.1", "rp1b"}, {"smmuv3.2", "rp2a", NULL, false, "has no free root port"}},
     .new_bindings = "smmuv3.1=" S1 " smmuv3.2=" S1},
    /* ---- NUMA preference ---- */
    {.name = "NUMA: the pxb on the device's node wins over a lower identifier",
     .topo = &T_NUMA, DEVS(DEV(A, S1, 1)),
     .pl = {{"smmuv3.2", "rp2a", NULL, false, "unbound vSMMU smmuv3.2 on NUMA node 1"}}},
    {.name = "NUMA: device without node takes the lowest identifier",
     .topo = &T_NUMA, DEVS(DEV(A, S1, -1)), .pl = {{"smmuv3.1", "rp1a", NULL, false, "lowest identifier"}}},
    {.name = "NUMA: no pxb on the device's node → lowest identifier",
     .topo = &T_NUMA, DEVS(DEV(A, S1, 3)), .pl = {{"smmuv3.1", "rp1a"}}},
    {.name = "NUMA: matching pxbs taken → lowest identifier",
     .topo = &T_NUMA, DEVS(DEV(A, S2, 1), DEV(B, S1, 1)),
     .pl = {{"smmuv3.2", "rp2a"}, {"smmuv3.1", "rp1a", NULL, false, "lowest identifier"}}},
    {.name = "NUMA: a bound vSMMU beats a NUMA match",
     .topo = &T_NUMA, DEVS(DEV(A, S1, 1)), BINDINGS({"smmuv3.3", S1}), .pl = {{"smmuv3.3", "rp3a"}}},
    {.name = "NUMA: a device shares its SMMU's vSMMU bound earlier in the request, whatever its node",
     .topo = &T_NUMA2, DEVS(DEV(A, S1, 0), DEV(B, S1, 1), DEV(C, S2, 1)),
     .pl = {{"smmuv3.1", "rp1a", NULL, false, "NUMA node 0"}, {"smmuv3.1", "rp1b", NULL, false, "already bound"},
            {"smmuv3.2", "rp2a", NULL, false, "NUMA node 1"}},
     .new_bindings = "smmuv3.1=" S1 " smmuv3.2=" S2},
    {.name = "device without PCI address",
     .topo = &T_TWO, DEVS(DEV("", S1, -1)), .rc = -EINVAL, .msg = {"no PCI address"}},
    /* ---- root ports ---- */
    {.name = "anonymous and non-hotpluggable ports on a vSMMU are skipped",
     .topo = &T_SKIP, DEVS(DEV(A, S1, -1)), .pl = {{"smmuv3.1", "rp1z"}}},
    {.name = "booked ports are skipped",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), BOOKED("rp1a"), .pl = {{"smmuv3.1", "rp1b"}}},
    {.name = "VM without vSMMU: lowest (chassis, port) hotpluggable free port with an id",
     .topo = &T_PLAIN, DEVS(DEV(A, S1, -1), DEV(B, S2, -1)),
     .pl = {{NULL, "rpa", NULL, false, "no vSMMU"}, {NULL, "rpc", NULL, false, "no vSMMU"}}, .new_bindings = ""},
    {.name = "VM without vSMMU: booked port skipped",
     .topo = &T_PLAIN, DEVS(DEV(A, S1, -1)), BOOKED("rpa", "rpc"), .pl = {{NULL, "rpb"}}},
    {.name = "VM without vSMMU: no usable port",
     .topo = &T_PLAIN_FULL, DEVS(DEV(A, S1, -1)), .rc = -ENOSPC,
     .msg = {A, "no free hotpluggable root port", "has no vSMMU"}},
    /* ---- iommufd object ---- */
    {.name = "existing iommufd reused: no object-add",
     .topo = &T_FD, DEVS(DEV(A, S1, -1)), .pl = {{"smmuv3.1", "rp1a"}}, .steps = "device_add:hostdev-0009-01-00.0"},
    {.name = "existing iommufd reused with --fd-pass: no iommu fd either",
     .topo = &T_FD, DEVS(DEV(A, S1, -1)), .fd_pass = true,
     .steps = "getfd:hostdev-0009-01-00.0-cdev device_add:hostdev-0009-01-00.0"},
    {.name = "--iommufd names another object: it is created",
     .topo = &T_FD, DEVS(DEV(A, S1, -1)), .iommufd = "fd1", .steps = "object-add:fd1 device_add:hostdev-0009-01-00.0"},
    {.name = "--iommufd invalid",
     .topo = &T_FD, DEVS(DEV(A, S1, -1)), .iommufd = "1fd", .rc = -EINVAL, .msg = {"--iommufd '1fd'"}},
    /* ---- fd passing ---- */
    {.name = "--fd-pass: getfd before object-add and before each device_add",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEV(B, S1, -1)), .fd_pass = true,
     .steps = "getfd:iommufd0-fd object-add:iommufd0 getfd:hostdev-0009-01-00.0-cdev device_add:hostdev-0009-01-00.0 "
              "getfd:hostdev-0009-02-00.0-cdev device_add:hostdev-0009-02-00.0"},
    /* ---- --id ---- */
    {.name = "--id names the device",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), .id = "gpu0", .fd_pass = true, .pl = {{"smmuv3.1", "rp1a", "gpu0"}},
     .steps = "getfd:iommufd0-fd object-add:iommufd0 getfd:gpu0-cdev device_add:gpu0"},
    {.name = "--id with two devices",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1), DEV(B, S1, -1)), .id = "gpu0", .rc = -EINVAL, .msg = {"--id", "2"}},
    {.name = "--id must start with a letter",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), .id = "0gpu", .rc = -EINVAL, .msg = {"--id '0gpu'", "not a valid QEMU id"}},
    {.name = "--id with a bad character",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), .id = "gpu:0", .rc = -EINVAL, .msg = {"not a valid QEMU id"}},
    {.name = "--id with every allowed character",
     .topo = &T_TWO, DEVS(DEV(A, S1, -1)), .id = "g-P.u_9", .pl = {{"smmuv3.1", "rp1a", "g-P.u_9"}}},
    {.name = "--id already a device in the VM",
     .topo = &T_COLD, DEVS(DEV(A, S1, -1)), .id = "rp2a", .rc = -EINVAL, .msg = {"rp2a", "already used", "root port"}},
    {.name = "--id already a vfio-pci device",
     .topo = &T_COLD, DEVS(DEV(A, S1, -1)), .id = "cold0", .rc = -EINVAL, .msg = {"cold0", "already used"}},
    {.name = "default id taken by another device",
     .topo = &T_IDCLASH, DEVS(DEV(A, S1, -1)), .rc = -EINVAL, .msg = {"hostdev-0009-01-00.0", "already used"}},
    {.name = "no device",
     .topo = &T_TWO, .devs = NULL, .n = 0, .rc = -EINVAL, .msg = {"no device"}},
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static const char *step_kind_name(const struct smmu_step *s)
{
    switch (s->kind) {
    case SMMU_STEP_GETFD: return "getfd";
    case SMMU_STEP_OBJECT_ADD: return "object-add";
    case SMMU_STEP_DEVICE_ADD: return "device_add";
    }
    return "?";
}

static void check_steps(const struct plan_case *c, const struct smmu_plan *p)
{
    char got[2048] = "";
    size_t len = 0;
    for (size_t i = 0; i < p->n_steps; i++) {
        const struct smmu_step *s = &p->steps[i];
        /* The enum, the command string and the args agree with each other on every step. */
        assert_string_equal(s->command, step_kind_name(s));
        assert_non_null(s->args);
        if (s->kind == SMMU_STEP_GETFD) {
            assert_string_equal(json_string_value(json_object_get(s->args, "fdname")), s->name);
            assert_true(s->fd_path[0] == '/');
        } else {
            assert_string_equal(json_string_value(json_object_get(s->args, "id")), s->name);
        }
        if (s->kind == SMMU_STEP_DEVICE_ADD) {
            bool has_host = json_object_get(s->args, "host") != NULL, has_fd = json_object_get(s->args, "fd") != NULL;
            assert_true(has_host != has_fd); /* never host and fd together */
            assert_int_equal(has_fd, c->fd_pass);
            assert_string_equal(json_string_value(json_object_get(s->args, "bus")), s->port);
            assert_string_equal(json_string_value(json_object_get(s->args, "addr")), "0x0");
            assert_string_equal(json_string_value(json_object_get(s->args, "iommufd")), p->iommufd_id);
        }
        len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%s:%s", i ? " " : "", s->command, s->name);
    }
    if (c->steps)
        assert_string_equal(got, c->steps);
}

static void check_bindings(const struct plan_case *c, const struct smmu_plan *p)
{
    char got[1024] = "";
    size_t len = 0;
    if (!c->new_bindings)
        return;
    for (size_t i = 0; i < p->n_new_bindings; i++)
        len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%s=%s", i ? " " : "", p->new_bindings[i].vsmmu_id,
                                p->new_bindings[i].host_smmu);
    assert_string_equal(got, c->new_bindings);
}

static void run_case(void **state)
{
    const struct plan_case *c = *state;
    struct smmu_topology t;
    struct smmu_plan_opts opts = SMMU_PLAN_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_plan *p = (struct smmu_plan *)&err; /* must be reset to NULL on failure */
    int rc;

    tb_build(c->topo, &t);
    opts.fd_pass = c->fd_pass;
    opts.allow_mismatch = c->allow_mismatch;
    opts.iommufd_id = c->iommufd;
    opts.device_id = c->id;
    opts.dev_root = c->dev_root;
    rc = smmu_plan_attach(&t, c->devs, c->n, c->vfio_hosts, c->n_vfio_hosts, c->bindings, c->n_bindings,
                          c->attached, c->n_attached, c->booked, c->n_booked, &opts, &p, &err);
    if (rc != c->rc)
        fail_msg("case '%s': rc %d, want %d (%s)", c->name, rc, c->rc, err.message);
    if (c->rc) {
        assert_null(p);
        assert_int_equal(err.code, c->rc);
        for (size_t i = 0; i < 4 && c->msg[i]; i++)
            if (!strstr(err.message, c->msg[i]))
                fail_msg("case '%s': message \"%s\" lacks \"%s\"", c->name, err.message, c->msg[i]);
        if (c->not_msg && strstr(err.message, c->not_msg))
            fail_msg("case '%s': message \"%s\" has \"%s\"", c->name, err.message, c->not_msg);
        smmu_topology_free(&t);
        return;
    }
    assert_non_null(p);
    assert_int_equal(p->n_placements, c->n);
    for (size_t i = 0; i < 4 && c->pl[i].port; i++) {
        const struct want_pl *w = &c->pl[i];
        const struct smmu_placement *pl = &p->placements[i];
        char defid[SMMU_ID_LEN];
        assert_string_equal(pl->bdf, c->devs[i].bdf);
        assert_string_equal(pl->host_smmu, c->devs[i].smmu);
        if (w->vsmmu) {
            assert_true(pl->vsmmu >= 0);
            assert_string_equal(t.vsmmus[pl->vsmmu].id, w->vsmmu);
            assert_string_equal(pl->vsmmu_id, w->vsmmu);
        } else {
            assert_int_equal(pl->vsmmu, -1);
        }
        assert_string_equal(pl->port_id, w->port);
        assert_string_equal(t.ports[pl->port].id, w->port);
        smmu_plan_default_id(c->devs[i].bdf, defid);
        assert_string_equal(pl->device_id, w->id ? w->id : defid);
        assert_int_equal(pl->mismatch, w->mismatch);
        if (w->reason && !strstr(pl->reason, w->reason))
            fail_msg("case '%s': reason \"%s\" lacks \"%s\"", c->name, pl->reason, w->reason);
    }
    assert_int_equal(p->creates_iommufd, !smmu_topology_has_iommufd(&t, c->iommufd ? c->iommufd : "iommufd0"));
    check_steps(c, p);
    check_bindings(c, p);

    /* Pure and deterministic: the same inputs give the same plan, JSON included. */
    struct smmu_plan *p2 = NULL;
    assert_int_equal(smmu_plan_attach(&t, c->devs, c->n, c->vfio_hosts, c->n_vfio_hosts, c->bindings,
                                      c->n_bindings, c->attached, c->n_attached, c->booked, c->n_booked, &opts,
                                      &p2, &err), 0);
    json_t *j1 = smmu_plan_to_json(&t, p), *j2 = smmu_plan_to_json(&t, p2);
    assert_true(json_equal(j1, j2));
    json_decref(j1);
    json_decref(j2);
    smmu_plan_free(p2);
    smmu_plan_free(p);
    smmu_topology_free(&t);
}

/* ---- exact output -------------------------------------------------------------------------------------- */

static char *dump_step(const struct smmu_step *s)
{
    return json_dumps(s->args, JSON_PRESERVE_ORDER | JSON_COMPACT);
}

static void test_exact_steps_fd_pass(void **state)
{
    (void)state;
    struct smmu_topology t;
    struct smmu_host_dev d = DEV(A, S1, 0);
    struct smmu_plan_opts opts = SMMU_PLAN_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_plan *p = NULL;
    static const char *const want[] = {
        "{\"fdname\":\"iommufd0-fd\"}",
        "{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\",\"fd\":\"iommufd0-fd\"}",
        "{\"fdname\":\"hostdev-0009-01-00.0-cdev\"}",
        ("{\"driver\":\"vfio-pci\",\"fd\":\"hostdev-0009-01-00.0-cdev\",\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\","
         "\"addr\":\"0x0\",\"id\":\"hostdev-0009-01-00.0\"}"),
    };

    tb_build(&T_TWO, &t);
    opts.fd_pass = true;
    opts.dev_root = "/tmp/fake-dev//";
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &opts, &p, &err), 0);
    assert_int_equal(p->n_steps, 4);
    for (size_t i = 0; i < 4; i++) {
        char *s = dump_step(&p->steps[i]);
        assert_string_equal(s, want[i]);
        free(s);
    }
    assert_string_equal(p->steps[0].fd_path, "/tmp/fake-dev/iommu");
    assert_string_equal(p->steps[2].fd_path, "/tmp/fake-dev/vfio/devices/vfio3");
    assert_string_equal(p->steps[2].bdf, A);
    assert_string_equal(p->steps[3].port, "rp1a");

    /* The plan's JSON form (docs/plan-json.md), whole. */
    json_t *j = smmu_plan_to_json(&t, p);
    char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    assert_string_equal(s,
        "{\"iommufd\":\"iommufd0\",\"creates_iommufd\":true,"
        "\"placements\":[{\"bdf\":\"0009:01:00.0\",\"host_smmu\":\"" S1 "\",\"numa_node\":0,\"vsmmu\":\"smmuv3.1\","
        "\"pxb\":\"pcie.1\",\"bus_nr\":252,\"accel\":false,\"port\":\"rp1a\",\"device_id\":\"hostdev-0009-01-00.0\","
        "\"reason\":\"unbound vSMMU smmuv3.1 (lowest identifier 0), now bound to " S1 "\",\"mismatch\":false,\"fits\":true}],"
        "\"new_bindings\":[{\"vsmmu\":\"smmuv3.1\",\"host_smmu\":\"" S1 "\"}],"
        "\"steps\":["
        "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"iommufd0-fd\"},\"fds\":[\"/tmp/fake-dev/iommu\"]},"
        "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\",\"fd\":\"iommufd0-fd\"},"
        "\"fds\":[]},"
        "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"hostdev-0009-01-00.0-cdev\"},"
        "\"fds\":[\"/tmp/fake-dev/vfio/devices/vfio3\"]},"
        "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vfio-pci\",\"fd\":\"hostdev-0009-01-00.0-cdev\","
        "\"iommufd\":\"iommufd0\",\"bus\":\"rp1a\",\"addr\":\"0x0\",\"id\":\"hostdev-0009-01-00.0\"},\"fds\":[]}]}");
    free(s);
    json_decref(j);
    smmu_plan_free(p);
    smmu_topology_free(&t);
}

static void test_exact_steps_host(void **state)
{
    (void)state;
    struct smmu_topology t;
    struct smmu_host_dev d = DEV(A, S1, -1);
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_plan *p = NULL;

    tb_build(&T_PLAIN, &t);
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, &p, &err), 0);
    assert_int_equal(p->n_steps, 2);
    char *s0 = dump_step(&p->steps[0]), *s1 = dump_step(&p->steps[1]);
    assert_string_equal(s0, "{\"qom-type\":\"iommufd\",\"id\":\"iommufd0\"}");
    assert_string_equal(s1, "{\"driver\":\"vfio-pci\",\"host\":\"0009:01:00.0\",\"iommufd\":\"iommufd0\","
                            "\"bus\":\"rpa\",\"addr\":\"0x0\",\"id\":\"hostdev-0009-01-00.0\"}");
    free(s0);
    free(s1);
    /* No vSMMU: vsmmu, pxb, bus_nr and accel are null; numa_node -1 is null. */
    json_t *j = smmu_plan_to_json(&t, p);
    json_t *pl = json_array_get(json_object_get(j, "placements"), 0);
    assert_true(json_is_null(json_object_get(pl, "vsmmu")));
    assert_true(json_is_null(json_object_get(pl, "pxb")));
    assert_true(json_is_null(json_object_get(pl, "bus_nr")));
    assert_true(json_is_null(json_object_get(pl, "accel")));
    assert_true(json_is_null(json_object_get(pl, "numa_node")));
    assert_string_equal(json_string_value(json_object_get(pl, "port")), "rpa");
    assert_int_equal(json_array_size(json_object_get(j, "new_bindings")), 0);
    json_decref(j);
    smmu_plan_free(p);
    smmu_topology_free(&t);
}

static void test_default_id(void **state)
{
    (void)state;
    char id[SMMU_ID_LEN];
    smmu_plan_default_id("0009:01:00.0", id);
    assert_string_equal(id, "hostdev-0009-01-00.0");
    smmu_plan_default_id("000a:ff:1f.7", id);
    assert_string_equal(id, "hostdev-000a-ff-1f.7");
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct smmu_topology t;
    struct smmu_host_dev d = DEV(A, S1, -1);
    struct smmu_plan_opts opts = SMMU_PLAN_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_plan *p = NULL;

    tb_build(&T_TWO, &t);
    assert_int_equal(smmu_plan_attach(NULL, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, &p, &err), -EINVAL);
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, NULL, NULL), -EINVAL);
    opts.version = 99;
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &opts, &p, &err), -EINVAL);
    assert_null(p);
    /* A long --id still leaves room for "<id>-cdev" with --fd-pass. */
    char longid[SMMU_ID_LEN];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    opts.version = SMMU_PLAN_OPTS_VERSION;
    opts.device_id = longid;
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &opts, &p, &err), 0);
    smmu_plan_free(p);
    p = NULL;
    opts.fd_pass = true;
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &opts, &p, &err), -EINVAL);
    longid[SMMU_ID_LEN - 1 - 5] = '\0';
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &opts, &p, &err), 0);
    assert_int_equal(strlen(p->steps[2].name), SMMU_ID_LEN - 1);
    smmu_plan_free(p);
    smmu_plan_free(NULL);
    smmu_topology_free(&t);
}

/* ---- BAR windows (DESIGN §8): prefer a port whose reserves fit, warn or refuse when none does ---- */

/* A Grace-Blackwell-like GPU (as tests/support/fakesys.c's resource file): BAR0 16 MiB 32-bit, BAR2 128 GiB and
 * BAR4 32 MiB 64-bit prefetchable → needs pref64 256 GiB (128 GiB + 32 MiB rounded up to 128 GiB), mem 16 MiB. */
static void gpu_bars(struct smmu_host_dev *d)
{
    d->have_bars = true;
    d->bars[0] = (struct smmu_host_bar){16ull << 20, 0x40200, false, false, false};
    d->bars[2] = (struct smmu_host_bar){128ull << 30, 0x14220c, false, true, true};
    d->bars[4] = (struct smmu_host_bar){32ull << 20, 0x14220c, false, true, true};
}

static void set_res(struct smmu_topology *t, const char *port, uint64_t pref64, uint64_t mem)
{
    struct smmu_rootport *rp = &t->ports[smmu_topology_find_port(t, port)];
    rp->pref64_reserve = (struct smmu_reserve){pref64 != 0, pref64};
    rp->mem_reserve = (struct smmu_reserve){mem != 0, mem};
}

static void test_fit_needs(void **state)
{
    struct smmu_host_dev d = DEV(A, S1, 0);
    struct smmu_rootport rp;
    struct smmu_fit f;
    char buf[256];
    (void)state;
    memset(&rp, 0, sizeof(rp));
    smmu_plan_port_fit(&rp, &d, &f); /* no BAR facts: nothing known is needed */
    assert_true(f.fits);
    gpu_bars(&d);
    smmu_plan_port_fit(&rp, &d, &f);
    assert_true(f.need_pref64 == 256ull << 30);
    assert_true(f.need_mem == 16ull << 20);
    assert_false(f.fits);
    smmu_plan_fit_str(&rp, &f, buf, sizeof(buf));
    assert_string_equal(buf, "pref64-reserve unset, the 64-bit prefetchable BARs need 256 GiB; "
                             "mem-reserve unset, the other memory BARs need 16 MiB");
    smmu_plan_fit_fix(&rp, &f, buf, sizeof(buf));
    assert_string_equal(buf, "pref64-reserve=256G,mem-reserve=16M");
    rp.pref64_reserve = (struct smmu_reserve){true, 256ull << 30};
    rp.mem_reserve = (struct smmu_reserve){true, 8ull << 20};
    smmu_plan_port_fit(&rp, &d, &f);
    assert_true(f.pref_ok);
    assert_false(f.mem_ok);
    smmu_plan_fit_str(&rp, &f, buf, sizeof(buf));
    assert_string_equal(buf, "mem-reserve 8 MiB, the other memory BARs need 16 MiB");
    rp.mem_reserve.value = 16ull << 20;
    smmu_plan_port_fit(&rp, &d, &f);
    assert_true(f.fits);
    /* a 32-bit prefetchable window holds 64-bit prefetchable BARs that fit below 4 GiB, never 256 GiB */
    rp.pref64_reserve = (struct smmu_reserve){false, 0};
    rp.pref32_reserve = (struct smmu_reserve){true, 1ull << 31};
    smmu_plan_port_fit(&rp, &d, &f);
    assert_false(f.pref_ok);
    smmu_plan_fit_str(&rp, &f, buf, sizeof(buf));
    assert_string_equal(buf, "pref64-reserve unset (pref32-reserve 2 GiB), the 64-bit prefetchable BARs need 256 GiB");
    smmu_plan_fit_fix(&rp, &f, buf, sizeof(buf));
    assert_string_equal(buf, "pref64-reserve=256G instead of pref32-reserve");
}

/* smmuv3.1 has rp1a (lowest, no windows) and rp1b (windows that fit): rp1b wins; with rp1b too small, rp1a
 * (lowest) is chosen with a warning naming the fix; --require-fit refuses then. */
static void test_fit_placement(void **state)
{
    struct smmu_topology t;
    struct smmu_host_dev d = DEV(A, S1, -1);
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_plan_opts o = SMMU_PLAN_OPTS_INIT;
    struct smmu_plan *p = NULL;
    (void)state;
    gpu_bars(&d);
    tb_build(&T_TWO, &t);
    set_res(&t, "rp1b", 256ull << 30, 16ull << 20);
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, &p, &err), 0);
    assert_string_equal(p->placements[0].port_id, "rp1b");
    assert_true(p->placements[0].fits);
    json_t *w = smmu_plan_warnings_json(p);
    assert_int_equal(json_array_size(w), 0);
    json_decref(w);
    smmu_plan_free(p);

    set_res(&t, "rp1b", 64ull << 30, 32ull << 20); /* too small a pref64 window */
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, &p, &err), 0);
    assert_string_equal(p->placements[0].port_id, "rp1a"); /* none fits: lowest (chassis, port) as before */
    assert_false(p->placements[0].fits);
    w = smmu_plan_warnings_json(p);
    assert_int_equal(json_array_size(w), 1);
    assert_non_null(strstr(json_string_value(json_array_get(w, 0)),
                           "0009:01:00.0 on rp1a: no free root port behind vSMMU smmuv3.1 has windows that fit"));
    assert_non_null(strstr(json_string_value(json_array_get(w, 0)), "pref64-reserve=256G,mem-reserve=16M"));
    json_decref(w);
    json_t *j = smmu_plan_to_json(&t, p);
    assert_true(json_is_false(json_object_get(json_array_get(json_object_get(j, "placements"), 0), "fits")));
    json_decref(j);
    smmu_plan_free(p);

    o.require_fit = true;
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &o, &p, &err), -ENOSPC);
    assert_null(p);
    assert_non_null(strstr(err.message, "--require-fit: 0009:01:00.0 on rp1a: no free root port"));
    set_res(&t, "rp1b", 256ull << 30, 16ull << 20);
    assert_int_equal(smmu_plan_attach(&t, &d, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &o, &p, &err), 0);
    assert_string_equal(p->placements[0].port_id, "rp1b");
    smmu_plan_free(p);
    smmu_topology_free(&t);
}

int main(void)
{
    struct CMUnitTest tests[N_CASES + 6];
    size_t n = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        memset(&tests[n], 0, sizeof(tests[n]));
        tests[n].name = cases[i].name;
        tests[n].test_func = run_case;
        tests[n].initial_state = (void *)&cases[i];
        n++;
    }
    const struct CMUnitTest extra[] = {
        cmocka_unit_test(test_exact_steps_fd_pass),
        cmocka_unit_test(test_exact_steps_host),
        cmocka_unit_test(test_default_id),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_fit_needs),
        cmocka_unit_test(test_fit_placement),
    };
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
        tests[n++] = extra[i];
    return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
