//! The request socket while no listener runs: how many clients the loop reads at once, and
//! how long one may take to send its request line before it goes to the listener anyway.
//! (What a line is answered with is [`Core::on_asked`]'s decision.)

use std::time::{Duration, Instant};

use super::Core;

/// Clients read at once while no listener runs, at most; more wait in the backlog.
pub const MAX_CALLERS: usize = 64;
/// How long a client may take to send its line before it is passed to the listener
/// anyway (which applies the real `read_timeout`).
pub const LINE_TIME: Duration = Duration::from_secs(1);

impl Core {
    /// How many more clients the loop may accept on the request socket now; 0: it is not
    /// polled (a listener runs, the container is stopping, or enough clients are read).
    pub fn request_room(&self) -> usize {
        if self.want_request_poll() {
            MAX_CALLERS.saturating_sub(self.callers.len())
        } else {
            0
        }
    }

    /// Client `conn` was accepted on the request socket: its line is awaited until
    /// [`LINE_TIME`] has passed.
    pub(super) fn on_caller(&mut self, conn: u64, now: Instant) {
        self.callers.insert(conn, now + LINE_TIME);
    }

    /// Clients slow to send their line go to the listener, which applies the real read
    /// timeout.
    pub(super) fn tick_callers(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .callers
            .iter()
            .filter(|&(_, &until)| now >= until)
            .map(|(&conn, _)| conn)
            .collect();
        for conn in late {
            self.callers.remove(&conn);
            self.on_asked(conn, None, now);
        }
    }

    pub(super) fn callers_deadline(&self) -> Option<Instant> {
        self.callers.values().min().copied()
    }
}
