//! The notification rules, pure: which outcome of a line is told to its `ON_FAILURE=` or
//! `ON_SUCCESS=` target, the request that tells it, and which outcome is told again at
//! start. [`crate::daemon`] delivers what these return like any fire ([`crate::delivery`]).
//!
//! - `failed`, `missed` and `refused` go to `ON_FAILURE=`, `ok` to `ON_SUCCESS=`; `running`
//!   and `skipped` are not outcomes to tell;
//! - a notification is a request like any other, keyed by its run's key plus `:f` or `:s`,
//!   so that an outcome told twice (a resumed run, a restart) runs the target once;
//! - a notification's own outcome is only logged: it is not a run of a line, so it is
//!   neither recorded nor told to anyone, and cannot loop;
//! - at start each line's last outcome, recorded within the catch-up window, is told again
//!   with its key: one a killed scheduler did not get through is delivered, one already
//!   delivered is answered from the target's journal.

use chrono::{DateTime, TimeDelta, Utc};

use crate::delivery::Outcome;
use crate::job::Job;
use crate::record::{Run, RunResult};

/// Which target an outcome is told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `ON_FAILURE=`: `failed`, `missed`, `refused`.
    Failure,
    /// `ON_SUCCESS=`: `ok`.
    Success,
}

impl Target {
    /// The target an outcome with `result` is told to, if any.
    pub fn of(result: RunResult) -> Option<Target> {
        match result {
            RunResult::Ok => Some(Target::Success),
            RunResult::Failed | RunResult::Missed | RunResult::Refused => Some(Target::Failure),
            RunResult::Skipped | RunResult::Running => None,
        }
    }

    /// What the notification's key adds to its run's key.
    pub fn suffix(self) -> char {
        match self {
            Target::Failure => 'f',
            Target::Success => 's',
        }
    }
}

/// Whether an outcome of `job` is recorded and told: a notification's is only logged.
pub fn is_told(job: &Job) -> bool {
    !job.notice
}

/// The notification of `job`'s `outcome` to the line's target, if it has one for it:
/// `@KEY:<f|s> ACTION SERVICE ACTION USER RESULT EXIT ID` to the target's service, `-` for
/// what is not known. `run` is the daemon's counter for the log.
pub fn notice(job: &Job, outcome: &Outcome, run: u64) -> Option<Job> {
    if !is_told(job) {
        return None;
    }
    let target = Target::of(outcome.result)?;
    let to = match target {
        Target::Failure => job.options.on_failure.as_ref(),
        Target::Success => job.options.on_success.as_ref(),
    }?;
    let key = format!("{}:{}", job.key, target.suffix());
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let request = proto::Request {
        key: Some(key.clone()),
        user: None,
        action: to.action.clone(),
        args: vec![
            job.service.clone(),
            job.action.clone(),
            dash(job.user.clone()),
            outcome.result.as_str().to_string(),
            dash(outcome.exit.map(|c| c.to_string())),
            dash(outcome.id.map(|i| i.to_string())),
        ],
        timeout: None,
    };
    Some(Job {
        run,
        line_key: job.line_key.clone(),
        key,
        due: job.due,
        line: job.line,
        service: to.service.clone(),
        action: to.action.clone(),
        user: None,
        request: request.to_string(),
        options: job.options.for_notice(),
        notice: true,
        instance: None,
    })
}

/// At start: whether the line's last recorded run `last` is told again, by `job` (the fire
/// of `last` as this schedule keys it). Only a final outcome of a line with a target,
/// recorded within `window` of `now`, and of the same fire key (the line or the secret has
/// not changed since).
pub fn retell(job: &Job, last: &Run, now: DateTime<Utc>, window: TimeDelta) -> bool {
    !matches!(last.result, RunResult::Running | RunResult::Skipped)
        && (job.options.on_failure.is_some() || job.options.on_success.is_some())
        && now - last.at <= window
        && job.key == last.key
}

