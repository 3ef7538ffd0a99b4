/* replay_rig.h — smmuctl's own QMP client connected to the in-process replay server playing one fixture, for
 * tests that drive the library (discovery, qom_exists, facts) against recorded or synthetic QMP sessions.
 *
 * replay_rig_start serves qmp-fixtures/NAME on a socketpair and connects a client to it as the CLI does (OOB
 * negotiated), pumping until the session is ready; replay_rig_finish frees the client and requires the
 * server's verdict: the client sent exactly the fixture's commands. Both abort the test on failure. */
#ifndef SMMU_TEST_REPLAY_RIG_H
#define SMMU_TEST_REPLAY_RIG_H

#include <stdbool.h>
#include <event2/event.h>
#include "smmuctl/error.h"
#include "smmuctl/qmp.h"
#include "replay/replay_server.h"

#define REPLAY_RIG_PUMP_MS 5000 /* how long the rig waits for the connect and for the server's verdict */

struct replay_rig {
    struct event_base *base;
    qmp_client *c;
    struct replay_server *s;
    char fixture[512];        /* full path of the fixture */
    bool state_done;          /* the first connection-state callback came */
    int state_err;            /* its err (0: ready) */
    struct smmu_error state_e;
};

/* command_timeout_ms: the client's per-command timeout (qmp_client_opts; 0 = the library's default). */
void replay_rig_start(struct replay_rig *r, const char *name, int command_timeout_ms);
void replay_rig_finish(struct replay_rig *r);

#endif
