//! On-demand start, proxy mode: the backend binds its own socket; the supervisor holds the
//! clients until it accepts, then copies bytes both ways.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Binds `$BACKEND` after `$DELAY` s, records each start in `$T/starts`; per connection:
/// first line `echo` → echoes everything until EOF, then closes (half-close test);
/// anything else → `hello <pid>`.
const BACKEND: &str = r#"
import os, socket, threading, time
time.sleep(float(os.environ.get("DELAY", "0")))
path = os.environ["BACKEND"]
if "/" in path:
    s = socket.socket(socket.AF_UNIX)
    try: os.unlink(path)
    except FileNotFoundError: pass
    s.bind(path)
else:
    h, p = path.rsplit(":", 1)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((h, int(p)))
s.listen(4096)
with open(os.environ["T"] + "/starts", "a") as f: f.write(f"{os.getpid()}\n")
def serve(c):
    with c:
        f = c.makefile("rb")
        first = f.readline()
        if first == b"slow\n":
            open(os.environ["T"] + "/inflight", "w").close()
            time.sleep(0.5)
            c.sendall(b"slow reply\n")
        elif first == b"echo\n":
            while True:
                b = f.read1(65536)
                if not b: break
                c.sendall(b)
        else:
            c.sendall(f"hello {os.getpid()}\n".encode())
import signal
busy = []
def drain(*_):
    # A graceful stop: no new connections, finish those in flight, then exit.
    s.close()
    for t in busy: t.join()
    os._exit(0)
signal.signal(signal.SIGTERM, drain)
while True:
    try:
        c, _ = s.accept()
    except OSError:
        time.sleep(10)
        continue
    t = threading.Thread(target=serve, args=(c,), daemon=True)
    busy.append(t)
    t.start()
"#;

fn proxied(b: Builder, backend: &str) -> Builder {
    let script = b.file("backend.py", BACKEND);
    let listen = b.dir().join("public.sock");
    b.env("BOSUN_ON_DEMAND_LISTEN", listen.to_str().unwrap())
        .env("BOSUN_ON_DEMAND_BACKEND", backend)
        .env("BACKEND", backend)
        .cmd(&["python3", script.to_str().unwrap()])
}

fn public(s: &Sup) -> std::path::PathBuf {
    s.path("public.sock")
}

#[test]
fn cold_burst_is_held_until_the_backend_accepts() {
    let b = sup(Mode::Subreaper);
    let backend = b.dir().join("backend.sock");
    let s = proxied(b.env("DELAY", "0.5"), backend.to_str().unwrap()).start();
    testkit::socket::wait_listening(&public(&s), Duration::from_secs(10));
    let p = public(&s);
    let t = Instant::now();
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || hello(&p))
        })
        .collect();
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        answers.iter().all(|a| a.starts_with("hello ")),
        "{:?}",
        answers.iter().find(|a| !a.starts_with("hello"))
    );
    assert_eq!(s.starts(), 1);
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "answered before the backend could: {:?}",
        t.elapsed()
    );
}

#[test]
fn large_transfer_is_byte_exact_and_half_close_keeps_the_reply() {
    let b = sup(Mode::Subreaper);
    let backend = b.dir().join("backend.sock");
    let s = proxied(b, backend.to_str().unwrap()).start();
    testkit::socket::wait_listening(&public(&s), Duration::from_secs(10));
    let mut c = UnixStream::connect(public(&s)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let data: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut reader = c.try_clone().unwrap();
    let expected = data.clone();
    let rx = std::thread::spawn(move || {
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        got
    });
    c.write_all(b"echo\n").unwrap();
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap(); // half-close: the echo must still come back whole
    let got = rx.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes differ");
}

#[test]
fn idle_stop_with_a_silent_keepalive_then_restart() {
    let b = sup(Mode::Pid1);
    let backend = b.dir().join("backend.sock");
    let s = proxied(
        b.env("BOSUN_ON_DEMAND_IDLE", "1s"),
        backend.to_str().unwrap(),
    )
    .start();
    testkit::socket::wait_listening(&public(&s), Duration::from_secs(10));
    let first = hello(&public(&s));
    let _silent = UnixStream::connect(public(&s)).unwrap();
    s.wait_stderr(
        "no traffic; stopping the main process",
        Duration::from_secs(10),
    );
    s.wait_stderr("exited", Duration::from_secs(10));
    let second = hello(&public(&s));
    assert_ne!(first, second);
    assert_eq!(s.starts(), 2);
}

#[test]
fn a_backend_that_never_listens_gets_its_clients_closed() {
    let b = sup(Mode::Subreaper);
    let backend = b.dir().join("never.sock");
    let listen = b.dir().join("public.sock");
    let s = b
        .env("BOSUN_ON_DEMAND_LISTEN", listen.to_str().unwrap())
        .env("BOSUN_ON_DEMAND_BACKEND", backend.to_str().unwrap())
        .env("BOSUN_ON_DEMAND_START_TIMEOUT", "500ms")
        .cmd(&["sleep", "1000"])
        .start();
    testkit::socket::wait_listening(&public(&s), Duration::from_secs(10));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let p = public(&s);
            std::thread::spawn(move || {
                let mut c = UnixStream::connect(&p).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let t = Instant::now();
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf);
                (t.elapsed(), buf)
            })
        })
        .collect();
    for c in clients {
        let (took, buf) = c.join().unwrap();
        assert!(buf.is_empty());
        assert!(
            took < Duration::from_millis(1500),
            "held client closed after {took:?}"
        );
    }
    s.wait_stderr("not ready within 500ms", Duration::from_secs(5));
}

#[test]
fn tcp_backend_and_listen() {
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (lp, bp) = (port(0), port(1));
    let b = sup(Mode::Subreaper);
    let script = b.file("backend.py", BACKEND);
    let s = b
        .env("BOSUN_ON_DEMAND_LISTEN", &format!("127.0.0.1:{lp}"))
        .env("BOSUN_ON_DEMAND_BACKEND", &format!("127.0.0.1:{bp}"))
        .env("BACKEND", &format!("127.0.0.1:{bp}"))
        .cmd(&["python3", script.to_str().unwrap()])
        .start();
    let line = hello_tcp(&format!("127.0.0.1:{lp}"));
    assert!(line.starts_with("hello "), "{line}");
    assert_eq!(s.starts(), 1);
}

#[test]
fn a_container_stop_drains_open_connections() {
    let b = sup(Mode::Subreaper);
    let backend = b.dir().join("backend.sock");
    let mut s = proxied(b.env("BOSUN_STOP_TIMEOUT", "5s"), backend.to_str().unwrap()).start();
    testkit::socket::wait_listening(&public(&s), Duration::from_secs(10));
    hello(&public(&s)); // started and ready
    let mut c = UnixStream::connect(public(&s)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"slow\n").unwrap();
    // Once the backend has the request, stop the container mid-request.
    wait_until(Duration::from_secs(10), "the request in flight", || {
        s.path("inflight").exists().then_some(())
    });
    s.signal(SIGTERM);
    let mut reply = String::new();
    BufReader::new(&mut c).read_line(&mut reply).unwrap();
    assert_eq!(
        reply, "slow reply\n",
        "the in-flight reply was delivered during the stop"
    );
    assert_eq!(s.wait(Duration::from_secs(10)).code(), Some(0));
}
