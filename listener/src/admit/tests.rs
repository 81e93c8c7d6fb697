//! Admission with a fake journal and a fake clock: no socket, no process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Reply, Request};

use super::*;

/// A journal that holds what a test puts in it.
#[derive(Default)]
struct Fake {
    keys: HashMap<Key, u64>,
    runs: HashMap<u64, Recorded>,
}

impl Records for Fake {
    fn by_key(&self, key: &Key) -> Option<u64> {
        self.keys.get(key).copied()
    }
    fn run(&self, id: u64) -> Option<Recorded> {
        self.runs.get(&id).cloned()
    }
}

fn req(line: &str) -> Request {
    Request::parse(line.as_bytes(), |a| a.starts_with("act") || a == "backup").unwrap()
}

fn limits(max: usize) -> Limits {
    Limits::new(max)
}

#[test]
fn a_free_action_runs_with_the_next_id_and_holds_its_slot() {
    let t0 = Instant::now();
    let mut st = State::new(7);
    let j = Fake::default();
    assert_eq!(
        st.admit(&limits(4), &j, &req("act-a"), t0),
        Decision::Run(7)
    );
    assert_eq!(st.next_id, 8);
    assert_eq!(st.running["act-a"].id, 7);
    let shown: Vec<String> = st
        .actions(t0 + Duration::from_secs(3))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["action act-a id=7 user=- secs=3"]);
}

#[test]
fn the_same_action_twice_is_busy_until_released() {
    let t0 = Instant::now();
    let mut st = State::new(1);
    let j = Fake::default();
    let l = limits(4);
    assert_eq!(
        st.admit(&l, &j, &req("forum act-a x"), t0),
        Decision::Run(1)
    );
    let d = st.admit(&l, &j, &req("act-a"), t0);
    assert_eq!(
        d,
        Decision::Busy {
            action: "act-a".into(),
            id: 1
        }
    );
    assert_eq!(
        d.refusal().unwrap().to_string(),
        "error busy act-a is running as 1"
    );
    // Refusals reserve nothing.
    assert_eq!(st.next_id, 2);
    // Another run's release does not free it; its own does.
    st.release("act-a", 9);
    assert!(st.running.contains_key("act-a"));
    st.release("act-a", 1);
    assert_eq!(st.admit(&l, &j, &req("act-a"), t0), Decision::Run(2));
}

#[test]
fn a_full_table_is_too_many() {
    let t0 = Instant::now();
    let mut st = State::new(1);
    let j = Fake::default();
    let l = limits(2);
    assert_eq!(st.admit(&l, &j, &req("act-a"), t0), Decision::Run(1));
    assert_eq!(st.admit(&l, &j, &req("act-b"), t0), Decision::Run(2));
    let d = st.admit(&l, &j, &req("act-c"), t0);
    assert_eq!(d, Decision::TooMany { running: 2 });
    assert_eq!(
        d.refusal().unwrap().to_string(),
        "error too-many 2 actions are running, the most allowed (BOSUN_MAX_ACTIONS)"
    );
    // Busy is told before too-many: the action itself is what the client must wait for.
    assert!(matches!(
        st.admit(&l, &j, &req("act-a"), t0),
        Decision::Busy { id: 1, .. }
    ));
}

#[test]
fn a_key_seen_here_or_in_the_journal_replays_never_runs_twice() {
    let t0 = Instant::now();
    let mut st = State::new(1);
    let mut j = Fake::default();
    let l = limits(4);
    let first = req("@k1 act-a");
    assert_eq!(st.admit(&l, &j, &first, t0), Decision::Run(1));
    // At once, while it runs (not yet in the journal): follows the first run.
    assert_eq!(st.admit(&l, &j, &first, t0), Decision::Replay(1));
    // A key from the journal (a run before a restart), even while the action is free.
    let old = req("@k2 act-b");
    j.keys.insert(Key::of(&old).unwrap(), 40);
    assert_eq!(st.admit(&l, &j, &old, t0), Decision::Replay(40));
    // A replay wins over busy and too-many: it runs nothing.
    let l1 = limits(1);
    assert_eq!(st.admit(&l1, &j, &old, t0), Decision::Replay(40));
}

#[test]
fn a_key_is_bound_to_its_words() {
    let t0 = Instant::now();
    let mut st = State::new(1);
    let j = Fake::default();
    let l = limits(4);
    assert_eq!(st.admit(&l, &j, &req("@k act-a x"), t0), Decision::Run(1));
    st.release("act-a", 1);
    // The same key with other words is another run.
    assert_eq!(st.admit(&l, &j, &req("@k act-a y"), t0), Decision::Run(2));
    assert_eq!(st.keys.len(), 2);
}

