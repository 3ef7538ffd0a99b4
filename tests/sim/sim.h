/* sim.h — qmp-sim's shared model: machine, devices, buses, QOM objects, fds, faults.
 *
 * One struct sim = one simulated QEMU 11.1.3 VM (a process serves one, or many with --vms). The model is
 * deliberately concrete (no generic QOM): each QOM object the project's tools look at is a struct sim_obj
 * whose class properties come from a fixed per-type table (in QEMU's qom-list order) and whose instance
 * properties (children, links, memory regions) live in a sim_ghash so that their order matches QEMU's
 * GHashTable order.
 */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "sim_ghash.h"

#define SIM_ID_MAX 128
#define SIM_PATH_MAX 512
#define SIM_FD_BASE 14 /* QEMU's lowest free fd number in the recorded sessions */

struct sim;
struct sim_dev;
struct sim_bus;

enum sim_obj_kind { OBJ_CONTAINER, OBJ_DEV, OBJ_BUS, OBJ_PXB_HOST, OBJ_IOMMUFD, OBJ_OTHER };

/* An instance property: type and value (value NULL = not readable). */
struct sim_iprop {
    char *type;
    json_t *value;
};

struct sim_obj {
    char path[SIM_PATH_MAX];
    char type[64];
    enum sim_obj_kind kind;
    struct sim_ghash *inst;      /* name -> struct sim_iprop* */
    struct sim_dev *dev;         /* OBJ_DEV, OBJ_PXB_HOST (the pxb) */
    struct sim_bus *bus;         /* OBJ_BUS */
    struct sim_obj *next;        /* registry list */
};

enum sim_bus_kind { BUS_ROOT, BUS_PXB, BUS_PORT };

struct sim_bus {
    char name[SIM_ID_MAX];
    enum sim_bus_kind kind;
    int bus_nr;                  /* pcie.0: 0; pxb: bus_nr; port: parent's number (unnumbered) */
    bool hotpluggable;
    struct sim_dev *owner;       /* pxb or root port; NULL for pcie.0 */
    struct sim_dev *slots[256];  /* by devfn */
    int max_index;               /* next child[N] */
    bool as_done[256];           /* IOMMU address space created for this devfn (QEMU caches it) */
    struct sim_obj *obj;
    struct sim_bus *next;
};

enum sim_unplug_mode { UNPLUG_AUTO, UNPLUG_EVENT, UNPLUG_NEVER, UNPLUG_GUEST_ERROR };

struct sim_unplug_cfg {
    enum sim_unplug_mode mode;
    int delay_ms;
    bool before_reply;
};

struct sim_dev {
    char id[SIM_ID_MAX];         /* "" when anonymous */
    char anon[32];               /* device[N] under peripheral-anon */
    char driver[32];
    struct sim_obj *obj;
    struct sim_bus *parent_bus;
    int devfn;
    int child_index;             /* N of the child[N] link on the parent bus */
    struct sim_bus *sec_bus;     /* root port: secondary bus; pxb: its root bus */
    struct sim_obj *pxb_host;    /* pxb: /machine/unattached/device[N] */
    bool hotplugged;
    /* pxb */
    int bus_nr, numa_node;
    /* root port */
    int chassis, port, slot;
    bool hotplug;
    uint64_t res_pref64, res_pref32, res_mem, res_io; /* *-reserve; UINT64_MAX = unset (QEMU's default) */
    uint32_t res_bus;            /* bus-reserve; UINT32_MAX = unset */
    /* arm-smmuv3 */
    bool accel;
    int identifier;
    struct sim_bus *primary_bus;
    char bound_smmu[128];        /* host SMMU this vSMMU is bound to ("" unbound) */
    int vfio_count;
    /* endpoints */
    char host[16];               /* vfio-pci host BDF ("" with fd) */
    char host_smmu[128];
    char iommufd[SIM_ID_MAX];
    char fdname[SIM_ID_MAX];
    int held_fd;                 /* vfio-pci: the consumed cdev fd (-1) */
    int held_vfd;
    char netdev[SIM_ID_MAX];
    struct sim_dev *vsmmu;       /* vSMMU in front of it, if any */
    int mac_index;               /* NICs: QEMU's default MAC counter */
    /* unplug */
    bool unplug_pending;
    int64_t unplug_expires_vms;  /* virtual ms; 0 = never expires */
    struct sim_dev *next;
};

