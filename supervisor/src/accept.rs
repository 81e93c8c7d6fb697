//! Accepting when descriptors run out (DESIGN.md section 2, "Load and exhaustion").
//!
//! `accept` failing with `EMFILE`/`ENFILE` leaves the connection in the backlog and the
//! listening socket readable, so a loop that polls it again at once spins a core and
//! serves nothing (the security review measured 198 CPU ticks in 2 s, M6). Instead the
//! socket is not polled for a back-off (100 ms, doubling to 1 s while it keeps failing),
//! the first failure is logged once, and polling resumes by itself: the first accept that
//! works again is logged too. [`Gate`] is that decision, pure; [`accept_some`] is the I/O.
//!
//! [`accept_some`] also takes at most `max` connections, so what cannot be served now
//! stays in the kernel's backlog instead of being accepted and dropped without a reply.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, SockFlag};

/// First pause after an accept failed for want of descriptors or memory.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether a listening socket may be polled, and for how long it is paused.
#[derive(Debug, Clone)]
pub struct Gate {
    paused_until: Option<Instant>,
    next: Duration,
    /// Paused since the last success: the failure has been logged.
    exhausted: bool,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            paused_until: None,
            next: FIRST_PAUSE,
            exhausted: false,
        }
    }
}

/// What the caller logs after telling the gate how an accept went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    Nothing,
    /// The first failure of a run of them: log it (once), with the pause.
    Paused(Duration),
    /// The first success after failures.
    Resumed,
}

impl Gate {
    /// Whether the socket is polled now.
    pub fn open(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|t| now >= t)
    }

    /// When a pause ends (a deadline for the loop), while one lasts.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|&t| t > now)
    }

    /// An accept failed for want of descriptors (or memory): pause.
    pub fn failed(&mut self, now: Instant) -> Note {
        let pause = self.next;
        self.paused_until = Some(now + pause);
        self.next = (self.next * 2).min(MAX_PAUSE);
        if std::mem::replace(&mut self.exhausted, true) {
            Note::Nothing
        } else {
            Note::Paused(pause)
        }
    }

    /// An accept worked.
    pub fn succeeded(&mut self) -> Note {
        self.paused_until = None;
        self.next = FIRST_PAUSE;
        if std::mem::replace(&mut self.exhausted, false) {
            Note::Resumed
        } else {
            Note::Nothing
        }
    }
}

/// Whether an accept error means "out of descriptors or memory": the connection stays in
/// the backlog and only time (someone closing) helps.
pub fn is_exhaustion(e: Errno) -> bool {
    matches!(
        e,
        Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
    )
}

/// Accepts up to `max` connections already waiting on `listen`, never blocking: each
/// accept is preceded by a zero-timeout poll, so even a blocking socket that another
/// process accepts on too cannot hold PID 1 in `accept4()`. Returns them and, when it
/// stopped for want of descriptors, that error.
pub fn accept_some(listen: BorrowedFd<'_>, max: usize) -> (Vec<OwnedFd>, Option<Errno>) {
    let mut out = Vec::new();
    while out.len() < max {
        let mut p = [PollFd::new(listen, PollFlags::POLLIN)];
        if !matches!(poll(&mut p, PollTimeout::ZERO), Ok(n) if n > 0) {
            break;
        }
        match accept4(
            listen.as_raw_fd(),
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        ) {
            // SAFETY: accept4 returned a new fd that nothing else owns.
            Ok(c) => out.push(unsafe { OwnedFd::from_raw_fd(c) }),
            Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
            Err(e) if is_exhaustion(e) => return (out, Some(e)),
            Err(_) => break,
        }
    }
    (out, None)
}

/// Logs what a [`Gate`] says about socket `what`, once per run of failures.
pub fn log_gate(note: Note, err: Option<Errno>, what: &str) {
    match note {
        Note::Paused(pause) => tracing::warn!(
            socket = what,
            error = %err.map_or(Errno::UnknownErrno, |e| e),
            pause = ?pause,
            "out of file descriptors: not accepting for a while (logged once until it works again)"
        ),
        Note::Resumed => tracing::info!(socket = what, "accepting again"),
        Note::Nothing => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_log_once_and_resume() {
        let ms = Duration::from_millis;
        let t = Instant::now();
        let mut g = Gate::default();
        assert!(g.open(t));
        assert_eq!(g.failed(t), Note::Paused(ms(100)));
        assert!(!g.open(t + ms(99)));
        assert!(g.open(t + ms(100)));
        assert_eq!(g.deadline(t), Some(t + ms(100)));
        let mut at = t + ms(100);
        let mut pauses = Vec::new();
        for _ in 0..5 {
            assert_eq!(g.failed(at), Note::Nothing, "logged once");
            let until = g.deadline(at).unwrap();
            pauses.push(until - at);
            at = until;
        }
        assert_eq!(pauses, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(g.succeeded(), Note::Resumed);
        assert_eq!(g.succeeded(), Note::Nothing);
        assert!(g.open(at) && g.deadline(at).is_none());
        assert_eq!(g.failed(at), Note::Paused(ms(100)), "starts over");
    }

    #[test]
    fn accepts_at_most_max_and_reports_exhaustion() {
        use std::os::fd::AsFd;
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let _clients: Vec<UnixStream> = (0..5)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let (got, err) = accept_some(l.as_fd(), 3);
        assert_eq!((got.len(), err), (3, None), "the rest stay in the backlog");
        let (got, err) = accept_some(l.as_fd(), 10);
        assert_eq!((got.len(), err), (2, None));
        let (got, err) = accept_some(l.as_fd(), 10);
        assert_eq!((got.len(), err), (0, None), "nothing waiting: no block");
        assert!(is_exhaustion(Errno::EMFILE) && is_exhaustion(Errno::ENFILE));
        assert!(!is_exhaustion(Errno::ECONNABORTED));
    }
}
