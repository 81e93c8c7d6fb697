//! `CONCURRENCY=` and `TIMEOUT=` end to end (issue 22): the real daemon firing at a real
//! service (supervisor and listener of this build) whose callbacks sleep. What ran, and in
//! which order, is read from the callbacks' own file; what the scheduler made of it from
//! its log and its record (`scheduler status --json`).
//!
//! Two fires of one line come fast this way: the line's last fire is recorded ten minutes
//! ago, so the daemon catches one up at once, and the line fires again at the next minute
//! (so these tests take up to a minute each, waiting on events, never on a fixed sleep).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::service::Service;
use super::support::Daemon;
use crate::SCHEDULER;
use testkit::wait_until;

const SHORT: Duration = Duration::from_secs(30);
/// Up to the next minute's fire, with room.
const MINUTE: Duration = Duration::from_secs(75);

/// `CB_job`: writes `start ID` to `log`, waits until the file `go` exists (a run that
/// never gets it runs until stopped), writes `end ID`.
fn callbacks(log: &Path, go: &Path) -> String {
    format!(
        "CB_job() {{ echo \"start $BOSUN_REQUEST_ID\" >> '{log}'; while [ ! -e '{go}' ]; do sleep 0.05; done; echo \"end $BOSUN_REQUEST_ID\" >> '{log}'; }}\n",
        log = log.display(),
        go = go.display()
    )
}

/// The lines the callbacks wrote, once they satisfy `ok`.
fn wait_log(log: &Path, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    wait_until(SHORT, what, || {
        let lines: Vec<String> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        ok(&lines).then_some(lines)
    })
}

/// A service `svc` with [`callbacks`], a schedule `text` whose one line's last fire was
/// ten minutes ago, and the daemon on it.
struct Setup {
    _dir: tempfile::TempDir,
    svc: Service,
    daemon: Daemon,
    file: PathBuf,
    state: PathBuf,
    log: PathBuf,
    go: PathBuf,
}

fn setup(text: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran");
    let go = dir.path().join("go");
    let svc = Service::start(dir.path(), "svc", &callbacks(&log, &go), "job");
    let run_dir = svc.socket.parent().unwrap().to_path_buf();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, text).unwrap();
    let state = dir.path().join("state");
    let schedule = scheduler::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC).unwrap();
    let store = scheduler::state::StateStore::open(&state).unwrap();
    let ten_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
    for e in &schedule.entries {
        store.record(&e.key(), ten_ago).unwrap();
    }
    let daemon = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", run_dir.to_str().unwrap()),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    Setup {
        _dir: dir,
        svc,
        daemon,
        file,
        state,
        log,
        go,
    }
}

/// [`setup`], then waits until the daemon's catch-up fire has started run 1 (which waits
/// for `go`): the policy tests' common start.
fn first_run_going(text: &str) -> Setup {
    let mut s = setup(text);
    s.daemon.wait_for(&["reason=catch-up"], SHORT);
    wait_log(&s.log, "the first run to start", |l| l == ["start 1"]);
    s
}

