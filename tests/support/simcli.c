/* simcli.c — see simcli.h. */
#include "support/simcli.h"

#include <stdlib.h>

#include "support/testutil.h"

int simcli_setup(void **st, const char *tag, const struct fakesys_dev *devs, size_t n, int nvsmmu, int ports,
                 const char *const *extra)
{
    struct simcli *f = calloc(1, sizeof(*f));
    const char *args[32];
    size_t a = 0;
    if (!f)
        return -1;
    f->fs = fakesys_new(NULL);
    for (size_t i = 0; i < n; i++)
        fakesys_add_dev(f->fs, &devs[i]);
    for (size_t i = 0; extra && extra[i] && a < 29; i++)
        args[a++] = extra[i];
    args[a++] = "--sysfs";
    args[a++] = fakesys_root(f->fs);
    args[a] = NULL;
    if (simh_start_vm(&f->h, nvsmmu, ports, 0, args) < 0) {
        fakesys_free(f->fs);
        free(f);
        return -1;
    }
    f->state = smmu_test_mkdtemp(tag);
    *st = f;
    return 0;
}

int simcli_teardown(void **st)
{
    struct simcli *f = *st;
    simh_stop(f->h);
    fakesys_free(f->fs);
    smmu_test_rmtree(f->state);
    free(f->state);
    free(f);
    return 0;
}
