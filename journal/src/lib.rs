//! The run journal (DESIGN.md section 7): every action run of a container, who asked, when,
//! how it ended and its last output lines, kept across restarts in
//! `<state_dir>/<service>.journal`, bounded, and the memory of keyed requests (section 2).
//!
//! Shape: everything the built-ins read (`history`, `log`, keys) is held in memory, at most
//! [`RUNS_PER_ACTION`] ended runs of each action (and [`Options::max_runs`] in all), so reads
//! never touch the disk. The file is append-only, one checksummed record a line (see
//! `record.rs`), written in two places only: a start is fsync'd before [`Journal::start`]
//! returns, because a key must be on disk before its action runs (exactly once, also across a
//! crash); an end, with the run's last lines, is written at once (so it survives the process
//! and the container) and made durable by the next start's fsync, which flushes the whole
//! file, or by the kernel's writeback within seconds: one fsync per run, not two, and a power
//! cut in between shows that run as `lost`, never as run twice. Output lines cost no I/O: they
//! go to an in-memory ring and are written once, with the end. So a container killed at any
//! instant loses at most the output of the runs in progress, which show as `lost` afterwards.
//! When the file has doubled since it was last written whole, it is rewritten from memory
//! (temp file, fsync, rename, fsync of the directory), so it stays within about twice what is
//! kept. bench/journal/README.md has the measurements that chose this over SQLite and redb.
//!
//! Nothing here is a reason not to start: an unusable directory gives a journal in memory,
//! damaged or torn records are skipped, and each is one warning line for the caller to log.
//! But a journal in memory is not durable, so [`Journal::start`] of a keyed run fails then
//! (DESIGN.md section 2, "never run unrecorded"), and the journal tries its file again by
//! itself at later writes (at most once per [`Options::retry_every`]): a disk that was full,
//! read-only or missing is used again without a restart, and the first write that gets
//! through writes the whole journal as memory holds it. Any failed write detaches the file
//! the same way, so the file is only ever appended to while it holds all that memory holds.
//!
//! Files (DESIGN.md section 9): the directory is made 0700 and never reached through a
//! symlink, the journal is opened `O_NOFOLLOW`, and a rewrite goes through a fresh
//! `O_EXCL|O_NOFOLLOW` temporary that is removed when anything fails (`common::fs`).
//!
//! Keys belong to their request: a keyed start holds the digest of the request's words, and
//! the journal knows a key by (key, digest), so one key can name two runs of other words.

mod record;
pub use record::{crc32, frame, unframe};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fs::{self as cfs, Durability};

pub use common::time::rfc3339;
use record::{Damage, Record};

/// Output lines kept per run: the last ones, as they went to the container log.
pub const LINES_PER_RUN: usize = 100;
/// Ended runs kept per action: the newest ones.
pub const RUNS_PER_ACTION: usize = 100;
/// An output line longer than this is cut to it in the journal (the container log keeps it
/// whole), so a run's lines stay bounded in bytes too.
pub const MAX_LINE_BYTES: usize = 4096;

/// No record is longer (100 lines of `MAX_LINE_BYTES`, each byte escaped as `\xHH`, and
/// room to spare): a longer line is skipped unread, so a damaged file cannot exhaust memory.
const MAX_RECORD_BYTES: usize = 4 << 20;

/// Damaged records told one by one at open; more are told as a count.
const WARN_EACH: usize = 3;

/// One run of an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: u64,
    pub action: String,
    pub user: Option<String>,
    pub key: Option<String>,
    /// The digest of the request's words a key is bound to (`proto::Request::digest`);
    /// `None` for unkeyed runs and for keyed runs recorded before digests.
    pub digest: Option<String>,
    /// The asking peer's uid.
    pub uid: u32,
    /// Unix milliseconds.
    pub start_ms: i64,
    /// `None`: running, or lost (see `lost`).
    pub end: Option<End>,
    /// It had started and never ended, and its journal was reopened (the container or the
    /// listener died meanwhile).
    pub lost: bool,
    /// The last output lines (stdout and stderr, as they went to the log, without the
    /// `[action#id] ` prefix), oldest first, at most [`LINES_PER_RUN`].
    pub lines: Vec<Vec<u8>>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct End {
    /// Unix milliseconds.
    pub end_ms: i64,
    pub exit: i32,
    pub secs: f64,
}

