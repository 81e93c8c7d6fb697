//! Readiness probes of the main process: `socket:PATH` and `tcp:HOST:PORT` are checked
//! in-process with a non-blocking connect, which PID 1 never waits on: a unix connect
//! answers at once, a TCP one still in progress is polled by the loop and judged when it
//! is writable ([`connected`]), so a port that never answers costs no time at all (the
//! next probe, paced by the core, drops it). `exec:COMMAND` runs a child that the
//! supervisor's reaper collects like any other. When probes run is the core's decision.
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

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::config::{Addr, Ready};
use crate::socket::connect_nonblocking;

/// A connect-style probe, started.
#[derive(Debug)]
pub enum Connect {
    /// Decided at once: `true` when something listens.
    Done(bool),
    /// A TCP connect in progress: poll it for writable, then ask [`connected`].
    Pending(OwnedFd),
}

/// Starts a connect-style probe without waiting; `None` for `exec:` and `notify` probes.
pub fn start_connect(r: &Ready) -> Option<Connect> {
    let (addr, tcp) = match r {
        Ready::Socket(p) => (Addr::Unix(p.clone()), false),
        Ready::Tcp(a) => (Addr::Tcp(*a), true),
        Ready::Exec(_) | Ready::Notify => return None,
    };
    Some(match connect_nonblocking(&addr) {
        Ok(Some(fd)) if tcp => Connect::Pending(fd),
        // A unix connect is done at once; a full backlog (`EAGAIN`) is a listener too.
        Ok(_) => Connect::Done(true),
        Err(_) => Connect::Done(false),
    })
}

/// Whether a connect that became writable (or failed) succeeded.
pub fn connected(fd: &OwnedFd) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::SocketError};
    getsockopt(&fd.as_fd(), SocketError).is_ok_and(|e| e == 0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    use std::time::{Duration, Instant};

    fn done(c: Option<Connect>) -> Option<bool> {
        match c? {
            Connect::Done(ok) => Some(ok),
            Connect::Pending(_) => None,
        }
    }

    /// Waits (with a deadline) for a pending connect to be decided.
    fn outcome(c: Option<Connect>, within: Duration) -> Option<bool> {
        let fd = match c? {
            Connect::Done(ok) => return Some(ok),
            Connect::Pending(fd) => fd,
        };
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        let ms = u16::try_from(within.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut p, PollTimeout::from(ms)) {
            Ok(1) => Some(connected(&fd)),
            _ => None,
        }
    }

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    #[test]
    fn socket_probe() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let r = Ready::Socket(p.clone());
        assert_eq!(done(start_connect(&r)), Some(false));
        let _l = UnixListener::bind(&p).unwrap();
        assert_eq!(done(start_connect(&r)), Some(true));
        assert!(start_connect(&Ready::Notify).is_none());
    }

    #[test]
    fn tcp_probe() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let r = Ready::Tcp(a);
        let s = Duration::from_secs(5);
        assert_eq!(outcome(start_connect(&r), s), Some(true));
        drop(l);
        assert_eq!(outcome(start_connect(&r), s), Some(false));
    }

    /// A port whose accept queue is full drops every new SYN: the connect never answers.
    /// Starting the probe must cost no wait at all, and nothing is decided until it does.
    #[test]
    fn a_port_that_never_answers_costs_no_time() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        use nix::sys::socket::{listen, Backlog};
        listen(&l, Backlog::new(0).unwrap()).unwrap();
        let r = Ready::Tcp(a);
        let filler = start_connect(&r);
        assert_eq!(outcome(filler, Duration::from_secs(5)), Some(true));
        let begun = Instant::now();
        let probe = start_connect(&r);
        let took = begun.elapsed();
        assert!(
            took < Duration::from_millis(20),
            "start_connect took {took:?}"
        );
        assert!(matches!(probe, Some(Connect::Pending(_))));
        assert_eq!(
            outcome(probe, Duration::from_millis(300)),
            None,
            "no answer: still pending, never waited on"
        );
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
}
