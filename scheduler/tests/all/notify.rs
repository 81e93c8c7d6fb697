//! `ON_FAILURE=` and `ON_SUCCESS=` with the real daemon: a target line against a socket peer
//! that succeeds, fails, refuses or is absent, and a notify peer that records the arguments
//! it got and the key they came with; a notify target that fails or is absent is logged and
//! never loops; `scheduler check` accepts the settings and reports bad ones.

use std::time::Duration;

use crate::support::{bin, drain_peer, peer, recv, unkeyed, Answer, Daemon};

const SHORT: Duration = Duration::from_secs(10);

const HEAD: &str = "ON_FAILURE=hooks alarm\nON_SUCCESS=hooks cheer\n";

fn setup(text: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, text).unwrap();
    let run_dir = dir.path().to_str().unwrap().to_string();
    (dir, file, run_dir)
}

/// Runs `@reboot [user] mysql nightly-backup` under [`HEAD`] against a mysql peer answering
/// `answer` (none: no socket), and returns the one notification the hooks peer got, keyed,
/// and the key of the run it tells of (from the daemon's log).
fn notified(user: Option<&str>, answer: Option<Answer>) -> (String, String) {
    let n = notified_full(user, answer, &[]);
    (n.raw, n.key)
}

/// What [`notified_full`] saw.
struct Notified {
    /// The notification, keyed.
    raw: String,
    /// The fire's key.
    key: String,
    /// The requests the target got (unkeyed), in order.
    target: Vec<String>,
    /// The daemon's log.
    log: Vec<String>,
    /// `scheduler status` of the schedule afterwards (the record of the run).
    status: String,
}

/// [`notified`], and the rest of what it saw; waits for a log line with all of `outcome`
/// (the run's outcome is logged just after its notification is sent).
fn notified_full(user: Option<&str>, answer: Option<Answer>, outcome: &[&str]) -> Notified {
    let line = match user {
        Some(u) => format!("@reboot {u} mysql nightly-backup\n"),
        None => "@reboot mysql nightly-backup\n".to_string(),
    };
    let (dir, file, run_dir) = setup(&format!("{HEAD}{line}"));
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let target = answer.map(|a| peer(dir.path(), "mysql", a));
    let hooks = peer(dir.path(), "hooks", Answer::Done(0));
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", &run_dir),
            ("BOSUN_RETRY_WINDOW", "1s"),
            ("BOSUN_STATE_DIR", state),
        ],
    );
    let got = recv(&hooks.requests, SHORT);
    let fire = d.wait_for(&["request", "reason=reboot"], SHORT);
    let key = fire
        .split(' ')
        .find_map(|f| f.strip_prefix("key="))
        .unwrap()
        .to_string();
    d.wait_for(&["notify", "service=hooks"], SHORT);
    if !outcome.is_empty() {
        d.wait_for(outcome, SHORT);
    }
    // Exactly one notification: the rest of the hooks peer's queue is empty.
    assert_eq!(
        drain_peer(dir.path(), "hooks", &hooks.requests, 1),
        Vec::<String>::new()
    );
    let raw = hooks.raw.lock().unwrap()[0].clone();
    assert_eq!(unkeyed(&raw), got);
    let target = target
        .map(|t| drain_peer(dir.path(), "mysql", &t.requests, 2))
        .unwrap_or_default();
    let o = bin()
        .arg("status")
        .arg(&file)
        .env("BOSUN_STATE_DIR", state)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    // The log up to the notification: the outcome and any retry come before it.
    let log = d.seen.clone();
    assert_eq!(d.stop(), 0);
    Notified {
        raw,
        key,
        target,
        log,
        status,
    }
}

/// Expected (DESIGN.md section 2): an `accepted` that names another action than the one
/// asked for (the service read the user as one of its actions) is not this fire's run:
/// recorded `refused` with that run's id, logged with both names, told to ON_FAILURE.
#[test]
fn accepted_of_another_action_is_refused_and_told() {
    let n = notified_full(
        Some("forum"),
        Some(Answer::Script(
            "accepted 7 noop\ndone 7 exit=0 secs=0.001\n",
        )),
        &["refused: the service accepted another action"],
    );
    assert_eq!(
        n.raw,
        format!("@{}:f alarm mysql nightly-backup forum refused - 7", n.key)
    );
    assert_eq!(n.target, ["forum nightly-backup"]);
    assert!(
        n.log.iter().any(
            |l| l.contains("refused: the service accepted another action")
                && l.contains("asked=nightly-backup")
                && l.contains("accepted=noop")
                && l.contains("id=7")
        ),
        "{}",
        n.log.join("\n")
    );
    assert!(
        !n.log.iter().any(|l| l.contains(" done ")),
        "{}",
        n.log.join("\n")
    );
    assert!(n.status.contains("result=refused exit=-"), "{}", n.status);
}