/// What [`Journal::start`] records.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub id: u64,
    pub action: String,
    pub user: Option<String>,
    pub key: Option<String>,
    pub uid: u32,
    pub start_ms: i64,
}

/// Bounds and durability; [`Options::default`] is what [`Journal::open`] uses. Tests and
/// benchmarks change them.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Ended runs kept per action.
    pub runs_per_action: usize,
    /// Ended runs kept in all (oldest dropped first), whatever the number of actions.
    pub max_runs: usize,
    /// The file is never rewritten below this size.
    pub compact_min_bytes: u64,
    /// fdatasync after each start and end record. Off only for tests and benchmarks.
    pub fsync: bool,
    /// While the file cannot be written, how often a write tries it again.
    pub retry_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs_per_action: RUNS_PER_ACTION,
            max_runs: 10_000,
            compact_min_bytes: 256 * 1024,
            fsync: true,
            retry_every: Duration::from_secs(1),
        }
    }
}

/// The journal of one service; see the module header.
#[derive(Debug)]
pub struct Journal {
    runs: BTreeMap<u64, Run>,
    /// (key, digest) -> run; digest `None` for starts recorded before digests.
    keys: HashMap<(String, Option<String>), u64>,
    by_action: HashMap<String, BTreeSet<u64>>,
    next_id: u64,
    /// The file, while it holds all that memory holds.
    store: Option<Store>,
    /// Where the file lives; `None` for a journal that is never written.
    home: Option<Home>,
    opts: Options,
    /// What the runs dropped for the bounds counted, by action (written by a rewrite as `T`
    /// records): with the runs kept, the counters of `metrics` ([`Journal::tallies`]).
    dropped: HashMap<String, Tally>,
}

/// The ended runs of one action, counted (the `metrics` built-in).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Ended with exit 0.
    pub ok: u64,
    /// Ended with another exit code (a timeout's too).
    pub failed: u64,
    /// Lost: going when the container or the listener died.
    pub lost: u64,
    /// The seconds of the ended runs, added up (`ok` + `failed` of them).
    pub secs: f64,
    /// The end of the newest run that ended with exit 0, Unix milliseconds.
    pub last_success_ms: Option<i64>,
}

impl Tally {
    fn add(&mut self, run: &Run) {
        match (run.end, run.lost) {
            (Some(e), _) => {
                if e.exit == 0 {
                    self.ok += 1;
                    self.last_success_ms = self.last_success_ms.max(Some(e.end_ms));
                } else {
                    self.failed += 1;
                }
                self.secs += e.secs;
            }
            (None, true) => self.lost += 1,
            (None, false) => {}
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.lost += o.lost;
        self.secs += o.secs;
        self.last_success_ms = self.last_success_ms.max(o.last_success_ms);
    }
}

/// What reading the file found.
#[derive(Debug, Default)]
struct Loaded {
    /// Its length.
    len: u64,
    /// The bytes of the records of the runs that are kept.
    live: u64,
    /// It should be written anew: it had damage, a torn end, or runs that are now lost.
    dirty: bool,
}

/// The file behind a persistent journal.
#[derive(Debug)]
struct Store {
    /// Opened for appending.
    file: File,
    /// Bytes of whole records in the file.
    len: u64,
    /// Rewrite when `len` passes this.
    compact_at: u64,
}

/// Where the journal's file lives, and how trying it again goes while it cannot be written.
#[derive(Debug)]
struct Home {
    dir: PathBuf,
    path: PathBuf,
    /// Memory holds what the file held (it was read whole, or there was none): the file
    /// can be written anew from memory. Otherwise it is read (and merged) first.
    loaded: bool,
    /// The last time the file could not be written (retries wait `retry_every` from it).
    failed_at: Option<Instant>,
    /// Why, for the errors of writes that do not try again.
    why: String,
}

impl Journal {
    /// Opens (creating the directory and file as needed) `<dir>/<service>.journal`. Never
    /// fails: an unwritable or unreadable dir gives a journal in memory and one warning (the
    /// file is tried again at later writes); damaged or torn records are skipped with one
    /// warning each (at most a few, then a count). Runs that were started and never ended
    /// become `lost` (and that is recorded, so they stay lost).
    pub fn open(dir: &Path, service: &str) -> (Journal, Vec<String>) {
        Journal::open_with(dir, service, Options::default())
    }

