//! The listener's end of the control socketpair to the supervisor (see `proto::control`).
//!
//! One reader task receives `reply` messages and hands each to the request waiting for its
//! `seq`; senders write straight to the non-blocking socket. When the supervisor's end is
//! closed the channel is marked broken: waiting and later commands get
//! [`ControlError::Unavailable`], which the server answers as `error unavailable ...`.
//! Actions keep running without it (there is nobody to hold their connections, that's all).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::control::{Msg, Received};
use proto::{Builtin, Reply};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// Why a control exchange failed.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("supervisor not answering")]
    Unavailable,
    #[error("supervisor did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("while sending to the supervisor: {0}")]
    Send(#[source] std::io::Error),
}

/// How long one message may wait for room in the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The control channel; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Control {
    fd: Option<AsyncFd<OwnedFd>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Vec<Reply>>>>,
    seq: AtomicU64,
    broken: AtomicBool,
    /// Clients the supervisor passes on (`conn`), to the server's accept loop.
    handed: Mutex<Option<mpsc::UnboundedSender<OwnedFd>>>,
}

impl Control {
    /// Wraps the (already non-blocking) control socket. `None` runs without a supervisor:
    /// every forwarded built-in then answers `unavailable`.
    pub fn new(fd: Option<OwnedFd>) -> std::io::Result<Arc<Control>> {
        // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it from then on;
        // nothing else closes or replaces it while it is registered.
        let fd = fd.map(|fd| unsafe { AsyncFd::register(fd) }).transpose()?;
        Ok(Arc::new(Control {
            broken: AtomicBool::new(fd.is_none()),
            fd,
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(1),
            handed: Mutex::new(None),
        }))
    }

    /// The clients the supervisor passes on: while no listener runs it answers the
    /// table's `without_listener` built-ins itself, and hands every other client over
    /// with its line unread.
    pub fn handed(&self) -> mpsc::UnboundedReceiver<OwnedFd> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.handed.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// True once the supervisor's end is gone.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    fn mark_broken(&self) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            tracing::warn!("control socket closed: supervisor not answering");
        }
        // Dropping the senders wakes every waiter with an error.
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Receives until the supervisor closes its end. Run it as a task.
    pub async fn read_loop(self: Arc<Self>) {
        let Some(afd) = &self.fd else { return };
        loop {
            let mut guard = match afd.readable().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "control socket unusable");
                    break;
                }
            };
            let got = match guard.try_io(|fd| {
                proto::control::recv(fd.get_ref().as_fd()).map_err(std::io::Error::from)
            }) {
                Ok(r) => r,
                Err(_would_block) => continue,
            };
            match got {
                Ok(Received::Msg(Msg::Reply { seq, text }, _)) => {
                    let waiter = self
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&seq);
                    match waiter {
                        Some(tx) => {
                            let _ = tx.send(answer_of(&text));
                        }
                        None => tracing::debug!(seq, "reply nobody waits for"),
                    }
                }
                Ok(Received::Msg(Msg::Conn, Some(fd))) => {
                    let tx = self.handed.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(tx) = tx.as_ref() {
                        let _ = tx.send(fd);
                    }
                }
                Ok(Received::Msg(m, _)) => {
                    tracing::warn!(msg = %m.encode(), "unexpected control message")
                }
                Ok(Received::Invalid(text)) => {
                    tracing::warn!(msg = %text.escape_debug(), "invalid control message")
                }
                Ok(Received::Eof) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(error = %e, "control socket read failed");
                    break;
                }
            }
        }
        self.mark_broken();
    }

    /// Sends one message, with `fd` attached when given.
    pub async fn send(&self, msg: &Msg, fd: Option<BorrowedFd<'_>>) -> Result<(), ControlError> {
        let Some(afd) = &self.fd else {
            return Err(ControlError::Unavailable);
        };
        if self.is_broken() {
            return Err(ControlError::Unavailable);
        }
        // A supervisor that stops reading must not stall actions: give up on the message.
        let sending = async {
            loop {
                let mut guard = afd
                    .writable()
                    .await
                    .map_err(|_| ControlError::Unavailable)?;
                match guard.try_io(|s| {
                    proto::control::send(s.get_ref().as_fd(), msg, fd).map_err(std::io::Error::from)
                }) {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Ok(Err(e)) if is_disconnect(&e) => {
                        self.mark_broken();
                        return Err(ControlError::Unavailable);
                    }
                    Ok(Err(e)) => return Err(ControlError::Send(e)),
                    Err(_would_block) => continue,
                }
            }
        };
        tokio::time::timeout(SEND_TIMEOUT, sending)
            .await
            .unwrap_or(Err(ControlError::TimedOut(SEND_TIMEOUT)))
    }

    /// Forwards a built-in to the supervisor and waits for its answer.
    pub async fn command(
        &self,
        cmd: Builtin,
        timeout: Duration,
    ) -> Result<Vec<Reply>, ControlError> {
        if self.is_broken() {
            return Err(ControlError::Unavailable);
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(seq, tx);
        if self.is_broken() {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&seq);
            return Err(ControlError::Unavailable);
        }
        if let Err(e) = self.send(&Msg::Cmd { seq, cmd }, None).await {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&seq);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(_)) => Err(ControlError::Unavailable),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&seq);
                Err(ControlError::TimedOut(timeout))
            }
        }
    }
}

/// The supervisor's answer as reply lines, read once where it arrives: a one-line
/// `error <code> ...` is a refusal; anything else is its text, line by line, never read
/// for a meaning (a status line of a service named `error` stays text).
fn answer_of(text: &str) -> Vec<Reply> {
    if text.is_empty() {
        return Vec::new();
    }
    match Reply::parse(text) {
        e @ Reply::Error { .. } if !text.contains('\n') => vec![e],
        _ => text
            .split('\n')
            .map(|l| Reply::Text(l.to_string()))
            .collect(),
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|n| {
        matches!(
            Errno::from_raw(n),
            Errno::EPIPE | Errno::ECONNREFUSED | Errno::ECONNRESET | Errno::ENOTCONN
        )
    })
}

#[cfg(test)]
mod tests {
    use super::answer_of;
    use proto::{ErrorCode, Reply};

    #[test]
    fn answers_are_read_once_at_the_edge() {
        assert_eq!(answer_of(""), []);
        assert_eq!(
            answer_of("error busy starting"),
            [Reply::error(ErrorCode::Busy, "starting")]
        );
        assert_eq!(
            answer_of("error running pid=3 ready=yes restarts=0"),
            [Reply::Text(
                "error running pid=3 ready=yes restarts=0".into()
            )]
        );
        assert_eq!(
            answer_of("# HELP x y\nerror busy z"),
            [
                Reply::Text("# HELP x y".into()),
                Reply::Text("error busy z".into())
            ]
        );
        for text in ["started pid=7", "error busy starting", "a\nb"] {
            let lines: Vec<String> = answer_of(text).iter().map(Reply::to_string).collect();
            assert_eq!(lines.join("\n"), text);
        }
    }
}
