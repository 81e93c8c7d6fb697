//! The daemon's clock logic, pure: the schedule and the wall clock in, the fires to run out.
//!
//! The planner keeps a *cursor*: every fire at or before it has been handled. The cursor
//! only moves forward, so a wall clock stepped back cannot fire a line twice; a clock
//! stepped forward (or a suspend) makes each line that had fires in the jump run once, so
//! nothing is lost and nothing runs once per skipped slot (fires older than the catch-up
//! window are reported missed; the line still runs once for its first fire within it). A step back of more than
//! [`MAX_STEP_BACK`] is taken as a clock that was wrong, and planning restarts from the new
//! time. Kept apart from the I/O in [`crate::daemon`] so that these cases are unit-tested
//! with a fake clock.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::schedule::{Entry, Schedule};

/// How far back a clock step must go before planning restarts from the new time.
pub const MAX_STEP_BACK: Duration = Duration::hours(1);

/// What the daemon should do with one due line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fire {
    /// Run entry `index`, which was due at `due`.
    Run { index: usize, due: DateTime<Utc> },
    /// The clock jumped past `due` by more than the catch-up window: log it as missed.
    Missed { index: usize, due: DateTime<Utc> },
}

/// What a wake-up produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Fires(Vec<Fire>),
    /// The clock went back more than [`MAX_STEP_BACK`] from `from`; re-planned from now.
    SteppedBack {
        from: DateTime<Utc>,
    },
}

/// The next fire of every line, and the cursor.
#[derive(Debug, Clone)]
pub struct Planner {
    cursor: DateTime<Utc>,
    next: Vec<Option<DateTime<Utc>>>,
}

impl Planner {
    /// Plans every line from `now` (fires at `now` itself are not included).
    pub fn new(schedule: &Schedule, now: DateTime<Utc>) -> Planner {
        Planner {
            cursor: now,
            next: plan(schedule, now),
        }
    }

    /// The earliest planned fire, to arm the timer with; `None`: sleep until woken.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        self.next.iter().flatten().min().copied()
    }

    /// The wall clock reads `now`: returns the lines to run, in file order, and plans
    /// their next fire.
    pub fn wake(&mut self, schedule: &Schedule, now: DateTime<Utc>, window: Duration) -> Outcome {
        if now < self.cursor - MAX_STEP_BACK {
            let from = self.cursor;
            self.cursor = now;
            self.next = plan(schedule, now);
            return Outcome::SteppedBack { from };
        }
        let mut fires = Vec::new();
        let horizon = now
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        for (index, slot) in self.next.iter().enumerate() {
            let Some(due) = *slot else { continue };
            if due > now {
                continue;
            }
            if due < horizon {
                // Jumped past by more than the window: the first swallowed fire is reported
                // missed, and the line still runs once when a later one is within the window
                // (a 3-day suspend still runs the nightly backup that was due an hour ago).
                fires.push(Fire::Missed { index, due });
                let entry = &schedule.entries[index];
                if let Some(due) = entry.next_after(horizon).filter(|t| *t <= now) {
                    fires.push(Fire::Run { index, due });
                }
            } else {
                fires.push(Fire::Run { index, due });
            }
        }
        self.cursor = self.cursor.max(now);
        for f in &fires {
            let (Fire::Run { index, .. } | Fire::Missed { index, .. }) = *f;
            self.next[index] = schedule.entries[index].next_after(self.cursor);
        }
        Outcome::Fires(fires)
    }

    /// The schedule was replaced by `new` at `now`. A line that was already due (its fire
    /// not yet handled) keeps that fire, so an edit landing on a fire time loses nothing;
    /// every other line is planned from now, so a new line does not fire for times that
    /// passed before it existed.
    pub fn reload(&mut self, old: &Schedule, new: &Schedule, now: DateTime<Utc>) {
        let due: HashMap<String, DateTime<Utc>> = old
            .entries
            .iter()
            .zip(&self.next)
            .filter_map(|(e, n)| n.filter(|t| *t <= now).map(|t| (e.key(), t)))
            .collect();
        self.cursor = self.cursor.max(now);
        let from = self.cursor;
        self.next = new
            .entries
            .iter()
            .map(|e| due.get(&e.key()).copied().or_else(|| e.next_after(from)))
            .collect();
    }
}

