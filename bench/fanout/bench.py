#!/usr/bin/env python3
"""@each fan-out (issue 22): time from a fire to the last `done` with 1, 3 and 10 real
replicas, against sending to each in turn; the scheduler's memory with 10 instances x 100
lines. Run by bench/fanout/run.sh, which builds the binaries and passes their directory.

Replicas are real supervisors with their listeners (subreapers, not PID 1), sharing one run
and state directory, each with BOSUN_INSTANCE. Two actions: `noop` (`:`) and `work`
(`sleep 0.1`, an action that takes time).

Measured, each the median of ROUNDS:
  daemon   the scheduler daemon's `@reboot php@each ACTION`: from its first `request` log
           line to its last `done` log line (the log's own microsecond timestamps);
  each     `scheduler send php@each ACTION`, wall time of the command;
  in turn  `scheduler send php.1 ACTION; ...; scheduler send php.N ACTION`, wall time;
  in turn, one client: one connection after another from this script (no process start),
           request line then read to `done`: the protocol's own cost of going in turn.
Memory: the daemon with 100 `* * * * * php@each aK` lines (K = 1..100) and 10 replicas,
BOSUN_STATE_DIR set (records written), after its first minute's fire has ended in 1,000
`done`: VmRSS, RssAnon, VmHWM from /proc; the same with 100 `php.1` lines for reference.
"""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

BIN = sys.argv[1]
ROUNDS = int(os.environ.get("ROUNDS", "5"))
COUNTS = [int(n) for n in os.environ.get("INSTANCES", "1,3,10").split(",")]
MEMORY = os.environ.get("MEMORY", "1") == "1"
SUP, LST, SCH = (os.path.join(BIN, b) for b in ("supervisor", "listener", "scheduler"))


