//! The supervisor under test, in its own temp dir, as PID 1 of a fresh PID namespace or as
//! a subreaper; every wait with a deadline. The binaries come from the test crate that
//! uses it ([`Bins`]), so each test runs exactly the programs of its own build: the
//! supervisor's tests have the supervisor alone, the system tests all three.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::process::Proc;
pub use crate::wait::wait_until;

/// The programs a test crate has built.
#[derive(Debug, Clone, Copy)]
pub struct Bins {
    pub supervisor: &'static str,
    /// `None` where the crate has no listener binary: such tests run without one.
    pub listener: Option<&'static str>,
}

/// How the supervisor runs: as PID 1 of a new PID namespace, or as a subreaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pid1,
    Subreaper,
}

pub const MODES: [Mode; 2] = [Mode::Pid1, Mode::Subreaper];

/// How long the output may stay open after the supervisor has exited.
const OUTPUT_END: Duration = Duration::from_secs(10);

/// One supervisor run in its own temp dir (the run dir, scripts, logs).
pub struct Sup {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub mode: Mode,
    pub started: Instant,
    pub bins: Bins,
}

pub struct Builder {
    bins: Bins,
    mode: Mode,
    env: Vec<(String, String)>,
    args: Vec<String>,
    listener: bool,
    dir: tempfile::TempDir,
}

impl Builder {
    pub fn new(bins: Bins, mode: Mode) -> Builder {
        Builder {
            bins,
            mode,
            env: Vec::new(),
            args: Vec::new(),
            listener: false,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Runs the real listener (off by default: most PID-1 tests do not need it).
    pub fn with_listener(mut self) -> Self {
        assert!(
            self.bins.listener.is_some(),
            "this test needs the listener: it belongs with the system tests (tests/system)"
        );
        self.listener = true;
        self
    }

    /// Writes a file into the run's dir and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The main process: `bash -c SCRIPT`.
    pub fn script(mut self, script: &str) -> Self {
        self.args = vec!["bash".into(), "-c".into(), script.into()];
        self
    }

    pub fn cmd(mut self, argv: &[&str]) -> Self {
        self.args = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn command(&self) -> Command {
        let mut c = match self.mode {
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                    .arg(self.bins.supervisor);
                c
            }
            Mode::Subreaper => Command::new(self.bins.supervisor),
        };
        if !self.args.is_empty() {
            c.arg("--").args(&self.args);
        }
        c.env_remove("BOSUN_LOG")
            .env("BOSUN_SERVICE", "t")
            .env("BOSUN_RUN_DIR", self.dir.path().join("run"))
            .env("BOSUN_STATE_DIR", self.dir.path().join("state"))
            .env("BOSUN_CONFIG", self.dir.path().join("service.toml"))
            .env("BOSUN_SETUP", "")
            .env("BOSUN_CALLBACKS", self.dir.path().join("callbacks.sh"))
            .env("T", self.dir.path());
        // Always said: a supervisor left to look next to itself could find another
        // build's listener.
        match self.bins.listener {
            Some(l) if self.listener => c.env("BOSUN_LISTENER", l),
            _ => c.env("BOSUN_LISTENER", "off"),
        };
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn start(self) -> Sup {
        self.start_with(|_| {})
    }

    /// Starts it after `adjust` has had its say on the command (its environment, its stdin,
    /// what runs between fork and exec).
    pub fn start_with(self, adjust: impl FnOnce(&mut Command)) -> Sup {
        let mut c = self.command();
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        default_signals(&mut c);
        adjust(&mut c);
        Sup {
            proc: Proc::spawn(&mut c),
            dir: self.dir,
            mode: self.mode,
            started: Instant::now(),
            bins: self.bins,
        }
    }

    /// Runs to the end and returns (status, stdout, stderr), all of the output.
    pub fn run(self, deadline: Duration) -> (ExitStatus, String, String) {
        let mut s = self.start();
        let st = s.wait(deadline);
        s.join_output();
        let (o, e) = (s.stdout(), s.stderr());
        (st, o, e)
    }
}

impl Sup {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/t-request.sock")
    }

    /// The supervisor's own pid (in our namespace).
    pub fn pid(&self) -> i32 {
        wait_until(Duration::from_secs(5), "unshare's child", || self.pid_now())
    }

    /// The supervisor's pid, or `None` under unshare while it has not started or has
    /// already exited.
    fn pid_now(&self) -> Option<i32> {
        let outer = self.proc.pid();
        match self.mode {
            Mode::Subreaper => Some(outer),
            Mode::Pid1 => std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok())),
        }
    }

