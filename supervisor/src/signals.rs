//! Signal names as users write them (`TERM`, `SIGTERM`, `15`), and how an exit status
//! becomes the supervisor's own exit code (`code`, or `128+N` for death by signal N, as
//! tini and every shell do).

use nix::sys::signal::Signal;
use std::str::FromStr;

/// Parses `TERM`, `SIGTERM`, `term` or a number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{t:?} is not a signal number"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| {
        format!("{t:?} is not a signal name (try TERM, INT, QUIT, HUP, USR1, USR2, WINCH or KILL)")
    })
}

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

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The conventional shell code: the exit code, or 128+N.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "{c}"),
            Exit::Signal(s) => {
                let name = Signal::try_from(*s).map(|s| s.as_str()).unwrap_or("?");
                write!(f, "{} ({name})", 128 + s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigquit"), Ok(Signal::SIGQUIT));
        assert_eq!(parse_signal("10"), Ok(Signal::SIGUSR1));
        assert!(parse_signal("TERMINATE")
            .unwrap_err()
            .contains("not a signal name"));
        assert!(parse_signal("99").is_err());
    }

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

    #[test]
    fn codes() {
        assert_eq!(Exit::Code(3).code(), 3);
        assert_eq!(Exit::Signal(15).code(), 143);
        assert_eq!(Exit::Signal(9).to_string(), "137 (SIGKILL)");
    }
}