impl Setup {
    /// `scheduler status --json`'s output.
    fn status(&self) -> String {
        let o = Command::new(SCHEDULER)
            .arg("status")
            .arg(&self.file)
            .arg("--json")
            .env("BOSUN_STATE_DIR", &self.state)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// Expected: under `CONCURRENCY=replace`, the next minute's fire finds the caught-up run
/// still going, sends `cancel ID` for it, and runs once that run has ended: the old run
/// ends as its `done` says (failed, exit 143, TERM), never reaching its end; the new one
/// runs; the record has both.
#[test]
fn replace_cancels_the_running_run_then_runs_the_new_one() {
    let mut s = first_run_going("CONCURRENCY=replace\n* * * * * svc job\n");
    s.daemon.wait_for(
        &["replace: cancelling the running run of this line", "id=1"],
        MINUTE,
    );
    s.daemon
        .wait_for(&["cancel answered", "cancelled id=1 exit=143"], SHORT);
    s.daemon
        .wait_for(&["done: action failed", "id=1", "exit=143"], SHORT);
    s.daemon.wait_for(
        &["held fire goes: the previous run of its line has ended"],
        SHORT,
    );
    let lines = wait_log(&s.log, "the new run to start", |l| l.len() >= 2);
    assert_eq!(lines, ["start 1", "start 2"], "run 1 never reached its end");
    // The new run is the service's run 2, and goes on until told.
    s.daemon.wait_for(&["accepted", "id=2"], SHORT);
    std::fs::write(&s.go, "").unwrap();
    s.daemon.wait_for(&["done", "id=2", "exit=0"], SHORT);
    let json = s.status();
    assert!(
        json.contains("\"result\":\"failed\",\"exit\":143,")
            && json.contains("\"result\":\"ok\",\"exit\":0,"),
        "{json}"
    );
    let history = s.svc.request("history job");
    assert!(
        history.contains("1 ") && history.contains(" exit=143 "),
        "{history}"
    );
    assert_eq!(s.daemon.stop(), 0);
}

/// Expected: under `CONCURRENCY=queue`, the next minute's fire is held while the
/// caught-up run goes on (nothing new starts), and runs once it has ended, after it.
#[test]
fn queue_holds_the_fire_until_the_previous_run_ends() {
    let mut s = first_run_going("CONCURRENCY=queue\n* * * * * svc job\n");
    s.daemon.wait_for(
        &["queued: runs when the previous run of this line ends"],
        MINUTE,
    );
    // Held: the service was not asked (its only run is still run 1).
    let status = s.svc.request("status");
    assert!(status.contains("action job id=1 "), "{status}");
    assert_eq!(
        std::fs::read_to_string(&s.log).unwrap().lines().count(),
        1,
        "nothing new started while held"
    );
    std::fs::write(&s.go, "").unwrap();
    s.daemon.wait_for(
        &["held fire goes: the previous run of its line has ended"],
        SHORT,
    );
    let lines = wait_log(&s.log, "both runs to end", |l| l.len() >= 4);
    assert_eq!(lines, ["start 1", "end 1", "start 2", "end 2"]);
    s.daemon.wait_for(&["done", "id=2", "exit=0"], SHORT);
    assert_eq!(s.daemon.stop(), 0);
}

/// Expected: under the default `forbid`, the next minute's fire is skipped and logged with
/// why; the running one is left alone.
#[test]
fn forbid_skips_and_leaves_the_running_one_alone() {
    let mut s = first_run_going("* * * * * svc job\n");
    s.daemon.wait_for(
        &[
            "skipped: the previous run of this line has not finished",
            "CONCURRENCY=forbid",
        ],
        MINUTE,
    );
    std::fs::write(&s.go, "").unwrap();
    let lines = wait_log(&s.log, "run 1 to end", |l| l.len() >= 2);
    assert_eq!(lines, ["start 1", "end 1"]);
    assert!(s.status().contains("\"result\":\"skipped\""));
    assert_eq!(s.daemon.stop(), 0);
}

/// Expected: `TIMEOUT=` goes with the request as `timeout=`; the service stops the run at
/// that time (TERM to its group) and reports `exit=124`, which the scheduler records as
/// failed with that exit.
#[test]
fn timeout_stops_the_run_and_is_recorded_failed_124() {
    let mut s = setup("TIMEOUT=1s\n@reboot svc job\n");
    s.daemon
        .wait_for(&["request", "timeout=1s job", "reason=reboot"], SHORT);
    s.daemon
        .wait_for(&["done: action failed", "exit=124"], SHORT);
    let lines = wait_log(&s.log, "the run to start", |l| !l.is_empty());
    assert_eq!(lines, ["start 1"], "stopped before its end");
    let json = s.status();
    assert!(
        json.contains("\"result\":\"failed\",\"exit\":124,"),
        "{json}"
    );
    let history = s.svc.request("history job");
    assert!(history.contains(" exit=124 "), "{history}");
    assert_eq!(s.daemon.stop(), 0);
}

/// Expected: `scheduler check` reports a bad `CONCURRENCY=` or `TIMEOUT=` as
/// FILE:LINE:COL and exits 1; good ones pass.
#[test]
fn check_reports_bad_concurrency_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(
        &file,
        "CONCURRENCY=parallel\nTIMEOUT=forever\n@daily svc job\n",
    )
    .unwrap();
    let o = Command::new(SCHEDULER)
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let f = file.display();
    assert!(
        out.contains(&format!("{f}:1:13: unknown CONCURRENCY= `parallel`")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{f}:2:9: TIMEOUT= `forever` is not a positive duration"
        )),
        "{out}"
    );
    std::fs::write(
        &file,
        "CONCURRENCY=queue\nTIMEOUT=90m\n@daily svc job\nCONCURRENCY=replace\n@daily svc other\n",
    )
    .unwrap();
    let o = Command::new(SCHEDULER)
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

/// Expected (DESIGN.md section 10): with an `@each` target the policy is per instance.
/// Two real replicas of `php` each run the caught-up fire; replica 1's run ends, replica
/// 2's does not. Under `CONCURRENCY=replace`, the next minute's fire runs at once in
/// replica 1 (nothing to replace there) and in replica 2 cancels that replica's own run
/// (its id, at its own socket) first: replica 1's first run reached its end, replica 2's
/// was stopped, and each then ran the new fire once.
#[test]
fn each_instance_has_its_own_slot() {
    use testkit::supervisor::{Bins, Builder, Mode};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let run = root.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let cbs = format!(
        "CB_job() {{ echo \"start $BOSUN_REQUEST_ID\" >> '{r}/ran.'\"$BOSUN_INSTANCE\"; while [ ! -e '{r}/go.'\"$BOSUN_INSTANCE\" ]; do sleep 0.05; done; echo \"end $BOSUN_REQUEST_ID\" >> '{r}/ran.'\"$BOSUN_INSTANCE\"; }}\n",
        r = root.display()
    );
    std::fs::write(root.join("callbacks.sh"), cbs).unwrap();
    let _replicas: Vec<_> = (1..=2)
        .map(|n: u32| {
            let s = Builder::new(
                Bins {
                    supervisor: crate::SUPERVISOR,
                    listener: Some(crate::LISTENER),
                },
                Mode::Pid1,
            )
            .with_listener()
            .env("BOSUN_SERVICE", "php")
            .env("BOSUN_INSTANCE", &n.to_string())
            .env("BOSUN_RUN_DIR", run.to_str().unwrap())
            .env("BOSUN_STATE_DIR", root.join("svc-state").to_str().unwrap())
            .env(
                "BOSUN_CALLBACKS",
                root.join("callbacks.sh").to_str().unwrap(),
            )
            .cmd(&["sleep", "100000"])
            .start();
            let sock = run.join(format!("php.{n}-request.sock"));
            wait_until(SHORT, "the replica's socket", || {
                testkit::socket::listening(&sock).then_some(())
            });
            s
        })
        .collect();
    let text = "CONCURRENCY=replace\n* * * * * php@each job\n";
    let file = root.join("schedule.cron");
    std::fs::write(&file, text).unwrap();
    let state = root.join("state");
    let schedule = scheduler::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC).unwrap();
    scheduler::state::StateStore::open(&state)
        .unwrap()
        .record(
            &schedule.entries[0].key(),
            chrono::Utc::now() - chrono::Duration::minutes(10),
        )
        .unwrap();
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", run.to_str().unwrap()),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    let ran = |n: u32| root.join(format!("ran.{n}"));
    for n in [1, 2] {
        wait_log(&ran(n), "the caught-up run to start", |l| l == ["start 1"]);
    }
    std::fs::write(root.join("go.1"), "").unwrap();
    wait_log(&ran(1), "replica 1's run to end", |l| l.len() == 2);
    d.wait_for(
        &[
            "replace: cancelling the running run of this line",
            "service=php.2",
            "id=1",
        ],
        MINUTE,
    );
    d.wait_for(&["cancel answered", "cancelled id=1 exit=143"], SHORT);
    // Replica 1 ran the new fire at once and to its end (its go file is there).
    let one = wait_log(&ran(1), "replica 1's second run", |l| l.len() >= 4);
    assert_eq!(one, ["start 1", "end 1", "start 2", "end 2"]);
    // Replica 2's first run was stopped, never reaching its end; the new one started.
    let two = wait_log(&ran(2), "replica 2's second run", |l| l.len() >= 2);
    assert_eq!(two, ["start 1", "start 2"]);
    assert!(
        !d.seen
            .iter()
            .any(|l| l.contains("replace: cancelling") && l.contains("service=php.1")),
        "replica 1's run was not replaced: it had ended"
    );
    std::fs::write(root.join("go.2"), "").unwrap();
    wait_log(&ran(2), "replica 2's second run to end", |l| l.len() >= 3);
    assert_eq!(d.stop(), 0);
}
