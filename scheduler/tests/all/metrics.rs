//! `BOSUN_METRICS_FILE` with the real daemon, read back by a real parser of the format
//! (the `prometheus_client` Python package's); a file that cannot be written is logged and
//! the schedule runs on; without `BOSUN_STATE_DIR` the daemon says so at start.

use std::process::Command;
use std::time::Duration;

use crate::support::{peer, recv, wait_file, Answer, Daemon};

const SHORT: Duration = Duration::from_secs(10);

/// Prints one sample a line: `family type sample {sorted labels} value`.
const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in f.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f.name, f.type, s.name, "{" + labels + "}", repr(float(s.value)))
"#;

/// The parsed samples (python3 and its `prometheus_client` are required: CI installs them).
fn parse(path: &std::path::Path) -> Vec<String> {
    testkit::prereq::require_python_module(
        "prometheus_client.parser",
        "pip install prometheus-client",
    );
    let o = Command::new("python3")
        .args(["-c", PARSE])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the parser refused the file:\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn metrics_file_is_rewritten_after_outcomes_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(
        &file,
        "@reboot forum mysql nightly-backup\n@reboot static git-pull\n0 0 1 1 * static never\n",
    )
    .unwrap();
    let mysql = peer(dir.path(), "mysql", Answer::Done(0));
    let st = peer(dir.path(), "static", Answer::Done(2));
    let prom_dir = dir.path().join("textfile");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom = prom_dir.join("bosun.prom");
    let run_dir = dir.path().to_str().unwrap();
    let state = dir.path().join("state");
    let t0 = chrono::Utc::now().timestamp();
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", run_dir),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
            ("BOSUN_METRICS_FILE", prom.to_str().unwrap()),
        ],
    );
    recv(&mysql.requests, SHORT);
    recv(&st.requests, SHORT);
    d.wait_for(&["done", "service=mysql", "exit=0"], SHORT);
    d.wait_for(&["done", "service=static", "exit=2"], SHORT);
    wait_file(&prom, SHORT, |t| {
        t.contains("result=\"ok\"} 1") && t.contains("result=\"failed\"} 1")
    });
    // Only the file itself is left: the temporary was renamed over it.
    let names: Vec<_> = std::fs::read_dir(&prom_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["bosun.prom"]);
    let samples = parse(&prom);
    let find = |sample: &str, labels: &str| -> f64 {
        let head = format!("{sample} {{{labels}}} ");
        let line = samples
            .iter()
            .find(|l| l.split_once(' ').unwrap().1.contains(&head))
            .unwrap_or_else(|| panic!("no {head} in:\n{}", samples.join("\n")));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let backup = "action=nightly-backup,service=mysql,user=forum";
    let pull = "action=git-pull,service=static,user=";
    let now = chrono::Utc::now().timestamp();
    let last = find("bosun_schedule_last_run_timestamp_seconds", backup);
    assert!(
        last >= t0 as f64 - 1.0 && last <= now as f64 + 1.0,
        "{last}"
    );
    let ok = find("bosun_schedule_last_success_timestamp_seconds", backup);
    assert!(ok >= last && ok <= now as f64 + 1.0, "{ok}");
    assert_eq!(
        find("bosun_schedule_last_success_timestamp_seconds", pull),
        0.0
    );
    assert_eq!(find("bosun_schedule_last_exit_code", backup), 0.0);
    assert_eq!(find("bosun_schedule_last_exit_code", pull), 2.0);
    assert_eq!(
        find(
            "bosun_schedule_runs_total",
            "action=nightly-backup,result=ok,service=mysql,user=forum"
        ),
        1.0
    );
    assert_eq!(
        find(
            "bosun_schedule_runs_total",
            "action=git-pull,result=failed,service=static,user="
        ),
        1.0
    );
    assert_eq!(
        find(
            "bosun_schedule_runs_total",
            "action=never,result=ok,service=static,user="
        ),
        0.0
    );
    assert!(samples
        .iter()
        .any(|l| l.starts_with("bosun_schedule_runs counter bosun_schedule_runs_total ")));
    assert!(!samples
        .iter()
        .any(|l| l.contains("last_run_timestamp_seconds {action=never")));
    assert_eq!(d.stop(), 0);
}

#[test]
fn an_unwritable_metrics_file_is_logged_and_the_schedule_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, "@reboot mysql a\n").unwrap();
    let mysql = peer(dir.path(), "mysql", Answer::Done(0));
    let state = dir.path().join("state");
    let prom = dir.path().join("absent").join("bosun.prom");
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", dir.path().to_str().unwrap()),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
            ("BOSUN_METRICS_FILE", prom.to_str().unwrap()),
        ],
    );
    recv(&mysql.requests, SHORT);
    d.wait_for(&["cannot write the metrics file", "bosun.prom"], SHORT);
    d.wait_for(&["done", "service=mysql", "exit=0"], SHORT);
    assert_eq!(d.stop(), 0);
}

#[test]
fn without_a_state_dir_the_daemon_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, "@reboot mysql a\n").unwrap();
    let mysql = peer(dir.path(), "mysql", Answer::Done(0));
    let prom = dir.path().join("bosun.prom");
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", dir.path().to_str().unwrap()),
            ("BOSUN_METRICS_FILE", prom.to_str().unwrap()),
        ],
    );
    recv(&mysql.requests, SHORT);
    d.wait_for(&["done", "service=mysql", "exit=0"], SHORT);
    let said = d
        .seen
        .iter()
        .filter(|l| l.contains("BOSUN_METRICS_FILE is set but BOSUN_STATE_DIR is not"))
        .count();
    assert_eq!(said, 1, "{:?}", d.seen);
    assert!(!prom.exists());
    assert_eq!(d.stop(), 0);
}

/// Expected: label values with `\`, `"` and a line feed come back from the real parser as
/// they went in (schedule names cannot hold them, but the renderer is shared).
#[test]
fn escaped_label_values_round_trip_through_the_parser() {
    use scheduler::metrics::{render, Family, Kind};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.prom");
    let nasty = "a\\b\"c\nd";
    let mut f = Family::new(
        "bosun_test_gauge",
        "A help with \\ and\na line feed.",
        Kind::Gauge,
    );
    f.sample(&[("v", nasty)], 1.5);
    let text = render(&[f]);
    std::fs::write(&path, &text).unwrap();
    let samples = parse(&path);
    // The parser's value holds a real line feed, so its line is printed in two.
    assert_eq!(
        samples.join("\n"),
        format!("bosun_test_gauge gauge bosun_test_gauge {{v={nasty}}} 1.5")
    );
}
