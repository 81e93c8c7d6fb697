//! Bad requests each get their `error` line while everyone else keeps being served.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::harness::*;

fn one_error(l: &Listener, req: &[u8], prefix: &str) -> String {
    let lines = l.request(req);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(prefix), "want {prefix}, got {lines:?}");
    lines[0].clone()
}

#[test]
fn over_long_line() {
    let l = Listener::start(Opts::default()).ready();
    let mut long = vec![b'a'; 5000];
    long.push(b'\n');
    let e = one_error(&l, &long, "error bad-request ");
    assert!(e.contains("longer than 4096"), "{e}");
    // Far longer, and never ended: refused as soon as the limit is passed.
    let mut s = UnixStream::connect(l.path()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(&vec![b'b'; 64 * 1024]).unwrap();
    let line = read_line(&mut s);
    assert!(line.starts_with("error bad-request "), "{line}");
    // Exactly 4096 bytes is a valid line (here: an unknown action).
    let mut max = vec![b'a'; 4096];
    max.push(b'\n');
    one_error(&l, &max, "error unknown-action ");
    assert_eq!(l.request(b"ping\n"), ["pong"]);
}

#[test]
fn invalid_utf8() {
    let l = Listener::start(Opts::default()).ready();
    let e = one_error(&l, b"hello \xff\xfe\n", "error bad-request ");
    assert!(e.contains("UTF-8"), "{e}");
    assert_eq!(l.request(b"ping\n"), ["pong"]);
}

#[test]
fn nul_and_control_bytes() {
    let l = Listener::start(Opts::default()).ready();
    let e = one_error(&l, b"hello\0\n", "error bad-request ");
    assert!(e.contains("0x00"), "{e}");
    let e = one_error(&l, b"hello \x1b[31m\n", "error bad-request ");
    assert!(e.contains("0x1b"), "{e}");
    // A line ending (in the log and the reply) never splits into two lines.
    one_error(&l, b"hello\rping\n", "error bad-request ");
    assert_eq!(l.request(b"ping\n"), ["pong"]);
}

#[test]
fn empty_request() {
    let l = Listener::start(Opts::default()).ready();
    let e = one_error(&l, b"\n", "error bad-request ");
    assert!(e.contains("empty"), "{e}");
    one_error(&l, b"  \t \n", "error bad-request ");
    // Connect and close without a byte.
    one_error(&l, b"", "error bad-request ");
}

#[test]
fn unknown_action() {
    let l = Listener::start(Opts::default()).ready();
    let e = one_error(&l, b"nope\n", "error unknown-action ");
    assert!(e.contains("nope"), "{e}");
    // Two unknown tokens: neither is an action.
    one_error(&l, b"forum nope arg\n", "error unknown-action ");
    // A user alone.
    one_error(&l, b"forum\n", "error unknown-action ");
}

#[test]
fn stalled_client_times_out_without_blocking_others() {
    let l = Listener::start(Opts::default().env("BOSUN_READ_TIMEOUT", "1s")).ready();
    let mut stalled = UnixStream::connect(l.path()).unwrap();
    stalled.set_read_timeout(Some(DEADLINE)).unwrap();
    stalled.write_all(b"pi").unwrap();
    let t0 = Instant::now();
    // Others are served at once meanwhile.
    for _ in 0..20 {
        assert_eq!(l.request(b"ping\n"), ["pong"]);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    let mut reply = String::new();
    stalled.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("error bad-request timed out"),
        "{reply:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(800));
}

#[test]
fn thousand_clients_at_once() {
    // 1,000 sockets here (and as many in the listener, which raises its own limit).
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < 4096 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard).unwrap();
    }
    let l = Listener::start(Opts::default()).ready();
    // All connected and sent before any reply is read.
    let mut conns = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut s = UnixStream::connect(l.path()).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let req: &[u8] = if i % 10 == 0 {
            b"forum ping\n"
        } else {
            b"ping\n"
        };
        s.write_all(req).unwrap();
        conns.push(s);
    }
    let mut ok = 0;
    for mut s in conns {
        let lines = read_all(&mut s);
        assert_eq!(lines, ["pong"]);
        ok += 1;
    }
    assert_eq!(ok, 1000);
}

#[test]
fn user_must_be_a_plain_name() {
    let l = Listener::start(Opts::default()).ready();
    for bad in ["../../etc hello", "-rf hello", "a/b env"] {
        let lines = l.request(format!("{bad}\n").as_bytes());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("error bad-request user "), "{lines:?}");
    }
    assert_eq!(l.request(b"site.example-1 ping\n"), ["pong"]);
}
