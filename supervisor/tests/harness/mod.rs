//! Starting the supervisor under test and waiting for what it does, every wait with a
//! deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// How the supervisor runs: as PID 1 of a new PID namespace, or as a subreaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pid1,
    Subreaper,
}

pub const MODES: [Mode; 2] = [Mode::Pid1, Mode::Subreaper];

/// The listener binary, built by the workspace next to the supervisor. Tests that need
/// it build it first (cargo builds only the package under test's binaries).
pub fn listener_path() -> PathBuf {
    let dir = Path::new(SUPERVISOR).parent().unwrap();
    dir.join("listener")
}

pub fn ensure_listener() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_release = SUPERVISOR.contains("/release/");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-q", "-p", "listener", "-p", "scheduler"]);
            if profile_release {
                cmd.arg("--release");
            }
            let target_dir = Path::new(SUPERVISOR).parent().unwrap().parent().unwrap();
            cmd.env("CARGO_TARGET_DIR", target_dir);
            let st = cmd.status().expect("cargo build listener");
            assert!(st.success(), "building the listener failed");
            listener_path()
        })
        .clone()
}

pub fn scheduler_path() -> PathBuf {
    ensure_listener();
    Path::new(SUPERVISOR).parent().unwrap().join("scheduler")
}

/// One supervisor run in its own temp dir (the run dir, scripts, logs).
pub struct Sup {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub mode: Mode,
    pub stderr: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
    pub started: Instant,
}

pub struct Builder {
    mode: Mode,
    env: Vec<(String, String)>,
    args: Vec<String>,
    listener: bool,
    dir: tempfile::TempDir,
}

pub fn sup(mode: Mode) -> Builder {
    Builder {
        mode,
        env: Vec::new(),
        args: Vec::new(),
        listener: false,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Builder {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Runs the real listener (off by default: most PID-1 tests do not need it).
    pub fn with_listener(mut self) -> Self {
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
                    .arg(SUPERVISOR);
                c
            }
            Mode::Subreaper => Command::new(SUPERVISOR),
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
        if self.listener {
            c.env("BOSUN_LISTENER", ensure_listener());
        } else {
            c.env("BOSUN_LISTENER", "off");
        }
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
        adjust(&mut c);
        let mut child = c.spawn().expect("spawn supervisor");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        pump(child.stderr.take().unwrap(), stderr.clone());
        pump(child.stdout.take().unwrap(), stdout.clone());
        Sup {
            child,
            dir: self.dir,
            mode: self.mode,
            stderr,
            stdout,
            started: Instant::now(),
        }
    }

    /// Runs to the end and returns (status, stdout, stderr).
    pub fn run(self, deadline: Duration) -> (ExitStatus, String, String) {
        let mut s = self.start();
        let st = s.wait(deadline);
        s.join_output();
        let (o, e) = (s.stdout(), s.stderr());
        (st, o, e)
    }
}

fn pump(mut r: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
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
        let outer = self.child.id() as i32;
        match self.mode {
            Mode::Subreaper => Some(outer),
            Mode::Pid1 => std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok())),
        }
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let rc = unsafe { libc_kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    pub fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "supervisor did not exit within {deadline:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Gives the output pumps a moment to drain after exit (they end at EOF).
    pub fn join_output(&self) {
        std::thread::sleep(Duration::from_millis(20));
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
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

    pub fn wait_stdout(&self, needle: &str, deadline: Duration) -> String {
        wait_until(deadline, &format!("{needle:?} on stdout"), || {
            let o = self.stdout();
            o.contains(needle).then_some(o)
        })
    }

    pub fn wait_stderr(&self, needle: &str, deadline: Duration) -> String {
        wait_until(deadline, &format!("{needle:?} on stderr"), || {
            let e = self.stderr();
            e.contains(needle).then_some(e)
        })
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
}

impl Drop for Sup {
    /// A test that ends with the supervisor still running stops it the way docker would:
    /// TERM, a grace period, then KILL, so that no process of the test outlives it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Under unshare the supervisor may have exited already, unshare not yet: then
            // there is nothing to signal, only unshare to wait for.
            if let Some(pid) = self.pid_now() {
                // SAFETY: kill(2) on the supervisor this test started.
                unsafe { libc_kill(pid, SIGTERM) };
            }
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

impl Sup {
    /// On-demand tests: how many times the backend started (lines in `$T/starts`).
    pub fn starts(&self) -> usize {
        std::fs::read_to_string(self.path("starts"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

pub fn request(socket: &Path, line: &str) -> Vec<String> {
    let mut s = UnixStream::connect(socket).expect("connect request socket");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    BufReader::new(s)
        .lines()
        .map(|l| l.expect("reply line before the deadline"))
        .collect()
}

/// Polls `f` until it returns Some, or panics after `deadline` naming `what`.
pub fn wait_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
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
    let out = Command::new(SUPERVISOR)
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

/// Whether the tests run as root (mounts and user switches need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:\t0\t"))
}
