/* smmuctl/proc.h — which process is which: a pid's identity from /proc (util; depends on nothing else).
 *
 * A pid alone does not name a process: pids are reused. A pid together with its start time (field 22 of
 * /proc/PID/stat, clock ticks since boot) does, for as long as the machine stays up. */
#ifndef SMMUCTL_PROC_H
#define SMMUCTL_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The start time of `pid` (0 = this process). 0 when it cannot be read (no such process). When `zombie` is
 * not NULL it is set true for a process that has exited and awaits its parent (state Z or X): it runs nothing.
 * Reads /proc only, never blocks. */
unsigned long long smmu_proc_start_time(pid_t pid, bool *zombie);

#ifdef __cplusplus
}
#endif
#endif
