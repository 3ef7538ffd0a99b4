/* test_cli_fit.c — BAR-window-aware placement through the CLI against qmp-sim (issue 12.3).
 *
 * The VM: pxb pcie.1 with vSMMU smmuv3.1 and root ports rp1a (no reserves, lowest), rp1b (pref64-reserve=64G:
 * too small), rp1c (pref64-reserve=256G,mem-reserve=16M: fits). The host: a Grace-Blackwell-like GPU on
 * vfio-pci (needs a 256 GiB pref64 window and 16 MiB of mem window, by layout's rule). `plan`/`attach` prefer
 * rp1c over the lower rp1a; on a VM without a fitting port they use rp1a and warn (text on stderr, --json
 * "warnings"); with --require-fit they refuse, exit 2, and qmp-sim's dump shows nothing but discovery ran
 * (the same number of commands as a plain `topology`, no device, no iommufd object).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "support/fakesys.h"
#include "support/runcli.h"
#include "support/sim_harness.h"
#include "support/testutil.h"

#define GPU "0009:01:00.0"
#define S1 "smmu3.0x0000000016000000"

struct rig {
    struct fakesys *fs;
    struct simh *h;
    char *state;
};

static void rig_start(struct rig *r, bool fitting_port)
{
    const char *args[] = {
        "-device", "pxb-pcie,id=pcie.1,bus_nr=252,bus=pcie.0",
        "-device", "pcie-root-port,id=rp1a,bus=pcie.1,chassis=1,port=1",
        "-device", "pcie-root-port,id=rp1b,bus=pcie.1,chassis=2,port=2,pref64-reserve=64G",
        "-device", fitting_port ? "pcie-root-port,id=rp1c,bus=pcie.1,chassis=3,port=3,pref64-reserve=256G,mem-reserve=16M"
                                : "pcie-root-port,id=rp1c,bus=pcie.1,chassis=3,port=3,pref64-reserve=256G,mem-reserve=8M",
        "-device", "arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1",
        "--dev-iommu", "--sysfs", NULL, NULL};
    r->fs = fakesys_new(NULL);
    fakesys_add_dev(r->fs, &(struct fakesys_dev){.bdf = GPU, .smmu = S1, .driver = "vfio-pci", .group = "1",
                                                  .cdev = "vfio0", .numa_node = "0",
                                                  .resource = FAKESYS_RESOURCE_GPU});
    args[sizeof(args) / sizeof(args[0]) - 2] = fakesys_root(r->fs);
    assert_int_equal(simh_start(&r->h, args), 0);
    r->state = smmu_test_mkdtemp("cli-fit");
}

static void rig_stop(struct rig *r)
{
    assert_int_equal(simh_stop(r->h), 0);
    fakesys_free(r->fs);
    smmu_test_rmtree(r->state);
    free(r->state);
}

static int cli(struct rig *r, struct smmu_run *out, const char *const *extra)
{
    const char *common[] = {"--qmp", simh_qmp_path(r->h), "--state-dir", r->state, "--sysfs", fakesys_root(r->fs),
                            NULL};
    return smmu_run_cli_with(out, common, extra, 30000);
}

static long commands(struct rig *r)
{
    json_t *d = simh_dump(r->h);
    long n = (long)json_integer_value(json_object_get(d, "command_count"));
    json_decref(d);
    return n;
}

static void test_prefers_fitting_port(void **state)
{
    struct rig r;
    struct smmu_run o;
    (void)state;
    rig_start(&r, true);
    assert_int_equal(cli(&r, &o, (const char *[]){"--json", "plan", GPU, NULL}), 0);
    json_t *j = smmu_run_json(&o);
    json_t *pl = json_array_get(json_object_get(j, "placements"), 0);
    assert_string_equal(json_string_value(json_object_get(pl, "port")), "rp1c"); /* not the lower rp1a */
    assert_true(json_is_true(json_object_get(pl, "fits")));
    assert_int_equal(json_array_size(json_object_get(j, "warnings")), 0);
    json_decref(j);
    smmu_run_free(&o);
    /* attach does the same, with --require-fit satisfied */
    assert_int_equal(cli(&r, &o, (const char *[]){"attach", "--require-fit", GPU, NULL}), 0);
    if (!strstr(o.out, "on rp1c"))
        fail_msg("attach went elsewhere: %s", o.out);
    assert_null(strstr(o.err, "warning"));
    smmu_run_free(&o);
    rig_stop(&r);
}

