/* runcli.h — run the smmuctl binary ($SMMUCTL_BIN) as a child process and capture what it prints.
 *
 *   struct smmu_run r;
 *   smmu_run_cli(&r, (const char *[]){"--qmp", sock, "--json", "topology", NULL}, 20000);
 *   assert_int_equal(r.status, 0);
 *   json_t *o = smmu_run_json(&r);          // stdout parsed as exactly one JSON object
 *   smmu_run_free(&r);
 *
 * The child is a direct child (fork + execv), its stdin is /dev/null, and it is killed (SIGKILL, by PID) if
 * it has not exited within the bound, so a hanging smmuctl fails the test instead of hanging it.
 */
#ifndef SMMU_TEST_RUNCLI_H
#define SMMU_TEST_RUNCLI_H

#include <stdbool.h>
#include <jansson.h>

struct smmu_run {
    int status;     /* exit code; 128+N when killed by signal N; -1 when it could not be run */
    bool timed_out; /* killed because it ran past the bound */
    char *out;      /* everything it wrote to stdout (NUL-terminated, malloc'ed) */
    char *err;      /* everything it wrote to stderr */
};

/* The binary: $SMMUCTL_BIN, else SMMU_BINARY_DIR/smmuctl. */
const char *smmu_run_cli_path(void);

/* Run smmuctl with args (NULL-terminated, argv[1]…). Always fills *r (free with smmu_run_free); returns
 * r->status. Any failure to start is reported in r->err with status -1. */
int smmu_run_cli(struct smmu_run *r, const char *const *args, int timeout_ms);

/* The same with the arguments `common` (a test's fixed options: --qmp, --state-dir, …) followed by `extra`;
 * either list may be NULL. */
int smmu_run_cli_with(struct smmu_run *r, const char *const *common, const char *const *extra, int timeout_ms);

/* Run any program (path, args with argv[0] first) the same way. */
int smmu_run_prog(struct smmu_run *r, const char *path, const char *const *argv, int timeout_ms);

/* stdout as one JSON value (new reference), or NULL when it is not exactly one JSON text. */
json_t *smmu_run_json(const struct smmu_run *r);

void smmu_run_free(struct smmu_run *r);

#endif
