/* replay_rig.c — smmuctl's client against the in-process replay server (see replay_rig.h). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "support/qmp_sync.h"
#include "support/replay_rig.h"

static void rig_state_cb(qmp_client *c, int err, const struct smmu_error *e, void *payload)
{
    struct replay_rig *r = payload;
    (void)c;
    if (r->state_done)
        return; /* later disconnects */
    r->state_done = true;
    r->state_err = err;
    smmu_error_copy(&r->state_e, e);
}

void replay_rig_start(struct replay_rig *r, const char *name, int command_timeout_ms)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    int fd;
    memset(r, 0, sizeof(*r));
    o.negotiate_oob = true; /* as the CLI, which made the recordings */
    o.command_timeout_ms = command_timeout_ms;
    snprintf(r->fixture, sizeof(r->fixture), "%s/%s", SMMU_FIXTURES_DIR, name);
    if (replay_server_start_opts(&r->s, r->fixture, NULL, &fd, NULL, &err) < 0)
        fail_msg("%s", err.message);
    assert_non_null(r->base = event_base_new());
    assert_int_equal(qmp_client_new(&r->c, r->base, &o), 0);
    assert_int_equal(qmp_client_connect_fd(r->c, fd, rig_state_cb, r), 0);
    if (qmp_pump_until(r->base, &r->state_done, REPLAY_RIG_PUMP_MS) < 0 || r->state_err)
        fail_msg("%s: connect failed: %s", name, r->state_e.message);
}

void replay_rig_finish(struct replay_rig *r)
{
    qmp_client_free(r->c);
    if (replay_server_wait(r->s, REPLAY_RIG_PUMP_MS) != 0)
        fail_msg("%s: the client did not play the fixture exactly:\n%s", r->fixture, replay_server_report(r->s));
    replay_server_free(r->s);
    event_base_free(r->base);
}