    /// Whether the supervisor (or unshare around it) still runs.
    pub fn running(&mut self) -> bool {
        self.proc.try_wait().is_none()
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        let sig = Signal::try_from(sig).expect("a signal number");
        kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
    }

    pub fn wait(&mut self, deadline: Duration) -> ExitStatus {
        self.proc.wait(deadline)
    }

    /// Waits until everything it wrote has been read: the output pumps are joined.
    pub fn join_output(&mut self) {
        self.proc.join_output(OUTPUT_END);
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr.text()
    }

    pub fn stdout(&self) -> String {
        self.proc.stdout.text()
    }

    /// Waits until `file` in the run dir contains `needle`; returns the file's text.
    pub fn wait_file(&self, name: &str, needle: &str, deadline: Duration) -> String {
        let p = self.path(name);
        wait_until(deadline, &format!("{needle:?} in {name}"), || {
            std::fs::read_to_string(&p)
                .ok()
                .filter(|t| t.contains(needle))
        })
    }

    /// Waits until `name` in the run dir has at least `n` lines; returns its text.
    pub fn wait_file_lines(&self, name: &str, n: usize, deadline: Duration) -> String {
        let p = self.path(name);
        wait_until(deadline, &format!("{n} lines in {name}"), || {
            std::fs::read_to_string(&p)
                .ok()
                .filter(|t| t.lines().count() >= n)
        })
    }

    pub fn wait_stdout(&self, needle: &str, deadline: Duration) -> String {
        self.proc.stdout.wait_text(needle, deadline)
    }

    pub fn wait_stderr(&self, needle: &str, deadline: Duration) -> String {
        self.proc.stderr.wait_text(needle, deadline)
    }

    /// Sends one request line and returns the reply lines.
    pub fn request(&self, line: &str) -> Vec<String> {
        request(&self.socket(), line)
    }

    pub fn wait_socket(&self) {
        let p = self.socket();
        wait_until(Duration::from_secs(10), "request socket answering", || {
            UnixStream::connect(&p).ok()
        });
    }

    /// On-demand tests: how many times the backend started (lines in `$T/starts`).
    pub fn starts(&self) -> usize {
        std::fs::read_to_string(self.path("starts"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Sup {
    /// A test that ends with the supervisor still running stops it the way docker would:
    /// TERM, a grace period, then KILL, so that no process of the test outlives it.
    fn drop(&mut self) {
        if self.running() {
            // Under unshare the supervisor may have exited already, unshare not yet: then
            // there is nothing to signal, only unshare to wait for.
            if let Some(pid) = self.pid_now() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            if self.proc.wait_within(Duration::from_secs(10)).is_none() {
                self.proc.kill();
            }
        }
    }
}

/// Sends one request line (the connection left open for writing, as `nc` does) and returns
/// the reply lines.
pub fn request(socket: &Path, line: &str) -> Vec<String> {
    crate::socket::ask(socket, line)
}

/// On-demand tests: sends `hi` to a held socket and returns the backend's first line.
pub fn hello(path: &Path) -> String {
    let mut c = UnixStream::connect(path).expect("connect held socket");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"hi\n").unwrap();
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).unwrap();
    line
}

/// On-demand tests over TCP: waits for `addr` to accept, sends `hi`, returns the first line.
pub fn hello_tcp(addr: &str) -> String {
    let mut c = wait_until(
        Duration::from_secs(10),
        &format!("{addr} accepting"),
        || std::net::TcpStream::connect(addr).ok(),
    );
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"hi\n").unwrap();
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).unwrap();
    line
}

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGUSR2: i32 = 12;
pub const SIGTERM: i32 = 15;
pub const SIGWINCH: i32 = 28;

/// A bash main process that logs every signal it gets to `$T/signals` and says `ready`
/// there once its traps are set. It exits 0 on TERM, INT and QUIT.
pub const SIGNAL_LOGGER: &str = r#"
for s in HUP USR1 USR2 WINCH; do trap "echo $s >> $T/signals" $s; done
for s in TERM INT QUIT; do trap "echo $s >> $T/signals; exit 0" $s; done
echo ready >> $T/signals
while :; do sleep 0.05 & wait $!; done
"#;

