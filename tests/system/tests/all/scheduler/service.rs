//! A real service for the scheduler to fire at: the workspace's `supervisor` (as a
//! subreaper) with its `listener`, running a callbacks file the test writes, and a relay
//! in front of its socket that records every request line the daemon sends.
//!
//! What ran is counted by the callbacks' own side effect (a line each in a count file), not by
//! anything the scheduler logs.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::support::unkeyed;

use crate::{LISTENER, SCHEDULER, SUPERVISOR};
use testkit::process::wait_dead;
use testkit::{wait_until, Proc};

/// One `CB_<action>` per action, each appending `<action> <request id>` to `count`.
pub fn counting_callbacks<'a>(count: &Path, actions: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = format!(
        "count() {{ echo \"$BOSUN_ACTION $BOSUN_REQUEST_ID\" >> '{}'; }}\n",
        count.display()
    );
    for a in actions {
        text.push_str(&format!("CB_{a}() {{ count; }}\n"));
    }
    text
}

/// How many times each action appears in the count file (missing file: none).
pub fn counted(count: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let text = std::fs::read_to_string(count).unwrap_or_default();
    for line in text.lines() {
        let action = line.split(' ').next().unwrap_or("").to_string();
        *out.entry(action).or_default() += 1;
    }
    out
}

/// `supervisor -- sleep 100000` with the real listener, started at boot.
pub struct Service {
    proc: Proc,
    /// The service's own socket (not the relay's).
    pub socket: PathBuf,
}

impl Service {
    /// Starts service `name` in `dir` (its run and state dirs are made under it), with
    /// `callbacks` as its callbacks file, and waits until it answers `help` with `ready`
    /// among the actions (the listener is up and has read the callbacks).
    pub fn start(dir: &Path, name: &str, callbacks: &str, ready: &str) -> Service {
        let run = dir.join("svc-run");
        std::fs::create_dir_all(&run).unwrap();
        let file = dir.join("callbacks.sh");
        std::fs::write(&file, callbacks).unwrap();
        let proc = Proc::spawn(
            Command::new(SUPERVISOR)
                .args(["--", "sleep", "100000"])
                .env_remove("BOSUN_LOG")
                .env("BOSUN_SERVICE", name)
                .env("BOSUN_RUN_DIR", &run)
                .env("BOSUN_STATE_DIR", dir.join("svc-state"))
                .env("BOSUN_CALLBACKS", &file)
                .env("BOSUN_CONFIG", dir.join("none.toml"))
                .env("BOSUN_SETUP", "")
                .env("BOSUN_LISTENER", LISTENER)
                .env("BOSUN_LISTENER_START", "boot")
                // A restarted scheduler catches up every owed line at once.
                .env("BOSUN_MAX_ACTIONS", "100000")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let s = Service {
            proc,
            socket: run.join(format!("{name}-request.sock")),
        };
        let offered = |help: String| help.lines().any(|l| l == ready).then_some(());
        // The socket is made by another process: nothing to block on until it exists.
        let what = format!("the service to offer {ready}");
        wait_until(Duration::from_secs(30), &what, || {
            s.try_request("help").ok().and_then(offered)
        });
        s
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr.text()
    }

    fn try_request(&self, line: &str) -> std::io::Result<String> {
        let mut c = UnixStream::connect(&self.socket)?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        c.write_all(format!("{line}\n").as_bytes())?;
        let mut out = String::new();
        c.read_to_string(&mut out)?;
        Ok(out)
    }

    /// One request line; the whole answer.
    pub fn request(&self, line: &str) -> String {
        self.try_request(line)
            .unwrap_or_else(|e| panic!("{line}: {e}; log:\n{}", self.stderr()))
    }
}

impl Drop for Service {
    /// TERM (it stops the main process and the listener, so nothing is left behind), then
    /// KILL if it has not exited within 10 s.
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(10));
    }
}

