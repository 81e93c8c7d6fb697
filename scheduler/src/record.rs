//! The scheduler's record (DESIGN.md section 7, "The scheduler's view"): every run of every
//! schedule line, with its key, outcome, exit code, duration and the target's run id, kept
//! in `$BOSUN_STATE_DIR` for `scheduler status`.
//!
//! One append-only file per schedule line, `<line hash>.runs` beside the catch-up state's
//! `<line hash>.last` ([`crate::state`]), one record a line: tab-separated fields framed by
//! the journal's codec (`<crc32> <fields>`, [`journal::frame`]), so both logs share one
//! checksum; lines of the format before (`r1`, fields then an FNV-1a checksum) still read. A run writes at most two records (`running` at
//! `accepted`, then its outcome); the reader folds them by fire key, the last record of a
//! run winning. Why this shape:
//! - appends are a few dozen bytes and one `fdatasync`: a crash loses at most the record being
//!   written, and a torn or hand-damaged line fails its checksum and is skipped (the file is
//!   reported once), never a reason to stop;
//! - per line, as the catch-up state: `status` reads only the files of the lines it shows,
//!   a damaged file costs one line's history, and compaction rewrites one small file;
//! - bounded: when a file holds more than twice [`KEEP`] records it is rewritten with the
//!   last [`KEEP`] runs (temporary file, fsync, rename), so a crash mid-compaction leaves
//!   the old file whole;
//! - safe in a shared directory (DESIGN.md section 9): the directory is made 0700, files
//!   are opened without following symlinks and made 0600, and the compaction's temporary
//!   is fresh (`O_EXCL`) and removed when the rewrite fails, all through [`common::fs`];
//! - plain text, readable with `cat` by an operator, and by another process (`scheduler
//!   status`) while the daemon writes: readers see whole lines or a torn last line, which the
//!   checksum rejects.
//!
//! An embedded database would buy nothing here: one writer, a few records a minute, reads
//! of a hundred lines.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::state::{fnv1a, line_hash};

/// Runs kept per schedule line.
pub const KEEP: usize = 100;

/// Record format version, the first field of every record.
const VERSION: &str = "r2";
/// The format before it: the same fields, then an FNV-1a checksum of them, still read.
const LEGACY: &str = "r1";

/// How a run of a line ended, as `scheduler status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// `done` with `exit=0`.
    Ok,
    /// `done` with another exit code, or the connection lost after `accepted` for good.
    Failed,
    /// The target was absent, refused or `unavailable` for the whole retry window, or the
    /// clock jumped past the fire by more than the catch-up window.
    Missed,
    /// The service answered an `error` other than `unavailable` (`unknown-action`, `busy`, ...).
    Refused,
    /// The previous run of the same line was still going.
    Skipped,
    /// Accepted, no `done` yet.
    Running,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed => "failed",
            RunResult::Missed => "missed",
            RunResult::Refused => "refused",
            RunResult::Skipped => "skipped",
            RunResult::Running => "running",
        }
    }

    pub fn parse(text: &str) -> Option<RunResult> {
        [
            RunResult::Ok,
            RunResult::Failed,
            RunResult::Missed,
            RunResult::Refused,
            RunResult::Skipped,
            RunResult::Running,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }

    /// Whether `scheduler status` exits 1 for a line whose last run ended so.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            RunResult::Failed | RunResult::Missed | RunResult::Refused
        )
    }
}

/// One run of a schedule line, as last recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The fire key sent as `@KEY` ([`crate::state::FireKeys::fire`]).
    pub key: String,
    /// When the line was due.
    pub fire: DateTime<Utc>,
    /// When this record was written.
    pub at: DateTime<Utc>,
    /// The schedule file and the line's number in it at the time.
    pub file: String,
    pub line: usize,
    pub service: String,
    pub action: String,
    pub user: Option<String>,
    pub result: RunResult,
    pub exit: Option<i32>,
    /// The action's duration, from `done ... secs=`.
    pub secs: Option<f64>,
    /// The run's id in the target service (from `accepted <id>`).
    pub id: Option<u64>,
}

/// `%`, tab, CR and LF as `%XX`: a field never splits a record.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\t' => out.push_str("%09"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3)?;
        out.push(char::from(u8::from_str_radix(hex, 16).ok()?));
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