/// The outcome `last` recorded.
pub fn outcome_of(last: &Run) -> Outcome {
    Outcome {
        result: last.result,
        exit: last.exit,
        secs: last.secs,
        id: last.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FireKeys;

    const FILE: &str = "ON_FAILURE=ops page\nON_SUCCESS=ops log-ok\n0 3 * * * forum db backup\n";

    fn job(text: &str) -> Job {
        let s = crate::schedule::parse("t", text.as_bytes(), chrono_tz::UTC).unwrap();
        let due = DateTime::from_timestamp(1_764_821_100, 0).unwrap();
        Job::new(&FireKeys::random().unwrap(), 1, &s.entries[0], due)
    }

    fn outcome(result: RunResult) -> Outcome {
        Outcome {
            result,
            exit: Some(3),
            secs: Some(1.0),
            id: Some(7),
        }
    }

    #[test]
    fn failures_and_successes_go_to_their_targets() {
        let j = job(FILE);
        for (result, to, suffix) in [
            (RunResult::Failed, "page", 'f'),
            (RunResult::Missed, "page", 'f'),
            (RunResult::Refused, "page", 'f'),
            (RunResult::Ok, "log-ok", 's'),
        ] {
            let n = notice(&j, &outcome(result), 9).unwrap();
            assert_eq!((n.service.as_str(), n.action.as_str()), ("ops", to));
            assert_eq!(n.key, format!("{}:{suffix}", j.key));
            assert_eq!(
                n.request,
                format!("@{} {to} db backup forum {} 3 7", n.key, result.as_str())
            );
            assert!(n.notice && n.run == 9);
            assert_eq!((n.options.on_failure, n.options.on_success), (None, None));
        }
        for result in [RunResult::Running, RunResult::Skipped] {
            assert!(notice(&j, &outcome(result), 9).is_none());
        }
    }

    #[test]
    fn unknowns_are_dashes() {
        let j = job("ON_FAILURE=ops page\n0 3 * * * db backup\n");
        let n = notice(&j, &Outcome::of(RunResult::Missed, None), 1).unwrap();
        assert_eq!(n.request, format!("@{} page db backup - missed - -", n.key));
    }

    #[test]
    fn no_target_no_notice() {
        let j = job("ON_SUCCESS=ops log-ok\n0 3 * * * db backup\n");
        assert!(notice(&j, &outcome(RunResult::Failed), 1).is_none());
        assert!(notice(&j, &outcome(RunResult::Ok), 1).is_some());
        let j = job("0 3 * * * db backup\n");
        assert!(notice(&j, &outcome(RunResult::Ok), 1).is_none());
    }

    #[test]
    fn a_notifications_outcome_is_never_told() {
        let j = job(FILE);
        let mut n = notice(&j, &outcome(RunResult::Failed), 1).unwrap();
        assert!(!is_told(&n));
        // Even with targets of its own, it cannot loop.
        n.options.on_failure = j.options.on_failure.clone();
        assert!(notice(&n, &outcome(RunResult::Failed), 2).is_none());
    }

    #[test]
    fn the_last_outcome_is_told_again_within_the_window_with_its_own_key() {
        let j = job(FILE);
        let now = j.due + TimeDelta::hours(1);
        let window = TimeDelta::hours(24);
        let run = |result, at, key: &str| Run {
            key: key.to_string(),
            fire: j.due,
            at,
            file: "t".into(),
            line: 3,
            service: "db".into(),
            action: "backup".into(),
            user: Some("forum".into()),
            result,
            exit: None,
            secs: None,
            id: Some(7),
        };
        let at = j.due + TimeDelta::minutes(1);
        assert!(retell(&j, &run(RunResult::Failed, at, &j.key), now, window));
        assert!(retell(&j, &run(RunResult::Ok, at, &j.key), now, window));
        assert!(!retell(
            &j,
            &run(RunResult::Running, at, &j.key),
            now,
            window
        ));
        assert!(!retell(
            &j,
            &run(RunResult::Skipped, at, &j.key),
            now,
            window
        ));
        assert!(!retell(
            &j,
            &run(RunResult::Failed, at, "other:1"),
            now,
            window
        ));
        let old = now - window - TimeDelta::seconds(1);
        assert!(!retell(
            &j,
            &run(RunResult::Failed, old, &j.key),
            now,
            window
        ));
        assert!(retell(
            &j,
            &run(RunResult::Failed, now - window, &j.key),
            now,
            window
        ));
        let bare = job("0 3 * * * forum db backup\n");
        assert!(!retell(
            &bare,
            &run(RunResult::Failed, at, &bare.key),
            now,
            window
        ));
        let r = run(RunResult::Failed, at, &j.key);
        assert_eq!(outcome_of(&r), Outcome::of(RunResult::Failed, Some(7)));
    }
}
