#!/usr/bin/env python3
"""report.py: the arithmetic of tests/bench/run (Python 3 standard library only).

Each summary subcommand reads the raw samples a driver wrote and prints shell assignments
(NAME=VALUE, one a line) for the script to eval; `table` prints the final table.

    report.py exec FILE PREFIX          execbench output: per command I, PREFIX<I>_{n,fail,med_us,
                                        p95_us,rss_kib,rss_max_kib}; PREFIX_self_kib
    report.py loop FILE PREFIX          pambench loop output: per service I, PREFIX<I>_{n,fail,
                                        cycle_us,oc_us,cycle_p95_us}
    report.py cold FILE PREFIX          pambench cold output: PREFIX_{n,fail,med_ms,p95_ms}
    report.py storm FILE STATS PREFIX   pambench storm output and the server's /__stats JSON:
                                        PREFIX_{n,opened,ok,valid,p50_ms,p95_ms,max_ms,
                                        open_p50_ms}; valid = opened, read a token with exit 0,
                                        and the server issued that token
    report.py perf FILE PAIRS PREFIX    perf stat -x, output: PREFIX_{execs,forks} per session
                                        (less the exec of the driver itself)
    report.py calc EXPR                 print a Python arithmetic expression's value
    report.py table FILE                the table: TAB-separated rows, aligned
"""

import json
import math
import statistics
import sys


def pct(values, p):
    """The p-th percentile, nearest rank (p95 of 100 values is the 95th smallest)."""
    if not values:
        return float("nan")
    v = sorted(values)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def say(prefix, **kv):
    for k, v in kv.items():
        if isinstance(v, float):
            v = "nan" if math.isnan(v) else ("%.2f" % v if abs(v) < 100 else "%.1f" % v)
        print("%s_%s=%s" % (prefix, k, v))


def rows(path):
    with open(path) as f:
        return [l.split() for l in f if l.strip()]


def cmd_exec(path, prefix):
    by = {}
    for r in rows(path):
        if r[0] == "self_maxrss_kib":
            say(prefix, self_kib=int(r[1]))
            continue
        by.setdefault(r[0], []).append((int(r[1]), int(r[2]), int(r[3])))
    for i, s in sorted(by.items()):
        ns = [x[0] for x in s]
        rss = [x[1] for x in s]
        say(prefix + i, n=len(s), fail=sum(1 for x in s if x[2] != 0),
            med_us=statistics.median(ns) / 1e3, p95_us=pct(ns, 95) / 1e3,
            rss_kib=int(statistics.median(rss)), rss_max_kib=max(rss))


def cmd_loop(path, prefix):
    by = {}
    for r in rows(path):
        by.setdefault(r[0], []).append((int(r[1]), int(r[2]), int(r[3]), int(r[4])))
    for i, s in sorted(by.items()):
        cyc = [x[0] for x in s]
        say(prefix + i, n=len(s), fail=sum(1 for x in s if x[2] != 0 or x[3] != 0),
            cycle_us=statistics.median(cyc) / 1e3, cycle_p95_us=pct(cyc, 95) / 1e3,
            oc_us=statistics.median(x[1] for x in s) / 1e3)


def cmd_cold(path, prefix):
    s = [(int(r[1]), int(r[2])) for r in rows(path)]
    ok = [x[0] for x in s if x[1] == 0]
    say(prefix, n=len(s), fail=len(s) - len(ok),
        med_ms=statistics.median(ok) / 1e6 if ok else float("nan"),
        p95_ms=pct(ok, 95) / 1e6)


def cmd_storm(path, stats_path, prefix):
    issued = set()
    if stats_path != "-":
        with open(stats_path) as f:
            issued = set(json.load(f).get("issued", []))
    opens = [r for r in rows(path) if r[0] == "open" and len(r) == 8]
    n = next((int(r[1]) for r in rows(path) if r[0] == "opened"), 0)
    ok = [r for r in opens if r[3] == "0"]
    valid = [r for r in ok if r[6] == "0" and r[7] != "-" and (not issued or r[7] in issued)]
    lat = [int(r[4]) for r in ok]
    say(prefix, n=len(opens), opened=n, ok=len(ok), valid=len(valid),
        p50_ms=pct(lat, 50) / 1e6, p95_ms=pct(lat, 95) / 1e6, max_ms=max(lat or [0]) / 1e6,
        open_p50_ms=pct([int(r[5]) for r in ok], 50) / 1e6)


def cmd_perf(path, pairs, prefix):
    counts = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 2 and f[2].startswith("sched:"):
            try:
                counts[f[2]] = int(f[0])
            except ValueError:
                counts[f[2]] = -1
    pairs = float(pairs)
    # perf starts the driver with one exec of its own: not the sessions'
    say(prefix, execs=(counts.get("sched:sched_process_exec", 0) - 1) / pairs,
        forks=counts.get("sched:sched_process_fork", -1) / pairs)


def cmd_table(path):
    head = ["#", "measure", "figure", "baseline (same run; 5: the ideal)", "ratio", "target", "result"]
    body = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    body = [r + [""] * (len(head) - len(r)) for r in body]
    w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()
    print(line(head))
    print("  ".join("-" * x for x in w))
    for r in body:
        print(line(r))


def main(argv):
    cmd = argv[1]
    if cmd == "exec":
        cmd_exec(argv[2], argv[3])
    elif cmd == "loop":
        cmd_loop(argv[2], argv[3])
    elif cmd == "cold":
        cmd_cold(argv[2], argv[3])
    elif cmd == "storm":
        cmd_storm(argv[2], argv[3], argv[4])
    elif cmd == "perf":
        cmd_perf(argv[2], argv[3], argv[4])
    elif cmd == "calc":
        names = {"max": max, "min": min, "abs": abs, "float": float, "nan": float("nan")}
        v = eval(argv[2], {"__builtins__": {}}, names)
        print(v if isinstance(v, (bool, int)) else "%.2f" % v)
    elif cmd == "table":
        cmd_table(argv[2])
    else:
        sys.exit("report.py: unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
