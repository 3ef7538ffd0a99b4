/* simcli.h — the usual fixture of a CLI test against qmp-sim: a fake host (fakesys) holding the given
 * devices, one simulated VM reading that sysfs, and a private state dir. As a cmocka setup/teardown:
 *
 *   static int setup(void **st)
 *   {
 *       return simcli_setup(st, "cli-x", devs, n_devs, 1, 2, (const char *[]){"--dev-iommu", NULL});
 *   }
 *   static int teardown(void **st) { return simcli_teardown(st); }
 *   ... struct simcli *f = *st;  f->fs, f->h, f->state
 */
#ifndef SMMU_TEST_SIMCLI_H
#define SMMU_TEST_SIMCLI_H

#include "support/fakesys.h"
#include "support/sim_harness.h"

struct simcli {
    struct fakesys *fs;
    struct simh *h;
    char *state; /* the state dir (--state-dir), removed by simcli_teardown */
};

/* Fake host with devs (n of them), qmp-sim with nvsmmu vSMMUs of `ports` root ports each (simh_start_vm, no
 * accel), started with `extra` (may be NULL) then `--sysfs <fake root>`; *st = the fixture. 0, or -1. */
int simcli_setup(void **st, const char *tag, const struct fakesys_dev *devs, size_t n, int nvsmmu, int ports,
                 const char *const *extra);
/* Stops the simulator, removes the fake host and the state dir. Returns 0. */
int simcli_teardown(void **st);

#endif
