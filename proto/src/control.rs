//! The private channel between `supervisor` and its `listener` child.
//!
//! The supervisor owns the request socket for the container's whole life; the listener is
//! a restartable child that serves it. When a listener dies in the middle of a request,
//! the kernel closes its copy of the client's connection, so the only way to still answer
//! `error unavailable ...` is for the supervisor to hold a second copy of that fd. Hence:
//!
//! * The listener is started with fd [`LISTEN_FD`] = the listening request socket and
//!   fd [`CONTROL_FD`] = one end of a `SOCK_SEQPACKET` socketpair (one datagram = one
//!   message, so no framing is needed and an fd can ride along with its message).
//! * Once an action has been started, the listener sends [`Msg::Hold`] with a dup of the
//!   client's connection attached; when the action ends it sends [`Msg::Release`] with the
//!   `done` line, which the supervisor writes to the client: exactly one of the two answers
//!   a held request, whenever the listener dies. If the listener dies, the supervisor writes
//!   `error unavailable ...` to every connection it still holds, `TERM`s the held process
//!   groups (nobody is left to report their outcome, and a new listener must be free to
//!   run the same action again) and starts a new listener with backoff.
//! * Built-ins the supervisor answers ([`By::Supervisor`] in [`Builtin::TABLE`]: `status`,
//!   `start`, `stop`, `restart`, `reload` without a `CB_reload`, `metrics`) are forwarded as
//!   [`Msg::Cmd`]; the supervisor answers with [`Msg::Reply`] carrying the text of its
//!   [`Answer`](crate::builtin::Answer) (one or more lines, no trailing newline) or of its
//!   refusal (one `error <code> ...` line), which the listener reads back into
//!   [`Reply`](crate::Reply) values where it receives them.
//! * While no listener runs, the supervisor answers the built-ins of the table's
//!   `without_listener` rows (`ping`, `status`, `version`: [`Builtin::without_listener`])
//!   on the request socket itself; a client with any other request is passed to the
//!   listener, started for it, as [`Msg::Conn`] with the connection attached and its line
//!   unread.
//! * To stop the listener, the supervisor sends it `SIGTERM`.
//! * A listener with nothing to do for `listener_idle` stops accepting, sends
//!   [`Msg::Idle`] and exits 0; the supervisor goes back to answering those built-ins
//!   itself and starts a listener again for the next request that needs one.
//!
//! Messages are short ASCII text: `hold <id> <pgid> <action>`, `release <id> [<reply>]`,
//! `cmd <seq> <command>`, `reply <seq> <text>`, `conn`, `idle <next_id>`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::builtin::{Builtin, By};

/// The listener's fd for the listening request socket.
pub const LISTEN_FD: RawFd = 3;
/// The listener's fd for its end of the control socketpair.
pub const CONTROL_FD: RawFd = 4;
/// Largest control message; replies (the status text) are cut to fit.
pub const MAX_MSG: usize = 16 * 1024;

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// listener -> supervisor, with the client's connection attached.
    Hold { id: u64, pgid: i32, action: String },
    /// listener -> supervisor: the request `id` is over; write `reply` (the `done` line,
    /// without its newline; empty: nothing) to the client, then let the connection go.
    Release { id: u64, reply: String },
    /// listener -> supervisor: answer a built-in of [`By::Supervisor`].
    Cmd { seq: u64, cmd: Builtin },
    /// supervisor -> listener: the answer to `Cmd { seq, .. }`.
    Reply { seq: u64, text: String },
    /// supervisor -> listener, with a client's connection attached, its request line
    /// still unread: serve it as if accepted on the request socket.
    Conn,
    /// listener -> supervisor: nothing has happened for `listener_idle`; it has stopped
    /// accepting and exits 0 next. The next request that needs a listener starts one,
    /// numbering requests from `next_id`.
    Idle { next_id: u64 },
}

impl Msg {
    pub fn encode(&self) -> String {
        match self {
            Msg::Hold { id, pgid, action } => format!("hold {id} {pgid} {action}"),
            Msg::Release { id, reply } if reply.is_empty() => format!("release {id}"),
            Msg::Release { id, reply } => format!("release {id} {reply}"),
            Msg::Cmd { seq, cmd } => format!("cmd {seq} {cmd}"),
            Msg::Reply { seq, text } => format!("reply {seq} {text}"),
            Msg::Conn => "conn".into(),
            Msg::Idle { next_id } => format!("idle {next_id}"),
        }
    }