    /// [`Journal::open`] with other bounds.
    pub fn open_with(dir: &Path, service: &str, opts: Options) -> (Journal, Vec<String>) {
        let mut j = Journal::in_memory_with(opts);
        let mut warnings = Vec::new();
        let path = dir.join(format!("{service}.journal"));
        j.home = Some(Home {
            dir: dir.to_path_buf(),
            path: path.clone(),
            loaded: false,
            failed_at: None,
            why: String::new(),
        });
        let memory_only = |what: &str, e: &io::Error| {
            format!(
                "journal {}: {what}: {}; keeping the journal in memory, trying the file again at later writes",
                path.display(),
                describe(e)
            )
        };
        if let Err(e) = cfs::private_dir(dir) {
            warnings.push(memory_only("cannot make its directory", &e));
            j.detached(&e);
            return (j, warnings);
        }
        let (loaded, created) = match open_journal(&path) {
            Ok(f) => match f.metadata() {
                Ok(m) if m.is_file() => {
                    (j.load(io::BufReader::new(f), &path, &mut warnings), false)
                }
                Ok(_) => (Err(io::Error::other("not a regular file")), false),
                Err(e) => (Err(e), false),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Ok(Loaded::default()), true),
            Err(e) => (Err(e), false),
        };
        let Loaded { len, live, dirty } = match loaded {
            Ok(l) => l,
            Err(e) => {
                // what was read before the error is kept: its ids are not handed out again
                warnings.push(memory_only("cannot read it", &e));
                j.detached(&e);
                return (j, warnings);
            }
        };
        if let Some(h) = &mut j.home {
            h.loaded = true;
        }
        let file = match cfs::open_append(&path) {
            Ok(f) => f,
            Err(e) => {
                warnings.push(memory_only("cannot open it for writing", &e));
                j.detached(&e);
                return (j, warnings);
            }
        };
        // Bounded by what is kept, not by what the file holds: reopening never raises it.
        let compact_at = live.saturating_mul(2).max(j.opts.compact_min_bytes);
        let dirty = dirty || len > compact_at;
        j.store = Some(Store {
            file,
            len,
            compact_at,
        });
        let settled = if dirty {
            j.rewrite()
        } else if created && j.opts.fsync {
            cfs::sync_dir(dir)
        } else {
            Ok(())
        };
        if let Err(e) = settled {
            warnings.push(memory_only("cannot write it", &e));
            j.detached(&e);
        }
        (j, warnings)
    }

    /// A journal that is never written: what an unusable state dir gives.
    pub fn in_memory() -> Journal {
        Journal::in_memory_with(Options::default())
    }

    fn in_memory_with(opts: Options) -> Journal {
        Journal {
            runs: BTreeMap::new(),
            keys: HashMap::new(),
            by_action: HashMap::new(),
            next_id: 1,
            store: None,
            home: None,
            opts,
            dropped: HashMap::new(),
        }
    }

    /// Whether its file holds what memory holds (writes go to the file).
    pub fn is_persistent(&self) -> bool {
        self.store.is_some()
    }