/// The fire of `entry` that was missed while the scheduler was down, if any: the first
/// fire after its `last` recorded one, if it is before `now` and not older than `window`.
/// (Several missed fires still mean one catch-up run.)
pub fn missed_while_down(
    entry: &Entry,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    window: Duration,
) -> Option<DateTime<Utc>> {
    if last > now {
        return None; // the clock went back since: nothing to trust
    }
    let horizon = now
        .checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    entry.next_after(last.max(horizon)).filter(|t| *t <= now)
}

fn plan(schedule: &Schedule, from: DateTime<Utc>) -> Vec<Option<DateTime<Utc>>> {
    schedule
        .entries
        .iter()
        .map(|e| e.next_after(from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn sched(text: &str) -> Schedule {
        crate::schedule::parse("f", text.as_bytes(), Tz::UTC).unwrap()
    }
    fn runs(o: Outcome) -> Vec<(usize, String)> {
        match o {
            Outcome::Fires(f) => f
                .into_iter()
                .map(|f| match f {
                    Fire::Run { index, due } => (index, due.to_rfc3339()),
                    Fire::Missed { index, due } => (index + 100, due.to_rfc3339()),
                })
                .collect(),
            Outcome::SteppedBack { .. } => vec![(999, String::new())],
        }
    }
    const DAY: Duration = Duration::hours(24);

    #[test]
    fn on_time_wakes_fire_each_line_once() {
        let s = sched("* * * * * a b\n*/2 * * * * c d\n");
        let mut p = Planner::new(&s, at("2026-11-22T00:00:30Z"));
        assert_eq!(p.due(), Some(at("2026-11-22T00:01:00Z")));
        let r = runs(p.wake(&s, at("2026-11-22T00:01:00.001Z"), DAY));
        assert_eq!(r, [(0, "2026-11-22T00:01:00+00:00".to_string())]);
        assert_eq!(p.due(), Some(at("2026-11-22T00:02:00Z")));
        assert_eq!(runs(p.wake(&s, at("2026-11-22T00:02:00Z"), DAY)).len(), 2);
        // A spurious early wake fires nothing.
        assert!(runs(p.wake(&s, at("2026-11-22T00:02:30Z"), DAY)).is_empty());
    }

    #[test]
    fn forward_jump_runs_each_line_once_not_per_slot() {
        let s = sched("* * * * * a b\n0 3 * * * c d\n0 12 * * * e f\n");
        let mut p = Planner::new(&s, at("2026-11-22T00:00:30Z"));
        // Suspended for 5 hours: the minutely line runs once, the 03:00 line once.
        let r = runs(p.wake(&s, at("2026-11-22T05:00:10Z"), DAY));
        assert_eq!(
            r,
            [
                (0, "2026-11-22T00:01:00+00:00".to_string()),
                (1, "2026-11-22T03:00:00+00:00".to_string())
            ]
        );
        assert_eq!(p.due(), Some(at("2026-11-22T05:01:00Z")));
        // Suspended for 3 days: the first fire each line missed is beyond the window and is
        // reported missed; each line still runs once for its first fire within the window.
        let r = runs(p.wake(&s, at("2026-11-25T00:00:00Z"), DAY));
        assert_eq!(
            r,
            [
                (100, "2026-11-22T05:01:00+00:00".to_string()),
                (0, "2026-11-24T00:01:00+00:00".to_string()),
                (101, "2026-11-23T03:00:00+00:00".to_string()),
                (1, "2026-11-24T03:00:00+00:00".to_string()),
                (102, "2026-11-22T12:00:00+00:00".to_string()),
                (2, "2026-11-24T12:00:00+00:00".to_string()),
            ]
        );
        assert_eq!(p.due(), Some(at("2026-11-25T00:01:00Z")));
        // A line with no fire within the window (yearly, 300 days ago): only missed.
        let y = sched("0 0 1 1 * a b\n");
        let mut p = Planner::new(&y, at("2025-12-31T23:00:00Z"));
        let r = runs(p.wake(&y, at("2026-10-28T00:00:00Z"), DAY));
        assert_eq!(r, [(100, "2026-01-01T00:00:00+00:00".to_string())]);
        assert_eq!(p.due(), Some(at("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn small_step_back_never_fires_twice() {
        let s = sched("* * * * * a b\n");
        let mut p = Planner::new(&s, at("2026-11-22T00:00:30Z"));
        assert_eq!(runs(p.wake(&s, at("2026-11-22T00:01:00Z"), DAY)).len(), 1);
        // NTP steps back 40 minutes: the 00:01 fire is not repeated; the plan stays.
        assert!(runs(p.wake(&s, at("2026-11-21T23:21:00Z"), DAY)).is_empty());
        assert_eq!(p.due(), Some(at("2026-11-22T00:02:00Z")));
    }

    #[test]
    fn big_step_back_replans_from_the_new_time() {
        let s = sched("* * * * * a b\n");
        let mut p = Planner::new(&s, at("2026-11-22T00:00:30Z"));
        let o = p.wake(&s, at("2026-11-21T20:00:30Z"), DAY);
        assert_eq!(
            o,
            Outcome::SteppedBack {
                from: at("2026-11-22T00:00:30Z")
            }
        );
        assert_eq!(p.due(), Some(at("2026-11-21T20:01:00Z")));
    }

    #[test]
    fn catch_up_within_the_window_only() {
        let s = sched("5 4 * * * a b\n");
        let e = &s.entries[0];
        let now = at("2026-11-22T05:00:00Z");
        // Down from 03:00 to 05:00: the 04:05 fire was missed.
        assert_eq!(
            missed_while_down(e, at("2026-11-21T04:05:00Z"), now, DAY),
            Some(at("2026-11-22T04:05:00Z"))
        );
        // Last fire today already: nothing missed.
        assert_eq!(
            missed_while_down(e, at("2026-11-22T04:05:00Z"), now, DAY),
            None
        );
        // Down for a week with a 2 h window: the 04:05 fire is within it, once.
        assert_eq!(
            missed_while_down(e, at("2026-11-15T04:05:00Z"), now, Duration::hours(2)),
            Some(at("2026-11-22T04:05:00Z"))
        );
        // ... but not with a 30 min window.
        assert_eq!(
            missed_while_down(e, at("2026-11-15T04:05:00Z"), now, Duration::minutes(30)),
            None
        );
        // A record from the future (clock went back): ignored.
        assert_eq!(
            missed_while_down(e, at("2026-11-23T04:05:00Z"), now, DAY),
            None
        );
    }

    #[test]
    fn reload_keeps_due_fires_and_plans_new_lines_from_now() {
        let old = sched("0 * * * * a b\n");
        let mut p = Planner::new(&old, at("2026-11-22T00:10:00Z"));
        // The edit lands just after 01:00, before the wake for it was handled.
        let new = sched("0 * * * * a b\n*/5 * * * * c d\n");
        p.reload(&old, &new, at("2026-11-22T01:00:00.2Z"));
        let r = runs(p.wake(&new, at("2026-11-22T01:00:00.3Z"), DAY));
        // The old line's 01:00 fire survives; the new line does not fire for 00:15..01:00.
        assert_eq!(r, [(0, "2026-11-22T01:00:00+00:00".to_string())]);
        assert_eq!(p.due(), Some(at("2026-11-22T01:05:00Z")));
    }
}
