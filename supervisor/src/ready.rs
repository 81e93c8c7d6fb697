//! Readiness probes of the main process: `socket:PATH` and `tcp:HOST:PORT` are checked
//! in-process with a connect (non-blocking for unix sockets, a short timeout for TCP);
//! `exec:COMMAND` runs a child that the supervisor's reaper collects like any other.
//!
//! `notify` (sd_notify): the main process sends `READY=1` to `$NOTIFY_SOCKET`, a datagram
//! socket file in the run dir, mode 0600 and owned by the `run_as` user (so a main
//! process that dropped privileges can send, and nobody else can). The kernel attaches
//! the sender's credentials (`SO_PASSCRED`), and only the main process's own pid counts,
//! as with systemd's `NotifyAccess=main`: a helper it starts (`systemd-notify`, socat)
//! is not the main process. A file rather than an abstract socket name: an abstract name
//! has no permissions at all and is shared by everything in the network namespace (a
//! Kubernetes pod's containers, a `network_mode: host` host), and two supervisors there
//! would collide on it.

use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::config::Ready;

/// Checks a connect-style probe now; `None` for `exec:` probes, which need a child.
pub fn check_connect(r: &Ready) -> Option<bool> {
    match r {
        Ready::Socket(p) => Some(UnixStream::connect(p).is_ok()),
        Ready::Tcp(a) => Some(TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()),
        Ready::Exec(_) | Ready::Notify => None,
    }
}

/// What the notify socket said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notified {
    /// `READY=1` came from the main process.
    pub ready: bool,
    /// Pids of senders of `READY=1` that are not the main process (0: no credentials).
    pub ignored: Vec<i32>,
}

/// Whether a datagram's text says `READY=1` (one of its lines).
pub fn says_ready(payload: &[u8]) -> bool {
    payload.split(|&b| b == b'\n').any(|l| l == b"READY=1")
}

/// Whether a sender's word counts: it is the main process (`NotifyAccess=main`).
pub fn from_main(sender: Option<i32>, main: Option<i32>) -> bool {
    sender.is_some() && sender == main
}

/// Reads every datagram waiting on the notify socket (non-blocking), with its sender's
/// credentials, and judges them against the main process's pid.
pub fn read_notify(sock: BorrowedFd<'_>, main: Option<i32>) -> Notified {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials};
    let mut out = Notified::default();
    let mut buf = [0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!(UnixCredentials);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let (n, sender) = match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => {
                let sender = m.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cr) => Some(cr.pid()),
                        _ => None,
                    })
                });
                (m.bytes, sender)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return out,
        };
        if !says_ready(&buf[..n]) {
            continue;
        }
        if from_main(sender, main) {
            out.ready = true;
        } else {
            out.ignored.push(sender.unwrap_or(0));
        }
    }
}

/// The interval between probes: quick at first, then once a second.
pub fn next_interval(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(5)).min(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn socket_probe() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let r = Ready::Socket(p.clone());
        assert_eq!(check_connect(&r), Some(false));
        let _l = UnixListener::bind(&p).unwrap();
        assert_eq!(check_connect(&r), Some(true));
    }

    #[test]
    fn tcp_probe() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let r = Ready::Tcp(a);
        assert_eq!(check_connect(&r), Some(true));
        drop(l);
        assert_eq!(check_connect(&r), Some(false));
    }

    #[test]
    fn only_the_main_process_says_ready() {
        assert!(says_ready(b"STATUS=up\nREADY=1\n"));
        assert!(says_ready(b"READY=1"));
        assert!(!says_ready(b"READY=10\nSTATUS=READY=1"));
        assert!(from_main(Some(42), Some(42)));
        assert!(!from_main(Some(43), Some(42)));
        assert!(
            !from_main(None, Some(42)),
            "no credentials: not the main process"
        );
        assert!(!from_main(Some(42), None), "no main process runs");
    }

    #[test]
    fn credentials_decide() {
        use nix::sys::socket::{setsockopt, sockopt};
        use std::os::fd::AsFd;
        use std::os::unix::net::UnixDatagram;
        let (rx, tx) = UnixDatagram::pair().unwrap();
        setsockopt(&rx, sockopt::PassCred, &true).unwrap();
        rx.set_nonblocking(true).unwrap();
        tx.send(b"READY=1\n").unwrap();
        let me = std::process::id() as i32;
        assert_eq!(
            read_notify(rx.as_fd(), Some(me)),
            Notified {
                ready: true,
                ignored: vec![]
            }
        );
        tx.send(b"READY=1\n").unwrap();
        tx.send(b"STATUS=still\n").unwrap();
        assert_eq!(
            read_notify(rx.as_fd(), Some(me + 1)),
            Notified {
                ready: false,
                ignored: vec![me]
            }
        );
    }

    #[test]
    fn intervals_are_capped() {
        assert_eq!(next_interval(0), Duration::from_millis(50));
        assert_eq!(next_interval(30), Duration::from_millis(1000));
    }
}
