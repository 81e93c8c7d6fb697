//! Descriptors running out (DESIGN.md section 2 "Load and exhaustion", section 5): the
//! supervisor pauses accepting instead of spinning, accepts only what it can serve, serves
//! again by itself once clients leave, and still answers TERM. The security review's M6
//! and L4 reproductions, as tests: the real supervisor under a small `RLIMIT_NOFILE`
//! (set between fork and exec, inherited through `unshare`). With the listener; the
//! proxy's own cases are in the supervisor's exhaustion.rs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::harness::*;
use testkit::exhaustion::*;

#[test]
fn request_socket_out_of_descriptors_pauses_then_serves_again() {
    for mode in MODES {
        let b = sup(mode).with_listener();
        b.file("callbacks.sh", "CB_noop() { :; }\n");
        let s = start_limited(b.cmd(&["sleep", "1000"]), 32);
        s.wait_socket();
        let pid = s.pid();
        // More silent clients than descriptors: the supervisor takes what it can, then
        // accept fails with EMFILE while the rest wait in the backlog.
        let clients = silent_clients(&s.socket(), 200);
        // Out of descriptors (whatever it logs): every one of its 32 is open.
        wait_until(Duration::from_secs(10), "the descriptor table full", || {
            (open_fds(pid) >= 31).then_some(())
        });
        assert_no_spin(pid, &format!("{mode:?}, request socket"));
        s.wait_stderr("out of file descriptors", Duration::from_secs(5));
        let warned = s.stderr().matches("out of file descriptors").count();
        assert_eq!(warned, 1, "logged once:\n{}", s.stderr());
        // PID 1 still reaps: a zombie of the main process's would show; and TERM works
        // below. The clients leave: it serves again by itself.
        drop(clients);
        pong_within(&s.socket(), Duration::from_secs(20));
        let mut s = s;
        s.signal(SIGTERM);
        let st = s.wait(Duration::from_secs(15));
        assert!(st.code().is_some(), "{mode:?}: exited after TERM: {st:?}");
    }
}

#[test]
fn term_is_answered_while_descriptors_are_exhausted() {
    let b = sup(Mode::Pid1).with_listener();
    b.file("callbacks.sh", "CB_noop() { :; }\n");
    let mut s = start_limited(b.cmd(&["sleep", "1000"]), 32);
    s.wait_socket();
    let _clients = silent_clients(&s.socket(), 200);
    s.wait_stderr("out of file descriptors", Duration::from_secs(10));
    let t = Instant::now();
    s.signal(SIGTERM);
    let st = s.wait(Duration::from_secs(15));
    assert_eq!(
        st.code(),
        Some(143),
        "the main process's TERM: {}",
        s.stderr()
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// Binds `$BACKEND`; per connection reads one line, answers `hello`, then waits for the
/// client to close (so a pair lasts as long as its client).

#[test]
fn a_burst_while_stopped_gets_every_client_a_reply() {
    // SIGSTOP the supervisor, 300 clients connect and send `ping`, SIGCONT: each gets
    // `pong` (or an `error ...` line), none a reset without a reply (review L4: 236 of 300
    // were dropped).
    for mode in MODES {
        let b = sup(mode).with_listener();
        b.file("callbacks.sh", "CB_noop() { :; }\n");
        let s = b.cmd(&["sleep", "1000"]).start();
        s.wait_socket();
        s.signal(libc::SIGSTOP);
        let sock = s.socket();
        let sent = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..300)
            .map(|_| {
                let p = sock.clone();
                let sent = sent.clone();
                std::thread::spawn(move || -> String {
                    let mut c = match UnixStream::connect(&p) {
                        Ok(c) => c,
                        Err(e) => return format!("connect: {e}"),
                    };
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    if let Err(e) = c.write_all(b"ping\n") {
                        return format!("write: {e}");
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    let mut out = String::new();
                    match c.read_to_string(&mut out) {
                        Ok(_) => out,
                        Err(e) => format!("read: {e}"),
                    }
                })
            })
            .collect();
        // Every client has connected (in the backlog) before the supervisor runs again.
        wait_until(Duration::from_secs(20), "300 requests queued", || {
            (sent.load(Ordering::SeqCst) == 300).then_some(())
        });
        s.signal(libc::SIGCONT);
        let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let bad: Vec<&String> = answers
            .iter()
            .filter(|a| *a != "pong\n" && !a.starts_with("error "))
            .collect();
        assert!(
            bad.is_empty(),
            "{mode:?}: {} without a reply: {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
    }
}
