//! `BOSUN_METRICS_FILE` (DESIGN.md section 7, "The scheduler's view"): the schedule's
//! metrics in the Prometheus text exposition format (0.0.4), as node_exporter's textfile
//! collector reads them. Pure: [`families`] turns the record of each line and the daemon's
//! counts into metric families, [`render`] writes them out; only [`write_atomic`] touches
//! the disk, so a reader (the collector) never sees half a file.
//!
//! Gauges come from the record, so they survive a restart of the daemon. The counter
//! `bosun_schedule_runs_total` is counted by the daemon since it started, not from the
//! record: the record is bounded, so a count taken from it would drop when it is compacted,
//! which Prometheus would read as a reset; a restart is a reset it understands.
//!
//! The text itself is written by `proto::metrics`, as for the `metrics` built-in.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::Path;

pub use proto::metrics::{render, Family, Kind};

use crate::record::{Run, RunResult};

/// What a schedule line asks for: the labels of its metrics. Lines with the same target
/// share their metrics (an operator alerts on `action="nightly-backup"`, not on a line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub service: String,
    pub action: String,
    /// Empty when the line names no user.
    pub user: String,
}

impl Target {
    fn labels(&self) -> [(&'static str, &str); 3] {
        [
            ("service", &self.service),
            ("action", &self.action),
            ("user", &self.user),
        ]
    }
}

/// The results `bosun_schedule_runs_total` counts: every final one.
pub const COUNTED: [RunResult; 5] = [
    RunResult::Ok,
    RunResult::Failed,
    RunResult::Missed,
    RunResult::Refused,
    RunResult::Skipped,
];

/// Runs per target and result since the daemon started, in [`COUNTED`] order.
pub type Counts = BTreeMap<Target, [u64; COUNTED.len()]>;

/// Counts one final outcome; `Running` is not one.
pub fn count(counts: &mut Counts, target: &Target, result: RunResult) {
    if let Some(i) = COUNTED.iter().position(|r| *r == result) {
        counts.entry(target.clone()).or_default()[i] += 1;
    }
}

fn secs(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The schedule's metric families: `lines` are the schedule's lines with their recorded
/// runs (any order), `counts` the daemon's. Every target of the schedule has a
/// `runs_total` per counted result (0 included, so that `increase()` sees the first run)
/// and a last-success time (0 when it never succeeded, so an age alert fires); its last
/// run and last exit code appear once it has had them.
pub fn families(lines: &[(Target, Vec<Run>)], counts: &Counts) -> Vec<Family> {
    #[derive(Default)]
    struct Agg {
        last_run: Option<f64>,
        last_success: Option<f64>,
        /// (fire, exit) of the latest run with an exit code.
        last_exit: Option<(f64, i32)>,
    }
    let mut by: BTreeMap<&Target, Agg> = BTreeMap::new();
    for (target, runs) in lines {
        let agg = by.entry(target).or_default();
        for r in runs {
            let fire = secs(r.fire);
            if r.result != RunResult::Skipped {
                agg.last_run = Some(agg.last_run.map_or(fire, |t| t.max(fire)));
            }
            if r.result == RunResult::Ok {
                let at = secs(r.at);
                agg.last_success = Some(agg.last_success.map_or(at, |t| t.max(at)));
            }
            if let Some(exit) = r.exit {
                if agg.last_exit.is_none_or(|(t, _)| fire >= t) {
                    agg.last_exit = Some((fire, exit));
                }
            }
        }
    }
    let mut last_run = Family::new(
        "bosun_schedule_last_run_timestamp_seconds",
        "When the last run of the target was due (Unix time), whatever its result.",
        Kind::Gauge,
    );
    let mut last_success = Family::new(
        "bosun_schedule_last_success_timestamp_seconds",
        "When the last run of the target ended with exit=0 (Unix time); 0: never.",
        Kind::Gauge,
    );
    let mut last_exit = Family::new(
        "bosun_schedule_last_exit_code",
        "The exit code of the last run of the target that ended with one.",
        Kind::Gauge,
    );
    let mut total = Family::new(
        "bosun_schedule_runs_total",
        "Runs of the target since the scheduler started, by result.",
        Kind::Counter,
    );
    for (target, agg) in &by {
        let labels = target.labels();
        if let Some(t) = agg.last_run {
            last_run.sample(&labels, t);
        }
        last_success.sample(&labels, agg.last_success.unwrap_or(0.0));
        if let Some((_, exit)) = agg.last_exit {
            last_exit.sample(&labels, f64::from(exit));
        }
        let n = counts.get(*target).copied().unwrap_or_default();
        for (result, n) in COUNTED.iter().zip(n) {
            let [s, a, u] = labels;
            total.sample(&[s, a, u, ("result", result.as_str())], n as f64);
        }
    }
    vec![last_run, last_success, last_exit, total]
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never
/// a part: a temporary file in the same directory (hidden, and not `*.prom`, so the
/// collector skips it), written, fsynced, renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn target(user: &str) -> Target {
        Target {
            service: "mysql".into(),
            action: "nightly-backup".into(),
            user: user.into(),
        }
    }

    fn run(fire: i64, result: RunResult, exit: Option<i32>) -> Run {
        Run {
            key: format!("k:{fire}"),
            fire: DateTime::from_timestamp(fire, 0).unwrap(),
            at: DateTime::from_timestamp(fire + 5, 500_000_000).unwrap(),
            file: "f".into(),
            line: 1,
            service: "mysql".into(),
            action: "nightly-backup".into(),
            user: None,
            result,
            exit,
            secs: None,
            id: None,
        }
    }

    #[test]
    fn families_from_runs_and_counts() {
        let mut counts = Counts::new();
        count(&mut counts, &target("forum"), RunResult::Ok);
        count(&mut counts, &target("forum"), RunResult::Failed);
        count(&mut counts, &target("forum"), RunResult::Running);
        let lines = vec![
            (
                target("forum"),
                vec![
                    run(100, RunResult::Ok, Some(0)),
                    run(200, RunResult::Failed, Some(3)),
                    run(300, RunResult::Missed, None),
                    run(400, RunResult::Skipped, None),
                ],
            ),
            (target(""), vec![]),
        ];
        let text = render(&families(&lines, &counts));
        let samples: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let l = |u: &str| format!("{{service=\"mysql\",action=\"nightly-backup\",user=\"{u}\"");
        let (a, b) = (l(""), l("forum"));
        assert_eq!(
            samples,
            [
                format!("bosun_schedule_last_run_timestamp_seconds{b}}} 300"),
                format!("bosun_schedule_last_success_timestamp_seconds{a}}} 0"),
                format!("bosun_schedule_last_success_timestamp_seconds{b}}} 105.5"),
                format!("bosun_schedule_last_exit_code{b}}} 3"),
                format!("bosun_schedule_runs_total{a},result=\"ok\"}} 0"),
                format!("bosun_schedule_runs_total{a},result=\"failed\"}} 0"),
                format!("bosun_schedule_runs_total{a},result=\"missed\"}} 0"),
                format!("bosun_schedule_runs_total{a},result=\"refused\"}} 0"),
                format!("bosun_schedule_runs_total{a},result=\"skipped\"}} 0"),
                format!("bosun_schedule_runs_total{b},result=\"ok\"}} 1"),
                format!("bosun_schedule_runs_total{b},result=\"failed\"}} 1"),
                format!("bosun_schedule_runs_total{b},result=\"missed\"}} 0"),
                format!("bosun_schedule_runs_total{b},result=\"refused\"}} 0"),
                format!("bosun_schedule_runs_total{b},result=\"skipped\"}} 0"),
            ]
        );
        assert_eq!(text.matches("# TYPE").count(), 4);
        assert!(text.contains("# TYPE bosun_schedule_runs_total counter\n"));
    }

    #[test]
    fn two_lines_of_one_target_share_its_metrics() {
        let lines = vec![
            (target("u"), vec![run(100, RunResult::Ok, Some(0))]),
            (target("u"), vec![run(50, RunResult::Failed, Some(1))]),
        ];
        let text = render(&families(&lines, &Counts::new()));
        assert_eq!(text.matches("bosun_schedule_last_exit_code{").count(), 1);
        assert!(text.contains(
            "last_exit_code{service=\"mysql\",action=\"nightly-backup\",user=\"u\"} 0\n"
        ));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bosun.prom");
        write_atomic(&p, b"one\n").unwrap();
        write_atomic(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("absent/x.prom"), b"x").is_err());
    }
}
