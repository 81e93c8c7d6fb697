//! Plays the supervisor: binds and listens on a request socket in a temp dir, makes the
//! control socketpair, starts the real `listener` binary with them as fds 3 and 4, answers
//! `cmd` messages from a thread and records every control message and log line, so tests
//! can wait for events with deadlines.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use proto::control::{Msg, Received};
use testkit::Proc;

pub use testkit::process::{run_client, wait_dead};
pub use testkit::socket::{read_all, read_line, request, start_action};
pub use testkit::{Lines, DEADLINE};

/// The callbacks most tests use.
pub const CALLBACKS: &str = r#"
CB_hello() { echo hello; }
CB_fail() { echo failing >&2; return 3; }
CB_echo_args() { printf 'arg=<%s>\n' "$@"; }
CB_env() { echo "user=<$BOSUN_USER> action=<$BOSUN_ACTION> id=<$BOSUN_REQUEST_ID> service=<$BOSUN_SERVICE> args=<$*>"; }
CB_slow() { echo "slow-start"; sleep "${1:-30}"; echo "slow-end"; }
CB_slow_b() { echo "slow-b-start"; sleep 30; }
CB_slow_c() { echo "slow-c-start"; sleep 30; }
CB_tree() {
    sleep 1000 & echo "child=$!"
    bash -c 'trap "" TERM; exec sleep 1001' & echo "child=$!"
    wait
}
CB_stubborn() { trap '' TERM; echo "stubborn-start"; sleep 1000 & wait; wait; }
"#;

/// What the fake supervisor does with the control socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// Answers `cmd` with `<cmd> ok` (status: `main running pid=42`).
    Answer,
    /// Closes its end at once.
    Closed,
}

pub struct Opts {
    pub callbacks: Option<String>,
    pub env: Vec<(String, String)>,
    pub ctl: Ctl,
    /// RLIMIT_NOFILE (soft and hard) of the listener.
    pub nofile: Option<u64>,
    /// The listener's umask.
    pub umask: Option<u32>,
    /// BOSUN_STATE_DIR instead of `<temp dir>/state` (kept across listeners).
    pub state_dir: Option<PathBuf>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            callbacks: Some(CALLBACKS.to_string()),
            env: Vec::new(),
            ctl: Ctl::Answer,
            nofile: None,
            umask: None,
            state_dir: None,
        }
    }
}

impl Opts {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn callbacks(mut self, text: Option<&str>) -> Self {
        self.callbacks = text.map(str::to_string);
        self
    }
    pub fn ctl(mut self, ctl: Ctl) -> Self {
        self.ctl = ctl;
        self
    }
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }
    pub fn umask(mut self, m: u32) -> Self {
        self.umask = Some(m);
        self
    }
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }
}

/// A control message as the fake supervisor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub msg: Msg,
    pub with_fd: bool,
}

pub struct Listener {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub callbacks: PathBuf,
    pub proc: Proc,
    /// Its stderr: the log.
    pub log: Lines,
    pub ctl: Arc<(Mutex<Vec<Seen>>, Condvar)>,
}

/// Moves `fd` to a number above the ones the child needs, close-on-exec.
fn high(fd: &impl AsFd) -> OwnedFd {
    let raw = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)).unwrap();
    // SAFETY: F_DUPFD_CLOEXEC just returned this new fd; we are its only owner.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) }
}

