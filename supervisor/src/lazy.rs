//! The request socket while no listener runs (`listener_start = "request"`): the clients
//! the supervisor accepts itself, whose request line it peeks at, so that the core can
//! answer `ping` and `status` at once or have the line passed, unread, to the listener it
//! starts for them.
//!
//! Only I/O lives here. How many clients are read at once, how long one may take to send
//! its line, and who answers it are the core's decisions ([`crate::core`]).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;

use crate::accept::{accept_some, Gate, Note};

/// What a client's peeked request line says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// Not a whole line yet: look again when it sends more.
    Partial,
    /// The client left (or failed) before a whole line: forgotten.
    Gone,
    /// A whole line (or all the client will send): a built-in when it is exactly one
    /// word naming one, `None` for anything else.
    Line(Option<proto::Builtin>),
}

/// The clients accepted on the request socket and not answered or passed on yet, each
/// under a number of its own.
#[derive(Debug, Default)]
pub struct Callers {
    fds: BTreeMap<u64, OwnedFd>,
    next: u64,
    /// The request socket is paused after an accept ran out of descriptors.
    gate: Gate,
}

impl Callers {
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Whether the request socket may be polled now (not while accepts are paused).
    pub fn open(&self, now: Instant) -> bool {
        self.gate.open(now)
    }

    /// When the pause of the request socket ends, while one lasts.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        self.gate.deadline(now)
    }

    /// The clients' descriptors, to poll for their request lines.
    pub fn fds(&self) -> impl Iterator<Item = (u64, BorrowedFd<'_>)> {
        self.fds.iter().map(|(&conn, fd)| (conn, fd.as_fd()))
    }

    /// Accepts at most `room` clients waiting on `socket` (the rest stay in the backlog,
    /// where the listener or the next turn finds them); returns their numbers.
    pub fn accept(&mut self, socket: BorrowedFd<'_>, room: usize, now: Instant) -> Vec<u64> {
        let (accepted, err) = accept_some(socket, room);
        let note = match err {
            Some(_) => self.gate.failed(now),
            None if !accepted.is_empty() => self.gate.succeeded(),
            None => Note::Nothing,
        };
        crate::accept::log_gate(note, err, "the request socket");
        accepted
            .into_iter()
            .map(|fd| {
                self.next += 1;
                self.fds.insert(self.next, fd);
                self.next
            })
            .collect()
    }

    /// Peeks at client `conn`'s request line (`hup`: it has stopped sending). The line is
    /// left in the socket, so that the listener can still read it whole.
    pub fn peek(&mut self, conn: u64, hup: bool) -> Peeked {
        let Some(fd) = self.fds.get(&conn) else {
            return Peeked::Gone;
        };
        let mut buf = [0u8; proto::MAX_LINE + 2];
        let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
        let n = match nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, flags) {
            Ok(n) if n > 0 => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Peeked::Partial,
            // Gone before a word, or failed.
            Ok(_) | Err(_) => {
                self.fds.remove(&conn);
                return Peeked::Gone;
            }
        };
        match buf[..n].iter().position(|&b| b == b'\n') {
            Some(end) => Peeked::Line(builtin_of(&buf[..end])),
            None if hup || n > proto::MAX_LINE => Peeked::Line(builtin_of(&buf[..n])),
            None => Peeked::Partial,
        }
    }

    /// Answers client `conn` with `line` and closes it. Its request is read first, so
    /// that closing does not reset the connection under the reply.
    pub fn answer(&mut self, conn: u64, line: &str) {
        if let Some(fd) = self.fds.remove(&conn) {
            answer_read(&fd, line);
        }
    }

    /// Takes client `conn` out, its request unread, to pass it on.
    pub fn take(&mut self, conn: u64) -> Option<OwnedFd> {
        self.fds.remove(&conn)
    }
}

/// The built-in a request line names, when it is exactly one word naming one. Which of
/// them are answered without a listener is the core's decision.
pub fn builtin_of(line: &[u8]) -> Option<proto::Builtin> {
    match proto::parse_line(line).ok()?.as_slice() {
        [one] => proto::Builtin::parse(one),
        _ => None,
    }
}

/// Answers a client whose request was peeked at, not read: the request is read first (so
/// that closing does not reset the connection under the reply), then the line written.
pub fn answer_read(conn: &OwnedFd, line: &str) {
    let mut buf = [0u8; proto::MAX_LINE + 2];
    let _ = nix::sys::socket::recv(conn.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT);
    write_line(conn, line);
}

/// Writes `line` (when not empty) to a client, then lets the connection go. A client gone
/// already (fire and forget) makes the write fail: that's fine.
pub fn write_line(conn: &OwnedFd, line: &str) {
    use nix::sys::socket::{send, shutdown, Shutdown};
    if !line.is_empty() {
        let _ = send(
            conn.as_raw_fd(),
            format!("{line}\n").as_bytes(),
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        );
    }
    let _ = shutdown(conn.as_raw_fd(), Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn one_word_lines_name_builtins() {
        assert_eq!(builtin_of(b"ping"), Some(proto::Builtin::Ping));
        assert_eq!(builtin_of(b"status"), Some(proto::Builtin::Status));
        assert_eq!(builtin_of(b"ping now"), None);
        assert_eq!(builtin_of(b"backup"), None);
        assert_eq!(builtin_of(b"\xff"), None);
    }

    #[test]
    fn a_line_is_peeked_whole_and_left_for_the_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        let mut c = UnixStream::connect(&path).unwrap();
        let mut callers = Callers::default();
        let now = Instant::now();
        let conns = callers.accept(l.as_fd(), 4, now);
        assert_eq!(conns.len(), 1);
        let conn = conns[0];
        assert_eq!(callers.peek(conn, false), Peeked::Partial, "nothing sent");
        c.write_all(b"pi").unwrap();
        assert_eq!(callers.peek(conn, false), Peeked::Partial, "half a line");
        c.write_all(b"ng\n").unwrap();
        assert_eq!(
            callers.peek(conn, false),
            Peeked::Line(Some(proto::Builtin::Ping))
        );
        let fd = callers.take(conn).unwrap();
        let mut s = UnixStream::from(fd);
        let mut line = [0u8; 5];
        s.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"ping\n", "the line is still there, unread");
        assert!(callers.is_empty());
    }

    #[test]
    fn an_answer_reaches_the_client_and_ends_it() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"status\n").unwrap();
        answer_read(&OwnedFd::from(a), "svc running");
        let mut got = String::new();
        b.read_to_string(&mut got).unwrap();
        assert_eq!(got, "svc running\n");
    }
}
