#!/usr/bin/env python3
"""bench_report.py — scripts/bench's last step: the figures the benchmarks appended (one JSON object per line)
into bench/results.json, with the machine they ran on, and one table on stdout."""
import argparse
import json
import os
import platform
import time


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    return "%.3f" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", default="0")
    ap.add_argument("--load-before", default="")
    ap.add_argument("--load-after", default="")
    ap.add_argument("--qemu", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--seconds", type=int, default=0)
    a = ap.parse_args()
    figures, notes, runs = [], [], []
    with open(a.raw) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            o = json.loads(line)
            if "bench" in o:
                runs.append(o)
            elif "note_id" in o:
                notes.append(o)
            else:
                figures.append(o)
    res = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": a.commit,
        "mode": "quick" if a.quick == "1" else "full",
        "seconds": a.seconds,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "load_before": a.load_before,
            "load_after": a.load_after,
            "note": "load averages of the whole machine (1, 5, 15 min) when the run started and ended; "
                    "other processes shared the cores",
        },
        "qemu": a.qemu,
        "benchmarks": runs,
        "notes": notes,
        "figures": figures,
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    m = res["machine"]
    print()
    print("smmuctl benchmarks (%s run, %s s): %s, %d cores, Linux %s, %s" % (
        res["mode"], a.seconds, m["cpu"], m["cores"] or 0, m["kernel"], a.qemu or "no QEMU"))
    print("load average before %s, after %s" % (a.load_before, a.load_after))
    hdr = "%-4s %-66s %10s %-5s %14s %10s %7s %s" % ("item", "figure", "median", "unit", "min..max",
                                                       "baseline", "ratio", "goal")
    print(hdr)
    print("-" * len(hdr))
    for fg in figures:
        v = fg["value"]
        spread = "%s..%s" % (fmt(v["min"]), fmt(v["max"])) if v.get("n", 1) > 1 else "exact"
        base = fg.get("baseline")
        goal = fg.get("goal")
        gtxt = ""
        if goal:
            gtxt = "%s<=%s %s" % (goal["of"], fmt(goal["max"]), "met" if fg.get("met") else "NOT MET")
        print("%-4s %-66s %10s %-5s %14s %10s %7s %s" % (
            fg["item"], fg["what"][:66], fmt(v["median"]), fg["unit"], spread,
            fmt(base["value"]["median"]) if base else "-",
            ("%.2fx" % fg["ratio"]) if "ratio" in fg else "-", gtxt))
    for n in notes:
        print("note %s: %s" % (n["note_id"], n["text"]))
    for r in runs:
        if r["exit"] != 0:
            print("FAILED: %s exited %d" % (r["bench"], r["exit"]))


if __name__ == "__main__":
    main()
