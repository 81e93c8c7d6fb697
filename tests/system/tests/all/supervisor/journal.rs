//! The run journal (DESIGN.md section 7) and keyed requests (section 2), through the real
//! supervisor and listener: `history` and `log` across a restart of the container, a run
//! cut by SIGKILL shown `lost`, ids never reused, a key that runs once also after a
//! restart (counted by the callback's own side effect), a damaged and an unwritable journal.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::harness::*;

const T10: Duration = Duration::from_secs(10);

const CALLBACKS: &str = r#"
CB_say() { echo "out $1"; echo "err $1" >&2; }
CB_count() { echo "$BOSUN_REQUEST_ID" >> "$COUNT"; }
CB_slow() { echo started; sleep 1000; }
CB_fail() { echo "bad thing"; return 3; }
"#;

/// A container with its state in `state` (kept across "restarts": new supervisors).
fn container(mode: Mode, state: &Path) -> Sup {
    let b = sup(mode)
        .with_listener()
        .env("BOSUN_STATE_DIR", state.to_str().unwrap())
        .env("COUNT", state.join("count").to_str().unwrap())
        .cmd(&["sleep", "1000"]);
    b.file("callbacks.sh", CALLBACKS);
    let s = b.start();
    s.wait_socket();
    s
}

fn stop(mut s: Sup) {
    s.signal(SIGTERM);
    let st = s.wait(T10);
    assert!(st.code().is_some(), "{}", s.stderr());
}

/// `history` lines split into (id, action, the rest after the start time).
fn history(s: &Sup, line: &str) -> Vec<(u64, String, String)> {
    s.request(line)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            assert_eq!(f.len(), 4, "history line {l:?}");
            assert!(
                f[1].len() == 20 && f[1].ends_with('Z') && f[1].as_bytes()[10] == b'T',
                "start time {l:?}"
            );
            (f[0].parse().unwrap(), f[2].to_string(), f[3].to_string())
        })
        .collect()
}

fn count_lines(state: &Path) -> usize {
    std::fs::read_to_string(state.join("count"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn history_and_log_survive_a_restart_and_ids_go_on() {
    let state = tempfile::tempdir().unwrap();
    let s = container(Mode::Pid1, state.path());
    assert!(s.request("history").is_empty());
    let r = s.request("forum say one");
    assert_eq!(r[0], "accepted 1 say");
    assert!(r[1].starts_with("done 1 exit=0 secs="), "{r:?}");
    let r = s.request("fail");
    assert!(r[1].starts_with("done 2 exit=3 "), "{r:?}");
    let h = history(&s, "history");
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!((h[0].0, h[0].1.as_str()), (2, "fail"));
    assert!(h[0].2.starts_with("user=- exit=3 secs="), "{h:?}");
    assert!(h[0].2.ends_with(" by=0 instance=1"), "{h:?}");
    assert_eq!((h[1].0, h[1].1.as_str()), (1, "say"));
    assert!(h[1].2.starts_with("user=forum exit=0 secs="), "{h:?}");
    // stdout and stderr, as they went to the log, without the prefix.
    let mut log = s.request("log 1");
    log.sort();
    assert_eq!(log, ["err one", "out one"]);
    assert_eq!(s.request("log 2"), ["bad thing"]);
    let nf = s.request("log 99");
    assert!(nf[0].starts_with("error not-found "), "{nf:?}");
    assert!(s.request("log x")[0].starts_with("error bad-request "));
    stop(s);

    // The container again: the same history, and ids go on from there.
    let s = container(Mode::Pid1, state.path());
    let h = history(&s, "history say");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].0, 1);
    assert_eq!(s.request("log 2"), ["bad thing"]);
    let r = s.request("say two");
    assert_eq!(r[0], "accepted 3 say", "ids are not reused: {r:?}");
    let h = history(&s, "history");
    assert_eq!(
        h.iter().map(|h| h.0).collect::<Vec<_>>(),
        [3, 2, 1],
        "newest first"
    );
    stop(s);
}

#[test]
fn a_run_going_at_a_sigkill_shows_lost() {
    let state = tempfile::tempdir().unwrap();
    let s = container(Mode::Pid1, state.path());
    let mut conn = UnixStream::connect(s.socket()).unwrap();
    conn.write_all(b"slow\n").unwrap();
    let mut first = String::new();
    BufReader::new(&conn).read_line(&mut first).unwrap();
    assert_eq!(first, "accepted 1 slow\n");
    s.wait_stderr("[slow#1] started", T10);
    let running = history(&s, "history");
    assert!(running[0].2.contains("exit=running secs=-"), "{running:?}");
    // The whole container dies at once: PID 1 KILLed.
    let mut s = s;
    s.signal(SIGKILL);
    s.wait(T10);
    drop(s);

    let s = container(Mode::Pid1, state.path());
    let h = history(&s, "history slow");
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h[0].2.contains("exit=lost secs=-"), "{h:?}");
    let r = s.request("say x");
    assert_eq!(r[0], "accepted 2 say", "{r:?}");
    stop(s);
}

