#!/usr/bin/env python3
"""memcheck.py BUILD_DIR LABEL_REGEX — run the ctest cases matching LABEL_REGEX under valgrind memcheck.

Takes each test's command, environment and working directory from `ctest --show-only=json-v1`, runs it
under valgrind (errors and definite leaks make it exit 99), two at a time, and prints one line per test
plus a last line "memcheck: N passed, N failed". Exit status 0 only when every test passed.
Valgrind logs go to BUILD_DIR/memcheck/<test>.log.
"""
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

VALGRIND = [
    "valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
    "--show-leak-kinds=definite", "--child-silent-after-fork=yes", "--num-callers=30", "-q",
]
# Valgrind makes tests 10-50x slower; the ctest TIMEOUT is scaled, with a floor and a cap.
TIMEOUT_SCALE, TIMEOUT_MIN, TIMEOUT_MAX = 5, 300, 900
JOBS = 2


def list_tests(build_dir, labels):
    out = subprocess.run(["ctest", "--test-dir", build_dir, "--show-only=json-v1", "-L", labels],
                         check=True, capture_output=True, text=True).stdout
    tests = []
    for t in json.loads(out).get("tests", []):
        if not t.get("command"):
            continue
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        if props.get("DISABLED"):
            continue
        env = dict(os.environ)
        env["SMMU_TEST_CLI_VALGRIND"] = "1"  # the smmuctl binary the tests run goes under valgrind too
        for kv in props.get("ENVIRONMENT", []):
            k, _, v = kv.partition("=")
            env[k] = v
        timeout = float(props.get("TIMEOUT", 60)) * TIMEOUT_SCALE
        tests.append({
            "name": t["name"], "command": t["command"], "env": env,
            "cwd": props.get("WORKING_DIRECTORY", build_dir),
            "timeout": min(max(timeout, TIMEOUT_MIN), TIMEOUT_MAX),
        })
    return tests


def run_one(test, log_dir):
    log = os.path.join(log_dir, test["name"] + ".log")
    cmd = VALGRIND + ["--log-file=" + log] + test["command"]
    start = time.monotonic()
    # Own session, so a timeout kills the test and anything it started, by process group id.
    proc = subprocess.Popen(cmd, cwd=test["cwd"], env=test["env"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=test["timeout"])
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        rc = None
    return test, rc, output.decode(errors="replace"), log, time.monotonic() - start


def tail(path_or_text, lines, is_path=True):
    if is_path:
        try:
            with open(path_or_text, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
    else:
        text = path_or_text
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().split("\n")[0], file=sys.stderr)
        return 2
    build_dir, labels = os.path.abspath(sys.argv[1]), sys.argv[2]
    log_dir = os.path.join(build_dir, "memcheck")
    os.makedirs(log_dir, exist_ok=True)
    tests = list_tests(build_dir, labels)
    passed = failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=JOBS) as pool:
        for test, rc, output, log, secs in pool.map(lambda t: run_one(t, log_dir), tests):
            if rc == 0:
                passed += 1
                print(f"memcheck  ok    {test['name']} ({secs:.1f} s)", flush=True)
                continue
            failed += 1
            why = ("timed out after %d s" % test["timeout"] if rc is None else
                   "valgrind found errors or definite leaks" if rc == 99 else "test failed (exit %d)" % rc)
            print(f"memcheck  FAIL  {test['name']}: {why} ({secs:.1f} s); valgrind log {log}", flush=True)
            print(tail(log, 60))
            print(f"--- last lines of {test['name']}'s output:")
            print(tail(output, 40, is_path=False))
    print(f"memcheck: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
