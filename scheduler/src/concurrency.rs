//! `CONCURRENCY=forbid|replace|queue` (DESIGN.md section 3), pure: what a fire of a line
//! does while the line's previous run still runs, and who goes when a run ends.
//!
//! The daemon keeps one [`Table`] under a lock and asks it at three moments: a fire
//! ([`Table::fire`]), a run's `accepted` ([`Table::accepted`]), and the end of a delivery,
//! however it ends ([`Table::end`]). The table answers with what to do; the daemon only
//! does it (send `cancel ID`, let a held fire go, log and record a skip). Times are
//! milliseconds since the epoch passed in by the caller, so every rule is unit-tested on a
//! fake clock.
//!
//! The rules, per [`Slot`] (a schedule line, and for `@each` targets one instance of it):
//! - nothing runs: the fire runs;
//! - `forbid` (the default): the fire is skipped and logged;
//! - `queue`: the fire is held and runs when the running one ends; at most one is held, a
//!   further fire while one is held is skipped;
//! - `replace`: the fire is held, the running run is sent `cancel ID` (at once when its id
//!   is known from its `accepted`, else as soon as it is), and the fire runs when the old
//!   run's delivery has ended (its `done`, exit 143 for a TERM). A further fire while a
//!   replacement is held is skipped: the replacement is already on its way.
//!
//! A held fire whose delivery is given up (the scheduler stopping) is withdrawn by the same
//! [`Table::end`], so a slot is never left taken.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// What a fire does while the previous run of its line still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Skipped and logged.
    #[default]
    Forbid,
    /// The running one is stopped (`cancel ID`), then the new one runs.
    Replace,
    /// Held, and run when the previous one ends.
    Queue,
}

impl Policy {
    /// Every policy, in the order the error for an unknown one names them.
    pub const ALL: [Policy; 3] = [Policy::Forbid, Policy::Replace, Policy::Queue];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Forbid => "forbid",
            Policy::Replace => "replace",
            Policy::Queue => "queue",
        }
    }

    /// The policy named `text` (`forbid`, `replace`, `queue`).
    pub fn parse(text: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which runs a policy is about: those of one schedule line (its [`crate::schedule::Entry::key`]),
/// and with an `@each` target those of one instance of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub line: String,
    pub instance: Option<u32>,
}

impl Slot {
    pub fn new(line: impl Into<String>, instance: Option<u32>) -> Slot {
        Slot {
            line: line.into(),
            instance,
        }
    }
}

/// Where a running run was accepted: its id in the service, and the socket that said so
/// (a `cancel ID` goes there: ids are per service instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: u64,
    pub socket: PathBuf,
}

/// What a fire does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It runs now: the slot is its.
    Run,
    /// It is not run, and recorded `skipped`.
    Skip(Skip),
    /// It is held until the running one ends (`queue`).
    Queue,
    /// It is held until the running one ends, which is to be cancelled now when `cancel`
    /// says where; else it is cancelled once accepted ([`Table::accepted`]).
    Replace { cancel: Option<Accepted> },
}

/// Why a fire is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `forbid`: run `run` of the line has been going for `for_ms`.
    Running { run: u64, for_ms: i64 },
    /// `queue`: a fire is held already (run `held`).
    QueueFull { held: u64 },
    /// `replace`: a replacement (run `held`) waits for the old run to end.
    ReplacePending { held: u64 },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Running { run, for_ms } => write!(
                f,
                "the previous run of this line (run {run}) has not finished after {}s (CONCURRENCY=forbid)",
                for_ms / 1000
            ),
            Skip::QueueFull { held } => write!(
                f,
                "a fire of this line (run {held}) is queued already behind the running one (CONCURRENCY=queue holds one)"
            ),
            Skip::ReplacePending { held } => write!(
                f,
                "a replacement (run {held}) waits for the previous run to stop (CONCURRENCY=replace)"
            ),
        }
    }
}

