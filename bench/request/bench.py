#!/usr/bin/env python3
"""bench/request: bosun's request socket side by side with its peers, in one run.

Started by run.sh (read it for the exact command). Plays the supervisor for a standalone
listener exactly as listener/tests/all/harness.rs does: binds and listens on the request
socket, makes the SOCK_SEQPACKET control pair, starts the listener with them as fds 3 and 4,
answers `cmd` messages and reads hold/release. Then measures:

  * ping round trip (connect, send, read to EOF), p50/p99, with the Rust loadgen;
  * request -> a trivial callback's first output line in the container log (the
    listener's stderr), and request -> the callback running (bash's $EPOCHREALTIME);
  * the same as a command-line client would do it: `socat ... <<<ping`;
  * `supervisorctl status` against a local supervisord's unix socket;
  * `docker exec CONTAINER true` when a Docker engine answers (skipped with a note else);
  * sustained ping throughput with 50 clients; 1,000 clients released at once;
  * the listener's memory (Rss/Pss from /proc/PID/smaps_rollup) idle and after the load.

Every wait has a deadline; every child is stopped at the end.
"""

import argparse
import fcntl
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

DEADLINE = 30.0

CALLBACKS = r"""
CB_first() { echo first; }
CB_stamp() { echo "t=$EPOCHREALTIME"; }
"""


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[round((len(xs) - 1) * p)]


def fmt_ms(us):
    return f"{us / 1000:.3f} ms"


