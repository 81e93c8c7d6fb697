//! Faults with the listener running: a 10 s signal storm, too few file descriptors, a run
//! directory that fills up, a main process and a callback killed mid-work, and SIGKILLs of
//! the listener, the main process or a callback at random points under a steady stream of
//! requests. In each case
//! the supervisor stays up (or exits with its documented code), the socket keeps answering,
//! and no zombie is left.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use super::harness::*;

fn zombies_of(pid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let Some(i) = stat.rfind(')') else {
                return false;
            };
            let f: Vec<&str> = stat[i + 2..].split(' ').collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str())
        })
        .count()
}

/// Thousands of HUP and USR1 a second for 10 s. Expected, checked: at least
/// 1,000 signals a second reach the supervisor; it forwards them (the main process counts
/// the ones it sees; the kernel merges a pending signal with the next) and stays up, the
/// main process survives, the socket answers, no zombie is left, and TERM afterwards ends
/// the container with the main process's code (0: its TERM trap exits 0).
#[test]
fn a_signal_storm_is_forwarded_without_harm() {
    const STORM: Duration = Duration::from_secs(10);
    let b = sup(Mode::Subreaper).with_listener();
    b.file("callbacks.sh", "CB_noop() { :; }\n");
    let mut s = b
        .script(
            r#"n=0; trap 'n=$((n+1))' HUP USR1; trap 'echo $n > $T/count; exit 0' TERM
               echo ready > $T/ready; while :; do sleep 0.2 & wait $!; done"#,
        )
        .start();
    s.wait_socket();
    s.wait_file("ready", "ready", Duration::from_secs(10));
    let pid = s.pid();
    let began = Instant::now();
    let end = began + STORM;
    let mut sent = 0u64;
    while Instant::now() < end {
        for sig in [SIGHUP, SIGUSR1] {
            // SAFETY: kill(2) on the supervisor we started.
            assert_eq!(unsafe { libc_kill(pid, sig) }, 0, "the supervisor is gone");
            sent += 1;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let rate = sent as f64 / secs;
    eprintln!("{sent} signals in {secs:.1} s: {rate:.0}/s");
    assert!(rate >= 1000.0, "only {rate:.0} signals a second");
    assert!(s.running(), "supervisor exited");
    assert_eq!(s.request("ping"), vec!["pong"]);
    assert!(
        s.request("status")[0].contains(" running "),
        "main process survived"
    );
    assert_eq!(s.request("noop")[1].split(' ').nth(2), Some("exit=0"));
    wait_until(Duration::from_secs(5), "no zombie", || {
        (zombies_of(pid) == 0).then_some(())
    });
    s.signal(SIGTERM);
    let st = s.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", s.stderr());
    let seen: u64 = std::fs::read_to_string(s.path("count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!("the main process saw {seen} of them");
    assert!(seen > 0, "no signal reached the main process");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn too_few_file_descriptors() {
    // With `ulimit -n 64`, 300 clients at once: some may wait or be refused, but the
    // supervisor and listener stay up and serve again once the burst is over.
    let b = sup(Mode::Subreaper).with_listener();
    b.file("callbacks.sh", "CB_noop() { :; }\n");
    let mut c = b.command();
    c.arg("--").args(["sleep", "1000"]);
    let prog: Vec<String> = std::iter::once(c.get_program().to_string_lossy().into_owned())
        .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("ulimit -n 64 && exec \"$@\"")
        .arg("sh")
        .args(&prog);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let mut child = sh.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let sock = b.dir().join("run/t-request.sock");
    wait_until(Duration::from_secs(10), "socket", || {
        UnixStream::connect(&sock).ok()
    });
    let clients: Vec<_> = (0..300)
        .map(|_| {
            let p = sock.clone();
            std::thread::spawn(move || -> Option<String> {
                let mut c = UnixStream::connect(&p).ok()?;
                c.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
                c.write_all(b"ping\n").ok()?;
                let mut out = String::new();
                c.read_to_string(&mut out).ok()?;
                Some(out)
            })
        })
        .collect();
    let answered = clients
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .filter(|a| a == "pong\n")
        .count();
    eprintln!("{answered}/300 answered under ulimit -n 64");
    // After the burst everything works.
    assert_eq!(request(&sock, "ping"), vec!["pong"]);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the supervisor is still up"
    );
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A tmpfs mounted for one test, unmounted however the test ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, opts: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Expected: a run directory that fills up (no block and no inode left) while the
/// supervisor runs changes nothing: requests are answered, actions run, a crashed listener
/// is replaced, `status` is healthy, and TERM ends it with the main process's code.
#[test]
fn a_run_directory_that_fills_up_while_running_changes_nothing() {
    testkit::prereq::require_root("mount a tmpfs");
    let b = sup(Mode::Subreaper).with_listener();
    b.file("callbacks.sh", "CB_hello() { echo \"hello $*\"; }\n");
    let _tmpfs = Tmpfs::mount(&b.dir().join("run"), "size=64k,nr_inodes=64");
    let mut s = b.cmd(&["sleep", "1000"]).start();
    s.wait_socket();
    let run = s.path("run");
    // Fill it: blocks first, then inodes, each until the kernel says ENOSPC.
    let err = std::fs::write(run.join("fill"), vec![0u8; 1 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "{err}");
    let mut files = 0;
    let err = loop {
        match std::fs::File::create(run.join(format!("f{files}"))) {
            Ok(_) => files += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(28), "{err} after {files} files");
    assert_eq!(s.request("ping"), vec!["pong"]);
    let done = s.request("hello full");
    assert!(
        done.len() == 2 && done[1].starts_with("done 1 exit=0"),
        "{done:?}"
    );
    assert!(s.stderr().contains("[hello#1] hello full"));
    let listener = listener_pid(&s);
    // SAFETY: kill(2) on the listener of the supervisor we started.
    assert_eq!(unsafe { libc_kill(listener, SIGKILL) }, 0);
    s.wait_stderr("crashed; restarting", Duration::from_secs(5));
    assert_eq!(s.request("ping"), vec!["pong"]);
    assert_eq!(status_cmd(&s).0, 0);
    s.signal(SIGTERM);
    assert_eq!(s.wait(Duration::from_secs(10)).code(), Some(143));
}

#[test]
fn a_killed_main_process_is_restarted_and_the_socket_keeps_answering() {
    let b = sup(Mode::Pid1).with_listener();
    b.file("callbacks.sh", "CB_noop() { :; }\n");
    let s = b
        .env("BOSUN_RESTART", "always")
        .script("echo $$ >> $T/pids; exec sleep 1000")
        .start();
    s.wait_socket();
    for round in 1..=3 {
        s.wait_file_lines("pids", round, Duration::from_secs(10));
        let st = s.request("status");
        let pid = st[0]
            .split(' ')
            .find_map(|kv| kv.strip_prefix("pid="))
            .unwrap()
            .to_string();
        assert_ne!(pid, "-", "{st:?}");
        let ns_pid = outer_pid(&s, pid.parse().unwrap());
        Command::new("kill")
            .args(["-KILL", &ns_pid.to_string()])
            .status()
            .unwrap();
        assert_eq!(s.request("ping"), vec!["pong"]);
    }
    s.wait_file_lines("pids", 4, Duration::from_secs(20));
}

#[test]
fn a_killed_callback_reports_its_signal() {
    let b = sup(Mode::Subreaper).with_listener();
    b.file(
        "callbacks.sh",
        "CB_victim() { echo $$ > \"$T/victim\"; sleep 1000; }\n",
    );
    let s = b.cmd(&["sleep", "1000"]).start();
    s.wait_socket();
    let sock = s.socket();
    let t = std::thread::spawn(move || request(&sock, "victim"));
    let pid = wait_until(Duration::from_secs(10), "victim pid", || {
        std::fs::read_to_string(s.path("victim"))
            .ok()
            .filter(|p| !p.trim().is_empty())
    });
    Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    let lines = t.join().unwrap();
    assert!(lines[1].starts_with("done 1 exit=137 "), "{lines:?}");
    assert_eq!(zombies_of(s.pid()), 0);
}

// ----- random kill points --------------------------------------------------------------

/// The children of `pid` (all of its threads' children).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let t = t.ok()?.file_name();
            std::fs::read_to_string(format!("/proc/{pid}/task/{}/children", t.to_str()?)).ok()
        })
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let i = stat.rfind(')')?;
    stat[i + 2..].split(' ').nth(1)?.parse().ok()
}

/// `pid` as its own PID namespace sees it (the last `NSpid` field).
fn inner_pid(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// SIGKILLs `pid` only if `still_it(pid)` holds once the process is pinned by a pidfd, so
/// that a pid reused in between is never hit. Returns when the signal was sent, if it was.
fn kill_if(pid: i32, still_it: impl Fn(i32) -> bool) -> Option<Instant> {
    // SAFETY: pidfd_open(2) with a plain pid and no flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new fd that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    if !still_it(pid) {
        return None;
    }
    let at = Instant::now();
    // SAFETY: pidfd_send_signal(2) on the pidfd just opened, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    (rc == 0).then_some(at)
}

/// The listener: the supervisor's child named `listener`.
fn find_listener(sup: i32) -> Option<i32> {
    children(sup)
        .into_iter()
        .find(|&p| comm(p) == listener_comm())
}

/// The main process: the supervisor's child whose pid (in its namespace) is the last one
/// the main process wrote to `$T/pids`.
fn find_main(s: &Sup, sup: i32) -> Option<i32> {
    let pids = std::fs::read_to_string(s.path("pids")).ok()?;
    let inner: i32 = pids.lines().last()?.trim().parse().ok()?;
    children(sup)
        .into_iter()
        .find(|&p| inner_pid(p) == Some(inner))
}

/// Whether `pid` is an action's bash (`bash -c 'source ... && "$0" "$@"' CB_x ...`).
fn is_callback(pid: i32) -> bool {
    comm(pid) == "bash"
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a.starts_with(b"CB_")))
}

/// The running callbacks: the listener's children that are an action's bash.
fn find_callbacks(listener: i32) -> Vec<i32> {
    children(listener)
        .into_iter()
        .filter(|&p| is_callback(p))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Listener,
    Main,
    Callback,
}

/// What one client got, classified; `Err` is a malformed or incomplete answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Answer {
    Pong,
    Done0,
    /// `done` with exit 137: its callback was SIGKILLed.
    Done137,
    /// `accepted` then `error unavailable`: the listener died while the action ran.
    AcceptedUnavailable,
    /// `error unavailable` alone: the listener died between starting the action and
    /// saying `accepted`.
    Unavailable,
    Busy,
    TooMany,
    /// Nothing at all (EOF or a reset): the listener died holding the connection before it
    /// had anything to hand over to the supervisor.
    Nothing,
}

impl Answer {
    /// The kill this answer needs to have happened while the request was under way.
    fn needs(self) -> Option<Victim> {
        match self {
            Answer::Done137 => Some(Victim::Callback),
            Answer::AcceptedUnavailable | Answer::Unavailable | Answer::Nothing => {
                Some(Victim::Listener)
            }
            _ => None,
        }
    }
}

/// Checks one reply against the protocol (DESIGN.md section 2; README "If the listener
/// dies while an action runs").
fn classify(req: &str, bytes: &[u8], reset: bool) -> Result<Answer, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.is_empty() {
        return Ok(Answer::Nothing);
    }
    if reset {
        return Err("bytes, then a reset".into());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err("torn last line (no newline)".into());
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let accepted = |l: &str| -> Option<String> {
        let rest = l.strip_prefix("accepted ")?;
        let (id, action) = rest.split_once(' ')?;
        (action == req && id.parse::<u64>().is_ok()).then(|| id.to_string())
    };
    let unavailable = |l: &str, id: Option<&str>| {
        l.strip_prefix("error unavailable request ")
            .is_some_and(|r| {
                let (i, rest) = r.split_once(' ').unwrap_or(("", ""));
                i.parse::<u64>().is_ok()
                    && id.is_none_or(|id| id == i)
                    && rest.starts_with(&format!("({req}): listener crashed"))
            })
    };
    let done = |l: &str, id: &str| -> Option<i32> {
        let rest = l.strip_prefix(&format!("done {id} exit="))?;
        let (code, secs) = rest.split_once(" secs=")?;
        secs.parse::<f64>().ok()?;
        code.parse().ok()
    };
    let answer = match (req, lines.as_slice()) {
        ("ping", ["pong"]) => Answer::Pong,
        (_, [l]) if l.starts_with("error busy ") => Answer::Busy,
        (_, [l]) if l.starts_with("error too-many ") => Answer::TooMany,
        (_, [l]) if unavailable(l, None) => Answer::Unavailable,
        (_, [a, b]) if accepted(a).is_some() => {
            let id = accepted(a).unwrap();
            match done(b, &id) {
                Some(0) => Answer::Done0,
                Some(137) => Answer::Done137,
                Some(n) => return Err(format!("exit={n}")),
                None if unavailable(b, Some(&id)) => Answer::AcceptedUnavailable,
                None => return Err("second line is neither done nor unavailable".into()),
            }
        }
        _ => return Err("not a valid answer".into()),
    };
    Ok(answer)
}

/// One request, every read and write with a deadline; returns (bytes, ended by a reset).
fn ask(sock: &std::path::Path, line: &str) -> Result<(Vec<u8>, bool), String> {
    use std::io::ErrorKind;
    let mut c = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    if let Err(e) = c.write_all(format!("{line}\n").as_bytes()) {
        // The listener took the connection and died before reading it.
        return match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => Ok((Vec::new(), true)),
            _ => Err(format!("write: {e}")),
        };
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Ok((out, false)),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok((out, true)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "read: {e} (a hang?) after {:?}",
                    String::from_utf8_lossy(&out)
                ))
            }
        }
    }
}

