/* progress.h — a one-line "still working" indicator on stderr during long waits (an unplug the guest is slow
 * to finish, a reconnect, a lock held by another smmuctl), shown only when stderr is a terminal and not with
 * --quiet; nothing at all otherwise (logs and pipes stay clean). Updated once a second on the CLI's loop. */
#ifndef SMMUCTL_CLI_PROGRESS_H
#define SMMUCTL_CLI_PROGRESS_H

#include "cli/cli.h"
#include "smmuctl/engine.h"

struct cli_progress;

/* Start ticking for `command` running on `vm` (detach: name the guest wait, up to unplug_timeout_ms).
 * NULL when there is nothing to show (stderr not a terminal, --quiet) or on allocation failure. */
struct cli_progress *cli_progress_start(struct cli *cli, const char *command, smmu_vm *vm, int unplug_timeout_ms);
/* Stop and erase the line. NULL is fine. */
void cli_progress_stop(struct cli_progress *p);
/* Erase the line now if one is shown (before any other stderr output); the next tick draws it again. */
void cli_progress_clear(struct cli *cli);

#endif