    /// The file behind it, if any (also while it cannot be written).
    pub fn path(&self) -> Option<&Path> {
        self.home.as_ref().map(|h| h.path.as_path())
    }

    /// Larger than every id ever recorded (ids are never reused across restarts).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Records a start without a digest; see [`Journal::start_with`].
    pub fn start(&mut self, s: Start) -> io::Result<()> {
        self.start_with(s, None)
    }

    /// Records a start, with the digest of the request's words for a keyed run. Ok means
    /// durable (written and fdatasync'd): only then may a keyed run start (exactly once).
    /// An error means it is not on disk (the file cannot be written now, or the journal is
    /// in memory only): a keyed run is then forgotten (it must not run, and its key must not
    /// replay), an unkeyed one is kept in memory all the same, for the caller to run.
    pub fn start_with(&mut self, s: Start, digest: Option<String>) -> io::Result<()> {
        let digest = digest.filter(|_| s.key.is_some());
        let rec = Record::Start {
            id: s.id,
            start_ms: s.start_ms,
            uid: s.uid,
            action: s.action.clone(),
            user: s.user.clone(),
            key: s.key.clone(),
            digest: digest.clone(),
        };
        let keyed = s.key.is_some();
        self.insert(Run {
            id: s.id,
            action: s.action,
            user: s.user,
            key: s.key,
            digest,
            uid: s.uid,
            start_ms: s.start_ms,
            end: None,
            lost: false,
            lines: Vec::new(),
        });
        let written = self.write(&rec, true);
        if written.is_err() && keyed {
            self.remove(s.id);
        }
        written
    }
    /// Appends an output line of a running run to its in-memory ring (the last
    /// [`LINES_PER_RUN`] are kept); no I/O. Lines of unknown or ended runs are ignored.
    pub fn output(&mut self, id: u64, line: &[u8]) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        if run.end.is_some() || run.lost {
            return;
        }
        if run.lines.len() >= LINES_PER_RUN {
            run.lines.remove(0);
        }
        run.lines
            .push(line[..line.len().min(MAX_LINE_BYTES)].to_vec());
    }

    /// Records the end (with the run's last lines), written but not fsync'd (see the module
    /// doc); then drops the oldest runs of
    /// its action beyond the bound, and rewrites the file when it has doubled since it was
    /// last written whole. An unknown id, or a run that has ended or is lost, records nothing.
    pub fn end(&mut self, id: u64, end: End) -> io::Result<()> {
        let Some(run) = self.runs.get_mut(&id) else {
            return Ok(());
        };
        if !run.is_running() {
            return Ok(());
        }
        run.end = Some(end);
        let rec = Record::End {
            id,
            end_ms: end.end_ms,
            exit: end.exit,
            secs: end.secs,
            lines: run.lines.clone(),
        };
        let action = run.action.clone();
        let written = self.write(&rec, false);
        self.prune(&action);
        written?;
        match &self.store {
            Some(st) if st.len > st.compact_at => self.rewrite().map_err(|e| {
                // not again at every end: when the file has doubled once more
                if let Some(st) = &mut self.store {
                    st.compact_at = st.len.saturating_mul(2);
                }
                io::Error::new(
                    e.kind(),
                    format!("the end was recorded, compacting failed: {e}"),
                )
            }),
            _ => Ok(()),
        }
    }

    /// The run with this id, if it is still kept.
    pub fn get(&self, id: u64) -> Option<&Run> {
        self.runs.get(&id)
    }

    /// The run that was started with this key for these words (`digest`), if it is still
    /// kept; a run recorded before digests answers its key whatever the words.
    pub fn by_key(&self, key: &str, digest: &str) -> Option<&Run> {
        self.keys
            .get(&(key.to_string(), Some(digest.to_string())))
            .or_else(|| self.keys.get(&(key.to_string(), None)))
            .and_then(|id| self.runs.get(id))
    }

