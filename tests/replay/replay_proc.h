/* replay_proc.h — run the `qmp-replay` program as a child, for CLI tests that spawn smmuctl against it.
 *
 *   struct replay_proc *p;
 *   replay_proc_start(&p, SMMU_FIXTURES_DIR "/x.txt", sock, NULL, &err);   // returns once the socket accepts
 *   … run `smmuctl --qmp unix:<sock> …` …
 *   if (replay_proc_wait(p, 10000) != 0) fail_msg("%s", replay_proc_report(p));
 *   replay_proc_free(p);
 */
#ifndef SMMU_REPLAY_PROC_H
#define SMMU_REPLAY_PROC_H

#include <sys/types.h>
#include "smmuctl/error.h"

struct replay_proc;

/* Path of the qmp-replay program: $SMMU_QMP_REPLAY if set, else SMMU_BINARY_DIR/tests/qmp-replay. */
const char *replay_proc_binary(void);

/* Start `qmp-replay [extra_args…] FIXTURE SOCKET` (extra_args: NULL-terminated, e.g. {"--timeout","2000",NULL},
 * or NULL) and wait (at most 5 s) until it listens. Returns 0, or a negative errno with err filled (the child is
 * gone then; a bad fixture gives -ECHILD and qmp-replay's "file:line: what is wrong"). */
int replay_proc_start(struct replay_proc **out, const char *fixture, const char *socket_path,
                      const char *const *extra_args, struct smmu_error *err);

pid_t replay_proc_pid(const struct replay_proc *p);

/* Wait at most timeout_ms for it to exit (it exits by itself: the client closed, or its own timeouts passed).
 * Returns its exit status (0 exact match, 1 difference, 2 usage/bad fixture), or -ETIMEDOUT after killing it. */
int replay_proc_wait(struct replay_proc *p, int timeout_ms);

/* What it printed on stderr (the replay report on a difference); "" before replay_proc_wait. */
const char *replay_proc_report(const struct replay_proc *p);

/* Kills it if still running, reaps it, frees. */
void replay_proc_free(struct replay_proc *p);

#endif
