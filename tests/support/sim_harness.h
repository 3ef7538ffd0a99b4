/* sim_harness.h — run qmp-sim (the QEMU 11 QMP simulator, tests/sim) from a test and talk to it.
 *
 *   struct simh *h;
 *   const char *args[] = {"-S", "-device", "pxb-pcie,id=pcie.1,bus_nr=252", …, "--sysfs", root, NULL};
 *   assert_int_equal(simh_start(&h, args), 0);          // listening when it returns
 *   // point smmuctl / the library at simh_qmp_path(h); or be a raw client:
 *   int fd = simh_qmp_open(h);                           // greeting read, capabilities negotiated
 *   json_t *r = simh_qmp_cmd(fd, "{\"execute\":\"query-status\"}", -1, 2000);
 *   simh_fault(h, "{\"kind\":\"fail\",\"command\":\"device_add\",\"desc\":\"boom\"}");
 *   json_t *d = simh_dump(h);                            // state: devices, objects, fds, violations …
 *   simh_qmp_close(fd);
 *   simh_stop(h);                                        // SIGTERM by PID, reaped, temp dir removed
 *
 * qmp-sim runs as a DIRECT child (fork + execv, PID kept; PR_SET_PDEATHSIG kills it if the test dies),
 * with its QMP and control sockets in a private temp dir. The control socket speaks one JSON object per
 * line (see docs/qmp-sim.md), so tests never occupy the single QMP client slot. Every started simulator
 * is stopped at exit if the test forgot. Failures print a reason on stderr and return negative errno.
 *
 * Binary: $QMP_SIM_BIN, else SMMU_BINARY_DIR/tests/sim/qmp-sim.
 */
#ifndef SMMU_SIM_HARNESS_H
#define SMMU_SIM_HARNESS_H

#include <sys/types.h>
#include <jansson.h>

struct simh;

/* Start qmp-sim with `args` (NULL-terminated, may be NULL) after its own --qmp/--control; returns once it
 * listens (bounded, ~10 s). 0 and *out, or negative errno with nothing left running. */
int simh_start(struct simh **out, const char *const *args);
/* A standard VM for tests, as qmp-sim arguments (NULL-terminated, static storage, valid until the next
 * call): `nvsmmu` arm-smmuv3 smmuv3.<i> (accel=on when `accel`), each on its own pxb-pcie pcie.<i>
 * (bus_nr 250-8(i-1), numa_node (i-1)/2) with `ports` root ports rp<i>a, rp<i>b, … (chassis = port = a running
 * number), i from 1. Append your own (e.g. "--sysfs", root) with simh_start_vm. */
const char *const *simh_topology(int nvsmmu, int ports, int accel);
/* simh_start with simh_topology(nvsmmu, ports, accel) followed by `extra` (NULL-terminated, may be NULL). */
int simh_start_vm(struct simh **out, int nvsmmu, int ports, int accel, const char *const *extra);

/* One qmp-sim process playing `n` independent VMs (qmp-sim --vms n), each started with `args`. The handle
 * returned is VM 0 and owns the process; simh_vm(h, k) is VM k's view (borrowed, freed by simh_stop(h)):
 * simh_qmp_path, simh_control, simh_dump, simh_fault … on a view talk to that VM only. */
int simh_start_vms(struct simh **out, int n, const char *const *args);
/* VM k (0-based) of a --vms simulator (h or any of its views); NULL when out of range. simh_vm(h, 0) is h for a
 * one-VM simulator. */
struct simh *simh_vm(struct simh *h, int k);
/* How many VMs the simulator plays (1 unless started by simh_start_vms). */
int simh_nvms(const struct simh *h);

/* SIGTERM to the PID, bounded wait, SIGKILL if needed, reap, remove the temp dir, free. Returns the
 * simulator's exit status (0 on a clean exit), -1 if it had to be killed. NULL: returns 0. A view of a --vms
 * simulator (simh_vm(h, k), k > 0) is refused (-1): stop h. */
int simh_stop(struct simh *h);

const char *simh_qmp_path(const struct simh *h);     /* <tmp>/qmp.sock (--vms: <tmp>/vmK.qmp) */
const char *simh_control_path(const struct simh *h); /* <tmp>/ctl.sock (--vms: <tmp>/vmK.ctl) */
const char *simh_dir(const struct simh *h);          /* private temp dir, removed by simh_stop */
pid_t simh_pid(const struct simh *h);

/* Control channel: send one command (a JSON object text) and return the reply object ({"ok":true,…});
 * NULL on I/O error. Caller decrefs. */
json_t *simh_control(struct simh *h, const char *json_line);
/* The state dump ({"devices":[…], "objects":[…], "fds":{…}, "violations":[…], "command_count":N, …}). */
json_t *simh_dump(struct simh *h);
/* Convenience wrappers: 0 when the simulator said ok, else -EINVAL (reason on stderr). */
int simh_fault(struct simh *h, const char *fault_json);
int simh_unplug(struct simh *h, const char *unplug_json);
int simh_advance(struct simh *h, int ms);
/* The dump's device entry with this id (borrowed from *dump), or NULL. */
json_t *simh_dump_device(json_t *dump, const char *id);

/* Raw QMP client (blocking, CLOEXEC). connect: just connected (the greeting is not read — a second client
 * gets none until the first leaves). open: connected, greeting read, qmp_capabilities done. */
int simh_qmp_connect(const struct simh *h);
int simh_qmp_open(const struct simh *h);
/* Send text + "\n", with one fd as SCM_RIGHTS when passfd >= 0. 0 or negative errno. */
int simh_qmp_send(int fd, const char *text, int passfd);
/* Next message within timeout_ms (events included, unless queued by simh_qmp_cmd: those come first).
 * NULL on timeout/EOF. uint64 values beyond json_int_t come back as reals. */
json_t *simh_qmp_recv(int fd, int timeout_ms);
/* Send a command and return its reply (the first message with "return" or "error"); events received
 * meanwhile are queued for simh_qmp_wait_event/simh_qmp_recv. NULL on timeout/EOF. */
json_t *simh_qmp_cmd(int fd, const char *cmd_json, int passfd, int timeout_ms);
/* Wait for an event named `name` (and, when device != NULL, data.device == device). Queued events first. */
json_t *simh_qmp_wait_event(int fd, const char *name, const char *device, int timeout_ms);
/* 1 if the reply is {"error":{"class":klass,…}} with desc equal to `desc` (NULL: any desc). */
int simh_is_error(const json_t *reply, const char *klass, const char *desc);
/* Close the client and drop its queued events. */
void simh_qmp_close(int fd);

#endif
