//! Fault injection against the real daemon: the schedule file deleted or made unreadable
//! while running, the whole `conf/` directory replaced, SIGKILL in the middle of a delivery
//! with a state directory, a target whose socket appears late, and a 10 s storm of HUP and
//! USR1. (Against a real service: the system tests' scheduler/faults.rs.) Each test states
//! the expected outcome and checks it; every wait for an event has a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use scheduler::state::StateStore;

use crate::support::{peer, recv, rename_over, setup, Answer, Daemon};

const SHORT: Duration = Duration::from_secs(10);
/// A `* * * * *` line fires within a minute of any instant; slack for a loaded machine.
const MINUTE: Duration = Duration::from_secs(70);

/// Forgets the log lines seen so far (keeping them in `history`), so that the next
/// `wait_for` only matches lines logged after this point.
fn mark(d: &mut Daemon, history: &mut Vec<String>) {
    history.append(&mut d.seen);
}

/// The `key=value` field of a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(&format!(" {key}="))
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Expected: the daemon logs the deletion, stays up, keeps firing the previous schedule, picks
/// up a later re-created file, and exits 0 on TERM.
#[test]
fn deleted_schedule_keeps_previous_and_recreated_file_is_loaded() {
    let (dir, file, run_dir) = setup("* * * * * fast x\n");
    let p = peer(dir.path(), "fast", Answer::Done(0));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    let mut history = Vec::new();
    d.wait_for(&["started", "entries=1"], SHORT);
    std::fs::remove_file(&file).unwrap();
    d.wait_for(
        &[
            "schedule not reloaded; the previous one keeps running",
            "No such file",
        ],
        SHORT,
    );
    d.assert_up();
    mark(&mut d, &mut history);
    // The previous schedule still fires.
    d.wait_for(&["request", "reason=schedule", "service=fast"], MINUTE);
    assert_eq!(recv(&p.requests, SHORT), "x");
    d.wait_for(&["done", "exit=0"], SHORT);
    // A re-created file is read again.
    std::fs::write(&file, "* * * * * fast x\n0 0 1 1 * fast y\n").unwrap();
    d.wait_for(&["schedule reloaded", "entries=2"], SHORT);
    assert_eq!(d.stop(), 0);
}

/// Makes `file` unreadable while keeping its name. As a normal user that is `chmod 000`.
/// Tests usually run as root, where `chmod 000` does not stop reads: there the file is
/// replaced (by rename, atomically) with a dangling symlink instead; the caller then also
/// replaces it with a directory of the same name. Returns what the read error says.
fn make_unreadable(dir: &Path, file: &Path) -> &'static str {
    use std::os::unix::fs::PermissionsExt;
    if mode_000_is_readable(dir) {
        let link = file.with_extension("link");
        std::os::unix::fs::symlink(dir.join("nowhere"), &link).unwrap();
        std::fs::rename(&link, file).unwrap();
        "No such file"
    } else {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o000)).unwrap();
        "Permission denied"
    }
}

/// Whether this process can read a `chmod 000` file (root, or CAP_DAC_OVERRIDE): probed
/// rather than guessed from the uid.
fn mode_000_is_readable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join("probe");
    std::fs::write(&probe, "x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&probe).is_ok();
    std::fs::remove_file(&probe).unwrap();
    readable
}

/// Expected: an unreadable schedule is logged ("schedule not reloaded", with the read error),
/// the previous schedule keeps firing, the daemon stays up, a readable file is loaded again,
/// and TERM gives exit 0.
#[test]
fn unreadable_schedule_keeps_previous() {
    let (dir, file, run_dir) = setup("* * * * * slowpoke x\n");
    let p = peer(dir.path(), "slowpoke", Answer::Done(0));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    let mut history = Vec::new();
    d.wait_for(&["started", "entries=1"], SHORT);
    let privileged = mode_000_is_readable(dir.path());
    let says = make_unreadable(dir.path(), &file);
    d.wait_for(
        &[
            "schedule not reloaded; the previous one keeps running",
            says,
        ],
        SHORT,
    );
    d.assert_up();
    if privileged {
        // As root, also a directory in place of the file (read fails with EISDIR).
        mark(&mut d, &mut history);
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        d.wait_for(&["schedule not reloaded", "Is a directory"], SHORT);
        d.assert_up();
        std::fs::remove_dir(&file).unwrap();
    }
    mark(&mut d, &mut history);
    d.wait_for(&["request", "reason=schedule", "service=slowpoke"], MINUTE);
    assert_eq!(recv(&p.requests, SHORT), "x");
    d.wait_for(&["done", "exit=0"], SHORT);
    rename_over(&file, "* * * * * slowpoke x\n0 0 1 1 * slowpoke y\n");
    d.wait_for(&["schedule reloaded", "entries=2"], SHORT);
    assert_eq!(d.stop(), 0);
}