def mem(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Dirty"):
                    out[k] = int(v.split()[0])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    out["VmHWM"] = int(line.split()[1])
    except OSError:
        pass
    return out


class Listener:
    """A standalone listener with a fake supervisor on its control socket."""

    def __init__(self, binary, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "bench-request.sock")
        self.callbacks = os.path.join(tmp, "docker-callbacks.sh")
        with open(self.callbacks, "w") as f:
            f.write(CALLBACKS)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(self.sock)
        ls.listen(4096)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env.update(
            BOSUN_SERVICE="bench",
            BOSUN_CALLBACKS=self.callbacks,
            BOSUN_MAX_ACTIONS="64",
        )
        # Above 10 first, so that moving them to 3 and 4 cannot clobber one another.
        lfd = fcntl.fcntl(ls.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
        cfd = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
        # bash moves the two sockets to fds 3 and 4, then becomes the listener.
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec 3<&{lfd} 4<&{cfd} {lfd}<&- {cfd}<&-; exec "$0"', binary],
            pass_fds=(lfd, cfd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ls.close()
        theirs.close()
        os.close(lfd)
        os.close(cfd)
        self.ctl = ours
        self.lines = queue.Queue()
        self.log_tail = []
        threading.Thread(target=self._read_log, daemon=True).start()
        threading.Thread(target=self._supervise, daemon=True).start()
        end = time.monotonic() + DEADLINE
        while True:
            line = self.next_line(end)
            if "listening" in line:
                break

    def _read_log(self):
        for raw in self.proc.stderr:
            t = time.perf_counter()
            line = raw.decode(errors="replace").rstrip("\n")
            self.log_tail = (self.log_tail + [line])[-50:]
            self.lines.put((t, line))

    def _supervise(self):
        """The supervisor's side of the control socket (proto/src/control.rs): answers
        `cmd`, keeps the connection a `hold` comes with, and writes a `release`'s reply
        (the `done` line) to it, as the supervisor does."""
        held = {}
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.ctl, 16384, 1)
            except OSError:
                return
            if not data:
                return
            text = data.decode(errors="replace")
            head, _, rest = text.partition(" ")
            if head == "hold" and fds:
                held[rest.split(" ", 1)[0]] = socket.socket(fileno=fds.pop())
            elif head == "release":
                rid, _, reply = rest.partition(" ")
                conn = held.pop(rid, None)
                if conn is not None:
                    try:
                        if reply:
                            conn.sendall(reply.encode() + b"\n")
                    except OSError:
                        pass
                    conn.close()
            elif head == "cmd":
                seq, _, cmd = rest.partition(" ")
                reply = "main running pid=1" if cmd == "status" else f"{cmd} ok"
                try:
                    self.ctl.send(f"reply {seq} {reply}".encode())
                except OSError:
                    return
            for fd in fds:
                os.close(fd)

    def next_line(self, end):
        left = end - time.monotonic()
        if left <= 0:
            raise RuntimeError("listener log: deadline passed; tail:\n" + "\n".join(self.log_tail))
        try:
            return self.lines.get(timeout=left)[1]
        except queue.Empty:
            raise RuntimeError("listener log: deadline passed; tail:\n" + "\n".join(self.log_tail))

    def wait_log(self, pred):
        end = time.monotonic() + DEADLINE
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError("listener log: deadline passed")
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                raise RuntimeError("listener log: deadline passed")
            if pred(line):
                return t, line

    def drain_log(self):
        while True:
            try:
                self.lines.get_nowait()
            except queue.Empty:
                return

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ctl.close()


class Supervised(Listener):
    """The real thing: `supervisor -- sleep infinity` owning the socket, with our listener."""

    def __init__(self, supervisor, binary, tmp):
        self.tmp = tmp
        run_dir = os.path.join(tmp, "run")
        os.makedirs(run_dir)
        self.sock = os.path.join(run_dir, "bench-request.sock")
        self.callbacks = os.path.join(tmp, "docker-callbacks.sh")
        with open(self.callbacks, "w") as f:
            f.write(CALLBACKS)
        env = dict(os.environ)
        env.update(
            BOSUN_SERVICE="bench",
            BOSUN_RUN_DIR=run_dir,
            BOSUN_LISTENER=binary,
            BOSUN_CALLBACKS=self.callbacks,
            BOSUN_MAX_ACTIONS="64",
        )
        self.proc = subprocess.Popen(
            [supervisor, "--", "sleep", "infinity"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.ctl = None
        self.binary = binary
        self.lines = queue.Queue()
        self.log_tail = []
        threading.Thread(target=self._read_log, daemon=True).start()
        # Ready when the socket answers `ping`: the supervisor answers it itself while no
        # listener runs, and starts the listener at the first action (listener_start =
        # request), so a `listening` line may never come before a request.
        end = time.monotonic() + DEADLINE
        while not self._pong():
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError("supervisor: the socket never answered `ping`; log tail:\n"
                                   + "\n".join(self.log_tail))
            time.sleep(0.05)

    def _pong(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(self.sock)
            s.sendall(b"ping\n")
            return s.makefile("rb").read() == b"pong\n"
        except OSError:
            return False
        finally:
            s.close()

    def listener_pid(self):
        """The running listener's pid (a child of the supervisor), or None."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            return None
        for k in kids:
            try:
                if os.path.realpath(f"/proc/{k}/exe") == os.path.realpath(self.binary):
                    return k
            except OSError:
                pass
        return None

    def memory(self):
        lp = self.listener_pid()
        return mem(self.proc.pid), mem(lp) if lp else {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def supervised_run(a, tmp):
    """ping and trivial-action latency and memory under the real supervisor."""
    rows, extra = [], []
    s = Supervised(a.supervisor, a.listener, tmp)
    try:
        sup_idle, lis_idle = s.memory()
        line, kv = loadgen(a.loadgen, "rtt", s.sock, a.ping_rounds, "ping")
        rows.append(("under `supervisor`: `ping` round trip", float(kv["p50_us"]), float(kv["p99_us"]), int(kv["n"]), int(kv["errors"]), ""))
        extra.append("supervised " + line)
        first, started, accepted, done = first_output_latency(s, a.action_rounds)
        rows.append(("under `supervisor`: trivial action, request -> first output line", pct(first, 0.5), pct(first, 0.99), len(first), 0, ""))
        bline, bkv = loadgen(a.loadgen, "burst", s.sock, a.burst)
        extra.append("supervised " + bline)
        time.sleep(1.0)
        sup_after, lis_after = s.memory()
    finally:
        s.stop()
    mem_line = (
        f"Under the real supervisor (`supervisor -- sleep infinity`, subreaper mode): Pss idle "
        f"supervisor {sup_idle.get('Pss')} kB + listener {lis_idle.get('Pss', 0)} kB = "
        f"**{(sup_idle.get('Pss') or 0) + (lis_idle.get('Pss') or 0)} kB**; 1 s after the load "
        f"{sup_after.get('Pss')} + {lis_after.get('Pss')} = "
        f"{(sup_after.get('Pss') or 0) + (lis_after.get('Pss') or 0)} kB. "
        f"{bkv['clients']} clients at once through the supervisor-owned socket: {bkv['errors']} errors."
    )
    return rows, extra, mem_line


def first_output_latency(l, rounds):
    """request sent -> `[first#ID] first` read from the listener's stderr."""
    first, accepted, done, started = [], [], [], []
    l.drain_log()
    for i in range(rounds):
        action = "first" if i % 2 == 0 else "stamp"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(DEADLINE)
        s.connect(l.sock)
        wall0 = time.time()
        t0 = time.perf_counter()
        s.sendall(f"{action}\n".encode())
        f = s.makefile("rb")
        line = f.readline().decode()
        t_acc = time.perf_counter()
        m = re.match(r"accepted (\d+) ", line)
        if not m:
            raise RuntimeError(f"unexpected reply {line!r}")
        rid = m.group(1)
        t_line, text = l.wait_log(lambda x: x.startswith(f"[{action}#{rid}] "))
        rest = f.read().decode()
        t_done = time.perf_counter()
        s.close()
        if not rest.startswith(f"done {rid} exit=0"):
            raise RuntimeError(f"unexpected reply {rest!r}")
        accepted.append((t_acc - t0) * 1e6)
        done.append((t_done - t0) * 1e6)
        if action == "first":
            first.append((t_line - t0) * 1e6)
        else:
            started.append((float(text.split("t=", 1)[1]) - wall0) * 1e6)
    return first, started, accepted, done


def time_cmd(argv, rounds, stdin=None, check=None):
    us = []
    errors = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        p = subprocess.run(argv, input=stdin, capture_output=True, timeout=DEADLINE)
        t = (time.perf_counter() - t0) * 1e6
        if p.returncode == 0 and (check is None or check(p.stdout)):
            us.append(t)
        else:
            errors += 1
    return us, errors


def supervisord_peer(tmp, rounds):
    if not shutil.which("supervisord") or not shutil.which("supervisorctl"):
        return None, "supervisord not installed (apt-get install supervisor)"
    d = os.path.join(tmp, "supervisord")
    os.makedirs(d)
    conf = os.path.join(d, "supervisord.conf")
    sock = os.path.join(d, "supervisor.sock")
    with open(conf, "w") as f:
        f.write(
            f"""[unix_http_server]
file={sock}
[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{sock}
[program:sleep]
command=sleep infinity
"""
        )
    p = subprocess.Popen(
        ["supervisord", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        end = time.monotonic() + DEADLINE
        while True:
            r = subprocess.run(
                ["supervisorctl", "-c", conf, "status"], capture_output=True, timeout=DEADLINE
            )
            if b"RUNNING" in r.stdout:
                break
            if time.monotonic() > end:
                return None, "supervisord did not come up"
            time.sleep(0.1)
        us, errors = time_cmd(
            ["supervisorctl", "-c", conf, "status"], rounds, check=lambda o: b"RUNNING" in o
        )
        return (us, errors, mem(p.pid)), None
    finally:
        p.terminate()
        try:
            p.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            p.kill()


def docker_peer(rounds, image):
    if not shutil.which("docker"):
        return None, "no docker client"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=DEADLINE).returncode != 0:
        return None, "no Docker engine answers (scripts/docker-engine starts one)"
    if (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
        != 0
    ):
        return None, f"image {image} not present"
    r = subprocess.run(
        ["docker", "run", "-d", "--rm", image, "sleep", "infinity"],
        capture_output=True,
        timeout=120,
    )
    if r.returncode != 0:
        return None, f"docker run failed: {r.stderr.decode().strip()}"
    cid = r.stdout.decode().strip()
    try:
        time_cmd(["docker", "exec", cid, "true"], 2)
        us, errors = time_cmd(["docker", "exec", cid, "true"], rounds)
        return (us, errors), None
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=120)


def loadgen(binary, *args):
    r = subprocess.run([binary, *map(str, args)], capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen {args}: {r.stderr.decode()}")
    line = r.stdout.decode().strip()
    kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
    return line, kv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listener", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--scheduler", default="")
    ap.add_argument("--supervisor", default="")
    ap.add_argument("--ping-rounds", type=int, default=5000)
    ap.add_argument("--action-rounds", type=int, default=400)
    ap.add_argument("--cli-rounds", type=int, default=200)
    ap.add_argument("--peer-rounds", type=int, default=30)
    ap.add_argument("--throughput-secs", type=int, default=5)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--docker-image", default="debian:trixie-slim")
    ap.add_argument("--out", default="")
    ap.add_argument("--command", default="")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-request-")
    rows = []  # (what, p50_us, p99_us, n, errors, note)
    notes = []
    extra = []
    l = Listener(a.listener, tmp)
    try:
        mem_idle = mem(l.proc.pid)

        line, kv = loadgen(a.loadgen, "rtt", l.sock, a.ping_rounds, "ping")
        rows.append(("bosun `ping` round trip (Rust client)", float(kv["p50_us"]), float(kv["p99_us"]), int(kv["n"]), int(kv["errors"]), ""))
        extra.append(line)

        first, started, accepted, done = first_output_latency(l, a.action_rounds)
        rows.append(("bosun trivial action: request -> callback running ($EPOCHREALTIME)", pct(started, 0.5), pct(started, 0.99), len(started), 0, ""))
        rows.append(("bosun trivial action: request -> first output line in the log", pct(first, 0.5), pct(first, 0.99), len(first), 0, ""))
        rows.append(("bosun trivial action: request -> `accepted`", pct(accepted, 0.5), pct(accepted, 0.99), len(accepted), 0, ""))
        rows.append(("bosun trivial action: request -> `done` (whole request)", pct(done, 0.5), pct(done, 0.99), len(done), 0, ""))

        us, err = time_cmd(
            ["socat", "-", f"UNIX-CONNECT:{l.sock}"], a.cli_rounds, stdin=b"ping\n",
            check=lambda o: o == b"pong\n",
        )
        rows.append(("bosun `ping` via `socat` (a CLI process per request)", pct(us, 0.5), pct(us, 0.99), len(us), err, ""))
        if not (a.scheduler and os.path.exists(a.scheduler)):
            notes.append("`scheduler send`: skipped, no target/release/scheduler built")
        else:
            # scheduler send SERVICE ACTION finds /run/SERVICE-request.sock; point it here.
            env = dict(os.environ, BOSUN_RUN_DIR=tmp)
            us = []
            err = 0
            for _ in range(a.cli_rounds):
                t0 = time.perf_counter()
                p = subprocess.run([a.scheduler, "send", "bench", "ping"], capture_output=True, env=env, timeout=DEADLINE)
                if p.returncode == 0 and p.stdout == b"pong\n":
                    us.append((time.perf_counter() - t0) * 1e6)
                else:
                    err += 1
            if us:
                rows.append(("bosun `ping` via `scheduler send` (the project's CLI)", pct(us, 0.5), pct(us, 0.99), len(us), err, ""))
            else:
                notes.append(f"`scheduler send` did not work here ({err} errors; it may not honour BOSUN_RUN_DIR): skipped")

        peer, why = supervisord_peer(tmp, a.peer_rounds)
        if peer:
            us, err, smem = peer
            rows.append(("`supervisorctl status` (supervisord, unix socket)", pct(us, 0.5), pct(us, 0.99), len(us), err, ""))
            extra.append(f"supervisord memory while idle: {smem}")
        else:
            notes.append(f"supervisorctl: skipped, {why}")

        peer, why = docker_peer(a.peer_rounds, a.docker_image)
        if peer:
            us, err = peer
            rows.append((f"`docker exec CONTAINER true` ({a.docker_image})", pct(us, 0.5), pct(us, 0.99), len(us), err, ""))
        else:
            notes.append(f"docker exec: skipped, {why}")

        tline, tkv = loadgen(a.loadgen, "throughput", l.sock, 50, a.throughput_secs)
        extra.append(tline)
        bline, bkv = loadgen(a.loadgen, "burst", l.sock, a.burst)
        extra.append(bline)
        time.sleep(1.0)  # idle again: the listener trims its heap 0.5 s after a burst
        mem_after = mem(l.proc.pid)
    finally:
        l.stop()
    sup_line = None
    try:
        if a.supervisor and os.path.exists(a.supervisor):
            srows, sextra, sup_line = supervised_run(a, tmp)
            rows.extend(srows)
            extra.extend(sextra)
        else:
            notes.append("under the real supervisor: skipped, no target/release/supervisor built")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    out = []
    out.append("| measurement | p50 | p99 | n | errors |")
    out.append("|---|---|---|---|---|")
    for what, p50, p99, n, err, _ in rows:
        out.append(f"| {what} | {fmt_ms(p50)} | {fmt_ms(p99)} | {n} | {err} |")
    out.append("")
    out.append(
        f"Sustained `ping` throughput, 50 clients for {tkv['secs']} s: **{tkv['per_sec']} requests/s**, "
        f"{tkv['errors']} errors (per-request p50 {fmt_ms(float(tkv['p50_us']))}, p99 {fmt_ms(float(tkv['p99_us']))})."
    )
    out.append(
        f"{bkv['clients']} clients released at once (one thread each): {bkv['ok']} answered `pong`, "
        f"**{bkv['errors']} errors**, all done in {bkv['wall_ms']} ms (p99 {fmt_ms(float(bkv['p99_us']))})."
    )
    out.append(
        f"Listener memory: idle Rss {mem_idle.get('Rss')} kB, Pss {mem_idle.get('Pss')} kB "
        f"(file {mem_idle.get('Pss_File')}, anon {mem_idle.get('Pss_Anon')}); 1 s after the load Rss "
        f"{mem_after.get('Rss')} kB, Pss {mem_after.get('Pss')} kB (file {mem_after.get('Pss_File')}, "
        f"anon {mem_after.get('Pss_Anon')}), peak VmHWM {mem_after.get('VmHWM')} kB. File pages are the "
        "binary's text mapped in 64 KiB fault-around batches, so they depend little on the load."
    )
    if sup_line:
        out.append(sup_line)
    # Goals from issue 3.
    by = {r[0]: r for r in rows}
    ping = rows[0]
    startp50 = by["bosun trivial action: request -> first output line in the log"][1]
    goals = [f"ping p99 < 1 ms: {'met' if ping[2] < 1000 else 'NOT met'} ({fmt_ms(ping[2])})",
             f"trivial action first line p50 < 5 ms: {'met' if startp50 < 5000 else 'NOT met'} ({fmt_ms(startp50)})",
             f"no error at {bkv['clients']} concurrent clients: {'met' if bkv['errors'] == '0' else 'NOT met'}"]
    dk = [r for r in rows if r[0].startswith("`docker exec")]
    if dk:
        ratio = dk[0][1] / startp50
        goals.append(f"trivial action >= 20x faster than docker exec (p50): {'met' if ratio >= 20 else 'NOT met'} ({ratio:.0f}x)")
    out.append("")
    out.append("Goals (issue 3): " + "; ".join(goals) + ".")
    for n in notes:
        out.append(f"\nNote: {n}")
    out.append("\nRaw loadgen lines:\n")
    out.append("```")
    out.extend(extra)
    out.append("```")
    text = "\n".join(out)
    print(text)
    if a.out:
        cpu = ""
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
        except OSError:
            pass
        with open(a.out, "w") as f:
            f.write("# bench/request results\n\n")
            f.write(f"Command: `{a.command or ' '.join(sys.argv)}`\n\n")
            f.write(
                f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores ({cpu}), "
                "the listener standalone (release build) with a fake supervisor on its control socket, "
                "as in listener/tests. Latencies are wall-clock from the client's side. "
                f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
                "(the machine is shared; numbers move with it).\n\n"
            )
            f.write(text + "\n")


if __name__ == "__main__":
    main()
