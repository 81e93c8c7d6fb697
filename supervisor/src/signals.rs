//! Which signals sent to the supervisor are forwarded to the main process. Signal names
//! (`common::signal::parse`) and how an end becomes an exit code (`common::exit`: the
//! code, or `128+N` for death by signal N, as tini and every shell do) are shared with the
//! listener and the scheduler.

use nix::sys::signal::Signal;

pub use common::exit::Exit;

/// Whether a signal sent to the supervisor is passed on to the main process's group, as
/// tini does: every signal but CHLD, KILL and STOP, the fault signals (ILL TRAP ABRT BUS
/// FPE SEGV SYS, which are about the supervisor itself) and the job-control stops (TSTP
/// TTIN TTOU). TERM, INT and QUIT are passed on too, by the stop sequence.
pub fn forwarded(sig: Signal) -> bool {
    use Signal::*;
    !matches!(
        sig,
        SIGCHLD
            | SIGKILL
            | SIGSTOP
            | SIGILL
            | SIGTRAP
            | SIGABRT
            | SIGBUS
            | SIGFPE
            | SIGSEGV
            | SIGSYS
            | SIGTSTP
            | SIGTTIN
            | SIGTTOU
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_what_tini_forwards() {
        use Signal::*;
        for s in [
            SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGCONT, SIGURG,
            SIGSTKFLT, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR,
        ] {
            assert!(forwarded(s), "{s:?}");
        }
        for s in [
            SIGCHLD, SIGKILL, SIGSTOP, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS,
            SIGTSTP, SIGTTIN, SIGTTOU,
        ] {
            assert!(!forwarded(s), "{s:?}");
        }
    }
}
