#!/usr/bin/env python3
"""bench/compare/pid1.py: two bosun builds as PID 1 side by side with tini, in one run.

Imported by compare.py. It measures with bench/pid1/bench.py's own pieces (its PID
namespace runner, its `-- /bin/true` timer, its footprint round, its orphan program), so
each figure means what it means there; what is new is that both builds run in every
round, in alternating order, and one row compares them. Run as a program it is the main
process of the signal-forwarding probe:

  pid1.py sigmain SOCK   blocks USR1, sends `ready` to SOCK (a unix datagram socket),
                         then for each USR1 sends its CLOCK_MONOTONIC time (ns) to SOCK
"""
import os
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sigmain(path):
    """The main process of the forwarding probe. sigwaitinfo, not a handler: the time is
    taken as soon as the kernel hands the signal over, not at Python's next bytecode."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"ready", path)
    while True:
        signal.sigwaitinfo({signal.SIGUSR1})
        s.sendto(str(time.monotonic_ns()).encode(), path)


if __name__ == "__main__" and sys.argv[1:2] == ["sigmain"]:
    sigmain(sys.argv[2])
    sys.exit(0)

from common import BENCH, Metric, load, log, med, pct, rotate  # noqa: E402

pb = load("pid1bench", os.path.join(BENCH, "pid1", "bench.py"))
PEERS = [("tini", "tini", "tini"), ("tini-static", "tini", "tini-static"),
         ("dumb-init", "dumb-init", "dumb-init"), ("catatonit", "catatonit", "catatonit")]
STATES = (("boot", "booted"), ("ping", "after a `ping`"), ("request", "after an action"))


def inits(before, after, tmp):
    """The two builds (directories with supervisor and listener) and whichever of the
    footprint's peers are installed, each preflighted (bosun: `-- /bin/true` exits 0) and
    run from a private copy. Returns (inits, {name: why skipped})."""
    cands = [pb.Variant("before", before, {}), pb.Variant("after", after, {})]
    cands += [pb.Peer(n, k, pb.shutil.which(e) or e) for n, k, e in PEERS]
    live, skipped = [], {}
    for p in cands:
        why = pb.preflight(p, tmp)
        if why:
            if p.kind == "bosun":
                raise RuntimeError(f"{p.name}: {why}")
            skipped[p.name] = why
        else:
            live.append(p)
    return live, skipped


def memory(bench, live, rounds, settle):
    """bench/pid1's footprint round: every init at once, sampled `settle` s after boot,
    after a `ping` and after one action (bosun); anonymous and Pss of supervisor+listener."""
    ms = {}
    for key, unit in (("Anonymous", "anonymous"), ("Pss", "Pss")):
        for st, title in STATES:
            ms[(key, st)] = Metric(f"{unit}, {title}", "kB", fmt="{:.0f}")
    for r in range(rounds):
        res = pb.footprint_round(bench, rotate(live, r), settle)
        for name, v in res.items():
            if "error" in v:
                log(f"  memory round {r + 1}: {name}: {v['error']}")
            for (key, st), m in ms.items():
                if st in v and key in v[st]:
                    m.add(name, r, v[st][key])
        log(f"  memory round {r + 1}: " + "; ".join(
            f"{n}: anon {v.get('boot', {}).get('Anonymous')}/{v.get('request', {}).get('Anonymous')}"
            f" pss {v.get('boot', {}).get('Pss')}/{v.get('request', {}).get('Pss')}"
            for n, v in res.items()))
    return list(ms.values())


def startup(bench, live, rounds, runs):
    """`INIT -- /bin/true`, as PID 1 (`unshare --pid --fork --mount-proc`) and not, timed by
    bench/pid1's interleaved timer; one figure per round (the median of its runs)."""
    uns = ["unshare", "--pid", "--fork", "--mount-proc"]
    cmds = {}
    for p in live:
        w = bench.work("true-" + p.name)
        t = p.true_argv(w)
        t1 = [p.exe] + t[2:] if t[:2] == [p.exe, "-s"] else t  # tini: no -s as PID 1
        cmds["pid1:" + p.name] = (uns + t1, p.env(w))
        cmds[p.name] = (t, p.env(w))
    timed = pb.time_true(cmds, rounds, runs, bench.tmp, slow_s=1.0)
    as1 = Metric("`-- /bin/true` as PID 1", "ms")
    not1 = Metric("`-- /bin/true`, not PID 1", "ms")
    for label, v in timed.items():
        if not v or not v["times"]:
            continue
        m, name = (as1, label[5:]) if label.startswith("pid1:") else (not1, label)
        for r in range(rounds):
            m.add(name, r, med(v["times"][r * runs:(r + 1) * runs]) * 1000)
    return [as1, not1]


def orphans_once(bench, peer, n, tag):
    """One run of bench/pid1's orphan program under peer: {clear_ms, lag_ms, pid1_cpu_ms}."""
    out = os.path.join(bench.tmp, f"orphans-{tag}.json")
    main = [pb.PY, os.path.join(pb.HERE, "bench.py"), "orphans", out, str(n)]
    p = bench.start(peer, main, "orph")
    try:
        got = pb.wait_for(lambda: os.path.exists(out) and pb.read(out), 150, 0.05)
        return pb.json.loads(got) if got else {"error": "timeout (150 s)"}
    finally:
        p.kill()


