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
    testkit::socket::wait_listening(&sock, Duration::from_secs(10));
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
    testkit::socket::wait_listening(&sock, Duration::from_secs(10));
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
    testkit::socket::wait_listening(&sock, Duration::from_secs(10));
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
    // The waiting clients are closed after that line: a client connecting before they
    // are would be closed with them.
    s.wait_stderr(
        "closed the clients waiting for the main process",
        Duration::from_secs(5),
    );
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
    testkit::socket::wait_listening(&sock, Duration::from_secs(10));
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

/// Whether uid 65534 (with only the supplementary groups in `groups`, comma separated)
/// can connect to `path`, tried by a real process of that uid.
fn connects_as_nobody(path: &std::path::Path, groups: Option<&str>) -> bool {
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534"]);
    match groups {
        Some(g) => c.arg(format!("--groups={g}")),
        None => c.arg("--clear-groups"),
    };
    let st = c
        .args([
            // The system's python: a pyenv shim under /root is not for other uids.
            "/usr/bin/python3",
            "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1])\nexcept PermissionError:\n sys.exit(3)\n",
        ])
        .arg(path)
        .status()
        .unwrap();
    match st.code() {
        Some(0) => true,
        Some(3) => false,
        other => panic!("the connect attempt failed otherwise: {other:?}"),
    }
}

/// Opens the test's temp dir to other uids (tempfile makes it 0700), so that only the
/// socket's own mode decides.
fn open_dir(b: &Builder) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn held_socket_is_0660_and_its_group_decides_who_connects() {
    testkit::prereq::require_root("act as another uid");
    use std::os::unix::fs::MetadataExt;
    // Default: 0660, the supervisor's group: another uid cannot connect, and so nothing
    // starts for it.
    let b = sup(Mode::Subreaper);
    open_dir(&b);
    let sock = b.dir().join("site.sock");
    let s = backend(b.env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())).start();
    testkit::socket::wait_listening(&sock, Duration::from_secs(10));
    for p in [sock.clone(), s.path(".site.sock.bosun")] {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((m.mode() & 0o7777, m.gid()), (0o660, 0), "{}", p.display());
    }
    assert!(
        !connects_as_nobody(&sock, None),
        "world-connectable by default"
    );
    assert!(!connects_as_nobody(&sock, Some("4242")));
    assert_eq!(s.starts(), 0, "a refused connect starts nothing");
    drop(s);

    // With `socket_group`, a member of that group connects (and wakes the service).
    let b = sup(Mode::Pid1);
    open_dir(&b);
    let sock = b.dir().join("site.sock");
    let s = backend(
        b.env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())
            .env("BOSUN_ON_DEMAND_SOCKET_GROUP", "4242")
            .env("BOSUN_ON_DEMAND_SOCKET_MODE", "0660"),
    )
    .start();
    testkit::socket::wait_listening(&sock, Duration::from_secs(10));
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o660, 4242));
    assert!(!connects_as_nobody(&sock, None), "not in the group");
    assert!(connects_as_nobody(&sock, Some("4242")), "in the group");
    wait_until(Duration::from_secs(10), "the start", || {
        (s.starts() == 1).then_some(())
    });
    drop(s);

    // World-connectable only when configured so.
    let b = sup(Mode::Subreaper);
    open_dir(&b);
    let sock = b.dir().join("site.sock");
    let _s = backend(
        b.env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())
            .env("BOSUN_ON_DEMAND_SOCKET_MODE", "666"),
    )
    .start();
    testkit::socket::wait_listening(&sock, Duration::from_secs(10));
    assert!(connects_as_nobody(&sock, None));
}

