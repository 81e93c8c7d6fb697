//! Capped exponential backoff for restarting the main process and the listener.
//!
//! A crash loop must never spin the CPU: each failure doubles the delay up to a cap, and
//! only a run that lasted `stable` resets it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    stable: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration, stable: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            stable,
            next: first,
        }
    }

    /// The delay before the next start, given when the process that just ended started.
    pub fn delay(&mut self, started: Instant, ended: Instant) -> Duration {
        if ended.saturating_duration_since(started) >= self.stable {
            self.next = self.first;
        }
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(250), ms(1000), Duration::from_secs(10));
        let t = Instant::now();
        let got: Vec<_> = (0..5).map(|_| b.delay(t, t + ms(5))).collect();
        assert_eq!(got, vec![ms(250), ms(500), ms(1000), ms(1000), ms(1000)]);
        assert_eq!(b.delay(t, t + Duration::from_secs(11)), ms(250));
        assert_eq!(b.delay(t, t), ms(500));
    }
}
