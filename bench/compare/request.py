"""bench/compare/request.py: the request socket of two bosun builds, both up at once.

Imported by compare.py. Each build runs as a container runs it, `supervisor -- sleep
infinity` with its own listener (the default lazy start: the first action starts it),
and bench/request's own probes are asked of both in every round, in alternating order:
its Rust load generator (ping round trips, 50 clients for throughput, 1,000 at once) and
its trivial action timed from the request to the callback's first line in the log. The
standalone listener with a fake supervisor that bench/request also drives is left out:
it speaks the control protocol by hand, which a rework may change without a user seeing
it; the pair under the real supervisor is what a user sees.
"""
import os
import socket
import subprocess
import threading
import queue
import time

from common import BENCH, Metric, load, log, pct, rotate

rb = load("requestbench", os.path.join(BENCH, "request", "bench.py"))
DEADLINE = 30.0


def rollup(pid):
    """Pss and Anonymous kB from /proc/PID/smaps_rollup ({} when the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Anonymous"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def ask(sock, line, deadline=DEADLINE):
    """One request, the whole answer (read to EOF)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(deadline)
    try:
        s.connect(sock)
        s.sendall(line.encode() + b"\n")
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return got.decode(errors="replace")
            got += chunk
    finally:
        s.close()


class Pair(rb.Supervised):
    """bench/request's `supervisor -- sleep infinity` with its listener (subreaper mode,
    the log read line by line, ready once the socket answers `ping`), with a name, a
    directory of its own and extra settings, so that two builds can run at once."""

    def __init__(self, name, bindir, tmp, env_extra=None):
        self.name = name
        self.tmp = os.path.join(tmp, name)
        run_dir = os.path.join(self.tmp, "run")
        os.makedirs(run_dir)
        self.sock = os.path.join(run_dir, "bench-request.sock")
        self.callbacks = os.path.join(self.tmp, "callbacks.sh")
        with open(self.callbacks, "w") as f:
            f.write(rb.CALLBACKS)
        self.supervisor = os.path.join(bindir, "supervisor")
        self.listener = self.binary = os.path.join(bindir, "listener")
        env = dict(os.environ, BOSUN_SERVICE="bench", BOSUN_RUN_DIR=run_dir,
                   BOSUN_LISTENER=self.listener, BOSUN_CALLBACKS=self.callbacks,
                   BOSUN_MAX_ACTIONS="64", **(env_extra or {}))
        self.proc = subprocess.Popen([self.supervisor, "--", "sleep", "infinity"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.ctl = None
        self.lines = queue.Queue()
        self.log_tail = []
        threading.Thread(target=self._read_log, daemon=True).start()
        end = time.monotonic() + DEADLINE
        while not self._pong():
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError(f"{name}: the socket never answered `ping`; log tail:\n"
                                   + "\n".join(self.log_tail))
            time.sleep(0.05)

    def memory(self):
        """(Pss, Anonymous) kB of supervisor + listener (when one runs)."""
        procs = [self.proc.pid] + [p for p in [self.listener_pid()] if p]
        rs = [rollup(p) for p in procs]
        return sum(r.get("Pss", 0) for r in rs), sum(r.get("Anonymous", 0) for r in rs)

    def wait_no_listener(self, deadline):
        end = time.monotonic() + deadline
        while self.listener_pid() is not None:
            if time.monotonic() > end:
                return False
            time.sleep(0.02)
        return True


def loadgen(binary, *args):
    _, kv = rb.loadgen(binary, *args)
    return kv


def warm(pair, gen):
    """The first action (it starts the listener), a few more, 200 pings."""
    rb.first_output_latency(pair, 4)
    loadgen(gen, "rtt", pair.sock, 200, "ping")


def hot_rounds(pairs, gen, a):
    """Both builds up at once; each round asks every probe of each build in turn."""
    ms = {k: Metric(*v) for k, v in {
        "ping50": ("`ping` round trip, p50", "ms", "lower", "{:.3f}"),
        "ping99": ("`ping` round trip, p99", "ms", "lower", "{:.3f}"),
        "first50": ("trivial action: request → callback's first log line, p50", "ms"),
        "first90": ("trivial action: request → callback's first log line, p90", "ms"),
        "done50": ("trivial action: request → `done`, p50", "ms"),
        "tput": ("sustained `ping`, 50 clients", "requests/s", "higher", "{:.0f}"),
        "burst": (f"{a.burst:,} clients at once: all answered", "ms", "lower", "{:.1f}"),
        "errors": ("errors (all probes)", "", "lower", "{:.0f}"),
        "pss": ("supervisor + listener Pss, 1 s after the round", "kB", "lower", "{:.0f}"),
        "anon": ("supervisor + listener anonymous, 1 s after the round", "kB", "lower",
                 "{:.0f}"),
    }.items()}
    for r in range(a.rounds):
        for p in rotate(pairs, r):
            kv = loadgen(gen, "rtt", p.sock, a.pings, "ping")
            ms["ping50"].add(p.name, r, float(kv["p50_us"]) / 1000)
            ms["ping99"].add(p.name, r, float(kv["p99_us"]) / 1000)
            errors = int(kv["errors"])
            first, _, _, done = rb.first_output_latency(p, a.actions)
            ms["first50"].add(p.name, r, pct(first, 0.5) / 1000)
            ms["first90"].add(p.name, r, pct(first, 0.9) / 1000)
            ms["done50"].add(p.name, r, pct(done, 0.5) / 1000)
            kv = loadgen(gen, "throughput", p.sock, 50, a.throughput_secs)
            ms["tput"].add(p.name, r, float(kv["per_sec"]))
            errors += int(kv["errors"])
            kv = loadgen(gen, "burst", p.sock, a.burst)
            ms["burst"].add(p.name, r, float(kv["wall_ms"]))
            errors += int(kv["errors"])
            ms["errors"].add(p.name, r, errors)
        time.sleep(1.0)  # idle again: the listener trims its heap 0.5 s after a burst
        for p in pairs:
            pss, anon = p.memory()
            ms["pss"].add(p.name, r, pss)
            ms["anon"].add(p.name, r, anon)
        log(f"  request round {r + 1}: " + "; ".join(
            f"{p.name} ping {ms['ping50'].values[p.name][r]:.3f} ms, first line "
            f"{ms['first50'].values[p.name][r]:.2f} ms, {ms['tput'].values[p.name][r]:.0f}/s"
            for p in pairs))
    return list(ms.values())


def cold_rounds(pairs, gen, a):
    """`listener_idle = 1s`: each round waits until no listener runs in either build, then
    asks each in turn 50 `ping`s (the supervisor answers them itself) and one action (the
    request that starts a listener)."""
    ping = Metric("`ping` with no listener running (the supervisor answers), p50", "ms",
                  fmt="{:.3f}")
    cold = Metric("first action with no listener running: request → `done`", "ms")
    for r in range(a.cold_rounds):
        for p in pairs:
            if not p.wait_no_listener(15):
                log(f"  cold round {r + 1}: {p.name}'s listener did not exit in 15 s")
        for p in rotate(pairs, r):
            if p.listener_pid() is not None:
                continue
            kv = loadgen(gen, "rtt", p.sock, 50, "ping")
            ping.add(p.name, r, float(kv["p50_us"]) / 1000)
            t0 = time.perf_counter()
            got = ask(p.sock, "first")
            dt = (time.perf_counter() - t0) * 1000
            if "done" in got and "exit=0" in got:
                cold.add(p.name, r, dt)
            else:
                log(f"  cold round {r + 1}: {p.name}: unexpected answer {got!r}")
    return [ping, cold]


def run(before, after, tmp, loadgen_bin, a):
    """Every measurement; returns (metrics, notes)."""
    metrics, notes = [], []
    pairs = []
    try:
        pairs = [Pair("before", before, tmp), Pair("after", after, tmp)]
        for p in pairs:
            warm(p, loadgen_bin)
        log(f"== request: {a.rounds} rounds, both builds up at once")
        metrics += hot_rounds(pairs, loadgen_bin, a)
    finally:
        for p in pairs:
            p.stop()
    pairs = []
    if a.cold_rounds:
        try:
            idle_env = {"BOSUN_LISTENER_IDLE": "1s"}
            pairs = [Pair("before", before, os.path.join(tmp, "cold"), idle_env),
                     Pair("after", after, os.path.join(tmp, "cold"), idle_env)]
            log(f"== request: {a.cold_rounds} cold rounds (listener_idle = 1s)")
            metrics += cold_rounds(pairs, loadgen_bin, a)
        finally:
            for p in pairs:
                p.stop()
    notes.append("Memory: `/proc/PID/smaps_rollup` of the supervisor and its listener, "
                 "both builds read in the same instant 1 s after each round's load.")
    return metrics, notes
