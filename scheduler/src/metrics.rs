//! `BOSUN_METRICS_FILE` (DESIGN.md section 7, "The scheduler's view"): the schedule's
//! metrics in the Prometheus text exposition format (0.0.4), as node_exporter's textfile
//! collector reads them. Pure: [`families`] turns the record of each line and the daemon's
//! counts into metric families, [`render`] writes them out; [`crate::outputs`] replaces the
//! file atomically, so a reader (the collector) never sees half a file.
//!
//! Gauges come from the record, so they survive a restart of the daemon. The counter
//! `bosun_schedule_runs_total` is counted by the daemon since it started, not from the
//! record: the record is bounded, so a count taken from it would drop when it is compacted,
//! which Prometheus would read as a reset; a restart is a reset it understands.
//!
//! The text itself is written by `proto::metrics`, as for the `metrics` built-in.

use std::collections::BTreeMap;

pub use proto::metrics::{render, render_head, render_samples, Family, Kind};

use crate::record::RunResult;
use crate::summary::Summary;

/// What a schedule line asks for: the labels of its metrics. Lines with the same target
/// share their metrics (an operator alerts on `action="nightly-backup"`, not on a line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub service: String,
    pub action: String,
    /// Empty when the line names no user.
    pub user: String,
    /// The replica (DESIGN.md section 10): `2` for `php.2` and for instance 2 of
    /// `php@each`, `each` for a fire of `php@each` that found no instance; empty for `php`
    /// (then there is no `instance` label).
    pub instance: String,
}

impl Target {
    /// The labels of a line whose target is written `service` (`php`, `php.2`,
    /// `php.<n>` of `php@each`).
    pub fn of(service: &str, action: &str, user: Option<&str>) -> Target {
        let (service, instance) = match proto::Target::parse(service) {
            Ok(t) => match t.pick {
                proto::Pick::Any => (t.service, String::new()),
                proto::Pick::One(n) => (t.service, n.to_string()),
                proto::Pick::Each => (t.service, "each".to_string()),
            },
            Err(_) => (service.to_string(), String::new()),
        };
        Target {
            service,
            action: action.to_string(),
            user: user.unwrap_or_default().to_string(),
            instance,
        }
    }

    fn labels(&self) -> Vec<(&'static str, &str)> {
        let mut l = vec![
            ("service", self.service.as_str()),
            ("action", &self.action),
            ("user", &self.user),
        ];
        if !self.instance.is_empty() {
            l.push(("instance", &self.instance));
        }
        l
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

/// The schedule's metric families: `lines` are the schedule's lines with the summary of
/// their recorded runs (any order), `counts` the daemon's. Every target of the schedule has
/// a `runs_total` per counted result (0 included, so that `increase()` sees the first run)
/// and a last-success time (0 when it never succeeded, so an age alert fires); its last
/// run and last exit code appear once it has had them.
pub fn families<'a>(
    lines: impl IntoIterator<Item = (&'a Target, &'a Summary)>,
    counts: &Counts,
) -> Vec<Family> {
    let mut by: BTreeMap<&Target, Summary> = BTreeMap::new();
    for (target, s) in lines {
        merge(by.entry(target).or_default(), s);
    }
    let mut all = heads();
    for (target, agg) in &by {
        for (family, part) in all.iter_mut().zip(target_families(target, agg, counts)) {
            family.samples.extend(part.samples);
        }
    }
    all.into()
}

/// Adds what `s` knows of a target to `agg`, the summary of all the target's lines.
pub fn merge(agg: &mut Summary, s: &Summary) {
    agg.last_run = agg.last_run.max(s.last_run);
    agg.last_success = agg.last_success.max(s.last_success);
    if let Some((t, exit)) = s.last_exit {
        if agg.last_exit.is_none_or(|(u, _)| t >= u) {
            agg.last_exit = Some((t, exit));
        }
    }
}

/// The families, without samples, in the order they are written.
pub fn heads() -> [Family; 4] {
    [
        Family::new(
            "bosun_schedule_last_run_timestamp_seconds",
            "When the last run of the target was due (Unix time), whatever its result.",
            Kind::Gauge,
        ),
        Family::new(
            "bosun_schedule_last_success_timestamp_seconds",
            "When the last run of the target ended with exit=0 (Unix time); 0: never.",
            Kind::Gauge,
        ),
        Family::new(
            "bosun_schedule_last_exit_code",
            "The exit code of the last run of the target that ended with one.",
            Kind::Gauge,
        ),
        Family::new(
            "bosun_schedule_runs_total",
            "Runs of the target since the scheduler started, by result.",
            Kind::Counter,
        ),
    ]
}

/// One target's samples in each of the [`heads`] families; `agg` sums up all its lines.
pub fn target_families(target: &Target, agg: &Summary, counts: &Counts) -> [Family; 4] {
    let [mut last_run, mut last_success, mut last_exit, mut total] = heads();
    let labels = target.labels();
    if let Some(t) = agg.last_run {
        last_run.sample(&labels, secs(t));
    }
    last_success.sample(&labels, agg.last_success.map_or(0.0, secs));
    if let Some((_, exit)) = agg.last_exit {
        last_exit.sample(&labels, f64::from(exit));
    }
    let n = counts.get(target).copied().unwrap_or_default();
    for (result, n) in COUNTED.iter().zip(n) {
        let mut with = labels.clone();
        with.push(("result", result.as_str()));
        total.sample(&with, n as f64);
    }
    [last_run, last_success, last_exit, total]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample_run as run;
    use crate::record::Run;

    fn target(user: &str) -> Target {
        Target {
            service: "mysql".into(),
            action: "nightly-backup".into(),
            user: user.into(),
            instance: String::new(),
        }
    }

    fn summed(lines: &[(Target, Vec<Run>)]) -> Vec<(&Target, Summary)> {
        lines
            .iter()
            .map(|(t, runs)| (t, Summary::from_runs(runs)))
            .collect()
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
        let text = render(&families(
            summed(&lines).iter().map(|(t, s)| (*t, s)),
            &counts,
        ));
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

    /// Expected: an instance's series carry its `instance` label; `php` has none.
    #[test]
    fn replicas_have_an_instance_label() {
        assert_eq!(Target::of("php.3", "a", None).instance, "3");
        assert_eq!(Target::of("php.3", "a", None).service, "php");
        assert_eq!(Target::of("php", "a", None).instance, "");
        assert_eq!(Target::of("php@each", "a", None).instance, "each");
        let t = Target::of("php.2", "rotate", Some("u"));
        let lines = vec![(t, vec![run(100, RunResult::Ok, Some(0))])];
        let text = render(&families(
            summed(&lines).iter().map(|(t, s)| (*t, s)),
            &Counts::new(),
        ));
        assert!(
            text.contains(
                "last_exit_code{service=\"php\",action=\"rotate\",user=\"u\",instance=\"2\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "runs_total{service=\"php\",action=\"rotate\",user=\"u\",instance=\"2\",result=\"ok\"} 0\n"
        ), "{text}");
    }

    #[test]
    fn two_lines_of_one_target_share_its_metrics() {
        let lines = vec![
            (target("u"), vec![run(100, RunResult::Ok, Some(0))]),
            (target("u"), vec![run(50, RunResult::Failed, Some(1))]),
        ];
        let text = render(&families(
            summed(&lines).iter().map(|(t, s)| (*t, s)),
            &Counts::new(),
        ));
        assert_eq!(text.matches("bosun_schedule_last_exit_code{").count(), 1);
        assert!(text.contains(
            "last_exit_code{service=\"mysql\",action=\"nightly-backup\",user=\"u\"} 0\n"
        ));
    }
}
