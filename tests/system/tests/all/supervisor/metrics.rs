//! The `metrics` built-in (DESIGN.md section 7) through the real supervisor and listener:
//! actions that end ok and failed, a main process that crashes and is restarted, a restart
//! of the container, and each reply read by a real parser of the Prometheus text format,
//! Python's `prometheus_client` (required: without it the test fails saying so; CI installs
//! it).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::harness::*;

const T10: Duration = Duration::from_secs(10);

const CALLBACKS: &str = r#"
CB_say() { echo "out $1"; }
CB_fail() { echo "bad thing"; return 3; }
"#;

/// Parses the text with `prometheus_client` and prints one sample a line:
/// `name<TAB>labels as sorted k=v joined by ,<TAB>value`.
const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{fam.type}\t{s.name}\t{labels}\t{s.value!r}")
"#;

/// The samples as (type, name, labels, value) (python3 and its `prometheus_client` are
/// required: CI installs them).
fn parse(text: &str) -> Vec<(String, String, String, f64)> {
    testkit::prereq::require_python_module(
        "prometheus_client.parser",
        "pip install prometheus-client",
    );
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejects the metrics: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

fn container(state: &Path) -> Sup {
    let b = sup(Mode::Pid1)
        .with_listener()
        .env("BOSUN_STATE_DIR", state.to_str().unwrap())
        .env("BOSUN_RESTART", "always")
        .cmd(&["sleep", "1000"]);
    b.file("callbacks.sh", CALLBACKS);
    let s = b.start();
    s.wait_socket();
    s
}

/// The value of the one sample named `name` with exactly `labels` and the replica's
/// `instance="1"` (every sample has it: DESIGN.md section 10).
fn value(samples: &[(String, String, String, f64)], name: &str, labels: &str) -> f64 {
    let mut all: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    all.push("instance=1");
    all.sort();
    let labels = all.join(",");
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.1 == name && s.2 == labels)
        .map(|s| s.3)
        .collect();
    assert_eq!(found.len(), 1, "{name}{{{labels}}} in {samples:?}");
    found[0]
}

fn main_pid(s: &Sup) -> Option<i32> {
    let line = s.request("status").into_iter().next()?;
    line.contains(" running ")
        .then(|| pid_of(&line).parse().ok())
        .flatten()
}

#[test]
fn metrics_after_runs_and_a_restart_read_by_a_real_parser() {
    let state = tempfile::tempdir().unwrap();
    let mut s = container(state.path());
    let before = s.request("metrics").join("\n");
    assert!(before.contains("bosun_main_up 1"), "{before}");
    let r = s.request("say one");
    assert!(r[1].starts_with("done 1 exit=0 "), "{r:?}");
    let r = s.request("fail");
    assert!(r[1].starts_with("done 2 exit=3 "), "{r:?}");
    let r = s.request("say two");
    assert!(r[1].starts_with("done 3 exit=0 "), "{r:?}");

    // The main process crashes and is started again.
    let first = wait_until(T10, "main running", || main_pid(&s));
    let outer = outer_pid(&s, first);
    assert!(Command::new("kill")
        .args(["-KILL", &outer.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until(T10, "main restarted", || {
        main_pid(&s).filter(|&p| p != first).map(|_| ())
    });

    let text = s.request("metrics").join("\n") + "\n";
    for line in text.lines() {
        assert!(!line.starts_with("error "), "{text}");
    }
    // Each family once: HELP, TYPE, then its samples.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), types.len(), "{text}");
    assert_eq!(types.len(), 6, "{text}");

    let samples = parse(&text);
    assert_eq!(value(&samples, "bosun_main_up", ""), 1.0);
    assert_eq!(value(&samples, "bosun_main_restarts_total", ""), 1.0);
    assert_eq!(value(&samples, "bosun_on_demand_starts_total", ""), 0.0);
    let total = "bosun_actions_total";
    assert_eq!(value(&samples, total, "action=say,result=ok"), 2.0);
    assert_eq!(value(&samples, total, "action=say,result=failed"), 0.0);
    assert_eq!(value(&samples, total, "action=fail,result=ok"), 0.0);
    assert_eq!(value(&samples, total, "action=fail,result=failed"), 1.0);
    assert_eq!(value(&samples, total, "action=fail,result=lost"), 0.0);
    let last = "bosun_action_last_success_timestamp_seconds";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t = value(&samples, last, "action=say");
    assert!(t > now - 60.0 && t <= now + 1.0, "{t} vs {now}");
    assert!(
        !samples.iter().any(|x| x.1 == last && x.2 == "action=fail"),
        "never succeeded: no sample"
    );
    let d = "bosun_action_duration_seconds";
    assert_eq!(value(&samples, &format!("{d}_count"), "action=say"), 2.0);
    assert_eq!(value(&samples, &format!("{d}_count"), "action=fail"), 1.0);
    let sum = value(&samples, &format!("{d}_sum"), "action=say");
    assert!((0.0..60.0).contains(&sum), "{sum}");
    for (ty, name, ..) in &samples {
        let want = match name.as_str() {
            n if n.starts_with(d) => "summary",
            "bosun_main_up" => "gauge",
            n if n == last => "gauge",
            _ => "counter",
        };
        assert_eq!(ty, want, "{name}");
    }
    // `metrics` is a built-in: not journaled, listed by `help`.
    assert_eq!(s.request("history").len(), 3);
    assert!(s.request("help").iter().any(|l| l == "metrics"));
    s.signal(SIGTERM);
    s.wait(T10);
    drop(s);

    // The container again: the journal's counters go on, the supervisor's start anew.
    let mut s = container(state.path());
    let samples = parse(&(s.request("metrics").join("\n") + "\n"));
    assert_eq!(value(&samples, total, "action=say,result=ok"), 2.0);
    assert_eq!(value(&samples, total, "action=fail,result=failed"), 1.0);
    assert_eq!(value(&samples, last, "action=say"), t);
    assert_eq!(value(&samples, "bosun_main_restarts_total", ""), 0.0);
    s.signal(SIGTERM);
    s.wait(T10);
}
