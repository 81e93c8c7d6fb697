//! Faults: a signal storm, too few file descriptors, a full run directory, a main process
//! and a callback killed mid-work. In each case the supervisor stays up (or exits with its
//! documented code), the socket keeps answering, and no zombie is left.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

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

#[test]
fn a_signal_storm_is_forwarded_without_harm() {
    let b = sup(Mode::Subreaper).with_listener();
    b.file("callbacks.sh", "CB_noop() { :; }\n");
    let mut s = b
        .script(r#"trap 'n=$((n+1))' HUP USR1; echo ready > $T/ready; while :; do sleep 0.2 & wait $!; done"#)
        .start();
    s.wait_socket();
    s.wait_file("ready", "ready", Duration::from_secs(10));
    let pid = s.pid();
    let end = Instant::now() + Duration::from_secs(3);
    let mut sent = 0u64;
    while Instant::now() < end {
        for sig in [SIGHUP, SIGUSR1] {
            // SAFETY: kill(2) on the supervisor we started.
            unsafe { libc_kill(pid, sig) };
            sent += 1;
        }
    }
    assert!(sent > 1000, "only {sent} signals sent");
    assert_eq!(s.request("ping"), vec!["pong"]);
    assert!(
        s.request("status")[0].contains(" running "),
        "main process survived"
    );
    assert_eq!(zombies_of(pid), 0);
    s.signal(SIGTERM);
    let st = s.wait(Duration::from_secs(10));
    assert!(st.code().is_some(), "supervisor ended by itself");
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

#[test]
fn a_full_run_directory_is_a_clear_setup_error() {
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:\t0\t"))
    {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    }
    let b = sup(Mode::Subreaper);
    let run = b.dir().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let cmd = b.command();
    let mut args: Vec<String> = vec![cmd.get_program().to_string_lossy().into_owned()];
    args.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    args.extend(["--".into(), "true".into()]);
    // A tmpfs with room for one inode (its root): the socket cannot be created.
    let script = format!(
        "mount -t tmpfs -o size=16k,nr_inodes=1 tmpfs {run} && exec \"$@\"",
        run = run.display()
    );
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .args(&args);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
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

/// Maps a pid inside the supervisor's PID namespace to ours.
fn outer_pid(s: &Sup, inner: i32) -> i32 {
    if s.mode == Mode::Subreaper {
        return inner;
    }
    let sup = s.pid();
    let kids = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).unwrap();
    kids.split_whitespace()
        .map(|p| p.parse::<i32>().unwrap())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.starts_with("NSpid:")
                        && l.split_whitespace().last() == Some(inner.to_string().as_str())
                })
        })
        .expect("pid among the supervisor's children")
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
