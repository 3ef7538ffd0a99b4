/* smmuctl/topology.h — a VM's vSMMU / pxb / root-port topology as discovered from QEMU (DESIGN §4).
 *
 * Plain data, filled by smmu_vm_discover() (src/vm/) and read by the planner (src/plan/) and front-ends.
 * Strings are NUL-terminated and truncated safely; ids are QEMU device ids ("" for anonymous devices).
 *
 * Contracts: every function here is pure and never blocks. The caller owns the struct and its arrays (free
 * them with smmu_topology_free); lookups return indices into those arrays, valid until it is freed.
 */
#ifndef SMMUCTL_TOPOLOGY_H
#define SMMUCTL_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "smmuctl/error.h"
#include "smmuctl/bdf.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SMMU_ID_LEN 128
#define SMMU_PATH_LEN 256

/* A pcie-root-port's resource reserve properties as QEMU 11 reports them when they are not set on the command
 * line: the "size" ones (pref64/pref32/mem/io-reserve) 18446744073709551615, bus-reserve (a uint32) 4294967295.
 * Firmware then sizes the port's windows itself — for a hot-plug port with nothing behind it at boot, AAVMF/EDK2
 * and Linux give a minimal memory window and no prefetchable one. */
#define SMMU_RESERVE_UNSET UINT64_MAX
#define SMMU_BUS_RESERVE_UNSET UINT32_MAX

/* One reserve hint. Zero-initialised = unset, which is also what a port without the property (ioh3420) has. */
struct smmu_reserve {
    bool set;                        /* the property holds a value other than QEMU's "unset" default */
    uint64_t value;                  /* bytes (buses for bus-reserve); 0 when unset */
};

struct smmu_vsmmu {
    char id[SMMU_ID_LEN];            /* QEMU id ("smmuv3.1"); "" if anonymous */
    char path[SMMU_PATH_LEN];        /* QOM path */
    bool accel;
    int identifier;                  /* QEMU's creation-order identifier */
    char primary_bus[SMMU_PATH_LEN]; /* QOM path of the pxb's root bus */
    char pxb_id[SMMU_ID_LEN];        /* the pxb-pcie id (= last component of primary_bus) */
    int bus_nr;                      /* pxb bus_nr (acpi_uid), -1 unknown */
    int numa_node;                   /* pxb numa_node, -1 when unset (QEMU reports 128 for unset) */
    char bound_smmu[128];            /* host SMMU bound to this vSMMU (from vfio-pci devices / journal), "" if none */
};

struct smmu_rootport {
    char id[SMMU_ID_LEN];            /* "" if anonymous (then it cannot be addressed by smmuctl) */
    char path[SMMU_PATH_LEN];
    int chassis, port;
    bool hotplug;                    /* the port's `hotplug` property */
    char parent_bus[SMMU_PATH_LEN];  /* QOM path of the bus the port sits on */
    char bus_name[SMMU_ID_LEN];      /* last component of parent_bus ("pcie.0", "pcie.1") */
    char sec_bus[SMMU_PATH_LEN];     /* QOM path of its secondary bus */
    char occupant_id[SMMU_ID_LEN];   /* device on the port ("" if free); QOM path's last component */
    char occupant_path[SMMU_PATH_LEN];
    char occupant_driver[64];        /* its QOM type ("e1000e", "vfio-pci") */
    int vsmmu;                       /* index into topology.vsmmus, -1 if behind no vSMMU */
    int slot;                        /* PCI slot on parent_bus (`addr` devfn >> 3), -1 unknown (the qom-get
                                        fallback does not fetch it) */
    /* resource reserve hints QEMU gives firmware for the port's windows (DESIGN §8) */
    struct smmu_reserve pref64_reserve;  /* `pref64-reserve`: the 64-bit prefetchable window */
    struct smmu_reserve pref32_reserve;  /* `pref32-reserve`: a 32-bit prefetchable one (QEMU: not with pref64) */
    struct smmu_reserve mem_reserve;     /* `mem-reserve`: the non-prefetchable (32-bit) window, < 4 GiB */
    struct smmu_reserve io_reserve;      /* `io-reserve` */
    struct smmu_reserve bus_reserve;     /* `bus-reserve`: buses below the port */
};

