//! The delivery rules, pure: what the reply lines of a request mean for its fire (read on,
//! ask again on a new connection and why, or the fire's [`Outcome`]), and how long to wait
//! before asking again. [`crate::daemon`] connects, writes, reads lines and sleeps; every
//! decision it takes about them is made here, so each reply sequence is unit-tested
//! without a socket or a clock.
//!
//! The rules (DESIGN.md section 2), for one fire across its connections:
//! - a missing or refusing socket, a service that closes without a word, and `error
//!   unavailable` as the first reply (its listener crashed or is restarting: nothing ran)
//!   or after `accepted` (the listener went away while it ran) are asked again, with the
//!   fire's one key: the service runs a key once and answers a repeat with its first replies;
//! - a connection lost after `accepted` is asked again too: the key brings the run's `done`;
//! - a notification whose first reply is `error busy` (its action is telling of another
//!   run) waits its turn; a line's own run finding its action busy is refused;
//! - the reply must be the one asked for: an `accepted` naming another action, or a
//!   built-in's text to an action request, is `refused`, never `ok`;
//! - `error lost <id>` (the key's run was lost with its container and never runs again) is
//!   `failed` at once;
//! - any other `error` is `refused` before `accepted` and `failed` after it;
//! - text only, to a built-in, closed by the service, is `ok`;
//! - past the retry window a fire known to be accepted is `failed`, any other `missed`.

use std::time::Duration;

use proto::client::{Closed, Meaning, Replies};
use proto::{ErrorCode, Reply};

use crate::record::RunResult;
use common::text::shown;

/// One outcome of a fire, as it is recorded and told: its result and what the service said
/// of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub result: RunResult,
    /// From `done ... exit=`.
    pub exit: Option<i32>,
    /// From `done ... secs=`.
    pub secs: Option<f64>,
    /// The service's run id (from `accepted`, `done` or `error lost`).
    pub id: Option<u64>,
}

impl Outcome {
    /// An outcome with a result and maybe a run id, nothing more.
    pub fn of(result: RunResult, id: Option<u64>) -> Outcome {
        Outcome {
            result,
            exit: None,
            secs: None,
            id,
        }
    }
}

/// Why a fire's delivery is over: what the daemon logs beside the outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// `done`: the action ran to its end.
    Done,
    /// Text only, to a built-in: answered.
    Answered,
    /// An `error` reply before `accepted`: the service refused the request.
    Refused { code: ErrorCode, message: String },
    /// An `error` reply after `accepted`: about the run's end.
    ErrorAfterAccepted { code: ErrorCode, message: String },
    /// `accepted` of another action than the one asked for (the service read the user as
    /// one of its actions): that run is not this fire's.
    OtherAction { accepted: String },
    /// A built-in's text to an action request (the service read it as a built-in).
    BuiltinText { text: String },
    /// `error lost`: the key's run was lost with its container.
    Lost { message: String },
    /// The reply could not be read.
    ReadError(String),
    /// Accepted, but no `done` within the retry window (`waited`); `error`: the last
    /// attempt's.
    NoDone { error: String, waited: Duration },
    /// Not delivered within the retry window (`waited`); `error`: the last attempt's.
    Unreachable { error: String, waited: Duration },
}

/// What one event of a connection means.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Read on.
    Wait,
    /// The first reply: the service has the request, so a restart must not send it again.
    /// Record `running` (an `accepted` id new to this fire) as a running run first, so that
    /// a kill in between leaves a run the next start resumes; then the fire as handled; then
    /// act on `then` (never another `Handed`).
    Handed {
        running: Option<u64>,
        then: Box<Step>,
    },
    /// Another `accepted` id on the same connection: record it as the running run.
    Running(u64),
    /// Not delivered, or not finished: ask again on a new connection, for this reason.
    Retry(String),
    /// The fire's outcome (record it, then mark the fire handled), and why.
    Over(Outcome, Why),
}

/// One fire's delivery, fed the events of its connections one at a time: the replies
/// read by [`proto::client::Replies`], given their meaning for a fire here.
#[derive(Debug, Clone)]
pub struct Delivery {
    replies: Replies,
    /// A notification, not a run of a line: `error busy` waits its turn.
    notice: bool,
}