    pub fn decode(text: &str) -> Option<Msg> {
        if text == "conn" {
            return Some(Msg::Conn);
        }
        let (head, rest) = text.split_once(' ')?;
        match head {
            "hold" => {
                let mut it = rest.splitn(3, ' ');
                let id = it.next()?.parse().ok()?;
                let pgid = it.next()?.parse().ok()?;
                let action = it.next()?.to_string();
                Some(Msg::Hold { id, pgid, action })
            }
            "release" => {
                let (id, reply) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Msg::Release {
                    id: id.parse().ok()?,
                    reply: reply.to_string(),
                })
            }
            "cmd" => {
                let (seq, cmd) = rest.split_once(' ')?;
                Some(Msg::Cmd {
                    seq: seq.parse().ok()?,
                    cmd: Builtin::parse(cmd).filter(|b| b.by() == By::Supervisor)?,
                })
            }
            "idle" => Some(Msg::Idle {
                next_id: rest.parse().ok()?,
            }),
            "reply" => {
                let (seq, text) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Msg::Reply {
                    seq: seq.parse().ok()?,
                    text: text.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Sends one message, with `fd` attached when given. Works on blocking and non-blocking
/// sockets alike (`EAGAIN` is returned as an error for the caller's event loop).
pub fn send(sock: BorrowedFd<'_>, msg: &Msg, fd: Option<BorrowedFd<'_>>) -> nix::Result<()> {
    let mut text = msg.encode();
    if text.len() > MAX_MSG {
        let mut cut = MAX_MSG;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let iov = [IoSlice::new(text.as_bytes())];
    let fds;
    let cmsgs: &[ControlMessage<'_>] = match fd {
        Some(fd) => {
            fds = [fd.as_raw_fd()];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// What [`recv`] read.
#[derive(Debug)]
pub enum Received {
    /// A message, with the fd that came with it.
    Msg(Msg, Option<OwnedFd>),
    /// A datagram that is not a valid message (logged and ignored by callers).
    Invalid(String),
    /// The other end is closed.
    Eof,
}

/// Receives one message. Any fd attached to it is returned owned (and close-on-exec), so
/// it cannot leak even when the message is invalid.
pub fn recv(sock: BorrowedFd<'_>) -> nix::Result<Received> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(rs) = c {
                // SAFETY: SCM_RIGHTS gave us these fds just now; nothing else owns them.
                fds.extend(rs.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        (msg.bytes, fds)
    };
    if len == 0 && fds.is_empty() {
        return Ok(Received::Eof);
    }
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    let fd = fds.into_iter().next();
    Ok(match Msg::decode(&text) {
        Some(m) => Received::Msg(m, fd),
        None => Received::Invalid(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    #[test]
    fn codec_round_trip() {
        for m in [
            Msg::Hold {
                id: 9,
                pgid: 1234,
                action: "nightly-backup".into(),
            },
            Msg::Release {
                id: 9,
                reply: String::new(),
            },
            Msg::Release {
                id: 9,
                reply: "done 9 exit=0 secs=0.004".into(),
            },
            Msg::Cmd {
                seq: 2,
                cmd: Builtin::Status,
            },
            Msg::Reply {
                seq: 2,
                text: "main running pid=7\naction x".into(),
            },
            Msg::Reply {
                seq: 3,
                text: String::new(),
            },
            Msg::Conn,
            Msg::Idle { next_id: 12 },
        ] {
            assert_eq!(Msg::decode(&m.encode()), Some(m));
        }
        assert_eq!(Msg::decode("cmd 1 explode"), None);
        assert_eq!(Msg::decode("cmd 1 ping"), None, "the listener answers ping");
        assert_eq!(Msg::decode("garbage"), None);
    }

    #[test]
    fn fd_passing() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (x, y) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let m = Msg::Hold {
            id: 1,
            pgid: 2,
            action: "a".into(),
        };
        send(a.as_fd(), &m, Some(x.as_fd())).unwrap();
        drop(x);
        match recv(b.as_fd()).unwrap() {
            Received::Msg(got, Some(fd)) => {
                assert_eq!(got, m);
                // The passed fd is the same connection: write through it, read from y.
                nix::unistd::write(&fd, b"hi").unwrap();
                let mut buf = [0u8; 2];
                nix::unistd::read(&y, &mut buf).unwrap();
                assert_eq!(&buf, b"hi");
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(a);
        assert!(matches!(recv(b.as_fd()).unwrap(), Received::Eof));
    }
}