#[test]
fn a_keyed_request_runs_once_also_after_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let s = container(Mode::Pid1, state.path());
    let first = s.request("@nightly:1764821100 count");
    assert_eq!(first[0], "accepted 1 count");
    assert!(first[1].starts_with("done 1 exit=0 secs="), "{first:?}");
    // The same key: the first run's replies, nothing run.
    assert_eq!(s.request("@nightly:1764821100 count"), first);
    assert_eq!(count_lines(state.path()), 1);
    // Two at once with a new key: one runs, the other follows it.
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(|| s.request("@k2 count"));
        let b = sc.spawn(|| s.request("@k2 count"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, b);
    assert_eq!(count_lines(state.path()), 2);
    stop(s);

    let s = container(Mode::Pid1, state.path());
    assert_eq!(s.request("@nightly:1764821100 count"), first);
    assert_eq!(
        count_lines(state.path()),
        2,
        "not run again after a restart"
    );
    let other = s.request("@nightly:1764907500 count");
    assert_eq!(other[0], "accepted 3 count");
    assert_eq!(count_lines(state.path()), 3);
    // A key of the wrong shape is refused.
    for bad in [
        "@ count",
        "@a/b count",
        &format!("@{} count", "k".repeat(65)),
    ] {
        let r = s.request(bad);
        assert!(r[0].starts_with("error bad-request "), "{bad}: {r:?}");
    }
    assert_eq!(count_lines(state.path()), 3);
    stop(s);
}

#[test]
fn a_damaged_journal_is_reported_once_and_the_rest_kept() {
    let state = tempfile::tempdir().unwrap();
    let s = container(Mode::Subreaper, state.path());
    for w in ["a", "b", "c"] {
        assert!(s.request(&format!("say {w}"))[1].starts_with("done "));
    }
    stop(s);
    let file = state.path().join("t.journal");
    let mut bytes = std::fs::read(&file).unwrap();
    // A byte flipped in the middle (a hand edit, a bad sector) and a torn last record.
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    bytes.extend_from_slice(b"7f3a9c01 S 9 17");
    std::fs::write(&file, &bytes).unwrap();

    let s = container(Mode::Subreaper, state.path());
    let h = history(&s, "history");
    assert!(
        !h.is_empty() && h.len() <= 3,
        "what is intact is kept: {h:?}"
    );
    let err = s.wait_stderr("journal", T10);
    assert!(err.contains("WARN"), "{err}");
    let r = s.request("say d");
    assert_eq!(r[0], "accepted 4 say", "{r:?}");
    stop(s);
}

#[test]
fn an_unwritable_state_dir_means_a_journal_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A path under a regular file cannot be a directory, even for root.
    std::fs::write(dir.path().join("file"), "").unwrap();
    let state = dir.path().join("file/state");
    let s = container(Mode::Subreaper, &state);
    let r = s.request("say m");
    assert!(r[1].starts_with("done 1 exit=0"), "{r:?}");
    let h = history(&s, "history");
    assert_eq!(h.len(), 1, "{h:?}");
    let err = s.wait_stderr("journal", T10);
    assert!(err.contains("WARN"), "{err}");
    stop(s);
}
