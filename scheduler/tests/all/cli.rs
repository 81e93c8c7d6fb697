//! The command line of DESIGN.md section 3: outputs and exit codes.

use std::process::Output;
use std::time::Duration;

use crate::support::{bin, peer, Answer};

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_valid_and_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.cron");
    std::fs::write(
        &good,
        "# c\nCRON_TZ=Europe/London\n5 4 * * * forum mysql nightly-backup\n@reboot nginx warm-cache\n",
    )
    .unwrap();
    let o = run(&["check", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");

    let bad = dir.path().join("bad.cron");
    std::fs::write(
        &bad,
        "0 0 * * * * s a\n\n0 0 31 2 * s a\nTZ=Mars/Olympus\n0 0 * jan-mon * s a\n",
    )
    .unwrap();
    let o = run(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let f = bad.to_str().unwrap();
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{f}:1:11: 6 time fields")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{f}:3:5: `31 2` never fires")),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(&format!("{f}:4:4: unknown time zone `Mars/Olympus`")),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with(&format!("{f}:5:11: `mon` is not valid in the month field")),
        "{}",
        lines[3]
    );

    let o = run(&["check", dir.path().join("absent").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn next_from_file_merges_lines_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.cron");
    std::fs::write(
        &f,
        "*/10 * * * * static git-pull\nCRON_TZ=America/New_York\n5 0 * * * forum mysql nightly-backup\n@reboot nginx warm-cache\n",
    )
    .unwrap();
    let o = run(&[
        "next",
        f.to_str().unwrap(),
        "--from",
        "2026-11-22T04:52:00Z",
        "--count",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "2026-11-22T05:00:00+00:00 static git-pull\n\
         2026-11-22T00:05:00-05:00 forum mysql nightly-backup\n\
         2026-11-22T05:10:00+00:00 static git-pull\n\
         2026-11-22T05:20:00+00:00 static git-pull\n"
    );
}

#[test]
fn next_expr_and_its_errors() {
    let o = run(&[
        "next",
        "--expr",
        "@daily",
        "--tz",
        "Asia/Tokyo",
        "--from",
        "2026-11-22T00:00:00+09:00",
        "--count",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "2026-11-23T00:00:00+09:00\n2026-11-24T00:00:00+09:00\n"
    );
    // Default count is 5; --from is exclusive.
    let o = run(&[
        "next",
        "--expr",
        "0 * * * *",
        "--from",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(stdout(&o).lines().count(), 5);
    assert!(stdout(&o).starts_with("2026-01-01T01:00:00+00:00\n"));
    // TZ is the default zone.
    let o = bin()
        .env("TZ", "Europe/Paris")
        .args([
            "next",
            "--expr",
            "0 12 * * *",
            "--from",
            "2026-07-01T00:00:00Z",
            "--count",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "2026-07-01T12:00:00+02:00\n");

    for bad in [
        "0 0 31 2 *",
        "* * * * * *",
        "0 0 * mon *",
        "61 * * * *",
        "@reboot",
    ] {
        let o = run(&["next", "--expr", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).starts_with("--expr:1:"), "{bad}: {}", stderr(&o));
    }
    let o = run(&["next", "--expr", "* * * * *", "--tz", "Nowhere/City"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_64_with_one_line() {
    for args in [
        &["next", "--count", "x"][..],
        &["next", "--from", "yesterday", "--expr", "* * * * *"],
        &["send"],
        &["send", "mysql"],
        &["bogus-flag", "--nope"],
        &["check", "a", "b"],
        &["next", "--tz", "UTC"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{args:?}: {}", stderr(&o));
    }
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let o = run(&["send", "--user", "a b", "mysql", "x"]);
    assert_eq!(o.status.code(), Some(64));
}

/// `scheduler send ARGS` with `run_dir` as BOSUN_RUN_DIR.
fn send_in(run_dir: &std::path::Path, args: &[&str]) -> Output {
    bin()
        .env("BOSUN_RUN_DIR", run_dir)
        .arg("send")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn send_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let send = |args: &[&str]| send_in(dir.path(), args);
    let ok = peer(dir.path(), "ok", Answer::Done(0));
    let o = send(&["--user", "forum", "ok", "nightly-backup", "db1", "--full"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        crate::support::recv(&ok.requests, Duration::from_secs(5)),
        "forum nightly-backup db1 --full"
    );
    assert_eq!(
        stdout(&o),
        "accepted 1 nightly-backup\ndone 1 exit=0 secs=0.001\n"
    );

    let _failing = peer(dir.path(), "failing", Answer::Done(3));
    assert_eq!(send(&["failing", "x"]).status.code(), Some(3));
    let _busy = peer(dir.path(), "busy", Answer::Busy);
    let o = send(&["busy", "x"]);
    assert_eq!(o.status.code(), Some(65));
    assert_eq!(stdout(&o), "error busy x is running\n");
    let _pong = peer(dir.path(), "pong", Answer::Text("pong"));
    let o = send(&["pong", "ping"]);
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(0), "pong\n".to_string())
    );
    let _hold = peer(dir.path(), "hold", Answer::Hold);
    let o = send(&["--no-wait", "hold", "x"]);
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(0), "accepted 1 x\n".to_string())
    );
    // --key sends `@KEY` first; a bad key is a usage error, in one line.
    let o = send(&[
        "--key",
        "nightly:1764821100",
        "--user",
        "forum",
        "ok",
        "backup",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    crate::support::recv(&ok.requests, Duration::from_secs(5));
    assert_eq!(
        ok.raw.lock().unwrap().last().unwrap(),
        "@nightly:1764821100 forum backup"
    );
    for bad in ["a b", "x/y", "", &"k".repeat(65)] {
        let o = send(&["--key", bad, "ok", "backup"]);
        assert_eq!(o.status.code(), Some(64), "{bad:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("is not valid"), "{}", stderr(&o));
    }
    assert_eq!(ok.raw.lock().unwrap().len(), 2, "a bad key was sent");
    assert_eq!(send(&["absent", "x"]).status.code(), Some(69));
    // A socket file nobody listens on refuses.
    let stale = dir.path().join("stale-request.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert_eq!(send(&["stale", "x"]).status.code(), Some(69));
}

/// Expected (DESIGN.md section 2): `send --user U` refuses a U the service would read as
/// the action (a built-in, the action itself) or that is not a name, exit 64 in one line,
/// sending nothing; and the reply must be the one asked for: `accepted` of another action,
/// a built-in's text (what `--user stop` got: `stopped exit=143`, exit 0) and `error lost`
/// exit 65 with a line saying why.
#[test]
fn send_refuses_rerouting_users_and_replies_to_something_else() {
    let dir = tempfile::tempdir().unwrap();
    let send = |args: &[&str]| send_in(dir.path(), args);
    let svc = peer(dir.path(), "svc", Answer::Done(0));
    for user in ["stop", "restart", "log", "ping", "backup", "a/b", "-x"] {
        let o = send(&[&format!("--user={user}"), "svc", "backup"]);
        assert_eq!(o.status.code(), Some(64), "{user}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("--user: "), "{}", stderr(&o));
    }
    assert!(
        svc.raw.lock().unwrap().is_empty(),
        "a refused user was sent"
    );

    for (service, answer, want) in [
        (
            "other",
            Answer::Script("accepted 7 noop\ndone 7 exit=0 secs=0.001\n"),
            "accepted \"noop\", not \"backup\"",
        ),
        (
            "builtin",
            Answer::Script("stopped exit=143\n"),
            "answered as to a built-in",
        ),
        (
            "lost",
            Answer::Script("error lost 7 the run was lost with its container\n"),
            "lost with its container",
        ),
    ] {
        let _p = peer(dir.path(), service, answer);
        let o = send(&["--user", "forum", service, "backup"]);
        assert_eq!(o.status.code(), Some(65), "{service}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{service}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
}

#[test]
fn bad_log_settings_exit_64_with_one_line_each() {
    // The same rule as the supervisor's (125) and the listener's (2): an error, no fallback.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, "@daily web rotate-logs\n").unwrap();
    let o = bin()
        .arg(&file)
        .env("BOSUN_LOG", "loud=yes")
        .env("BOSUN_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(64), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "scheduler: BOSUN_LOG: \"loud=yes\" is not a level (trace, debug, info, warn, error, off) or TARGET=LEVEL",
            "scheduler: BOSUN_LOG_FORMAT: \"xml\" is not a log format (text, json)",
        ],
        "{err}"
    );
}
