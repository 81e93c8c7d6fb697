//! Replica targets (DESIGN.md section 10) against socket peers standing in for replicas:
//! `php@each` fans out once per instance socket listed at fire time, with one key per
//! instance; an instance whose socket is stale is missed alone; one that appears after a
//! fire runs from the next; `php.2` reaches that instance only; `php` falls back to a live
//! instance; `scheduler send` does the same and its exit code says whether all succeeded.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use crate::support::{bin, peer, recv, setup, Answer, Daemon, Peer};

const SHORT: Duration = Duration::from_secs(10);

/// Peers on `php.<n>-request.sock` for each `(n, answer)`.
fn replicas(dir: &Path, answers: &[(u32, Answer)]) -> Vec<(u32, Peer)> {
    answers
        .iter()
        .map(|(n, a)| (*n, peer(dir, &format!("php.{n}"), *a)))
        .collect()
}

/// A socket file nobody answers on: a replica killed without removing it.
fn stale(dir: &Path, name: &str) {
    drop(UnixListener::bind(dir.join(format!("{name}-request.sock"))).unwrap());
}

fn status(file: &Path, state: &Path) -> (i32, String) {
    let o = bin()
        .arg("status")
        .arg(file)
        .env("BOSUN_STATE_DIR", state)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Expected: one request per instance, each keyed `<fire key>:<n>` (one fire key), one
/// `done` per instance in the log, and `scheduler status` one line per instance
/// (`php.1`, `php.2`, `php.10`), each `ok`; the `instance` label in the metrics.
#[test]
fn each_runs_once_per_instance_with_its_own_key_record_and_status_line() {
    let (dir, file, run_dir) = setup("@reboot php@each rotate-logs\n");
    let peers = replicas(
        dir.path(),
        &[
            (1, Answer::Done(0)),
            (2, Answer::Done(0)),
            (10, Answer::Done(0)),
        ],
    );
    let state = dir.path().join("state");
    let metrics = dir.path().join("m.prom");
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", &run_dir),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
            ("BOSUN_METRICS_FILE", metrics.to_str().unwrap()),
        ],
    );
    for (n, p) in &peers {
        assert_eq!(recv(&p.requests, SHORT), "rotate-logs");
        d.wait_for(&["done", &format!("service=php.{n} ")], SHORT);
    }
    let mut bases = std::collections::BTreeSet::new();
    for (n, p) in &peers {
        let keys = p.keys();
        assert_eq!(keys.len(), 1, "php.{n}: {keys:?}");
        let base = keys[0]
            .strip_suffix(&format!(":{n}"))
            .unwrap_or_else(|| panic!("php.{n}: key {} without :{n}", keys[0]));
        bases.insert(base.to_string());
    }
    assert_eq!(bases.len(), 1, "one fire key: {bases:?}");
    let want = "bosun_schedule_last_exit_code{service=\"php\",action=\"rotate-logs\",user=\"\",instance=\"10\"} 0";
    crate::support::wait_file(&metrics, SHORT, |t| t.contains(want));
    assert_eq!(d.stop(), 0);
    let (code, out) = status(&file, &state);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (line, n) in lines.iter().zip([1, 2, 10]) {
        assert!(
            line.contains(&format!(":1 php.{n} rotate-logs user=- "))
                && line.contains(" result=ok exit=0 "),
            "{out}"
        );
    }
    assert_eq!(code, 0, "{out}");
    // Nothing more was sent (every instance ran the fire once).
    for (n, p) in &peers {
        assert!(
            p.requests.try_recv().is_err(),
            "php.{n} got a second request"
        );
    }
}

/// Expected: an instance listed at fire time whose socket refuses (its replica went away
/// between the listing and the delivery) is retried within the window, then recorded
/// `missed` for that instance alone, its ON_FAILURE told with SERVICE `php.2`; the others
/// run. An instance that appears after the fire is not part of it, and runs from the next
/// fire (here: the next start's `@reboot`).
#[test]
fn a_stale_instance_is_missed_alone_and_a_new_one_joins_from_the_next_fire() {
    let text = "ON_FAILURE=ops notify\n@reboot php@each rotate-logs\n";
    let (dir, file, run_dir) = setup(text);
    let ops = peer(dir.path(), "ops", Answer::Done(0));
    let peers = replicas(dir.path(), &[(1, Answer::Done(0))]);
    stale(dir.path(), "php.2");
    let state = dir.path().join("state");
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ("BOSUN_RETRY_WINDOW", "1s"),
    ];
    let mut d = Daemon::start(&file, &envs);
    assert_eq!(recv(&peers[0].1.requests, SHORT), "rotate-logs");
    d.wait_for(&["done", "service=php.1 "], SHORT);
    // Appears after the fire.
    let late = peer(dir.path(), "php.3", Answer::Done(0));
    d.wait_for(&["missed", "service=php.2 "], SHORT);
    assert_eq!(
        recv(&ops.requests, SHORT),
        "notify php.2 rotate-logs - missed - -"
    );
    assert_eq!(d.stop(), 0);
    assert!(
        late.requests.try_recv().is_err(),
        "php.3 was not listed at the fire"
    );
    let (code, out) = status(&file, &state);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(" php.1 rotate-logs user=- ") && out.contains(" result=ok "),
        "{out}"
    );
    assert!(
        out.contains(" php.2 rotate-logs user=- ") && out.contains(" result=missed "),
        "{out}"
    );
    assert!(!out.contains("php.3"), "{out}");

    // The next fire: php.3 is listed now and runs; php.2 is still stale.
    let mut d = Daemon::start(&file, &envs);
    assert_eq!(recv(&late.requests, SHORT), "rotate-logs");
    d.wait_for(&["done", "service=php.3 "], SHORT);
    d.wait_for(&["missed", "service=php.2 "], SHORT);
    assert_eq!(d.stop(), 0);
    let (_, out) = status(&file, &state);
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// Expected: a fire that finds no instance socket at all is recorded `missed` on the line
/// (`php@each` in status), at once.
#[test]
fn a_fire_with_no_instance_is_missed_on_the_line() {
    let (dir, file, run_dir) = setup("@reboot php@each rotate-logs\n");
    let state = dir.path().join("state");
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", &run_dir),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    d.wait_for(&["missed: no instance socket", "service=php@each"], SHORT);
    assert_eq!(d.stop(), 0);
    let (code, out) = status(&file, &state);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(" php@each rotate-logs user=- ") && out.contains("result=missed"),
        "{out}"
    );
}