#[test]
fn a_bad_socket_mode_or_group_is_a_one_line_setup_error() {
    for (k, v, needle) in [
        (
            "BOSUN_ON_DEMAND_SOCKET_MODE",
            "4770",
            "BOSUN_ON_DEMAND_SOCKET_MODE: \"4770\" is not an octal file mode",
        ),
        (
            "BOSUN_ON_DEMAND_SOCKET_MODE",
            "rw-rw----",
            "BOSUN_ON_DEMAND_SOCKET_MODE: \"rw-rw----\" is not an octal file mode",
        ),
        (
            "BOSUN_ON_DEMAND_SOCKET_GROUP",
            "no-such-group-here",
            "BOSUN_ON_DEMAND_SOCKET_GROUP: no group named \"no-such-group-here\"",
        ),
    ] {
        let b = sup(Mode::Subreaper);
        let sock = b.dir().join("site.sock");
        let (st, _, err) = backend(
            b.env("BOSUN_ON_DEMAND_LISTEN", sock.to_str().unwrap())
                .env(k, v),
        )
        .run(Duration::from_secs(10));
        assert_eq!(st.code(), Some(125), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!sock.exists());
    }
}

// ----- proxy mode's handover: the listen name goes to the ready backend's socket -------

/// A proxy-mode backend: binds `$BACKEND` with the held socket's mode (0660, so the name
/// may be handed over), records each start in `$T/starts`, answers each connection's
/// first line with `hello <pid> <peer pid>` (SO_PEERCRED: the supervisor when proxied, the
/// client itself when it connected directly). On TERM it writes to `$T/term` whether the
/// public name `$LISTEN` still led to its socket at that moment, then exits. On USR1 it
/// binds its path anew (a new socket file), as some servers do on a reload.
const HANDOVER_BACKEND: &str = r#"
import os, signal, socket, struct, threading
path, listen, t = os.environ["BACKEND"], os.environ["LISTEN"], os.environ["T"]
def bind():
    s = socket.socket(socket.AF_UNIX)
    try: os.unlink(path)
    except FileNotFoundError: pass
    s.bind(path)
    os.chmod(path, 0o660)
    s.listen(512)
    return s
s = bind()
def rebind(*_):
    global s
    old, s = s, bind()
    old.close()
signal.signal(signal.SIGUSR1, rebind)
def bye(*_):
    ours = os.stat(listen).st_ino == os.stat(path).st_ino
    with open(t + "/term", "a") as f: f.write("backend\n" if ours else "held\n")
    os._exit(0)
signal.signal(signal.SIGTERM, bye)
with open(t + "/starts", "a") as f: f.write(f"{os.getpid()}\n")
def serve(c):
    with c:
        pid, _, _ = struct.unpack("3i", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        c.makefile("rb").readline()
        c.sendall(f"hello {os.getpid()} {pid}\n".encode())
while True:
    try: c, _ = s.accept()
    except OSError: continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn handover(b: Builder) -> Builder {
    let script = b.file("handover.py", HANDOVER_BACKEND);
    let listen = b.dir().join("public.sock");
    let backend = b.dir().join("backend.sock");
    b.env("BOSUN_ON_DEMAND_LISTEN", listen.to_str().unwrap())
        .env("BOSUN_ON_DEMAND_BACKEND", backend.to_str().unwrap())
        .env("LISTEN", listen.to_str().unwrap())
        .env("BACKEND", backend.to_str().unwrap())
        .cmd(&["python3", script.to_str().unwrap()])
}

/// `hello <pid> <peer>` → (backend pid, peer pid).
fn hello_peer(path: &std::path::Path) -> (i32, i32) {
    let line = hello(path);
    let f: Vec<i32> = line
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(f.len(), 2, "{line:?}");
    (f[0], f[1])
}

fn ino(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().ino()
}

/// Started by a first client and handed over: returns the backend's pid.
fn started_and_handed_over(s: &Sup) -> i32 {
    let public = s.path("public.sock");
    testkit::socket::wait_listening(&public, Duration::from_secs(10));
    let (pid, _) = hello_peer(&public);
    s.wait_stderr(
        "gave the socket's name to the backend",
        Duration::from_secs(10),
    );
    assert_eq!(ino(&public), ino(&s.path("backend.sock")));
    pid
}

#[test]
fn handover_new_clients_reach_the_backend_directly() {
    let s = handover(sup(Mode::Subreaper)).start();
    let public = s.path("public.sock");
    testkit::socket::wait_listening(&public, Duration::from_secs(10));
    // The first client is held and proxied: its peer is the supervisor.
    let (pid, peer) = hello_peer(&public);
    assert_eq!(peer, s.pid(), "the first client is proxied");
    s.wait_stderr(
        "gave the socket's name to the backend",
        Duration::from_secs(10),
    );
    // Then clients connect to the backend itself.
    for _ in 0..3 {
        assert_eq!(hello_peer(&public), (pid, std::process::id() as i32));
    }
    assert_eq!(s.starts(), 1);
}

#[test]
fn handover_idle_stop_takes_the_name_back_first_and_the_next_client_starts_it() {
    let s = handover(sup(Mode::Pid1).env("BOSUN_ON_DEMAND_IDLE", "1s")).start();
    let public = s.path("public.sock");
    let first = started_and_handed_over(&s);
    // Direct connections are activity (the kernel's table): steady traffic for 2.5
    // idle periods keeps it up.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        assert_eq!(hello_peer(&public).0, first);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !s.stderr().contains("no traffic"),
        "stopped with traffic going on"
    );
    s.wait_stderr(
        "no traffic; stopping the main process",
        Duration::from_secs(10),
    );
    // When the backend got TERM, the name already led to the held socket.
    let term = s.wait_file_lines("term", 1, Duration::from_secs(10));
    assert_eq!(term, "held\n");
    s.wait_stderr("exited", Duration::from_secs(10));
    assert_eq!(ino(&public), ino(&s.path(".public.sock.bosun")));
    // The next client starts it again, and the name goes over again.
    let (second, _) = hello_peer(&public);
    assert_ne!(first, second);
    assert_eq!(s.starts(), 2);
}