    /// Newest first, at most `limit`, optionally only one action.
    pub fn history(&self, action: Option<&str>, limit: usize) -> Vec<&Run> {
        match action {
            None => self.runs.values().rev().take(limit).collect(),
            Some(a) => match self.by_action.get(a) {
                None => Vec::new(),
                Some(ids) => ids
                    .iter()
                    .rev()
                    .take(limit)
                    .filter_map(|id| self.runs.get(id))
                    .collect(),
            },
        }
    }

    /// The ended (and lost) runs of each action, counted: those the journal keeps, plus those
    /// it dropped for its bounds, also before a restart (a rewrite writes their tally, and
    /// runs dropped since are still in the file). So the counts never go down while the
    /// journal's file lives; a journal in memory starts again from 0. Running runs are not
    /// counted.
    pub fn tallies(&self) -> BTreeMap<String, Tally> {
        let mut out: BTreeMap<String, Tally> =
            self.dropped.iter().map(|(a, t)| (a.clone(), *t)).collect();
        for run in self.runs.values() {
            out.entry(run.action.clone()).or_default().add(run);
        }
        out
    }

    /// Reads the file's records into memory, one line at a time.
    fn load(
        &mut self,
        mut r: impl io::BufRead,
        path: &Path,
        warnings: &mut Vec<String>,
    ) -> io::Result<Loaded> {
        let mut damaged = 0usize;
        let mut dirty = false;
        let mut len = 0u64;
        // the bytes of each run's records, to know how much of the file is still kept
        let mut sizes: HashMap<u64, u64> = HashMap::new();
        let mut line = Vec::with_capacity(256);
        for n in 1.. {
            let Some((last, decoded)) = read_record(&mut r, &mut line, &mut len)? else {
                break;
            };
            match decoded {
                Ok(rec) => {
                    // A last record missing only its newline is whole: keep it, rewrite.
                    dirty |= last;
                    if let Some(id) = rec.run_id() {
                        *sizes.entry(id).or_default() += line.len() as u64 + 1;
                    }
                    self.take_loaded(rec);
                }
                Err(_) if last => {
                    dirty = true;
                    warnings.push(format!(
                        "journal {}: line {n}: torn last record skipped ({} bytes)",
                        path.display(),
                        line.len()
                    ));
                }
                Err(why) => {
                    dirty = true;
                    damaged += 1;
                    if damaged <= WARN_EACH {
                        let why = match why {
                            Damage::Checksum => "checksum mismatch",
                            Damage::Syntax => "not a record",
                        };
                        warnings.push(format!(
                            "journal {}: line {n}: damaged record skipped ({why})",
                            path.display()
                        ));
                    }
                }
            }
        }
        if damaged > WARN_EACH {
            warnings.push(format!(
                "journal {}: {} more damaged records skipped",
                path.display(),
                damaged - WARN_EACH
            ));
        }
        dirty |= self.end_loading();
        let live = self.runs.keys().filter_map(|id| sizes.get(id)).sum::<u64>();
        Ok(Loaded { len, live, dirty })
    }

    /// One record read from the file, applied, and memory kept within its bound while
    /// reading too, not only after: memory never holds much more than the bound, whatever
    /// the file holds (pruned in batches of an eighth of the bound, so reading stays linear).
    fn take_loaded(&mut self, rec: Record) {
        let id = rec.run_id();
        let ended = matches!(rec, Record::End { .. } | Record::Lost(_));
        self.apply(rec);
        if let Some(run) = id.and_then(|id| self.runs.get(&id)).filter(|_| ended) {
            let over = |n: usize, bound: usize| n > bound.saturating_add(bound / 8);
            let of_action = self.by_action.get(&run.action).map_or(0, |s| s.len());
            if over(of_action, self.opts.runs_per_action)
                || over(self.runs.len(), self.opts.max_runs)
            {
                let action = run.action.clone();
                self.prune(&action);
            }
        }
    }

