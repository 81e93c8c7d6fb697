//! Replica fan-out (DESIGN.md section 10), the pure decisions: which deliveries ("legs") a
//! fire of a line makes, under which key and name each goes, when the line's fire counts
//! as handed for the catch-up, and how a line's record is shown per instance.
//!
//! - `php` and `php.2` make one leg, as before; `php@each` makes one leg per instance whose
//!   socket is listed at fire time ([`proto::target::instance_sockets`]). An instance that
//!   appears after the fire is not part of it (it runs from the next fire); one that goes
//!   away between the fire and its delivery is retried within the window like a missing
//!   socket, then recorded `missed` for that instance. A fire that finds no instance at
//!   all is recorded `missed` on the line itself.
//! - A leg of instance `n` is named `php.<n>` (its record's service, its status line, its
//!   page row, its metrics' `instance` label, the SERVICE its `ON_FAILURE=` is told), is
//!   keyed `<fire key>:<n>` so each instance runs a fire once, and holds its own running
//!   slot, so a slow instance skips only its own next fire.
//! - The line's fire is handed (recorded for the catch-up) once every leg is: a scheduler
//!   killed between two legs catches the fire up at its next start, and the legs already
//!   sent are answered from their service's journal by their keys, not run again.
//! - A line's runs are all in its one record file, the instance in each run's service; its
//!   report lines are one per instance ([`groups`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use proto::{Pick, Target};

use crate::record::Run;

/// One delivery of a fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// The instance of an `@each` fan-out; `None` for a line's one leg.
    pub instance: Option<u32>,
    /// What the leg is sent to and named by: `php`, `php.2`, or `php.<n>` of `php@each`.
    pub service: String,
}

/// The legs of a fire of a line with target `dest`, given the instances listed at fire
/// time (sorted or not; the legs come in instance order).
pub fn legs(dest: &Target, listed: &[u32]) -> Vec<Leg> {
    match dest.pick {
        Pick::Any | Pick::One(_) => vec![Leg {
            instance: None,
            service: dest.to_string(),
        }],
        Pick::Each => {
            let mut ns = listed.to_vec();
            ns.sort_unstable();
            ns.dedup();
            ns.into_iter()
                .map(|n| Leg {
                    instance: Some(n),
                    service: dest.at(n).to_string(),
                })
                .collect()
        }
    }
}

/// The key a leg sends: the fire's key, with `:<n>` for instance `n` of a fan-out.
pub fn leg_key(fire_key: &str, instance: Option<u32>) -> String {
    match instance {
        Some(n) => format!("{fire_key}:{n}"),
        None => fire_key.to_string(),
    }
}

/// The running slot of a leg: the line's key, with the instance of a fan-out.
pub fn slot(line_key: &str, instance: Option<u32>) -> String {
    leg_key(line_key, instance)
}

/// The instance a leg of an `@each` line ran on, from its run's service (`php.3`).
pub fn instance_of(service: &str) -> Option<u32> {
    Target::parse(service).ok().and_then(|t| t.instance())
}

/// The socket a delivery to `target` tries first: that instance's for `php.2` (in the
/// directory of [`proto::target::instance_dir`]), the shared one for `php`, which falls
/// back to any live instance socket when it is missing or refuses.
pub fn first_path(run_dir: &Path, target: &Target) -> PathBuf {
    match target.pick {
        Pick::One(n) => proto::target::instance_socket_path(
            &proto::target::instance_dir(run_dir, &target.service),
            &target.service,
            n,
        ),
        Pick::Any | Pick::Each => proto::request_socket_path(run_dir, &target.service),
    }
}

/// Counts down the legs of one fire that are not handed yet: [`Countdown::hand`] is true
/// for the last one, which then records the line's fire.
#[derive(Debug)]
pub struct Countdown(AtomicUsize);

impl Countdown {
    pub fn new(legs: usize) -> Countdown {
        Countdown(AtomicUsize::new(legs))
    }

