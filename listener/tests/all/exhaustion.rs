//! Load and exhaustion (DESIGN.md section 2): replay waiters capped and timed out, open
//! connections capped with a reply, descriptors running out without a busy loop and served
//! again by itself, bad requests logged once and short, others' bytes escaped in the log.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::harness::*;

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(") ").unwrap().1;
    let f: Vec<&str> = rest.split(' ').collect();
    // after the comm: state is field 3, utime 14, stime 15 (1-based)
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    u64::try_from(t).unwrap_or(100)
}

/// Reads what is there until EOF or the deadline, tolerating a reset.
fn reply_of(s: &mut UnixStream) -> String {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn replay_waiters_are_capped_and_time_out() {
    let l = Listener::start(Opts::default().env("BOSUN_REPLAY_WAIT", "2s")).ready();
    let (_first, accepted) = start_action(l.path(), "@w slow 30");
    assert_eq!(accepted, "accepted 1 slow");
    // Eight wait for it, each told `accepted` at once.
    let mut waiters = Vec::new();
    for _ in 0..8 {
        let (s, line) = start_action(l.path(), "@w slow 30");
        assert_eq!(line, "accepted 1 slow");
        waiters.push(s);
    }
    // The ninth is told busy at once.
    let t0 = Instant::now();
    let r = l.request(b"@w slow 30\n");
    assert_eq!(r, ["error busy slow still running as 1"]);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // The eight are told busy at their deadline, and nothing ran twice.
    for mut s in waiters {
        let line = read_line(&mut s);
        assert_eq!(line, "error busy slow still running as 1");
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    let started = l
        .log
        .wait_until("log", |_| true)
        .iter()
        .filter(|s| s.contains("[slow#"))
        .count();
    assert_eq!(started, 1, "one run, one slow-start line");
    // Waiters gone, the places are free again.
    let (again, line) = start_action(l.path(), "@w slow 30");
    assert_eq!(line, "accepted 1 slow");
    drop(again);
    assert_eq!(l.request(b"ping\n"), ["pong"]);
}

#[test]
fn connections_over_the_limit_are_answered_too_many() {
    let l = Listener::start(
        Opts::default()
            .env("BOSUN_MAX_CONNECTIONS", "4")
            .env("BOSUN_READ_TIMEOUT", "10s"),
    )
    .ready();
    // Four stalled clients hold every place.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = UnixStream::connect(l.path()).unwrap();
        s.write_all(b"pi").unwrap();
        stalled.push(s);
    }
    let end = Instant::now() + DEADLINE;
    let refused = loop {
        let r = l.request(b"ping\n");
        if r != ["pong"] {
            break r;
        }
        // the four may not all be accepted yet
        assert!(Instant::now() < end, "never refused");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("error too-many 4 connections are open"),
        "{refused:?}"
    );
    for _ in 0..20 {
        assert!(l.request(b"ping\n")[0].starts_with("error too-many "));
    }
    let warned = l
        .log
        .wait_for("connections at the limit; answering too-many");
    assert!(warned.contains("max_connections=4"), "{warned}");
    // The stalled ones leave: served again.
    drop(stalled);
    let end = Instant::now() + DEADLINE;
    while l.request(b"ping\n") != ["pong"] {
        assert!(Instant::now() < end, "not served again");
        std::thread::sleep(Duration::from_millis(20));
    }
    l.log.wait_for("connections below the limit again");
    let lines = l.log.wait_until("log", |_| true);
    let warnings = lines
        .iter()
        .filter(|s| s.contains("connections at the limit"))
        .count();
    assert_eq!(warnings, 1, "logged once: {lines:#?}");
}

#[test]
fn out_of_descriptors_pauses_without_spinning_and_serves_again() {
    // 64 descriptors, and a connection limit above what they allow: accept itself fails.
    let l = Listener::start(
        Opts::default()
            .nofile(64)
            .env("BOSUN_MAX_CONNECTIONS", "1000")
            .env("BOSUN_READ_TIMEOUT", "30s"),
    )
    .ready();
    let pid = l.pid();
    // 150 clients connect and send nothing: the listener runs out of descriptors.
    let mut clients = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..150 {
        let path = l.path().to_path_buf();
        pending.push(std::thread::spawn(move || UnixStream::connect(path)));
    }
    l.log
        .wait_for("out of file descriptors; accepting paused until one frees");
    // While exhausted: CPU stays low (a busy loop would use ~100 ticks a second).
    let t0 = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - t0;
    let secs = started.elapsed().as_secs_f64();
    let busy = (ticks_per_sec() as f64 * secs) as u64;
    eprintln!(
        "listener CPU while out of descriptors: {used} ticks in {secs:.2} s (busy loop: {busy})"
    );
    assert!(used * 10 < busy, "{used} ticks in {secs:.2} s");
    for p in pending {
        if let Ok(Ok(s)) = p.join() {
            clients.push(s);
        }
    }
    // Logged once for the whole episode.
    let lines = l.log.wait_until("log", |_| true);
    let paused = lines
        .iter()
        .filter(|s| s.contains("out of file descriptors"))
        .count();
    assert_eq!(paused, 1, "{lines:#?}");
    // Some were answered too-many through the reserve descriptor meanwhile.
    let mut answered = 0;
    for s in &mut clients {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 128];
        if let Ok(n) = s.read(&mut buf) {
            if buf[..n].starts_with(b"error too-many ") {
                answered += 1;
            }
        }
    }
    assert!(
        answered > 0,
        "no client was answered while out of descriptors"
    );
    // They leave: served again by itself, and said so.
    drop(clients);
    let end = Instant::now() + DEADLINE;
    loop {
        let mut s = UnixStream::connect(l.path()).unwrap();
        let _ = s.write_all(b"ping\n");
        let r = reply_of(&mut s);
        if r == "pong\n" {
            break;
        }
        assert!(Instant::now() < end, "not served again: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    l.log.wait_for("file descriptors free again; accepting");
    let r = l.request(b"hello\n");
    assert!(
        r[1].starts_with("done ") && r[1].contains(" exit=0 "),
        "{r:?}"
    );
}

#[test]
fn a_thousand_clients_each_get_a_reply_line() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < 4096 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard).unwrap();
    }
    // Fewer places than clients: those over the limit get `error too-many`, none nothing.
    let l = Listener::start(Opts::default().env("BOSUN_MAX_CONNECTIONS", "300")).ready();
    let path = l.path().to_path_buf();
    let replies: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..1000)
            .map(|_| {
                let path = path.clone();
                sc.spawn(move || {
                    let mut s = UnixStream::connect(&path).unwrap();
                    // the listener may have answered and closed before we write
                    let _ = s.write_all(b"ping\n");
                    reply_of(&mut s)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let pong = replies.iter().filter(|r| *r == "pong\n").count();
    let too_many = replies
        .iter()
        .filter(|r| r.starts_with("error too-many ") && r.ends_with('\n'))
        .count();
    eprintln!("1000 clients: {pong} pong, {too_many} too-many");
    assert_eq!(
        pong + too_many,
        1000,
        "every client a reply line: {:?}",
        replies
            .iter()
            .filter(|r| *r != "pong\n" && !r.starts_with("error too-many "))
            .collect::<Vec<_>>()
    );
    assert!(pong > 0);
}

#[test]
fn a_long_bad_request_is_logged_once_and_short() {
    let l = Listener::start(Opts::default()).ready();
    let mut req = vec![b'x'; 4090];
    req.extend_from_slice(b" y\n");
    let r = l.request(&req);
    assert!(r[0].starts_with("error unknown-action "), "{r:?}");
    let line = l.log.wait_for("bad request");
    // the request after it, so that every line of the bad one has been read
    assert_eq!(l.request(b"hello\n")[0], "accepted 1 hello");
    l.log.wait_for("[hello#1] hello");
    let lines = l.log.wait_until("log", |_| true);
    let about: Vec<&String> = lines.iter().filter(|s| s.contains("xxxxxxxxxx")).collect();
    assert_eq!(about.len(), 1, "logged once: {about:#?}");
    assert!(line.len() <= 300, "{} bytes: {line}", line.len());
    assert!(
        line.contains(&"x".repeat(150)) && !line.contains(&"x".repeat(151)),
        "{line}"
    );
    assert!(line.contains("(+3942 bytes)"), "{line}");
    // Control characters and bidi overrides of a bad request are escaped.
    l.request("\u{202e}gnp\n".as_bytes());
    let bidi = l.log.wait(r"\u{202e}", |s| s.contains(r"\u{202e}gnp"));
    assert!(!bidi.contains('\u{202e}'), "{bidi}");
}

#[test]
fn output_control_bytes_are_escaped_in_the_log_and_in_log_id() {
    let cbs = format!(
        "{CALLBACKS}\nCB_esc() {{ printf 'a\\033[31mred\\rb\\n'; printf 'bad \\377 \\302\\233 end\\n'; }}\n"
    );
    for format in ["text", "json"] {
        let l = Listener::start(
            Opts::default()
                .callbacks(Some(&cbs))
                .env("BOSUN_LOG_FORMAT", format),
        )
        .ready();
        let r = l.request(b"esc\n");
        assert!(r[1].contains(" exit=0 "), "{r:?}");
        l.log.wait_for(r"[esc#1] a\x1b[31mred\x0db");
        l.log.wait_for(r"[esc#1] bad \xff \xc2\x9b end");
        let lines = l.log.wait_until("log", |_| true);
        assert!(
            !lines.iter().any(|s| s.contains('\x1b') || s.contains('\r')),
            "{format}: raw control bytes in the log"
        );
        let log = l.request(b"log 1\n");
        assert_eq!(
            log,
            [r"a\x1b[31mred\x0db", r"bad \xff \xc2\x9b end"],
            "{format}"
        );
    }
}

#[test]
fn a_denied_peer_learns_nothing_of_the_actions() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    testkit::prereq::require_root("run a client as another uid");
    let l = Listener::start(Opts::default().env("BOSUN_ALLOW_UIDS", "4242")).ready();
    std::fs::set_permissions(l.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(l.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = format!("UNIX-CONNECT:{}", l.path().display());
    for line in ["no-such-action\n", "hello\n", "\x1b[2J\n"] {
        let (_, out) = run_client(
            std::process::Command::new("socat")
                .args(["-", &target])
                .uid(65534)
                .gid(65534),
            line.as_bytes(),
        );
        assert!(
            out.starts_with("error denied uid 65534 "),
            "{line:?}: {out}"
        );
    }
    assert_eq!(l.request(b"ping\n"), ["pong"]);
    let lines = l.log.wait_until("log", |_| true);
    assert!(
        !lines
            .iter()
            .any(|s| s.contains("bad request") || s.contains("no-such-action")),
        "{lines:#?}"
    );
    assert_eq!(lines.iter().filter(|s| s.contains("denied")).count(), 3);
}

#[test]
fn replay_waiters_are_capped_in_all() {
    // Nine keyed runs of nine actions; eight waiters on each of the first eight fill the 64
    // places, and a waiter on the ninth is told busy although its key has none.
    let mut cbs = CALLBACKS.to_string();
    for i in 0..9 {
        cbs.push_str(&format!("CB_hold{i}() {{ sleep 30; }}\n"));
    }
    let l = Listener::start(
        Opts::default()
            .callbacks(Some(&cbs))
            .env("BOSUN_MAX_ACTIONS", "10"),
    )
    .ready();
    let mut held = Vec::new();
    for i in 0..9 {
        let (s, line) = start_action(l.path(), &format!("@k{i} hold{i}"));
        assert_eq!(line, format!("accepted {} hold{i}", i + 1));
        held.push(s);
    }
    for i in 0..8 {
        for _ in 0..8 {
            let (s, line) = start_action(l.path(), &format!("@k{i} hold{i}"));
            assert_eq!(line, format!("accepted {} hold{i}", i + 1));
            held.push(s);
        }
    }
    let r = l.request(b"@k8 hold8\n");
    assert_eq!(r, ["error busy hold8 still running as 9"]);
    // An ended run's key is answered at once, whatever the waiters.
    assert_eq!(l.request(b"@done hello\n")[0], "accepted 10 hello");
    assert_eq!(l.request(b"@done hello\n")[0], "accepted 10 hello");
}

#[test]
fn bad_request_lines_are_rate_limited() {
    let l = Listener::start(Opts::default()).ready();
    for i in 0..30 {
        let r = l.request(format!("nope{i}\n").as_bytes());
        assert!(r[0].starts_with("error unknown-action "), "{r:?}");
    }
    // every request answered; the log holds at most 20 of them in this window
    assert_eq!(l.request(b"hello\n")[0], "accepted 1 hello");
    l.log.wait_for("[hello#1] hello");
    let lines = l.log.wait_until("log", |_| true);
    let logged = lines.iter().filter(|s| s.contains("bad request")).count();
    assert_eq!(logged, 20, "{lines:#?}");
}