def say(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def wait(pred, what, within=30.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def answers(path):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.close()
        return True
    except OSError:
        return False


class Replicas:
    def __init__(self, root, n, actions):
        self.root, self.run, self.procs = root, os.path.join(root, "run"), []
        os.makedirs(self.run, exist_ok=True)
        cb = os.path.join(root, "callbacks.sh")
        with open(cb, "w") as f:
            f.write("CB_noop() { :; }\nCB_work() { sleep 0.1; }\n")
            for a in actions:
                f.write(f"CB_{a}() {{ :; }}\n")
        env = dict(os.environ, BOSUN_SERVICE="php", BOSUN_RUN_DIR=self.run,
                   BOSUN_STATE_DIR=os.path.join(root, "svc-state"), BOSUN_CALLBACKS=cb,
                   BOSUN_LISTENER=LST, BOSUN_SETUP="", BOSUN_CONFIG=os.path.join(root, "none.toml"),
                   BOSUN_MAX_ACTIONS="100000", BOSUN_LOG="warn")
        for i in range(1, n + 1):
            e = dict(env, BOSUN_INSTANCE=str(i))
            self.procs.append(subprocess.Popen([SUP, "--", "sleep", "100000"], env=e,
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        for i in range(1, n + 1):
            p = os.path.join(self.run, f"php.{i}-request.sock")
            wait(lambda: answers(p) and help_has(p, "noop"), f"php.{i}")

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def help_has(path, action):
    return action in ask(path, "help").split("\n")


def ask(path, line):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    s.sendall(line.encode() + b"\n")
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode()


def stamp(line):
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def daemon_fire(root, n, action):
    conf = os.path.join(root, "conf")
    os.makedirs(conf, exist_ok=True)
    f = os.path.join(conf, "schedule.cron")
    with open(f, "w") as fh:
        fh.write(f"@reboot php@each {action}\n")
    env = dict(os.environ, BOSUN_RUN_DIR=os.path.join(root, "run"), BOSUN_LOG="info")
    env.pop("BOSUN_STATE_DIR", None)
    p = subprocess.Popen([SCH, f], env=env, stderr=subprocess.PIPE, text=True)
    first, done = None, []
    for line in p.stderr:
        if " request " in line and first is None:
            first = stamp(line)
        if re.search(r" done run=", line):
            done.append(stamp(line))
            if len(done) == n:
                break
    p.send_signal(signal.SIGTERM)
    p.wait(15)
    return max(done) - first


def timed(cmds, env):
    t = time.monotonic()
    for c in cmds:
        r = subprocess.run(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert r.returncode == 0, (c, r.returncode)
    return time.monotonic() - t


def one_client(run, n, action):
    t = time.monotonic()
    for i in range(1, n + 1):
        out = ask(os.path.join(run, f"php.{i}-request.sock"), action)
        assert "exit=0" in out, out
    return time.monotonic() - t


def ms(x):
    return f"{x * 1000:.1f} ms"


def fanout_table():
    rows = []
    for n in COUNTS:
        with tempfile.TemporaryDirectory(prefix="bench-fanout.") as root:
            r = Replicas(root, n, [])
            run = r.run
            env = dict(os.environ, BOSUN_RUN_DIR=run)
            try:
                for action in ("noop", "work"):
                    say(f"{n} instances, {action}")
                    d = [daemon_fire(root, n, action) for _ in range(ROUNDS)]
                    e = [timed([[SCH, "send", "php@each", action]], env) for _ in range(ROUNDS)]
                    t = [timed([[SCH, "send", f"php.{i}", action] for i in range(1, n + 1)], env)
                         for _ in range(ROUNDS)]
                    c = [one_client(run, n, action) for _ in range(ROUNDS)]
                    m = statistics.median
                    rows.append((n, action, m(d), m(e), m(t), m(c)))
            finally:
                r.stop()
    print("| instances | action | daemon `@each`: fire → last done | `send php@each` | `send php.N` in turn | in turn, one client | in turn / `send php@each` |")
    print("|---|---|---|---|---|---|---|")
    for n, a, d, e, t, c in rows:
        print(f"| {n} | {a} | {ms(d)} | {ms(e)} | {ms(t)} | {ms(c)} | {t / e:.2f}x |")


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def memory(target):
    actions = [f"a{k}" for k in range(1, 101)]
    with tempfile.TemporaryDirectory(prefix="bench-fanout-mem.") as root:
        r = Replicas(root, 10, actions)
        try:
            conf = os.path.join(root, "conf")
            os.makedirs(conf)
            f = os.path.join(conf, "schedule.cron")
            with open(f, "w") as fh:
                for a in actions:
                    fh.write(f"* * * * * {target} {a}\n")
            env = dict(os.environ, BOSUN_RUN_DIR=r.run, BOSUN_LOG="info",
                       BOSUN_STATE_DIR=os.path.join(root, "state"))
            p = subprocess.Popen([SCH, f], env=env, stderr=subprocess.PIPE, text=True)
            want = 100 * (10 if target.endswith("@each") else 1)
            before = None
            done = 0
            for line in p.stderr:
                if " started " in line and before is None:
                    time.sleep(0.2)
                    before = status(p.pid)
                if re.search(r" done run=", line):
                    done += 1
                    if done == want:
                        break
            after = status(p.pid)
            p.send_signal(signal.SIGTERM)
            p.wait(15)
            return before, after, want
        finally:
            r.stop()


def main():
    fanout_table()
    if MEMORY:
        print()
        print("| schedule | runs in the fire | VmRSS idle | VmRSS after the fire | RssAnon after | VmHWM |")
        print("|---|---|---|---|---|---|")
        for target in ("php@each", "php.1"):
            say(f"memory, 100 lines of {target} (waits for the next minute)")
            b, a, n = memory(target)
            print(f"| 100 x `{target}`, 10 replicas | {n} | {b['VmRSS']} kB | {a['VmRSS']} kB | {a['RssAnon']} kB | {a['VmHWM']} kB |")


main()
