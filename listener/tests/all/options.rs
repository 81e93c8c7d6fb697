//! Request options and `cancel ID` (issue 22): `timeout=` shortens a run's timeout (never
//! lengthens it) and a timed-out run reports `exit=124`; `cancel ID` stops a run's whole
//! process group and answers once it has ended, with the exit its own `done` reports.

use crate::harness::*;

#[test]
fn timeout_option_ends_the_run_with_124() {
    let l = Listener::start(Opts::default().env("BOSUN_KILL_GRACE", "1s")).ready();
    let started = std::time::Instant::now();
    let lines = l.request(b"@k1 timeout=500ms forum slow 30\n");
    assert_eq!(lines[0], "accepted 1 slow", "{lines:?}");
    assert!(lines[1].starts_with("done 1 exit=124 "), "{lines:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    l.log.wait_for("timed out, sending TERM");
    // The journal says so too, and the key replays it with its timeout.
    let history = l.request(b"history slow\n");
    assert!(history[0].contains(" exit=124 "), "{history:?}");
    let again = l.request(b"@k1 forum slow 30\n");
    assert_eq!(again[0], "accepted 1 slow", "{again:?}");
    assert!(again[1].starts_with("done 1 exit=124 "), "{again:?}");
}

#[test]
fn timeout_option_never_lengthens_the_actions_own() {
    let l = Listener::start(
        Opts::default()
            .env("BOSUN_ACTION_TIMEOUT", "500ms")
            .env("BOSUN_KILL_GRACE", "1s"),
    )
    .ready();
    let lines = l.request(b"timeout=1h slow 30\n");
    assert!(lines[1].starts_with("done 1 exit=124 "), "{lines:?}");
    // A run that ends in time is untouched.
    let lines = l.request(b"timeout=30s hello\n");
    assert!(lines[1].starts_with("done 2 exit=0 "), "{lines:?}");
}

#[test]
fn a_stubborn_run_is_killed_and_still_reports_124() {
    let l = Listener::start(Opts::default().env("BOSUN_KILL_GRACE", "300ms")).ready();
    let lines = l.request(b"timeout=300ms stubborn\n");
    assert!(lines[1].starts_with("done 1 exit=124 "), "{lines:?}");
    l.log.wait_for("still running, sent KILL");
}

#[test]
fn bad_options_are_bad_requests() {
    let l = Listener::start(Opts::default()).ready();
    for (line, want) in [
        (
            "retries=3 hello",
            r#"error bad-request unknown option "retries=3": only timeout=<duration> is understood before the action"#,
        ),
        (
            "timeout=soon hello",
            r#"error bad-request bad timeout= "soon": a positive duration without blanks, such as 30s, 5m, 1h30m"#,
        ),
        (
            "timeout=1s ping",
            "error bad-request options (timeout=) apply to actions, not to the built-in ping",
        ),
    ] {
        assert_eq!(l.request(format!("{line}\n").as_bytes()), [want], "{line}");
    }
    // Nothing ran.
    assert_eq!(l.request(b"hello\n")[0], "accepted 1 hello");
}

#[test]
fn cancel_stops_the_whole_group_and_answers_with_its_exit() {
    let l = Listener::start(Opts::default().env("BOSUN_KILL_GRACE", "500ms")).ready();
    let (mut s, first) = start_action(l.path(), "tree");
    assert_eq!(first, "accepted 1 tree");
    let pids = {
        let prefix = "[tree#";
        let lines = l.log.wait_until("2 children", |ls| {
            ls.iter()
                .filter(|x| x.starts_with(prefix) && x.contains("child="))
                .count()
                >= 2
        });
        lines
            .iter()
            .filter(|x| x.starts_with(prefix))
            .filter_map(|x| x.split("child=").nth(1))
            .filter_map(|p| p.trim().parse::<i32>().ok())
            .collect::<Vec<_>>()
    };
    assert_eq!(l.request(b"cancel 1\n"), ["cancelled id=1 exit=143"]);
    let done = read_line(&mut s);
    assert!(done.starts_with("done 1 exit=143 "), "{done}");
    l.log.wait_for("cancelled, sending TERM");
    // The child ignoring TERM got the KILL after the grace.
    for p in pids {
        wait_dead(p);
    }
    // Ended: not found any more; nor is an id that never was.
    assert_eq!(
        l.request(b"cancel 1\n"),
        ["error not-found no running action has id 1"]
    );
    assert_eq!(
        l.request(b"cancel 99\n"),
        ["error not-found no running action has id 99"]
    );
    assert_eq!(
        l.request(b"cancel\n"),
        ["error bad-request cancel takes one word (usage: cancel ID); got 0"]
    );
    // The action is free again.
    let (_s, first) = start_action(l.path(), "tree");
    assert_eq!(first, "accepted 2 tree");
}
