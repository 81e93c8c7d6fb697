//! Running as another user without the listener: the notify socket and readiness of a
//! `run_as` main process, and its supplementary groups. (The whole container as nobody and
//! the allow-list with real users: the system tests' supervisor/privilege.rs.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Sends `READY=1` to `$NOTIFY_SOCKET` from this very process, then (with `sleep`) stays.
const SEND_READY: &str = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=up\nREADY=1\n", os.environ["NOTIFY_SOCKET"])
if sys.argv[1:] == ["sleep"]:
    time.sleep(1000)
"#;

fn open_to_others(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn notify_socket_is_the_run_as_users_and_its_main_process_becomes_ready() {
    testkit::prereq::require_root("switch users");
    use std::os::unix::fs::MetadataExt;
    for mode in MODES {
        let b = sup(mode);
        open_to_others(b.dir());
        let send = b.file("send.py", SEND_READY);
        let s = b
            .env("BOSUN_READY", "notify")
            .env("BOSUN_RUN_AS", "nobody")
            .cmd(&["/usr/bin/python3", send.to_str().unwrap(), "sleep"])
            .start();
        s.wait_stderr("ready child=main", Duration::from_secs(10));
        let m = std::fs::symlink_metadata(s.path("run/.t-notify.sock")).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o600, 65534, 65534),
            "{mode:?}"
        );
    }
}

#[test]
fn ready_from_another_process_than_the_main_one_is_ignored() {
    let b = sup(Mode::Pid1);
    let send = b.file("send.py", SEND_READY);
    let go = b.dir().join("go");
    let s = b
        .env("BOSUN_READY", "notify")
        .script(&format!(
            "python3 {send} && echo sent > $T/sent; while [ ! -e {go} ]; do sleep 0.01; done; exec python3 {send} sleep",
            send = send.display(),
            go = go.display()
        ))
        .start();
    s.wait_stderr("READY=1 from another process", Duration::from_secs(10));
    s.wait_file("sent", "sent", Duration::from_secs(10));
    assert!(!s.stderr().contains("ready child=main"), "{}", s.stderr());
    // Now the main process itself (bash exec'd into python: the same pid) says it.
    std::fs::write(&go, "").unwrap();
    s.wait_stderr("ready child=main", Duration::from_secs(10));
}

/// The account the test makes: `grouped` (uid and gid 4242), which its `/etc/group` lists
/// in groups 4300 and 4301; `id -G` as it should show them.
const GROUPED: &str = "grouped";
const GROUPED_IDS: &str = "4242 4300 4301";

/// Runs the supervisor in a mount namespace of its own where the test's passwd and group
/// files (with [`GROUPED`] in them) are bind-mounted over /etc's, so that the account exists
/// whatever the machine's files hold.
fn with_own_accounts(c: &mut Command, dir: &Path) {
    let passwd = dir.join("passwd");
    let group = dir.join("group");
    let mut users = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    users.push_str("grouped:x:4242:4242::/nonexistent:/bin/sh\n");
    let mut groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups.push_str("grouped:x:4242:\ngrouped-a:x:4300:grouped\ngrouped-b:x:4301:nobody,grouped\n");
    std::fs::write(&passwd, users).unwrap();
    std::fs::write(&group, groups).unwrap();
    let mut n = testkit::process::private_mounts(&format!(
        "mount --bind {} /etc/passwd && mount --bind {} /etc/group",
        passwd.display(),
        group.display()
    ));
    n.arg(c.get_program())
        .args(c.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    testkit::process::copy_env(c, &mut n);
    *c = n;
}

#[test]
fn run_as_gets_the_users_supplementary_groups() {
    testkit::prereq::require_root("switch users and bind-mount /etc/passwd");
    let (user, want) = (GROUPED, GROUPED_IDS);
    // Dropped in the child itself, and by `supervisor --exec-as` after a setup script.
    for setup in [false, true] {
        let b = sup(Mode::Subreaper);
        let b = if setup {
            let p = b.file("setup.sh", "echo setup ran\n");
            b.env("BOSUN_SETUP", p.to_str().unwrap())
        } else {
            b
        };
        let dir = b.dir().to_path_buf();
        let s = b
            .env("BOSUN_RUN_AS", user)
            .cmd(&["sh", "-c", "echo groups=$(id -G)"])
            .start_with(|c| with_own_accounts(c, &dir));
        let out = s.wait_stdout("groups=", Duration::from_secs(10));
        assert!(
            out.contains(&format!("groups={want}\n")),
            "setup={setup}: {user} should have {want}: {out}"
        );
    }
}
