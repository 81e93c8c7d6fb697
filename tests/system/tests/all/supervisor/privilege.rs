//! Running the whole container as a non-root user (compose `user:`): socket, listener,
//! callbacks and reaping still work; and the socket's allow-list with real uids.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::harness::*;

/// Runs `argv` as uid/gid 65534 (nobody).
fn as_nobody(argv: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv);
    c
}

#[test]
fn the_whole_container_as_nobody() {
    testkit::prereq::require_root("switch users");
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
    testkit::prereq::require_root("switch users");
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
