//! The real daemon against socket peers: delivery and its log, reload after an editor-style
//! rename, a bad edit refused, retry then missed, catch-up, overlap skipped, on-time fires,
//! exit 0 on TERM.

use std::time::Duration;

use chrono::Utc;
use scheduler::state::StateStore;

use crate::support::{bin, drain_peer, peer, recv, rename_over, setup, Answer, Daemon};

const SHORT: Duration = Duration::from_secs(10);
/// A `* * * * *` line fires within a minute of any start.
const MINUTE: Duration = Duration::from_secs(75);

#[test]
fn reboot_line_is_delivered_and_logged() {
    let (dir, file, run_dir) = setup("@reboot forum mysql nightly-backup\n");
    let p = peer(dir.path(), "mysql", Answer::Done(0));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    assert_eq!(recv(&p.requests, SHORT), "forum nightly-backup");
    d.wait_for(&["request", "reason=reboot", "run=1"], SHORT);
    d.wait_for(&["accepted", "id=1"], SHORT);
    d.wait_for(&["done", "id=1", "exit=0", "secs=0.001"], SHORT);
    assert_eq!(d.stop(), 0);
}

/// Expected: every fire is keyed `@<16 hex>:<unix seconds>`; a connection lost after
/// `accepted` is asked again with the same key (which runs nothing new in the service and
/// brings the first run's `done`), and the run ends `done`.
#[test]
fn fires_are_keyed_and_a_lost_connection_is_asked_again_with_the_same_key() {
    let (dir, file, run_dir) = setup("@reboot forum mysql nightly-backup\n");
    let p = peer(dir.path(), "mysql", Answer::DropAfterAccepted(1));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    assert_eq!(recv(&p.requests, SHORT), "forum nightly-backup");
    assert_eq!(recv(&p.requests, SHORT), "forum nightly-backup");
    d.wait_for(&["done", "id=2", "exit=0"], SHORT);
    let keys = p.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1]);
    let (hash, secs) = keys[0].split_once(':').unwrap();
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    // An @reboot fire is keyed by the start instant, in milliseconds (whole seconds when
    // the start fell on one).
    let at: i64 = secs.parse().unwrap();
    let ms = if at < 100_000_000_000 { at * 1000 } else { at };
    assert!((Utc::now().timestamp_millis() - ms).abs() < 60_000, "{at}");
    let line = d.wait_for(&["request", "reason=reboot"], SHORT);
    assert!(line.contains(&format!("key={}", keys[0])), "{line}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn edit_by_rename_reloads_and_bad_edit_is_refused() {
    let (_dir, file, run_dir) = setup("0 0 * * * svc a\n");
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    d.wait_for(&["started", "entries=1"], SHORT);
    rename_over(
        &file,
        "0 0 * * * svc a\n61 * * * * svc b\n0 0 * * * * svc c\n",
    );
    let f = file.display().to_string();
    d.wait_for(&[&format!("{f}:2:1: minute `61` is out of range")], SHORT);
    d.wait_for(&[&format!("{f}:3:11: 6 time fields")], SHORT);
    d.wait_for(&["schedule not reloaded", "errors=2"], SHORT);
    let t = std::time::Instant::now();
    rename_over(&file, "0 0 * * * svc a\n*/5 * * * * svc b\n");
    d.wait_for(&["schedule reloaded", "entries=2"], SHORT);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "reload took {:?}",
        t.elapsed()
    );
    // An edit in place (truncate and write) is seen too; @reboot lines do not fire on reload.
    std::fs::write(&file, "0 0 * * * svc a\n*/5 * * * * svc b\n@reboot svc c\n").unwrap();
    d.wait_for(&["schedule reloaded", "entries=3"], SHORT);
    assert!(
        !d.seen.iter().any(|l| l.contains("reason=reboot")),
        "{:?}",
        d.seen
    );
    assert_eq!(d.stop(), 0);
}

/// Expected (DESIGN.md section 2, M4/L10): `scheduler check` reports a user named like a
/// built-in or the line's action, or not a name, at the user's column; the daemon never
/// fires such a line: an edit that adds one is refused whole (the previous schedule keeps
/// running, nothing is sent), and a file with one does not start.
#[test]
fn users_that_would_reroute_are_never_fired() {
    let (dir, file, run_dir) = setup("@reboot forum svc backup\n");
    let svc = peer(dir.path(), "svc", Answer::Done(0));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    assert_eq!(recv(&svc.requests, SHORT), "forum backup");
    d.wait_for(&["done", "service=svc", "exit=0"], SHORT);
    let bad = "@reboot forum svc backup\n* * * * * stop svc backup\n* * * * * backup svc backup\n\
               * * * * * <b>x svc backup\n";
    let o = bin().arg("check").arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    rename_over(&file, bad);
    let f = file.display().to_string();
    d.wait_for(
        &[&format!("{f}:2:11: user `stop` is named like the built-in")],
        SHORT,
    );
    d.wait_for(
        &[&format!("{f}:3:11: user `backup` is named like the action")],
        SHORT,
    );
    d.wait_for(
        &[&format!("{f}:4:11: `<b>x` is not a valid user name")],
        SHORT,
    );
    d.wait_for(&["schedule not reloaded", "errors=3"], SHORT);
    let o = bin().arg("check").arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.starts_with(&format!("{f}:2:11: user `stop`")), "{out}");
    assert_eq!(d.stop(), 0);
    // Nothing but the first fire reached the service.
    assert_eq!(
        drain_peer(dir.path(), "svc", &svc.requests, 1),
        Vec::<String>::new()
    );
    // A daemon started on the bad file does not start.
    let o = bin()
        .arg(&file)
        .env("BOSUN_RUN_DIR", &run_dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the schedule does not parse; not starting"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        drain_peer(dir.path(), "svc", &svc.requests, 2),
        Vec::<String>::new()
    );
}