/// A socket at `<run_dir>/<service>-request.sock` that records each request line, then
/// passes it on to `upstream` and the answer back. A line `marker-N` is recorded and not
/// passed on (see [`super::support::drain_peer`]). Lines are read in the order the
/// connections are accepted, so a marker comes out of `requests` after every request made
/// before it.
pub struct Relay {
    /// The request lines, without their `@KEY` token.
    pub requests: Receiver<String>,
    /// Every request line as it came, key included, in order.
    pub raw: Arc<Mutex<Vec<String>>>,
    /// Requests passed on whose answer has not ended yet (the service closes the
    /// connection after `done`): 0 means no run asked for through the relay is going.
    pub in_flight: Arc<AtomicUsize>,
}

pub fn relay(run_dir: &Path, service: &str, upstream: PathBuf) -> Relay {
    let listener = UnixListener::bind(run_dir.join(format!("{service}-request.sock"))).unwrap();
    let (tx, rx) = channel();
    let raw = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (seen, flying) = (raw.clone(), in_flight.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut line = String::new();
            // The daemon writes its request as soon as it has connected; a daemon killed
            // in between gives end of input at once.
            let _ = BufReader::new(&conn).read_line(&mut line);
            let line = line.trim_end().to_string();
            seen.lock().unwrap().push(line.clone());
            let request = unkeyed(&line).to_string();
            if !line.is_empty() && !request.starts_with("marker-") {
                flying.fetch_add(1, Ordering::SeqCst);
                let (upstream, flying) = (upstream.clone(), flying.clone());
                std::thread::spawn(move || {
                    pass_on(&upstream, &line, conn);
                    flying.fetch_sub(1, Ordering::SeqCst);
                });
            }
            if tx.send(request).is_err() {
                return;
            }
        }
    });
    Relay {
        requests: rx,
        raw,
        in_flight,
    }
}

/// Sends `line` to the service and copies its answer to `conn` (whose reader may be dead:
/// the answer is still read to its end).
fn pass_on(upstream: &Path, line: &str, mut conn: UnixStream) {
    let mut up = UnixStream::connect(upstream).expect("connect to the service");
    up.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = up.read(&mut buf) {
        let _ = conn.write_all(&buf[..n]);
    }
}

impl Relay {
    /// Waits until no request passed on is still waiting for its answer.
    pub fn wait_idle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "{} requests still unanswered after {within:?}",
                self.in_flight.load(Ordering::SeqCst)
            );
            // Answers end in other threads; a counter has nothing to block on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Expected: `scheduler send SERVICE log ID` against a real service prints a run's output
/// to the end and exits 0, also when the output has lines that read like replies, and when
/// the run printed nothing; an unknown id is `error not-found` (65).
#[test]
fn send_log_prints_any_output_and_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let callbacks = "CB_tricky() { echo 'backup starts'; echo 'done 3 exit=1 secs=2'; echo 'error busy x'; echo last; }\nCB_quiet() { :; }\n";
    let svc = Service::start(dir.path(), "svc", callbacks, "quiet");
    let id = |reply: String| -> String {
        let done = reply.lines().last().unwrap_or_default().to_string();
        assert!(done.contains("exit=0"), "{reply}");
        reply.split(' ').nth(1).unwrap().to_string()
    };
    let tricky = id(svc.request("tricky"));
    let quiet = id(svc.request("quiet"));
    let send = |args: &[&str]| {
        let o = Command::new(SCHEDULER)
            .arg("send")
            .args(args)
            .env("BOSUN_RUN_DIR", svc.socket.parent().unwrap())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    assert_eq!(
        send(&["svc", "log", &tricky]),
        (
            Some(0),
            "backup starts\ndone 3 exit=1 secs=2\nerror busy x\nlast\n".to_string()
        )
    );
    assert_eq!(send(&["svc", "log", &quiet]), (Some(0), String::new()));
    let (code, out) = send(&["svc", "log", "99999"]);
    assert_eq!(code, Some(65), "{out}");
    assert!(out.starts_with("error not-found "), "{out}");
}

