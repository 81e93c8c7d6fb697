//! SO_PEERCRED logging and the uid/gid allow-list.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::harness::*;

#[test]
fn requests_are_logged_with_peer_credentials() {
    let l = Listener::start(Opts::default()).ready();
    l.request(b"forum ping\n");
    let me = nix::unistd::getuid().as_raw();
    let line = l.log.wait("request log", |s| {
        s.contains("request") && s.contains("action=ping")
    });
    assert!(line.contains(&format!("uid={me}")), "{line}");
    assert!(
        line.contains(&format!("pid={}", std::process::id())),
        "{line}"
    );
    assert!(line.contains("user=forum"), "{line}");
}

#[test]
fn allow_list_denies_others() {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        // Not root: an allow-list without us denies us.
        let l = Listener::start(Opts::default().env("BOSUN_ALLOW_UIDS", "4242")).ready();
        let lines = l.request(b"ping\n");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("error denied "), "{lines:?}");
        return;
    }
    // Root: run the client as nobody (65534), who is not on the list.
    let l = Listener::start(Opts::default().env("BOSUN_ALLOW_UIDS", "4242")).ready();
    std::fs::set_permissions(l.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(l.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = format!("UNIX-CONNECT:{}", l.path().display());
    let as_nobody = || {
        let mut c = Command::new("socat");
        c.args(["-", &target]).uid(65534).gid(65534);
        c
    };
    let (_, out) = run_client(&mut as_nobody(), b"hello\n");
    assert!(
        out.starts_with("error denied uid 65534 gid 65534 "),
        "{out}"
    );
    l.log.wait("denied log", |s| {
        s.contains("denied") && s.contains("uid=65534")
    });
    // Root itself is always allowed.
    assert_eq!(l.request(b"ping\n"), ["pong"]);
    drop(l);

    // Allowed by group.
    let l = Listener::start(
        Opts::default()
            .env("BOSUN_ALLOW_UIDS", "4242")
            .env("BOSUN_ALLOW_GIDS", "65534"),
    )
    .ready();
    std::fs::set_permissions(l.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(l.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = format!("UNIX-CONNECT:{}", l.path().display());
    let (_, out) = run_client(
        Command::new("socat")
            .args(["-", &target])
            .uid(65534)
            .gid(65534),
        b"ping\n",
    );
    assert_eq!(out, "pong\n");
}