/// Expected: a built-in's text answer to an action request (what `--user stop` produced:
/// the service stopped, the record said ok) is `refused`, told to ON_FAILURE; the text is
/// logged with its control and format characters escaped (no raw ESC, CR or U+202E).
#[test]
fn a_builtins_text_to_an_action_is_refused_and_logged_escaped() {
    let n = notified_full(
        Some("forum"),
        Some(Answer::Script(
            "\u{1b}[31mstopped\rFAKE\u{202e}x exit=143\n",
        )),
        &["refused: the service answered with text"],
    );
    assert_eq!(
        n.raw,
        format!("@{}:f alarm mysql nightly-backup forum refused - -", n.key)
    );
    let line = n
        .log
        .iter()
        .find(|l| l.contains("refused: the service answered with text"))
        .unwrap_or_else(|| panic!("{}", n.log.join("\n")));
    // escaped by the daemon, then quoted by the logger (its backslashes doubled)
    assert!(
        line.contains(r#"reply="\\u{1b}[31mstopped\\rFAKE\\u{202e}x exit=143""#),
        "{line}"
    );
    for l in &n.log {
        assert!(
            !l.contains(['\u{1b}', '\r', '\u{202e}']),
            "raw control in {l:?}"
        );
    }
    assert!(n.status.contains("result=refused"), "{}", n.status);
}

/// Expected (DESIGN.md section 2): `error lost <id> ...` (the key's run was lost with its
/// container, it never runs again) is recorded `failed` with that id at once, not retried
/// (the target got the request once), and told to ON_FAILURE.
#[test]
fn error_lost_is_failed_at_once_with_its_id_and_told() {
    let n = notified_full(
        Some("forum"),
        Some(Answer::Script(
            "error lost 7 nightly-backup: the run was lost with its container\n",
        )),
        &["failed: the service lost this run"],
    );
    assert_eq!(
        n.raw,
        format!("@{}:f alarm mysql nightly-backup forum failed - 7", n.key)
    );
    assert_eq!(n.target, ["forum nightly-backup"], "retried");
    assert!(
        n.log
            .iter()
            .any(|l| l.contains("failed: the service lost this run") && l.contains("id=7")),
        "{}",
        n.log.join("\n")
    );
    assert!(
        !n.log.iter().any(|l| l.contains("retrying")),
        "{}",
        n.log.join("\n")
    );
    assert!(n.status.contains("result=failed exit=-"), "{}", n.status);
}

#[test]
fn on_success_gets_ok_with_exit_and_id() {
    let (raw, key) = notified(Some("forum"), Some(Answer::Done(0)));
    assert_eq!(
        raw,
        format!("@{key}:s cheer mysql nightly-backup forum ok 0 1")
    );
}

#[test]
fn on_failure_gets_failed_with_exit_and_id_and_dash_for_no_user() {
    let (raw, key) = notified(None, Some(Answer::Done(3)));
    assert_eq!(
        raw,
        format!("@{key}:f alarm mysql nightly-backup - failed 3 1")
    );
}

#[test]
fn on_failure_gets_refused() {
    let (raw, key) = notified(Some("forum"), Some(Answer::Busy));
    assert_eq!(
        raw,
        format!("@{key}:f alarm mysql nightly-backup forum refused - -")
    );
}

#[test]
fn on_failure_gets_missed_after_the_retry_window() {
    let (raw, key) = notified(Some("forum"), None);
    assert_eq!(
        raw,
        format!("@{key}:f alarm mysql nightly-backup forum missed - -")
    );
}

/// Expected: lines above a setting and after an empty one tell no one; a notify target
/// that fails is logged once and nothing notifies about it (no loop), even when the
/// notify target's own line is under the same settings.
#[test]
fn empty_value_turns_off_and_a_failing_notify_target_never_loops() {
    let (dir, file, run_dir) = setup(
        "@reboot mysql before\nON_FAILURE=hooks alarm\n@reboot mysql under\nON_FAILURE=\n@reboot mysql after\n",
    );
    let mysql = peer(dir.path(), "mysql", Answer::Done(2));
    let hooks = peer(dir.path(), "hooks", Answer::Done(1));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    for _ in 0..3 {
        recv(&mysql.requests, SHORT);
    }
    let id = id_of(&mut d, "under");
    assert_eq!(
        recv(&hooks.requests, SHORT),
        format!("alarm mysql under - failed 2 {id}")
    );
    d.wait_for(&["service=hooks", "exit=1", "done: action failed"], SHORT);
    assert_eq!(
        drain_peer(dir.path(), "hooks", &hooks.requests, 1),
        Vec::<String>::new()
    );
    assert_eq!(d.seen.iter().filter(|l| l.contains(" notify")).count(), 1);
    assert_eq!(d.stop(), 0);
}

/// The service's run id of the mysql action `action`, from the daemon's log.
fn id_of(d: &mut Daemon, action: &str) -> String {
    let line = d.wait_for(&["accepted", &format!("action={action}")], SHORT);
    line.split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .unwrap()
        .to_string()
}

/// Expected: an absent notify target is retried for the retry window, then logged; the
/// run itself is recorded as it ended.
#[test]
fn an_absent_notify_target_is_retried_then_logged() {
    let (dir, file, run_dir) = setup("ON_SUCCESS=nobody cheer\n@reboot mysql a\n");
    let _mysql = peer(dir.path(), "mysql", Answer::Done(0));
    let mut d = Daemon::start(
        &file,
        &[("BOSUN_RUN_DIR", &run_dir), ("BOSUN_RETRY_WINDOW", "1s")],
    );
    d.wait_for(
        &[
            "notify",
            "service=nobody",
            "request=\"cheer mysql a - ok 0 1\"",
        ],
        SHORT,
    );
    d.wait_for(&["target unavailable; retrying", "service=nobody"], SHORT);
    d.wait_for(&["notification not delivered", "service=nobody"], SHORT);
    assert_eq!(d.stop(), 0);
}

/// Expected: a scheduler killed after recording a run but before its notification got
/// through tells it at its next start, with the same key (so a target that runs a key once
/// is told once); a run recorded longer ago than the catch-up window is not told again.
#[test]
fn a_notification_cut_short_by_a_kill_is_told_at_the_next_start_with_its_key() {
    let (dir, file, run_dir) = setup("ON_FAILURE=hooks alarm\n@reboot mysql nightly-backup\n");
    let _mysql = peer(dir.path(), "mysql", Answer::Done(3));
    let state = dir.path().join("state");
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ("BOSUN_RETRY_WINDOW", "1m"),
    ];
    let mut d = Daemon::start(&file, &envs);
    // No hooks socket yet: the notification is being retried when the scheduler dies.
    d.wait_for(&["target unavailable; retrying", "service=hooks"], SHORT);
    let fire = d.wait_for(&["request", "reason=reboot"], SHORT);
    let key = fire
        .split(' ')
        .find_map(|f| f.strip_prefix("key="))
        .unwrap()
        .to_string();
    d.child.kill().unwrap();
    d.child.wait().unwrap();

    let hooks = peer(dir.path(), "hooks", Answer::Done(0));
    // @reboot fires again at this start (a new run, its own key); only the old run's
    // notification is of interest: filter on its key.
    let d = Daemon::start(&file, &envs);
    let mut told = Vec::new();
    while told.len() < 2 {
        told.push(recv(&hooks.requests, SHORT));
    }
    let raw = hooks.raw.lock().unwrap().clone();
    assert!(
        raw.iter()
            .any(|r| r.starts_with(&format!("@{key}:f alarm mysql nightly-backup - failed 3 "))),
        "{raw:?}"
    );
    assert_eq!(d.stop(), 0);

    // Beyond the catch-up window, the old outcome is not told again.
    let before = hooks.raw.lock().unwrap().len();
    let envs_short = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ("BOSUN_CATCHUP_WINDOW", "0s"),
    ];
    std::fs::write(
        &file,
        "ON_FAILURE=hooks alarm\n0 0 1 1 * mysql nightly-backup\n",
    )
    .unwrap();
    let mut d = Daemon::start(&file, &envs_short);
    d.wait_for(&["started"], SHORT);
    // Everything the start does is logged before the log of a stop.
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(d.child.wait().unwrap().success());
    d.drain();
    assert!(
        !d.seen.iter().any(|l| l.contains(" notify")),
        "{:?}",
        d.seen
    );
    assert_eq!(hooks.raw.lock().unwrap().len(), before);
}