impl Run {
    /// The record line, with its `\n`: the fields framed with their CRC-32
    /// ([`journal::frame`]).
    pub fn encode(&self) -> String {
        let body = [
            VERSION.to_string(),
            escape(&self.key),
            self.fire.timestamp_millis().to_string(),
            self.at.timestamp_millis().to_string(),
            escape(&self.file),
            self.line.to_string(),
            escape(&self.service),
            escape(&self.action),
            escape(self.user.as_deref().unwrap_or("")),
            self.result.as_str().to_string(),
            opt(&self.exit),
            self.secs.map(|s| format!("{s:.3}")).unwrap_or_default(),
            opt(&self.id),
        ]
        .join("\t");
        let mut out = Vec::with_capacity(body.len() + 10);
        journal::frame(body.as_bytes(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One record line (without its `\n`), of this format or the one before it (`r1`, whose
    /// FNV-1a checksum ends the line), so that an upgrade keeps the history; `None` when
    /// torn, damaged or of another version.
    pub fn decode(line: &str) -> Option<Run> {
        match journal::unframe(line.as_bytes()) {
            Some(body) => Run::fields(std::str::from_utf8(body).ok()?, VERSION),
            None => {
                let (body, sum) = line.rsplit_once('\t')?;
                if u64::from_str_radix(sum, 16).ok()? != fnv1a(body) || sum.len() != 16 {
                    return None;
                }
                Run::fields(body, LEGACY)
            }
        }
    }

    /// The fields of a record of format `version`.
    fn fields(body: &str, version: &str) -> Option<Run> {
        let f: Vec<&str> = body.split('\t').collect();
        let [v, key, fire, at, file, line, service, action, user, result, exit, secs, id] =
            f.as_slice()
        else {
            return None;
        };
        if *v != version {
            return None;
        }
        let millis = |t: &str| DateTime::from_timestamp_millis(t.parse().ok()?);
        fn maybe<T: std::str::FromStr>(t: &str) -> Option<Option<T>> {
            if t.is_empty() {
                Some(None)
            } else {
                t.parse().ok().map(Some)
            }
        }
        Some(Run {
            key: unescape(key)?,
            fire: millis(fire)?,
            at: millis(at)?,
            file: unescape(file)?,
            line: line.parse().ok()?,
            service: unescape(service)?,
            action: unescape(action)?,
            user: Some(unescape(user)?).filter(|u| !u.is_empty()),
            result: RunResult::parse(result)?,
            exit: maybe(exit)?,
            secs: maybe(secs)?,
            id: maybe(id)?,
        })
    }
}

/// What a record file held.
#[derive(Debug, Default)]
pub struct Contents {
    /// The runs, oldest first, each as last recorded.
    pub runs: Vec<Run>,
    /// Record lines written so far (for compaction).
    pub records: usize,
    /// Lines that failed their checksum or did not parse.
    pub damaged: usize,
}

/// Folds records into runs by key, in order of first appearance, the last record winning.
fn fold(records: impl IntoIterator<Item = Run>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in records {
        match index.get(&r.key) {
            Some(&i) => runs[i] = r,
            None => {
                index.insert(r.key.clone(), runs.len());
                runs.push(r);
            }
        }
    }
    runs
}

/// Reads one record file; a missing file is an empty record.
/// Never through a symlink (`ELOOP`: an error, not an empty record).
pub fn read_file(path: &Path) -> io::Result<Contents> {
    let mut bytes = Vec::new();
    match common::fs::open_read(path) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(e),
    };
    let mut out = Contents::default();
    let mut records = Vec::new();
    for raw in bytes.split(|&b| b == b'\n') {
        if raw.is_empty() {
            continue;
        }
        out.records += 1;
        match std::str::from_utf8(raw).ok().and_then(Run::decode) {
            Some(r) => records.push(r),
            None => out.damaged += 1,
        }
    }
    out.runs = keep_last(fold(records));
    Ok(out)
}

/// The last [`KEEP`] runs of each service the runs went to: an `@each` line keeps as many
/// runs of every instance (`php.1`, `php.2`, ...) as a line of one target does.
fn keep_last(mut runs: Vec<Run>) -> Vec<Run> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut keep = vec![false; runs.len()];
    for (i, r) in runs.iter().enumerate().rev() {
        let n = seen.entry(r.service.clone()).or_insert(0);
        *n += 1;
        keep[i] = *n <= KEEP;
    }
    let mut flags = keep.into_iter();
    runs.retain(|_| flags.next().unwrap_or(false));
    runs
}

/// The record file of the line whose [`crate::schedule::Entry::key`] is `line_key`.
pub fn path(dir: &Path, line_key: &str) -> PathBuf {
    dir.join(format!("{}.runs", line_hash(line_key)))
}

/// Failure to write the record, with what we were doing and where.
#[derive(Debug, thiserror::Error)]
#[error("{doing} {}: {source}", path.display())]
pub struct RecordError {
    doing: &'static str,
    path: PathBuf,
    source: io::Error,
}

/// The daemon's writer. One lock around all writes: appends and compactions of one file
/// never interleave, and they are a few small writes each.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Record lines in each file this process has touched.
    records: HashMap<PathBuf, usize>,
    /// Files already reported as damaged.
    reported: HashSet<PathBuf>,
    /// Runs each file kept at its last compaction.
    kept: HashMap<PathBuf, usize>,
}

impl Recorder {
    /// Makes the directory if needed (0700, [`common::fs::private_dir`]).
    pub fn open(dir: &Path) -> Result<Recorder, RecordError> {
        common::fs::private_dir(dir).map_err(|source| RecordError {
            doing: "making the state directory",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// What the record of `line_key` holds now.
    pub fn runs(&self, line_key: &str) -> io::Result<Contents> {
        read_file(&path(&self.dir, line_key))
    }

    /// Appends `run` to the record of `line_key`, durably; compacts the file when it has
    /// grown past twice [`KEEP`] records. `report` is called once per damaged file.
    pub fn append(
        &self,
        line_key: &str,
        run: &Run,
        report: impl FnOnce(&Path, usize),
    ) -> Result<(), RecordError> {
        let path = path(&self.dir, line_key);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let err = |doing| {
            let path = path.clone();
            move |source| RecordError {
                doing,
                path,
                source,
            }
        };
        if !inner.records.contains_key(&path) {
            let read = read_file(&path).map_err(err("reading the record"))?;
            if read.damaged > 0 && inner.reported.insert(path.clone()) {
                report(&path, read.damaged);
            }
            inner.records.insert(path.clone(), read.records);
        }
        append_line(&path, &run.encode()).map_err(err("appending to the record"))?;
        let count = inner.records.entry(path.clone()).or_insert(0);
        *count += 1;
        let count = *count;
        // Past twice what is kept (an `@each` line keeps KEEP runs per instance).
        let kept = inner.kept.get(&path).copied().unwrap_or(0).max(KEEP);
        if count > 2 * kept {
            let runs = read_file(&path).map_err(err("reading the record"))?.runs;
            rewrite(&path, &runs).map_err(err("compacting the record"))?;
            inner.records.insert(path.clone(), runs.len());
            inner.kept.insert(path.clone(), runs.len());
        }
        Ok(())
    }
}

/// Appends one line and syncs it. A torn last line (no `\n`, a crash mid-write) is ended
/// first, so the new record does not join it.
fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let mut f = common::fs::open_append(path)?;
    let len = f.metadata()?.len();
    let mut text = String::with_capacity(line.len() + 1);
    if len > 0 {
        // The append descriptor cannot read: the last byte through a second one, of the
        // same file (both opened without following symlinks; one writer, under the lock).
        let mut r = common::fs::open_read(path)?;
        let mut last = [0u8];
        r.seek(SeekFrom::Start(len - 1))?;
        r.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    f.write_all(text.as_bytes())?;
    f.sync_data()
}

/// Replaces the file with one record per run: a fresh temporary, fsync, rename, fsync of
/// the directory ([`common::fs::write_atomic`], durable); the temporary is removed when any
/// step fails.
fn rewrite(path: &Path, runs: &[Run]) -> io::Result<()> {
    let text: String = runs.iter().map(Run::encode).collect();
    common::fs::write_atomic(
        path,
        text.as_bytes(),
        0o600,
        common::fs::Durability::Durable,
    )
}

/// A run of `mysql nightly-backup` due at `fire` (Unix seconds), recorded 5.5 s later,
/// 0.25 s long, run id 7: the reports' tests build their runs from it.
#[cfg(test)]
pub(crate) fn sample_run(fire: i64, result: RunResult, exit: Option<i32>) -> Run {
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
        secs: Some(0.25),
        id: Some(7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: &str, result: RunResult) -> Run {
        Run {
            key: key.into(),
            fire: DateTime::from_timestamp(1_764_821_100, 0).unwrap(),
            at: DateTime::from_timestamp_millis(1_764_821_100_250).unwrap(),
            file: "/conf/a b\t%.cron".into(),
            line: 3,
            service: "mysql".into(),
            action: "nightly-backup".into(),
            user: Some("forum".into()),
            result,
            exit: Some(0),
            secs: Some(1.5),
            id: Some(42),
        }
    }

    #[test]
    fn round_trip_and_damage() {
        let r = run("k:1", RunResult::Ok);
        let line = r.encode();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let nl = |l: &str| l.strip_suffix('\n').unwrap().to_string();
        assert_eq!(Run::decode(&nl(&line)), Some(r.clone()));
        let none = Run {
            user: None,
            exit: None,
            secs: None,
            id: None,
            result: RunResult::Missed,
            ..r.clone()
        };
        assert_eq!(Run::decode(&nl(&none.encode())), Some(none));
        // Torn, flipped, and hand-edited lines fail.
        let body = nl(&line);
        let body = body.as_str();
        assert_eq!(Run::decode(&body[..body.len() - 3]), None);
        assert_eq!(Run::decode(&body.replace("mysql", "mysqm")), None);
        assert_eq!(Run::decode(""), None);
        assert_eq!(unescape("%2"), None);
    }

    /// Expected: a record file written by the release before this format (`r1` lines, an
    /// FNV-1a checksum at their end) loads whole after the upgrade, with records of the new
    /// format appended to it, and a damaged old line is still damaged.
    #[test]
    fn records_of_the_format_before_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "line");
        let old = "r1\t0ad230bcabde69a6:1764821100\t1764821100000\t1764821102500\t/etc/bosun/schedule.cron\t3\tdb\tbackup\tforum\tfailed\t3\t1.250\t7\tc829695f9fa6e1f2\n\
                   r1\t0ad230bcabde69a6:1764821160\t1764821160000\t1764821160100\t/etc/bosun/schedule.cron\t3\tdb\tbackup\t\trunning\t\t\t8\t233d124abcd578c1\n\
                   r1\t0ad230bcabde69a6:1764821220\t1764821220000\t1764821220100\t/etc/bosun/schedule.cron\t3\tdb\tbackup\t\tok\t\t\t9\t233d124abcd578c1\n";
        std::fs::write(&p, old).unwrap();
        let read = read_file(&p).unwrap();
        assert_eq!((read.records, read.damaged), (3, 1));
        let first = &read.runs[0];
        assert_eq!(first.key, "0ad230bcabde69a6:1764821100");
        assert_eq!(
            first.fire,
            DateTime::from_timestamp(1_764_821_100, 0).unwrap()
        );
        assert_eq!(
            first.at,
            DateTime::from_timestamp_millis(1_764_821_102_500).unwrap()
        );
        assert_eq!(
            (first.file.as_str(), first.line, first.service.as_str()),
            ("/etc/bosun/schedule.cron", 3, "db")
        );
        assert_eq!(
            (first.action.as_str(), first.user.as_deref()),
            ("backup", Some("forum"))
        );
        assert_eq!(
            (first.result, first.exit, first.secs, first.id),
            (RunResult::Failed, Some(3), Some(1.25), Some(7))
        );
        assert_eq!(
            (
                read.runs[1].result,
                read.runs[1].user.as_deref(),
                read.runs[1].id
            ),
            (RunResult::Running, None, Some(8))
        );
        // The running run ends under the new format: one file, both formats, folded.
        let rec = Recorder::open(dir.path()).unwrap();
        let mut done = read.runs[1].clone();
        done.result = RunResult::Ok;
        let mut reports = 0;
        rec.append("line", &done, |_, _| reports += 1).unwrap();
        let read = read_file(&p).unwrap();
        assert_eq!((read.records, read.damaged), (4, 1));
        assert_eq!(read.runs.len(), 2);
        assert_eq!(read.runs[1], done);
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .last()
            .is_some_and(|l| !l.starts_with("r1")));
    }