impl Delivery {
    /// A delivery of `action`; `accepted`: the run id when the fire is known to have been
    /// accepted before (a run resumed after a restart).
    pub fn new(action: &str, notice: bool, accepted: Option<u64>) -> Delivery {
        Delivery {
            replies: Replies::new(action, accepted),
            notice,
        }
    }

    /// The run id, once the fire is known to be accepted.
    pub fn accepted(&self) -> Option<u64> {
        self.replies.accepted()
    }

    /// The run id `accepted` on the current connection.
    pub fn id(&self) -> Option<u64> {
        self.replies.id()
    }

    /// A new connection is made: its replies start afresh.
    pub fn connected(&mut self) {
        self.replies.connected();
    }

    /// One reply line.
    pub fn on_line(&mut self, reply: &Reply) -> Step {
        let first = self.replies.is_first();
        let over = |result, id, why| Step::Over(Outcome::of(result, id), why);
        let (running, step) = match self.replies.on_line(reply) {
            Meaning::Unavailable { message } => {
                return Step::Retry(format!("error unavailable {}", shown(&message)))
            }
            Meaning::Refused {
                code: ErrorCode::Busy,
                message,
            } if first && self.notice => {
                // The notify action is telling of another run (two lines ended together):
                // a notification waits its turn, within the retry window.
                return Step::Retry(format!("error busy {}", shown(&message)));
            }
            // That run is not this fire's: its outcome must not pass for this one's.
            Meaning::OtherAction { id, action } => {
                return over(
                    RunResult::Refused,
                    Some(id),
                    Why::OtherAction { accepted: action },
                )
            }
            // The service never runs the key again: asking again would change nothing.
            Meaning::Lost { id, message } => {
                return over(RunResult::Failed, id, Why::Lost { message })
            }
            Meaning::BuiltinText { text } => {
                return over(RunResult::Refused, None, Why::BuiltinText { text })
            }
            Meaning::Accepted { id, new } => (new.then_some(id), Step::Wait),
            Meaning::Done { id, exit, secs } => {
                let result = if exit == 0 {
                    RunResult::Ok
                } else {
                    RunResult::Failed
                };
                let outcome = Outcome {
                    result,
                    exit: Some(exit),
                    secs: Some(secs),
                    id: Some(id),
                };
                (None, Step::Over(outcome, Why::Done))
            }
            Meaning::ErrorAfterAccepted { id, code, message } => (
                None,
                over(
                    RunResult::Failed,
                    Some(id),
                    Why::ErrorAfterAccepted { code, message },
                ),
            ),
            Meaning::Refused { code, message } => (
                None,
                over(RunResult::Refused, None, Why::Refused { code, message }),
            ),
            Meaning::Text { .. } => (None, Step::Wait),
        };
        match (first, running) {
            (true, running) => Step::Handed {
                running,
                then: Box::new(step),
            },
            // Another id on the same connection: that one is the run now.
            (false, Some(id)) => Step::Running(id),
            (false, None) => step,
        }
    }

    /// The service closed the connection.
    pub fn on_closed(&mut self) -> Step {
        match self.replies.on_closed() {
            Closed::Silent => {
                Step::Retry("the service closed the connection without a reply".into())
            }
            // The action was accepted and may still be going: ask again with the same key,
            // which runs nothing new and brings its `done`.
            Closed::BeforeDone(_) => {
                Step::Retry("the service closed the connection before done".into())
            }
            // Text only, to a built-in such as `restart`: answered.
            Closed::Answered => Step::Over(Outcome::of(RunResult::Ok, None), Why::Answered),
        }
    }

    /// The reply could not be read (not UTF-8, a line too long, an I/O error).
    pub fn on_read_error(&mut self, err: &str) -> Step {
        Step::Over(
            Outcome::of(RunResult::Failed, self.replies.id()),
            Why::ReadError(err.to_string()),
        )
    }

