//! The loop's own upkeep, on the core's clock: when memory is given back (the start-up
//! text pages and free heap, after start and after each burst of activity, so that a
//! short-lived container does not pay the page faults and an idle one keeps only what
//! idling uses), and when the request socket's name is checked.

use std::time::{Duration, Instant};

use super::{Core, Effect};

/// How long after start, and after the last activity, memory is given back.
pub const TRIM_AFTER: Duration = Duration::from_secs(2);
/// How often the request socket's name is checked ([`Effect::CheckSocketName`]).
pub const NAME_CHECK: Duration = Duration::from_secs(5);

/// When upkeep is due.
#[derive(Debug, Clone, Copy)]
pub(super) struct Upkeep {
    /// `None` once memory was given back and nothing happened since.
    trim_at: Option<Instant>,
    name_check_at: Instant,
}

impl Upkeep {
    pub(super) fn new(now: Instant) -> Upkeep {
        Upkeep {
            trim_at: Some(now + TRIM_AFTER),
            name_check_at: now + NAME_CHECK,
        }
    }
}

impl Core {
    /// Something woke the loop (not a deadline): activity faults code back in, so memory is
    /// given back again once things are quiet.
    pub(super) fn on_activity(&mut self, now: Instant) {
        self.upkeep.trim_at.get_or_insert(now + TRIM_AFTER);
    }

    pub(super) fn tick_upkeep(&mut self, now: Instant) {
        if self.upkeep.trim_at.is_some_and(|t| now >= t) {
            self.upkeep.trim_at = None;
            self.out.push(Effect::ReleaseMemory);
        }
        if now >= self.upkeep.name_check_at {
            self.upkeep.name_check_at = now + NAME_CHECK;
            if self.shutdown.is_none() {
                self.out.push(Effect::CheckSocketName);
            }
        }
    }

    pub(super) fn upkeep_deadlines(&self) -> impl Iterator<Item = Instant> {
        let name = Some(self.upkeep.name_check_at).filter(|_| self.shutdown.is_none());
        [self.upkeep.trim_at, name].into_iter().flatten()
    }
}