    /// After the last record: a run with no end was lost (the process died under it), and
    /// every action is pruned to its bound. Whether that changed what the file says.
    fn end_loading(&mut self) -> bool {
        let mut dirty = false;
        for run in self.runs.values_mut() {
            if run.end.is_none() && !run.lost {
                run.lost = true;
                dirty = true;
            }
        }
        let actions: Vec<String> = self.by_action.keys().cloned().collect();
        for a in actions {
            self.prune(&a);
        }
        dirty
    }

    fn apply(&mut self, rec: Record) {
        match rec {
            Record::NextId(n) => self.next_id = self.next_id.max(n),
            Record::Start {
                id,
                start_ms,
                uid,
                action,
                user,
                key,
                digest,
            } => self.insert(Run {
                id,
                action,
                user,
                key,
                digest,
                uid,
                start_ms,
                end: None,
                lost: false,
                lines: Vec::new(),
            }),
            Record::End {
                id,
                end_ms,
                exit,
                secs,
                mut lines,
            } => {
                self.next_id = self.next_id.max(id.saturating_add(1));
                if let Some(run) = self.runs.get_mut(&id) {
                    let cut = lines.len().saturating_sub(LINES_PER_RUN);
                    lines.drain(..cut);
                    run.end = Some(End { end_ms, exit, secs });
                    run.lost = false;
                    run.lines = lines;
                }
            }
            Record::Tally { action, tally } => {
                self.dropped.entry(action).or_default().merge(&tally)
            }
            Record::Lost(id) => {
                self.next_id = self.next_id.max(id.saturating_add(1));
                if let Some(run) = self.runs.get_mut(&id) {
                    if run.end.is_none() {
                        run.lost = true;
                    }
                }
            }
        }
    }

    fn insert(&mut self, run: Run) {
        self.next_id = self.next_id.max(run.id.saturating_add(1));
        self.remove(run.id);
        if let Some(k) = &run.key {
            self.keys.insert((k.clone(), run.digest.clone()), run.id);
        }
        self.by_action
            .entry(run.action.clone())
            .or_default()
            .insert(run.id);
        self.runs.insert(run.id, run);
    }

