//! Running the whole container as a non-root user (compose `user:`): socket, listener,
//! callbacks and reaping still work; and the socket's allow-list with real uids.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Runs `argv` as uid/gid 65534 (nobody).
fn as_nobody(argv: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv);
    c
}

#[test]
fn the_whole_container_as_nobody() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let b = sup(Mode::Pid1).with_listener();
    b.file("callbacks.sh", "CB_whoami() { echo \"uid=$(id -u)\"; }\n");
    std::fs::set_permissions(b.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // unshare (root) makes the namespaces, then the supervisor runs as nobody: PID 1
    // without any privilege, as with compose's `user: "65534"`.
    let base = b.command();
    let mut c = Command::new("unshare");
    c.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ])
    .arg(SUPERVISOR)
    .args([
        "--",
        "bash",
        "-c",
        "for i in $(seq 50); do ( sh -c 'exit 0' & ); done; exec sleep 1000",
    ]);
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = b.dir().join("run/t-request.sock");
    wait_until(Duration::from_secs(15), "socket", || {
        std::os::unix::net::UnixStream::connect(&sock).ok()
    });
    let meta = std::fs::metadata(&sock).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        meta.uid(),
        65534,
        "the socket belongs to the container's user"
    );
    // Its owner can use it (root can too); the action runs as nobody.
    let out = as_nobody(&[
        "socat",
        "-t",
        "10",
        "-",
        &format!("UNIX-CONNECT:{}", sock.display()),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .and_then(|mut p| {
        use std::io::Write;
        p.stdin.take().unwrap().write_all(b"whoami\n")?;
        p.wait_with_output()
    })
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("accepted 1 whoami\ndone 1 exit=0"),
        "{text}"
    );
    // unshare does not pass TERM on: stop the supervisor itself (unshare's child).
    let outer = child.id();
    let sup_pid = wait_until(Duration::from_secs(5), "the supervisor's pid", || {
        std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
    });
    let _ = Command::new("kill").arg(&sup_pid).status();
    let st = child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("[whoami#1] uid=65534"), "{err}");
    assert!(st.code().is_some(), "{err}");
}

#[test]
fn the_allow_list_with_real_users() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let b = sup(Mode::Subreaper).with_listener();
    b.file("callbacks.sh", "CB_noop() { :; }\n");
    // Mode 0666 so that the socket's mode is not what stops nobody: the allow-list is.
    let s = b
        .env("BOSUN_SOCKET_MODE", "0666")
        .env("BOSUN_ALLOW_UIDS", "0")
        .cmd(&["sleep", "1000"])
        .start();
    s.wait_socket();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |argv: Vec<String>| {
        let mut p = as_nobody(&argv.iter().map(String::as_str).collect::<Vec<_>>())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        p.stdin.take().unwrap().write_all(b"ping\n").unwrap();
        String::from_utf8_lossy(&p.wait_with_output().unwrap().stdout).into_owned()
    };
    let denied = run(vec![
        "socat".into(),
        "-t".into(),
        "10".into(),
        "-".into(),
        format!("UNIX-CONNECT:{}", s.socket().display()),
    ]);
    assert!(denied.starts_with("error denied"), "{denied}");
    assert_eq!(s.request("ping"), vec!["pong"], "root is on the list");
}

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
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
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

/// An account of this machine that `/etc/group` lists as a member of some group (postgres,
/// a member of ssl-cert, on the CI image): (name, `id -G` it should get).
fn user_with_supplementary_groups() -> Option<(String, String)> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let (name, gid) = (f.first()?, f.get(3)?);
        let extra = common::passwd::member_of(&groups, name);
        if extra.is_empty() || *name == "root" {
            return None;
        }
        let mut all = vec![gid.to_string()];
        all.extend(extra.iter().map(u32::to_string).filter(|g| g != gid));
        Some((name.to_string(), all.join(" ")))
    })
}

#[test]
fn run_as_gets_the_users_supplementary_groups() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let Some((user, want)) = user_with_supplementary_groups() else {
        eprintln!("skipped: no user here is listed in a group");
        return;
    };
    // Dropped in the child itself, and by `supervisor --exec-as` after a setup script.
    for setup in [false, true] {
        let b = sup(Mode::Subreaper);
        let b = if setup {
            let p = b.file("setup.sh", "echo setup ran\n");
            b.env("BOSUN_SETUP", p.to_str().unwrap())
        } else {
            b
        };
        let s = b
            .env("BOSUN_RUN_AS", &user)
            .cmd(&["sh", "-c", "echo groups=$(id -G)"])
            .start();
        let out = s.wait_stdout("groups=", Duration::from_secs(10));
        assert!(
            out.contains(&format!("groups={want}\n")),
            "setup={setup}: {user} should have {want}: {out}"
        );
    }
}
