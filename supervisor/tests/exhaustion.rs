//! Descriptors running out (DESIGN.md section 2 "Load and exhaustion", section 5): the
//! supervisor pauses accepting instead of spinning, accepts only what it can serve, serves
//! again by itself once clients leave, and still answers TERM. The security review's M6
//! and L4 reproductions, as tests: the real supervisor under a small `RLIMIT_NOFILE`
//! (set between fork and exec, inherited through `unshare`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Clock ticks per second of `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn clk_tck() -> u64 {
    // SAFETY: sysconf only reads a constant.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100)
}

/// User plus system CPU ticks `pid` has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (in parentheses, which may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU ticks `pid` uses over `over`.
fn ticks_over(pid: i32, over: Duration) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(over);
    cpu_ticks(pid) - before
}

/// How many descriptors `pid` has open.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Starts the built supervisor with `RLIMIT_NOFILE` at `n` (soft and hard).
fn start_limited(b: Builder, n: u64) -> Sup {
    b.start_with(move |c| {
        // SAFETY: setrlimit between fork and exec, on a plain-data struct of this frame.
        unsafe {
            c.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Clients that connect and send nothing, held open until dropped.
fn silent_clients(path: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .filter_map(|_| UnixStream::connect(path).ok())
        .collect()
}

/// `ping` until it is answered `pong`, within `deadline`.
fn pong_within(path: &Path, deadline: Duration) {
    wait_until(deadline, "pong again", || {
        let mut c = UnixStream::connect(path).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(b"ping\n").ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        (out == "pong\n").then_some(())
    });
}

/// A busy loop burns about `clk_tck()` ticks a second; a paused accept a handful at most.
fn assert_no_spin(pid: i32, what: &str) {
    let over = Duration::from_secs(2);
    let ticks = ticks_over(pid, over);
    let busy = clk_tck() * 2;
    eprintln!("{what}: {ticks} CPU ticks in {over:?} (a busy loop: about {busy})");
    assert!(
        ticks * 10 < busy,
        "{what}: {ticks} ticks in {over:?}: a busy loop"
    );
}

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
const HOLDING_BACKEND: &str = r#"
import os, socket, threading
path = os.environ["BACKEND"]
s = socket.socket(socket.AF_UNIX)
try: os.unlink(path)
except FileNotFoundError: pass
s.bind(path); s.listen(4096)
def serve(c):
    with c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"hello\n")
        while c.recv(4096): pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn proxy_sup(mode: Mode) -> (Builder, PathBuf) {
    let b = sup(mode);
    let listen = b.dir().join("site.sock");
    let backend = b.dir().join("backend.sock");
    let script = b.file("backend.py", HOLDING_BACKEND);
    let b = b
        .env("BOSUN_ON_DEMAND_LISTEN", listen.to_str().unwrap())
        .env("BOSUN_ON_DEMAND_BACKEND", backend.to_str().unwrap())
        .env("BACKEND", backend.to_str().unwrap())
        .cmd(&["python3", script.to_str().unwrap()]);
    (b, listen)
}

/// One client of the held socket: says hi, reads `hello`, holds the connection for
/// `hold`, closes. Returns the line it got.
fn proxied_client(path: PathBuf, hold: Duration) -> String {
    let Ok(mut c) = UnixStream::connect(&path) else {
        return "connect refused".into();
    };
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    if c.write_all(b"hi\n").is_err() {
        return "write failed".into();
    }
    let mut line = String::new();
    let _ = BufReader::new(&c).read_line(&mut line);
    std::thread::sleep(hold);
    line
}

#[test]
fn proxy_mode_caps_pairs_below_the_limit_without_spinning_and_serves_everyone() {
    for mode in MODES {
        let (b, listen) = proxy_sup(mode);
        // 48 descriptors: a few pairs at a time; 60 clients that each hold their pair.
        let s = start_limited(b, 48);
        wait_until(Duration::from_secs(10), "held socket", || {
            listen.exists().then_some(())
        });
        let pid = s.pid();
        let t = Instant::now();
        let clients: Vec<_> = (0..60)
            .map(|_| {
                let p = listen.clone();
                std::thread::spawn(move || proxied_client(p, Duration::from_millis(300)))
            })
            .collect();
        s.wait_stderr("spawned child=main", Duration::from_secs(10));
        assert_no_spin(pid, &format!("{mode:?}, proxy mode at its cap"));
        let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let served = answers.iter().filter(|a| *a == "hello\n").count();
        eprintln!("{mode:?}: {served}/60 served in {:?}", t.elapsed());
        assert_eq!(served, 60, "{answers:?}\n{}", s.stderr());
        // After the burst, a new client is served at once.
        assert_eq!(
            proxied_client(listen.clone(), Duration::ZERO),
            "hello\n",
            "{}",
            s.stderr()
        );
    }
}

#[test]
fn a_silent_proxied_pair_is_closed_after_connection_idle() {
    let (b, listen) = proxy_sup(Mode::Subreaper);
    let s = b.env("BOSUN_ON_DEMAND_CONNECTION_IDLE", "1s").start();
    wait_until(Duration::from_secs(10), "held socket", || {
        listen.exists().then_some(())
    });
    let mut c = UnixStream::connect(&listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"hi\n").unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    // Nothing more either way: closed by the supervisor after about a second.
    let t = Instant::now();
    let mut rest = Vec::new();
    let end = r.read_to_end(&mut rest);
    assert!(
        matches!(&end, Ok(0))
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    s.wait_stderr(
        "closed proxied connections with no traffic",
        Duration::from_secs(5),
    );
}

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
