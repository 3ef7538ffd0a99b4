/* qemu.h — the one helper tests use to run real QEMU 11 (installed by scripts/install-qemu11).
 *
 * QEMU runs as a DIRECT child of the test (fork + execv of DIR/bin/qemu-system-<arch>, a wrapper that
 * execs QEMU through its own loader, so the PID we hold is QEMU's), paused (-S), with no default devices,
 * no display, and one QMP server socket in a private temp dir. Every started QEMU is also registered so
 * that none outlives the test: smmu_qemu_stop_all() runs at exit, can be used as a cmocka teardown
 * (smmu_qemu_teardown), and the child gets PR_SET_PDEATHSIG so it dies if the test process is killed
 * (the death signal follows the THREAD that started QEMU: start it from a thread that outlives it).
 *
 * Where QEMU is found: $SMMUCTL_QEMU_DIR, else $HOME/.cache/smmuctl/qemu11 (install-qemu11's default).
 */
#ifndef SMMU_TEST_QEMU_H
#define SMMU_TEST_QEMU_H

#include <sys/types.h>

struct smmu_qemu;

/* Start QEMU for `arch` ("aarch64" → -M virt, "x86_64" → -M q35) with `args` (NULL-terminated extra
 * arguments, may be NULL) appended after the helper's own:
 *   -nodefaults -display none -S -qmp unix:<tmp>/qmp.sock,server=on,wait=off -M <machine>
 * stdout/stderr go to <tmp>/qemu.log. Returns once a raw client connected, read the greeting line
 * `{"QMP": …}` and got a query-status reply (QEMU greets BEFORE it parses -device, so only a reply proves
 * the command line was accepted), then disconnected, so the socket is free for the test's client; bounded
 * by ~10 s.
 * Success: 0 and *out = a new handle the caller stops with smmu_qemu_stop().
 * Failure: negative errno, *out = NULL, no process left behind; the reason (with QEMU's log text) is
 * printed on stderr and kept in smmu_qemu_last_error(). -ENOENT when QEMU is not installed. */
int smmu_qemu_start(struct smmu_qemu **out, const char *arch, const char *const *args);

/* SIGTERM to QEMU's PID, wait (bounded, ~5 s), SIGKILL if still alive, reap it, remove the temp dir
 * and free q. NULL is a no-op. */
void smmu_qemu_stop(struct smmu_qemu *q);

/* Stop every QEMU started by this process and not stopped yet (registered with atexit()). */
void smmu_qemu_stop_all(void);
/* cmocka teardown form of smmu_qemu_stop_all(): `cmocka_unit_test_teardown(test, smmu_qemu_teardown)`. */
int smmu_qemu_teardown(void **state);

/* Accessors; strings live as long as q. */
const char *smmu_qemu_socket_path(const struct smmu_qemu *q); /* <tmp>/qmp.sock */
pid_t smmu_qemu_pid(const struct smmu_qemu *q);
const char *smmu_qemu_log_path(const struct smmu_qemu *q);    /* <tmp>/qemu.log */
const char *smmu_qemu_tmpdir(const struct smmu_qemu *q);

/* Connect a blocking raw client to q's QMP socket (CLOEXEC). Returns the fd or a negative errno.
 * QEMU serves one client at a time: close it before another client (e.g. smmuctl) connects. */
int smmu_qemu_connect(const struct smmu_qemu *q);

/* The text of q's log so far (malloc'ed, caller frees; "" when empty, NULL on error). */
char *smmu_qemu_read_log(const struct smmu_qemu *q);

/* Message of the last failed smmu_qemu_start() in this process ("" if none). */
const char *smmu_qemu_last_error(void);

/* The install dir in use ($SMMUCTL_QEMU_DIR or the default). */
const char *smmu_qemu_dir(void);

/* 1 when scripts/install-qemu11 completed in smmu_qemu_dir() (stamp and both wrappers present), else 0. */
int smmu_qemu_available(void);

/* For e2e tests, first thing in a test (or group setup): returns when QEMU is available; otherwise
 * fails the test with a message saying to run scripts/install-qemu11 — or skips it (cmocka skip())
 * when SMMUCTL_SKIP_E2E=1. */
void smmu_qemu_require(void);

/* The topology of shared/qemu11/FACTS.md, as NULL-terminated -device arguments for aarch64 virt:
 * pxb-pcie pcie.1 (bus_nr=252) with root ports rp1a, rp1b; pxb-pcie pcie.2 (bus_nr=248) with rp2a, rp2b
 * (chassis/port 1..4); arm-smmuv3 smmuv3.1 on pcie.1 and smmuv3.2 on pcie.2. */
const char *const *smmu_qemu_facts_topology(void);
/* smmu_qemu_start("aarch64") with the FACTS topology followed by `extra` (NULL-terminated, may be NULL). */
int smmu_qemu_start_facts(struct smmu_qemu **out, const char *const *extra);

#endif
