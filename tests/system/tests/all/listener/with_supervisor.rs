//! The listener under the real supervisor (not the harness's stand-in): the settings it
//! gets are the ones the supervisor validated and handed on (`Settings::to_env`), so what
//! is checked here is the whole path from `service.toml` or `BOSUN_*` to the listener's
//! behaviour, and the supervisor's refusal of bad values before anything starts.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testkit::socket::{read_all, read_line, request};
use testkit::{process::run_client, socket::start_action, wait_until, Proc, DEADLINE};

/// The callbacks these tests use.
const CALLBACKS: &str = r#"
CB_hello() { echo hello; }
CB_slow() { echo "slow-start"; sleep "${1:-30}"; echo "slow-end"; }
"#;

/// One supervisor (service `t`) with the real listener, in its own temp dir.
struct Sup {
    dir: tempfile::TempDir,
    proc: Proc,
}

/// The supervisor's command: everything in `dir`, `sleep` as the main process.
fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(crate::SUPERVISOR);
    c.args(["--", "sleep", "1000"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BOSUN_SERVICE", "t")
        .env("BOSUN_RUN_DIR", dir.join("run"))
        .env("BOSUN_STATE_DIR", dir.join("state"))
        .env("BOSUN_CONFIG", dir.join("service.toml"))
        .env("BOSUN_SETUP", "")
        .env("BOSUN_CALLBACKS", dir.join("callbacks.sh"))
        .env("BOSUN_LISTENER", crate::LISTENER)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

impl Sup {
    /// Starts it with `toml` as its service.toml and `env` on top; waits until its
    /// request socket answers `ping`.
    fn start(toml: &str, env: &[(&str, &str)]) -> Sup {
        let s = spawn(toml, env);
        let pong = || {
            let mut c = UnixStream::connect(s.socket()).ok()?;
            c.set_read_timeout(Some(DEADLINE)).ok()?;
            c.write_all(b"ping\n").ok()?;
            (read_all(&mut c) == ["pong"]).then_some(())
        };
        // The socket is made by another process: nothing to block on until it answers.
        wait_until(DEADLINE, "the supervisor to answer ping", pong);
        s
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/t-request.sock")
    }

    /// Lets any uid reach the socket, so that the listener's allow-list is the only gate.
    fn open_to_all(&self) {
        for p in [self.dir.path(), &self.dir.path().join("run")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(self.socket(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- supervisor log ---\n{}--- end ---",
                self.proc.stderr.text()
            );
        }
        self.proc.stop(DEADLINE);
    }
}

/// Starts the supervisor in a fresh directory with `toml` as its service.toml, the test's
/// callbacks and `env` on top, its stderr read.
fn spawn(toml: &str, env: &[(&str, &str)]) -> Sup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("service.toml"), toml).unwrap();
    std::fs::write(dir.path().join("callbacks.sh"), CALLBACKS).unwrap();
    let proc = Proc::spawn(&mut command(dir.path(), env));
    Sup { dir, proc }
}

/// Runs the supervisor to its exit (bad settings: at once); returns (status, stderr).
fn refused(toml: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut s = spawn(toml, env);
    let st = s.proc.wait(DEADLINE);
    s.proc.join_output(DEADLINE);
    assert!(!s.socket().exists(), "nothing is started on bad settings");
    (st, s.proc.stderr.text())
}

#[test]
fn a_bad_replay_wait_or_max_connections_stops_the_supervisor_with_one_line() {
    let (st, err) = refused("", &[("BOSUN_REPLAY_WAIT", "soon")]);
    assert_eq!(st.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("supervisor: BOSUN_REPLAY_WAIT: \"soon\" is not a duration"),
        "{err}"
    );
    let (st, err) = refused("", &[("BOSUN_MAX_CONNECTIONS", "0")]);
    assert_eq!(st.code(), Some(125), "{err}");
    assert_eq!(
        err.trim_end(),
        "supervisor: BOSUN_MAX_CONNECTIONS: \"0\" is not a whole number of at least 1"
    );
    // In the file: where it is, both at once.
    let (st, err) = refused(
        "# limits\nreplay_wait = \"soon\"\nmax_connections = \"lots\"\n",
        &[],
    );
    assert_eq!(st.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("service.toml:2:15: replay_wait: \"soon\" is not a duration"),
        "{err}"
    );
    assert!(
        err.contains("service.toml:3:19: max_connections: \"lots\" is not a whole number"),
        "{err}"
    );
}

#[test]
fn replay_wait_and_max_connections_reach_the_listener_from_service_toml() {
    // Only the file says so: the listener can know it only through the supervisor.
    let s = Sup::start(
        "replay_wait = \"1s\"\nmax_connections = 3\nread_timeout = \"30s\"\nlistener_start = \"boot\"\n",
        &[],
    );
    let (_first, accepted) = start_action(&s.socket(), "@k slow 30");
    assert_eq!(accepted, "accepted 1 slow");
    let t0 = Instant::now();
    let (mut waiter, line) = start_action(&s.socket(), "@k slow 30");
    assert_eq!(line, "accepted 1 slow");
    assert_eq!(read_line(&mut waiter), "error busy slow still running as 1");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "replay_wait = 1s, waited {waited:?}"
    );
    drop(waiter);
    // Three places: the running action's client holds one, two stalled clients the rest.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut c = UnixStream::connect(s.socket()).unwrap();
        c.write_all(b"pi").unwrap();
        stalled.push(c);
    }
    // The stalled clients are counted once the listener has accepted them, in another
    // process: asked again until it has.
    let refused = wait_until(DEADLINE, "a refusal", || {
        let r = request(&s.socket(), b"ping\n");
        (r != ["pong"]).then_some(r)
    });
    assert!(
        refused[0].starts_with("error too-many 3 connections are open"),
        "{refused:?}"
    );
}

#[test]
fn allow_gids_matches_a_supplementary_group() {
    testkit::prereq::require_root("run clients as other uids and groups");
    // 4242:4242, in 4343 or not; only 4343 is allowed. The socket is open to all.
    let s = Sup::start("", &[("BOSUN_ALLOW_GIDS", "4343")]);
    s.open_to_all();
    let target = format!("UNIX-CONNECT:{}", s.socket().display());
    let client = |groups: &str| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=4242", "--regid=4242"]);
        if groups.is_empty() {
            c.arg("--clear-groups");
        } else {
            c.arg(format!("--groups={groups}"));
        }
        c.args(["socat", "-", &target]);
        c
    };
    // In the group: served (the action runs: this goes through the listener).
    let (st, out) = run_client(&mut client("4000,4343"), b"hello\n");
    assert!(st.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("accepted ")),
        "{out}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("done ") && l.contains("exit=0")),
        "{out}"
    );
    // Not in it: denied, by another group or by none.
    for groups in ["4000,4344", ""] {
        let (_, out) = run_client(&mut client(groups), b"hello\n");
        assert!(
            out.starts_with("error denied uid 4242 gid 4242 "),
            "groups {groups:?}: {out}"
        );
    }
    // The primary group still counts.
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=4242",
        "--regid=4343",
        "--clear-groups",
        "socat",
        "-",
        &target,
    ]);
    let (_, out) = run_client(&mut c, b"hello\n");
    assert!(out.starts_with("accepted "), "{out}");
}
