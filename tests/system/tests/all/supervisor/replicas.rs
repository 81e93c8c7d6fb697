//! Replicas (DESIGN.md section 10): supervisors of one service sharing a run directory and
//! a state directory, as `docker compose up --scale` gives them, each with its real
//! listener. Each claims its own instance and socket, keeps its own journal, and one live
//! replica serves the shared name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::harness::*;

const CALLBACKS: &str = r#"
CB_who() { echo "$BOSUN_INSTANCE" >> "$SHARED/ran"; }
CB_slow() { echo "$BOSUN_INSTANCE" >> "$SHARED/slow"; sleep 1000; }
"#;

/// A replica: PID 1 of its own PID namespace (killing it ends everything of it, as a
/// container's end does), the run and state directories those of `shared`.
fn replica(shared: &Path) -> Sup {
    let b = sup(Mode::Pid1)
        .with_listener()
        .env("BOSUN_RUN_DIR", shared.join("run").to_str().unwrap())
        .env("BOSUN_STATE_DIR", shared.join("state").to_str().unwrap())
        .env("SHARED", shared.to_str().unwrap())
        .cmd(&["sleep", "1000"]);
    b.file("callbacks.sh", CALLBACKS);
    b.start()
}

fn instance_socket(shared: &Path, n: u32) -> PathBuf {
    shared.join(format!("run/t.{n}-request.sock"))
}

/// The instance a `status` through `socket` names.
fn instance_of(socket: &Path) -> Option<u32> {
    std::os::unix::net::UnixStream::connect(socket).ok()?;
    let first = request(socket, "status").into_iter().next()?;
    proto::Status::parse(&first)?.instance
}

fn wait_instance(shared: &Path, n: u32) {
    wait_until(
        Duration::from_secs(15),
        &format!("instance {n} answering"),
        || (instance_of(&instance_socket(shared, n)) == Some(n)).then_some(()),
    );
}

#[test]
fn replicas_started_at_once_claim_distinct_instances_and_keep_their_own_journals() {
    let shared = tempfile::tempdir().unwrap();
    let shared = shared.path();
    // Started together: they race for the numbers.
    let _r: Vec<Sup> = (0..3).map(|_| replica(shared)).collect();
    for n in 1..=3 {
        wait_instance(shared, n);
    }
    // The shared name leads to one of them.
    let any = instance_of(&shared.join("run/t-request.sock"));
    assert!(matches!(any, Some(1..=3)), "{any:?}");
    // Each instance runs what it is sent, and says so in its own journal.
    for n in 1..=3 {
        let r = request(&instance_socket(shared, n), "who");
        assert!(r[1].starts_with("done 1 exit=0"), "{r:?}");
    }
    let mut ran: Vec<String> = std::fs::read_to_string(shared.join("ran"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    ran.sort();
    assert_eq!(ran, ["1", "2", "3"]);
    for n in 1..=3 {
        let h = request(&instance_socket(shared, n), "history");
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h[0].ends_with(&format!(" instance={n}")), "{h:?}");
    }
    for f in ["t.journal", "t.2.journal", "t.3.journal"] {
        assert!(shared.join("state").join(f).is_file(), "{f}");
    }
}

#[test]
fn a_killed_replica_is_replaced_reclaims_its_number_and_finds_its_lost_run() {
    let shared = tempfile::tempdir().unwrap();
    let shared = shared.path();
    let one = replica(shared);
    wait_instance(shared, 1);
    let two = replica(shared);
    wait_instance(shared, 2);
    let name = shared.join("run/t-request.sock");
    assert_eq!(
        instance_of(&name),
        Some(1),
        "the first one serves the shared name"
    );
    // Killed mid-run, as a container is: no cleanup at all.
    let (_conn, first) = testkit::socket::start_action(&instance_socket(shared, 1), "@k1 slow");
    assert!(first.starts_with("accepted 1 slow"), "{first}");
    wait_until(Duration::from_secs(10), "the callback going", || {
        std::fs::read_to_string(shared.join("slow")).ok()
    });
    one.signal(libc::SIGKILL);
    drop(one);
    // The other replica takes the shared name over (checked every 5 s).
    wait_until(
        Duration::from_secs(15),
        "replica 2 on the shared name",
        || (instance_of(&name) == Some(2)).then_some(()),
    );
    // A replacement takes the free number 1 (its socket file stale), and its journal: the
    // run that was going is lost, and its key is not run again.
    let _three = replica(shared);
    wait_instance(shared, 1);
    let h = request(&instance_socket(shared, 1), "history");
    assert!(
        h[0].starts_with("1 ") && h[0].contains(" exit=lost ") && h[0].ends_with(" instance=1"),
        "{h:?}"
    );
    let r = request(&instance_socket(shared, 1), "@k1 slow");
    assert!(r[0].starts_with("error lost 1"), "{r:?}");
    assert_eq!(std::fs::read_to_string(shared.join("slow")).unwrap(), "1\n");
    drop(two);
}

#[test]
fn the_health_check_in_a_replica_asks_its_own_supervisor() {
    let shared = tempfile::tempdir().unwrap();
    let shared = shared.path();
    let r: Vec<Sup> = (0..2).map(|_| replica(shared)).collect();
    for n in 1..=2 {
        wait_instance(shared, n);
    }
    // `supervisor status` run inside each replica's PID namespace (as Docker runs a
    // HEALTHCHECK) names that replica's instance, whichever holds the shared name.
    let mut seen = Vec::new();
    for s in &r {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &s.pid().to_string(), "-p", "-m", "--"])
            .arg(SUPERVISOR)
            .arg("status")
            .env("BOSUN_SERVICE", "t")
            .env("BOSUN_RUN_DIR", shared.join("run"))
            .env("BOSUN_CONFIG", shared.join("none.toml"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{text}");
        seen.push(proto::Status::parse(text.trim_end()).and_then(|st| st.instance));
    }
    seen.sort();
    assert_eq!(seen, [Some(1), Some(2)]);
}
