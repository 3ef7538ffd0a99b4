/* sim_server.h — run qmp-sim's loop for one or many VMs until SIGTERM/SIGINT or every VM's "quit". */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include "sim.h"
#include "sim_srv.h"

/* One simulated VM: its model and where it listens. */
struct sim_srv_vm {
    struct sim *s;
    const char *qmp_path;     /* required */
    const char *control_path; /* optional */
    const char *dump_path;    /* --dump-on-exit */
};

/* Serve `n` VMs on one loop until each has quit (QMP or control `quit`) or SIGTERM/SIGINT ends them all.
 * `ready_fd` (-1 = none) is written "R" and closed once every socket listens. Returns the exit code. */
int sim_srv_run(const struct sim_srv_vm *vms, int n, int ready_fd);

/* Control-protocol objects ({"kind":…}, {"id":…,"mode":…}), also used for --fault / --unplug. */
int sim_srv_add_fault(struct sim *s, json_t *spec, char *err, size_t errlen);
int sim_srv_set_unplug(struct sim *s, json_t *spec, char *err, size_t errlen);

#endif
