//! The request socket with the real listener behind it: built-ins that act on the main
//! process, `supervisor status`, and a listener killed in the middle of an action.

use std::io::Read;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::harness::*;

const CALLBACKS: &str = r#"
CB_slow() { echo started; sleep 1000; }
CB_hello() { echo "hello ${BOSUN_USER:-nobody} $*"; }
"#;

fn with_listener(mode: Mode) -> Builder {
    let b = sup(mode).with_listener();
    b.file("callbacks.sh", CALLBACKS);
    b
}

fn socat(sock: &std::path::Path, line: &str) -> String {
    let out = Command::new("socat")
        .args(["-t", "30", "-", &format!("UNIX-CONNECT:{}", sock.display())])
        .stdin_bytes(line)
        .unwrap();
    out
}

trait StdinBytes {
    fn stdin_bytes(&mut self, input: &str) -> std::io::Result<String>;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, input: &str) -> std::io::Result<String> {
        use std::process::Stdio;
        let mut child = self.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        child.stdin.take().unwrap().write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[test]
fn builtins_drive_the_main_process_and_the_container_stays_up() {
    for mode in MODES {
        let mut s = with_listener(mode).script(SIGNAL_LOGGER).start();
        s.wait_socket();
        s.wait_file("signals", "ready", Duration::from_secs(10));
        assert_eq!(socat(&s.socket(), "ping\n"), "pong\n");
        let help = socat(&s.socket(), "help\n");
        for a in [
            "ping", "status", "start", "stop", "restart", "reload", "hello", "slow",
        ] {
            assert!(
                help.lines().any(|l| l == a),
                "{a} missing from help: {help}"
            );
        }
        let st = s.request("status");
        assert!(
            st[0].starts_with("t running pid=") && st[0].contains("ready=yes"),
            "{st:?}"
        );
        assert_eq!(status_cmd(&s).0, 0);

        assert_eq!(
            s.request("reload"),
            vec![format!("reloaded pid={}", pid_of(&st[0]))]
        );
        s.wait_file("signals", "HUP", Duration::from_secs(10));

        let stop = s.request("stop");
        assert_eq!(
            stop,
            vec!["stopped exit=0"],
            "the main process ended by its TERM trap"
        );
        assert!(s.request("status")[0].starts_with("t stopped pid=-"));
        let (code, text) = status_cmd(&s);
        assert_eq!(code, 1, "{text}");
        // The container and its socket are still up.
        assert_eq!(s.request("ping"), vec!["pong"]);
        let started = s.request("start");
        assert!(started[0].starts_with("started pid="), "{started:?}");
        wait_readies(&s, 2);
        let restarted = s.request("restart");
        assert!(restarted[0].starts_with("restarted pid="), "{restarted:?}");
        assert_ne!(pid_of(&started[0]), pid_of(&restarted[0]));
        wait_readies(&s, 3);
        s.signal(SIGTERM);
        assert_eq!(s.wait(Duration::from_secs(10)).code(), Some(0));
    }
}

/// Each start of the signal logger says `ready` once its traps are set.
fn wait_readies(s: &Sup, n: usize) {
    let p = s.path("signals");
    wait_until(Duration::from_secs(10), &format!("start {n} ready"), || {
        let t = std::fs::read_to_string(&p).ok()?;
        (t.matches("ready").count() == n).then_some(())
    });
}

#[test]
fn status_follows_the_ready_probe() {
    let b = with_listener(Mode::Subreaper);
    let probe = b.dir().join("app.sock");
    let mut s = b
        .env("BOSUN_READY", &format!("socket:{}", probe.display()))
        .script("sleep 1000")
        .start();
    s.wait_socket();
    let (code, text) = status_cmd(&s);
    assert_eq!(code, 1, "not ready yet: {text}");
    assert!(
        text.contains("t starting") && text.contains("ready=no"),
        "{text}"
    );
    let _app = std::os::unix::net::UnixListener::bind(&probe).unwrap();
    wait_until(Duration::from_secs(10), "status to turn healthy", || {
        (status_cmd(&s).0 == 0).then_some(())
    });
    s.signal(SIGTERM);
    s.wait(Duration::from_secs(10));
}

#[test]
fn status_exec_probe() {
    let b = with_listener(Mode::Pid1);
    let flag = b.dir().join("ok");
    let s = b
        .env("BOSUN_READY", &format!("exec:test -e {}", flag.display()))
        .script("sleep 1000")
        .start();
    s.wait_socket();
    assert_eq!(status_cmd(&s).0, 1);
    std::fs::write(&flag, "").unwrap();
    wait_until(Duration::from_secs(10), "exec probe to pass", || {
        (status_cmd(&s).0 == 0).then_some(())
    });
}

#[test]
fn status_without_a_running_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(SUPERVISOR)
        .arg("status")
        .env("BOSUN_SERVICE", "gone")
        .env("BOSUN_RUN_DIR", dir.path())
        .env("BOSUN_CONFIG", dir.path().join("none.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("unhealthy: "));
}

#[test]
fn a_listener_killed_mid_action_answers_unavailable_and_comes_back() {
    for mode in MODES {
        let s = with_listener(mode).cmd(&["sleep", "1000"]).start();
        s.wait_socket();
        let mut c = UnixStream::connect(s.socket()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(b"slow\n").unwrap();
        let mut r = BufReader::new(c);
        let mut accepted = String::new();
        r.read_line(&mut accepted).unwrap();
        assert!(accepted.starts_with("accepted 1 slow"), "{accepted}");
        s.wait_stderr("[slow#1] started", Duration::from_secs(10));
        let listener = listener_pid(&s);
        kill(listener, SIGKILL);
        let mut err = String::new();
        r.read_line(&mut err).unwrap();
        assert!(
            err.starts_with("error unavailable request 1 (slow): listener crashed"),
            "{err}"
        );
        // While the listener restarts, connections wait in the backlog and are served.
        assert_eq!(s.request("ping"), vec!["pong"]);
        s.wait_stderr("crashed; restarting", Duration::from_secs(5));
        // The stopped action can run again, with a new id.
        let again = socat(&s.socket(), "hello there\n");
        assert!(
            again.starts_with("accepted 2 hello\ndone 2 exit=0"),
            "{again}"
        );
    }
}

fn kill(pid: i32, sig: i32) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[test]
fn the_user_form_and_nc() {
    let s = with_listener(Mode::Subreaper)
        .cmd(&["sleep", "1000"])
        .start();
    s.wait_socket();
    let out = Command::new("nc")
        .args(["-NU", s.socket().to_str().unwrap()])
        .stdin_bytes("forum hello a b\n")
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "accepted 1 hello", "{out}");
    assert!(lines[1].starts_with("done 1 exit=0 secs="), "{out}");
    s.wait_stderr("[hello#1] hello forum a b", Duration::from_secs(10));
}

#[test]
fn status_follows_sd_notify() {
    let b = with_listener(Mode::Subreaper);
    let flag = b.dir().join("go");
    // From the main process itself (bash exec'd into python keeps the pid): a helper such
    // as socat is another process, whose READY=1 does not count (NotifyAccess=main).
    let send = b.file(
        "send.py",
        "import os, socket, time\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.sendto(b'STATUS=up\\nREADY=1\\n', os.environ['NOTIFY_SOCKET'])\ntime.sleep(1000)\n",
    );
    let s = b
        .env("BOSUN_READY", "notify")
        .script(&format!(
            "while [ ! -e {} ]; do sleep 0.01; done; exec python3 {}",
            flag.display(),
            send.display()
        ))
        .start();
    s.wait_socket();
    let (code, text) = status_cmd(&s);
    assert_eq!(code, 1, "{text}");
    std::fs::write(&flag, "").unwrap();
    wait_until(
        Duration::from_secs(10),
        "READY=1 to make it healthy",
        || (status_cmd(&s).0 == 0).then_some(()),
    );
}

#[test]
fn an_idle_on_demand_service_is_healthy() {
    let b = with_listener(Mode::Subreaper);
    let listen = b.dir().join("site.sock");
    let s = b
        .env("BOSUN_ON_DEMAND_LISTEN", listen.to_str().unwrap())
        .cmd(&["sleep", "1000"])
        .start();
    s.wait_socket();
    let (code, text) = status_cmd(&s);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with("t idle pid=-") && text.contains("on_demand=held"),
        "{text}"
    );
}

#[test]
fn scheduler_send_against_the_real_supervisor() {
    let b = with_listener(Mode::Subreaper);
    b.file(
        "callbacks.sh",
        "CB_ok() { echo fine; }\nCB_fail() { return 7; }\n",
    );
    let s = b.cmd(&["sleep", "1000"]).start();
    s.wait_socket();
    let send = |args: &[&str]| {
        let out = Command::new(scheduler_path())
            .arg("send")
            .args(args)
            .env("BOSUN_RUN_DIR", s.path("run"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = send(&["--user", "forum", "t", "ok"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("accepted 1 ok\ndone 1 exit=0"), "{out}");
    assert_eq!(send(&["t", "fail"]).0, 7, "the action's own code");
    assert_eq!(send(&["t", "nope"]).0, 65, "an error reply");
    assert_eq!(send(&["absent", "ok"]).0, 69, "no such socket");
    assert_eq!(send(&["t", "ping"]), (0, "pong\n".to_string()));
    s.wait_stderr("[ok#1] fine", Duration::from_secs(5));
}

#[test]
fn the_scheduler_daemon_delivers_into_a_real_supervisor() {
    // `@reboot` fires as soon as the daemon starts: a real delivery without waiting for a
    // minute boundary. The schedule is edited by an editor-style rename while it runs.
    let b = with_listener(Mode::Subreaper);
    b.file(
        "callbacks.sh",
        "CB_hello() { echo \"hello $BOSUN_USER\"; }\n",
    );
    let s = b.cmd(&["sleep", "1000"]).start();
    s.wait_socket();
    let conf = s.path("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("schedule.cron"),
        "# test\n@reboot forum t hello\n",
    )
    .unwrap();
    let mut daemon = Command::new(scheduler_path())
        .arg(conf.join("schedule.cron"))
        .env("BOSUN_RUN_DIR", s.path("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    s.wait_stderr("[hello#1] hello forum", Duration::from_secs(10));
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err = daemon.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let logged = |needle: &str| {
        let log = log.clone();
        let needle = needle.to_string();
        wait_until(Duration::from_secs(10), &needle.clone(), move || {
            log.lock().unwrap().contains(&needle).then_some(())
        })
    };
    logged("exit=0");
    // A bad edit (editor-style rename) is refused and logged; the daemon keeps running.
    std::fs::write(conf.join("new"), "0 0 31 2 * t hello\n").unwrap();
    std::fs::rename(conf.join("new"), conf.join("schedule.cron")).unwrap();
    logged("never fires");
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "still running after a bad edit"
    );
    let _ = Command::new("kill").arg(daemon.id().to_string()).status();
    let st = daemon.wait().unwrap();
    let text = log.lock().unwrap().clone();
    assert_eq!(st.code(), Some(0), "exits 0 on TERM: {text}");
    assert!(
        text.contains("schedule.cron:1:") && text.contains("never fires"),
        "{text}"
    );
}

/// Expected: when the listener dies, what it started beyond the held action's own group
/// (here a callback's background job, in a process group of its own through `set -m`) is
/// stopped too: everything the listener started is in its session.
#[test]
fn a_crashed_listener_leaves_no_action_behind() {
    let b = sup(Mode::Subreaper).with_listener();
    let bg = b.dir().join("bg.pid");
    b.file(
        "callbacks.sh",
        &format!(
            "CB_forks() {{ set -m; sleep 1000 & echo $! > '{}'; set +m; echo started; sleep 1000; }}\n",
            bg.display()
        ),
    );
    let s = b.cmd(&["sleep", "1000"]).start();
    s.wait_socket();
    let mut c = UnixStream::connect(s.socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"forks\n").unwrap();
    let mut r = BufReader::new(c);
    let mut accepted = String::new();
    r.read_line(&mut accepted).unwrap();
    assert!(accepted.starts_with("accepted 1 forks"), "{accepted}");
    s.wait_stderr("[forks#1] started", Duration::from_secs(10));
    let bg: i32 = std::fs::read_to_string(&bg)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let group = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].split(' ').nth(2)?.parse().ok()
    };
    let action_group = wait_until(Duration::from_secs(5), "the action's bash", || {
        s.stderr()
            .lines()
            .find(|l| l.contains("started action=forks"))
            .and_then(|l| {
                l.split(" pgid=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<i32>()
                    .ok()
            })
    });
    assert_ne!(
        group(bg),
        Some(action_group),
        "the job has a group of its own"
    );
    kill(listener_pid(&s), SIGKILL);
    let mut err = String::new();
    r.read_line(&mut err).unwrap();
    assert!(
        err.starts_with("error unavailable request 1 (forks)"),
        "{err}"
    );
    wait_until(
        Duration::from_secs(10),
        "the background job stopped",
        || group(bg).is_none().then_some(()),
    );
    s.wait_stderr(
        "stopping what the crashed listener had started",
        Duration::from_secs(5),
    );
    assert_eq!(s.request("ping"), vec!["pong"]);
}

/// The supervisor's children named `listener`.
fn listeners(s: &Sup) -> usize {
    let sup = s.pid();
    std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == listener_comm())
        })
        .count()
}

#[test]
fn no_listener_runs_before_the_first_request_that_needs_one() {
    for mode in MODES {
        let s = with_listener(mode).cmd(&["sleep", "1000"]).start();
        s.wait_socket();
        // ping and status, whole lines or cut short by the client, answered by the
        // supervisor itself.
        for _ in 0..5 {
            assert_eq!(socat(&s.socket(), "ping\n"), "pong\n");
            assert_eq!(socat(&s.socket(), "ping"), "pong\n");
            let st = socat(&s.socket(), "status\n");
            assert!(st.starts_with("t running pid="), "{st}");
        }
        assert_eq!(listeners(&s), 0, "{}", s.stderr());
        // A client that connects and says nothing yet does not start it either.
        let idle = UnixStream::connect(s.socket()).unwrap();
        assert_eq!(socat(&s.socket(), "ping\n"), "pong\n");
        assert_eq!(listeners(&s), 0);
        drop(idle);
        // An action starts it, and gets its reply through it.
        let out = socat(&s.socket(), "hello a b\n");
        assert!(out.starts_with("accepted 1 hello\ndone 1 exit=0"), "{out}");
        assert_eq!(listeners(&s), 1);
        assert_eq!(socat(&s.socket(), "ping\n"), "pong\n");
    }
}

#[test]
fn listener_start_boot_starts_it_at_once() {
    for mode in MODES {
        let s = with_listener(mode)
            .env("BOSUN_LISTENER_START", "boot")
            .cmd(&["sleep", "1000"])
            .start();
        s.wait_socket();
        wait_until(Duration::from_secs(10), "a listener", || {
            (listeners(&s) == 1).then_some(())
        });
    }
}

#[test]
fn an_idle_listener_exits_and_the_next_request_starts_another() {
    for mode in MODES {
        let s = with_listener(mode)
            .env("BOSUN_LISTENER_IDLE", "1s")
            .cmd(&["sleep", "1000"])
            .start();
        s.wait_socket();
        let out = socat(&s.socket(), "hello a\n");
        assert!(out.starts_with("accepted 1 hello\ndone 1 exit=0"), "{out}");
        assert_eq!(listeners(&s), 1);
        wait_until(Duration::from_secs(10), "the idle listener to exit", || {
            (listeners(&s) == 0).then_some(())
        });
        s.wait_stderr("exited, idle", Duration::from_secs(10));
        // Not a crash: nothing about one in the log, and the supervisor answers at once.
        assert!(!s.stderr().contains("crashed"), "{}", s.stderr());
        assert_eq!(socat(&s.socket(), "ping\n"), "pong\n");
        // The next action starts a new one, and ids go on.
        let out = socat(&s.socket(), "hello b\n");
        assert!(out.starts_with("accepted 2 hello\ndone 2 exit=0"), "{out}");
        assert_eq!(listeners(&s), 1);
    }
}