/// Expected: a notify action busy telling of another run (two lines ended together) is
/// asked again within the retry window, so the notification is delivered, not lost; the
/// line's own run that finds its action busy stays `refused` (on_failure_gets_refused).
#[test]
fn a_busy_notify_target_is_asked_again() {
    let (dir, file, run_dir) = setup("ON_FAILURE=hooks alarm\n@reboot mysql nightly-backup\n");
    let _mysql = peer(dir.path(), "mysql", Answer::Done(3));
    let hooks = peer(dir.path(), "hooks", Answer::BusyFirst(2));
    let mut d = Daemon::start(
        &file,
        &[("BOSUN_RUN_DIR", &run_dir), ("BOSUN_RETRY_WINDOW", "30s")],
    );
    for _ in 0..3 {
        assert_eq!(
            recv(&hooks.requests, SHORT),
            "alarm mysql nightly-backup - failed 3 1"
        );
    }
    d.wait_for(&["service=hooks", "exit=0", "done"], SHORT);
    assert!(
        !d.seen.iter().any(|l| l.contains("refused")),
        "{:?}",
        d.seen
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn check_accepts_notify_settings_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.cron");
    std::fs::write(
        &good,
        "ON_FAILURE=scheduler notify\nON_SUCCESS = \"scheduler notify\"\n5 4 * * * forum mysql nightly-backup\nON_SUCCESS=\n@daily nginx rotate-logs\n",
    )
    .unwrap();
    let o = bin().arg("check").arg(&good).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    let bad = dir.path().join("bad.cron");
    std::fs::write(
        &bad,
        "ON_FAILURE=onlyone\nON_SUCCESS=svc/x notify\nON_FAILURE=scheduler -x\n@daily nginx rotate-logs\n",
    )
    .unwrap();
    let o = bin().arg("check").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let b = bad.display();
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!("{b}:1:19: ON_FAILURE= takes `service action`")),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{b}:2:12: `svc/x` is not a valid service name")),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!("{b}:3:22: `-x` is not a valid action name")),
        "{out}"
    );
}
