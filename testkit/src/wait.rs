//! Waiting for a condition that another process changes (a file, a socket, /proc), which
//! offers this one nothing to block on: polled every few milliseconds up to a deadline.

use std::time::{Duration, Instant};

/// How often a condition without an event is looked at again.
pub const POLL: Duration = Duration::from_millis(5);

/// Polls `f` until it returns `Some`, or panics after `deadline` naming `what`.
pub fn wait_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}
