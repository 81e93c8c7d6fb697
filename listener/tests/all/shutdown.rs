//! SIGTERM/SIGINT: refuse new work, TERM running actions, KILL after the stop timeout,
//! report their `done`, exit 0.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

#[test]
fn sigterm_stops_actions_and_exits_0() {
    let mut l = Listener::start(Opts::default().env("BOSUN_STOP_TIMEOUT", "5s")).ready();
    let (mut a, first) = start_action(l.path(), "slow 30");
    assert_eq!(first, "accepted 1 slow");
    l.log.wait_for("[slow#1] slow-start");
    // A stubborn one too, to see the KILL... but with a 5s stop timeout: not here.
    l.signal(Signal::SIGTERM);
    let done = read_line(&mut a);
    assert!(done.starts_with("done 1 exit=143 "), "{done}");
    let st = l.wait_exit(DEADLINE);
    assert_eq!(st.code(), Some(0));
    l.log.wait_for("shutting down");
}

#[test]
fn new_requests_refused_while_stopping() {
    let mut l = Listener::start(Opts::default().env("BOSUN_STOP_TIMEOUT", "3s")).ready();
    let (mut a, first) = start_action(l.path(), "stubborn");
    assert_eq!(first, "accepted 1 stubborn");
    l.log.wait_for("[stubborn#1] stubborn-start");
    let t0 = Instant::now();
    l.signal(Signal::SIGINT);
    l.log.wait_for("shutting down");
    // Still accepting, but no new work.
    let lines = l.request(b"hello\n");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("error shutting-down "), "{lines:?}");
    // The stubborn action ignores TERM: KILLed after the stop timeout.
    let done = read_line(&mut a);
    assert!(done.starts_with("done 1 exit=137 "), "{done}");
    assert!(
        t0.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(l.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn idle_listener_exits_at_once() {
    let mut l = Listener::start(Opts::default()).ready();
    let t0 = Instant::now();
    l.signal(Signal::SIGTERM);
    assert_eq!(l.wait_exit(DEADLINE).code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(2));
}
