/* sim_server.h — run qmp-sim's loop until SIGTERM/SIGINT, a control "quit" or QMP "quit". */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include "sim.h"
#include "sim_srv.h"

struct sim_srv_opts {
    const char *qmp_path;     /* required */
    const char *control_path; /* optional */
    const char *dump_path;    /* --dump-on-exit */
    int ready_fd;             /* written "R" and closed once listening (-1 = none) */
};

/* Returns the process exit code. */
int sim_srv_run(struct sim *s, const struct sim_srv_opts *opts);

/* Control-protocol objects ({"kind":…}, {"id":…,"mode":…}), also used for --fault / --unplug. */
int sim_srv_add_fault(struct sim *s, json_t *spec, char *err, size_t errlen);
int sim_srv_set_unplug(struct sim *s, json_t *spec, char *err, size_t errlen);

#endif
