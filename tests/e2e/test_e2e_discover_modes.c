/* test_e2e_discover_modes.c — against real QEMU 11, discovery through qom-list-get (3 round trips) and through
 * the qom-list + qom-get fallback (what QEMU < 10.1 forces) must find the same topology. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smmuctl/qmp.h"
#include "support/qmp_sync.h"
#include "smmuctl/vm.h"
#include "support/qemu.h"

static char *discover(const char *sock, unsigned flags, bool *used_list_get)
{
    struct event_base *base = event_base_new();
    qmp_client *c;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct smmu_topology t;
    assert_int_equal(qmp_client_new(&c, base, NULL), 0);
    assert_int_equal(qmp_client_connect_sync(c, sock, &err), 0);
    if (smmu_vm_discover_ex(c, flags, &t, &err) < 0)
        fail_msg("discover: %s", err.message);
    *used_list_get = t.has_qom_list_get;
    json_t *j = smmu_topology_to_json(&t);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    smmu_topology_free(&t);
    qmp_client_free(c);
    event_base_free(base);
    return s;
}

static void test_modes_agree(void **state)
{
    (void)state;
    smmu_qemu_require();
    struct smmu_qemu *q;
    /* a cold NIC, and an anonymous root port whose secondary bus is also called "pcie.0" */
    assert_int_equal(smmu_qemu_start_facts(&q, (const char *[]){"-netdev", "user,id=cold0", "-device",
                                                                "e1000e,netdev=cold0,bus=rp2b,id=coldnic", "-device",
                                                                "pcie-root-port,bus=pcie.0,chassis=9", NULL}), 0);
    bool batched_used = false, single_used = true;
    char *batched = discover(smmu_qemu_socket_path(q), 0, &batched_used);
    char *single = discover(smmu_qemu_socket_path(q), SMMU_VM_NO_QOM_LIST_GET, &single_used);
    assert_true(batched_used);
    assert_false(single_used);
    assert_string_equal(batched, single);
    assert_non_null(strstr(batched, "\"occupant\":{\"driver\":\"e1000e\",\"id\":\"coldnic\"}"));
    free(batched);
    free(single);
    smmu_qemu_stop(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_modes_agree)};
    return cmocka_run_group_tests(tests, NULL, smmu_qemu_teardown);
}
