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

/* Discovery is a step machine on the client's event loop: smmu_vm_discover_start sends the first round trip
 * and returns at once (it never runs the loop); the callback runs from the loop, exactly once, when the
 * topology is complete or discovery failed. Freeing or closing the client fails the calls in flight, so the
 * callback then runs with their error (-ECANCELED / -ECONNRESET) before qmp_client_free returns.
 *
 * Callback: err == 0 → *out (the caller's struct, given to start; it must live until the callback) is filled
 * and owned by the caller (smmu_topology_free); e == NULL. err < 0 → *out is empty (freed), e (borrowed, valid
 * during the callback) is the QMP error of the failing call (-EIO with QEMU's class/desc, message naming the
 * command and path), a transport error, or -EPROTO when a reply does not have the expected shape. */
typedef void (*smmu_vm_discover_cb)(int err, const struct smmu_error *e, void *payload);

/* Flags for smmu_vm_discover_start. */
#define SMMU_VM_NO_QOM_LIST_GET 0x1u /* use the qom-list + qom-get path even when qom-list-get exists
                                        (what QEMU < 10.1 forces; benchmarks and tests compare the two) */
/* Start discovering the topology of the connected, READY client into *out (zeroed now). Returns 0 (the
 * callback will run) or -ENOMEM (it will not). Non-blocking. */
int smmu_vm_discover_start(qmp_client *c, unsigned flags, struct smmu_topology *out, smmu_vm_discover_cb cb,
                           void *payload);

/* The property `name` of a qom-list-get style entry {"properties":[{"name","value","type"}…]}, or NULL. */
json_t *smmu_vm_prop(json_t *props_entry, const char *name);

/* Has the QOM object at `path` been created (qom-list of its parent lists it)? Used by recovery to ask QEMU
 * whether an unconfirmed object-add / device_add took effect. Non-blocking: sends one qom-list and returns 0,
 * or fails at once (<0, err set, cb not called: e.g. -ENOTCONN). cb runs once from the loop with found 1 (yes),
 * 0 (no) or <0 (the call failed or the reply has the wrong shape; e borrowed for the callback). */
typedef void (*smmu_vm_exists_cb)(int found, const struct smmu_error *e, void *payload);
int smmu_vm_qom_exists_start(qmp_client *c, const char *path, smmu_vm_exists_cb cb, void *payload,
                             struct smmu_error *err);

#ifdef __cplusplus
}
#endif
#endif
