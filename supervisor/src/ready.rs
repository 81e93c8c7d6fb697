//! Readiness probes of the main process: `socket:PATH` and `tcp:HOST:PORT` are checked
//! in-process with a connect (non-blocking for unix sockets, a short timeout for TCP);
//! `exec:COMMAND` runs a child that the supervisor's reaper collects like any other.

use std::net::TcpStream;
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

/// Reads what is waiting on the notify socket; true when a `READY=1` line came.
pub fn read_notify(sock: &std::os::unix::net::UnixDatagram) -> bool {
    let mut buf = [0u8; 4096];
    let mut ready = false;
    while let Ok(n) = sock.recv(&mut buf) {
        ready |= buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1");
    }
    ready
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
    fn intervals_are_capped() {
        assert_eq!(next_interval(0), Duration::from_millis(50));
        assert_eq!(next_interval(30), Duration::from_millis(1000));
    }
}
