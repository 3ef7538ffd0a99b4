/* e2e_env.c — the real-QEMU transaction tests' shared environment (see e2e_env.h). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/e2e_env.h"
#include "support/testutil.h"

int smmu_e2e_env_start(struct smmu_e2e_env *e, const char *tag, const char *const *qemu_extra)
{
    memset(e, 0, sizeof(*e));
    smmu_qemu_require();
    if (smmu_qemu_start_facts(&e->q, qemu_extra) < 0) {
        fprintf(stderr, "cannot start QEMU: %s\n", smmu_qemu_last_error());
        e->q = NULL;
        return -1;
    }
    e->tmp = smmu_test_mkdtemp(tag);
    e->fs = fakesys_new(NULL);
    snprintf(e->state, sizeof(e->state), "%s/state", e->tmp);
    return 0;
}

void smmu_e2e_env_stop(struct smmu_e2e_env *e)
{
    if (e->q)
        smmu_qemu_stop(e->q);
    if (e->fs)
        fakesys_free(e->fs);
    if (e->tmp) {
        smmu_test_rmtree(e->tmp);
        free(e->tmp);
    }
    memset(e, 0, sizeof(*e));
}
