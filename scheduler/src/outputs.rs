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

/// Writes a report file (the metrics file, the status page) as the daemon does: replaced
/// atomically, mode 0644. Also what bench/reports times.
pub fn write_report(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    common::fs::write_atomic(path, text.as_bytes(), REPORT_MODE, REPORT_DURABILITY)
}

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
    /// The schedule's lines, in file order.
    lines: Vec<Entry>,
    /// Per `@each` line's key: its instances that have runs, and their rows' keys.
    instances: HashMap<String, BTreeMap<u32, String>>,
    /// The rows: one per line, or one per instance of an `@each` line (whose entry then
    /// names the instance, `php.2`), as [`crate::fanout::groups`] gives them.
    entries: Vec<Entry>,
    /// Each row's key: its line's key ([`Entry::key`]), with the instance's service for
    /// an instance of an `@each` line ([`row_key`]).
    keys: Vec<String>,
    /// Per row key: the row's summary.
    summaries: HashMap<String, Summary>,
    /// Per row key: its rows' indices (one, unless the file repeats a line).
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

/// The key of the row that a run of line `line_key` to `service` belongs to: an
/// instance's own (`<line key>\t<php.2>`) for an `@each` line, else the line's.
fn row_key(line_key: &str, service: &str, each: bool) -> String {
    match crate::fanout::instance_of(service) {
        Some(_) if each => format!("{line_key}\t{service}"),
        _ => line_key.to_string(),
    }
}

fn is_each(e: &Entry) -> bool {
    e.dest().pick == proto::Pick::Each
}