impl Listener {
    pub fn start(opts: Opts) -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("test-request.sock");
        let callbacks = dir.path().join("docker-callbacks.sh");
        if let Some(text) = &opts.callbacks {
            std::fs::write(&callbacks, text).unwrap();
        }
        let listener = UnixListener::bind(&sock).unwrap();
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let lfd = high(&listener);
        let cfd = high(&theirs);
        drop(theirs);
        let (l_raw, c_raw): (RawFd, RawFd) = (lfd.as_raw_fd(), cfd.as_raw_fd());
        let (nofile, umask) = (opts.nofile, opts.umask);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_listener"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BOSUN_SERVICE", "test")
            .env(
                "BOSUN_STATE_DIR",
                opts.state_dir
                    .clone()
                    .unwrap_or_else(|| dir.path().join("state")),
            )
            .env("BOSUN_CALLBACKS", &callbacks)
            .env("BOSUN_READ_TIMEOUT", "2s")
            .env("BOSUN_STOP_TIMEOUT", "3s")
            .env("BOSUN_KILL_GRACE", "1s")
            .env("BOSUN_LOG", "debug")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls (dup2, setrlimit, umask) between fork and
        // exec.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::dup2(l_raw, 3) < 0 || nix::libc::dup2(c_raw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(n) = nofile {
                    let lim = nix::libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(m) = umask {
                    nix::libc::umask(m);
                }
                Ok(())
            });
        }
        let echo = std::env::var_os("LISTENER_TEST_LOG").map(|_| "listener");
        let proc = Proc::spawn_echo(&mut cmd, echo);
        drop(lfd);
        drop(cfd);
        drop(listener);
        let log = proc.stderr.clone();

        let ctl: Arc<(Mutex<Vec<Seen>>, Condvar)> = Arc::default();
        match opts.ctl {
            Ctl::Closed => drop(ours),
            Ctl::Answer => {
                let ctl2 = ctl.clone();
                std::thread::spawn(move || supervise(ours, ctl2));
            }
        }
        Listener {
            dir,
            sock,
            callbacks,
            proc,
            log,
            ctl,
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn path(&self) -> &Path {
        &self.sock
    }

    /// Waits until the listener logged that it serves.
    pub fn ready(self) -> Listener {
        self.log.wait_for("listening");
        self
    }

    /// Sends one request (bytes as given) and returns every reply line until EOF.
    pub fn request(&self, line: &[u8]) -> Vec<String> {
        request(&self.sock, line)
    }

    /// Waits for a control message satisfying `pred`.
    pub fn wait_ctl(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let (m, c) = &*self.ctl;
        let end = Instant::now() + DEADLINE;
        let mut seen = m.lock().unwrap();
        loop {
            if let Some(s) = seen.iter().find(|s| pred(s)) {
                return s.clone();
            }
            let now = Instant::now();
            assert!(now < end, "timed out waiting for {what}; saw {seen:?}");
            seen = c.wait_timeout(seen, end - now).unwrap().0;
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the listener to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.proc.wait(limit)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- listener log ---\n{}--- end ---", self.log.text());
        }
        self.proc.stop(Duration::from_secs(10));
    }
}

/// The fake supervisor's control thread: answers built-ins, and writes the `done` line of
/// a released request to the connection that came with its hold, like the supervisor.
fn supervise(sock: OwnedFd, seen: Arc<(Mutex<Vec<Seen>>, Condvar)>) {
    let mut held = std::collections::HashMap::new();
    loop {
        let got = match proto::control::recv(sock.as_fd()) {
            Ok(g) => g,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        let (msg, fd) = match got {
            Received::Msg(m, fd) => (m, fd),
            Received::Invalid(_) => continue,
            Received::Eof => return,
        };
        let with_fd = fd.is_some();
        match (&msg, fd) {
            (Msg::Cmd { seq, cmd }, _) => {
                let text = match cmd {
                    proto::Builtin::Status => "main running pid=42".to_string(),
                    other => format!("{other} ok"),
                };
                let _ = proto::control::send(sock.as_fd(), &Msg::Reply { seq: *seq, text }, None);
            }
            (Msg::Hold { id, .. }, Some(conn)) => {
                held.insert(*id, UnixStream::from(conn));
            }
            (Msg::Release { id, reply }, _) => {
                if let Some(mut conn) = held.remove(id) {
                    let _ = conn.write_all(format!("{reply}\n").as_bytes());
                }
            }
            _ => {}
        }
        let (m, c) = &*seen;
        m.lock().unwrap().push(Seen { msg, with_fd });
        c.notify_all();
    }
}
