//! Keyed requests (DESIGN.md section 2): a key belongs to the words of its request, a lost
//! run's key is answered `error lost`, and built-ins refuse words they do not take.

use std::path::Path;

use crate::harness::*;

/// The callbacks of these tests: `count` appends to a file outside the state dir, so a run
/// is counted by its own side effect.
pub fn counting(count: &Path) -> String {
    format!(
        "{CALLBACKS}\nCB_count() {{ echo \"$BOSUN_REQUEST_ID $*\" >> {}; }}\nCB_noop() {{ :; }}\n",
        count.display()
    )
}

pub fn count_lines(count: &Path) -> usize {
    std::fs::read_to_string(count)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn a_key_with_other_words_is_another_run() {
    let out = tempfile::tempdir().unwrap();
    let count = out.path().join("count");
    let state = out.path().join("state");
    let cbs = counting(&count);
    let l = Listener::start(Opts::default().callbacks(Some(&cbs)).state_dir(&state)).ready();
    // Someone claims the scheduler's key first, with other words.
    let squat = l.request(b"@nightly:1 noop\n");
    assert_eq!(squat[0], "accepted 1 noop", "{squat:?}");
    // The real request still runs.
    let real = l.request(b"@nightly:1 forum count db\n");
    assert_eq!(real[0], "accepted 2 count", "{real:?}");
    assert!(real[1].starts_with("done 2 exit=0 "), "{real:?}");
    assert_eq!(count_lines(&count), 1);
    // Each replays its own run; args and user are part of the words.
    assert_eq!(l.request(b"@nightly:1 noop\n"), squat);
    assert_eq!(l.request(b"@nightly:1 forum count db\n"), real);
    assert_eq!(count_lines(&count), 1);
    let other_args = l.request(b"@nightly:1 forum count db2\n");
    assert_eq!(other_args[0], "accepted 3 count", "{other_args:?}");
    let other_user = l.request(b"@nightly:1 wiki count db\n");
    assert_eq!(other_user[0], "accepted 4 count", "{other_user:?}");
    assert_eq!(count_lines(&count), 3);
    drop(l);

    // After a restart of the listener, from the journal: the same.
    let l = Listener::start(Opts::default().callbacks(Some(&cbs)).state_dir(&state)).ready();
    assert_eq!(l.request(b"@nightly:1 noop\n"), squat);
    assert_eq!(l.request(b"@nightly:1 forum count db\n"), real);
    assert_eq!(count_lines(&count), 3);
    let next = l.request(b"count\n");
    assert_eq!(next[0], "accepted 5 count", "ids go on: {next:?}");
}

#[test]
fn a_lost_runs_key_is_answered_lost_and_never_runs_again() {
    let out = tempfile::tempdir().unwrap();
    let count = out.path().join("count");
    let state = out.path().join("state");
    let cbs = format!(
        "{}\nCB_long() {{ echo \"$BOSUN_REQUEST_ID\" >> {}; sleep 1000; }}\n",
        counting(&count),
        count.display()
    );
    let mut l = Listener::start(Opts::default().callbacks(Some(&cbs)).state_dir(&state)).ready();
    let (_conn, first) = start_action(l.path(), "@fire:7 long");
    assert_eq!(first, "accepted 1 long");
    l.log.wait_for("started");
    // The listener dies with its run (the container did).
    l.signal(nix::sys::signal::Signal::SIGKILL);
    l.wait_exit(DEADLINE);
    let group = l
        .log
        .wait("pgid", |s| s.contains("started") && s.contains("pgid="));
    let pgid: i32 = group
        .split("pgid=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("pgid in the started line");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    drop(l);

    let l = Listener::start(Opts::default().callbacks(Some(&cbs)).state_dir(&state)).ready();
    let r = l.request(b"@fire:7 long\n");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].starts_with("error lost 1 "), "{r:?}");
    assert_eq!(count_lines(&count), 1, "not run again");
    // The same key with other words is another run, and runs.
    let other = l.request(b"@fire:7 count\n");
    assert_eq!(other[0], "accepted 2 count", "{other:?}");
}

#[test]
fn builtins_refuse_words_they_do_not_take() {
    let l = Listener::start(Opts::default()).ready();
    for line in [
        "stop backup",
        "ping now",
        "status x",
        "help me",
        "start now",
        "restart x",
        "reload x",
        "metrics x",
        "forum stop backup",
        "log",
        "log 1 2",
        "history a b",
    ] {
        let r = l.request(format!("{line}\n").as_bytes());
        assert_eq!(r.len(), 1, "{line}: {r:?}");
        assert!(r[0].starts_with("error bad-request "), "{line}: {r:?}");
        assert!(r[0].contains("usage: "), "{line}: {r:?}");
    }
    // None of them reached the supervisor.
    assert_eq!(l.request(b"status\n"), ["main running pid=42"]);
    let (m, _) = &*l.ctl;
    let cmds: Vec<_> = m
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| match &s.msg {
            proto::control::Msg::Cmd { cmd, .. } => Some(*cmd),
            _ => None,
        })
        .collect();
    assert_eq!(cmds, [proto::Builtin::Status]);
    // Those that take a word still do.
    assert_eq!(l.request(b"forum ping\n"), ["pong"]);
    assert!(l.request(b"history hello\n").is_empty());
    assert!(l.request(b"log 1\n")[0].starts_with("error not-found "));
}