/// `supervisor status` against this run: (exit code, stdout).
pub fn status_cmd(s: &Sup) -> (i32, String) {
    let out = Command::new(s.bins.supervisor)
        .arg("status")
        .env("BOSUN_SERVICE", "t")
        .env("BOSUN_RUN_DIR", s.path("run"))
        .env("BOSUN_CONFIG", s.path("none.toml"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The running listener's pid as this process sees it (its logged pid is the inner one in a
/// PID namespace).
pub fn listener_pid(s: &Sup) -> i32 {
    let text = s.wait_stderr("spawned child=listener", Duration::from_secs(10));
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("spawned child=listener"))
        .unwrap();
    outer_pid(s, pid_of(line).parse().unwrap())
}

/// Maps a pid inside the supervisor's PID namespace to ours.
pub fn outer_pid(s: &Sup, inner: i32) -> i32 {
    if s.mode == Mode::Subreaper {
        return inner;
    }
    let sup = s.pid();
    let kids = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).unwrap();
    kids.split_whitespace()
        .map(|p| p.parse::<i32>().unwrap())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.starts_with("NSpid:")
                        && l.split_whitespace().last() == Some(inner.to_string().as_str())
                })
        })
        .expect("pid among the supervisor's children")
}

/// The `pid=` field of a log line.
pub fn pid_of(line: &str) -> String {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix("pid="))
        .unwrap_or("")
        .to_string()
}

// The signal state the supervisor inherits (tini's sigconf tests).

/// The `SigBlk` and `SigIgn` masks of a `/proc/<pid>/status` text.
pub fn sig_masks(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap_or_else(|| panic!("no {name} in {status:?}"))
    };
    (field("SigBlk:"), field("SigIgn:"))
}

/// Starts `c` with every signal at its default and none blocked, whatever the test runner
/// was started with (`nohup` ignores HUP, a background job INT and QUIT): the supervisor
/// hands what it inherited on to its children, and a test of forwarding needs a main
/// process that can catch them. Tests of inheritance set their own ([`inherit_signals`]).
fn default_signals(c: &mut Command) {
    use nix::sys::signal::{
        sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
    };
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only sigaction and sigprocmask run, both
    // async-signal-safe; nothing is allocated.
    unsafe {
        c.pre_exec(|| {
            let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            for sig in Signal::iterator() {
                if !matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
                    let _ = sigaction(sig, &dfl);
                }
            }
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            Ok(())
        });
    }
}

/// Starts the supervisor through coreutils' `env --default-signal --block-signal
/// --ignore-signal`, so that it inherits those signals blocked and ignored, as from `nohup`
/// or a shell (tini's `sigconf-test`), and every other one at its default whatever the
/// test runner ignores (a background job's INT and QUIT). Under unshare, `env` runs
/// inside: unshare itself resets SIGCHLD.
pub fn inherit_signals(
    c: &mut Command,
    supervisor: &str,
    blocked: &[(&str, i32)],
    ignored: &[(&str, i32)],
) {
    let names = |sigs: &[(&str, i32)]| sigs.iter().map(|s| s.0).collect::<Vec<_>>().join(",");
    let mut wrap: Vec<OsString> = vec!["env".into(), "--default-signal".into()];
    if !blocked.is_empty() {
        wrap.push(format!("--block-signal={}", names(blocked)).into());
    }
    if !ignored.is_empty() {
        wrap.push(format!("--ignore-signal={}", names(ignored)).into());
    }
    let program = c.get_program().to_owned();
    let mut args: Vec<OsString> = std::iter::once(program)
        .chain(c.get_args().map(OsStr::to_owned))
        .collect();
    let at = args
        .iter()
        .position(|a| a == supervisor)
        .expect("the supervisor's path");
    args.splice(at..at, wrap);
    let mut n = Command::new(&args[0]);
    n.args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::process::copy_env(c, &mut n);
    *c = n;
}

pub fn bits(sigs: &[(&str, i32)]) -> u64 {
    sigs.iter().fold(0, |m, &(_, s)| m | 1 << (s - 1))
}

/// Signals 32 and 33, which glibc keeps for itself (and its `posix_spawn` leaves
/// ignored): they pass through as they came, but the test's own spawn decides them.
pub const LIBC_OWN: u64 = 0x1_8000_0000;