    /// The retry window is over after `waited`; `error`: why the last attempt failed. An
    /// accepted fire that brought no `done` failed; any other was missed.
    pub fn on_timeout(&self, error: String, waited: Duration) -> (Outcome, Why) {
        match self.replies.accepted() {
            Some(id) => (
                Outcome::of(RunResult::Failed, Some(id)),
                Why::NoDone { error, waited },
            ),
            None => (
                Outcome::of(RunResult::Missed, None),
                Why::Unreachable { error, waited },
            ),
        }
    }
}

/// The first pause between attempts.
pub const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(15);

/// Capped exponential backoff within a retry window: how long to wait before the next
/// attempt, or that the window is over.
#[derive(Debug, Clone)]
pub struct Backoff {
    window: Duration,
    delay: Duration,
}

impl Backoff {
    pub fn new(window: Duration) -> Backoff {
        Backoff {
            window,
            delay: FIRST_PAUSE,
        }
    }

    /// Whether no attempt has been retried yet (the first retry is logged, the rest not).
    pub fn is_first(&self) -> bool {
        self.delay == FIRST_PAUSE
    }

    /// After a failed attempt, `waited` since the first: the pause before the next one, or
    /// `None` when the window is over.
    pub fn pause(&mut self, waited: Duration) -> Option<Duration> {
        if waited >= self.window {
            return None;
        }
        let pause = self.delay.min(self.window - waited);
        self.delay = (self.delay * 2).min(MAX_PAUSE);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `lines` to a fresh connection of `d`, then closes it unless a step ended it;
    /// returns every step.
    fn feed(d: &mut Delivery, lines: &[&str]) -> Vec<Step> {
        d.connected();
        let mut steps = Vec::new();
        for l in lines {
            let s = d.on_line(&Reply::parse(l));
            let end = ends(&s);
            steps.push(s);
            if end {
                return steps;
            }
        }
        steps.push(d.on_closed());
        steps
    }

    fn ends(s: &Step) -> bool {
        match s {
            Step::Wait | Step::Running(_) => false,
            Step::Handed { then, .. } => ends(then),
            Step::Retry(_) | Step::Over(..) => true,
        }
    }

    fn handed(running: Option<u64>, then: Step) -> Step {
        Step::Handed {
            running,
            then: Box::new(then),
        }
    }

    fn action() -> Delivery {
        Delivery::new("backup", false, None)
    }

    fn last(steps: &[Step]) -> &Step {
        steps.last().unwrap()
    }

    fn done(result: RunResult, exit: i32, id: u64) -> Step {
        Step::Over(
            Outcome {
                result,
                exit: Some(exit),
                secs: Some(1.5),
                id: Some(id),
            },
            Why::Done,
        )
    }

    #[test]
    fn accepted_then_done_is_ok_or_failed() {
        let mut d = action();
        let steps = feed(&mut d, &["accepted 7 backup", "done 7 exit=0 secs=1.5"]);
        assert_eq!(
            steps,
            vec![handed(Some(7), Step::Wait), done(RunResult::Ok, 0, 7)]
        );
        let mut d = action();
        let steps = feed(&mut d, &["accepted 7 backup", "done 7 exit=3 secs=1.5"]);
        assert_eq!(last(&steps), &done(RunResult::Failed, 3, 7));
    }

    #[test]
    fn a_done_first_is_handed_and_over() {
        let mut d = action();
        let steps = feed(&mut d, &["done 7 exit=0 secs=1.5"]);
        assert_eq!(steps, vec![handed(None, done(RunResult::Ok, 0, 7))]);
    }

    #[test]
    fn text_after_accepted_is_shown_not_obeyed() {
        let mut d = action();
        let steps = feed(
            &mut d,
            &["accepted 7 backup", "a note", "done 7 exit=0 secs=1.5"],
        );
        assert_eq!(steps[1], Step::Wait);
        assert_eq!(last(&steps), &done(RunResult::Ok, 0, 7));
        // A second `accepted` of another id on the same connection is the run now.
        let mut d = action();
        let steps = feed(
            &mut d,
            &[
                "accepted 7 backup",
                "accepted 8 backup",
                "accepted 8 backup",
            ],
        );
        assert_eq!(steps[1..3], [Step::Running(8), Step::Wait]);
        assert_eq!(d.accepted(), Some(8));
    }

    #[test]
    fn a_silent_close_is_retried() {
        let mut d = action();
        assert!(
            matches!(last(&feed(&mut d, &[])), Step::Retry(why) if why.contains("without a reply"))
        );
    }

    #[test]
    fn a_close_after_accepted_is_retried_and_the_repeat_is_not_running_again() {
        let mut d = action();
        let steps = feed(&mut d, &["accepted 7 backup"]);
        assert!(matches!(last(&steps), Step::Retry(why) if why.contains("before done")));
        assert_eq!(d.accepted(), Some(7));
        // The same key answers with the same run: handed, but not recorded running again.
        let steps = feed(&mut d, &["accepted 7 backup", "done 7 exit=0 secs=1.5"]);
        assert_eq!(
            steps,
            vec![handed(None, Step::Wait), done(RunResult::Ok, 0, 7)]
        );
    }

    #[test]
    fn a_resumed_run_knows_its_id() {
        let mut d = Delivery::new("backup", false, Some(7));
        let steps = feed(&mut d, &["accepted 7 backup"]);
        assert_eq!(steps[0], handed(None, Step::Wait));
        let mut d = Delivery::new("backup", false, Some(7));
        let steps = feed(&mut d, &["error shutting-down stopping"]);
        assert!(matches!(
            &steps[0],
            Step::Handed { running: None, then } if matches!(&**then,
                Step::Over(o, Why::ErrorAfterAccepted { .. }) if *o == Outcome::of(RunResult::Failed, Some(7)))
        ));
    }

    #[test]
    fn unavailable_first_or_after_accepted_is_retried() {
        let mut d = action();
        let steps = feed(&mut d, &["error unavailable listener restarting"]);
        assert_eq!(
            steps,
            vec![Step::Retry("error unavailable listener restarting".into())]
        );
        let mut d = action();
        let steps = feed(
            &mut d,
            &["accepted 7 backup", "error unavailable listener crashed"],
        );
        assert!(matches!(last(&steps), Step::Retry(w) if w.starts_with("error unavailable")));
        assert_eq!(d.accepted(), Some(7));
    }

    #[test]
    fn unavailable_after_text_is_an_ordinary_error() {
        let mut d = Delivery::new("restart", false, None);
        let steps = feed(&mut d, &["restarting", "error unavailable gone"]);
        assert!(matches!(
            last(&steps),
            Step::Over(o, Why::Refused { code: ErrorCode::Unavailable, .. }) if o.result == RunResult::Refused
        ));
    }

    #[test]
    fn busy_refuses_a_run_but_a_notification_waits() {
        let mut d = action();
        let steps = feed(&mut d, &["error busy backup is running as 6"]);
        assert_eq!(
            steps,
            vec![handed(
                None,
                Step::Over(
                    Outcome::of(RunResult::Refused, None),
                    Why::Refused {
                        code: ErrorCode::Busy,
                        message: "backup is running as 6".into()
                    }
                )
            )]
        );
        let mut d = Delivery::new("page", true, None);
        let steps = feed(&mut d, &["error busy page is running as 6"]);
        assert_eq!(
            steps,
            vec![Step::Retry("error busy page is running as 6".into())]
        );
    }

    #[test]
    fn other_errors_are_refused_before_accepted_and_failed_after() {
        for code in ["unknown-action", "denied", "too-many", "bad-request"] {
            let mut d = action();
            let steps = feed(&mut d, &[&format!("error {code} no")]);
            assert!(
                matches!(&steps[0], Step::Handed { running: None, then } if matches!(&**then, Step::Over(o, Why::Refused { .. }) if *o == Outcome::of(RunResult::Refused, None))),
                "{code}"
            );
        }
        let mut d = action();
        let steps = feed(&mut d, &["accepted 7 backup", "error shutting-down bye"]);
        assert_eq!(
            last(&steps),
            &Step::Over(
                Outcome::of(RunResult::Failed, Some(7)),
                Why::ErrorAfterAccepted {
                    code: ErrorCode::ShuttingDown,
                    message: "bye".into()
                }
            )
        );
    }

    #[test]
    fn another_action_accepted_is_refused() {
        let mut d = action();
        let steps = feed(&mut d, &["accepted 9 noop", "done 9 exit=0 secs=1.5"]);
        assert_eq!(
            steps,
            vec![Step::Over(
                Outcome::of(RunResult::Refused, Some(9)),
                Why::OtherAction {
                    accepted: "noop".into()
                }
            )]
        );
        assert_eq!(d.accepted(), None);
    }

    #[test]
    fn a_builtins_text_to_an_action_is_refused() {
        let mut d = action();
        let steps = feed(&mut d, &["stopped exit=143"]);
        assert_eq!(
            steps,
            vec![Step::Over(
                Outcome::of(RunResult::Refused, None),
                Why::BuiltinText {
                    text: "stopped exit=143".into()
                }
            )]
        );
    }

    #[test]
    fn text_to_a_builtin_closed_is_answered() {
        let mut d = Delivery::new("restart", false, None);
        let steps = feed(&mut d, &["restarting", "more text"]);
        assert_eq!(
            steps,
            vec![
                handed(None, Step::Wait),
                Step::Wait,
                Step::Over(Outcome::of(RunResult::Ok, None), Why::Answered)
            ]
        );
    }

    #[test]
    fn lost_fails_at_once_with_the_best_known_id() {
        let lost = |d: &mut Delivery, lines: &[&str]| match last(&feed(d, lines)) {
            Step::Over(o, Why::Lost { .. }) => *o,
            Step::Handed { then, .. } => match &**then {
                Step::Over(o, Why::Lost { .. }) => *o,
                s => panic!("{s:?}"),
            },
            s => panic!("{s:?}"),
        };
        let failed = |id| Outcome::of(RunResult::Failed, id);
        assert_eq!(
            lost(&mut action(), &["error lost 5 lost with its container"]),
            failed(Some(5))
        );
        assert_eq!(
            lost(&mut action(), &["accepted 7 backup", "error lost gone"]),
            failed(Some(7))
        );
        assert_eq!(
            lost(
                &mut Delivery::new("backup", false, Some(3)),
                &["error lost x"]
            ),
            failed(Some(3))
        );
        assert_eq!(lost(&mut action(), &["error lost"]), failed(None));
    }

    #[test]
    fn a_read_error_fails_with_the_connections_id() {
        let mut d = action();
        d.connected();
        d.on_line(&Reply::parse("accepted 7 backup"));
        assert_eq!(
            d.on_read_error("line too long"),
            Step::Over(
                Outcome::of(RunResult::Failed, Some(7)),
                Why::ReadError("line too long".into())
            )
        );
    }

    #[test]
    fn the_window_over_is_failed_when_accepted_else_missed() {
        let waited = Duration::from_secs(300);
        let d = action();
        assert_eq!(
            d.on_timeout("refused".into(), waited),
            (
                Outcome::of(RunResult::Missed, None),
                Why::Unreachable {
                    error: "refused".into(),
                    waited
                }
            )
        );
        let mut d = action();
        feed(&mut d, &["accepted 7 backup"]);
        assert_eq!(
            d.on_timeout("closed".into(), waited),
            (
                Outcome::of(RunResult::Failed, Some(7)),
                Why::NoDone {
                    error: "closed".into(),
                    waited
                }
            )
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_ends_with_the_window() {
        let mut b = Backoff::new(Duration::from_secs(60));
        assert!(b.is_first());
        let mut waited = Duration::ZERO;
        let mut pauses = Vec::new();
        while let Some(p) = b.pause(waited) {
            pauses.push(p.as_millis());
            waited += p;
        }
        assert!(!b.is_first());
        assert_eq!(
            &pauses[..8],
            &[250, 500, 1000, 2000, 4000, 8000, 15000, 15000]
        );
        assert_eq!(
            waited,
            Duration::from_secs(60),
            "the last pause ends the window"
        );
        assert_eq!(Backoff::new(Duration::ZERO).pause(Duration::ZERO), None);
    }
}