    /// One leg is handed (call once per leg); true when it was the last.
    pub fn hand(&self) -> bool {
        self.0.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// The report lines of one schedule line whose target is written `service` (`php@each`,
/// `php.2`, `php`): its runs (oldest first, as the record folds them) under the name each
/// report line shows. A line that is not `@each` has one, all its runs. An `@each` line
/// has one per instance that has runs, in instance order (`php.1`, `php.2`, ...); the
/// line's own runs (fires that found no instance) are shown as `php@each` only when the
/// latest of them is later than every instance's latest run, or when there is nothing
/// else to show, so that a fire that reached nobody is seen until a later one reaches
/// someone.
pub fn groups(service: &str, runs: Vec<Run>) -> Vec<(String, Vec<Run>)> {
    let each = Target::parse(service).is_ok_and(|t| t.pick == Pick::Each);
    if !each {
        return vec![(service.to_string(), runs)];
    }
    let mut by: std::collections::BTreeMap<u32, Vec<Run>> = std::collections::BTreeMap::new();
    let mut own = Vec::new();
    for r in runs {
        match instance_of(&r.service) {
            Some(n) => by.entry(n).or_default().push(r),
            None => own.push(r),
        }
    }
    let latest = |rs: &[Run]| rs.iter().map(|r| r.fire).max();
    let newest_leg = by.values().filter_map(|rs| latest(rs)).max();
    let show_own = by.is_empty() || latest(&own) > newest_leg;
    let mut out: Vec<(String, Vec<Run>)> = Vec::new();
    let base = service.strip_suffix("@each").unwrap_or(service);
    for (n, rs) in by {
        out.push((format!("{base}.{n}"), rs));
    }
    if show_own {
        out.push((service.to_string(), own));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{sample_run, RunResult};

    fn t(text: &str) -> Target {
        Target::parse(text).unwrap()
    }

    #[test]
    fn one_leg_for_one_replica_and_one_per_listed_instance_for_each() {
        let one = |s: &str| Leg {
            instance: None,
            service: s.into(),
        };
        assert_eq!(legs(&t("php"), &[1, 2]), [one("php")]);
        assert_eq!(legs(&t("php.2"), &[]), [one("php.2")]);
        let got = legs(&t("php@each"), &[3, 1, 10, 3]);
        let names: Vec<_> = got
            .iter()
            .map(|l| (l.instance, l.service.as_str()))
            .collect();
        assert_eq!(
            names,
            [(Some(1), "php.1"), (Some(3), "php.3"), (Some(10), "php.10")]
        );
        // No instance at fire time: no leg (the daemon records the fire missed).
        assert!(legs(&t("php@each"), &[]).is_empty());
    }

    #[test]
    fn keys_and_slots_are_per_instance() {
        assert_eq!(leg_key("ab12:1764821100", Some(3)), "ab12:1764821100:3");
        assert_eq!(leg_key("ab12:1764821100", None), "ab12:1764821100");
        assert!(proto::valid_key(&leg_key(
            "0123456789abcdef:1764821100000",
            Some(9999)
        )));
        assert_ne!(slot("L", Some(1)), slot("L", Some(2)));
        assert_eq!(instance_of("php.3"), Some(3));
        assert_eq!(instance_of("php@each"), None);
        assert_eq!(instance_of("php"), None);
    }

    #[test]
    fn the_last_leg_handed_records_the_fire() {
        let c = Countdown::new(3);
        assert_eq!([c.hand(), c.hand(), c.hand()], [false, false, true]);
        assert!(Countdown::new(1).hand());
    }

    fn run(secs: i64, service: &str, result: RunResult) -> Run {
        let mut r = sample_run(secs, result, None);
        r.service = service.into();
        r
    }

    #[test]
    fn report_lines_per_instance() {
        let names = |g: &[(String, Vec<Run>)]| -> Vec<(String, usize)> {
            g.iter().map(|(s, r)| (s.clone(), r.len())).collect()
        };
        let plain = vec![run(1, "php", RunResult::Ok)];
        assert_eq!(names(&groups("php", plain)), [("php".into(), 1)]);
        assert_eq!(names(&groups("php@each", vec![])), [("php@each".into(), 0)]);
        let runs = vec![
            run(60, "php.2", RunResult::Ok),
            run(60, "php.10", RunResult::Ok),
            run(60, "php.1", RunResult::Failed),
            run(120, "php.2", RunResult::Ok),
            run(30, "php@each", RunResult::Missed),
        ];
        assert_eq!(
            names(&groups("php@each", runs.clone())),
            [
                ("php.1".into(), 1),
                ("php.2".into(), 2),
                ("php.10".into(), 1)
            ]
        );
        // The latest fire found nobody: shown on the line until a later one reaches someone.
        let mut later = runs;
        later.push(run(180, "php@each", RunResult::Missed));
        let g = groups("php@each", later);
        assert_eq!(
            g.last().map(|(s, r)| (s.as_str(), r.len())),
            Some(("php@each", 2))
        );
        assert_eq!(g.len(), 4);
    }
}
