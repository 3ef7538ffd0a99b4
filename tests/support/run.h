/* run.h — run a program (usually the smmuctl binary) as a child and capture what it prints. */
#ifndef SMMU_TEST_RUN_H
#define SMMU_TEST_RUN_H

#include <sys/types.h>

struct smmu_run {
    int status;      /* exit code, or 128+signal when killed by a signal, or -1 when it could not run */
    char *out;       /* stdout (NUL-terminated, never NULL after a run) */
    char *err;       /* stderr */
};

/* Run argv (argv[0] is a path) with extra environment entries ("K=V", NULL-terminated, may be NULL), waiting
 * at most timeout_ms (then SIGKILL; status 128+9). Returns r->status. */
int smmu_run(struct smmu_run *r, const char *const *argv, const char *const *env, int timeout_ms);
void smmu_run_free(struct smmu_run *r);

/* The smmuctl binary under test ($SMMUCTL_BIN, else SMMU_BINARY_DIR/smmuctl). */
const char *smmu_run_smmuctl(void);

#endif