    /// An `@each` line's record keeps [`KEEP`] runs of each instance, and compacts to that.
    #[test]
    fn each_instance_keeps_its_own_runs() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open(dir.path()).unwrap();
        for i in 0..(3 * KEEP) {
            for n in 1..=3 {
                let mut r = sample_run(i as i64 * 60, RunResult::Ok, Some(0));
                r.key = format!("k:{i}:{n}");
                r.service = format!("php.{n}");
                rec.append("L", &r, |_, _| {}).unwrap();
            }
        }
        let read = rec.runs("L").unwrap();
        assert_eq!(read.runs.len(), 3 * KEEP);
        assert!(read.records <= 2 * 3 * KEEP, "{}", read.records);
        for n in 1..=3 {
            let mine: Vec<_> = read
                .runs
                .iter()
                .filter(|r| r.service == format!("php.{n}"))
                .collect();
            assert_eq!(mine.len(), KEEP);
            assert_eq!(mine.last().unwrap().key, format!("k:{}:{n}", 3 * KEEP - 1));
        }
    }

    #[test]
    fn fold_compact_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open(dir.path()).unwrap();
        let never = |p: &Path, n: usize| panic!("{} reported: {n}", p.display());
        rec.append("line", &run("k:1", RunResult::Running), never)
            .unwrap();
        rec.append("line", &run("k:1", RunResult::Ok), never)
            .unwrap();
        rec.append("line", &run("k:2", RunResult::Skipped), never)
            .unwrap();
        let p = path(dir.path(), "line");
        let read = read_file(&p).unwrap();
        assert_eq!((read.records, read.damaged), (3, 0));
        let results: Vec<_> = read
            .runs
            .iter()
            .map(|r| (r.key.as_str(), r.result))
            .collect();
        assert_eq!(
            results,
            [("k:1", RunResult::Ok), ("k:2", RunResult::Skipped)]
        );

