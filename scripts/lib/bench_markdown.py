#!/usr/bin/env python3
"""bench_markdown.py RESULTS.json — bench/results.json as the Markdown table README's Performance section shows
(one row per figure with a baseline or a goal, plus the exact counts), for pasting after a run."""
import json
import sys


def fmt(v):
    a = abs(v)
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    return "%.3f" % v


def main():
    r = json.load(open(sys.argv[1]))
    m = r["machine"]
    print("%s run of %s, %s: %s, %s cores, Linux %s, %s; load average %s at the start, %s at the end." % (
        r["mode"], r["commit"], r["generated"], m["cpu"], m["cores"], m["kernel"], r["qemu"],
        m["load_before"], m["load_after"]))
    print()
    print("| item | figure | median | min..max | baseline (same run) | ratio | goal |")
    print("|---|---|---:|---:|---|---:|---|")
    for f in r["figures"]:
        v = f["value"]
        spread = "%s..%s" % (fmt(v["min"]), fmt(v["max"])) if v.get("n", 1) > 1 else "exact"
        b = f.get("baseline")
        base = "%s: %s" % (b["what"], fmt(b["value"]["median"])) if b else ""
        ratio = "%.2fx" % f["ratio"] if "ratio" in f else ""
        g = f.get("goal")
        goal = ""
        if g:
            goal = "%s ≤ %s: %s" % (g["of"], fmt(g["max"]), "met" if f.get("met") else "**not met**")
        print("| %s | %s | %s %s | %s | %s | %s | %s |" % (f["item"], f["what"].strip(), fmt(v["median"]), f["unit"],
                                                       spread, base, ratio, goal))
    for n in r["notes"]:
        print()
        print("- `%s`: %s" % (n["note_id"], n["text"]))


if __name__ == "__main__":
    main()