    fn remove(&mut self, id: u64) {
        let Some(run) = self.runs.remove(&id) else {
            return;
        };
        if let Some(k) = &run.key {
            let k = (k.clone(), run.digest.clone());
            if self.keys.get(&k) == Some(&id) {
                self.keys.remove(&k);
            }
        }
        if let Some(ids) = self.by_action.get_mut(&run.action) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_action.remove(&run.action);
            }
        }
    }

    /// Removes an ended run for the bounds, keeping it in [`Journal::tallies`].
    fn drop_run(&mut self, id: u64) {
        if let Some(run) = self.runs.get(&id) {
            self.dropped.entry(run.action.clone()).or_default().add(run);
        }
        self.remove(id);
    }

    /// Drops the oldest ended runs of `action` beyond `runs_per_action`, then the oldest
    /// ended runs of any action beyond `max_runs`; running runs always stay. Returns how many
    /// were dropped.
    fn prune(&mut self, action: &str) -> usize {
        let of_action = self.by_action.get(action).map_or(0, |s| s.len());
        if of_action <= self.opts.runs_per_action && self.runs.len() <= self.opts.max_runs {
            return 0;
        }
        let ended: Vec<u64> = self
            .by_action
            .get(action)
            .into_iter()
            .flatten()
            .filter(|id| self.runs.get(id).is_some_and(|r| r.end.is_some() || r.lost))
            .copied()
            .collect();
        let excess = ended.len().saturating_sub(self.opts.runs_per_action);
        for &id in &ended[..excess] {
            self.drop_run(id);
        }
        let mut dropped = excess;
        while self.runs.len() > self.opts.max_runs {
            let oldest = self
                .runs
                .values()
                .find(|r| r.end.is_some() || r.lost)
                .map(|r| r.id);
            let Some(id) = oldest else { break };
            self.drop_run(id);
            dropped += 1;
        }
        dropped
    }

    /// Writes one record: appended (fsync'd when `sync` and the options allow) while the
    /// file is attached; otherwise, when a retry is due, the file is attached again, which
    /// writes all of memory (this record too: it is in memory already). Any failure detaches
    /// the file until the next retry.
    fn write(&mut self, rec: &Record, sync: bool) -> io::Result<()> {
        if self.store.is_none() {
            return self.attach();
        }
        let Some(st) = &mut self.store else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(128);
        record::encode(rec, &mut buf);
        let fsync = self.opts.fsync && sync;
        let written =
            st.file
                .write_all(&buf)
                .and_then(|()| if fsync { st.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                st.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Whatever part of it reached the file, the file is written anew from memory
                // when it can be: appending after a torn record is never needed.
                self.detached(&e);
                Err(e)
            }
        }
    }

    /// The file cannot be written (`e`): memory only until a retry gets through.
    fn detached(&mut self, e: &io::Error) {
        self.store = None;
        if let Some(h) = &mut self.home {
            h.failed_at = Some(Instant::now());
            h.why = describe(e);
        }
    }

    /// Tries the file again, when a retry is due: makes the directory, reads the file when
    /// memory does not hold it yet (what memory has wins; ids only go up), writes it whole
    /// from memory and appends from there.
    fn attach(&mut self) -> io::Result<()> {
        let Some(h) = &self.home else {
            return Err(io::Error::other("the journal is kept in memory only"));
        };
        if let Some(at) = h.failed_at {
            if at.elapsed() < self.opts.retry_every {
                return Err(io::Error::other(format!(
                    "the journal file {} cannot be written ({}); kept in memory",
                    h.path.display(),
                    h.why
                )));
            }
        }
        let (dir, path, loaded) = (h.dir.clone(), h.path.clone(), h.loaded);
        let tried = (|| {
            cfs::private_dir(&dir)?;
            if !loaded {
                self.merge_file(&path)?;
            }
            self.rewrite()
        })();
        match tried {
            Ok(()) => {
                if let Some(h) = &mut self.home {
                    h.loaded = true;
                    h.failed_at = None;
                    h.why.clear();
                }
                Ok(())
            }
            Err(e) => {
                self.detached(&e);
                Err(e)
            }
        }
    }

    /// Reads the file memory does not hold yet into memory: runs memory has (made while the
    /// file was unreachable) win over the file's of the same id.
    fn merge_file(&mut self, path: &Path) -> io::Result<()> {
        let f = match open_journal(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut disk = Journal::in_memory_with(self.opts.clone());
        let mut warnings = Vec::new();
        disk.load(io::BufReader::new(f), path, &mut warnings)?;
        self.next_id = self.next_id.max(disk.next_id);
        for (action, t) in disk.dropped {
            self.dropped.entry(action).or_default().merge(&t);
        }
        for (id, run) in disk.runs {
            if !self.runs.contains_key(&id) {
                self.insert(run);
            }
        }
        let actions: Vec<String> = self.by_action.keys().cloned().collect();
        for a in actions {
            self.prune(&a);
        }
        Ok(())
    }

    /// Writes the whole file anew from memory: the id high-water mark, then each kept run
    /// (its start, and its end or its loss). Atomic: a fresh temporary, fsync'd, renamed
    /// over the journal, then the directory fsync'd; the temporary is removed when anything
    /// fails. Appends go on in the new file.
    fn rewrite(&mut self) -> io::Result<()> {
        let Some(h) = &self.home else {
            return Ok(());
        };
        let path = h.path.clone();
        let durability = if self.opts.fsync {
            Durability::Durable
        } else {
            Durability::Atomic
        };
        let mut len = 0u64;
        cfs::replace_with(&path, 0o600, durability, |f| {
            let mut w = io::BufWriter::with_capacity(64 * 1024, f);
            let mut buf = Vec::with_capacity(1024);
            let mut put = |rec: &Record, w: &mut io::BufWriter<&mut File>| {
                buf.clear();
                record::encode(rec, &mut buf);
                len += buf.len() as u64;
                w.write_all(&buf)
            };
            put(&Record::NextId(self.next_id), &mut w)?;
            let mut dropped: Vec<(&String, &Tally)> = self.dropped.iter().collect();
            dropped.sort_by(|a, b| a.0.cmp(b.0));
            for (action, tally) in dropped {
                put(
                    &Record::Tally {
                        action: action.clone(),
                        tally: *tally,
                    },
                    &mut w,
                )?;
            }
            for run in self.runs.values() {
                put(
                    &Record::Start {
                        id: run.id,
                        start_ms: run.start_ms,
                        uid: run.uid,
                        action: run.action.clone(),
                        user: run.user.clone(),
                        key: run.key.clone(),
                        digest: run.digest.clone(),
                    },
                    &mut w,
                )?;
                if let Some(end) = run.end {
                    put(
                        &Record::End {
                            id: run.id,
                            end_ms: end.end_ms,
                            exit: end.exit,
                            secs: end.secs,
                            lines: run.lines.clone(),
                        },
                        &mut w,
                    )?;
                } else if run.lost {
                    put(&Record::Lost(run.id), &mut w)?;
                }
            }
            w.flush()
        })?;
        let file = match cfs::open_append(&path) {
            Ok(f) => f,
            Err(e) => {
                // renamed already: appending to the old file would write to a removed inode
                self.detached(&e);
                return Err(e);
            }
        };
        self.store = Some(Store {
            file,
            len,
            compact_at: len.saturating_mul(2).max(self.opts.compact_min_bytes),
        });
        Ok(())
    }
}

