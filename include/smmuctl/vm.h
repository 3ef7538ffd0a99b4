/* smmuctl/vm.h — discover a running VM's vSMMU topology over QMP (DESIGN §4, FACTS "Discovering the topology").
 *
 * QOM only, in three round trips on QEMU ≥ 10.2 (the first one pipelined):
 *   1. qom-list /machine/peripheral, /machine/peripheral-anon and /objects;
 *   2. qom-list-get of every arm-smmuv3, pxb-pcie, pcie-root-port and vfio-pci found;
 *   3. qom-list-get of every root port's secondary bus (occupants are its child[N] links).
 * Without qom-list-get (CommandNotFound) it falls back to qom-list + qom-get per wanted property, pipelined.
 * It never uses query-pci (useless for occupancy before the guest numbers buses) and never assumes
 * /machine/unattached/device[N] indexes: buses are matched by comparing QOM path strings.
 * A QEMU without user-creatable arm-smmuv3 simply yields a topology without vSMMUs.
 */
#ifndef SMMUCTL_VM_H
#define SMMUCTL_VM_H

#include "smmuctl/error.h"
#include "smmuctl/qmp.h"
#include "smmuctl/topology.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill *out (zeroed first; free with smmu_topology_free) from the connected, READY client.
 * Pumps the client's event loop (blocking). Errors: the QMP error of the failing call (-EIO with QEMU's
 * class/desc), transport errors, -EPROTO when a reply does not have the expected shape (message says which
 * command and path). */
int smmu_vm_discover(qmp_client *c, struct smmu_topology *out, struct smmu_error *err);

/* Flags for smmu_vm_discover_ex. */
#define SMMU_VM_NO_QOM_LIST_GET 0x1u /* use the qom-list + qom-get path even when qom-list-get exists
                                        (what QEMU < 10.1 forces; benchmarks and tests compare the two) */
int smmu_vm_discover_ex(qmp_client *c, unsigned flags, struct smmu_topology *out, struct smmu_error *err);

/* The property `name` of a qom-list-get style entry {"properties":[{"name","value","type"}…]}, or NULL. */
json_t *smmu_vm_prop(json_t *props_entry, const char *name);

/* Has the QOM object at `path` been created (qom-list of its parent lists it)? 1 yes, 0 no, <0 error.
 * Used by recovery to ask QEMU whether an unconfirmed object-add / device_add took effect. */
int smmu_vm_qom_exists(qmp_client *c, const char *path, struct smmu_error *err);

#ifdef __cplusplus
}
#endif
#endif
