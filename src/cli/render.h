/* render.h — text output of `smmuctl topology` and `smmuctl plan` (for people; --json is the stable form),
 * and the fact gathering both share. */
#ifndef SMMUCTL_CLI_RENDER_H
#define SMMUCTL_CLI_RENDER_H

#include <stdio.h>

#include "cli/cli.h"
#include "smmuctl/plan.h"
#include "smmuctl/topology.h"
#include "smmuctl/txn.h"

/* The topology as a tree: each vSMMU → its pxb-pcie → its root ports → occupant, then the root ports behind
 * no vSMMU, the iommufd objects and vfio-pci devices that sit on no known root port. Anonymous ports are
 * shown by QOM path and marked unusable. */
void render_topology(FILE *out, const struct smmu_topology *t);

/* A plan: per device its host SMMU, vSMMU, root port and the reason, the bindings it creates, then the QMP
 * commands in order as compact JSON (as they go on the wire, minus the id the client adds), with the files
 * passed by SCM_RIGHTS noted after each getfd. */
void render_plan(FILE *out, const struct smmu_topology *t, const struct smmu_plan *p);

/* For the read-only commands: connect, read the journal if there is one (never create it), discover the
 * topology and complete it with sysfs facts (smmu_facts_gather). Facts warnings go to stderr in text mode.
 * Returns 0 with *f filled (free with smmu_facts_free), or the exit code after printing the error:
 * 3 when QEMU cannot be reached or read (nothing was changed). Defined in cmd_topology.c. */
int cli_read_facts(struct cli *cli, const char *command, struct smmu_facts *f);

#endif