/// Opens the journal to read (`O_NOFOLLOW`), after a look at what is there: a fifo would
/// block the open (and the listener with it) until someone writes to it.
fn open_journal(path: &Path) -> io::Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
            return Err(io::Error::other("not a regular file"))
        }
        _ => {}
    }
    cfs::open_read(path)
}

/// An I/O error as a log line says it: `ELOOP` is a planted symlink, not followed.
fn describe(e: &io::Error) -> String {
    /// `ELOOP` on Linux: what `O_NOFOLLOW` gives for a symlink.
    const ELOOP: i32 = 40;
    if e.raw_os_error() == Some(ELOOP) {
        return format!("{e} (a symbolic link; not followed)");
    }
    e.to_string()
}

/// Reads the next line of the file into `line` (its length added to `len`) and decodes it:
/// `None` at the end; else whether it was the last line, missing its newline, and the
/// record or why it is damaged. A line longer than any record is skipped whole.
fn read_record(
    r: &mut impl io::BufRead,
    line: &mut Vec<u8>,
    len: &mut u64,
) -> io::Result<Option<(bool, Result<Record, Damage>)>> {
    line.clear();
    let read = (&mut *r)
        .take(MAX_RECORD_BYTES as u64 + 1)
        .read_until(b'\n', line)?;
    if read == 0 {
        return Ok(None);
    }
    *len += read as u64;
    let mut last = line.last() != Some(&b'\n');
    let decoded = if last && line.len() > MAX_RECORD_BYTES {
        // no record is this long: skip to the end of the line, whatever it holds
        let (skipped, newline) = skip_line(r)?;
        *len += skipped;
        last = !newline;
        Err(Damage::Syntax)
    } else {
        if !last {
            line.pop();
        }
        record::decode(line)
    };
    Ok(Some((last, decoded)))
}

/// Consumes `r` up to and with the next newline: (bytes consumed, whether a newline ended it).
fn skip_line(r: &mut impl io::BufRead) -> io::Result<(u64, bool)> {
    let mut n = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((n, false));
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            r.consume(i + 1);
            return Ok((n + i as u64 + 1, true));
        }
        let l = buf.len();
        n += l as u64;
        r.consume(l);
    }
}

impl Run {
    /// Neither ended nor lost.
    pub fn is_running(&self) -> bool {
        self.end.is_none() && !self.lost
    }
}
