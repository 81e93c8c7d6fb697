//! The daemon's report files (DESIGN.md section 7): `BOSUN_METRICS_FILE` ([`crate::metrics`])
//! and `BOSUN_STATUS_HTML` ([`crate::page`]), rewritten after every outcome, at start and
//! after a reload.
//!
//! What they need is kept in memory by a thread of their own, the writer: a [`Summary`] per
//! schedule line, read from the record once (at start, or when a reload adds the line) and
//! then updated with each outcome, so a rewrite reads no file however long the schedule.
//! The daemon's loop and its deliveries only send the writer a message (never blocking:
//! the writer owns its state, there is no lock to wait for), so rendering a page of ten
//! thousand lines never makes a fire late, and outcomes that come while a rewrite is going
//! are written together by the next one.
//!
//! Each file is replaced atomically ([`common::fs::write_atomic`]: a fresh
//! `O_EXCL|O_NOFOLLOW` temporary, removed when the write fails): a reader sees the old file
//! or the new one, never a part, and a symlink planted in the directory is never followed. A file that cannot be written is logged once (and once more when
//! it can be written again); the schedule runs on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::metrics::{self, Counts, Target};
use crate::page;
use crate::record::{self, Run};
use crate::schedule::{Entry, Schedule};
use crate::summary::Summary;

/// A report file is 0644: nginx and node_exporter read it. Its temporary is hidden and not
/// `*.prom`, so the collector skips it ([`common::fs::write_atomic`]).
const REPORT_MODE: u32 = 0o644;
/// Not fsynced: both files are made again from the record at every start.
const REPORT_DURABILITY: common::fs::Durability = common::fs::Durability::Atomic;

/// Where the files go; either may be absent.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub metrics: Option<PathBuf>,
    pub page: Option<PathBuf>,
}

/// The daemon's end: sends changes to the writer thread.
pub struct Outputs {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

enum Msg {
    /// The schedule as (re)loaded: its lines, in file order.
    Schedule(Vec<Entry>),
    /// One outcome of a run of the line with this key.
    Outcome(String, Box<Run>),
}

/// The writer's own state. It keeps each line's row of the page and each target's samples
/// as last drawn, and redraws only those an outcome changed: a rewrite after one outcome is
/// then mostly putting the parts together and writing them out.
struct Writer {
    paths: Paths,
    /// The schedule file, as the page names it.
    file: String,
    /// Where the record is (`BOSUN_STATE_DIR`).
    state_dir: PathBuf,
    entries: Vec<Entry>,
    /// Each entry's line key ([`Entry::key`]).
    keys: Vec<String>,
    /// Per line key: the line's summary.
    summaries: HashMap<String, Summary>,
    /// Per line key: its entries' indices (one, unless the file repeats a line).
    index: HashMap<String, Vec<usize>>,
    counts: Counts,
    /// Each entry's row of the page, as last drawn.
    rows: Vec<String>,
    /// Per target: the keys of its lines and its samples in each family, as last drawn.
    targets: BTreeMap<Target, (Vec<String>, [String; 4])>,
    /// What changed since the last write: everything, or these lines and targets.
    all: bool,
    lines_changed: HashSet<String>,
    targets_changed: HashSet<Target>,
    /// Whether writing each file failed last time (said once until it works again).
    failing: [bool; 2],
}

/// The metrics' labels of a line.
pub fn target(service: &str, action: &str, user: Option<&str>) -> Target {
    Target {
        service: service.to_string(),
        action: action.to_string(),
        user: user.unwrap_or_default().to_string(),
    }
}

impl Outputs {
    /// Starts the writer, which reads the record of every line of `schedule` in
    /// `state_dir` and writes the files. `None` when neither file is asked for.
    pub fn start(
        paths: Paths,
        file: String,
        state_dir: &Path,
        schedule: &Schedule,
    ) -> io::Result<Option<Outputs>> {
        if paths.metrics.is_none() && paths.page.is_none() {
            return Ok(None);
        }
        let (tx, rx) = channel();
        let mut writer = Writer::new(paths, file, state_dir);
        let thread = std::thread::Builder::new()
            .name("reports".into())
            .spawn(move || writer.run(&rx))?;
        let outputs = Outputs {
            tx: Some(tx),
            thread: Some(thread),
        };
        outputs.set_schedule(schedule);
        Ok(Some(outputs))
    }

    /// The schedule was (re)loaded: lines new to it are read from the record, lines gone
    /// are forgotten.
    pub fn set_schedule(&self, schedule: &Schedule) {
        self.send(Msg::Schedule(schedule.entries.clone()));
    }

