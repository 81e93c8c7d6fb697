//! The one reaper. `waitpid(-1)` takes the exit status of every child, including orphans
//! re-parented to us, so nothing else in this process may wait for children.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::signals::Exit;

/// Collects every child that has ended, without blocking. `no_children` is true when
/// there is no child left at all (`ECHILD`).
pub fn reap_all(out: &mut Vec<(Pid, Exit)>) -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => out.push((pid, Exit::Signal(sig as i32))),
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}