/// A held fire that goes now: its run number and how long it was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    pub run: u64,
    pub held_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Current {
    run: u64,
    since_ms: i64,
    accepted: Option<Accepted>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    run: u64,
    since_ms: i64,
    replace: bool,
    /// `cancel` has been asked for the current run (replace only).
    cancel_sent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotState {
    current: Current,
    held: Option<Held>,
}

/// The runs going and the fires held, per slot.
#[derive(Debug, Default)]
pub struct Table {
    slots: HashMap<Slot, SlotState>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// A fire of `slot` under `policy`, as run `run` of the daemon, at `now_ms`.
    pub fn fire(&mut self, slot: &Slot, policy: Policy, run: u64, now_ms: i64) -> Decision {
        let Some(st) = self.slots.get_mut(slot) else {
            self.slots
                .insert(slot.clone(), SlotState::new(run, now_ms, None));
            return Decision::Run;
        };
        if let Some(h) = st.held {
            return Decision::Skip(if h.replace {
                Skip::ReplacePending { held: h.run }
            } else {
                Skip::QueueFull { held: h.run }
            });
        }
        let replace = match policy {
            Policy::Forbid => {
                return Decision::Skip(Skip::Running {
                    run: st.current.run,
                    for_ms: now_ms - st.current.since_ms,
                })
            }
            Policy::Queue => false,
            Policy::Replace => true,
        };
        let cancel = if replace {
            st.current.accepted.clone()
        } else {
            None
        };
        st.held = Some(Held {
            run,
            since_ms: now_ms,
            replace,
            cancel_sent: cancel.is_some(),
        });
        if replace {
            Decision::Replace { cancel }
        } else {
            Decision::Queue
        }
    }

    /// A run left going by an earlier scheduler, asked for again at start, takes its slot
    /// when it is free; `false` when another run holds it (then its end changes nothing).
    pub fn resume(
        &mut self,
        slot: &Slot,
        run: u64,
        accepted: Option<Accepted>,
        now_ms: i64,
    ) -> bool {
        if self.slots.contains_key(slot) {
            return false;
        }
        let st = SlotState::new(run, now_ms, accepted);
        self.slots.insert(slot.clone(), st);
        true
    }

    /// Run `run` of `slot` was accepted as `accepted.id`: `Some` when a replacement is
    /// held and wants it cancelled now (once: a later call says `None`).
    pub fn accepted(&mut self, slot: &Slot, run: u64, accepted: Accepted) -> Option<Accepted> {
        let st = self.slots.get_mut(slot)?;
        if st.current.run != run {
            return None;
        }
        st.current.accepted = Some(accepted.clone());
        match &mut st.held {
            Some(h) if h.replace && !h.cancel_sent => {
                h.cancel_sent = true;
                Some(accepted)
            }
            _ => None,
        }
    }

    /// The delivery of run `run` of `slot` is over, however it ended (or a held fire was
    /// given up): the held fire that goes now, if any, takes the slot.
    pub fn end(&mut self, slot: &Slot, run: u64, now_ms: i64) -> Option<Handoff> {
        let st = self.slots.get_mut(slot)?;
        if st.held.is_some_and(|h| h.run == run) {
            st.held = None;
            return None;
        }
        if st.current.run != run {
            return None;
        }
        match st.held.take() {
            Some(h) => {
                st.current = Current {
                    run: h.run,
                    since_ms: now_ms,
                    accepted: None,
                };
                Some(Handoff {
                    run: h.run,
                    held_ms: now_ms - h.since_ms,
                })
            }
            None => {
                self.slots.remove(slot);
                None
            }
        }
    }

    /// The run holding `slot`, if any.
    pub fn running(&self, slot: &Slot) -> Option<u64> {
        self.slots.get(slot).map(|s| s.current.run)
    }

    /// The fire held for `slot`, if any.
    pub fn held(&self, slot: &Slot) -> Option<u64> {
        self.slots.get(slot).and_then(|s| s.held.map(|h| h.run))
    }
}

impl SlotState {
    fn new(run: u64, now_ms: i64, accepted: Option<Accepted>) -> SlotState {
        SlotState {
            current: Current {
                run,
                since_ms: now_ms,
                accepted,
            },
            held: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: seconds, as milliseconds.
    fn at(secs: i64) -> i64 {
        secs * 1000
    }

    fn slot() -> Slot {
        Slot::new("UTC * * * * * php rotate-logs", None)
    }

    fn acc(id: u64) -> Accepted {
        Accepted {
            id,
            socket: PathBuf::from("/run/php-request.sock"),
        }
    }

    #[test]
    fn policies_parse_and_show() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.as_str()), Some(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(Policy::parse("Forbid"), None);
        assert_eq!(Policy::default(), Policy::Forbid);
    }

    #[test]
    fn a_free_slot_runs_whatever_the_policy() {
        for p in Policy::ALL {
            let mut t = Table::new();
            assert_eq!(t.fire(&slot(), p, 1, at(0)), Decision::Run);
            assert_eq!(t.running(&slot()), Some(1));
            assert_eq!(t.end(&slot(), 1, at(5)), None);
            assert_eq!(t.running(&slot()), None);
            assert_eq!(t.fire(&slot(), p, 2, at(60)), Decision::Run);
        }
    }

    #[test]
    fn forbid_skips_and_says_for_how_long_the_previous_one_runs() {
        let mut t = Table::new();
        assert_eq!(t.fire(&slot(), Policy::Forbid, 1, at(0)), Decision::Run);
        let d = t.fire(&slot(), Policy::Forbid, 2, at(60));
        assert_eq!(
            d,
            Decision::Skip(Skip::Running {
                run: 1,
                for_ms: 60_000
            })
        );
        let Decision::Skip(why) = d else { panic!() };
        assert_eq!(
            why.to_string(),
            "the previous run of this line (run 1) has not finished after 60s (CONCURRENCY=forbid)"
        );
        // The skipped fire holds nothing: the end of run 1 frees the slot.
        assert_eq!(t.end(&slot(), 2, at(61)), None);
        assert_eq!(t.running(&slot()), Some(1));
        assert_eq!(t.end(&slot(), 1, at(90)), None);
        assert_eq!(t.fire(&slot(), Policy::Forbid, 3, at(120)), Decision::Run);
    }

    #[test]
    fn queue_holds_one_and_hands_over_when_the_previous_ends() {
        let mut t = Table::new();
        assert_eq!(t.fire(&slot(), Policy::Queue, 1, at(0)), Decision::Run);
        assert_eq!(t.fire(&slot(), Policy::Queue, 2, at(60)), Decision::Queue);
        assert_eq!(t.held(&slot()), Some(2));
        // A third while one is held: skipped.
        assert_eq!(
            t.fire(&slot(), Policy::Queue, 3, at(120)),
            Decision::Skip(Skip::QueueFull { held: 2 })
        );
        // Run 1 ends at 150: run 2 goes, held 90 s, and holds the slot now.
        assert_eq!(
            t.end(&slot(), 1, at(150)),
            Some(Handoff {
                run: 2,
                held_ms: 90_000
            })
        );
        assert_eq!((t.running(&slot()), t.held(&slot())), (Some(2), None));
        // So a fire now queues behind run 2.
        assert_eq!(t.fire(&slot(), Policy::Queue, 4, at(180)), Decision::Queue);
        assert_eq!(
            t.end(&slot(), 2, at(200)),
            Some(Handoff {
                run: 4,
                held_ms: 20_000
            })
        );
        assert_eq!(t.end(&slot(), 4, at(210)), None);
        assert_eq!(t.running(&slot()), None);
    }

    #[test]
    fn replace_cancels_the_accepted_run_at_once() {
        let mut t = Table::new();
        assert_eq!(t.fire(&slot(), Policy::Replace, 1, at(0)), Decision::Run);
        assert_eq!(t.accepted(&slot(), 1, acc(7)), None);
        assert_eq!(
            t.fire(&slot(), Policy::Replace, 2, at(60)),
            Decision::Replace {
                cancel: Some(acc(7))
            }
        );
        // A further fire while the replacement waits: skipped.
        assert_eq!(
            t.fire(&slot(), Policy::Replace, 3, at(61)),
            Decision::Skip(Skip::ReplacePending { held: 2 })
        );
        // Run 1's done (exit 143) ends its delivery: run 2 goes.
        assert_eq!(
            t.end(&slot(), 1, at(62)),
            Some(Handoff {
                run: 2,
                held_ms: 2_000
            })
        );
        assert_eq!(t.running(&slot()), Some(2));
        // Run 2 not accepted yet: a replacement of it cancels it once it is.
        assert_eq!(
            t.fire(&slot(), Policy::Replace, 4, at(63)),
            Decision::Replace { cancel: None }
        );
        assert_eq!(t.accepted(&slot(), 2, acc(8)), Some(acc(8)));
        // Once only.
        assert_eq!(t.accepted(&slot(), 2, acc(8)), None);
    }

    #[test]
    fn replace_of_a_run_never_accepted_waits_for_its_delivery_to_end() {
        let mut t = Table::new();
        assert_eq!(t.fire(&slot(), Policy::Replace, 1, at(0)), Decision::Run);
        assert_eq!(
            t.fire(&slot(), Policy::Replace, 2, at(60)),
            Decision::Replace { cancel: None }
        );
        // Run 1 is missed (its target never answered): run 2 goes, nothing cancelled.
        assert_eq!(
            t.end(&slot(), 1, at(300)),
            Some(Handoff {
                run: 2,
                held_ms: 240_000
            })
        );
        // The accepted of a run that no longer holds the slot changes nothing.
        assert_eq!(t.accepted(&slot(), 1, acc(3)), None);
    }

    #[test]
    fn a_held_fire_given_up_is_withdrawn() {
        let mut t = Table::new();
        assert_eq!(t.fire(&slot(), Policy::Queue, 1, at(0)), Decision::Run);
        assert_eq!(t.fire(&slot(), Policy::Queue, 2, at(60)), Decision::Queue);
        // The scheduler stops: run 2's task ends before its turn.
        assert_eq!(t.end(&slot(), 2, at(61)), None);
        assert_eq!((t.running(&slot()), t.held(&slot())), (Some(1), None));
        assert_eq!(t.end(&slot(), 1, at(62)), None);
        assert_eq!(t.running(&slot()), None);
    }

    #[test]
    fn instances_and_lines_are_slots_of_their_own() {
        let mut t = Table::new();
        let one = Slot::new("l", Some(1));
        let two = Slot::new("l", Some(2));
        let other = Slot::new("m", None);
        assert_eq!(t.fire(&one, Policy::Forbid, 1, at(0)), Decision::Run);
        assert_eq!(t.fire(&two, Policy::Forbid, 2, at(0)), Decision::Run);
        assert_eq!(t.fire(&other, Policy::Forbid, 3, at(0)), Decision::Run);
        assert!(matches!(
            t.fire(&one, Policy::Forbid, 4, at(60)),
            Decision::Skip(_)
        ));
        assert_eq!(t.end(&two, 2, at(61)), None);
        assert_eq!(t.fire(&two, Policy::Forbid, 5, at(62)), Decision::Run);
        assert_eq!(t.running(&one), Some(1));
    }

    #[test]
    fn a_resumed_run_holds_its_slot_and_can_be_replaced() {
        let mut t = Table::new();
        assert!(t.resume(&slot(), 1, Some(acc(40)), at(0)));
        // A second resume of the line (an older run) does not take it.
        assert!(!t.resume(&slot(), 2, Some(acc(39)), at(0)));
        assert_eq!(t.end(&slot(), 2, at(1)), None);
        assert_eq!(
            t.fire(&slot(), Policy::Replace, 3, at(60)),
            Decision::Replace {
                cancel: Some(acc(40))
            }
        );
        assert_eq!(
            t.end(&slot(), 1, at(61)),
            Some(Handoff {
                run: 3,
                held_ms: 1_000
            })
        );
    }
}
