//! Signals: names as users write them (`TERM`, `SIGTERM`, `term`, `15`), and sending one
//! to a whole process group, which is how every child tree of bosun is signalled.

use std::str::FromStr;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Parses `TERM`, `SIGTERM`, `term` or a number.
pub fn parse(text: &str) -> Result<Signal, String> {
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

/// The short name (`TERM`), as users write it.
pub fn name(sig: Signal) -> &'static str {
    let s = sig.as_str();
    s.strip_prefix("SIG").unwrap_or(s)
}

/// Signals the process group `pgid`, falling back to the process alone when it has no
/// group of its own yet (between fork and setpgid). `ESRCH` from both means it is already
/// gone, which is no error.
pub fn signal_group(pgid: Pid, sig: Signal) -> nix::Result<()> {
    match killpg(pgid, sig) {
        Err(Errno::ESRCH) => match kill(pgid, sig) {
            Err(Errno::ESRCH) => Ok(()),
            r => r,
        },
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse("sigquit"), Ok(Signal::SIGQUIT));
        assert_eq!(parse(" 10 "), Ok(Signal::SIGUSR1));
        assert!(parse("TERMINATE")
            .unwrap_err()
            .contains("not a signal name"));
        assert!(parse("99").is_err());
        assert_eq!(name(Signal::SIGHUP), "HUP");
    }

    #[test]
    fn group_signalling() {
        use std::os::unix::process::CommandExt;
        // A child in a group of its own, TERMed through the group.
        let mut c = std::process::Command::new("sleep");
        c.arg("100").process_group(0);
        let mut child = c.spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        signal_group(pid, Signal::SIGTERM).unwrap();
        let st = child.wait().unwrap();
        assert_eq!(crate::exit::Exit::from(st).code(), 143);
        // Gone: no error.
        assert_eq!(signal_group(pid, Signal::SIGTERM), Ok(()));
    }
}
