//! Running actions: concurrency rules, fire and forget, timeouts.

use std::io::Write;
use std::os::unix::net::UnixStream;

use crate::harness::*;

#[test]
fn fire_and_forget_still_runs_to_done() {
    let l = Listener::start(Opts::default()).ready();
    {
        let mut s = UnixStream::connect(l.path()).unwrap();
        s.write_all(b"slow 0.3\n").unwrap();
        // Gone at once, before `accepted`.
    }
    l.log.wait_for("[slow#1] slow-start");
    l.log.wait_for("[slow#1] slow-end");
    let done = l
        .log
        .wait("done", |s| s.contains("done") && s.contains("id=1"));
    assert!(done.contains("exit=0"), "{done}");
    // And the action is free again.
    assert_eq!(l.request(b"hello\n")[0], "accepted 2 hello");
}

#[test]
fn same_action_twice_is_busy() {
    let l = Listener::start(Opts::default()).ready();
    let (a, first) = start_action(l.path(), "slow 30");
    assert_eq!(first, "accepted 1 slow");
    let lines = l.request(b"forum slow\n");
    assert_eq!(lines, ["error busy slow is running as 1"]);
    // A different action runs in parallel.
    assert_eq!(l.request(b"hello\n")[0], "accepted 2 hello");
    drop(a);
}

#[test]
fn too_many_past_the_cap() {
    let l = Listener::start(Opts::default().env("BOSUN_MAX_ACTIONS", "2")).ready();
    let (_a, first) = start_action(l.path(), "slow");
    assert_eq!(first, "accepted 1 slow");
    let (_b, first) = start_action(l.path(), "slow-b");
    assert_eq!(first, "accepted 2 slow-b");
    let lines = l.request(b"slow-c\n");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("error too-many "), "{lines:?}");
    // Built-ins still answer at the cap.
    assert_eq!(l.request(b"ping\n"), ["pong"]);
}

#[test]
fn status_lists_running_actions() {
    let l = Listener::start(Opts::default()).ready();
    let (_a, first) = start_action(l.path(), "forum slow 30");
    assert_eq!(first, "accepted 1 slow");
    let lines = l.request(b"status\n");
    assert_eq!(lines[0], "main running pid=42");
    assert!(
        lines[1].starts_with("action slow id=1 user=forum secs="),
        "{lines:?}"
    );
}

/// Parses the `child=PID` lines a callback printed.
fn children(l: &Listener, action: &str, n: usize) -> Vec<i32> {
    let prefix = format!("[{action}#");
    let pids = |lines: &[String]| -> Vec<i32> {
        lines
            .iter()
            .filter(|s| s.starts_with(&prefix))
            .filter_map(|s| s.split("child=").nth(1))
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    };
    let lines = l
        .log
        .wait_until(&format!("{n} children"), |ls| pids(ls).len() >= n);
    pids(&lines)
}

#[test]
fn timeout_kills_the_whole_tree() {
    let l = Listener::start(
        Opts::default()
            .env("BOSUN_ACTION_TIMEOUTS", "tree=1s")
            .env("BOSUN_KILL_GRACE", "1s"),
    )
    .ready();
    let (mut s, first) = start_action(l.path(), "tree");
    assert_eq!(first, "accepted 1 tree");
    let pids = children(&l, "tree", 2);
    assert_eq!(pids.len(), 2);
    let done = read_line(&mut s);
    // A timeout reports 124, as timeout(1), whatever the bash died of.
    assert!(done.starts_with("done 1 exit=124 "), "{done}");
    l.log.wait_for("timed out, sending TERM");
    // The plain sleep died of TERM, the one ignoring TERM of the KILL after the grace.
    for p in pids {
        wait_dead(p);
    }
}

#[test]
fn timeout_kills_a_bash_that_ignores_term() {
    let l = Listener::start(
        Opts::default()
            .env("BOSUN_ACTION_TIMEOUT", "1s")
            .env("BOSUN_KILL_GRACE", "500ms"),
    )
    .ready();
    let lines = l.request(b"stubborn\n");
    assert_eq!(lines[0], "accepted 1 stubborn");
    assert!(lines[1].starts_with("done 1 exit=124 "), "{lines:?}");
}

#[test]
fn reload_runs_cb_reload_when_defined() {
    let cbs = format!("{CALLBACKS}\nCB_reload() {{ echo reloading; }}\n");
    let l = Listener::start(Opts::default().callbacks(Some(&cbs))).ready();
    let lines = l.request(b"reload\n");
    assert_eq!(lines[0], "accepted 1 reload", "{lines:?}");
    l.log.wait_for("[reload#1] reloading");
}

/// No bash on `PATH` (an Alpine or busybox image): the callbacks are sourced and run by
/// `/bin/sh`, with the same positional arguments and environment.
#[test]
fn without_bash_callbacks_run_in_sh() {
    let empty = tempfile::tempdir().unwrap();
    let l = Listener::start(
        Opts::default()
            .env("PATH", empty.path().to_str().unwrap())
            .callbacks(Some(
                "CB_greet() { echo \"hi $1 $2 ${BOSUN_USER:-nobody} $BOSUN_ACTION\"; }\n\
                 CB_fail() { return 7; }\n\
                 not_an_action() { :; }\n",
            )),
    )
    .ready();
    let help = l.request(b"help\n");
    assert!(help.iter().any(|h| h == "greet"), "{help:?}");
    assert!(help.iter().any(|h| h == "fail"), "{help:?}");
    assert!(!help.iter().any(|h| h.contains("not")), "{help:?}");
    let r = l.request(b"forum greet a 'b c'\n");
    assert_eq!(r[0], "accepted 1 greet");
    assert!(r[1].starts_with("done 1 exit=0"), "{r:?}");
    l.log.wait_for("[greet#1] hi a 'b forum greet");
    let r = l.request(b"fail\n");
    assert!(r[1].starts_with("done 2 exit=7"), "{r:?}");
}
