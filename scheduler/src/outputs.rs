//! The daemon's report files (DESIGN.md section 7): `BOSUN_METRICS_FILE` ([`crate::metrics`])
//! and `BOSUN_STATUS_HTML` ([`crate::page`]), rewritten after every outcome, at start and
//! after a reload.
//!
//! The daemon keeps what they need in memory, a [`Summary`] per schedule line read from the
//! record once (at start, or when a reload adds the line) and then updated with each
//! outcome, so a rewrite reads no file however long the schedule. The rewrite itself runs on
//! a thread of its own: the daemon's loop and its deliveries only update the summaries and
//! wake it, so rendering a page of ten thousand lines never makes a fire late, and outcomes
//! that come while a rewrite is going are written together by the next one.
//!
//! Each file is replaced atomically ([`write_atomic`]): a reader sees the old file or the
//! new one, never a part. A file that cannot be written is logged once (and once more when
//! it can be written again); the schedule runs on.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use chrono::Utc;
use tracing::{info, warn};

use crate::metrics::{self, Counts, Target};
use crate::page;
use crate::record::{Recorder, Run};
use crate::schedule::{Entry, Schedule};
use crate::summary::Summary;

/// Where the files go; either may be absent.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub metrics: Option<PathBuf>,
    pub page: Option<PathBuf>,
}

/// The writer: summaries, counts, and the thread that writes the files.
pub struct Outputs {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

struct Inner {
    paths: Paths,
    /// The schedule file, as the page names it.
    file: String,
    state: Mutex<State>,
    wake: Mutex<Wake>,
    cond: Condvar,
}

#[derive(Default)]
struct State {
    /// The schedule's lines, in file order.
    entries: Vec<Entry>,
    /// Per line key ([`Entry::key`]).
    summaries: HashMap<String, Summary>,
    counts: Counts,
}

#[derive(Default)]
struct Wake {
    dirty: bool,
    stop: bool,
}

/// The metrics' labels of a line.
pub fn target(service: &str, action: &str, user: Option<&str>) -> Target {
    Target {
        service: service.to_string(),
        action: action.to_string(),
        user: user.unwrap_or_default().to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the summary of a line from the record; an unreadable record is logged and counts
/// as empty.
fn read_summary(recorder: &Recorder, e: &Entry) -> Summary {
    match recorder.runs(&e.key()) {
        Ok(c) => Summary::from_runs(&c.runs),
        Err(err) => {
            warn!(line = e.line, error = %err, "cannot read the run record for the reports");
            Summary::default()
        }
    }
}

impl Outputs {
    /// Reads the record of every line and starts the writer, which writes both files at
    /// once. `None` when neither file is asked for.
    pub fn start(
        paths: Paths,
        file: String,
        recorder: &Recorder,
        schedule: &Schedule,
    ) -> io::Result<Option<Outputs>> {
        if paths.metrics.is_none() && paths.page.is_none() {
            return Ok(None);
        }
        let inner = Arc::new(Inner {
            paths,
            file,
            state: Mutex::new(State::default()),
            wake: Mutex::new(Wake::default()),
            cond: Condvar::new(),
        });
        let outputs = Outputs {
            thread: Some(std::thread::Builder::new().name("reports".into()).spawn({
                let inner = inner.clone();
                move || writer(&inner)
            })?),
            inner,
        };
        outputs.set_schedule(schedule, recorder);
        Ok(Some(outputs))
    }

    /// The schedule was (re)loaded: lines new to it are read from the record, lines gone
    /// are forgotten.
    pub fn set_schedule(&self, schedule: &Schedule, recorder: &Recorder) {
        {
            let mut state = lock(&self.inner.state);
            let mut old = std::mem::take(&mut state.summaries);
            for e in &schedule.entries {
                let key = e.key();
                let summary = old
                    .remove(&key)
                    .unwrap_or_else(|| read_summary(recorder, e));
                state.summaries.insert(key, summary);
            }
            state.entries = schedule.entries.clone();
        }
        self.dirty();
    }

    /// One outcome of a run of the line `line_key` (also a `running` one): updates the
    /// line's summary, counts a final result, and wakes the writer.
    pub fn outcome(&self, line_key: &str, run: &Run) {
        {
            let mut state = lock(&self.inner.state);
            let target = target(&run.service, &run.action, run.user.as_deref());
            metrics::count(&mut state.counts, &target, run.result);
            if let Some(s) = state.summaries.get_mut(line_key) {
                s.add(run);
            }
        }
        self.dirty();
    }

    fn dirty(&self) {
        lock(&self.inner.wake).dirty = true;
        self.inner.cond.notify_one();
    }
}

impl Drop for Outputs {
    /// Writes what is pending, then stops the writer.
    fn drop(&mut self) {
        lock(&self.inner.wake).stop = true;
        self.inner.cond.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: waits for a change, renders under the lock, writes outside it.
fn writer(inner: &Inner) {
    let mut failing = [false, false];
    loop {
        let stop = {
            let mut w = lock(&inner.wake);
            while !w.dirty && !w.stop {
                w = inner.cond.wait(w).unwrap_or_else(|e| e.into_inner());
            }
            if !w.dirty {
                return;
            }
            w.dirty = false;
            w.stop
        };
        let (metrics_text, page_text) = render(inner);
        let files = [
            (&inner.paths.metrics, metrics_text, "metrics file"),
            (&inner.paths.page, page_text, "status page"),
        ];
        for (i, (path, text, what)) in files.into_iter().enumerate() {
            let (Some(path), Some(text)) = (path, text) else {
                continue;
            };
            match write_atomic(path, text.as_bytes()) {
                Ok(()) if failing[i] => {
                    failing[i] = false;
                    info!(file = %path.display(), "the {what} is written again");
                }
                Ok(()) => {}
                Err(err) if !failing[i] => {
                    failing[i] = true;
                    warn!(file = %path.display(), error = %err, "cannot write the {what}; the schedule runs on (said once until it can be written)");
                }
                Err(_) => {}
            }
        }
        if stop {
            return;
        }
    }
}

/// The two files' text as the state is now, each when asked for.
fn render(inner: &Inner) -> (Option<String>, Option<String>) {
    let state = lock(&inner.state);
    let empty = Summary::default();
    let summary = |e: &Entry| state.summaries.get(&e.key()).unwrap_or(&empty);
    let metrics_text = inner.paths.metrics.as_ref().map(|_| {
        let targets: Vec<(Target, &Summary)> = state
            .entries
            .iter()
            .map(|e| (target(&e.service, &e.action, e.user.as_deref()), summary(e)))
            .collect();
        metrics::render(&metrics::families(
            targets.iter().map(|(t, s)| (t, *s)),
            &state.counts,
        ))
    });
    let page_text = inner.paths.page.as_ref().map(|_| {
        let now = Utc::now();
        let rows: Vec<page::Row> = state
            .entries
            .iter()
            .map(|e| page::Row {
                entry: e,
                summary: summary(e),
                next: e.next_after(now),
            })
            .collect();
        page::render(&inner.file, &rows, now)
    });
    (metrics_text, page_text)
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never
/// a part: a temporary file in the same directory (hidden, and not `*.prom`, so the
/// collector skips it), written, renamed over `path`. Not fsynced: both files are made
/// again from the record at every start.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
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