struct sim_iommufd {
    char id[SIM_ID_MAX];
    int fd, vfd;                 /* consumed fd kept open (-1 when opened /dev/iommu itself) */
    struct sim_obj *obj;
    struct sim_iommufd *next;
};

struct sim_namedfd {
    char name[SIM_ID_MAX];
    int fd, vfd;
    struct sim_namedfd *next;
};

struct sim_fdset_fd {
    int fd, vfd;
    char opaque[256];
    bool has_opaque;
    struct sim_fdset_fd *next;
};

struct sim_fdset {
    int64_t id;
    struct sim_fdset_fd *fds;
    struct sim_fdset *next;
};

/* A consumed fd that QEMU keeps (iommufd objects never close theirs, even after object-del). */
struct sim_keptfd {
    char name[SIM_ID_MAX];
    char by[SIM_ID_MAX + 32];
    int fd, vfd;
    struct sim_keptfd *next;
};

struct sim_netdev {
    char id[SIM_ID_MAX];
    struct sim_netdev *next;
};

enum sim_fault_kind { FAULT_FAIL, FAULT_CLOSE_BEFORE, FAULT_CLOSE_AFTER, FAULT_STALL };

struct sim_fault {
    enum sim_fault_kind kind;
    long nth;                    /* command number (1-based, counting every executed command), 0 = by name */
    char command[64];            /* match by command name ("" = any) */
    char arg_key[64], arg_val[SIM_ID_MAX]; /* optional argument match (string compare) */
    char klass[64], desc[512];
    int remaining;               /* how many more times it fires (default 1) */
    struct sim_fault *next;
};

struct sim_unplug_rule {
    char id[SIM_ID_MAX];
    struct sim_unplug_cfg cfg;
    struct sim_unplug_rule *next;
};

struct sim_violation {
    char vsmmu[SIM_ID_MAX], device[SIM_ID_MAX], host[16], host_smmu[128], bound_smmu[128];
    struct sim_violation *next;
};

enum sim_runstate { RS_PRELAUNCH, RS_RUNNING, RS_PAUSED };

struct sim {
    /* machine */
    bool q35;
    char sysfs[SIM_PATH_MAX];    /* "" = no host devices at all */
    bool have_dev_iommu;         /* object-add without fd succeeds (--dev-iommu) */
    enum sim_runstate runstate;
    struct sim_obj *objs;
    struct sim_bus *buses;
    struct sim_dev *devs;        /* creation order */
    struct sim_ghash *peripheral, *peripheral_anon, *objects;
    struct sim_obj *o_peripheral, *o_anon, *o_objects;
    struct sim_bus *root_bus;
    int unattached_next;         /* next /machine/unattached/device[N] for pxb hosts */
    int smmu_count;
    int mr_index;                /* smmuv3-iommu-memory-region counter (global in QEMU) */
    int nic_count;
    struct sim_iommufd *iommufds;
    struct sim_netdev *netdevs;
    /* fds */
    struct sim_namedfd *namedfds;
    struct sim_fdset *fdsets;
    struct sim_keptfd *kept;
    int pending_fds[16], pending_vfds[16], npending;
    unsigned char vfd_used[1024];
    /* behaviour */
    struct sim_unplug_cfg unplug_default; /* mode AUTO: QEMU-like */
    struct sim_unplug_rule *unplug_rules;
    struct sim_fault *faults;
    struct sim_violation *violations;
    long command_count;
    int64_t vclock_offset_ms;    /* added by "advance" */
    int64_t vclock_ms;           /* virtual clock (advances while running) */
    int64_t vclock_last_real;
};