def orphans(bench, live, rounds, n):
    ms = [Metric(f"{n:,} orphans: release → all reaped", "ms"),
          Metric(f"{n:,} orphans: last exit → all reaped (lag)", "ms"),
          Metric(f"{n:,} orphans: PID 1's CPU while reaping", "ms")]
    for r in range(rounds):
        for p in rotate(live, r):
            o = orphans_once(bench, p, n, f"{p.name}-{r}")
            if "error" in o:
                log(f"  orphans {p.name} round {r + 1}: {o['error']}")
                continue
            for m, k in zip(ms, ("clear_ms", "lag_ms", "pid1_cpu_ms")):
                m.add(p.name, r, o.get(k))
        log(f"  orphans round {r + 1}: " + "; ".join(
            f"{p.name} {ms[0].values.get(p.name, [None])[-1]}" for p in live))
    return ms


def forwarding(bench, live, rounds, per):
    """USR1 sent to PID 1 from outside (as `docker kill -s USR1`) → the main process has it:
    every init up at once running sigmain, `per` signals to each in turn per round."""
    p50 = Metric("signal forwarding: USR1 to PID 1 → main has it, p50", "ms", fmt="{:.3f}")
    p90 = Metric("signal forwarding: USR1 to PID 1 → main has it, p90", "ms", fmt="{:.3f}")
    procs = []
    try:
        for i, peer in enumerate(live):
            path = os.path.join(bench.tmp, f"sig-{i}.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(path)
            s.settimeout(20)
            p = bench.start(peer, [pb.PY, os.path.abspath(__file__), "sigmain", path], "sig")
            procs.append((peer, p, s))
        for peer, p, s in list(procs):
            try:
                s.recv(64)
            except OSError as e:
                log(f"  forwarding: {peer.name}: main not ready: {e}")
                procs.remove((peer, p, s))
            s.settimeout(5)
        time.sleep(0.5)
        for r in range(rounds):
            for peer, p, s in rotate(procs, r):
                lat = []
                for _ in range(per):
                    t0 = time.monotonic_ns()
                    os.kill(p.pid, signal.SIGUSR1)
                    try:
                        lat.append((int(s.recv(64)) - t0) / 1e6)
                    except (OSError, ValueError) as e:
                        log(f"  forwarding: {peer.name}: no answer to USR1: {e}")
                        break
                p50.add(peer.name, r, pct(lat, 0.5))
                p90.add(peer.name, r, pct(lat, 0.9))
    finally:
        for _, p, s in procs:
            p.kill()
            s.close()
    return [p50, p90]


def stops(bench, live, rounds):
    """TERM to PID 1 → PID 1 gone, the main process exiting 0 on TERM (bench/pid1's stop)."""
    m = Metric("stop: TERM to PID 1 → exited (main exits on TERM)", "ms", fmt="{:.1f}")
    codes = {}
    for r in range(rounds):
        for p in rotate(live, r):
            s = bench.stop(p, "exit")
            if "s" in s:
                m.add(p.name, r, s["s"] * 1000)
                codes.setdefault(p.name, set()).add(s.get("code"))
            else:
                log(f"  stop {p.name} round {r + 1}: {s}")
    return [m], codes


def exit_codes(bench, live):
    """`INIT -- sh -c 'exit 3'` and `... 'kill -TERM $$'`: PID 1's exit code, once each."""
    return {p.name: (bench.exit_code(p, ["sh", "-c", "exit 3"]),
                     bench.exit_code(p, ["sh", "-c", "kill -TERM $$"])) for p in live}


def run(before, after, tmp, a):
    """Every measurement, in order; returns (metrics, peers measured, notes)."""
    import atexit
    atexit.register(pb.cleanup)
    bench = pb.Bench(tmp)
    live, skipped = inits(before, after, tmp)
    peers = [p.name for p in live if p.kind != "bosun"]
    notes = [f"{n} not measured: {w}" for n, w in skipped.items()]
    metrics = []
    log(f"== pid1: memory, {a.rounds} rounds of every init at once ({a.settle} s settle)")
    metrics += memory(bench, live, a.rounds, a.settle)
    log(f"== pid1: `-- /bin/true`, {a.true_rounds} interleaved rounds of {a.true_runs} runs")
    metrics += startup(bench, live, a.true_rounds, a.true_runs)
    log(f"== pid1: {a.orphans} orphans, {a.rounds} rounds")
    metrics += orphans(bench, live, a.rounds, a.orphans)
    log(f"== pid1: signal forwarding, {a.signal_rounds} rounds of {a.signals} USR1")
    metrics += forwarding(bench, live, a.signal_rounds, a.signals)
    log(f"== pid1: stop, {a.rounds} rounds")
    ms, stop_codes = stops(bench, live, a.rounds)
    metrics += ms
    codes = exit_codes(bench, live)
    agree = "agree" if codes["before"] == codes["after"] else "**differ**"
    notes.append("Exit codes, `-- sh -c 'exit 3'` / `-- sh -c 'kill -TERM $$'` / the stop "
                 "above: " + "; ".join(
                     f"{n} {c[0]} / {c[1]} / {'/'.join(map(str, sorted(stop_codes.get(n, []))))}"
                     for n, c in codes.items()) + f" (before and after {agree}).")
    return metrics, peers, notes