/// Expected: after `conf/` is removed (logged, previous schedule kept) and re-created with a
/// new schedule, the daemon loads the new file, and keeps seeing later edits in the new
/// directory.
#[test]
fn conf_directory_replaced_is_noticed() {
    let (dir, file, run_dir) = setup("0 0 1 1 * svc a\n");
    let conf = dir.path().join("conf");
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    d.wait_for(&["started", "entries=1"], SHORT);
    std::fs::remove_dir_all(&conf).unwrap();
    d.wait_for(&["schedule not reloaded", "No such file"], SHORT);
    d.assert_up();
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(&file, "0 0 1 1 * svc a\n0 0 1 1 * svc b\n").unwrap();
    d.wait_for(&["schedule reloaded", "entries=2"], SHORT);
    rename_over(&file, "0 0 1 1 * svc a\n0 0 1 1 * svc b\n0 0 1 1 * svc c\n");
    d.wait_for(&["schedule reloaded", "entries=3"], SHORT);
    assert_eq!(d.stop(), 0);
}

/// Expected: a daemon SIGKILLed while a delivery of the fire due at minute M is in progress
/// (the peer accepted and withholds `done`), restarted after minute M+1 has passed, catches
/// up M+1 exactly once, and asks for M again only to resume it (the run its record shows
/// `running`), with M's own key, so that a keyed service runs nothing new.
///
/// Two minute boundaries are waited for: M (the first fire) and M+1 (passing while down).
#[test]
fn sigkill_mid_delivery_no_double_fire_and_catch_up() {
    let text = "* * * * * held x\n";
    let (dir, file, run_dir) = setup(text);
    let state = dir.path().join("state");
    let key = scheduler::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC)
        .unwrap()
        .entries[0]
        .key();
    let store = StateStore::open(&state).unwrap();
    let p = peer(dir.path(), "held", Answer::Hold);
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
    ];
    let mut d = Daemon::start(&file, &envs);
    d.wait_for(&["started"], SHORT);
    let line = d.wait_for(&["request", "reason=schedule"], MINUTE);
    let due = instant(field(&line, "due"));
    assert_eq!(recv(&p.requests, SHORT), "x");
    d.wait_for(&["accepted"], SHORT);
    // The fire is recorded before the delivery ends.
    let deadline = Instant::now() + SHORT;
    while store.last(&key) != Some(due) {
        assert!(
            Instant::now() < deadline,
            "fire at {due} not recorded: {:?}",
            store.last(&key)
        );
        // The record is a file written by another process: nothing to block on.
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL in the middle of the delivery (no `done` yet).
    assert!(!d.seen.iter().any(|l| l.contains(" done")));
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    drop(d);
    // Stay down until minute M+1 has passed: waiting for the wall clock itself, with a deadline.
    let next = due + chrono::Duration::minutes(1);
    let until = next + chrono::Duration::seconds(1);
    let deadline = Instant::now() + MINUTE;
    while Utc::now() < until {
        assert!(Instant::now() < deadline, "clock did not reach {until}");
        let left = (until - Utc::now()).to_std().unwrap_or_default();
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
    let mut d = Daemon::start(&file, &envs);
    d.wait_for(&["started"], SHORT);
    let line = d.wait_for(&["catching up a run missed while down"], SHORT);
    assert_eq!(field(&line, "missed"), rfc3339(next), "{line}");
    let line = d.wait_for(&["request", "reason=catch-up"], SHORT);
    assert_eq!(field(&line, "due"), rfc3339(next), "{line}");
    let first = rfc3339(due);
    let line = d.wait_for(&["request", "reason=resume"], SHORT);
    assert_eq!(field(&line, "due"), first, "{line}");
    assert_eq!(recv(&p.requests, SHORT), "x");
    assert_eq!(recv(&p.requests, SHORT), "x");
    // M again only as the resume, with M's key; only one catch-up.
    let keys = p.keys();
    let secret = scheduler::state::FireKeys::open(&state).unwrap();
    let key_m = secret.fire(&key, due);
    let key_next = secret.fire(&key, next);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[0], key_m);
    let mut later = keys[1..].to_vec();
    later.sort();
    let mut want = vec![key_m, key_next];
    want.sort();
    assert_eq!(later, want);
    let m_requests: Vec<_> = d
        .seen
        .iter()
        .filter(|l| l.contains(" request ") && l.contains(&format!("due={first}")))
        .collect();
    assert!(
        m_requests.len() == 1 && m_requests[0].contains("reason=resume"),
        "minute {first} fired again:\n{}",
        d.seen.join("\n")
    );
    assert_eq!(
        d.seen
            .iter()
            .filter(|l| l.contains("reason=catch-up"))
            .count(),
        1
    );
    assert!(p.requests.try_recv().is_err(), "a second request was sent");
    assert_eq!(d.stop(), 0);
}

