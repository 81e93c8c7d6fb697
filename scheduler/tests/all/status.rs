//! The record and `scheduler status` (DESIGN.md sections 3 and 7) against the real daemon
//! and socket peers: ok, failed, missed, refused and never-run lines and the exit code,
//! read while the daemon runs; the record across a restart; a damaged record file.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::{bin, peer, recv, Answer, Daemon};

const SHORT: Duration = Duration::from_secs(10);

fn status(file: &Path, state: Option<&Path>, json: bool) -> Output {
    let mut c = bin();
    c.arg("status").arg(file);
    if json {
        c.arg("--json");
    }
    if let Some(s) = state {
        c.env("BOSUN_STATE_DIR", s);
    }
    c.output().unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// The `key=value` field of a status line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

const SCHEDULE: &str = "\
# every result there is
@reboot forum good backup
@reboot bad backup
@reboot absent backup
@reboot busy backup
0 0 1 1 * good yearly
";

/// Expected: after one start of the daemon, `status` (run while the daemon runs) prints one
/// line per schedule line in file order with result ok, failed, missed, refused and never,
/// the exit code, the next fire, and exits 1; `--json` says the same; a schedule with only
/// the ok and never-run lines exits 0; without BOSUN_STATE_DIR it exits 64 with one line.
/// After a restart the record holds the runs of both starts.
#[test]
fn status_shows_every_result_while_the_daemon_runs_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let file = conf.join("schedule.cron");
    std::fs::write(&file, SCHEDULE).unwrap();
    let state = dir.path().join("state");
    let run_dir = dir.path().to_str().unwrap().to_string();
    let good = peer(dir.path(), "good", Answer::Done(0));
    let bad = peer(dir.path(), "bad", Answer::Done(3));
    let _busy = peer(dir.path(), "busy", Answer::Busy);
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ("BOSUN_RETRY_WINDOW", "1s"),
    ];
    let mut d = Daemon::start(&file, &envs);
    recv(&good.requests, SHORT);
    recv(&bad.requests, SHORT);
    d.wait_for(&["done", "service=good", "exit=0"], SHORT);
    d.wait_for(&["done: action failed", "service=bad", "exit=3"], SHORT);
    d.wait_for(&["refused", "service=busy"], SHORT);
    d.wait_for(&["missed: target unavailable", "service=absent"], SHORT);

    let o = status(&file, Some(&state), false);
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    let f = file.display().to_string();
    assert_eq!(lines.len(), 5, "{out}");
    let expect = [
        (2, "good backup user=forum", "ok", "0"),
        (3, "bad backup user=-", "failed", "3"),
        (4, "absent backup user=-", "missed", "-"),
        (5, "busy backup user=-", "refused", "-"),
        (6, "good yearly user=-", "never", "-"),
    ];
    for (line, (n, what, result, exit)) in lines.iter().zip(expect) {
        assert!(line.starts_with(&format!("{f}:{n} {what} last=")), "{line}");
        assert_eq!(field(line, "result"), result, "{line}");
        assert_eq!(field(line, "exit"), exit, "{line}");
    }
    for line in &lines[..4] {
        let last = field(line, "last");
        chrono::DateTime::parse_from_rfc3339(last).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(field(line, "next"), "-", "{line}");
    }
    assert_eq!(field(lines[4], "last"), "never");
    assert!(
        field(lines[4], "next").ends_with("-01-01T00:00:00+00:00"),
        "{}",
        lines[4]
    );

    let o = status(&file, Some(&state), true);
    assert_eq!(o.status.code(), Some(1));
    let json = text(&o.stdout);
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(json.contains("\"ok\":false"), "{json}");
    for r in [
        "\"result\":\"ok\",\"exit\":0",
        "\"result\":\"failed\",\"exit\":3",
        "\"result\":\"missed\"",
        "\"result\":\"refused\"",
        "\"result\":\"never\"",
    ] {
        assert!(json.contains(r), "{r} missing in {json}");
    }
    // The target's run id and the fire's key are in the runs.
    assert!(json.contains("\"id\":1}"), "{json}");
    let key = good.keys()[0].clone();
    assert!(json.contains(&format!("\"key\":\"{key}\"")), "{json}");

    // Only the ok and never-run lines: exit 0 (the record is found by line identity, not
    // by file or line number).
    let other = conf.join("good.cron");
    std::fs::write(&other, "0 0 1 1 * good yearly\n@reboot forum good backup\n").unwrap();
    let o = status(&other, Some(&state), false);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains(":2 good backup user=forum last="),
        "{}",
        text(&o.stdout)
    );

    let o = status(&file, None, false);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(text(&o.stderr).lines().count(), 1, "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    assert_eq!(d.stop(), 0);

    // The record survives a restart: the @reboot lines ran again, two runs each.
    let mut d = Daemon::start(&file, &envs);
    recv(&good.requests, SHORT);
    d.wait_for(&["done", "service=good", "exit=0"], SHORT);
    d.wait_for(&["missed: target unavailable", "service=absent"], SHORT);
    assert_eq!(d.stop(), 0);
    let o = status(&file, Some(&state), true);
    let json = text(&o.stdout);
    let good_line = json.split("\"service\":").nth(1).unwrap();
    assert_eq!(good_line.matches("\"fire\":").count(), 2, "{json}");
}

/// Expected: a record file damaged by hand (garbage and a torn line) is reported once by the
/// daemon, which keeps running and recording, and by `status`, which shows the valid runs.
#[test]
fn a_damaged_record_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let file = conf.join("schedule.cron");
    std::fs::write(&file, "@reboot good backup\n").unwrap();
    let state = dir.path().join("state");
    let run_dir = dir.path().to_str().unwrap().to_string();
    let good = peer(dir.path(), "good", Answer::Done(0));
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
    ];
    let mut d = Daemon::start(&file, &envs);
    recv(&good.requests, SHORT);
    d.wait_for(&["done", "exit=0"], SHORT);
    assert_eq!(d.stop(), 0);

    let runs: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "runs"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let mut bytes = std::fs::read(&runs[0]).unwrap();
    bytes.extend_from_slice(b"\xff\xfegarbage\nr1\tnot\ta\trecord\nr1\ttorn");
    std::fs::write(&runs[0], &bytes).unwrap();

    let mut d = Daemon::start(&file, &envs);
    recv(&good.requests, SHORT);
    let line = d.wait_for(&["damaged records in the run record; skipped"], SHORT);
    assert!(line.contains("damaged=3"), "{line}");
    d.wait_for(&["done", "exit=0"], SHORT);
    assert_eq!(d.stop(), 0);
    let o = status(&file, Some(&state), false);
    assert_eq!(o.status.code(), Some(0));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("3 damaged records skipped"), "{err}");
    assert!(
        text(&o.stdout).contains("result=ok exit=0"),
        "{}",
        text(&o.stdout)
    );
    let o = status(&file, Some(&state), true);
    let json = text(&o.stdout);
    assert_eq!(json.matches("\"fire\":").count(), 2, "{json}");
}
