//! Descriptors running out (DESIGN.md section 2 "Load and exhaustion", section 5): the
//! supervisor pauses accepting instead of spinning, accepts only what it can serve, serves
//! again by itself once clients leave, and still answers TERM. The security review's M6
//! and L4 reproductions, as tests: the real supervisor under a small `RLIMIT_NOFILE`
//! (set between fork and exec, inherited through `unshare`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::*;
use testkit::exhaustion::*;

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
        testkit::socket::wait_listening(&listen, Duration::from_secs(10));
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
    testkit::socket::wait_listening(&listen, Duration::from_secs(10));
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
