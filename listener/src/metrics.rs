//! The journal's part of the `metrics` built-in (DESIGN.md section 7): the actions' counters,
//! last success and durations, from [`journal::Journal::tallies`]. The supervisor's part (the
//! main process) comes over the control channel; the text format is `proto::metrics`'.
//!
//! What the counters count: every run the journal has recorded since its file was created,
//! also the runs it no longer keeps (their tally is in the file), so they survive restarts of
//! the listener and of the container. They start again from 0 only with a new journal file
//! (a new `state_dir`, or a journal kept in memory because the directory is unusable).

use std::collections::BTreeMap;

use journal::Tally;
use proto::metrics::{render, Family, Kind};

/// `bosun_actions_total`, `bosun_action_last_success_timestamp_seconds` and the
/// `bosun_action_duration_seconds` summary (`_sum` and `_count`, no quantiles), by action.
pub fn families(tallies: &BTreeMap<String, Tally>) -> Vec<Family> {
    let mut total = Family::new(
        "bosun_actions_total",
        "Action runs that ended, by result (ok: exit 0, failed: another exit, lost: going when the container or listener died), as counted by the run journal since its file was created.",
        Kind::Counter,
    );
    let mut last = Family::new(
        "bosun_action_last_success_timestamp_seconds",
        "Unix time of the end of the last run of the action that exited 0.",
        Kind::Gauge,
    );
    let mut secs = Family::new(
        "bosun_action_duration_seconds",
        "Duration of the action runs that ended ok or failed (a summary without quantiles: _sum and _count).",
        Kind::Summary,
    );
    for (action, t) in tallies {
        for (result, n) in [("ok", t.ok), ("failed", t.failed), ("lost", t.lost)] {
            total.sample(&[("action", action), ("result", result)], n as f64);
        }
        if let Some(ms) = t.last_success_ms {
            last.sample(&[("action", action)], ms as f64 / 1000.0);
        }
        secs.sample_with("_sum", &[("action", action)], t.secs)
            .sample_with("_count", &[("action", action)], (t.ok + t.failed) as f64);
    }
    vec![total, last, secs]
}

/// The whole reply: the supervisor's text (no trailing newline), then the journal's part.
pub fn reply(supervisor: &str, tallies: &BTreeMap<String, Tally>, instance: u32) -> String {
    let mut out = supervisor.to_string();
    if !out.is_empty() {
        out.push('\n');
    }
    let families = proto::metrics::with_label(families(tallies), "instance", &instance.to_string());
    out.push_str(render(&families).trim_end_matches('\n'));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_part() {
        let mut t = BTreeMap::new();
        t.insert(
            "nightly-backup".to_string(),
            Tally {
                ok: 2,
                failed: 1,
                lost: 0,
                secs: 3.5,
                last_success_ms: Some(1_796_428_080_500),
            },
        );
        t.insert(
            "never-ok".to_string(),
            Tally {
                failed: 1,
                ..Tally::default()
            },
        );
        let text = reply("bosun_main_up 1", &t, 1);
        assert!(text.starts_with("bosun_main_up 1\n# HELP bosun_actions_total "));
        assert!(!text.ends_with('\n'));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "bosun_main_up 1",
                "bosun_actions_total{instance=\"1\",action=\"never-ok\",result=\"ok\"} 0",
                "bosun_actions_total{instance=\"1\",action=\"never-ok\",result=\"failed\"} 1",
                "bosun_actions_total{instance=\"1\",action=\"never-ok\",result=\"lost\"} 0",
                "bosun_actions_total{instance=\"1\",action=\"nightly-backup\",result=\"ok\"} 2",
                "bosun_actions_total{instance=\"1\",action=\"nightly-backup\",result=\"failed\"} 1",
                "bosun_actions_total{instance=\"1\",action=\"nightly-backup\",result=\"lost\"} 0",
                "bosun_action_last_success_timestamp_seconds{instance=\"1\",action=\"nightly-backup\"} 1796428080.5",
                "bosun_action_duration_seconds_sum{instance=\"1\",action=\"never-ok\"} 0",
                "bosun_action_duration_seconds_count{instance=\"1\",action=\"never-ok\"} 1",
                "bosun_action_duration_seconds_sum{instance=\"1\",action=\"nightly-backup\"} 3.5",
                "bosun_action_duration_seconds_count{instance=\"1\",action=\"nightly-backup\"} 3",
            ]
        );
    }

    #[test]
    fn no_runs_yet() {
        let text = reply("", &BTreeMap::new(), 1);
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
        assert_eq!(text.lines().count(), 6);
    }
}
