#!/usr/bin/env python3
"""bench/journal/latency.py: what the run journal costs bosun, with the real supervisor and
listener (release builds), against the build before the journal, in one run.

Started by latency.sh (read it for the command). Every bosun here is
`supervisor -- sleep infinity` with BOSUN_SERVICE, BOSUN_RUN_DIR (a temp dir),
BOSUN_STATE_DIR, BOSUN_CALLBACKS, BOSUN_CONFIG=/nonexistent, BOSUN_SETUP="" and
BOSUN_LISTENER set, as in a container. Requests go over `<run_dir>/b-request.sock` from a
small std-only Rust client (client.rs), one connection per request, read to EOF.

  1. Latency of a trivial action (`CB_noop() { :; }`), request -> `done`, for three bosuns
     up at once: the journal on the real disk (BENCH_DIR, ext4), the journal on tmpfs
     (/dev/shm: fsync is free), and the build without the journal. Rounds of N sequential
     requests per variant, the order rotated each round so the machine's noise hits all
     alike; per round p50 and p99, then the medians over rounds, and the added latency as
     the median of the per-round differences (paired by round).
  2. 100,000 runs of 10 actions (`CB_aN`, each echoing one line), one client thread per
     action, through a fresh bosun with the journal (real disk) and one without,
     interleaved in chunks. The journal's size is sampled all along (it is rewritten from
     memory when it has doubled). Then, idle: memory; `history`, `history ACTION` and
     `log ID` round trips; the reopen (supervisor restarted, time to the first answer to
     `history`, which starts the listener and opens the journal).
  3. Memory, 3.5 s idle after the runs: `Anonymous:` and `Pss:` of smaps_rollup for the
     supervisor and the listener, each build.

Prints the tables and writes RESULTS.md. Every wait has a deadline.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

DEADLINE = 30.0
ACTIONS = [f"a{i}" for i in range(10)]
CALLBACKS = "CB_noop() { :; }\n" + "".join(
    f'CB_{a}() {{ echo "{a} run $BOSUN_REQUEST_ID"; }}\n' for a in ACTIONS
)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[round((len(xs) - 1) * p)]


def smaps(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Anonymous"):
                    out[k] = int(v.split()[0])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    out["Threads"] = int(line.split()[1])
    except OSError:
        pass
    return out


def anon_by_mapping(pid):
    """`Anonymous:` kB of /proc/PID/smaps summed by kind: the main heap (brk), other
    anonymous mappings (glibc's per-thread arenas, thread stacks), the rest."""
    out = {"heap": 0, "anon mmap": 0, "other": 0}
    kind = "other"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split()[0] if line.strip() else ""
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    kind = "heap" if name == "[heap]" else "anon mmap" if name == "" else "other"
                elif first == "Anonymous:":
                    out[kind] += int(line.split()[1])
    except OSError:
        pass
    return out


def ask(sock, line, timeout=DEADLINE):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode(errors="replace")
    finally:
        s.close()


class Bosun:
    """`supervisor -- sleep infinity` with its own run dir (and state dir)."""

    def __init__(self, label, bindir, tmp, state_dir):
        self.label = label
        self.sup = os.path.join(bindir, "supervisor")
        self.lis = os.path.join(bindir, "listener")
        self.dir = tempfile.mkdtemp(prefix="bosun-", dir=tmp)
        self.run_dir = os.path.join(self.dir, "run")
        os.makedirs(self.run_dir)
        self.sock = os.path.join(self.run_dir, "b-request.sock")
        self.callbacks = os.path.join(self.dir, "docker-callbacks.sh")
        with open(self.callbacks, "w") as f:
            f.write(CALLBACKS)
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.journal = os.path.join(state_dir, "b.journal")
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = None

    def env(self):
        e = dict(os.environ)
        e.update(
            BOSUN_SERVICE="b",
            BOSUN_RUN_DIR=self.run_dir,
            BOSUN_STATE_DIR=self.state_dir,
            BOSUN_CALLBACKS=self.callbacks,
            BOSUN_CONFIG="/nonexistent",
            BOSUN_SETUP="",
            BOSUN_LISTENER=self.lis,
            BOSUN_MAX_ACTIONS="64",
        )
        return e

    def start(self, first="ping"):
        """Starts it; returns seconds from spawn to the first answer to `first`."""
        env = self.env()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.sup, "--", "sleep", "infinity"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        end = t0 + DEADLINE
        while True:
            try:
                r = ask(self.sock, first, timeout=DEADLINE)
                # an empty reply is an answer too (`history` of an empty journal)
                if not r.startswith(("error unavailable", "error shutting-down")):
                    return time.monotonic() - t0
            except OSError:
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError(f"{self.label}: no answer to {first!r} (see {self.dir}/log)")
            time.sleep(0.0002)

    def listener_pid(self):
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            return None
        for k in kids:
            try:
                if os.path.realpath(f"/proc/{k}/exe") == os.path.realpath(self.lis):
                    return k
            except OSError:
                pass
        return None

    def memory(self):
        lp = self.listener_pid()
        return smaps(self.proc.pid), smaps(lp) if lp else {}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def client(a, *args):
    r = subprocess.run([a.client, *map(str, args)], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"client {args}: {r.stderr.strip()}")
    return r.stdout, r.stderr


def rtt(a, sock, n, line):
    out, _ = client(a, "rtt", sock, n, line)
    lines = out.strip().splitlines()
    tail = lines[-1]
    us = [float(x) for x in lines[:-1]]
    errors = int(tail.split()[0].split("=")[1])
    return us, errors, tail


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def kb(n):
    return f"{n / 1024:.0f} KiB" if n < 10 * 1024 * 1024 else f"{n / 1048576:.1f} MiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", required=True, help="dir with the journal build's supervisor and listener")
    ap.add_argument("--old", required=True, help="dir with the no-journal build's binaries")
    ap.add_argument("--old-label", default="190b659")
    ap.add_argument("--client", required=True)
    ap.add_argument("--disk", default="/var/tmp", help="a real disk for the journal")
    ap.add_argument("--shm", default="/dev/shm")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=500)
    ap.add_argument("--runs", type=int, default=100000)
    ap.add_argument("--old-runs", type=int, default=None, help="runs for the no-journal build (default: --runs)")
    ap.add_argument("--chunk", type=int, default=10000)
    ap.add_argument("--asks", type=int, default=200)
    ap.add_argument("--reopens", type=int, default=7)
    ap.add_argument("--out", default="")
    ap.add_argument("--command", default="bench/journal/latency.sh")
    a = ap.parse_args()
    old_runs = a.runs if a.old_runs is None else a.old_runs

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = [loadavg()]
    tmp = tempfile.mkdtemp(prefix="bench-journal-")
    disk = tempfile.mkdtemp(prefix="bench-journal-", dir=a.disk)
    shm = tempfile.mkdtemp(prefix="bench-journal-", dir=a.shm)
    fstype, shmtype = (
        subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", d], capture_output=True, text=True).stdout.split("\n")[0]
        for d in (disk, shm)
    )
    bosuns = []
    out = []  # markdown lines for RESULTS.md

    def say(s=""):
        print(s, flush=True)
        out.append(s)

    try:
        # ---- 1. latency, three bosuns up at once, interleaved rounds ----
        variants = [
            ("journal, real disk", Bosun("disk", a.new, tmp, os.path.join(disk, "lat-state"))),
            ("journal, tmpfs", Bosun("tmpfs", a.new, tmp, os.path.join(shm, "lat-state"))),
            (f"no journal ({a.old_label})", Bosun("old", a.old, tmp, os.path.join(tmp, "old-lat-state"))),
        ]
        for _, b in variants:
            bosuns.append(b)
            b.start()
            rtt(a, b.sock, 100, "noop")  # warm up: the listener starts on the first request
        per = {name: {"p50": [], "p99": [], "all": [], "errors": 0} for name, _ in variants}
        for r in range(a.rounds):
            order = variants[r % 3:] + variants[: r % 3]
            for name, b in order:
                us, errors, tail = rtt(a, b.sock, a.per_round, "noop")
                if errors:
                    print(f"  {name}: {errors} errors, last: {tail}", file=sys.stderr)
                per[name]["p50"].append(pct(us, 0.5))
                per[name]["p99"].append(pct(us, 0.99))
                per[name]["all"] += us
                per[name]["errors"] += errors
            print(f"  round {r + 1}/{a.rounds}: " + ", ".join(
                f"{n} p50 {per[n]['p50'][-1] / 1000:.3f} ms" for n, _ in variants), flush=True)
        loads.append(loadavg())
        base = variants[2][0]
        time.sleep(3.5)
        lat_mem = {name: b.memory() for name, b in variants}
        for _, b in variants:
            b.stop()

        say(f"## Latency of a trivial action (`CB_noop() {{ :; }}`), request -> `done`")
        say()
        say(f"{a.rounds} rounds x {a.per_round} sequential requests per variant, the order rotated each "
            f"round; per-round p50 and p99, medians over the rounds; added = median of the per-round "
            f"differences to the no-journal build. Real disk: `{disk}` ({fstype}); tmpfs: `{shm}` ({shmtype}).")
        say()
        say("| variant | p50 | p99 | p50 added | p99 added | pooled p50 / p99 | errors |")
        say("|---|---|---|---|---|---|---|")
        added = {}
        for name, _ in variants:
            d = per[name]
            d50 = statistics.median(x - y for x, y in zip(d["p50"], per[base]["p50"]))
            d99 = statistics.median(x - y for x, y in zip(d["p99"], per[base]["p99"]))
            added[name] = d50
            is_base = name == base
            say(f"| {name} | {statistics.median(d['p50']) / 1000:.3f} ms | {statistics.median(d['p99']) / 1000:.3f} ms | "
                f"{'' if is_base else f'{d50 / 1000:+.3f} ms'} | {'' if is_base else f'{d99 / 1000:+.3f} ms'} | "
                f"{pct(d['all'], 0.5) / 1000:.3f} / {pct(d['all'], 0.99) / 1000:.3f} ms | {d['errors']} |")
        say()
        say("Per round, p50 in ms (" + ", ".join(n for n, _ in variants) + "): " + "; ".join(
            " / ".join(f"{per[n]['p50'][r] / 1000:.3f}" for n, _ in variants) for r in range(a.rounds)))
        say()
        disk_added = added[variants[0][0]]
        say(f"Goal < 0.2 ms p50 added: **{'met' if disk_added < 200 else 'not met'}** on the real disk "
            f"({disk_added / 1000:+.3f} ms), {'met' if added[variants[1][0]] < 200 else 'not met'} on tmpfs "
            f"({added[variants[1][0]] / 1000:+.3f} ms).")
        say()
        say("Memory 3.5 s after these runs (each bosun did "
            f"{100 + a.rounds * a.per_round} noop runs): " + "; ".join(
                f"{n}: supervisor Anonymous {m[0].get('Anonymous')} kB Pss {m[0].get('Pss')} kB, "
                f"listener Anonymous {m[1].get('Anonymous')} kB Pss {m[1].get('Pss')} kB threads {m[1].get('Threads')}"
                for n, m in lat_mem.items()) + ".")
        say()

        # ---- 2. 100,000 runs, with and without the journal, interleaved in chunks ----
        new = Bosun("fill", a.new, tmp, os.path.join(disk, "fill-state"))
        old = Bosun("fill-old", a.old, tmp, os.path.join(tmp, "old-fill-state"))
        bosuns += [new, old]
        new.start()
        old.start()
        sizes = []
        stop_sampler = threading.Event()

        def sampler():
            while not stop_sampler.is_set():
                try:
                    sizes.append(os.stat(new.journal).st_size)
                except OSError:
                    pass
                stop_sampler.wait(0.02)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        done = {"new": [0, 0, 0.0], "old": [0, 0, 0.0]}  # ok, errors, secs
        growth = []  # (runs, new listener Anonymous, old listener Anonymous) after each chunk
        while done["new"][0] + done["new"][1] < a.runs or done["old"][0] + done["old"][1] < old_runs:
            for key, b, total in (("new", new, a.runs), ("old", old, old_runs)):
                left = total - done[key][0] - done[key][1]
                if left <= 0:
                    continue
                o, e = client(a, "fill", b.sock, min(a.chunk, left), *ACTIONS)
                kv = dict(x.split("=") for x in o.split())
                done[key][0] += int(kv["ok"])
                done[key][1] += int(kv["errors"])
                done[key][2] += float(kv["secs"])
                if e.strip():
                    print(e.strip(), file=sys.stderr)
            growth.append((sum(done["new"][:2]), new.memory()[1].get("Anonymous"), old.memory()[1].get("Anonymous")))
            print(f"  filled: with the journal {sum(done['new'][:2])}, without {sum(done['old'][:2])}; "
                  f"listener Anonymous {growth[-1][1]} / {growth[-1][2]} kB", flush=True)
        stop_sampler.set()
        th.join()
        loads.append(loadavg())
        size_after = os.stat(new.journal).st_size
        # the size right after each rewrite: the sampled drops
        drops = [b for x, b in zip(sizes, sizes[1:]) if b < x]
        time.sleep(3.5)
        mem_new = new.memory()
        mem_old = old.memory()
        # tokio's blocking threads (the journal's writes run there) exit after 10 s idle
        time.sleep(12)
        mem_new15 = new.memory()
        mem_old15 = old.memory()
        by_map_new = anon_by_mapping(new.listener_pid())
        by_map_old = anon_by_mapping(old.listener_pid())

        hist = ask(new.sock, "history")
        ids = [int(l.split()[0]) for l in hist.splitlines() if l.strip()]
        h_us, h_err, _ = rtt(a, new.sock, a.asks, "history")
        ha_us, ha_err, _ = rtt(a, new.sock, a.asks, "history a3")
        log_id = ids[len(ids) // 2]
        log_reply = ask(new.sock, f"log {log_id}").strip()
        l_us, l_err, _ = rtt(a, new.sock, a.asks, f"log {log_id}")
        nf = ask(new.sock, "log 1").strip()
        old_ping, _, _ = rtt(a, old.sock, a.asks, "ping")
        new_ping, _, _ = rtt(a, new.sock, a.asks, "ping")
        live = sum(1 for _ in open(new.journal, "rb"))

        # reopen: restart the supervisor, time to the first `history` answer
        reopen = {"filled": [], "empty": [], "old": []}
        reopen_size = None
        old.stop()
        new.stop()
        empty = Bosun("empty", a.new, tmp, os.path.join(disk, "empty-state"))
        bosuns.append(empty)
        for i in range(a.reopens):
            reopen["filled"].append(new.start("history"))
            if reopen_size is None:
                reopen_size = os.stat(new.journal).st_size
            new.stop()
            shutil.rmtree(empty.state_dir, ignore_errors=True)
            reopen["empty"].append(empty.start("history"))
            empty.stop()
            reopen["old"].append(old.start("history"))
            old.stop()
        new.start("history")
        hist_after = ask(new.sock, "history")
        n_after = len([l for l in hist_after.splitlines() if l.strip()])
        new.stop()
        loads.append(loadavg())

        say(f"## {a.runs:,} runs, then idle")
        say()
        say(f"10 actions (`CB_a0`..`CB_a9`, each `echo` of one line), one client thread per action, in "
            f"chunks of {a.chunk:,} alternating between the two builds; the journal on `{disk}` ({fstype}).")
        say()
        nr, ne, ns = done["new"]
        orr, oe, os_ = done["old"]
        say("| | with the journal | without (" + a.old_label + ") |")
        say("|---|---|---|")
        say(f"| runs (errors) | {nr:,} ({ne}) | {orr:,} ({oe}) |")
        say(f"| runs/s, 10 clients | {nr / ns:,.0f} | {orr / os_:,.0f} |")
        say(f"| journal file after the runs | {kb(size_after)} ({size_after:,} bytes) | - |")
        if drops:
            say(f"| journal file right after a rewrite (sampled every 20 ms) / largest seen | {kb(min(drops))} / {kb(max(sizes))} ({len(drops)} rewrites seen) | - |")
        say(f"| journal file after a restart (open rewrites it when over twice what is kept) | {kb(reopen_size)} (it held {live:,} records before) | - |")
        say(f"| `history` (100 lines, all actions), p50 / p99 over {a.asks} | {pct(h_us, 0.5) / 1000:.3f} / {pct(h_us, 0.99) / 1000:.3f} ms | - |")
        say(f"| `history a3`, p50 / p99 | {pct(ha_us, 0.5) / 1000:.3f} / {pct(ha_us, 0.99) / 1000:.3f} ms | - |")
        say(f"| `log {log_id}` (one line), p50 / p99 | {pct(l_us, 0.5) / 1000:.3f} / {pct(l_us, 0.99) / 1000:.3f} ms | - |")
        say(f"| `ping` (answered by the supervisor), p50 / p99 | {pct(new_ping, 0.5) / 1000:.3f} / {pct(new_ping, 0.99) / 1000:.3f} ms | {pct(old_ping, 0.5) / 1000:.3f} / {pct(old_ping, 0.99) / 1000:.3f} ms |")
        say(f"| restart: supervisor spawned -> first `history` answer, median of {a.reopens} (min-max) | "
            f"{statistics.median(reopen['filled']) * 1000:.1f} ms ({min(reopen['filled']) * 1000:.1f}-{max(reopen['filled']) * 1000:.1f}); "
            f"empty state dir {statistics.median(reopen['empty']) * 1000:.1f} ms ({min(reopen['empty']) * 1000:.1f}-{max(reopen['empty']) * 1000:.1f}) | "
            f"{statistics.median(reopen['old']) * 1000:.1f} ms ({min(reopen['old']) * 1000:.1f}-{max(reopen['old']) * 1000:.1f}) (`error unknown-action`, from the listener) |")
        for when, mn_, mo_ in (("3.5 s", mem_new, mem_old), ("15.5 s", mem_new15, mem_old15)):
            for who, i in (("supervisor", 0), ("listener", 1)):
                mn, mo = mn_[i], mo_[i]
                say(f"| {who} `Anonymous:` / Pss (threads), {when} idle after the runs | {mn.get('Anonymous')} / {mn.get('Pss')} kB ({mn.get('Threads')}) | {mo.get('Anonymous')} / {mo.get('Pss')} kB ({mo.get('Threads')}) |")
        say()
        say("The listener's `Anonymous:` after each chunk of runs (with / without the journal, kB): " + "; ".join(
            f"{n:,}: {x} / {y}" for n, x, y in growth) + ".")
        say()
        say("The listener's `Anonymous:` at 15.5 s idle by mapping (kB, from smaps; `anon mmap` is glibc's "
            "per-thread arenas and thread stacks): with the journal " + ", ".join(f"{k} {v}" for k, v in by_map_new.items())
            + "; without " + ", ".join(f"{k} {v}" for k, v in by_map_old.items()) + ".")
        say()
        say(f"After the restart `history` lists {n_after} runs (the newest 100). `log {log_id}`: `{log_reply}`; "
            f"`log 1` (dropped long ago): `{nf}`.")
        say()
        say(f"Load average (1/5/15 min) at start, after the latency rounds, after the runs, at the end: {' | '.join(loads)}.")
        say()
    finally:
        for b in bosuns:
            try:
                b.stop()
            except Exception:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)

    if a.out:
        with open(a.out, "w") as f:
            f.write("# The run journal's cost, with the real supervisor and listener (issue 12)\n\n")
            f.write(f"`{a.command}`, {started}, {os.cpu_count()} CPUs, kernel {os.uname().release}; "
                    f"journal build `{a.new}`, no-journal build `{a.old}` ({a.old_label}).\n\n")
            f.write("\n".join(out) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