/// Expected: a target whose socket appears only seconds after the fire is retried, then gets
/// the request, which is logged `done`; nothing is logged as missed.
#[test]
fn late_socket_is_retried_then_delivered() {
    let (dir, file, run_dir) = setup("@reboot tardy y\n");
    let mut d = Daemon::start(
        &file,
        &[("BOSUN_RUN_DIR", &run_dir), ("BOSUN_RETRY_WINDOW", "60s")],
    );
    d.wait_for(&["target unavailable; retrying", "tardy"], SHORT);
    // The fault: the socket appears 3 s after the first failed attempt (a deliberate
    // delay that makes the fault, not a wait for an event).
    std::thread::sleep(Duration::from_secs(3));
    assert!(!d.seen.iter().any(|l| l.contains("missed")));
    let p = peer(dir.path(), "tardy", Answer::Done(0));
    assert_eq!(recv(&p.requests, Duration::from_secs(30)), "y");
    d.wait_for(&["done", "service=tardy", "exit=0"], SHORT);
    assert!(
        !d.seen.iter().any(|l| l.contains("missed")),
        "{}",
        d.seen.join("\n")
    );
    assert_eq!(d.stop(), 0);
}

/// Thousands of HUP and USR1 a second for 10 s. Expected: at least 1,000
/// signals a second for 10 s leave the daemon up (it has no reload-on-HUP: edits are seen by
/// inotify, so these signals must simply be ignored), an edit is still reloaded, and TERM
/// afterwards gives exit 0.
#[test]
fn signal_storm_leaves_daemon_up() {
    const STORM: Duration = Duration::from_secs(10);
    let (_dir, file, run_dir) = setup("0 0 1 1 * svc a\n");
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    d.wait_for(&["started", "entries=1"], SHORT);
    let pid = Pid::from_raw(d.child.id() as i32);
    let began = Instant::now();
    let end = began + STORM;
    let mut sent = 0u64;
    while Instant::now() < end {
        for sig in [Signal::SIGHUP, Signal::SIGUSR1] {
            if kill(pid, sig).is_err() {
                break;
            }
            sent += 1;
        }
        d.assert_up();
    }
    let secs = began.elapsed().as_secs_f64();
    let rate = sent as f64 / secs;
    eprintln!("{sent} signals in {secs:.1} s: {rate:.0}/s");
    assert!(rate >= 1000.0, "only {rate:.0} signals a second");
    d.assert_up();
    // Still working: an edit is reloaded.
    rename_over(&file, "0 0 1 1 * svc a\n0 0 1 1 * svc b\n");
    d.wait_for(&["schedule reloaded", "entries=2"], SHORT);
    assert_eq!(d.stop(), 0);
}

/// Expected: a service that closes the connection without a word (its listener died before
/// answering), then answers `error unavailable` (its listener restarting) is retried with
/// backoff, and the request runs once it is back: nothing `missed`, nothing lost.
#[test]
fn a_service_whose_listener_dies_before_answering_is_retried() {
    let (dir, file, run_dir) = setup("@reboot flaky x\n");
    let p = peer(
        dir.path(),
        "flaky",
        Answer::Flaky {
            closed: 1,
            unavailable: 1,
        },
    );
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    d.wait_for(
        &[
            "target unavailable; retrying",
            "closed the connection without a reply",
        ],
        SHORT,
    );
    d.wait_for(&[" done ", "exit=0"], SHORT);
    for _ in 0..3 {
        assert_eq!(recv(&p.requests, SHORT), "x");
    }
    assert!(
        !d.seen
            .iter()
            .any(|l| l.contains("missed") || l.contains("refused")),
        "{}",
        d.seen.join("\n")
    );
    assert_eq!(d.stop(), 0);
}
