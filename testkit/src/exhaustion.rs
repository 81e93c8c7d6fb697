//! Descriptors running out and CPU spent: what the exhaustion tests check a program by
//! (a small `RLIMIT_NOFILE` set between fork and exec, silent clients, ticks in /proc).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use crate::supervisor::{Builder, Sup};
use crate::wait::wait_until;

/// Clock ticks per second of `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf only reads a constant.
    u64::try_from(unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }).unwrap_or(100)
}

/// User plus system CPU ticks `pid` has used.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (in parentheses, which may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU ticks `pid` uses over `over`.
pub fn ticks_over(pid: i32, over: Duration) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(over);
    cpu_ticks(pid) - before
}

/// How many descriptors `pid` has open.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Starts the built supervisor with `RLIMIT_NOFILE` at `n` (soft and hard).
pub fn start_limited(b: Builder, n: u64) -> Sup {
    b.start_with(move |c| {
        // SAFETY: setrlimit between fork and exec, on a plain-data struct of this frame.
        unsafe {
            c.pre_exec(move || {
                let lim = nix::libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Clients that connect and send nothing, held open until dropped.
pub fn silent_clients(path: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .filter_map(|_| UnixStream::connect(path).ok())
        .collect()
}

/// `ping` until it is answered `pong`, within `deadline`.
pub fn pong_within(path: &Path, deadline: Duration) {
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
pub fn assert_no_spin(pid: i32, what: &str) {
    let over = Duration::from_secs(2);
    let ticks = ticks_over(pid, over);
    let busy = clk_tck() * 2;
    eprintln!("{what}: {ticks} CPU ticks in {over:?} (a busy loop: about {busy})");
    assert!(
        ticks * 10 < busy,
        "{what}: {ticks} ticks in {over:?}: a busy loop"
    );
}