struct Asked {
    req: &'static str,
    start: Instant,
    end: Instant,
    got: Result<(Vec<u8>, bool), String>,
}

const STORM_CALLBACKS: &str = r#"
CB_q1() { echo q1; }
CB_q2() { :; }
CB_q3() { true; }
CB_slow() { sleep 0.3; echo slept; }
"#;

/// Rounds per mode (`BOSUN_FAULT_ROUNDS`, default 30, for a longer soak), and kills of the
/// listener and of the main process per mode: each of those kills doubles its restart
/// backoff (README "Restarts"), so they are capped at a sixth of the rounds (at least 5) to
/// keep the test short; the callbacks take the other rounds.
fn rounds() -> usize {
    std::env::var("BOSUN_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30)
}
const CLIENTS: usize = 5;

/// "The listener, the main process or a callback gets SIGKILL at random points
/// during work". Expected, checked: the supervisor stays up; every client gets a complete,
/// well-formed answer (`pong`; `accepted` + `done`; or `error busy`/`too-many`), and only
/// when the listener was killed while its request was under way `error unavailable` (after
/// `accepted` or alone) or, for a connection the listener had taken but not handed over
/// yet, nothing; `done ... exit=137` only when a callback was killed meanwhile. Never a
/// hang, never a torn line. Afterwards the socket answers, `supervisor status` is healthy,
/// the main process was restarted after each kill, only the listener and the main process
/// are left, no zombie, and TERM gives the main process's code (143, `sleep` killed by TERM).
#[test]
fn random_sigkills_during_work_leave_every_client_answered() {
    let mut rng =
        testkit::random::seeded("random_sigkills_during_work_leave_every_client_answered");
    for mode in MODES {
        random_kill_rounds(mode, &mut rng);
    }
}

fn random_kill_rounds(mode: Mode, rng: &mut fastrand::Rng) {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let began = Instant::now();
    let b = sup(mode).with_listener();
    b.file("callbacks.sh", STORM_CALLBACKS);
    let mut s = b
        .env("BOSUN_RESTART", "always")
        .script("echo $$ >> $T/pids; exec sleep 1000")
        .start();
    s.wait_socket();
    s.wait_file_lines("pids", 1, Duration::from_secs(10));
    let sup_pid = s.pid();
    let sock = s.socket();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (sock, stop) = (sock.clone(), stop.clone());
            let mut rng = fastrand::Rng::with_seed(rng.u64(..));
            std::thread::spawn(move || {
                const MIX: [&str; 6] = ["q1", "q2", "q3", "slow", "slow", "ping"];
                let mut asked = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let req = MIX[rng.usize(..MIX.len())];
                    let start = Instant::now();
                    let got = ask(&sock, req);
                    asked.push(Asked {
                        req,
                        start,
                        end: Instant::now(),
                        got,
                    });
                }
                asked
            })
        })
        .collect();

    let mut kills: Vec<(Victim, Instant)> = Vec::new();
    let count = |kills: &[(Victim, Instant)], v| kills.iter().filter(|k| k.0 == v).count();
    let rounds = rounds();
    let (listener_kills, main_kills) = ((rounds / 6).max(5), (rounds / 6).max(5));
    for round in 0..rounds {
        // The random point: somewhere in the steady stream of work.
        std::thread::sleep(Duration::from_millis(50 + rng.u64(..450)));
        assert!(
            s.running(),
            "{mode:?} round {round}: the supervisor exited; stderr:\n{}",
            s.stderr()
        );
        let listener = find_listener(sup_pid);
        let mut victims = vec![Victim::Callback];
        if listener.is_some() && count(&kills, Victim::Listener) < listener_kills {
            victims.push(Victim::Listener);
        }
        if find_main(&s, sup_pid).is_some() && count(&kills, Victim::Main) < main_kills {
            victims.push(Victim::Main);
        }
        let victim = victims[rng.usize(..victims.len())];
        let hit = match victim {
            Victim::Listener => listener.and_then(|l| {
                kill_if(l, |p| {
                    parent(p) == Some(sup_pid) && comm(p) == listener_comm()
                })
            }),
            Victim::Main => {
                find_main(&s, sup_pid).and_then(|m| kill_if(m, |p| parent(p) == Some(sup_pid)))
            }
            Victim::Callback => {
                // A callback is running most of the time; wait a little for one.
                let end = Instant::now() + Duration::from_secs(2);
                loop {
                    let l = find_listener(sup_pid);
                    let cbs = l.map(find_callbacks).unwrap_or_default();
                    if let (Some(l), false) = (l, cbs.is_empty()) {
                        let cb = cbs[rng.usize(..cbs.len())];
                        if let Some(at) = kill_if(cb, |p| parent(p) == Some(l) && is_callback(p)) {
                            break Some(at);
                        }
                    }
                    if Instant::now() > end {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        };
        if let Some(at) = hit {
            kills.push((victim, at));
            // A main process killed before the last one restarted would not count.
            if victim == Victim::Main {
                let n = count(&kills, Victim::Main) + 1;
                s.wait_file_lines("pids", n, Duration::from_secs(40));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let asked: Vec<Asked> = clients
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();

    // Every answer complete and well-formed, and explained by a kill when it is not the
    // normal one (a kill counts for requests started up to 50 ms after it was sent: a
    // SIGKILLed process on a loaded machine takes a moment to let go of its connections).
    let mut tally: BTreeMap<(&str, Answer), usize> = BTreeMap::new();
    let mut bad = Vec::new();
    for a in &asked {
        let what = match &a.got {
            Err(e) => Err(e.clone()),
            Ok((bytes, reset)) => {
                classify(a.req, bytes, *reset).and_then(|answer| match answer.needs() {
                    Some(v)
                        if !kills.iter().any(|&(k, at)| {
                            k == v && at + Duration::from_millis(50) >= a.start && at <= a.end
                        }) =>
                    {
                        Err(format!("{answer:?} with no {v:?} killed meanwhile"))
                    }
                    _ => Ok(answer),
                })
            }
        };
        match what {
            Ok(answer) => *tally.entry((a.req, answer)).or_default() += 1,
            Err(e) => bad.push(format!(
                "{} at +{:?} ({:?} long): {e}; got {:?}",
                a.req,
                a.start - began,
                a.end - a.start,
                a.got
                    .as_ref()
                    .map(|(b, r)| (String::from_utf8_lossy(b).into_owned(), *r))
            )),
        }
    }
    let kill_log: Vec<String> = kills
        .iter()
        .map(|(v, at)| format!("{v:?}@+{:?}", *at - began))
        .collect();
    eprintln!(
        "{mode:?}: {} requests, kills {kill_log:?}, answers {tally:?}",
        asked.len()
    );
    assert!(
        bad.is_empty(),
        "{mode:?}: {} bad answers:\n{}\nkills: {kill_log:?}\nstderr:\n{}",
        bad.len(),
        bad.join("\n"),
        s.stderr()
    );
    assert!(
        asked.len() > rounds * 2,
        "{mode:?}: only {} requests",
        asked.len()
    );
    assert!(
        count(&kills, Victim::Callback) > 0,
        "{mode:?}: no callback was killed: {kill_log:?}"
    );

    // Afterwards: up, answering, healthy, the main process restarted after each kill.
    assert!(s.running(), "supervisor exited");
    let main_kills = count(&kills, Victim::Main);
    s.wait_file_lines("pids", main_kills + 1, Duration::from_secs(40));
    assert_eq!(s.request("ping"), vec!["pong"]);
    let status = wait_until(Duration::from_secs(10), "supervisor status healthy", || {
        let (code, text) = status_cmd(&s);
        (code == 0).then_some(text)
    });
    assert!(
        status.contains(" running ") && status.contains(&format!(" restarts={main_kills} ")),
        "{mode:?}: {status}"
    );
    // Only the listener and the main process are left (callbacks whose listener died were
    // stopped, orphans reaped), and no zombie.
    wait_until(
        Duration::from_secs(10),
        "only listener and main left",
        || {
            let kids = children(sup_pid);
            let listener = find_listener(sup_pid)?;
            let main = find_main(&s, sup_pid)?;
            (kids.len() == 2
                && kids.contains(&main)
                && children(listener).is_empty()
                && zombies_of(sup_pid) == 0)
                .then_some(())
        },
    );
    s.signal(SIGTERM);
    let st = s.wait(Duration::from_secs(15));
    assert_eq!(st.code(), Some(143), "{mode:?}: stderr:\n{}", s.stderr());
    eprintln!("{mode:?}: {:?}", began.elapsed());
}
