//! The scheduler's `BOSUN_*` variables, read by the rows and rules of the supervisor's
//! settings: trimmed, blank is the default, `BOSUN_RUN_DIR`'s default written once for
//! every program. The scheduler has no file: the environment alone.

use std::path::PathBuf;
use std::time::Duration;

use super::keys::RUN_DIR;
use super::problem::{Problems, ValueError};
use super::table::{self, opt, set, FileType, Read, Row, Spec};
use crate::duration;

/// What the scheduler daemon reads from the environment, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerEnv {
    /// `BOSUN_RUN_DIR`, default `/run`: where `<service>-request.sock` live.
    pub run_dir: PathBuf,
    /// `BOSUN_STATE_DIR`, default none: the record of runs and catch-up.
    pub state_dir: Option<PathBuf>,
    /// `BOSUN_RETRY_WINDOW`, default 5 min.
    pub retry_window: Duration,
    /// `BOSUN_CATCHUP_WINDOW`, default 24 h.
    pub catchup_window: Duration,
    /// `BOSUN_METRICS_FILE`, default none.
    pub metrics_file: Option<PathBuf>,
    /// `BOSUN_STATUS_HTML`, default none.
    pub status_html: Option<PathBuf>,
}

const STATE_DIR: Spec = Spec::new("state_dir", "BOSUN_STATE_DIR", "", "/tmp/state");

fn path(t: &str) -> Result<PathBuf, ValueError> {
    Ok(PathBuf::from(t))
}

fn show_path(p: &Option<PathBuf>) -> Option<String> {
    Some(
        p.as_ref()
            .map_or(String::new(), |p| p.display().to_string()),
    )
}

fn dur(d: Duration) -> Option<String> {
    Some(duration::show(d).to_string())
}

static ROWS: &[Row<SchedulerEnv>] = &[
    Row {
        spec: RUN_DIR,
        file: FileType::Text,
        read: Read::Text(|e, t| set(&mut e.run_dir, path(t))),
        show: |e| Some(e.run_dir.display().to_string()),
    },
    Row {
        spec: STATE_DIR,
        file: FileType::Text,
        read: Read::Text(|e, t| set(&mut e.state_dir, opt(t, path))),
        show: |e| show_path(&e.state_dir),
    },
    Row {
        spec: Spec::new("retry_window", "BOSUN_RETRY_WINDOW", "5m", "1s"),
        file: FileType::Text,
        read: Read::Text(|e, t| set(&mut e.retry_window, duration::parse(t))),
        show: |e| dur(e.retry_window),
    },
    Row {
        spec: Spec::new("catchup_window", "BOSUN_CATCHUP_WINDOW", "24h", "1h"),
        file: FileType::Text,
        read: Read::Text(|e, t| set(&mut e.catchup_window, duration::parse(t))),
        show: |e| dur(e.catchup_window),
    },
    Row {
        spec: Spec::new("metrics_file", "BOSUN_METRICS_FILE", "", "/tmp/bosun.prom"),
        file: FileType::Text,
        read: Read::Text(|e, t| set(&mut e.metrics_file, opt(t, path))),
        show: |e| show_path(&e.metrics_file),
    },
    Row {
        spec: Spec::new("status_html", "BOSUN_STATUS_HTML", "", "/tmp/status.html"),
        file: FileType::Text,
        read: Read::Text(|e, t| set(&mut e.status_html, opt(t, path))),
        show: |e| show_path(&e.status_html),
    },
];

impl SchedulerEnv {
    /// Reads every variable through `get` (normally `std::env::var`); every bad one is a
    /// problem (`BOSUN_RETRY_WINDOW: "soon" is not a duration ...`).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<SchedulerEnv, Problems> {
        let mut env = SchedulerEnv::blank();
        let problems = table::read_env(ROWS, &mut env, get);
        if problems.is_empty() {
            Ok(env)
        } else {
            Err(Problems(problems))
        }
    }

    /// `BOSUN_RUN_DIR` alone (`scheduler send`), by the same rule.
    pub fn run_dir(get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
        SchedulerEnv::only(RUN_DIR.env, get).run_dir
    }

    /// `BOSUN_STATE_DIR` alone (`scheduler status`), by the same rule.
    pub fn state_dir(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        SchedulerEnv::only(STATE_DIR.env, get).state_dir
    }

    /// One variable read, the others at their defaults (a path never fails to read).
    fn only(name: &str, get: &dyn Fn(&str) -> Option<String>) -> SchedulerEnv {
        let mut env = SchedulerEnv::blank();
        let one = |k: &str| if k == name { get(k) } else { None };
        let _ = table::read_env(ROWS, &mut env, &one);
        env
    }

    /// Placeholders only: every row writes its field.
    fn blank() -> SchedulerEnv {
        SchedulerEnv {
            run_dir: PathBuf::new(),
            state_dir: None,
            retry_window: Duration::ZERO,
            catchup_window: Duration::ZERO,
            metrics_file: None,
            status_html: None,
        }
    }
}