/// Expected (DESIGN.md section 2, review M4): against a real service whose actions are
/// `noop` and `backup`, a line whose user is named like another action of the target
/// (`noop`, which `scheduler check` cannot know of) is read by the listener as `noop` with
/// the argument `backup`: the daemon sees `accepted <id> noop`, records the run `refused`
/// (not ok: `scheduler status` exits 1) and never counts it as the backup; `scheduler send
/// --user noop svc backup` exits 65. The callbacks' own count file shows what ran: noop,
/// never backup.
#[test]
fn a_user_named_like_another_action_is_refused_not_ok() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let svc = Service::start(
        dir.path(),
        "svc",
        &counting_callbacks(&count, ["noop", "backup"]),
        "backup",
    );
    let run_dir = svc.socket.parent().unwrap().to_path_buf();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, "@reboot noop svc backup\n").unwrap();
    let state = dir.path().join("state");
    let mut d = super::support::Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", run_dir.to_str().unwrap()),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    let line = d.wait_for(
        &["refused: the service accepted another action"],
        Duration::from_secs(20),
    );
    assert!(
        line.contains("asked=backup") && line.contains("accepted=noop"),
        "{line}"
    );
    assert_eq!(d.stop(), 0);
    let o = Command::new(SCHEDULER)
        .args(["status"])
        .arg(&file)
        .env("BOSUN_STATE_DIR", &state)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{status}");
    assert!(status.contains(" svc backup user=noop "), "{status}");
    assert!(status.contains("result=refused"), "{status}");

    let o = Command::new(SCHEDULER)
        .args(["send", "--user", "noop", "svc", "backup"])
        .env("BOSUN_RUN_DIR", &run_dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains("accepted \"noop\", not \"backup\""), "{err}");
    // Both requests ran noop (to its end: the listener answers `done` after it), never
    // backup.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted(&count).get("noop") != Some(&2) {
        assert!(Instant::now() < deadline, "{:?}", counted(&count));
        // The callbacks write the count file in another process: nothing to block on.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counted(&count).get("backup"), None);
}

/// Expected (review M1, end to end): a squatter who sends the scheduled fire's key first
/// with other words (`@KEY noop`) does not make the fire "already done". Here the test
/// knows the key (it reads the daemon's secret, which a squatter cannot: see
/// `state::tests::fire_keys_need_the_secret`), and the fire is a catch-up of a known
/// instant (the top of the hour, missed while down). The real listener ties a key to its
/// words, so the backup runs under its key and the record says ok because it did; the
/// squatter's noop ran once, on its own.
#[test]
fn a_squatted_key_does_not_make_the_fire_done() {
    use chrono::{DurationRound, Utc};
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let svc = Service::start(
        dir.path(),
        "svc",
        &counting_callbacks(&count, ["noop", "backup"]),
        "backup",
    );
    let run_dir = svc.socket.parent().unwrap().to_path_buf();
    let text = "0 * * * * forum svc backup\n";
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, text).unwrap();
    let line_key = scheduler::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC)
        .unwrap()
        .entries[0]
        .key();
    let state = dir.path().join("state");
    let due = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    // Last handled fire: just before the top of the hour, so the daemon catches it up.
    scheduler::state::StateStore::open(&state)
        .unwrap()
        .record(&line_key, due - chrono::Duration::minutes(1))
        .unwrap();
    let key = scheduler::state::FireKeys::open(&state)
        .unwrap()
        .fire(&line_key, due);
    let squat = svc.request(&format!("@{key} noop"));
    assert!(squat.contains("exit=0"), "{squat}");

    let mut d = super::support::Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", run_dir.to_str().unwrap()),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    let line = d.wait_for(&["request", "reason=catch-up"], Duration::from_secs(20));
    assert!(line.contains(&format!("key={key}")), "{line}");
    d.wait_for(&["accepted", "action=backup"], Duration::from_secs(20));
    d.wait_for(&["done", "service=svc", "exit=0"], Duration::from_secs(20));
    assert_eq!(d.stop(), 0);
    let o = Command::new(SCHEDULER)
        .args(["status"])
        .arg(&file)
        .env("BOSUN_STATE_DIR", &state)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{status}");
    assert!(status.contains("result=ok exit=0"), "{status}");
    let ran = counted(&count);
    assert_eq!(ran.get("noop"), Some(&1), "{ran:?}");
    assert!(ran.get("backup").is_some_and(|n| *n >= 1), "{ran:?}");
}