        // A torn record at the end is skipped, and the next append does not join it.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"r1\tk:3\t17648").unwrap();
        let rec = Recorder::open(dir.path()).unwrap();
        let mut reported = Vec::new();
        rec.append("line", &run("k:4", RunResult::Failed), |_, n| {
            reported.push(n)
        })
        .unwrap();
        assert_eq!(reported, [1]);
        let read = read_file(&p).unwrap();
        assert_eq!((read.records, read.damaged, read.runs.len()), (5, 1, 3));

        // Bounded: never more than 2 * KEEP records on disk, the last KEEP runs kept. The
        // compactions write a fresh temporary: a symlink planted at the old fixed name is
        // not followed, and no temporary is left.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "IMPORTANT").unwrap();
        let planted = p.with_extension("runs.tmp");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        for i in 0..(3 * KEEP) {
            rec.append("line", &run(&format!("n:{i}"), RunResult::Ok), never)
                .unwrap();
        }
        let read = read_file(&p).unwrap();
        assert!(read.records <= 2 * KEEP, "{}", read.records);
        assert_eq!(read.runs.len(), KEEP);
        assert_eq!(read.runs.last().unwrap().key, format!("n:{}", 3 * KEEP - 1));
        assert_eq!(read.damaged, 0);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "IMPORTANT");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let runs = p.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = planted.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(names, [runs, tmp, "victim".to_string()]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// Expected: a symlink planted at a record's path is not followed, to read or to
    /// append (an error, reported by the daemon), and its target is left alone.
    #[test]
    fn a_symlink_at_the_record_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "IMPORTANT").unwrap();
        let p = path(dir.path(), "line");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        assert!(read_file(&p).is_err());
        let rec = Recorder::open(dir.path()).unwrap();
        let e = rec
            .append("line", &run("k:1", RunResult::Ok), |_, _| {})
            .unwrap_err();
        assert!(e.to_string().contains("reading the record"), "{e}");
        assert!(append_line(&p, "x\n").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "IMPORTANT");
    }
}
