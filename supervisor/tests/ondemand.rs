//! On-demand start, handoff mode: the supervisor holds the socket, the first connection
//! starts the main process with the socket as fd 3 (LISTEN_FDS), idle stops it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A backend that takes its listening socket from systemd's protocol (fd 3, after
/// checking LISTEN_PID and LISTEN_FDS), records each start in `$T/starts`, and answers
/// every connection with `hello <pid>` after reading one line. `$DELAY` seconds of start-up
/// first, like a real server loading its code.
const BACKEND: &str = r#"
import os, socket, sys, time, threading
assert os.environ["LISTEN_PID"] == str(os.getpid()), "LISTEN_PID is not ours"
assert os.environ["LISTEN_FDS"] == "1"
fam = socket.AF_UNIX if os.environ.get("FAM", "unix") == "unix" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM, fileno=3)
if os.environ.get("UNLINK_ON_TERM"):
    import signal
    def bye(*_):
        os.unlink(os.environ["UNLINK_ON_TERM"]); os._exit(0)
    signal.signal(signal.SIGTERM, bye)
time.sleep(float(os.environ.get("DELAY", "0")))
with open(os.environ["T"] + "/starts", "a") as f:
    f.write(f"{os.getpid()} {os.environ.get('FPM_SOCKETS')} {os.environ.get('LISTEN_FDNAMES')}\n")
def serve(c):
    with c:
        f = c.makefile("rwb")
        f.readline()
        f.write(f"hello {os.getpid()}\n".encode()); f.flush()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn backend(b: Builder) -> Builder {
    let script = b.file("backend.py", BACKEND);
    b.cmd(&["python3", script.to_str().unwrap()])
}

#[test]
fn cold_burst_starts_once_and_serves_everyone() {
    let b = sup(Mode::Subreaper);
    let sock = b.dir().join("php/site.sock");
    let s = backend(
        b.env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())
            .env("DELAY", "0.5"),
    )
    .start();
    wait_until(Duration::from_secs(10), "held socket", || {
        sock.exists().then_some(())
    });
    assert_eq!(s.starts(), 0, "nothing starts before the first connection");
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let p = sock.clone();
            std::thread::spawn(move || hello(&p))
        })
        .collect();
    let answers: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        answers.iter().all(|a| a.starts_with("hello ")),
        "{:?}",
        &answers[..3]
    );
    assert_eq!(s.starts(), 1, "exactly one start for the whole burst");
    let first = std::fs::read_to_string(s.path("starts")).unwrap();
    assert!(
        first.contains(&format!("{}=3 site.sock", sock.display())),
        "FPM_SOCKETS and LISTEN_FDNAMES: {first}"
    );
}

#[test]
fn idle_stop_then_wake_again_and_silent_connections_do_not_count() {
    let b = sup(Mode::Pid1);
    let sock = b.dir().join("site.sock");
    let s = backend(
        b.env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())
            .env("BOSUN_ON_DEMAND_IDLE", "1s"),
    )
    .start();
    wait_until(Duration::from_secs(10), "held socket", || {
        sock.exists().then_some(())
    });
    let a = hello(&sock);
    // A connection that stays open and silent must not keep the backend up.
    let silent = UnixStream::connect(&sock).unwrap();
    let t = Instant::now();
    s.wait_stderr(
        "no traffic; stopping the main process",
        Duration::from_secs(10),
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "stopped too early: {:?}",
        t.elapsed()
    );
    s.wait_stderr("exited", Duration::from_secs(10));
    drop(silent);
    // The next client wakes it again, through the same path.
    let b2 = hello(&sock);
    assert_ne!(a, b2, "a new backend process answered");
    assert_eq!(s.starts(), 2);
}

#[test]
fn a_failing_backend_closes_held_clients_promptly_and_retries() {
    let b = sup(Mode::Subreaper);
    let sock = b.dir().join("site.sock");
    let s = b
        .env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())
        .script("echo x >> $T/starts; exit 3")
        .start();
    wait_until(Duration::from_secs(10), "held socket", || {
        sock.exists().then_some(())
    });
    let mut c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"hi\n").unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf); // EOF or reset, both are "closed"
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "held client closed after {:?}",
        t.elapsed()
    );
    s.wait_stderr("retry_in=", Duration::from_secs(5));
    // The next connection tries again (after the backoff).
    let _c2 = UnixStream::connect(&sock).unwrap();
    s.wait_file_lines("starts", 2, Duration::from_secs(10));
}

#[test]
fn tcp_listen_address() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let s = backend(
        sup(Mode::Subreaper)
            .env("BOSUN_ON_DEMAND_LISTEN", &addr)
            .env("FAM", "inet"),
    )
    .start();
    let line = hello_tcp(&addr);
    assert!(line.starts_with("hello "), "{line}");
    assert_eq!(s.starts(), 1);
}

#[test]
fn php_fpm_style_unlink_is_repaired() {
    // A backend that removes its socket path on exit, as php-fpm does.
    let b = sup(Mode::Subreaper);
    let sock = b.dir().join("site.sock");
    let s = backend(
        b.env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())
            .env("BOSUN_ON_DEMAND_IDLE", "300ms")
            .env("UNLINK_ON_TERM", sock.to_str().unwrap()),
    )
    .start();
    wait_until(Duration::from_secs(10), "held socket", || {
        sock.exists().then_some(())
    });
    hello(&sock);
    s.wait_stderr("restored the socket's name", Duration::from_secs(10));
    assert!(hello(&sock).starts_with("hello "));
}

#[test]
fn an_empty_listen_setting_turns_on_demand_off() {
    let b = sup(Mode::Subreaper);
    b.file(
        "service.toml",
        "[on_demand]\nlisten = \"/nonexistent/dir/x.sock\"\n",
    );
    let (st, out, err) = b
        .env("BOSUN_ON_DEMAND_LISTEN", "")
        .cmd(&["sh", "-c", "echo started at once"])
        .run(Duration::from_secs(10));
    assert!(st.success(), "{err}");
    assert_eq!(out, "started at once\n");
}