/* A pxb-pcie expander bus, with or without a vSMMU on it (the vSMMU's copy of bus_nr/numa_node is the same). */
struct smmu_pxb {
    char id[SMMU_ID_LEN];            /* QEMU id = the name of its root bus ("" if anonymous) */
    char path[SMMU_PATH_LEN];
    int bus_nr;                      /* -1 unknown */
    int numa_node;                   /* -1 unset (QEMU's 128) */
    int slot;                        /* PCI slot on its parent bus (pcie.0), -1 unknown */
    int vsmmu;                       /* index into topology.vsmmus of the vSMMU on it, -1 none */
};

struct smmu_vfio_dev {
    char id[SMMU_ID_LEN];
    char path[SMMU_PATH_LEN];
    char host[SMMU_BDF_LEN + 1];     /* canonical BDF from `host` ("" if passed by fd) */
    char iommufd[SMMU_ID_LEN];       /* iommufd object id ("" if legacy container) */
    int rootport;                    /* index into topology.ports, -1 if not on a known root port */
    bool hotplugged;
};

/* A device id and the host device behind it, known from outside QOM (the journal: fd-passed vfio-pci devices
 * have no `host` property). */
struct smmu_id_host {
    char id[SMMU_ID_LEN];
    char bdf[SMMU_BDF_LEN + 1];
};

struct smmu_topology {
    int qemu_major, qemu_minor, qemu_micro;
    bool has_qom_list_get;           /* qom-list-get was used */
    struct smmu_vsmmu *vsmmus;   size_t n_vsmmus;
    struct smmu_rootport *ports; size_t n_ports;
    struct smmu_vfio_dev *vfio;  size_t n_vfio;
    char (*iommufds)[SMMU_ID_LEN]; size_t n_iommufds;
    struct smmu_pxb *pxbs;       size_t n_pxbs;   /* every pxb-pcie, in discovery order (sorted by id) */
};

void smmu_topology_free(struct smmu_topology *t);  /* frees members, not t itself */
/* A deep copy of src into *dst (overwritten; free it with smmu_topology_free). 0 or -ENOMEM (*dst empty). */
int smmu_topology_copy(struct smmu_topology *dst, const struct smmu_topology *src);

/* Lookups: index or -1. */
int smmu_topology_find_port(const struct smmu_topology *t, const char *id);
int smmu_topology_find_vsmmu(const struct smmu_topology *t, const char *id);
int smmu_topology_find_vfio(const struct smmu_topology *t, const char *id);
int smmu_topology_find_pxb(const struct smmu_topology *t, const char *id);
bool smmu_topology_has_iommufd(const struct smmu_topology *t, const char *id);

/* Indices (into t->ports) of the ports behind vSMMU `want` — or, with want == -2, behind no known vSMMU —
 * in display order (chassis, port, id). idx must have room for t->n_ports. Returns how many. */
size_t smmu_topology_ports_of(const struct smmu_topology *t, int want, size_t *idx);

/* The documented, stable JSON form (README "topology --json"). Returns a new reference. */
json_t *smmu_topology_to_json(const struct smmu_topology *t);
/* Its inverse, for a front-end that gets the document from elsewhere (`smmuctl --server`): *t filled so that
 * smmu_topology_to_json(t) gives doc's members back (extra members, e.g. the command's "ok", are ignored).
 * What the document does not carry is made up consistently: an occupant's QOM path is "<port path>/<id>"
 * (a vfio-pci entry on that port gets the same), a vfio-pci on no port "/machine/peripheral/<id>", slots
 * -1, no pxbs list. 0, or -EPROTO (err says which member is wrong; *t empty) / -ENOMEM. */
int smmu_topology_from_json(const json_t *doc, struct smmu_topology *t, struct smmu_error *err);

#ifdef __cplusplus
}
#endif
#endif
