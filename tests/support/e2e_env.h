/* e2e_env.h — what the real-QEMU transaction tests share: QEMU 11 with the FACTS topology, a temporary
 * directory with a state dir path in it, and an empty fake sysfs, torn down in reverse. */
#ifndef SMMU_TEST_E2E_ENV_H
#define SMMU_TEST_E2E_ENV_H

#include "support/fakesys.h"
#include "support/qemu.h"

struct smmu_e2e_env {
    struct smmu_qemu *q;
    struct fakesys *fs;
    char *tmp;          /* the temporary directory (removed by smmu_e2e_env_stop) */
    char state[4096];   /* TMP/state: the --state-dir (not created) */
};

/* Skips the test without QEMU (smmu_qemu_require); starts smmu_qemu_start_facts(extra) and makes a temporary
 * directory named after `tag`. Returns 0, or -1 after printing why QEMU did not start (*e is then empty). */
int smmu_e2e_env_start(struct smmu_e2e_env *e, const char *tag, const char *const *qemu_extra);
/* Stops QEMU, frees the fake sysfs, removes the temporary directory. Safe on an env that did not start. */
void smmu_e2e_env_stop(struct smmu_e2e_env *e);

#endif
