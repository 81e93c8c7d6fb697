//! Starting children: the main process (through the setup script when there is one) and
//! the listener. Nothing here waits for a child: the supervisor's one reaper does that,
//! so `Child` handles are dropped at once and only pids are kept.
//!
//! Every child gets an empty signal mask (the supervisor blocks everything to read signals
//! through a signalfd, and a mask survives `exec`) and its own process group, so signals
//! can be sent to a whole tree with `killpg`.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{getpid, isatty, setgid, setgroups, setpgid, setsid, setuid, tcsetpgrp, Pid};

use crate::config::{RunAs, Settings};

/// The shell that sources the setup script, then replaces itself with the main process.
/// `$0` is the setup script; a failing setup ends the start with its own exit code.
const SETUP_WRAPPER: &str = r#"source "$0"; rc=$?
if [ "$rc" -ne 0 ]; then echo "bosun: setup script $0 failed with exit $rc" >&2; exit "$rc"; fi
exec "$@""#;

/// A listening socket handed to the main process as fd 3 (on-demand handoff mode).
#[derive(Debug, Clone, Copy)]
pub struct Handoff<'a> {
    pub fd: RawFd,
    /// `FPM_SOCKETS` key: the address as php-fpm's `listen` names it.
    pub key: &'a str,
    /// `LISTEN_FDNAMES` entry.
    pub name: &'a str,
}

/// Starts the main process and returns its pid (also its process group id).
///
/// With a setup script, `bash` sources it and then `exec`s the main process, so what the
/// script exports reaches the main process. Privileges are dropped after setup (which
/// runs as root) by exec'ing `supervisor --exec-as`, which is also what sets `LISTEN_PID`
/// to the final pid for socket handoff: `exec` keeps the pid, so it is the main process's.
pub fn spawn_main(s: &Settings, self_exe: &Path, handoff: Option<Handoff<'_>>) -> io::Result<Pid> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(setup) = &s.setup {
        argv.extend([
            "bash".into(),
            "-c".into(),
            SETUP_WRAPPER.into(),
            setup.into(),
        ]);
    }
    // Drop privileges in the child itself unless a setup script must run as root first.
    let mut drop_here = s.run_as.clone();
    if handoff.is_some() || (s.setup.is_some() && drop_here.is_some()) {
        argv.extend([self_exe.into(), "--exec-as".into()]);
        if let Some(r) = drop_here.take() {
            argv.extend(["--run-as".into(), format!("{}:{}", r.uid, r.gid).into()]);
        }
        if handoff.is_some() {
            argv.push("--listen-pid".into());
        }
        argv.push("--".into());
    }
    argv.extend(s.exec.iter().cloned());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some(r) = &s.run_as {
        set_user_env(&mut cmd, r);
    }
    if let Some(n) = s.notify_path() {
        cmd.env("NOTIFY_SOCKET", n);
    }
    let held = handoff.map(|h| {
        cmd.env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", h.name)
            .env("FPM_SOCKETS", format!("{}=3", h.key));
        h.fd
    });
    let tty = isatty(std::io::stdin()).unwrap_or(false);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (dup2, fcntl, sigprocmask, setpgid, tcsetpgrp, setgroups, setgid, setuid).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = held {
                place(fd, 3)?;
            }
            own_group()?;
            if tty {
                // Give the terminal to the child's group, as tini does, so an interactive
                // main process can read it. SIGTTOU is still blocked here.
                let _ = tcsetpgrp(BorrowedFd::borrow_raw(0), getpid());
            }
            if let Some(r) = &drop_here {
                drop_privileges(r)?;
            }
            unblock_signals()
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Starts the listener with the request socket as fd 3 and the control socket as fd 4.
pub fn spawn_listener(
    exe: &Path,
    listen: BorrowedFd<'_>,
    control: BorrowedFd<'_>,
    env: &[(String, String)],
) -> io::Result<Pid> {
    let mut cmd = Command::new(exe);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let (l, c) = (listen.as_raw_fd(), control.as_raw_fd());
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl, setsid, sigprocmask)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Move the control fd out of the way first in case it sits on fd 3.
            let c2 = if c == proto::control::LISTEN_FD {
                place(c, 10)?
            } else {
                c
            };
            place(l, proto::control::LISTEN_FD)?;
            place(c2, proto::control::CONTROL_FD)?;
            // A listener must not outlive its supervisor (it would hold the socket and
            // run actions nobody supervises): it gets TERM when the supervisor is gone.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                return Err(io::Error::last_os_error());
            }
            // A session of its own (and so a group): everything it starts stays in that
            // session, which is how the supervisor finds its actions when it dies.
            setsid().map_err(io::Error::from)?;
            unblock_signals()
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Starts `sh -c COMMAND` (the `exec:` ready probe) with no output on the container log
/// beyond its stderr.
pub fn spawn_probe(command: &str) -> io::Result<Pid> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // SAFETY: async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(|| {
            own_group()?;
            unblock_signals()
        });
    }
    Ok(Pid::from_raw(cmd.spawn()?.id() as i32))
}

/// Puts `fd` at `target` without close-on-exec.
fn place(fd: RawFd, target: RawFd) -> io::Result<RawFd> {
    // SAFETY: plain fcntl/dup2 syscalls on fds open in this (child) process; both are
    // async-signal-safe.
    let rc = unsafe {
        if fd == target {
            // dup2 onto itself would keep FD_CLOEXEC; clear it instead.
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

fn own_group() -> io::Result<()> {
    setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(io::Error::from)
}

fn unblock_signals() -> io::Result<()> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)
}

/// Drops to `r`: supplementary groups first (they need root), then gid, then uid.
pub fn drop_privileges(r: &RunAs) -> io::Result<()> {
    setgroups(&[r.gid]).map_err(io::Error::from)?;
    setgid(r.gid).map_err(io::Error::from)?;
    setuid(r.uid).map_err(io::Error::from)
}

fn set_user_env(cmd: &mut Command, r: &RunAs) {
    if let Some(u) = &r.user {
        cmd.env("HOME", &u.dir)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
    }
}