    /// One outcome of a run of the line `line_key` (also a `running` one).
    pub fn outcome(&self, line_key: &str, run: &Run) {
        self.send(Msg::Outcome(line_key.to_string(), Box::new(run.clone())));
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &self.tx {
            // Fails only when the writer is gone (it panicked): the reports stop, the
            // schedule runs on.
            let _ = tx.send(msg);
        }
    }
}

impl Drop for Outputs {
    /// Lets the writer write what is pending, and waits for it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    fn new(paths: Paths, file: String, state_dir: &Path) -> Writer {
        Writer {
            paths,
            file,
            state_dir: state_dir.to_path_buf(),
            entries: Vec::new(),
            keys: Vec::new(),
            summaries: HashMap::new(),
            index: HashMap::new(),
            counts: Counts::new(),
            rows: Vec::new(),
            targets: BTreeMap::new(),
            all: true,
            lines_changed: HashSet::new(),
            targets_changed: HashSet::new(),
            failing: [false, false],
        }
    }

    /// Until the daemon's end is dropped: takes every message there is, then rewrites.
    fn run(&mut self, rx: &Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            self.apply(msg);
            while let Ok(msg) = rx.try_recv() {
                self.apply(msg);
            }
            self.write();
        }
    }

    fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Schedule(entries) => {
                let mut old = std::mem::take(&mut self.summaries);
                self.index.clear();
                self.targets.clear();
                self.keys.clear();
                for (i, e) in entries.iter().enumerate() {
                    let key = e.key();
                    if !self.summaries.contains_key(&key) {
                        let summary = old.remove(&key).unwrap_or_else(|| self.read(e));
                        self.summaries.insert(key.clone(), summary);
                    }
                    self.index.entry(key.clone()).or_default().push(i);
                    let t = target(&e.service, &e.action, e.user.as_deref());
                    self.targets.entry(t).or_default().0.push(key.clone());
                    self.keys.push(key);
                }
                self.entries = entries;
                self.all = true;
            }
            Msg::Outcome(key, run) => {
                let target = target(&run.service, &run.action, run.user.as_deref());
                metrics::count(&mut self.counts, &target, run.result);
                if let Some(s) = self.summaries.get_mut(&key) {
                    s.add(&run);
                    self.lines_changed.insert(key);
                }
                self.targets_changed.insert(target);
            }
        }
    }

    /// The summary of a line from its record; an unreadable record is logged and counts
    /// as empty.
    fn read(&self, e: &Entry) -> Summary {
        match record::read_file(&record::path(&self.state_dir, &e.key())) {
            Ok(c) => Summary::from_runs(&c.runs),
            Err(err) => {
                warn!(line = e.line, error = %err, "cannot read the run record for the reports");
                Summary::default()
            }
        }
    }

    /// The files' text as of `now`, each when asked for; what changed is drawn.
    fn texts(&mut self, now: DateTime<Utc>) -> (Option<String>, Option<String>) {
        let metrics_text = self.paths.metrics.is_some().then(|| self.metrics());
        let page_text = self.paths.page.is_some().then(|| self.page(now));
        self.all = false;
        self.lines_changed.clear();
        self.targets_changed.clear();
        (metrics_text, page_text)
    }

    fn write(&mut self) {
        let (metrics_text, page_text) = self.texts(Utc::now());
        let files = [
            (&self.paths.metrics, metrics_text, "metrics file"),
            (&self.paths.page, page_text, "status page"),
        ];
        for (i, (path, text, what)) in files.into_iter().enumerate() {
            let (Some(path), Some(text)) = (path, text) else {
                continue;
            };
            match common::fs::write_atomic(path, text.as_bytes(), REPORT_MODE, REPORT_DURABILITY) {
                Ok(()) if self.failing[i] => {
                    self.failing[i] = false;
                    info!(file = %path.display(), "the {what} is written again");
                }
                Ok(()) => {}
                Err(err) if !self.failing[i] => {
                    self.failing[i] = true;
                    warn!(file = %path.display(), error = %err, "cannot write the {what}; the schedule runs on (said once until it can be written)");
                }
                Err(_) => {}
            }
        }
    }

    /// The metrics file's text, redrawing the targets that changed.
    fn metrics(&mut self) -> String {
        for (t, (keys, samples)) in &mut self.targets {
            if !self.all && !self.targets_changed.contains(t) {
                continue;
            }
            let mut agg = Summary::default();
            for k in keys.iter() {
                if let Some(s) = self.summaries.get(k) {
                    metrics::merge(&mut agg, s);
                }
            }
            let families = metrics::target_families(t, &agg, &self.counts);
            for (text, family) in samples.iter_mut().zip(&families) {
                text.clear();
                metrics::render_samples(family, text);
            }
        }
        let len: usize = self
            .targets
            .values()
            .flat_map(|(_, s)| s.iter().map(String::len))
            .sum();
        let mut out = String::with_capacity(1024 + len);
        for (j, head) in metrics::heads().iter().enumerate() {
            metrics::render_head(head, &mut out);
            for (_, samples) in self.targets.values() {
                out.push_str(&samples[j]);
            }
        }
        out
    }

    /// The page's text, redrawing the rows of the lines that changed. A row's next fire is
    /// as of its last drawing: every fire ends in an outcome, which redraws it.
    fn page(&mut self, now: DateTime<Utc>) -> String {
        let empty = Summary::default();
        let draw = |e: &Entry, summary: &Summary| {
            let mut s = String::new();
            page::row(&mut s, &page::Row::at(e, summary, now));
            s
        };
        if self.all {
            self.rows = self
                .entries
                .iter()
                .zip(&self.keys)
                .map(|(e, k)| draw(e, self.summaries.get(k).unwrap_or(&empty)))
                .collect();
        } else {
            for key in &self.lines_changed {
                let summary = self.summaries.get(key).unwrap_or(&empty);
                for &i in self.index.get(key).into_iter().flatten() {
                    self.rows[i] = draw(&self.entries[i], summary);
                }
            }
        }
        let bad: Vec<page::Row> = self
            .entries
            .iter()
            .zip(&self.keys)
            .filter_map(|(e, k)| {
                let summary = self.summaries.get(k)?;
                summary.is_bad().then_some(page::Row {
                    entry: e,
                    summary,
                    next: None,
                })
            })
            .collect();
        let bad: Vec<&page::Row> = bad.iter().collect();
        page::assemble(
            &self.file,
            now,
            self.entries.len(),
            &bad,
            self.rows.iter().map(String::as_str),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunResult;

    /// Expected: after each outcome, the parts redrawn and put together are exactly the
    /// files drawn whole from the same summaries (two lines share one target here).
    #[test]
    fn redrawing_what_changed_gives_the_files_drawn_whole() {
        let dir = tempfile::tempdir().unwrap();
        let text = "5 4 * * * forum mysql backup\n*/10 * * * * static pull\n\
                    0 0 * * * static pull\n@reboot web warm\n";
        let schedule = crate::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC).unwrap();
        let paths = Paths {
            metrics: Some(dir.path().join("m")),
            page: Some(dir.path().join("p")),
        };
        let mut w = Writer::new(paths, "f".into(), dir.path());
        w.apply(Msg::Schedule(schedule.entries.clone()));
        let now = DateTime::from_timestamp(1_764_821_100, 0).unwrap();
        let whole = |w: &Writer| {
            let empty = Summary::default();
            let sums: Vec<&Summary> = schedule
                .entries
                .iter()
                .map(|e| w.summaries.get(&e.key()).unwrap_or(&empty))
                .collect();
            let targets: Vec<Target> = schedule
                .entries
                .iter()
                .map(|e| target(&e.service, &e.action, e.user.as_deref()))
                .collect();
            let m = metrics::render(&metrics::families(
                targets.iter().zip(sums.iter().copied()),
                &w.counts,
            ));
            let rows: Vec<page::Row> = schedule
                .entries
                .iter()
                .zip(&sums)
                .map(|(entry, summary)| page::Row::at(entry, summary, now))
                .collect();
            (Some(m), Some(page::render("f", &rows, now)))
        };
        let first = w.texts(now);
        assert_eq!(first, whole(&w));
        let results = [
            (1, RunResult::Running, None),
            (1, RunResult::Failed, Some(2)),
            (0, RunResult::Ok, Some(0)),
            (2, RunResult::Ok, Some(0)),
            (3, RunResult::Missed, None),
            (1, RunResult::Ok, Some(0)),
        ];
        for (n, (i, result, exit)) in results.into_iter().enumerate() {
            let e = &schedule.entries[i];
            let fire = now - chrono::Duration::minutes(60 - n as i64);
            let run = Run {
                key: format!("k:{}", fire.timestamp()),
                fire,
                at: fire,
                file: "f".into(),
                line: e.line,
                service: e.service.clone(),
                action: e.action.clone(),
                user: e.user.clone(),
                result,
                exit,
                secs: Some(1.0),
                id: Some(n as u64),
            };
            w.apply(Msg::Outcome(e.key(), Box::new(run)));
            let texts = w.texts(now);
            assert_eq!(texts, whole(&w), "after outcome {n}");
            assert_ne!(texts, first);
        }
    }
}
