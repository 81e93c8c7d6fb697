//! Plays the supervisor: binds and listens on a request socket in a temp dir, makes the
//! control socketpair, starts the real `listener` binary with them as fds 3 and 4, answers
//! `cmd` messages from a thread and records every control message and log line, so tests
//! can wait for events with deadlines.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use proto::control::{Msg, Received};

/// The default wait for any event.
pub const DEADLINE: Duration = Duration::from_secs(15);

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

/// A collection of lines that tests can wait on.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    pub fn push(&self, l: String) {
        let (m, c) = &*self.0;
        m.lock().unwrap().push(l);
        c.notify_all();
    }

    /// Waits until a line satisfies `pred`; panics with everything seen at the deadline.
    pub fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let (m, c) = &*self.0;
        let end = Instant::now() + DEADLINE;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let now = Instant::now();
            if now >= end {
                panic!("timed out waiting for {what}; saw:\n{}", lines.join("\n"));
            }
            lines = c.wait_timeout(lines, end - now).unwrap().0;
        }
    }

    /// Waits until all lines so far satisfy `pred`; returns them.
    pub fn wait_until(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let (m, c) = &*self.0;
        let end = Instant::now() + DEADLINE;
        let mut lines = m.lock().unwrap();
        loop {
            if pred(&lines) {
                return lines.clone();
            }
            let now = Instant::now();
            if now >= end {
                panic!("timed out waiting for {what}; saw:\n{}", lines.join("\n"));
            }
            lines = c.wait_timeout(lines, end - now).unwrap().0;
        }
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, |l| l.contains(needle))
    }
}

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
    pub child: Child,
    pub log: Lines,
    pub ctl: Arc<(Mutex<Vec<Seen>>, Condvar)>,
    exited: Option<ExitStatus>,
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
        let mut child = cmd.spawn().unwrap();
        drop(lfd);
        drop(cfd);
        drop(listener);

        let log = Lines::default();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                if std::env::var_os("LISTENER_TEST_LOG").is_some() {
                    eprintln!("listener: {line}");
                }
                log2.push(line);
            }
        });

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
            child,
            log,
            ctl,
            exited: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
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
        if let Some(st) = self.exited {
            return st;
        }
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.exited = Some(st);
                return st;
            }
            assert!(
                Instant::now() < end,
                "listener did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (m, _) = &*self.log.0;
            let lines = m.lock().map(|l| l.join("\n")).unwrap_or_default();
            eprintln!("--- listener log ---\n{lines}\n--- end ---");
        }
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGTERM,
            );
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

/// Connects, sends `line`, half-closes, and reads reply lines until EOF. A server that
/// answers without reading (`error too-many`) may have closed before the line is written
/// (EPIPE): the write's error is not the reply, so it is left to the reply to tell.
pub fn request(sock: &Path, line: &[u8]) -> Vec<String> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = s.write_all(line);
    let _ = s.shutdown(std::net::Shutdown::Write);
    read_all(&mut s)
}

/// Reads reply lines until EOF (panics at the deadline). A server that closed with our line
/// unread makes the kernel end the reply with ECONNRESET instead of EOF: the same end.
pub fn read_all(s: &mut UnixStream) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no reply within the deadline: {e}"),
        }
    }
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Reads exactly one line.
pub fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) => panic!("reading a reply line: {e}"),
        }
    }
    String::from_utf8(line).unwrap()
}

/// Opens a connection, sends `line` and returns the stream with `accepted` read.
pub fn start_action(sock: &Path, line: &str) -> (UnixStream, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let first = read_line(&mut s);
    (s, first)
}

/// Runs a client program with `input` on stdin; returns its stdout, within the deadline.
pub fn run_client(cmd: &mut Command, input: &[u8]) -> (ExitStatus, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => {
            let out = out.unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("client {cmd:?} did not finish");
        }
    }
}

/// True when `pid` is gone or a zombie (dead, waiting for a reaper that is not us).
pub fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Waits until `pid` is dead.
pub fn wait_dead(pid: i32) {
    let end = Instant::now() + DEADLINE;
    while !dead(pid) {
        assert!(Instant::now() < end, "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
}
