#!/usr/bin/env python3
"""bench/compare/compare.py: the driver of `bench/compare/run.sh`: runs the pid1 and the
request comparison of two builds and prints (and writes) one table per bench with the
after/before ratio of every figure. run.sh builds the binaries and says what each
option does."""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

from common import log, spread, table, worst


def args(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="directory with supervisor and listener")
    ap.add_argument("--after", required=True)
    ap.add_argument("--before-desc", default="")
    ap.add_argument("--after-desc", default="")
    ap.add_argument("--loadgen", required=True, help="bench/request's loadgen, built")
    ap.add_argument("--only", default="pid1,request")
    ap.add_argument("--out", default="")
    ap.add_argument("--command", default="bench/compare/run.sh")
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP") or tempfile.gettempdir())
    # pid1
    ap.add_argument("--rounds", type=int, default=5, help="memory, orphans, stop")
    ap.add_argument("--settle", type=float, default=3.5)
    ap.add_argument("--true-rounds", type=int, default=20)
    ap.add_argument("--true-runs", type=int, default=15)
    ap.add_argument("--orphans", type=int, default=2000)
    ap.add_argument("--signal-rounds", type=int, default=10)
    ap.add_argument("--signals", type=int, default=30)
    # request
    ap.add_argument("--request-rounds", type=int, default=6)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--actions", type=int, default=100)
    ap.add_argument("--throughput-secs", type=int, default=3)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--cold-rounds", type=int, default=8)
    return ap.parse_args(argv)


def section(title, metrics, peers, notes, secs):
    text = [f"### {title} ({secs:.0f} s)", "", table(metrics, peers), ""]
    text += [f"- {n}" for n in notes]
    return "\n".join(text).rstrip() + "\n"


def main(argv):
    a = args(argv)
    parts = set(a.only.split(","))
    tmp = tempfile.mkdtemp(prefix="bench-compare.", dir=a.tmp)
    t_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()
    load0 = os.getloadavg()
    out, everything = [], []
    try:
        if "pid1" in parts:
            if os.geteuid() != 0:
                log("bench/compare: pid1 needs root (PID namespaces); run with --only request")
                return 2
            import pid1
            t = time.monotonic()
            metrics, peers, notes = pid1.run(a.before, a.after, tmp, a)
            out.append(section("bench/pid1: as PID 1 (`unshare --pid --fork --mount-proc`)",
                               metrics, peers, notes, time.monotonic() - t))
            everything += metrics
        if "request" in parts:
            import request
            t = time.monotonic()
            a.rounds = a.request_rounds
            metrics, notes = request.run(a.before, a.after, tmp, a.loadgen, a)
            out.append(section("bench/request: the request socket under the real supervisor",
                               metrics, [], notes, time.monotonic() - t))
            everything += metrics
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    secs = time.monotonic() - t0
    load1 = os.getloadavg()
    bad, sp = worst(everything), spread(everything)
    summary = ""
    if sp:
        summary = (f"Distance of the {sp[3]} after/before ratios from 1.00: median "
                   f"{sp[0]:.2f}, largest {sp[1]:.2f} ({sp[2]}). Worst for after: {bad[0]}, "
                   f"{bad[1]:.2f}x {'worse' if bad[1] > 1 else 'better'}.")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), "?")
    head = (f"## before/after: {t_start}, {secs / 60:.1f} minutes\n\n"
            f"Command: `{a.command}`  \n"
            f"before: {a.before_desc or a.before}  \nafter: {a.after_desc or a.after}  \n"
            f"Machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}; load "
            f"average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end.\n\n"
            "Figures are medians over rounds (each round measures every build in turn, the "
            "order rotating); after/before is the ratio of the medians, the per-round "
            "column the range of the paired rounds' own ratios.\n")
    text = head + "\n" + "\n".join(out) + ("\n" + summary + "\n" if summary else "")
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write("# bench/compare results\n\n" + text)
        log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
