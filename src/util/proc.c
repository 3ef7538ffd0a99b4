/* proc.c — a pid's identity (start time, liveness) from /proc/PID/stat. */
#include "smmuctl/proc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Field 22 of /proc/PID/stat (starttime), after the parenthesised comm, which may itself contain spaces and
 * parentheses: parse from the last ')'. Field 3 is the state. */
unsigned long long smmu_proc_start_time(pid_t pid, bool *zombie)
{
    char path[64], buf[1024];
    if (zombie)
        *zombie = false;
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return 0;
    if (zombie)
        *zombie = p[2] == 'Z' || p[2] == 'X';
    p++; /* " S ppid …": field 3 onwards */
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}