/// The metrics' labels of a line.
pub fn target(service: &str, action: &str, user: Option<&str>) -> Target {
    Target::of(service, action, user)
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
            lines: Vec::new(),
            instances: HashMap::new(),
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
                let mut old_instances = std::mem::take(&mut self.instances);
                for e in &entries {
                    let key = e.key();
                    if self.summaries.contains_key(&key) {
                        continue;
                    }
                    match old.remove(&key) {
                        Some(summary) => {
                            self.summaries.insert(key.clone(), summary);
                            if let Some(subs) = old_instances.remove(&key) {
                                for sub in subs.values() {
                                    if let Some(s) = old.remove(sub) {
                                        self.summaries.insert(sub.clone(), s);
                                    }
                                }
                                self.instances.insert(key, subs);
                            }
                        }
                        None => self.read(e),
                    }
                }
                self.lines = entries;
                self.layout();
            }
            Msg::Outcome(key, run) => {
                let target = target(&run.service, &run.action, run.user.as_deref());
                metrics::count(&mut self.counts, &target, run.result);
                self.targets_changed.insert(target);
                if !self.summaries.contains_key(&key) {
                    return;
                }
                let each = self.instances.contains_key(&key);
                let sub = row_key(&key, &run.service, each);
                let new = !self.summaries.contains_key(&sub);
                self.summaries.entry(sub.clone()).or_default().add(&run);
                if let (true, Some(n)) = (new, crate::fanout::instance_of(&run.service)) {
                    if let Some(subs) = self.instances.get_mut(&key) {
                        subs.insert(n, sub.clone());
                    }
                }
                // A new instance, or a change of whether the line's own row shows (a fire
                // that found no instance, or a later one that found some): new rows.
                if each && (new || sub == key || self.index.contains_key(&key)) {
                    self.layout();
                } else {
                    self.lines_changed.insert(sub);
                }
            }
        }
    }

    /// The rows, their keys and the targets, from the lines and what is known of them.
    fn layout(&mut self) {
        self.entries.clear();
        self.keys.clear();
        self.index.clear();
        self.targets.clear();
        for e in &self.lines {
            let key = e.key();
            let mut rows: Vec<(Entry, String)> = Vec::new();
            match self.instances.get(&key) {
                None => rows.push((e.clone(), key.clone())),
                Some(subs) => {
                    let latest =
                        |k: &String| self.summaries.get(k).and_then(|s| s.last().map(|m| m.fire));
                    let newest_leg = subs.values().filter_map(latest).max();
                    let base = e.dest();
                    for (n, sub) in subs {
                        let service = base.at(*n).to_string();
                        rows.push((
                            Entry {
                                service,
                                ..e.clone()
                            },
                            sub.clone(),
                        ));
                    }
                    if subs.is_empty() || latest(&key) > newest_leg {
                        rows.push((e.clone(), key.clone()));
                    }
                }
            }
            for (entry, k) in rows {
                self.index
                    .entry(k.clone())
                    .or_default()
                    .push(self.entries.len());
                let t = target(&entry.service, &entry.action, entry.user.as_deref());
                self.targets.entry(t).or_default().0.push(k.clone());
                self.keys.push(k);
                self.entries.push(entry);
            }
        }
        self.all = true;
    }

    /// The summaries of a line from its record (one per instance of an `@each` line); an
    /// unreadable record is logged and counts as empty.
    fn read(&mut self, e: &Entry) {
        let key = e.key();
        let each = is_each(e);
        let runs = match record::read_file(&record::path(&self.state_dir, &key)) {
            Ok(c) => c.runs,
            Err(err) => {
                warn!(line = e.line, error = %err, "cannot read the run record for the reports");
                Vec::new()
            }
        };
        self.summaries.insert(key.clone(), Summary::default());
        let mut subs = BTreeMap::new();
        for r in &runs {
            let sub = row_key(&key, &r.service, each);
            if sub != key {
                if let Some(n) = crate::fanout::instance_of(&r.service) {
                    subs.insert(n, sub.clone());
                }
            }
            self.summaries.entry(sub).or_default().add(r);
        }
        if each {
            self.instances.insert(key, subs);
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
            match write_report(path, &text) {
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

    /// Expected: an `@each` line has a row and a metrics series per instance that ran, and
    /// the line's own row only while its latest fire found no instance; after each outcome
    /// the page is the one a fresh writer draws from the same record.
    #[test]
    fn each_instance_has_its_row_and_series() {
        let dir = tempfile::tempdir().unwrap();
        let text = "*/5 * * * * php@each rotate\n@daily db backup\n";
        let schedule = crate::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC).unwrap();
        let paths = || Paths {
            metrics: Some(dir.path().join("m")),
            page: Some(dir.path().join("p")),
        };
        let rec = crate::record::Recorder::open(dir.path()).unwrap();
        let mut w = Writer::new(paths(), "f".into(), dir.path());
        w.apply(Msg::Schedule(schedule.entries.clone()));
        let now = DateTime::from_timestamp(1_764_821_100, 0).unwrap();
        let e = &schedule.entries[0];
        let outcomes = [
            ("php@each", 0, RunResult::Missed),
            ("php.2", 1, RunResult::Running),
            ("php.1", 1, RunResult::Ok),
            ("php.2", 1, RunResult::Failed),
            ("php.10", 2, RunResult::Ok),
            ("php@each", 3, RunResult::Missed),
            ("php.1", 4, RunResult::Ok),
        ];
        for (i, (service, min, result)) in outcomes.into_iter().enumerate() {
            let fire = now + chrono::Duration::minutes(min);
            let run = Run {
                key: format!("k:{}:{service}", fire.timestamp()),
                fire,
                at: fire,
                file: "f".into(),
                line: e.line,
                service: service.into(),
                action: e.action.clone(),
                user: None,
                result,
                exit: None,
                secs: None,
                id: None,
            };
            rec.append(&e.key(), &run, |_, _| {}).unwrap();
            w.apply(Msg::Outcome(e.key(), Box::new(run)));
            let (_, page) = w.texts(now);
            let mut fresh = Writer::new(paths(), "f".into(), dir.path());
            fresh.apply(Msg::Schedule(schedule.entries.clone()));
            assert_eq!(page, fresh.texts(now).1, "after outcome {i}");
            let services: Vec<&str> = w.entries.iter().map(|e| e.service.as_str()).collect();
            let want: &[&str] = match i {
                0 => &["php@each", "db"],
                1 => &["php.2", "db"],
                2 | 3 => &["php.1", "php.2", "db"],
                4 => &["php.1", "php.2", "php.10", "db"],
                5 => &["php.1", "php.2", "php.10", "php@each", "db"],
                _ => &["php.1", "php.2", "php.10", "db"],
            };
            assert_eq!(services, want, "after outcome {i}");
        }
        let (metrics, _) = w.texts(now);
        let metrics = metrics.unwrap();
        for n in ["1", "2", "10"] {
            assert!(metrics.contains(&format!("bosun_schedule_last_success_timestamp_seconds{{service=\"php\",action=\"rotate\",user=\"\",instance=\"{n}\"}}")), "{metrics}");
        }
    }

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