static void test_warns_when_none_fits(void **state)
{
    struct rig r;
    struct smmu_run o;
    (void)state;
    rig_start(&r, false);
    /* plan: lowest port, one warning with what is missing and the QEMU option that fixes it */
    assert_int_equal(cli(&r, &o, (const char *[]){"--json", "plan", GPU, NULL}), 0);
    json_t *j = smmu_run_json(&o);
    json_t *pl = json_array_get(json_object_get(j, "placements"), 0);
    assert_string_equal(json_string_value(json_object_get(pl, "port")), "rp1a");
    assert_true(json_is_false(json_object_get(pl, "fits")));
    json_t *w = json_object_get(j, "warnings");
    assert_int_equal(json_array_size(w), 1);
    const char *msg = json_string_value(json_array_get(w, 0));
    assert_non_null(strstr(msg, GPU " on rp1a: no free root port behind vSMMU smmuv3.1 has windows that fit"));
    assert_non_null(strstr(msg, "pref64-reserve unset, the 64-bit prefetchable BARs need 256 GiB"));
    assert_non_null(strstr(msg, "pref64-reserve=256G,mem-reserve=16M"));
    json_decref(j);
    smmu_run_free(&o);
    assert_int_equal(cli(&r, &o, (const char *[]){"plan", GPU, NULL}), 0);
    assert_non_null(strstr(o.err, "warning: " GPU " on rp1a: no free root port"));
    smmu_run_free(&o);

    /* --require-fit: refused, exit 2, and nothing but discovery reached QEMU */
    long before = commands(&r);
    assert_int_equal(cli(&r, &o, (const char *[]){"topology", NULL}), 0);
    long discovery = commands(&r) - before;
    smmu_run_free(&o);
    before = commands(&r);
    assert_int_equal(cli(&r, &o, (const char *[]){"--json", "attach", "--require-fit", GPU, NULL}), 2);
    j = smmu_run_json(&o);
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                           "--require-fit: " GPU " on rp1a: no free root port"));
    json_decref(j);
    smmu_run_free(&o);
    assert_int_equal(commands(&r) - before, discovery);
    assert_int_equal(cli(&r, &o, (const char *[]){"plan", "--require-fit", GPU, NULL}), 2);
    smmu_run_free(&o);
    json_t *d = simh_dump(r.h);
    assert_null(simh_dump_device(d, "hostdev-0009-01-00.0"));
    assert_non_null(json_object_get(d, "objects"));
    assert_int_equal(json_array_size(json_object_get(d, "objects")), 0); /* no iommufd object added */
    json_decref(d);

    /* attach without it goes ahead and warns, in --json "warnings" (and as text on stderr) */
    assert_int_equal(cli(&r, &o, (const char *[]){"--json", "attach", GPU, NULL}), 0);
    j = smmu_run_json(&o);
    assert_int_equal(json_array_size(json_object_get(j, "warnings")), 1);
    msg = json_string_value(json_array_get(json_object_get(j, "warnings"), 0));
    if (!msg || !strstr(msg, "see smmuctl layout)")) /* whole, not cut at a buffer's end */
        fail_msg("attach's warning is cut: %s", msg ? msg : "(none)");
    json_decref(j);
    smmu_run_free(&o);
    d = simh_dump(r.h);
    assert_non_null(simh_dump_device(d, "hostdev-0009-01-00.0")); /* the dump does show what attach did */
    assert_int_equal(json_array_size(json_object_get(d, "objects")), 1);
    json_decref(d);
    assert_int_equal(cli(&r, &o, (const char *[]){"detach", "hostdev-0009-01-00.0", NULL}), 0);
    smmu_run_free(&o);
    assert_int_equal(cli(&r, &o, (const char *[]){"attach", GPU, NULL}), 0);
    assert_non_null(strstr(o.err, "warning: " GPU " on rp1a: no free root port"));
    assert_non_null(strstr(o.out, "attached " GPU));
    smmu_run_free(&o);
    rig_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefers_fitting_port),
        cmocka_unit_test(test_warns_when_none_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
