//! Helpers: run the binary, a socket peer that answers like a listener, and waits with
//! deadlines on log lines (never fixed sleeps).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The start of the minute before this one: a `M H * * *` line for it is due, so the
/// soaks' first start catches it up at once, and it fires no more during the test.
#[allow(dead_code)]
pub fn previous_minute() -> chrono::DateTime<chrono::Utc> {
    use chrono::DurationRound;
    chrono::Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .expect("a time in range")
        - chrono::Duration::minutes(1)
}

pub fn bin() -> Command {
    let mut c = Command::new(crate::SCHEDULER);
    c.env_remove("TZ")
        .env_remove("BOSUN_STATE_DIR")
        .env_remove("BOSUN_LOG_FORMAT")
        .env("BOSUN_LOG", "info");
    c
}

/// How the peer answers a request.
#[derive(Clone, Copy)]
pub enum Answer {
    /// `accepted` then `done` with this exit code.
    Done(i32),
    /// `accepted`, then nothing: the connection stays open (a long action).
    Hold,
    /// One text line, like a built-in.
    Text(&'static str),
    /// An `error busy` line.
    Busy,
    /// `error busy` to the first `n` connections, then `Done(0)`.
    BusyFirst(u32),
    /// The first `closed` connections are closed without a word (a listener that died
    /// before answering), the next `unavailable` get `error unavailable`, then `Done(0)`.
    Flaky { closed: u32, unavailable: u32 },
    /// The first `n` connections get `accepted`, then are closed (a connection lost while
    /// the action runs); the next get `Done(0)`.
    DropAfterAccepted(u32),
    /// These lines, as they are (`accepted 7 other\ndone 7 ...`, `error lost 7 ...`).
    Script(&'static str),
}

/// The users of the tests' schedules: the peer reads a request's first token as its user
/// when it is one of these, as a listener reads a token that names no action of its.
pub const USERS: [&str; 2] = ["forum", "wiki"];

/// The action of a request line (without its key), as the peer reads it.
pub fn action_of(line: &str) -> &str {
    let mut words = line.split(' ');
    let first = words.next().unwrap_or("");
    if USERS.contains(&first) {
        words.next().unwrap_or("")
    } else {
        first
    }
}

/// A unix-socket server standing in for a service's listener.
pub struct Peer {
    /// The request lines, without their `@KEY` token.
    pub requests: Receiver<String>,
    /// Every request line as it came, key included, in order.
    pub raw: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    /// The `@KEY` tokens (without `@`) of the requests so far, in order.
    pub fn keys(&self) -> Vec<String> {
        self.raw
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix('@'))
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect()
    }
}

/// A request line without its leading `@KEY` token.
pub fn unkeyed(line: &str) -> &str {
    match line.strip_prefix('@') {
        Some(rest) => rest.split_once(' ').map_or("", |(_, r)| r),
        None => line,
    }
}

pub fn peer(run_dir: &Path, service: &str, answer: Answer) -> Peer {
    let path = run_dir.join(format!("{service}-request.sock"));
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = channel();
    let raw = Arc::new(Mutex::new(Vec::new()));
    let seen = raw.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut id = 0;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            id += 1;
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            let line = line.trim_end().to_string();
            seen.lock().unwrap().push(line.clone());
            let line = unkeyed(&line).to_string();
            let action = action_of(&line).to_string();
            let reply = match answer {
                Answer::Done(code) => {
                    format!("accepted {id} {action}\ndone {id} exit={code} secs=0.001\n")
                }
                Answer::Hold => format!("accepted {id} {action}\n"),
                Answer::Text(t) => format!("{t}\n"),
                Answer::Script(t) => t.to_string(),
                Answer::Busy => format!("error busy {action} is running\n"),
                Answer::BusyFirst(n) if id <= n => format!("error busy {action} is running\n"),
                Answer::Flaky { closed, .. } if id <= closed => String::new(),
                Answer::Flaky {
                    closed,
                    unavailable,
                } if id <= closed + unavailable => {
                    "error unavailable request 1 (x): listener crashed\n".to_string()
                }
                Answer::DropAfterAccepted(n) if id <= n => format!("accepted {id} {action}\n"),
                Answer::DropAfterAccepted(_) | Answer::Flaky { .. } | Answer::BusyFirst(_) => {
                    format!("accepted {id} {action}\ndone {id} exit=0 secs=0.001\n")
                }
            };
            let _ = conn.write_all(reply.as_bytes());
            if matches!(answer, Answer::Hold) {
                held.push(conn);
            }
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let _ = path;
    Peer { requests: rx, raw }
}

/// A running daemon whose stderr is read line by line.
/// A temp dir with `conf/schedule.cron` holding `text`: (the dir, the file, the dir as
/// `BOSUN_RUN_DIR`, where the peers' sockets go).
pub fn setup(text: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let file = conf.join("schedule.cron");
    std::fs::write(&file, text).unwrap();
    let run_dir = dir.path().to_str().unwrap().to_string();
    (dir, file, run_dir)
}

pub struct Daemon {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Daemon {
    /// Fails the test, with the log so far, if the daemon has exited.
    pub fn assert_up(&mut self) {
        let status = self.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "daemon exited: {status:?}; log:\n{}",
            self.seen.join("\n")
        );
    }

    pub fn start(file: &Path, envs: &[(&str, &str)]) -> Daemon {
        let mut cmd = bin();
        cmd.arg(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Daemon::spawn(cmd)
    }

    /// Starts `cmd` (the daemon's command line, made by [`bin`]) and reads its log.
    pub fn spawn(mut cmd: Command) -> Daemon {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Daemon {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing every one of `parts`; returns it.
    pub fn wait_for(&mut self, parts: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        if let Some(l) = self
            .seen
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no log line with {parts:?} within {within:?}; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// After the daemon has exited: reads the rest of its log into `seen`.
    pub fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => panic!("the log did not end within 10 s"),
            }
        }
    }

    /// Sends TERM and returns the exit code.
    pub fn stop(mut self) -> i32 {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        testkit::process::wait_child(&mut self.child, Duration::from_secs(10))
            .expect("daemon did not stop on TERM")
            .code()
            .unwrap_or(-1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces `path` the way editors do: write a new file, rename it over the old one.
pub fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn recv(rx: &Receiver<String>, within: Duration) -> String {
    rx.recv_timeout(within)
        .unwrap_or_else(|e| panic!("no request within {within:?}: {e}"))
}

/// Waits until the peer on `run_dir`'s `service` socket has handled every connection made
/// before this call: it serves connections in order, so once our own marker request comes
/// out of `requests`, everything before it has too. Returns the requests before the marker.
pub fn drain_peer(
    run_dir: &Path,
    service: &str,
    requests: &Receiver<String>,
    n: u64,
) -> Vec<String> {
    let marker = format!("marker-{n}");
    let path = run_dir.join(format!("{service}-request.sock"));
    let mut c = std::os::unix::net::UnixStream::connect(path).unwrap();
    c.write_all(format!("{marker}\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    loop {
        let line = recv(requests, Duration::from_secs(10));
        if line == marker {
            return got;
        }
        got.push(line);
    }
}

/// Waits until the file at `path` exists and its text satisfies `ok`; returns the text.
/// The daemon writes its report files from a thread of their own, just after the outcome
/// that changed them: there is no event to wait on but the file itself.
pub fn wait_file(path: &Path, within: Duration, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} not as expected within {within:?}; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