#[test]
fn replay_follows_the_first_run_to_its_done() {
    let mut st = State::new(1);
    let mut j = Fake::default();
    let r = req("@k act-a");
    let key = Key::of(&r).unwrap();
    st.admit(&limits(4), &j, &r, Instant::now());
    // Reserved, its start not durable yet: wait, no `accepted` to say.
    assert_eq!(
        replay(&st, &j, &key, 1),
        Replay::Running {
            action: "act-a".into(),
            recorded: false
        }
    );
    j.runs.insert(
        1,
        Recorded {
            action: "act-a".into(),
            lost: false,
            end: None,
        },
    );
    assert_eq!(
        replay(&st, &j, &key, 1),
        Replay::Running {
            action: "act-a".into(),
            recorded: true
        }
    );
    j.runs.get_mut(&1).unwrap().end = Some((3, 1.5));
    assert_eq!(
        replay(&st, &j, &key, 1),
        Replay::Ended {
            action: "act-a".into(),
            done: Reply::Done {
                id: 1,
                exit: 3,
                secs: 1.5
            }
        }
    );
}

#[test]
fn a_lost_key_is_error_lost_and_an_unrecorded_one_unavailable() {
    let st = State::new(1);
    let mut j = Fake::default();
    let key = Key::of(&req("@k act-a")).unwrap();
    j.runs.insert(
        5,
        Recorded {
            action: "act-a".into(),
            lost: true,
            end: None,
        },
    );
    assert_eq!(replay(&st, &j, &key, 5), Replay::Lost);
    let e = lost(5, "k");
    assert!(
        matches!(&e, Reply::Error { code: ErrorCode::Lost, message } if message.starts_with("5 the run of key k was lost"))
    );
    // Neither in the journal nor reserved here: its start failed to be recorded.
    assert_eq!(replay(&st, &j, &key, 6), Replay::Unrecorded);
    assert_eq!(
        unrecorded("k").to_string(),
        "error unavailable journal cannot record the start of key k; not run, try again"
    );
}

#[test]
fn waiters_are_capped_per_key_and_in_all() {
    let mut st = State::new(1);
    let l = Limits {
        max_actions: 4,
        waiters_per_key: 2,
        waiters: 3,
    };
    assert!(st.wait_on(&l, "a"));
    assert!(st.wait_on(&l, "a"));
    assert!(!st.wait_on(&l, "a"), "per key");
    assert!(st.wait_on(&l, "b"));
    assert!(!st.wait_on(&l, "c"), "in all");
    st.leave("a");
    assert!(st.wait_on(&l, "c"));
    st.leave("a");
    st.leave("b");
    st.leave("c");
    assert!(st.wait_on(&l, "a") && st.wait_on(&l, "a"));
    assert_eq!(
        still_running("act-a", 3).to_string(),
        "error busy act-a still running as 3"
    );
}

#[test]
fn users_are_plain_names() {
    for ok in [
        "forum act-a",
        "site_1 act-a",
        "a.b-c act-a",
        "_x act-a",
        "0 act-a",
    ] {
        assert!(check_user(&req(ok)).is_ok(), "{ok}");
    }
    for bad in [
        "..",
        ".hidden",
        "-rf",
        "a/b",
        "../etc",
        "é",
        &"x".repeat(65),
    ] {
        let r = req(&format!("{bad} act-a"));
        let e = check_user(&r).unwrap_err();
        assert!(
            matches!(
                e,
                Reply::Error {
                    code: ErrorCode::BadRequest,
                    ..
                }
            ),
            "{bad}"
        );
    }
}

#[test]
fn connection_limits() {
    assert_eq!(connection_limit(Some(3), Some(10)), 3);
    assert_eq!(connection_limit(None, Some(1024)), (1024 - 48) / 2);
    assert_eq!(connection_limit(None, None), (1024 - 48) / 2);
    assert_eq!(connection_limit(None, Some(10)), 1);
    assert_eq!(connection_limit(None, Some(1 << 20)), MAX_CONNECTIONS);
    assert_eq!(
        too_many_connections(5).to_string(),
        "error too-many 5 connections are open, the most served at once; try again"
    );
    assert_eq!(
        denied(7, 8).to_string(),
        "error denied uid 7 gid 8 may not use this socket (BOSUN_ALLOW_UIDS/BOSUN_ALLOW_GIDS)"
    );
}

#[test]
fn bad_request_lines_are_throttled_per_window() {
    let t0 = Instant::now();
    let mut t = Throttle::default();
    for _ in 0..LOG_BURST {
        assert_eq!(t.allow(t0), Some(0));
    }
    assert_eq!(t.allow(t0), None);
    assert_eq!(t.allow(t0 + Duration::from_secs(1)), None);
    // The next window tells how many were left out.
    assert_eq!(t.allow(t0 + LOG_WINDOW), Some(2));
    assert_eq!(t.allow(t0 + LOG_WINDOW), Some(0));
}