/* ---- model (sim_model.c) ---- */
struct sim *sim_new(void);
void sim_free(struct sim *s);
/* Build the machine from QEMU-style arguments (already split). Returns 0 or -1 with msg. */
int sim_machine_init(struct sim *s, bool q35);
int sim_cold_device(struct sim *s, const char *spec, char *msg, size_t msglen);
int sim_cold_object(struct sim *s, const char *spec, char *msg, size_t msglen);
void sim_machine_done(struct sim *s);

struct sim_obj *sim_obj_new(struct sim *s, const char *path, const char *type, enum sim_obj_kind kind);
void sim_obj_del(struct sim *s, struct sim_obj *o);
void sim_obj_set(struct sim_obj *o, const char *name, const char *type, json_t *value /* stolen */);
void sim_obj_unset(struct sim_obj *o, const char *name);
struct sim_obj *sim_obj_find(struct sim *s, const char *path);
/* QEMU's object_resolve_path (absolute or partial); *ambiguous set for partial paths with >1 match. */
struct sim_obj *sim_resolve(struct sim *s, const char *path, bool *ambiguous);

struct sim_dev *sim_dev_by_id(struct sim *s, const char *id);
struct sim_bus *sim_bus_by_name(struct sim *s, const char *name);
const char *sim_dev_path(const struct sim_dev *d);
const char *sim_bus_path(const struct sim_bus *b);

/* qom-list / qom-get / one object's property values */
json_t *sim_qom_list(struct sim *s, struct sim_obj *o);
/* Returns the value (new ref) or NULL with *errclass/errdesc filled. */
json_t *sim_qom_get(struct sim *s, struct sim_obj *o, const char *prop, char *desc, size_t desclen);
json_t *sim_qom_values(struct sim *s, struct sim_obj *o);

/* Plug a device onto a bus at devfn (links, QOM, hashes). Removal undoes it all. */
void sim_dev_attach(struct sim *s, struct sim_dev *d, struct sim_bus *bus, int devfn);
void sim_dev_remove(struct sim *s, struct sim_dev *d);
struct sim_dev *sim_dev_new(struct sim *s, const char *driver, const char *id);
/* A PCI device registered at (bus, devfn) behind a vSMMU gets its IOMMU address space (a memory region
 * named with QEMU's global counter) — also when its realize fails later (vfio errors). */
void sim_bus_as(struct sim *s, struct sim_bus *bus, int devfn);
/* A device realized on its bus: IOMMU address space behind a vSMMU. */
void sim_endpoint_realized(struct sim *s, struct sim_dev *d);
/* After the command line: cold-plugged vfio-pci devices bind their vSMMUs (host SMMU from --sysfs). */
void sim_bind_cold_vfio(struct sim *s);
/* A device is leaving: its vSMMU's binding ends with its last vfio-pci device. */
void sim_cmd_device_gone(struct sim *s, struct sim_dev *d);
/* The vSMMU whose primary bus is this device's root bus (through its root port), or NULL. */
struct sim_dev *sim_vsmmu_for_bus(struct sim *s, struct sim_bus *bus);

/* fds */
int sim_vfd_alloc(struct sim *s);
void sim_vfd_release(struct sim *s, int vfd);
/* Take the pending SCM_RIGHTS fd (first; closes the rest). -1 if none. */
int sim_take_pending_fd(struct sim *s, int *vfd);
void sim_drop_pending_fds(struct sim *s);
/* monitor_fd_param: name -> consumed fd (removed from the named list) or numeric fd. */
int sim_fd_param(struct sim *s, const char *name, int *vfd, char *desc, size_t desclen);
void sim_keep_fd(struct sim *s, const char *name, const char *by, int fd, int vfd);

int64_t sim_vclock(struct sim *s);
void sim_set_runstate(struct sim *s, enum sim_runstate rs);

json_t *sim_dump(struct sim *s);

#endif
