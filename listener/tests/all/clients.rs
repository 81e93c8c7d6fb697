//! Real clients as operators use them: socat and `nc -U`.

use std::process::Command;

use crate::harness::*;

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn socat_client() {
    assert!(have("socat"), "socat is needed: apt-get install socat");
    let l = Listener::start(Opts::default()).ready();
    let target = format!("UNIX-CONNECT:{}", l.path().display());
    let (st, out) = run_client(Command::new("socat").args(["-", &target]), b"ping\n");
    assert!(st.success());
    assert_eq!(out, "pong\n");
    let (st, out) = run_client(Command::new("socat").args(["-", &target]), b"forum hello\n");
    assert!(st.success());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "accepted 1 hello");
    assert!(lines[1].starts_with("done 1 exit=0 secs="), "{out}");
}

#[test]
fn netcat_client() {
    assert!(have("nc"), "nc is needed: apt-get install netcat-openbsd");
    let l = Listener::start(Opts::default()).ready();
    let sock = l.path().display().to_string();
    let (st, out) = run_client(Command::new("nc").args(["-NU", &sock]), b"ping\n");
    assert!(st.success());
    assert_eq!(out, "pong\n");
    // No newline at all: end of input ends the line.
    let (_, out) = run_client(Command::new("nc").args(["-NU", &sock]), b"forum env x");
    assert!(out.starts_with("accepted 1 env\ndone 1 exit=0 "), "{out}");
    l.log
        .wait_for("[env#1] user=<forum> action=<env> id=<1> service=<test> args=<x>");
    // Without -N nc keeps its side open; the newline is enough.
    let (_, out) = run_client(Command::new("nc").args(["-U", &sock]), b"ping\n");
    assert_eq!(out, "pong\n");
}