/// Every descendant of `root` (children, their children, ...), from /proc.
fn descendants(root: u32) -> Vec<i32> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold blanks and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if let Some(ppid) = rest.split(' ').nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root as i32];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Expected (DESIGN.md section 2, `error lost`): a keyed run whose service dies with it
/// (the supervisor, the listener and the action all SIGKILLed, as when a container is
/// killed) is `lost` in the service's journal after the restart; the daemon, whose
/// connection broke after `accepted`, asks again with the fire's key, gets `error lost
/// <id>`, records the run `failed` with that id at once (no more retries), and tells
/// ON_FAILURE. The action ran once.
#[test]
fn a_run_lost_with_its_service_is_failed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let callbacks = format!(
        "{}CB_long() {{ count; sleep 1000; }}\n",
        counting_callbacks(&count, [])
    );
    let mut svc = Service::start(dir.path(), "svc", &callbacks, "long");
    let run_dir = svc.socket.parent().unwrap().to_path_buf();
    let hooks = super::support::peer(&run_dir, "hooks", super::support::Answer::Done(0));
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, "ON_FAILURE=hooks alarm\n@reboot svc long\n").unwrap();
    let state = dir.path().join("state");
    let mut d = super::support::Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", run_dir.to_str().unwrap()),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
            ("BOSUN_RETRY_WINDOW", "60s"),
        ],
    );
    let line = d.wait_for(&["accepted", "action=long"], Duration::from_secs(20));
    let id: u64 = line
        .split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted(&count).get("long") != Some(&1) {
        assert!(Instant::now() < deadline, "long did not start");
        // Written by the callback in another process: nothing to block on.
        std::thread::sleep(Duration::from_millis(20));
    }
    // The container dies: everything at once, no stop in order.
    // Frozen first (the action, the listener, then the supervisor), so that none sees
    // another die and ends its run in order (the listener would TERM the action and
    // answer `done exit=143`); then all killed.
    use nix::sys::signal::{kill, Signal};
    let mut tree = descendants(svc.proc.pid() as u32);
    tree.reverse();
    tree.push(svc.proc.pid());
    for &p in &tree {
        let _ = kill(nix::unistd::Pid::from_raw(p), Signal::SIGSTOP);
    }
    for &p in &tree {
        let _ = kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
    }
    svc.proc.wait(Duration::from_secs(10));
    // Dead (gone, or a zombie nobody reaps: its descriptors closed) before the restart,
    // or the new supervisor finds the old socket still answered.
    for p in tree {
        wait_dead(p);
    }
    d.wait_for(&["target unavailable; retrying"], Duration::from_secs(20));
    // The container starts again, with its journal.
    let _svc2 = Service::start(dir.path(), "svc", &callbacks, "long");
    let line = d.wait_for(
        &["failed: the service lost this run"],
        Duration::from_secs(60),
    );
    assert!(line.contains(&format!("id={id}")), "{line}");
    assert_eq!(
        super::support::recv(&hooks.requests, Duration::from_secs(10)),
        format!("alarm svc long - failed - {id}")
    );
    assert_eq!(d.stop(), 0);
    let o = Command::new(SCHEDULER)
        .args(["status"])
        .arg(&file)
        .env("BOSUN_STATE_DIR", &state)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{status}");
    assert!(status.contains("result=failed exit=-"), "{status}");
    assert_eq!(counted(&count).get("long"), Some(&1), "ran again");
}