#[test]
fn handover_a_killed_backend_gives_the_name_back_and_the_next_client_starts_it() {
    let s = handover(sup(Mode::Subreaper)).start();
    let public = s.path("public.sock");
    let first = started_and_handed_over(&s);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    s.wait_stderr(
        "took the socket's name back from the backend",
        Duration::from_secs(10),
    );
    assert_eq!(ino(&public), ino(&s.path(".public.sock.bosun")));
    // The dead backend's file is still there, but the name no longer leads to it.
    assert!(s.path("backend.sock").exists());
    let (second, _) = hello_peer(&public);
    assert_ne!(first, second);
    assert_eq!(s.starts(), 2);
}

#[test]
fn handover_shutdown_takes_the_name_back_and_leaves_nothing_stale() {
    let mut s = handover(sup(Mode::Pid1)).start();
    started_and_handed_over(&s);
    s.signal(SIGTERM);
    assert_eq!(s.wait(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(std::fs::read_to_string(s.path("term")).unwrap(), "held\n");
    for name in [
        "public.sock",
        ".public.sock.bosun",
        ".public.sock.bosun-give",
        ".public.sock.bosun-take",
    ] {
        assert!(!s.path(name).exists(), "{name} left behind");
    }
}

#[test]
fn handover_a_signal_passed_on_takes_the_name_back_and_a_rebound_socket_gets_it_again() {
    let s = handover(sup(Mode::Subreaper).env("BOSUN_ON_DEMAND_IDLE", "2s")).start();
    let public = s.path("public.sock");
    let first = started_and_handed_over(&s);
    let old = ino(&s.path("backend.sock"));
    // USR1 goes to the backend, which binds its path anew: the name comes back first
    // (the old socket file would refuse everyone), then goes to the new socket.
    s.signal(nix::sys::signal::Signal::SIGUSR1 as i32);
    s.wait_stderr(
        "took the socket's name back from the backend",
        Duration::from_secs(10),
    );
    wait_until(
        Duration::from_secs(10),
        "the name on the new socket",
        || {
            let b = ino(&s.path("backend.sock"));
            (b != old && ino(&public) == b).then_some(())
        },
    );
    assert_eq!(hello_peer(&public), (first, std::process::id() as i32));
    assert_eq!(s.starts(), 1);
}
