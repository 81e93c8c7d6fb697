//! What the reports need of a schedule line's runs, kept small: its [`RECENT`] latest runs
//! as marks (the status page's strip, the last result of `scheduler status`) and the three
//! facts of its whole record the metrics need (last run, last success, last exit code).
//!
//! Pure. `scheduler status` builds one from the record it reads ([`Summary::from_runs`]);
//! the daemon keeps one per line in memory and adds each outcome as it comes
//! ([`Summary::add`]), so a rewrite of the metrics file and the page reads no file, however
//! long the schedule.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::record::{Run, RunResult};

/// Runs per line on the page's strip: a month of a nightly job.
pub const RECENT: usize = 30;

/// One run, as the reports show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// When the line was due: the run's identity within its line (its key is the line's
    /// hash and this time).
    pub fire: DateTime<Utc>,
    pub result: RunResult,
    pub exit: Option<i32>,
    pub secs: Option<f64>,
    /// The run's id in the target service (`scheduler send SERVICE log ID`).
    pub id: Option<u64>,
}

impl Mark {
    pub fn of(run: &Run) -> Mark {
        Mark {
            fire: run.fire,
            result: run.result,
            exit: run.exit,
            secs: run.secs.filter(|s| s.is_finite()),
            id: run.id,
        }
    }
}

/// A line's runs, summed up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The latest runs, oldest first, at most [`RECENT`]; a run recorded twice (`running`,
    /// then its outcome) is one mark, the later record winning.
    pub recent: VecDeque<Mark>,
    /// When the latest run that was not `skipped` was due.
    pub last_run: Option<DateTime<Utc>>,
    /// When the latest run that ended with `exit=0` was recorded.
    pub last_success: Option<DateTime<Utc>>,
    /// The exit code of the latest run (by fire time) that had one.
    pub last_exit: Option<(DateTime<Utc>, i32)>,
}

impl Summary {
    /// The summary of a record's runs, in the record's order (as [`crate::record`] folds them).
    pub fn from_runs<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Summary {
        let mut s = Summary::default();
        for r in runs {
            s.add(r);
        }
        s
    }

    /// Adds one record of a run: a new run, or the outcome of one already there.
    pub fn add(&mut self, run: &Run) {
        let mark = Mark::of(run);
        match self.recent.iter_mut().rev().find(|m| m.fire == run.fire) {
            Some(m) => *m = mark,
            None => {
                self.recent.push_back(mark);
                if self.recent.len() > RECENT {
                    self.recent.pop_front();
                }
            }
        }
        if run.result != RunResult::Skipped {
            self.last_run = self.last_run.max(Some(run.fire));
        }
        if run.result == RunResult::Ok {
            self.last_success = self.last_success.max(Some(run.at));
        }
        if let Some(exit) = run.exit {
            if self.last_exit.is_none_or(|(t, _)| run.fire >= t) {
                self.last_exit = Some((run.fire, exit));
            }
        }
    }

    /// The latest run.
    pub fn last(&self) -> Option<&Mark> {
        self.recent.back()
    }

    /// The latest run's result, `never` when there is none.
    pub fn result(&self) -> &'static str {
        self.last().map_or("never", |m| m.result.as_str())
    }

    /// Whether the latest run ended `failed`, `missed` or `refused`.
    pub fn is_bad(&self) -> bool {
        self.last().is_some_and(|m| m.result.is_bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample_run as run;

    #[test]
    fn folds_outcomes_and_keeps_the_facts_of_the_whole_record() {
        let mut runs = vec![
            run(100, RunResult::Ok, Some(0)),
            run(200, RunResult::Running, None),
            run(200, RunResult::Failed, Some(3)),
            run(300, RunResult::Skipped, None),
        ];
        runs[3].secs = Some(f64::NAN);
        let s = Summary::from_runs(&runs);
        let results: Vec<_> = s.recent.iter().map(|m| m.result).collect();
        assert_eq!(
            results,
            [RunResult::Ok, RunResult::Failed, RunResult::Skipped]
        );
        assert_eq!(s.recent[2].secs, None);
        assert_eq!(s.result(), "skipped");
        assert!(!s.is_bad());
        assert_eq!(s.last_run, DateTime::from_timestamp(200, 0));
        assert_eq!(s.last_success, DateTime::from_timestamp_millis(105_500));
        assert_eq!(s.last_exit.map(|(_, e)| e), Some(3));
        assert_eq!(Summary::default().result(), "never");
    }

    #[test]
    fn keeps_the_recent_runs_and_the_last_success_beyond_them() {
        let mut s = Summary::default();
        s.add(&run(0, RunResult::Ok, Some(0)));
        for i in 1..=100 {
            s.add(&run(i * 60, RunResult::Failed, Some(1)));
        }
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(
            s.recent.front().unwrap().fire,
            DateTime::from_timestamp(71 * 60, 0).unwrap()
        );
        assert_eq!(s.last_success, DateTime::from_timestamp_millis(5_500));
        assert!(s.is_bad());
        // An outcome recorded late for an older fire does not take over the last exit.
        s.add(&run(30, RunResult::Ok, Some(0)));
        assert_eq!(s.last_exit.map(|(_, e)| e), Some(1));
    }
}