#[test]
fn unreachable_target_is_retried_then_missed() {
    let (dir, file, run_dir) = setup("@reboot nobody x\n");
    let mut d = Daemon::start(
        &file,
        &[("BOSUN_RUN_DIR", &run_dir), ("BOSUN_RETRY_WINDOW", "1s")],
    );
    d.wait_for(&["target unavailable; retrying", "nobody"], SHORT);
    d.wait_for(&["missed: target unavailable"], SHORT);
    assert_eq!(d.stop(), 0);

    // A target that appears within the window gets the request.
    std::fs::write(&file, "@reboot late y\n").unwrap();
    let mut d = Daemon::start(
        &file,
        &[("BOSUN_RUN_DIR", &run_dir), ("BOSUN_RETRY_WINDOW", "60s")],
    );
    d.wait_for(&["target unavailable; retrying", "late"], SHORT);
    let p = peer(dir.path(), "late", Answer::Done(2));
    assert_eq!(recv(&p.requests, Duration::from_secs(20)), "y");
    d.wait_for(&["done: action failed", "exit=2"], SHORT);
    assert_eq!(d.stop(), 0);
}

#[test]
fn catch_up_runs_once_then_overlap_is_skipped() {
    let (dir, file, run_dir) = setup("* * * * * slow x\n");
    let state = dir.path().join("state");
    let schedule =
        scheduler::schedule::parse("f", b"* * * * * slow x\n", chrono_tz::Tz::UTC).unwrap();
    let store = StateStore::open(&state).unwrap();
    store
        .record(
            &schedule.entries[0].key(),
            Utc::now() - chrono::Duration::minutes(10),
        )
        .unwrap();
    let p = peer(dir.path(), "slow", Answer::Hold);
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", &run_dir),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    d.wait_for(&["catching up a run missed while down"], SHORT);
    d.wait_for(&["request", "reason=catch-up"], SHORT);
    assert_eq!(recv(&p.requests, SHORT), "x");
    d.wait_for(&["accepted"], SHORT);
    // The held action is still running at the next minute: that fire is skipped.
    d.wait_for(
        &["skipped: the previous run of this line has not finished"],
        MINUTE,
    );
    assert!(p.requests.try_recv().is_err(), "a second request was sent");
    // The record: the caught-up run still running, the next fire skipped.
    let o = crate::support::bin()
        .arg("status")
        .arg(&file)
        .arg("--json")
        .env("BOSUN_STATE_DIR", &state)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{json}");
    assert!(
        json.contains("\"result\":\"skipped\",\"exit\":null,\"next\""),
        "{json}"
    );
    let runs = json.split("\"runs\":").nth(1).unwrap();
    assert!(
        runs.contains("\"result\":\"running\",\"exit\":null,\"secs\":null,\"id\":1}"),
        "{json}"
    );
    assert!(runs.contains("\"result\":\"skipped\""), "{json}");
    // The fire was recorded.
    assert!(
        store.last(&schedule.entries[0].key()).unwrap() > Utc::now() - chrono::Duration::minutes(2)
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn fires_on_the_minute() {
    let (dir, file, run_dir) = setup("* * * * * fast x\n");
    let p = peer(dir.path(), "fast", Answer::Done(0));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    let line = d.wait_for(&["request", "reason=schedule"], MINUTE);
    assert!(line.contains(":00.000Z"), "not due on the minute: {line}");
    let late: i64 = line
        .split("late_ms=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no late_ms in {line}"));
    // The goal is 50 ms at p99 (see bench/cron); a loaded test machine gets slack.
    assert!(late < 1000, "{late} ms late");
    assert_eq!(recv(&p.requests, SHORT), "x");
    d.wait_for(&["done", "exit=0"], SHORT);
    assert_eq!(d.stop(), 0);
}

#[test]
fn bad_file_at_start_exits_1() {
    let (_dir, file, run_dir) = setup("61 * * * * a b\n");
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    d.wait_for(&[":1:1: minute `61` is out of range"], SHORT);
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn json_logs_one_event_a_line() {
    let (dir, file, run_dir) = setup("@reboot web warm-cache\n");
    let _p = peer(dir.path(), "web", Answer::Done(0));
    let mut d = Daemon::start(
        &file,
        &[("BOSUN_RUN_DIR", &run_dir), ("BOSUN_LOG_FORMAT", "json")],
    );
    let line = d.wait_for(&["\"done\""], SHORT);
    for key in [
        "\"exit\":0",
        "\"id\":1",
        "\"service\":\"web\"",
        "\"level\":\"INFO\"",
    ] {
        assert!(line.contains(key), "{key} missing in {line}");
    }
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert_eq!(d.stop(), 0);
}
