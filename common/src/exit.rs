//! Exit codes: the ones bosun's programs use for their own errors, and how a child's end
//! becomes a code (`code`, or 128+N for a death by signal N, as tini and every shell do).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

/// The supervisor's own setup errors (bad settings, socket taken), as Docker's 125.
pub const SETUP: u8 = 125;
/// The main command exists but cannot be run (as a shell says).
pub const NOT_EXECUTABLE: u8 = 126;
/// The main command does not exist (as a shell says).
pub const NOT_FOUND: u8 = 127;
/// The listener's bad settings or missing socket (the supervisor should not retry fast).
pub const LISTENER_CONFIG: u8 = 2;
/// sysexits' EX_USAGE: bad command line or settings (scheduler, supervisor's clap).
pub const USAGE: u8 = 64;
/// sysexits' EX_DATAERR: `scheduler send` got another `error` reply.
pub const ERROR_REPLY: u8 = 65;
/// sysexits' EX_UNAVAILABLE: the socket is absent or refuses, or the service is
/// `unavailable`.
pub const UNAVAILABLE: u8 = 69;

/// The code for a death by signal `n`.
pub const fn of_signal(n: i32) -> i32 {
    128 + n
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
            Exit::Signal(s) => of_signal(s),
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl From<ExitStatus> for Exit {
    fn from(st: ExitStatus) -> Exit {
        match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            // Stopped or continued: not an end; reported as a failure rather than a panic.
            (None, None) => Exit::Code(1),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "{c}"),
            Exit::Signal(s) => {
                let name = Signal::try_from(*s).map(|s| s.as_str()).unwrap_or("?");
                write!(f, "{} ({name})", of_signal(*s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Exit::Code(3).code(), 3);
        assert_eq!(Exit::Signal(15).code(), 143);
        assert_eq!(of_signal(9), 137);
        assert_eq!(Exit::Signal(9).to_string(), "137 (SIGKILL)");
        assert!(Exit::Code(0).success() && !Exit::Signal(0).success());
    }

    #[test]
    fn from_status() {
        assert_eq!(Exit::from(ExitStatus::from_raw(3 << 8)), Exit::Code(3));
        assert_eq!(Exit::from(ExitStatus::from_raw(9)), Exit::Signal(9));
    }
}