/// Expected: `php.2` goes to instance 2 only; `php` goes to the shared socket when there
/// is one, and to a live instance when there is none (here php.1's socket is stale, so
/// php.2).
#[test]
fn one_instance_and_any_replica() {
    let (dir, file, run_dir) = setup("@reboot php.2 a\n@reboot php b\n");
    stale(dir.path(), "php.1");
    let two = peer(dir.path(), "php.2", Answer::Done(0));
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    let mut got = vec![recv(&two.requests, SHORT), recv(&two.requests, SHORT)];
    got.sort();
    assert_eq!(got, ["a", "b"]);
    d.wait_for(&["done", "service=php.2 "], SHORT);
    d.wait_for(&["done", "service=php "], SHORT);
    assert_eq!(d.stop(), 0);
    // With a shared socket, `php` goes there.
    let shared = peer(dir.path(), "php", Answer::Done(0));
    let o = bin()
        .args(["send", "php", "x"])
        .env("BOSUN_RUN_DIR", &run_dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(recv(&shared.requests, SHORT), "x");
    assert!(two.requests.try_recv().is_err());
}

/// Expected: a `php` fire accepted by the replica behind the shared name, whose
/// connection is then lost, is asked again at that replica's own socket (whose journal
/// knows its key), not through the shared name, which by then leads to another replica
/// that would run it again.
#[test]
fn any_replica_asks_again_where_it_was_accepted() {
    let (dir, file, run_dir) = setup("@reboot php rotate-logs\n");
    let one = peer(dir.path(), "php.1", Answer::Done(0));
    let two = peer(dir.path(), "php.2", Answer::DropAfterAccepted(1));
    let shared = dir.path().join("php-request.sock");
    std::fs::hard_link(dir.path().join("php.2-request.sock"), &shared).unwrap();
    let mut d = Daemon::start(&file, &[("BOSUN_RUN_DIR", &run_dir)]);
    assert_eq!(recv(&two.requests, SHORT), "rotate-logs");
    // The shared name now leads elsewhere (here: nowhere, so `php` would fall back to
    // php.1); the retry comes after a 250 ms pause.
    std::fs::remove_file(&shared).unwrap();
    assert_eq!(recv(&two.requests, SHORT), "rotate-logs");
    d.wait_for(&["pinned", "instance=2"], SHORT);
    d.wait_for(&["done", "service=php ", "exit=0"], SHORT);
    assert_eq!(d.stop(), 0);
    assert!(one.requests.try_recv().is_err(), "asked again at php.1");
    let keys = two.keys();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
}

/// Expected: `scheduler send php@each` sends to every live instance at once, prints each
/// one's replies prefixed `php.<n>: `, and exits 0 when all ended `exit=0`, else the
/// first non-zero code in instance order; a stale instance is said on stderr and not
/// counted; 69 when no instance is live. `--key K` sends `K:<n>` to instance n.
#[test]
fn send_each_prints_per_instance_and_says_whether_all_succeeded() {
    let (dir, _file, run_dir) = setup("");
    let send = |args: &[&str]| {
        let o = bin()
            .arg("send")
            .args(args)
            .env("BOSUN_RUN_DIR", &run_dir)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = send(&["php@each", "rotate-logs"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("no live instance of php"), "{err}");
    assert_eq!(send(&["php@all", "x"]).0, 64);
    assert_eq!(send(&["php.01", "x"]).0, 64);

    let peers = replicas(
        dir.path(),
        &[
            (1, Answer::Done(0)),
            (2, Answer::Done(3)),
            (3, Answer::Done(5)),
        ],
    );
    stale(dir.path(), "php.4");
    let (code, out, err) = send(&["--key", "k1", "php@each", "rotate-logs"]);
    assert_eq!(code, 3, "{out}{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "php.1: accepted 1 rotate-logs",
            "php.1: done 1 exit=0 secs=0.001",
            "php.2: accepted 1 rotate-logs",
            "php.2: done 1 exit=3 secs=0.001",
            "php.3: accepted 1 rotate-logs",
            "php.3: done 1 exit=5 secs=0.001",
        ]
    );
    assert!(err.contains("php.4: not live"), "{err}");
    for (n, p) in &peers {
        assert_eq!(recv(&p.requests, SHORT), "rotate-logs");
        assert_eq!(p.keys(), [format!("k1:{n}")]);
    }
    // One instance: that one only.
    let (code, out, _) = send(&["php.3", "rotate-logs"]);
    assert_eq!(
        (code, out.as_str()),
        (5, "accepted 2 rotate-logs\ndone 2 exit=5 secs=0.001\n")
    );
    assert_eq!(recv(&peers[2].1.requests, SHORT), "rotate-logs");
    assert!(peers[0].1.requests.try_recv().is_err());
    // A stale instance named alone: 69.
    assert_eq!(send(&["php.4", "rotate-logs"]).0, 69);
}
