/* test_cli_state.c — status against what QEMU really has, and the state dir (issue 15 item 6):
 *   - `status` with an empty journal lists the vfio-pci devices QEMU has that the journal does not know
 *     (QEMU is the truth), in text and --json, cold- or hot-plugged;
 *   - a read-only run (status with nothing to settle, topology) leaves no journal file behind;
 *   - an unusable state dir is exit 2 with the errno name and a hint, and nothing is sent.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/simcli.h"
#include "support/testutil.h"

#define SMMU_A "smmu3.0x0000000016000000"

static int setup(void **st)
{
    const struct fakesys_dev dev = {.bdf = "0009:01:00.0", .smmu = SMMU_A, .driver = "vfio-pci", .group = "1",
                                    .cdev = "vfio1"};
    return simcli_setup(st, "cli-state", &dev, 1, 1, 2,
                        (const char *[]){"-device", "vfio-pci,host=0009:01:00.0,bus=rp1a,id=cold0", NULL});
}

static int teardown(void **st)
{
    return simcli_teardown(st);
}

static size_t count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l >= s && !strcmp(e->d_name + l - s, suffix))
            n++;
    }
    closedir(d);
    return n;
}

static void test_status_lists_devices_the_journal_does_not_know(void **st)
{
    struct simcli *f = *st;
    struct smmu_run r;
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"--qmp", simh_qmp_path(f->h), "--state-dir", f->state,
                                                        "--sysfs", fakesys_root(f->fs), "status", NULL}, 30000), 0);
    assert_non_null(strstr(r.out, "vfio-pci devices in QEMU that smmuctl did not attach (1)"));
    assert_non_null(strstr(r.out, "cold0"));
    assert_non_null(strstr(r.out, "0009:01:00.0"));
    assert_non_null(strstr(r.out, "cold-plugged"));
    smmu_run_free(&r);
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"--qmp", simh_qmp_path(f->h), "--state-dir", f->state,
                                                        "--sysfs", fakesys_root(f->fs), "--json", "status", NULL},
                                  30000), 0);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    assert_int_equal(json_array_size(json_object_get(o, "attached")), 0);
    json_t *u = json_object_get(o, "unknown");
    assert_int_equal(json_array_size(u), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(u, 0), "id")), "cold0");
    assert_string_equal(json_string_value(json_object_get(json_array_get(u, 0), "port")), "rp1a");
    assert_true(json_is_false(json_object_get(json_array_get(u, 0), "hotplugged")));
    json_decref(o);
    smmu_run_free(&r);
    /* read-only: nothing to settle, so no journal was written */
    assert_int_equal(count_files(f->state, ".json"), 0);
}

static void test_unusable_state_dir(void **st)
{
    struct simcli *f = *st;
    struct smmu_run r;
    char file[4096], sub[4200];
    snprintf(file, sizeof(file), "%s/plain-file", f->state);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(sub, sizeof(sub), "%s/below", file);
    assert_int_equal(smmu_run_cli(&r, (const char *[]){"--qmp", simh_qmp_path(f->h), "--state-dir", sub, "--sysfs",
                                                        fakesys_root(f->fs), "--json", "attach", "0009:01:00.0",
                                                        NULL}, 30000), 2);
    json_t *o = smmu_run_json(&r);
    assert_non_null(o);
    json_t *e = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "ENOTDIR");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "--state-dir"));
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "SMMUCTL_STATE_DIR"));
    json_decref(o);
    smmu_run_free(&r);
    /* nothing that changes QEMU was sent: only the cold-plugged device, no object */
    json_t *after = simh_dump(f->h);
    json_t *devs = json_object_get(after, "devices");
    size_t i;
    json_t *d;
    json_array_foreach(devs, i, d)
        assert_string_not_equal(json_string_value(json_object_get(d, "id")), "hostdev-0009-01-00.0");
    assert_int_equal(json_array_size(json_object_get(after, "objects")), 0); /* no iommufd object either */
    json_decref(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_lists_devices_the_journal_does_not_know, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable_state_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
