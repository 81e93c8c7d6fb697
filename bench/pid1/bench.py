#!/usr/bin/env python3
"""bench/pid1 driver: bosun's supervisor side by side with real init peers.

Invoked by run.sh (see there for the environment it sets up). Sub-modes used as
the *main program* under each init:
  bench.py orphans OUT N        start N orphans (re-parented to PID 1), release them at once,
                                time until the namespace has reaped them all
  bench.py stopmain MODE READY  MODE=exit: exit(0) on TERM; ignore: ignore TERM and
                                exec `sleep infinity` (which inherits SIG_IGN);
                                default: exec `sleep infinity` (dies of TERM)
Everything waits with a deadline; every init runs in its own PID+mount namespace
(PID 1) unless stated, and is SIGKILLed (taking its namespace with it) when done.
"""
import atexit
import ctypes
import json
import os
import platform
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable

# ---------------------------------------------------------------- helpers


def now():
    return time.monotonic()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def children(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        txt = read(f"/proc/{pid}/task/{tid}/children", "")
        out += [int(x) for x in txt.split()]
    return out


def tree(pid):
    """pid and all its descendants (pids as seen from the host)."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def comm(pid):
    return (read(f"/proc/{pid}/comm", "?") or "?").strip()


def mem(pid):
    """(VmRSS kB, Pss kB) of one process, None where unreadable."""
    rss = pss = None
    for line in (read(f"/proc/{pid}/status", "") or "").splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in (read(f"/proc/{pid}/smaps_rollup", "") or "").splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def pss_by_mapping(pid):
    """{mapping name: [Pss kB, Rss kB]} from /proc/PID/smaps (anonymous -> "[anon]")."""
    out, name = {}, None
    for line in (read(f"/proc/{pid}/smaps", "") or "").splitlines():
        f = line.split()
        if f and "-" in f[0] and not f[0].endswith(":"):
            name = os.path.basename(f[5]) if len(f) > 5 else "[anon]"
            if name.startswith("[anon"):
                name = "[anon]"
            out.setdefault(name, [0, 0])
        elif f and f[0] in ("Pss:", "Rss:") and name:
            out[name][0 if f[0] == "Pss:" else 1] += int(f[1])
    return out


def wait_for(pred, deadline_s, step=0.01):
    end = now() + deadline_s
    while now() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def exitcode(status):
    """raw wait status -> shell-style code (128+N for a signal)."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return None


# ------------------------------------------------- an init as PID 1 of a namespace

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
LIVE = []


class Pid1:
    """Runs argv as PID 1 of a new PID+mount namespace (like `unshare --pid --fork
    --mount-proc`, but keeps the init's raw wait status: util-linux's unshare loses it
    when the init dies of a signal). A forked waiter stays in the host namespace."""

    def __init__(self, argv, env, cwd, logpath):
        r, w = os.pipe()
        self.waiter = os.fork()
        if self.waiter == 0:  # waiter
            code = 0
            try:
                os.close(r)
                os.setsid()
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the driver died: go too
                if libc.unshare(CLONE_NEWPID | CLONE_NEWNS) != 0:
                    raise OSError(ctypes.get_errno(), "unshare")
                pid = os.fork()
                if pid == 0:  # PID 1
                    try:
                        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # and so the namespace
                        libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
                        if libc.mount(b"proc", b"/proc", b"proc",
                                      MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
                            raise OSError(ctypes.get_errno(), "mount /proc")
                        fd = os.open(logpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                        nul = os.open("/dev/null", os.O_RDONLY)
                        os.dup2(nul, 0)
                        os.dup2(fd, 1)
                        os.dup2(fd, 2)
                        os.chdir(cwd)
                        os.execvpe(argv[0], argv, env)
                    except BaseException as e:  # noqa: BLE001
                        try:
                            os.write(2, f"bench: cannot start {argv}: {e}\n".encode())
                        finally:
                            os._exit(127)
                os.write(w, f"{pid}\n".encode())
                _, st = os.waitpid(pid, 0)
                os.write(w, f"{st}\n".encode())
            except BaseException as e:  # noqa: BLE001
                try:
                    os.write(2, f"bench: waiter: {e}\n".encode())
                finally:
                    code = 1
            os._exit(code)
        os.close(w)
        self.r = r
        self.buf = b""
        self.status = None
        self.pid = None
        LIVE.append(self)
        line = self._line(10)
        if line is None:
            self.kill()
            raise RuntimeError("init did not start")
        self.pid = int(line)
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except OSError:  # already gone
            self.pidfd = None

    def _line(self, timeout):
        end = now() + timeout
        while b"\n" not in self.buf:
            left = end - now()
            if left <= 0:
                return None
            rl, _, _ = select.select([self.r], [], [], left)
            if rl:
                chunk = os.read(self.r, 64)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def wait_exit(self, timeout):
        """Seconds until the init exited (measured on its pidfd), or None."""
        t0 = now()
        if self.pidfd is not None:
            rl, _, _ = select.select([self.pidfd], [], [], timeout)
            if not rl:
                return None
        return now() - t0

    def result(self, timeout=10):
        """the init's shell-style exit code, once it has exited."""
        if self.status is None:
            line = self._line(timeout)
            if line is not None:
                self.status = int(line)
                self._reap()
        return None if self.status is None else exitcode(self.status)

    def _reap(self):
        self.kill()  # the init has exited: this only reaps the waiter and closes fds

    def kill(self):
        """SIGKILL the init (the kernel then kills its whole namespace), reap the waiter."""
        if self not in LIVE:
            return
        if self.status is None and self.pid:
            try:
                if self.pidfd is not None:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                else:
                    os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, OSError):
                pass
        end = now() + 10
        done = 0
        while now() < end:
            try:
                done, _ = os.waitpid(self.waiter, os.WNOHANG)
            except ChildProcessError:
                done = self.waiter
            if done:
                break
            time.sleep(0.01)
        if not done:
            try:
                os.kill(self.waiter, signal.SIGKILL)
                os.waitpid(self.waiter, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for fd in (self.r, self.pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.r = self.pidfd = None
        if self in LIVE:
            LIVE.remove(self)


def cleanup(*_):
    for p in list(LIVE):
        try:
            p.kill()
        except Exception:  # noqa: BLE001
            pass


def on_signal(signum, _frame):
    cleanup()
    os._exit(128 + signum)


# ------------------------------------------------------------ the inits


class Peer:
    def __init__(self, name, kind, exe, note=""):
        self.name, self.kind, self.exe, self.note = name, kind, exe, note
        self.env_extra = {}

    def argv(self, main, work):
        """argv of the init supervising `main`; work is a fresh dir for its files."""
        k = self.kind
        if k in ("tini", "dumb-init", "catatonit"):
            return [self.exe, "--"] + main
        if k == "horust":  # its own socket folder, not /var/run/horust
            return [self.exe, "--uds-folder-path", work, "--"] + main
        if k == "bosun":
            return [self.exe, "--"] + main
        if k in ("s6", "runit"):
            svc = os.path.join(work, "scan", "main")
            os.makedirs(svc)
            run = os.path.join(svc, "run")
            with open(run, "w") as f:
                f.write("#!/bin/sh\nexec " + shlex.join(main) + "\n")
            os.chmod(run, 0o755)
            scan = os.path.join(work, "scan")
            return [self.exe, scan] if k == "s6" else [self.exe, "-P", scan]
        if k == "supervisord":
            conf = os.path.join(work, "supervisord.conf")
            with open(conf, "w") as f:
                f.write(
                    "[supervisord]\nnodaemon=true\nuser=root\n"
                    f"logfile={work}/supervisord.log\npidfile={work}/supervisord.pid\n"
                    f"childlogdir={work}\n\n"
                    f"[program:main]\ncommand={shlex.join(main)}\n"
                    f"stdout_logfile={work}/main.out\nstderr_logfile={work}/main.err\n"
                )
            return [self.exe, "-n", "-c", conf]
        raise ValueError(k)

    def true_argv(self, work):
        """`INIT -- /bin/true` when not PID 1, or None where not meaningful."""
        if self.kind == "tini":
            return [self.exe, "-s", "--", "/bin/true"]
        if self.kind == "horust":
            return [self.exe, "--uds-folder-path", work, "--", "/bin/true"]
        if self.kind in ("dumb-init", "catatonit", "bosun"):
            return [self.exe, "--", "/bin/true"]
        return None

    def env(self, work):
        e = dict(os.environ)
        if self.kind == "bosun":
            rd = os.path.join(work, "run")
            os.makedirs(rd, exist_ok=True)
            e.update(BOSUN_SERVICE="bench", BOSUN_RUN_DIR=rd, BOSUN_STOP_TIMEOUT="2s")
        e.update(self.env_extra)
        return e


class Bench:
    def __init__(self, tmp, quick=False):
        self.tmp = tmp
        self.n = 0
        self.quick = quick

    def work(self, label):
        self.n += 1
        d = os.path.join(self.tmp, f"{self.n:03d}-{label}")
        os.makedirs(d)
        return d

    def start(self, peer, main, label):
        w = self.work(f"{peer.name}-{label}".replace(" ", "_").replace("(", "").replace(")", ""))
        argv = peer.argv(main, w)
        p = Pid1(argv, peer.env(w), w, os.path.join(w, "init.log"))
        p.work = w
        return p

    # 1. memory while supervising `sleep infinity`
    def memory(self, peer):
        p = self.start(peer, ["sleep", "infinity"], "mem")
        try:
            def sleeping():
                return [q for q in tree(p.pid) if comm(q) == "sleep"]

            if not wait_for(sleeping, 15):
                return {"error": "sleep never started"}
            if peer.kind == "bosun":
                wait_for(lambda: any(comm(q) == "listener" for q in tree(p.pid)), 3)
            time.sleep(0.5)  # let lazy start-up (threads, listener) settle
            samples = []
            for _ in range(3):  # three looks 0.3 s apart; the median (by tree Pss) is kept
                rss, pss = mem(p.pid)
                procs = [q for q in tree(p.pid) if comm(q) != "sleep"]
                tree_pss = tree_rss = 0
                names = []
                for q in procs:
                    r, s_ = mem(q)
                    tree_pss += s_ or 0
                    tree_rss += r or 0
                    names.append(comm(q))
                samples.append((tree_pss, tree_rss, rss, pss, names, procs))
                time.sleep(0.3)
            samples.sort(key=lambda x: x[0])
            tree_pss, tree_rss, rss, pss, names, procs = samples[1]
            res = {"rss": rss, "pss": pss, "tree_pss": tree_pss, "tree_rss": tree_rss,
                   "tree": names}
            if peer.kind == "bosun":
                res["maps"] = {comm(q): pss_by_mapping(q) for q in procs}
            return res
        finally:
            p.kill()

    # 3. 2,000 orphans
    def orphans(self, peer, n, runs):
        res = []
        for i in range(runs):
            w_out = os.path.join(self.tmp, f"orphans-{peer.name}-{i}.json".replace(" ", "_"))
            main = [PY, os.path.join(HERE, "bench.py"), "orphans", w_out, str(n)]
            p = self.start(peer, main, f"orph{i}")
            try:
                got = wait_for(lambda: os.path.exists(w_out) and read(w_out), 150, 0.05)
                if not got:
                    res.append({"error": "timeout (150 s)"})
                    break
                r = json.loads(got)
                res.append(r)
                if "error" in r or r["clear_ms"] > 1000:  # slow peers: one run is enough
                    break
            finally:
                p.kill()
        return res

    # 4. exit codes
    def exit_code(self, peer, main, cap=10.0):
        p = self.start(peer, main, "code")
        try:
            t0 = now()
            if p.wait_exit(cap) is None:
                return f"runs on (>{cap:.0f}s)"
            dt = now() - t0
            code = p.result()
            return str(code) if dt < 0.5 else f"{code} (after {dt:.1f} s)"
        finally:
            p.kill()

    # 5. stop
    def stop(self, peer, mode, cap=5.0):
        ready = os.path.join(self.tmp, f"ready-{self.n + 1}")
        main = [PY, os.path.join(HERE, "bench.py"), "stopmain", mode, ready]
        p = self.start(peer, main, f"stop-{mode}")
        try:
            if not wait_for(lambda: os.path.exists(ready), 20):
                return {"error": "main never ready"}
            if mode != "exit":  # main execs sleep after writing the file
                wait_for(lambda: any(comm(q) == "sleep" for q in tree(p.pid)), 5)
            time.sleep(0.3)  # a listener, if any, is up too
            t0 = now()
            os.kill(p.pid, signal.SIGTERM)
            dt = p.wait_exit(cap) if p.pidfd is not None else None
            if dt is None:
                left = [comm(q) for q in tree(p.pid)]
                return {"hung": True, "cap": cap, "left": left}
            dt = now() - t0
            return {"s": dt, "code": p.result()}
        finally:
            p.kill()


# ------------------------------------------------ /bin/true (not PID 1)


def run_deadline(argv, timeout, **kw):
    pr = subprocess.Popen(argv, start_new_session=True, **kw)
    try:
        out, err = pr.communicate(timeout=timeout)
        return pr.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(pr.pid, signal.SIGKILL)
        pr.communicate()
        return None, None, None


def time_true(cmds, rounds, runs, tmp, slow_s=0.1):
    """cmds: {label: (argv, env)}. Interleaved rounds of hyperfine (-N) so that load from
    other work on the machine hits every command alike. Returns {label: {"times": [s...],
    "cpu": [user+sys s per round...]}} or None for a label whose command failed."""
    out = {k: {"times": [], "cpu": []} for k in cmds}
    hf = shutil.which("hyperfine")
    slow = set()
    for label, (argv, env) in cmds.items():  # a slow init gets a few runs, not hundreds
        t0 = now()
        rc, _, _ = run_deadline(argv, 30, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if rc != 0:
            log(f"  {label}: `{shlex.join(argv)}` gave {rc}; not timed")
            out[label] = None
        elif now() - t0 > slow_s:
            slow.add(label)
    cmds = {k: v for k, v in cmds.items() if out[k] is not None}
    for rnd in range(rounds):
        for label, (argv, env) in cmds.items():
            n, warm = (runs, 5) if label not in slow else (5, 0)
            if label in slow and rnd > 0:
                continue
            if hf:
                js = os.path.join(tmp, "hf.json")
                rc, _, err = run_deadline(
                    [hf, "-N", "--style", "none", "--warmup", str(warm), "--runs", str(n),
                     "--export-json", js, shlex.join(argv)],
                    120, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                if rc != 0:
                    out[label] = None
                    log(f"  {label}: hyperfine failed: {(err or b'').decode()[-300:]}")
                    continue
                with open(js) as f:
                    r = json.load(f)["results"][0]
                out[label]["times"] += r["times"]
                out[label]["cpu"].append(r["user"] + r["system"])
            else:
                cpu = 0.0
                quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
                for _ in range(n):
                    t0 = time.perf_counter_ns()
                    pid = os.posix_spawnp(argv[0], argv, env, file_actions=quiet)  # PATH: unshare
                    _, _, ru = os.wait4(pid, 0)
                    out[label]["times"].append((time.perf_counter_ns() - t0) / 1e9)
                    cpu += ru.ru_utime + ru.ru_stime
                out[label]["cpu"].append(cpu / n)
        cmds = {k: v for k, v in cmds.items() if out[k] is not None}
    return out


# ------------------------------------------------ main programs (in the namespace)


def pid1_cpu_ns():
    """CPU time PID 1 (all its threads) has run, from schedstat, in ns."""
    try:
        return sum(int(read(f"/proc/1/task/{t}/schedstat", "0").split()[0])
                   for t in os.listdir("/proc/1/task"))
    except (OSError, ValueError, IndexError):
        return None


def main_orphans(out, n):
    if os.path.exists(out):  # restarted by a supervisor after the run: stay quiet
        os.execvp("sleep", ["sleep", "infinity"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 500)), hard))
    r, w = os.pipe()
    os.set_inheritable(r, True)
    t_setup = now()
    gpids = []
    batch = 100
    # Each intermediate `sh` starts a batch of `cat`s reading the pipe in the background,
    # prints their pids and exits at once: the cats are orphans, adopted by PID 1.
    script = f'for i in $(seq {batch}); do cat <&{r} >/dev/null 2>&1 & echo $!; done'
    while len(gpids) < n:
        k = min(batch, n - len(gpids))
        pr = subprocess.Popen(["sh", "-c", script.replace(f"seq {batch}", f"seq {k}")],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              pass_fds=(r,))
        out_, _ = pr.communicate(timeout=60)
        gpids += [int(x) for x in out_.split()]
    os.close(r)
    fork_s = now() - t_setup

    def ready():
        for g in gpids:
            st = read(f"/proc/{g}/stat", "")
            if not st or st[st.rfind(")") + 2] != "S" or "(cat)" not in st:
                return False
        return True

    if not wait_for(ready, 60, 0.05):
        with open(out, "w") as f:
            json.dump({"error": "grandchildren not ready in 60 s"}, f)
        return
    pidfds = [os.pidfd_open(g) for g in gpids]
    ep = select.epoll()
    for fd in pidfds:
        ep.register(fd, select.EPOLLIN)
    setup_s = now() - t_setup
    left_exit = set(pidfds)
    c0 = pid1_cpu_ns()
    t0 = time.monotonic_ns()
    os.close(w)  # every grandchild reads EOF now and exits
    end = now() + 120
    while left_exit and now() < end:
        for fd, _ in ep.poll(1.0):
            if fd in left_exit:
                left_exit.discard(fd)
                ep.unregister(fd)
    t_exit = time.monotonic_ns()
    left = set(gpids)
    sweeps = 0
    while left and now() < end:
        sweeps += 1
        for g in list(left):
            try:
                os.kill(g, 0)  # a zombie still answers; a reaped pid does not
            except ProcessLookupError:
                left.discard(g)
        if left:
            time.sleep(0.0002 if sweeps < 50 else 0.005)
    t_clear = time.monotonic_ns()
    c1 = pid1_cpu_ns()
    zombies = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = read(f"/proc/{d}/stat", "")
            if st and st[st.rfind(")") + 2] == "Z":
                zombies += 1
    res = {"n": n, "setup_s": round(setup_s, 2), "fork_s": round(fork_s, 2),
           "exit_ms": (t_exit - t0) / 1e6, "clear_ms": (t_clear - t0) / 1e6,
           "lag_ms": (t_clear - t_exit) / 1e6, "sweeps": sweeps,
           "pid1_cpu_ms": (c1 - c0) / 1e6 if c0 is not None and c1 is not None else None,
           "not_exited": len(left_exit), "not_reaped": len(left), "zombies_left": zombies}
    if left or left_exit:
        res["error"] = f"deadline: {len(left_exit)} not exited, {len(left)} not reaped"
    tmpf = out + ".tmp"
    with open(tmpf, "w") as f:
        json.dump(res, f)
    os.rename(tmpf, out)


def main_stop(mode, ready):
    if mode == "exit":
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        open(ready, "w").close()
        while True:
            signal.pause()
    if mode == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited across exec
    open(ready, "w").close()
    os.execvp("sleep", ["sleep", "infinity"])


# ------------------------------------------------ footprint (issue 11)
#
# `bench.py --footprint`: anonymous memory and Pss of bosun's supervisor (+ listener) and
# of its peers while idle, and `INIT -- /bin/true`, for any number of bosun builds
# ("variants") side by side with tini, tini-static, dumb-init and catatonit in one run.

FP_PEERS = [("tini", "tini", "tini"), ("tini-static", "tini", "tini-static"),
            ("dumb-init", "dumb-init", "dumb-init"), ("catatonit", "catatonit", "catatonit")]
# the supervisor gives its start-up text pages back ~2 s after start (supervisor/src/trim.rs):
# samples are taken after that, or they measure pages it is about to drop
SETTLE_S = 3.5


def rollup(pid):
    """{Rss, Pss, Anonymous, Pss_Anon, Pss_File, ...} kB from /proc/PID/smaps_rollup."""
    out = {}
    for line in (read(f"/proc/{pid}/smaps_rollup", "") or "").splitlines()[1:]:
        f = line.split()
        if len(f) >= 2 and f[0].endswith(":"):
            try:
                out[f[0][:-1]] = int(f[1])
            except ValueError:
                pass
    return out


def anon_breakdown(pid):
    """Where a process's anonymous memory is: [(kind, mapping, perms, size kB, anon kB)]
    from /proc/PID/smaps, only mappings with anonymous pages. Kinds: heap, stack (main
    thread), RELRO (a file's r--p pages written by the loader's relocations, then made
    read-only: .data.rel.ro, GOT), .data (a file's rw-p pages, written), .bss (the unnamed
    mapping right after a file's rw-p), thread stack (unnamed after a ---p guard), unnamed
    (mmap'd allocations: large malloc chunks, thread arenas, TLS)."""
    maps, cur = [], None
    for line in (read(f"/proc/{pid}/smaps", "") or "").splitlines():
        f = line.split()
        if f and "-" in f[0] and not f[0].endswith(":"):
            a, b = (int(x, 16) for x in f[0].split("-"))
            cur = {"start": a, "end": b, "perms": f[1],
                   "name": f[5] if len(f) > 5 else "", "anon": 0}
            maps.append(cur)
        elif f and f[0] == "Anonymous:" and cur is not None:
            cur["anon"] = int(f[1])
    out = []
    for i, m in enumerate(maps):
        if not m["anon"]:
            continue
        prev = maps[i - 1] if i else None
        name = m["name"]
        adj = prev is not None and prev["end"] == m["start"]
        if name == "[heap]":
            kind = "heap"
        elif name == "[stack]":
            kind = "stack"
        elif name.startswith("["):
            kind = name
        elif name:
            kind = "RELRO" if m["perms"].startswith("r--") else (
                ".data" if m["perms"].startswith("rw") else "text (written)")
        elif adj and prev["name"] and not prev["name"].startswith("["):
            kind = ".bss"
            name = os.path.basename(prev["name"]) + " (bss)"
        elif adj and prev["perms"].startswith("---"):
            kind = "thread stack"
        else:
            kind = "unnamed"
        out.append((kind, os.path.basename(name) if name else "", m["perms"],
                    (m["end"] - m["start"]) // 1024, m["anon"]))
    return out


def request(sock, line, deadline_s=15):
    """Sends one request line on the unix socket, reads until `done`/`error`/EOF."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(deadline_s)
    got = b""
    try:
        s.connect(sock)
        s.sendall(line.encode() + b"\n")
        end = now() + deadline_s
        while now() < end:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
            if any(x.startswith((b"done", b"error", b"pong")) for x in got.splitlines()):
                break
    except OSError as e:
        return f"error: {e}"
    finally:
        s.close()
    return got.decode(errors="replace").strip()


class Variant(Peer):
    """A bosun build: a directory holding `supervisor` and `listener`, plus variables."""

    def __init__(self, label, bindir, env):
        super().__init__(label, "bosun", os.path.join(bindir, "supervisor"))
        self.bindir = bindir
        self.env_extra = dict(env)

    def env(self, work):
        e = super().env(work)
        e["BOSUN_CALLBACKS"] = os.path.join(HERE, "callbacks.sh")
        e["BOSUN_SETUP"] = ""
        e.update(self.env_extra)
        return e


def parse_variants(spec):
    """`LABEL=DIR[:VAR=VAL,...]`, several separated by `;` or newlines."""
    out = []
    for item in spec.replace("\n", ";").split(";"):
        item = item.strip()
        if not item:
            continue
        label, _, rest = item.partition("=")
        d, _, env = rest.partition(":")
        kv = {}
        for pair in env.split(","):
            if pair.strip():
                k, _, v = pair.partition("=")
                kv[k.strip()] = v
        out.append(Variant(label.strip(), os.path.abspath(d.strip()), kv))
    return out


def default_variants():
    """BOSUN_BIN_DIR (default target/release), lazy and `listener_start = boot`, then the
    builds of build.sh that exist: static-pie, static, baseline."""
    repo = os.path.dirname(os.path.dirname(HERE))
    triple = "x86_64-unknown-linux-gnu"
    try:
        triple = subprocess.run(["rustc", "-vV"], capture_output=True, text=True,
                                timeout=30).stdout.split("host: ")[1].split()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        pass
    d = os.environ.get("BOSUN_BIN_DIR") or os.path.join(repo, "target", "release")
    out = [Variant("bosun", d, {}),
           Variant("bosun, listener_start=boot", d, {"BOSUN_LISTENER_START": "boot"}),
           Variant("bosun, listener_idle 1s", d, {"BOSUN_LISTENER_IDLE": "1s"})]
    for label, sub in (("bosun static-pie", f"target/static-pie/{triple}/release"),
                       ("bosun static (no PIE)", f"target/static/{triple}/release"),
                       ("baseline 3519c83", "target/baseline/release")):
        if os.path.isfile(os.path.join(repo, sub, "supervisor")):
            out.append(Variant(label, os.path.join(repo, sub), {}))
    return out


def fp_sample(init):
    """(per-process rollups, sum) for the init's own processes (bosun: supervisor and
    listener; a peer: PID 1 alone)."""
    procs = [init.pid]
    if init.peer.kind == "bosun":
        procs += [q for q in tree(init.pid)
                  if q != init.pid and comm(q) == "listener"]
    per = {}
    for q in procs:
        per[comm(q)] = rollup(q)
    tot = {k: sum(r.get(k, 0) for r in per.values()) for k in ("Anonymous", "Pss", "Rss")}
    return per, tot


def footprint_round(bench, inits, settle):
    """One round: every init started at once as PID 1 supervising `sleep infinity`; memory
    sampled `settle` s after boot; then (bosun) one action request, sampled `settle` s after
    its `done`. Returns {name: {"boot": ..., "request": ...}}."""
    live, res = [], {}
    try:
        for peer in inits:
            p = bench.start(peer, ["sleep", "infinity"], "fp")
            p.peer, p.t0 = peer, now()
            live.append(p)
        for p in live:
            if not wait_for(lambda: any(comm(q) == "sleep" for q in tree(p.pid)), 15):
                res[p.peer.name] = {"error": "sleep never started: " + (
                    read(os.path.join(p.work, "init.log"), "") or "")[-300:]}
        time.sleep(max(0.0, max(p.t0 for p in live) + settle - now()))
        for p in live:
            if p.peer.name in res:
                continue
            per, tot = fp_sample(p)
            r = res[p.peer.name] = {"boot": tot, "boot_per": per,
                                    "boot_procs": sorted(per)}
            if p.peer.name == "bosun":
                r["breakdown_boot"] = {comm(p.pid): anon_breakdown(p.pid)}
                r["pss_maps_boot"] = {comm(p.pid): pss_by_mapping(p.pid)}
        # ping: answered by the supervisor itself while no listener runs; it wakes the
        # loop (the first wake after 2 s gives the start-up text back); then one action,
        # the first request that needs the listener
        for state, line in (("ping", "ping"), ("request", "noop")):
            asked = False
            for p in live:
                r = res.get(p.peer.name) or {}
                if p.peer.kind != "bosun" or "boot" not in r:
                    continue
                sock = os.path.join(p.work, "run", "bench-request.sock")
                wait_for(lambda: os.path.exists(sock), 5)
                r["answer_" + state] = request(sock, line)
                asked = True
            if not asked:
                break
            time.sleep(settle)
            for p in live:
                r = res.get(p.peer.name) or {}
                if p.peer.kind != "bosun" or "boot" not in r:
                    continue
                per, tot = fp_sample(p)
                r.update({state: tot, state + "_per": per, state + "_procs": sorted(per)})
                if p.peer.name == "bosun":
                    r["breakdown_" + state] = {
                        comm(q): anon_breakdown(q) for q in tree(p.pid)
                        if comm(q) in ("supervisor", "listener")}
                    r["pss_maps_" + state] = {
                        comm(q): pss_by_mapping(q) for q in tree(p.pid)
                        if comm(q) in ("supervisor", "listener")}
    finally:
        for p in live:
            p.kill()
    return res


def fp_median(rounds, name, state, key):
    xs = [r[name][state][key] for r in rounds
          if name in r and state in r[name] and key in r[name][state]]
    return (med(xs), len(xs)) if xs else (None, 0)


STATES = (("boot", "booted"), ("ping", "after a `ping`"), ("request", "after an action"))


def fp_table(rounds, names, true_ms, kinds, true_cpu):
    tini = {k: fp_median(rounds, "tini", "boot", k)[0] for k in ("Anonymous", "Pss")}
    tt = {m: true_ms.get(m + "tini") for m in ("", "pid1:")}

    def cell(v, base, fmt="{:.0f}"):
        if v is None:
            return "-"
        return fmt.format(v) + (f" ({v / base:.2f}x)" if base else "")

    hdr = ["init", "listener running"]
    hdr += [f"anonymous kB, {t}" for _, t in STATES]
    hdr += [f"Pss kB, {t}" for _, t in STATES]
    hdr += ["supervisor alone: Pss kB, booted / after a `ping`",
            "`-- /bin/true` ms, as PID 1", "`-- /bin/true` ms, not PID 1",
            "its CPU ms, as PID 1 (unshare's included)"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for n in names:
        bosun = kinds[n] == "bosun"
        last = next((r[n] for r in reversed(rounds) if n in r), {})
        row = [n, " / ".join("yes" if "listener" in last.get(st + "_procs", []) else "no"
                             for st, _ in STATES) if bosun else "-"]
        for key in ("Anonymous", "Pss"):
            for st, _ in STATES:
                if bosun or st == "boot":
                    row.append(cell(fp_median(rounds, n, st, key)[0], tini[key]))
                else:
                    row.append("(same)")
        if bosun:
            sp = [med([r[n][st + "_per"]["supervisor"]["Pss"] for r in rounds
                       if n in r and "supervisor" in r[n].get(st + "_per", {})])
                  for st in ("boot", "ping")]
            row.append(" / ".join("-" if v is None else f"{v:.0f}" for v in sp))
        else:
            row.append("-")
        row.append(cell(true_ms.get("pid1:" + n), tt["pid1:"], "{:.2f}"))
        row.append(cell(true_ms.get(n), tt[""], "{:.2f}"))
        row.append(cell(true_cpu.get("pid1:" + n), true_cpu.get("pid1:tini"), "{:.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def fp_breakdown_text(rounds):
    last = next((r["bosun"] for r in reversed(rounds)
                 if "bosun" in r and "breakdown_boot" in r["bosun"]), None)
    if not last:
        return ""
    out = []
    for st, title in STATES:
        for proc, rows in (last.get("breakdown_" + st) or {}).items():
            agg = {}
            for kind, _, _, _, anon in rows:
                agg[kind] = agg.get(kind, 0) + anon
            tot = sum(agg.values())
            out.append(f"- **{proc}, {title}** (anonymous {tot} kB): " + ", ".join(
                f"{k} {v}" for k, v in sorted(agg.items(), key=lambda kv: -kv[1])))
            out.append("  - by mapping: " + "; ".join(
                f"{name or '-'} {perms} {size} kB → {anon} ({kind})"
                for kind, name, perms, size, anon in rows))
            maps = (last.get("pss_maps_" + st) or {}).get(proc) or {}
            items = sorted(maps.items(), key=lambda kv: -kv[1][0])
            out.append(f"  - Pss / Rss by mapping (Pss {sum(v[0] for v in maps.values())}): "
                       + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in items if v[1] > 0))
    return "\n".join(out)


ROLLUP_KEYS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Anonymous")


def slim_rounds(rounds):
    """rounds for the json: the main smaps_rollup fields, breakdowns of the last round only."""
    out = []
    for i, r in enumerate(rounds):
        o = {}
        for name, v in r.items():
            v = dict(v)
            for k in list(v):
                if k.endswith("_per"):
                    v[k] = {c: {f: x.get(f) for f in ROLLUP_KEYS} for c, x in v[k].items()}
                elif k.startswith(("breakdown_", "pss_maps_")) and i != len(rounds) - 1:
                    del v[k]
            o[name] = v
        out.append(o)
    return out


def replace_section(path, tag, text):
    """Puts text between `<!-- tag -->` and `<!-- /tag -->` in path, keeping the rest."""
    old = read(path, "") or ""
    a, b = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    block = f"{a}\n{text.rstrip()}\n{b}\n"
    if a in old and b in old:
        new = old[:old.index(a)] + block + old[old.index(b) + len(b):].lstrip("\n")
    else:
        new = block + ("\n" + old if old else "")
    with open(path, "w") as f:
        f.write(new)


def main_footprint(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--footprint", action="store_true")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--json", default=os.path.join(HERE, "footprint.json"))
    ap.add_argument("--rounds", type=int, default=7, help="memory rounds (medians over them)")
    # many short rounds, interleaved: load from other work hits every init alike
    ap.add_argument("--true-rounds", type=int, default=20)
    ap.add_argument("--true-runs", type=int, default=15)
    ap.add_argument("--settle", type=float, default=SETTLE_S)
    ap.add_argument("--command", default="bench/pid1/run.sh --footprint")
    a = ap.parse_args(argv)
    atexit.register(cleanup)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    if os.geteuid() != 0:
        log("bench/pid1 needs root (PID namespaces, /proc of every process)")
        return 2
    spec = os.environ.get("BOSUN_VARIANTS", "").strip()
    # "+..." adds to the default set instead of replacing it
    if spec.startswith("+"):
        variants = default_variants() + parse_variants(spec[1:])
    else:
        variants = parse_variants(spec) if spec else default_variants()
    peers = [Peer(n, k, shutil.which(e) or e) for n, k, e in FP_PEERS]
    inits, skipped = [], {}
    for p in variants + peers:
        why = preflight(p, a.tmp)
        if why:
            log(f"skip {p.name}: {why}")
            skipped[p.name] = why
        else:
            inits.append(p)
    names = [p.name for p in inits]
    kinds = {p.name: p.kind for p in inits}
    bench = Bench(a.tmp)
    t_start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = os.getloadavg()

    log(f"== memory: {a.rounds} rounds, all inits at once, sampled {a.settle} s after boot "
        "and after one request")
    rounds = []
    for i in range(a.rounds):
        r = footprint_round(bench, inits, a.settle)
        rounds.append(r)
        log(f"  round {i + 1}: " + "; ".join(
            f"{n}: anon {v.get('boot', {}).get('Anonymous')}"
            f"/{v.get('request', {}).get('Anonymous')} pss {v.get('boot', {}).get('Pss')}"
            f"/{v.get('request', {}).get('Pss')}" + (f" {v['error']}" if "error" in v else "")
            for n, v in r.items()))
    answers = {st: rounds[-1].get("bosun", {}).get("answer_" + st) for st in ("ping", "request")}

    log("== `INIT -- /bin/true`, as PID 1 and not (hyperfine -N)")
    uns = ["unshare", "--pid", "--fork", "--mount-proc"]
    cmds = {"/bin/true alone": (["/bin/true"], dict(os.environ)),
            "pid1:/bin/true alone": (uns + ["/bin/true"], dict(os.environ))}
    for p in inits:
        w = bench.work("true-" + p.kind)
        t = p.true_argv(w)
        t1 = [p.exe] + t[2:] if t[:2] == [p.exe, "-s"] else t
        cmds[p.name] = (t, p.env(w))
        cmds["pid1:" + p.name] = (uns + t1, p.env(w))
    # every init here exits at once: a slow first run is load, not the init (1 s threshold)
    timed = time_true(cmds, a.true_rounds, a.true_runs, a.tmp, slow_s=1.0)
    true_ms, true_cpu = {}, {}
    for k, v in timed.items():
        if v and v["times"]:
            true_ms[k] = med(v["times"]) * 1000
            true_cpu[k] = med(v["cpu"]) * 1000
            log(f"  {k}: median {true_ms[k]:.3f} ms, cpu {true_cpu[k]:.2f} ms, "
                f"n={len(v['times'])}")
    load1 = os.getloadavg()

    table = fp_table(rounds, names, true_ms, kinds, true_cpu)
    print(table)
    tini_anon = fp_median(rounds, "tini", "boot", "Anonymous")[0]
    goals = []
    if "bosun" in names and tini_anon:
        for st, what in STATES:
            v = fp_median(rounds, "bosun", st, "Anonymous")[0]
            if v is not None:
                procs = "+".join(rounds[-1].get("bosun", {}).get(st + "_procs", []))
                goals.append((v <= 2 * tini_anon, f"anonymous ≤ 2x tini's ({what}, {procs}): "
                              f"{v:.0f} kB vs {tini_anon:.0f} kB = {v / tini_anon:.2f}x"))
        for st, what in STATES[:2]:
            sp = med([r["bosun"][st + "_per"]["supervisor"]["Pss"] for r in rounds
                      if "bosun" in r and st + "_per" in r["bosun"]])
            if sp is not None:
                goals.append((sp <= 700, f"supervisor Pss ≤ 700 kB ({what}): {sp:.0f} kB"))
        for m, what in (("pid1:", "as PID 1"), ("", "not PID 1")):
            b, t = true_ms.get(m + "bosun"), true_ms.get(m + "tini")
            if b and t:
                goals.append((b <= 1.2 * t, f"`-- /bin/true` ≤ 1.2x tini ({what}): "
                              f"{b:.2f} ms vs {t:.2f} ms = {b / t:.2f}x"))
    gtext = "\n".join(f"- [{'x' if ok else ' '}] {t}" for ok, t in goals)
    print(gtext)
    cpu = "?"
    for line in (read("/proc/cpuinfo", "") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    var_lines = "\n".join(
        f"- {p.name}: `{getattr(p, 'orig_exe', p.exe)}` (built "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(os.path.getmtime(getattr(p, 'orig_exe', p.exe))))}, "
        f"supervisor {os.path.getsize(p.exe) // 1024} kB, listener "
        f"{os.path.getsize(os.path.join(os.path.dirname(p.exe), 'listener')) // 1024} kB)"
        + (f", env {' '.join(f'{k}={v}' for k, v in p.env_extra.items())}" if p.env_extra else "")
        for p in inits if p.kind == "bosun")
    skip_text = "".join(f"\nSkipped: {n}: {w}." for n, w in skipped.items())
    alone = true_ms.get("pid1:/bin/true alone")
    text = f"""## Footprint (issue 11): anonymous memory, Pss, `-- /bin/true`

Date: {t_start} (load average {load0[0]:.2f} at start, {load1[0]:.2f} at the end).
Machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, {platform.machine()}.
Command (from the repo root, as root): `{a.command}`

{table}

Medians: memory over {len(rounds)} rounds, `-- /bin/true` over {a.true_rounds}x{a.true_runs}
runs each. Ratios are to tini. `unshare --pid --fork --mount-proc /bin/true` alone:
{fmt_ms(alone)} ms (it is in every "as PID 1" figure).

Goals:

{gtext}

Variants measured:
{var_lines}{skip_text}

Where the supervisor's anonymous memory goes (variant `bosun`, last round, `/proc/PID/smaps`
mappings with `Anonymous:` pages, kB; name perms size → anonymous (kind)):

{fp_breakdown_text(rounds)}

How it is measured (`bench.py --footprint`):
- Every init runs as PID 1 of its own PID+mount namespace (as `unshare --pid --fork
  --mount-proc`), supervising `sleep infinity`, from a private copy of its binaries (so no
  other process shares their file pages: Pss counts them as in a container). In each round
  all inits start at once; memory is read {a.settle} s after boot ("booted"). Then bosun gets
  a `ping` (which the supervisor answers itself while no listener runs), read again
  {a.settle} s later ("after a `ping`"), then one action request (`noop`, a `CB_noop` in
  `callbacks.sh`: the first request that needs the listener), read again {a.settle} s after
  its `done` ("after an action"). The supervisor gives its start-up text pages back at the
  first wake-up of its loop at least 2 s after start (`supervisor/src/trim.rs`): with no
  event (booted, idle) that wake-up never comes, so "booted" is still untrimmed and the
  `ping` is what trims it. Last round's answers: ping {answers.get('ping')!r}, action
  {answers.get('request')!r}.
- **anonymous** = `Anonymous:` of `/proc/PID/smaps_rollup`, summed over the supervisor and
  its listener (when one runs): pages no other container can share. **Pss** likewise.
  Peers are one process and get no requests: one figure.
- **`-- /bin/true`**: `hyperfine -N`, rounds interleaved across the inits; "as PID 1" is
  `unshare --pid --fork --mount-proc INIT -- /bin/true`; "not PID 1" is `INIT -- /bin/true`
  (tini with `-s`, a subreaper as bosun and catatonit become). "its CPU": user+system time
  of the whole `unshare ... INIT -- /bin/true` as hyperfine reports it (median of the rounds'
  means); it moves less than wall time with the load of other work on the machine.
"""
    replace_section(a.out, "footprint", text)
    with open(a.json, "w") as f:
        json.dump({"date": t_start, "command": a.command, "rounds": slim_rounds(rounds),
                   "true_ms": true_ms, "true_cpu_ms": true_cpu, "skipped": skipped,
                   "variants": {p.name: {"dir": os.path.dirname(getattr(p, "orig_exe", p.exe)),
                                         "env": p.env_extra}
                                for p in inits if p.kind == "bosun"}},
                  f, indent=1, default=str)
    log(f"wrote {a.out} and {a.json}")
    return 0


# ------------------------------------------------ report


def fmt_ms(v):
    return "-" if v is None else f"{v:.2f}"


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_ratio(v, base, unit_fmt):
    if v is None:
        return "-"
    s = unit_fmt(v)
    if base:
        s += f" ({v / base:.2f}x)"
    return s


def fmt_stop(r):
    if r is None:
        return "-"
    if "error" in r:
        return "error: " + r["error"]
    if r.get("hung"):
        return f"hung (>{r['cap']:.0f}s: {'+'.join(r.get('left', []))})"
    return f"{r['s'] * 1000:.0f} ms → {r['code']}"


def report(results, order, meta):
    base = results.get("tini", {})
    b_mem = base.get("mem") or {}
    hdr = ["init", "VmRSS kB", "Pss kB", "tree Pss kB (processes)",
           "`-- /bin/true` ms", "same as PID 1 ms", "its CPU ms", "its CPU as PID 1 ms",
           f"{meta.get('orphans', 2000):,} orphans: exited → reaped ms (PID 1 CPU ms)",
           "exit 3", "killed by TERM", "stop: main exits 0 on TERM", "stop: main dies of TERM",
           "stop: main ignores TERM"]
    rows = []
    for name in order:
        r = results[name]
        if r.get("skip"):
            rows.append([name, f"skipped: {r['skip']}"] + [""] * (len(hdr) - 2))
            continue
        m = r.get("mem") or {}
        if "error" in m:
            memc = ["error: " + m["error"], "-", "-"]
        else:
            memc = [fmt_ratio(m.get("rss"), b_mem.get("rss"), lambda v: f"{v}"),
                    fmt_ratio(m.get("pss"), b_mem.get("pss"), lambda v: f"{v}"),
                    fmt_ratio(m.get("tree_pss"), b_mem.get("tree_pss"), lambda v: f"{v}")
                    + f" ({'+'.join(m.get('tree', []))})"]
        tc = []
        for key in ("true_ms", "true1_ms", "true_cpu_ms", "true1_cpu_ms"):
            v = r.get(key)
            c = fmt_ratio(v, base.get(key), lambda x: f"{x:.2f}") if v else "-"
            nkey = key.replace("_ms", "_n").replace("_cpu_n", "_n")
            if v and r.get(nkey, 99) <= 5:
                c += f" n={r[nkey]}"
            tc.append(c)
        orph = r.get("orphans") or []
        ok = [o for o in orph if "error" not in o]
        if ok:
            cpu = [o["pid1_cpu_ms"] for o in ok if o.get("pid1_cpu_ms") is not None]
            orc = (f"{med([o['exit_ms'] for o in ok]):.1f} → {med([o['clear_ms'] for o in ok]):.1f}"
                   f" (lag {med([o['lag_ms'] for o in ok]):.1f}; "
                   f"CPU {med(cpu) if cpu else float('nan'):.1f}; n={len(ok)})")
        elif orph:
            orc = "error: " + orph[-1]["error"]
        else:
            orc = "-"
        rows.append([name] + memc + tc + [orc, str(r.get("code3", "-")),
                                          str(r.get("codeterm", "-")),
                                          fmt_stop(r.get("stop_exit")),
                                          fmt_stop(r.get("stop_default")),
                                          fmt_stop(r.get("stop_ignore"))])
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def maps_text(results):
    m = (results.get("bosun") or {}).get("mem") or {}
    if not m.get("maps"):
        return ""
    out = ["Where bosun's memory goes (`/proc/PID/smaps`, Pss / Rss kB by mapping, "
           "supervising `sleep infinity`):", ""]
    for proc, maps in m["maps"].items():
        items = sorted(maps.items(), key=lambda kv: -kv[1][0])
        tot = sum(v[0] for v in maps.values())
        out.append(f"- {proc} (Pss {tot}): " + ", ".join(
            f"{k} {v[0]}/{v[1]}" for k, v in items if v[1] > 0))
    return "\n".join(out)


def goals(results):
    b = results.get("bosun")
    t = results.get("tini")
    if not b or b.get("skip") or not t or t.get("skip"):
        return "bosun or tini was not measured: no goal check."
    out = []

    def line(ok, text):
        out.append(f"- [{'x' if ok else ' '}] {text}")

    m, tm = b.get("mem") or {}, t.get("mem") or {}
    if m.get("tree_pss") is not None:
        line(m["tree_pss"] <= 700, f"Pss with the listener ≤ 700 kB: {m['tree_pss']} kB "
             f"({'+'.join(m.get('tree', []))}; supervisor alone {m.get('pss')} kB)")
    if m.get("rss") and tm.get("rss"):
        line(m["rss"] <= 1.5 * tm["rss"], f"VmRSS ≤ 1.5x tini: {m['rss']} kB vs {tm['rss']} kB "
             f"= {m['rss'] / tm['rss']:.2f}x")
    for key, what in (("true_ms", "not PID 1"), ("true1_ms", "as PID 1"),
                      ("true_cpu_ms", "CPU time, not PID 1"),
                      ("true1_cpu_ms", "CPU time, as PID 1, unshare's included")):
        if b.get(key) and t.get(key):
            line(b[key] <= 1.2 * t[key],
                 f"`-- /bin/true` within 1.2x tini ({what}): {b[key]:.2f} ms vs "
                 f"{t[key]:.2f} ms = {b[key] / t[key]:.2f}x")
    ok = [o for o in b.get("orphans") or [] if "error" not in o]
    if ok:
        lag = med([o["lag_ms"] for o in ok])
        tok = [o for o in t.get("orphans") or [] if "error" not in o]
        tl = f"{med([o['lag_ms'] for o in tok]):.1f} ms" if tok else "-"
        bc = med([o["pid1_cpu_ms"] for o in ok if o.get("pid1_cpu_ms") is not None] or [0])
        tc = med([o["pid1_cpu_ms"] for o in tok if o.get("pid1_cpu_ms") is not None] or [0])
        line(lag <= 5, f"{ok[0]['n']:,} orphans reaped within 5 ms of their exit: median {lag:.1f} ms after "
             f"the last exit, {med([o['clear_ms'] for o in ok]):.1f} ms after the release "
             f"(tini: {tl}); PID 1 CPU {bc:.1f} ms vs tini {tc:.1f} ms")
    line(str(b.get("code3")) == str(t.get("code3"))
         and str(b.get("codeterm")) == str(t.get("codeterm")),
         f"exit codes as tini: {b.get('code3')}/{b.get('codeterm')} vs "
         f"{t.get('code3')}/{t.get('codeterm')}")
    se, si = b.get("stop_exit") or {}, b.get("stop_ignore") or {}
    sd = b.get("stop_default") or {}
    if "s" in se and "s" in sd:
        line(max(se["s"], sd["s"]) < 0.2,
             f"stop finishes as soon as the main process is gone: {se['s'] * 1000:.0f} ms "
             f"(handles TERM), {sd['s'] * 1000:.0f} ms (dies of TERM)")
    if "s" in si:
        line(si["s"] < 2.5 and si.get("code") == 137,
             f"main ignoring TERM is KILLed after stop_timeout=2s: {si['s']:.2f} s, code {si['code']}")
    return "\n".join(out)


def bosun_build():
    sup = os.environ.get("BOSUN_SUPERVISOR", "/work/main/target/release/supervisor")
    repo = os.path.dirname(os.path.dirname(HERE))
    try:
        rev = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = "?"
    try:
        built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(sup)))
    except OSError:
        built = "?"
    return f"`{sup}` built {built}, source tree at `{rev}`"


def find_peers():
    peers = []
    sup = os.environ.get("BOSUN_SUPERVISOR", "/work/main/target/release/supervisor")

    def add(name, kind, exe, note=""):
        peers.append(Peer(name, kind, exe, note))

    add("bosun", "bosun", sup)
    nl = Peer("bosun (BOSUN_LISTENER=off)", "bosun", sup)
    nl.env_extra = {"BOSUN_LISTENER": "off"}
    peers.append(nl)
    for name, kind, exe in [("tini", "tini", "tini"), ("tini-static", "tini", "tini-static"),
                            ("dumb-init", "dumb-init", "dumb-init"),
                            ("catatonit", "catatonit", "catatonit"),
                            ("s6-svscan", "s6", "s6-svscan"), ("runsvdir", "runit", "runsvdir"),
                            ("supervisord", "supervisord", "supervisord"),
                            ("horust", "horust", "horust")]:
        add(name, kind, shutil.which(exe) or exe)
    return peers


def private_copy(peer, tmp):
    """Run a private copy of a single-binary init, so that its file pages are not shared
    with anything else on the machine (another bosun under test, say): in a container it is
    the only process mapping its binary, and its Pss counts those pages in full. bosun's
    listener is copied alongside (the supervisor looks for it next to itself)."""
    if peer.kind not in ("bosun", "tini", "dumb-init", "catatonit", "horust"):
        return
    d = os.path.join(tmp, "bin", peer.name.replace(" ", "_").replace("(", "").replace(")", ""))
    os.makedirs(d, exist_ok=True)
    src = [peer.exe]
    if peer.kind == "bosun":
        src.append(os.path.join(os.path.dirname(peer.exe), "listener"))
    for f in src:
        if os.path.isfile(f):
            shutil.copy2(f, d)
    peer.orig_exe = peer.exe
    peer.exe = os.path.join(d, os.path.basename(peer.exe))


def preflight(peer, tmp):
    if not os.path.isfile(peer.exe) or not os.access(peer.exe, os.X_OK):
        return f"{peer.exe} not installed"
    private_copy(peer, tmp)
    if peer.kind == "bosun":
        w = tempfile.mkdtemp(prefix="preflight-", dir=tmp)
        rc, _, err = run_deadline([peer.exe, "--", "/bin/true"], 10, env=peer.env(w), cwd=w,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if rc != 0:
            last = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
            return f"`supervisor -- /bin/true` gave {rc}: {' '.join(last)}"
    return None


def main_bench(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--only", default="", help="comma-separated peer names")
    ap.add_argument("--orphans", type=int, default=2000)
    ap.add_argument("--orphan-runs", type=int, default=5)
    ap.add_argument("--true-rounds", type=int, default=4)
    ap.add_argument("--true-runs", type=int, default=50)
    ap.add_argument("--command", default="bench/pid1/run.sh")
    a = ap.parse_args(argv)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if os.geteuid() != 0:
        log("bench/pid1 needs root (PID namespaces, /proc of every process)")
        return 2

    bench = Bench(a.tmp)
    peers = find_peers()
    if a.only:
        want = set(a.only.split(","))
        peers = [p for p in peers if p.name in want]
    results, order = {}, [p.name for p in peers]
    live = []
    t_start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = os.getloadavg()
    for p in peers:
        why = preflight(p, a.tmp)
        if why:
            log(f"skip {p.name}: {why}")
            results[p.name] = {"skip": why}
        else:
            results[p.name] = {}
            live.append(p)

    log("== 1. memory while supervising `sleep infinity`")
    for p in live:
        results[p.name]["mem"] = m = bench.memory(p)
        log(f"  {p.name}: {m}")

    log("== 2. `INIT -- /bin/true`, not PID 1 and as PID 1 (hyperfine -N)")
    uns = ["unshare", "--pid", "--fork", "--mount-proc"]
    cmds = {"/bin/true alone": (["/bin/true"], dict(os.environ)),
            "pid1:/bin/true alone": (uns + ["/bin/true"], dict(os.environ))}
    for p in live:
        w = bench.work("true-" + p.kind)
        t = p.true_argv(w)
        if t:
            if t[:2] == [p.exe, "-s"]:  # tini: no -s as PID 1
                t1 = [p.exe] + t[2:]
            else:
                t1 = t
            cmds[p.name] = (t, p.env(w))
            cmds["pid1:" + p.name] = (uns + t1, p.env(w))
    timed = time_true(cmds, a.true_rounds, a.true_runs, a.tmp)
    true_ms, cpu_ms = {}, {}
    for k, v in timed.items():
        if v and v["times"]:
            true_ms[k] = med(v["times"]) * 1000
            cpu = cpu_ms[k] = statistics.mean(v["cpu"]) * 1000
            log(f"  {k}: median {true_ms[k]:.3f} ms (min {min(v['times']) * 1000:.3f}), "
                f"cpu {cpu:.2f} ms, n={len(v['times'])}")
            name, key = (k[5:], "true1") if k.startswith("pid1:") else (k, "true")
            if name in results:
                results[name][key + "_ms"] = true_ms[k]
                results[name][key + "_n"] = len(v["times"])
                results[name][key + "_min_ms"] = min(v["times"]) * 1000
                results[name][key + "_cpu_ms"] = cpu

    log(f"== 3. {a.orphans} orphans as PID 1")
    for p in live:
        results[p.name]["orphans"] = o = bench.orphans(p, a.orphans, a.orphan_runs)
        log(f"  {p.name}: {o}")

    log("== 4. exit codes as PID 1")
    for p in live:
        results[p.name]["code3"] = bench.exit_code(p, ["sh", "-c", "exit 3"])
        results[p.name]["codeterm"] = bench.exit_code(p, ["sh", "-c", "kill -TERM $$"])
        log(f"  {p.name}: {results[p.name]['code3']} {results[p.name]['codeterm']}")

    log("== 5. stop: TERM to PID 1")
    for p in live:
        for mode in ("exit", "default", "ignore"):
            results[p.name]["stop_" + mode] = s = bench.stop(p, mode)
            log(f"  {p.name} {mode}: {s}")

    meta = {"true_alone": true_ms.get("/bin/true alone"), "orphans": a.orphans,
            "true1_alone": true_ms.get("pid1:/bin/true alone"),
            "true1_alone_cpu": cpu_ms.get("pid1:/bin/true alone")}
    table = report(results, order, meta)
    print(table)
    g = goals(results)
    print()
    print(g)
    load1 = os.getloadavg()
    cpu = "?"
    for line in (read("/proc/cpuinfo", "") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    vers = {}
    for p in peers:
        if not results[p.name].get("skip"):
            vers[p.name] = getattr(p, "orig_exe", p.exe)
    full = (f"""## Full run: bosun's supervisor vs init peers

Date: {t_start} (load average {load0[0]:.2f} at start, {load1[0]:.2f} at the end; other
work was running on the machine).
Machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, {platform.machine()}.
bosun: {bosun_build()}.
Command (from the repo root, as root): `{a.command}`

{table}

Baselines, timed the same way: `/bin/true` alone {fmt_ms(meta.get('true_alone'))} ms;
`unshare --pid --fork --mount-proc /bin/true` {fmt_ms(meta.get('true1_alone'))} ms
(CPU {fmt_ms(meta.get('true1_alone_cpu'))} ms).

Goals (issue 2), for bosun with its listener:

{g}

{maps_text(results)}

How each column is measured (see `bench.py`):
- **VmRSS / Pss**: `/proc/PID/status` and `/proc/PID/smaps_rollup` of the init, as PID 1 of
  its own PID namespace, supervising `sleep infinity`: three looks 0.5, 0.8 and 1.1 s after
  the `sleep` appeared, the median one (by tree Pss) kept.
  "tree Pss" sums every process under the init except `sleep` (bosun: supervisor + listener;
  s6: s6-svscan + s6-supervise; runit: runsvdir + runsv). Ratios are against tini.
- **`-- /bin/true`**: not PID 1, median of {a.true_rounds}x{a.true_runs} runs of
  `hyperfine -N` (rounds interleaved across the commands so load hits all alike); tini gets
  `-s` (subreaper, as bosun and catatonit become when not PID 1). "same as PID 1":
  `unshare --pid --fork --mount-proc INIT -- /bin/true` timed the same way (the init then
  sees only its own namespace in /proc). "its CPU": user+system time of the whole command
  (init and /bin/true) as hyperfine reports it, when not PID 1: unlike wall time, it hardly
  moves with the load from other work on the machine; "its CPU as PID 1" likewise for the
  `unshare` command (unshare's own share included: see the baseline). "-" where the init supervises
  services and never exits with them.
- **orphans**: the main program (Python) starts {a.orphans} orphans: batches of 100 `cat`s
  reading one shared pipe, each batch put in the background by a `sh` that exits at once, so
  they are re-parented to PID 1. Once all block on the pipe, it closes the last write end
  (t0), waits on pidfds until every orphan has exited ("exited", ms after t0), then polls
  `kill(pid, 0)` until every pid is gone, i.e. reaped by PID 1 ("reaped"). "lag" = reaped -
  exited, PID 1's own share, which on 2 busy cores mostly measures when PID 1 gets a CPU;
  "CPU" = CPU time PID 1 ran from t0 to the end (`/proc/1/task/*/schedstat`), the
  load-independent cost of reaping. Median of up to {a.orphan_runs} runs (one run when a run
  takes over 1 s).
- **exit codes**: `INIT -- sh -c 'exit 3'` and `INIT -- sh -c 'kill -TERM $$'` as PID 1,
  the init's own exit status (128+N if it died of signal N). "runs on" = still running
  after 10 s (it restarts the service or keeps running without it).
- **stop**: SIGTERM to PID 1 from outside (as `docker stop`), time until PID 1 has exited
  (pidfd), and its exit code. The main process either exits 0 on TERM, dies of TERM
  (default action, `sleep infinity`), or ignores TERM (`trap '' TERM; exec sleep`).
  bosun runs with `BOSUN_STOP_TIMEOUT=2s`; "hung (>5s)" = still running after 5 s (then
  KILLed).

Binaries: {", ".join(f"{k}: `{v}`" for k, v in vers.items())}. Single-binary inits (bosun
with its listener, tini, dumb-init, catatonit, horust) run from a private copy in the scratch
directory, so that no other process on the machine shares their file pages and Pss counts
them as a container would.
""")
    replace_section(a.out, "full", full)
    with open(os.path.join(os.path.dirname(os.path.abspath(a.out)), "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "orphans":
        main_orphans(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "stopmain":
        main_stop(sys.argv[2], sys.argv[3])
    if "--footprint" in sys.argv[1:]:
        sys.exit(main_footprint(sys.argv[1:]))
    sys.exit(main_bench(sys.argv[1:]))
