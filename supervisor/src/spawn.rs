//! Starting children: the main process (through the setup script when there is one), the
//! listener and the ready probe. Nothing here waits for a child: the supervisor's one
//! reaper does that, so `Child` handles are dropped at once and only pids are kept.
//!
//! Every child gets its own process group, so signals can be sent to a whole tree with
//! `killpg`, and starts with the signal state the supervisor itself was started with, as
//! tini does: the inherited mask, and SIG_IGN for what was inherited ignored (`nohup`, a
//! shell that ignores INT for a background job), SIG_DFL for the rest. That state has to
//! be read before anything changes it: the supervisor blocks every signal to read them
//! from a signalfd, and Rust's runtime sets SIGPIPE to SIG_IGN before `main`. So a
//! constructor in `.init_array` (`CAPTURE`) records it before either runs, and each
//! child gives it back between fork and exec ([`restore_inherited`]).
//!
//! When `PATH` is unset, the main process is looked up in, and given, docker's default
//! search path ([`DEFAULT_PATH`]) rather than failing with 127.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::unistd::{getpid, setgid, setgroups, setpgid, setsid, setuid, tcsetpgrp, Pid};

use crate::config::{RunAs, Settings, DEFAULT_PATH};

/// The shell that sources the setup script, then replaces itself with the main process.
/// `$0` is the setup script; a failing setup ends the start with its own exit code.
const SETUP_WRAPPER: &str = r#". "$0"; rc=$?
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
/// With a setup script, the shell (`bash`, else `/bin/sh`) sources it and then `exec`s the main process, so what the
/// script exports reaches the main process. Privileges are dropped after setup (which
/// runs as root) by exec'ing `supervisor --exec-as`, which is also what sets `LISTEN_PID`
/// to the final pid for socket handoff: `exec` keeps the pid, so it is the main process's.
pub fn spawn_main(s: &Settings, self_exe: &Path, handoff: Option<Handoff<'_>>) -> io::Result<Pid> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(setup) = &s.setup {
        argv.extend([
            common::shell::shell().into(),
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
    default_path(&mut cmd);
    if let Some(r) = &s.run_as {
        set_user_env(&mut cmd, r);
    }
    if let Some(n) = s.notify_path() {
        cmd.env("NOTIFY_SOCKET", n);
    }
    // The setup script and the main process name their own files after it (DESIGN.md
    // section 10: replicas sharing directories).
    if let Some(n) = s.instance {
        cmd.env("BOSUN_INSTANCE", n.to_string());
    }
    let held = handoff.map(|h| {
        cmd.env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", h.name)
            .env("FPM_SOCKETS", format!("{}=3", h.key));
        h.fd
    });
    // SAFETY: isatty(3) on fd 0 only reads its state.
    let tty = unsafe { libc::isatty(0) } == 1;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (dup2, fcntl, sigprocmask, sigaction, setpgid, tcsetpgrp, setgroups,
    // setgid, setuid).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = held {
                place(fd, 3)?;
            }
            own_group()?;
            if tty {
                take_terminal();
            }
            if let Some(r) = &drop_here {
                drop_privileges(r)?;
            }
            restore_inherited()
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
    default_path(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let (l, c) = (listen.as_raw_fd(), control.as_raw_fd());
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl, setsid, sigaction,
    // sigprocmask) between fork and exec.
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
            // What it starts (the actions) inherits this state in turn; the signals the
            // listener itself lives by are never left blocked.
            restore_inherited()?;
            unblock(&[libc::SIGTERM, libc::SIGINT, libc::SIGCHLD])
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Starts `sh -c COMMAND` (the `exec:` ready probe) with no output on the container log
/// beyond its stderr.
pub fn spawn_probe(command: &str) -> io::Result<Pid> {
    let mut cmd = Command::new("/bin/sh");
    default_path(&mut cmd);
    cmd.arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // SAFETY: async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(|| {
            own_group()?;
            restore_inherited()
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

/// Makes the calling child's process group the terminal's foreground group, as tini does,
/// so that an interactive main process can read the terminal and use job control. A
/// process in a background group that calls `tcsetpgrp` gets SIGTTOU unless it blocks it:
/// it is blocked here (the supervisor's whole mask still is) until the inherited mask is
/// given back. Errors are ignored as tini ignores them: no controlling terminal (ENOTTY),
/// one that went away (ENXIO, EIO).
fn take_terminal() {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset fill it; sigprocmask and
    // tcsetpgrp are async-signal-safe; fd 0 stays open for the call.
    unsafe {
        let mut ttou: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut ttou);
        libc::sigaddset(&mut ttou, libc::SIGTTOU);
        libc::sigprocmask(libc::SIG_BLOCK, &ttou, std::ptr::null_mut());
        let _ = tcsetpgrp(BorrowedFd::borrow_raw(0), getpid());
    }
}

// ----- the signal state the supervisor was started with ----------------------------

/// Gives a child [`DEFAULT_PATH`] when the supervisor has no `PATH` (std then also looks
/// the program up in it).
fn default_path(cmd: &mut Command) {
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
}

/// Signals 1..=64 as bits (bit N-1 for signal N), the kernel's own layout.
const NSIG: libc::c_int = 64;

/// Whether [`capture`] ran (it does before `main` wherever `.init_array` is honoured, as
/// with glibc and musl); without it children get an empty mask and default dispositions.
static CAPTURED: AtomicBool = AtomicBool::new(false);
/// The signal mask the supervisor was started with.
static INHERITED_MASK: AtomicU64 = AtomicU64::new(0);
/// The signals that were SIG_IGN when the supervisor started.
static INHERITED_IGNORED: AtomicU64 = AtomicU64::new(0);
/// The soft open-file limit the supervisor was started with (it raises its own, see
/// `common::rlimit`); `u64::MAX` when unknown.
static INHERITED_NOFILE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Runs [`capture`] before `main` (and before Rust's runtime ignores SIGPIPE).
// `#[used]` keeps it in the object file; [`inherited`] refers to it, so the linker keeps
// that object, and with it this `.init_array` entry, in every binary that spawns.
#[used]
#[link_section = ".init_array"]
static CAPTURE: extern "C" fn() = capture;

/// Records the signal mask and the ignored signals this process was started with.
extern "C" fn capture() {
    let (mut mask, mut ignored) = (0u64, 0u64);
    // SAFETY: sigprocmask and sigaction only read the state into the zeroed plain-data
    // structs given; nothing else runs yet (no thread exists before main).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) != 0 {
            return;
        }
        for sig in 1..=NSIG {
            if libc::sigismember(&set, sig) == 1 {
                mask |= bit(sig);
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut act) == 0
                && act.sa_sigaction == libc::SIG_IGN
            {
                ignored |= bit(sig);
            }
        }
        // An ignored SIGCHLD makes the kernel reap children itself: the supervisor would
        // never learn how the main process ended. It is the children's to ignore, not ours.
        if ignored & bit(libc::SIGCHLD) != 0 {
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
    }
    // SAFETY: getrlimit fills the zeroed plain-data struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            INHERITED_NOFILE.store(lim.rlim_cur, Ordering::Relaxed);
        }
    }
    INHERITED_MASK.store(mask, Ordering::Relaxed);
    INHERITED_IGNORED.store(ignored, Ordering::Relaxed);
    CAPTURED.store(true, Ordering::Relaxed);
}

fn bit(sig: libc::c_int) -> u64 {
    1 << (sig - 1)
}

/// The signal state the supervisor was started with: (blocked, ignored), as bit sets.
pub fn inherited() -> (u64, u64) {
    // A use of CAPTURE: see there.
    let _ = std::hint::black_box(&CAPTURE);
    if !CAPTURED.load(Ordering::Relaxed) {
        return (0, 0);
    }
    (
        INHERITED_MASK.load(Ordering::Relaxed),
        INHERITED_IGNORED.load(Ordering::Relaxed),
    )
}

/// In a child between fork and exec: the dispositions and mask the supervisor inherited
/// (SIG_IGN where it was, SIG_DFL elsewhere), and the soft open-file limit it was started
/// with. Only async-signal-safe calls.
pub fn restore_inherited() -> io::Result<()> {
    let (mask, ignored) = inherited();
    let nofile = INHERITED_NOFILE.load(Ordering::Relaxed);
    if nofile != u64::MAX {
        // SAFETY: getrlimit/setrlimit on plain-data structs of this frame; both are
        // plain syscalls. Lowering the soft limit never fails while it stays <= hard.
        unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur != nofile {
                lim.rlim_cur = nofile.min(lim.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
    // SAFETY: sigaction, sigemptyset, sigaddset and sigprocmask on plain-data structs of
    // this stack frame; all async-signal-safe. A signal the C library keeps for itself
    // (glibc's 32 and 33) is refused with EINVAL, which is fine: it is left as it is.
    unsafe {
        for sig in 1..=NSIG {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = if ignored & bit(sig) != 0 {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in 1..=NSIG {
            if mask & bit(sig) != 0 {
                libc::sigaddset(&mut set, sig);
            }
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Unblocks `sigs` in the calling process (async-signal-safe).
fn unblock(sigs: &[libc::c_int]) -> io::Result<()> {
    // SAFETY: as in restore_inherited.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in sigs {
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Drops to `r`: supplementary groups first (they need root; `initgroups` semantics, as
/// resolved with the settings), then gid, then uid.
pub fn drop_privileges(r: &RunAs) -> io::Result<()> {
    let groups: &[nix::unistd::Gid] = if r.groups.is_empty() {
        std::slice::from_ref(&r.gid)
    } else {
        &r.groups
    };
    setgroups(groups).map_err(io::Error::from)?;
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
