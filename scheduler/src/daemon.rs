//! The long-running scheduler: sleep, fire, deliver, reload. The I/O edge around the pure
//! [`crate::planner`], which decides what is due (cursor, clock steps, reloads).
//!
//! One loop owns the schedule and the planner. It sleeps on a realtime timerfd
//! ([`crate::timer`]) until the earliest next fire (never polling), and wakes for three
//! reasons only: a fire is due, the wall clock was stepped, or the directory holding the
//! schedule changed (inotify, via notify).
//!
//! Each fire is delivered by its own task (`deliver`) so deliveries never block one
//! another or the loop. A fire whose line's previous run has not finished is skipped,
//! held until that run ends, or held while that run is cancelled, as the line's
//! `CONCURRENCY=` says; [`crate::concurrency`] decides, this file sends the `cancel ID`
//! and lets a held fire go when its turn comes.
//!
//! Every request is keyed (`@<tag>:<fire time>`, [`crate::state::FireKeys`], the tag a
//! keyed hash under a secret of the state directory, so nobody else can compute a coming
//! fire's key and send it first): a retry, a catch-up of the same fire after a restart, and
//! a re-send after a connection lost between `accepted` and `done` all carry the fire's one
//! key, so the service runs the fire once and answers the repeats with the first run's
//! replies.
//!
//! What a reply means for a fire (wait, retry and why, or its outcome) is decided by the
//! pure [`crate::delivery`]; this file connects, writes the request, feeds it the reply
//! lines and sleeps between attempts. Text from the service is logged with its control
//! characters escaped (`common::text::shown`). A run a killed scheduler left `running` in
//! the record is asked for again at the next start (`resume`), with its key, so the
//! record gets its real outcome without the action running twice.
//!
//! With `BOSUN_METRICS_FILE` and `BOSUN_STATE_DIR` (whose record they are built from) the
//! metrics file, and with `BOSUN_STATUS_HTML` the status page, are rewritten after every
//! outcome, at start and after a reload, by [`crate::outputs`] on a thread of its own; a
//! file that cannot be written is logged and the schedule runs on.
//!
//! A line under `ON_FAILURE=`/`ON_SUCCESS=` has its outcome told to that target by a
//! notification (`notify`), by the rules of [`crate::alert`]: a request like any other,
//! delivered as a fire is, whose own outcome is only logged.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt;
use notify::Watcher;
use proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::alert;
use crate::concurrency::{self, Accepted, Decision, Slot};
use crate::delivery::{Backoff, Delivery, Outcome, Step, Why};
use crate::fanout;
use crate::job::Job;
use crate::outputs::{self, Outputs};
use crate::planner::{self, missed_while_down, Fire, Planner};
use crate::record::{RecordError, Recorder, Run, RunResult};
use crate::schedule::{self, Entry, FileErrors, Schedule, When};
use crate::state::{FireKeys, StateError, StateStore};
use crate::timer::{RealtimeTimer, Wake};
use common::text::shown;

/// Settings of the daemon, from the environment (see [`Config::from_env`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// `BOSUN_RUN_DIR`, default `/run`: where `<service>-request.sock` live.
    pub run_dir: PathBuf,
    /// `BOSUN_RETRY_WINDOW`, default 5 min: how long a missing or refusing socket is retried.
    pub retry_window: Duration,
    /// `BOSUN_STATE_DIR`, default none: enables catch-up of runs missed while down.
    pub state_dir: Option<PathBuf>,
    /// `BOSUN_CATCHUP_WINDOW`, default 24 h: how old a missed run may be to be caught up.
    pub catchup_window: Duration,
    /// Zone of lines before any `CRON_TZ=` (`$TZ`, else UTC).
    pub default_zone: Tz,
    /// `BOSUN_METRICS_FILE`, default none: the schedule's metrics, for node_exporter's
    /// textfile collector. Needs `state_dir`.
    pub metrics_file: Option<PathBuf>,
    /// `BOSUN_STATUS_HTML`, default none: the status page (`scheduler status --html`),
    /// rewritten after every outcome. Needs `state_dir`.
    pub status_html: Option<PathBuf>,
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{var}: {source}")]
    BadDuration {
        var: &'static str,
        source: common::duration::DurationError,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Schedule(#[from] FileErrors),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("watching {} for edits: {source}", path.display())]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("{doing}: {source}")]
    Io {
        doing: &'static str,
        source: std::io::Error,
    },
}

impl Config {
    /// Reads the settings; the file comes from the command line.
    pub fn from_env(file: PathBuf) -> Result<Config, DaemonError> {
        use common::settings::scheduler::SchedulerEnv;
        use common::settings::{Origin, ProblemKind, ValueError};
        let env = SchedulerEnv::from_lookup(&|k| std::env::var(k).ok()).map_err(|problems| {
            // Paths take any text: only a window can be wrong, and the first is reported.
            match problems.0.first().map(|p| (&p.origin, &p.kind)) {
                Some((Some(Origin::Env(var)), ProblemKind::Value(ValueError::Duration(e)))) => {
                    DaemonError::BadDuration {
                        var,
                        source: e.clone(),
                    }
                }
                _ => DaemonError::Io {
                    doing: "reading the environment",
                    source: std::io::Error::other(problems.to_string()),
                },
            }
        })?;
        Ok(Config {
            file,
            run_dir: env.run_dir,
            retry_window: env.retry_window,
            state_dir: env.state_dir,
            catchup_window: env.catchup_window,
            default_zone: schedule::default_zone(),
            metrics_file: env.metrics_file,
            status_html: env.status_html,
        })
    }
}

/// Reads and parses the schedule file.
pub fn load(path: &Path, zone: Tz) -> Result<(Vec<u8>, Schedule), DaemonError> {
    let bytes = std::fs::read(path).map_err(|source| DaemonError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let schedule = schedule::parse(&path.display().to_string(), &bytes, zone)?;
    Ok((bytes, schedule))
}

/// Shared by the loop and the delivery tasks.
struct Shared {
    run_dir: PathBuf,
    retry_window: Duration,
    cancel: CancellationToken,
    /// The lines' (and instances') runs going and fires held (`CONCURRENCY=`).
    slots: Mutex<Slots>,
    runs: AtomicU64,
    /// Where fires are recorded (`BOSUN_STATE_DIR`), for catch-up.
    store: Option<StateStore>,
    /// The record of every run (`BOSUN_STATE_DIR`), for `scheduler status`.
    recorder: Option<Recorder>,
    /// The schedule file, as the record names it.
    file: String,
    /// Where deliveries and notifications are spawned, so that shutdown waits for them.
    tracker: TaskTracker,
    /// The metrics file and the status page, when asked for and there is a record.
    outputs: Option<Outputs>,
    /// Makes the fire keys (secret: a key cannot be guessed by others).
    keys: FireKeys,
}

impl Shared {
    /// Records `at` as the last handled fire of `key`, when there is a state dir.
    fn record(&self, key: &str, at: DateTime<Utc>) {
        if let Some(store) = &self.store {
            if let Err(err) = store.record(key, at) {
                warn!(error = %err, "cannot record the fire");
            }
        }
    }

    /// The next number of the daemon's run counter, for the log.
    fn next_run(&self) -> u64 {
        self.runs.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A fire of `slot` under `policy`, as run `run`: its [`Turn`], or why it is skipped
    /// ([`concurrency::Table::fire`]).
    fn take_slot(
        &self,
        slot: &Slot,
        policy: concurrency::Policy,
        run: u64,
    ) -> Result<Turn, concurrency::Skip> {
        let mut slots = self.slots();
        match slots.table.fire(slot, policy, run, now_ms()) {
            Decision::Skip(why) => Err(why),
            Decision::Run => Ok(Turn { held: None }),
            held => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                slots.turns.insert(run, tx);
                Ok(Turn {
                    held: Some((rx, held)),
                })
            }
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The delivery of run `run` of `slot` is over (or a held fire was given up): the fire
    /// held behind it, if any, goes now.
    fn end_run(&self, slot: &Slot, run: u64) {
        let mut slots = self.slots();
        slots.turns.remove(&run);
        if let Some(h) = slots.table.end(slot, run, now_ms()) {
            if let Some(turn) = slots.turns.remove(&h.run) {
                info!(
                    run = h.run,
                    after = run,
                    held_ms = h.held_ms,
                    "held fire goes: the previous run of its line has ended"
                );
                let _ = turn.send(());
            }
        }
    }
}

/// The concurrency table, and how each held fire is told its turn.
#[derive(Default)]
struct Slots {
    table: concurrency::Table,
    turns: HashMap<u64, tokio::sync::oneshot::Sender<()>>,
}

/// Now, in milliseconds since the epoch, as [`concurrency::Table`] counts.
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// How long a `cancel ID` of `CONCURRENCY=replace` may take to be answered (the service
/// answers once the run has ended: TERM, KILL after its grace).
const CANCEL_WAIT: Duration = Duration::from_secs(120);

/// After a change in the directory, wait for this much quiet before reading the file.
const SETTLE: Duration = Duration::from_millis(100);
/// How long in-flight deliveries get to finish their current step on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the state directory gives the daemon: the catch-up state, the record and the
/// fire-key secret (made afresh without a directory).
fn open_state(
    config: &Config,
) -> Result<(Option<StateStore>, Option<Recorder>, FireKeys), DaemonError> {
    let Some(dir) = &config.state_dir else {
        let keys = FireKeys::random().map_err(|source| DaemonError::Io {
            doing: "making the fire key secret from /dev/urandom",
            source,
        })?;
        return Ok((None, None, keys));
    };
    let store = StateStore::open(dir)?;
    let recorder = Recorder::open(dir)?;
    Ok((Some(store), Some(recorder), FireKeys::open(dir)?))
}

/// Starts the writer of the metrics file and the status page, when there is a record to
/// build them from.
fn start_outputs(
    config: &Config,
    file: &str,
    schedule: &Schedule,
) -> Result<Option<Outputs>, DaemonError> {
    let paths = outputs::Paths {
        metrics: config.metrics_file.clone(),
        page: config.status_html.clone(),
    };
    let Some(dir) = &config.state_dir else {
        for (var, path) in [
            ("BOSUN_METRICS_FILE", &paths.metrics),
            ("BOSUN_STATUS_HTML", &paths.page),
        ] {
            if let Some(path) = path {
                warn!(file = %path.display(), "{var} is set but BOSUN_STATE_DIR is not: it is not written (it is built from the run record)");
            }
        }
        return Ok(None);
    };
    Outputs::start(paths, file.to_string(), dir, schedule).map_err(|source| DaemonError::Io {
        doing: "starting the thread that writes the reports",
        source,
    })
}

/// Runs until `shutdown` completes. Fails only at start (unreadable or invalid schedule,
/// unusable state directory, no inotify); later problems are logged and survived.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let (mut bytes, mut schedule) = load(&config.file, config.default_zone)?;
    let (store, recorder, keys) = open_state(&config)?;
    let (tx, mut changes) = mpsc::channel::<()>(1);
    let (mut watcher, dir) = watch(&config.file, tx)?;
    let mut timer = RealtimeTimer::new().map_err(|source| DaemonError::Io {
        doing: "creating the timerfd",
        source,
    })?;
    let file = config.file.display().to_string();
    let outputs = start_outputs(&config, &file, &schedule)?;
    let shared = Arc::new(Shared {
        run_dir: config.run_dir.clone(),
        retry_window: config.retry_window,
        cancel: CancellationToken::new(),
        slots: Mutex::new(Slots::default()),
        runs: AtomicU64::new(0),
        store,
        recorder,
        file,
        tracker: TaskTracker::new(),
        outputs,
        keys,
    });
    // To the millisecond, as the record keeps times: an @reboot fire's time in memory and
    // in the record is then the same, and the reports (which read the record at start,
    // possibly after the fire's first record, and get its outcomes too) fold it into one
    // run, not two.
    let start = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
    info!(
        file = %config.file.display(),
        entries = schedule.entries.len(),
        run_dir = %config.run_dir.display(),
        "started"
    );
    boot(&shared, &schedule, start, config.catchup_window);
    // A fire the clock jumped past (suspend, NTP step) still runs within the catch-up
    // window; never less than a minute, so that a late wake-up is not taken for a jump.
    let window = chrono::Duration::from_std(config.catchup_window)
        .unwrap_or(chrono::TimeDelta::MAX)
        .max(chrono::Duration::minutes(1));
    let mut planner = Planner::new(&schedule, start);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            wake = sleep_until(&mut timer, planner.due()) => {
                on_wake(&shared, &mut planner, &schedule, wake, window);
            }
            Some(()) = changes.recv() => {
                settle(&mut changes).await;
                // A replaced directory (a new mount of conf/) loses its inotify watch: the
                // parent's watch told us, so watch the new one. Harmless when unchanged.
                let _ = watcher.watch(&dir, notify::RecursiveMode::NonRecursive);
                reload(&shared, &config, &mut bytes, &mut schedule, &mut planner);
            }
        }
    }
    stop(&shared).await;
    Ok(())
}

/// At start: the `@reboot` lines fire, and with a state directory the runs missed while
/// down are caught up and the runs left running are resumed.
fn boot(shared: &Arc<Shared>, schedule: &Schedule, start: DateTime<Utc>, window: Duration) {
    for e in &schedule.entries {
        if e.when == When::Reboot {
            fire(shared, e, start, "reboot", None);
        }
    }
    if let Some(store) = &shared.store {
        let caught = catch_up(shared, store, schedule, start, window);
        resume(shared, schedule, start, window, &caught);
    }
}

/// The timer woke: fires what the planner says is due.
fn on_wake(
    shared: &Arc<Shared>,
    planner: &mut Planner,
    schedule: &Schedule,
    wake: Wake,
    window: chrono::TimeDelta,
) {
    let now = Utc::now();
    if wake == Wake::ClockChanged {
        info!(now = %rfc3339(now), "wall clock was set");
    }
    let fires = match planner.wake(schedule, now, window) {
        planner::Outcome::SteppedBack { from } => {
            warn!(from = %rfc3339(from), to = %rfc3339(now), "wall clock stepped back more than an hour; planning from the new time");
            return;
        }
        planner::Outcome::Fires(fires) => fires,
    };
    for f in fires {
        match f {
            Fire::Run { index, due } => {
                let e = &schedule.entries[index];
                let late = now - due;
                if late > chrono::Duration::seconds(2) {
                    warn!(line = e.line, due = %rfc3339(due), late_secs = late.num_seconds(), "late fire (clock jump or suspend); runs once");
                }
                fire(shared, e, due, "schedule", Some(due));
            }
            Fire::Missed { index, due } => {
                missed_by_clock(shared, &schedule.entries[index], due);
            }
        }
    }
}

/// The schedule's directory changed: reads the file again and, when it changed and
/// parses, plans from it; else the previous schedule keeps running.
fn reload(
    shared: &Shared,
    config: &Config,
    bytes: &mut Vec<u8>,
    schedule: &mut Schedule,
    planner: &mut Planner,
) {
    match load(&config.file, config.default_zone) {
        Ok((new_bytes, _)) if new_bytes == *bytes => {}
        Ok((new_bytes, new_schedule)) => {
            *bytes = new_bytes;
            let now = Utc::now();
            planner.reload(schedule, &new_schedule, now);
            *schedule = new_schedule;
            if let Some(o) = &shared.outputs {
                o.set_schedule(schedule);
            }
            if let Some(store) = &shared.store {
                baseline(store, schedule, now);
            }
            let first = planner.due().map(rfc3339);
            info!(entries = schedule.entries.len(), next = %first.as_deref().unwrap_or("none"), "schedule reloaded");
        }
        Err(DaemonError::Schedule(errors)) => {
            for line in errors.to_string().lines() {
                error!("{line}");
            }
            warn!(
                errors = errors.errors.len(),
                "schedule not reloaded; the previous one keeps running"
            );
        }
        Err(err) => warn!(error = %err, "schedule not reloaded; the previous one keeps running"),
    }
}

/// Stops the deliveries at their next step and waits for them, up to a grace period.
async fn stop(shared: &Shared) {
    let tracker = &shared.tracker;
    info!(in_flight = tracker.len(), "stopping");
    shared.cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            in_flight = tracker.len(),
            "deliveries still running at exit"
        );
    }
    info!("stopped");
}

/// An instant in a log field: to the millisecond, as fire times are kept.
fn rfc3339(t: DateTime<Utc>) -> String {
    common::time::rfc3339_ms(t.timestamp_millis())
}

/// Whether an inotify event only reports a read (ours included), not a change.
fn is_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

/// Records `now` for every line the store does not know yet, so that an outage is
/// measured from when the line was first scheduled.
fn baseline(store: &StateStore, schedule: &Schedule, now: DateTime<Utc>) {
    for e in &schedule.entries {
        if e.when != When::Reboot && store.last(&e.key()).is_none() {
            if let Err(err) = store.record(&e.key(), now) {
                warn!(error = %err, "cannot record the fire");
            }
        }
    }
}

/// Sleeps on the timer until `due`, or forever when nothing is planned. Timer errors are
/// logged and retried after a second rather than ending the daemon.
async fn sleep_until(timer: &mut RealtimeTimer, due: Option<DateTime<Utc>>) -> Wake {
    let Some(due) = due else {
        return std::future::pending().await;
    };
    match timer.sleep_until(due).await {
        Ok(w) => w,
        Err(err) => {
            error!(error = %err, "timerfd failed; retrying in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            Wake::Expired
        }
    }
}

/// Swallows the burst of events an editor's save makes, up to a second.
async fn settle(changes: &mut mpsc::Receiver<()>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(())) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + SETTLE),
        changes.recv(),
    )
    .await
    {}
}

/// Watches the directory that holds `file`: editors replace the file by renaming a new
/// one over it, and a mounted `conf/` directory can have its whole content swapped, both of
/// which a watch on the file itself would lose. Its parent is watched too, so that a
/// directory removed and made again is noticed (and watched again by the loop).
fn watch(
    file: &Path,
    tx: mpsc::Sender<()>,
) -> Result<(notify::RecommendedWatcher, PathBuf), DaemonError> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let err = |source| DaemonError::Watch {
        path: dir.clone(),
        source,
    };
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            // Our own reads show up as opens: ignore them, or every reload would cause one.
            Ok(ev) if is_read(&ev.kind) => {}
            // A full channel already holds a pending change; that is enough.
            _ => {
                let _ = tx.try_send(());
            }
        }
    })
    .map_err(err)?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(err)?;
    if let Some(parent) = std::fs::canonicalize(&dir)
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf))
    {
        let _ = watcher.watch(&parent, notify::RecursiveMode::NonRecursive);
    }
    Ok((watcher, dir))
}

/// At start: every line whose last recorded fire is followed by a fire that was missed
/// while we were down (within the window) runs once now. Lines never seen before get a
/// record of now, so that a later outage is measured from here. Returns the fire keys sent.
fn catch_up(
    shared: &Arc<Shared>,
    store: &StateStore,
    schedule: &Schedule,
    now: DateTime<Utc>,
    window: Duration,
) -> HashSet<String> {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
    let mut caught = HashSet::new();
    for e in &schedule.entries {
        if e.when == When::Reboot {
            continue;
        }
        let key = e.key();
        let Some(last) = store.last(&key) else {
            continue;
        };
        if let Some(missed) = missed_while_down(e, last, now, window) {
            info!(line = e.line, service = %e.service, action = %e.action, missed = %rfc3339(missed), last = %rfc3339(last), "catching up a run missed while down");
            fire(shared, e, missed, "catch-up", Some(now));
            caught.insert(shared.keys.fire(&key, missed));
        }
    }
    baseline(store, schedule, now);
    caught
}

/// At start, for every line: its last outcome is told again ([`alert::retell`]), and
/// every run the record still shows `running` (a scheduler killed between the service's
/// `accepted` and its `done`), fired within the window, is asked for again with its own
/// key. The keyed service runs nothing new: it answers with that run's `accepted` and,
/// when the run has ended or once it ends, its `done`, which the record then gets. Fires
/// in `caught` are being sent by the catch-up already, with the same key.
fn resume(
    shared: &Arc<Shared>,
    schedule: &Schedule,
    now: DateTime<Utc>,
    window: Duration,
    caught: &HashSet<String>,
) {
    let Some(recorder) = &shared.recorder else {
        return;
    };
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
    for e in &schedule.entries {
        let runs = match recorder.runs(&e.key()) {
            Ok(contents) => contents.runs,
            Err(err) => {
                warn!(line = e.line, error = %err, "cannot read the run record; runs left running are not resumed");
                continue;
            }
        };
        // A scheduler killed between recording an outcome and delivering its notification
        // would otherwise never tell it; the target runs a key once. Per instance for an
        // `@each` line.
        let each = e.dest().pick == proto::Pick::Each;
        let instance = |r: &Run| each.then(|| fanout::instance_of(&r.service)).flatten();
        for (_, group) in fanout::groups(&e.service, runs.clone()) {
            if let Some(r) = group.last() {
                let job = Job::leg(&shared.keys, 0, e, r.fire, instance(r));
                if alert::retell(&job, r, now, window) {
                    notify(shared, &job, &alert::outcome_of(r));
                }
            }
        }
        for r in runs {
            let fire_key = shared.keys.fire(&e.key(), r.fire);
            if r.result == RunResult::Running
                && now - r.fire <= window
                && !caught.contains(&fire_key)
            {
                resume_run(shared, e, &r, instance(&r));
            }
        }
    }
}

/// Asks for the run `r` of line `e`, left running, again with its key.
fn resume_run(shared: &Arc<Shared>, e: &Entry, r: &Run, instance: Option<u32>) {
    let run = shared.next_run();
    let job = Job::leg(&shared.keys, run, e, r.fire, instance);
    if job.key != r.key {
        return;
    }
    info!(run, line = e.line, service = %job.service, request = %e.request(None), key = %job.key, due = %rfc3339(r.fire), id = r.id, reason = "resume", "request");
    // The run holds its line's slot, as it would have before the restart, unless a
    // catch-up of a later fire already does.
    let slot = Slot::new(e.key(), instance);
    // Where a replacement's `cancel ID` goes: that instance's own socket (ids are per
    // instance); a `php` run's replica is told by its `accepted` once asked again.
    let accepted = r.id.and_then(|id| {
        let t = proto::Target::parse(&job.service).ok()?;
        (t.pick != proto::Pick::Any).then(|| Accepted {
            id,
            socket: fanout::first_path(&shared.run_dir, &t),
        })
    });
    let took = shared.slots().table.resume(&slot, run, accepted, now_ms());
    let guard = took.then(|| RunningGuard {
        shared: shared.clone(),
        slot,
        run,
    });
    let shared2 = shared.clone();
    let id = r.id;
    shared.tracker.spawn(async move {
        let _guard = guard;
        deliver(&shared2, &job, None, id).await;
    });
}

/// Gives a line's slot up when its delivery ends (or withdraws a held fire), however it
/// ends; the fire held behind it goes then.
struct RunningGuard {
    shared: Arc<Shared>,
    slot: Slot,
    run: u64,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.shared.end_run(&self.slot, self.run);
    }
}

/// Run `job` was accepted as `id` on `socket`: a replacement held behind it has it
/// cancelled now.
fn on_accepted(shared: &Arc<Shared>, job: &Job, id: u64, socket: &Path) {
    if job.notice {
        return;
    }
    let slot = Slot::new(job.line_key.clone(), job.instance);
    // `cancel ID` must reach the replica that accepted the run (ids are per instance):
    // for `php`, the instance socket the shared name led to, never the shared name.
    let t = proto::Target::parse(&job.service).unwrap_or_else(|_| proto::Target::any(&job.service));
    let socket = match t.pick {
        proto::Pick::Any => {
            match proto::target::instance_of_path(&shared.run_dir, &t.service, socket) {
                Some(n) => fanout::first_path(&shared.run_dir, &t.at(n)),
                None => socket.to_path_buf(),
            }
        }
        _ => socket.to_path_buf(),
    };
    let accepted = Accepted { id, socket };
    let cancel = shared.slots().table.accepted(&slot, job.run, accepted);
    if let Some(a) = cancel {
        spawn_cancel(shared, job, a);
    }
}

/// `CONCURRENCY=replace`: sends `cancel ID` for the running run `a` of `job`'s line, on
/// its own task; the run's delivery gets its `done` (exit 143) and ends, and the held fire
/// goes then. The reply is only logged.
fn spawn_cancel(shared: &Arc<Shared>, job: &Job, a: Accepted) {
    let (run, service) = (job.run, job.service.clone());
    info!(run, service = %service, id = a.id, "replace: cancelling the running run of this line");
    shared.tracker.spawn(async move {
        let asked = tokio::time::timeout(CANCEL_WAIT, async {
            let mut stream = UnixStream::connect(&a.socket).await?;
            stream
                .write_all(format!("cancel {}\n", a.id).as_bytes())
                .await?;
            let mut lines = FramedRead::new(stream, LinesCodec::new_with_max_length(4096));
            let mut got = Vec::new();
            while let Some(line) = lines.next().await {
                got.push(line.map_err(std::io::Error::other)?);
            }
            Ok::<_, std::io::Error>(got.join(" / "))
        })
        .await;
        match asked {
            Ok(Ok(reply)) if reply.starts_with("cancelled ") => {
                info!(run, service = %service, id = a.id, reply = %shown(&reply), "cancel answered")
            }
            // `error not-found`: it ended meanwhile; anything else: it goes on to its end.
            Ok(Ok(reply)) => {
                warn!(run, service = %service, id = a.id, reply = %shown(&reply), "cancel refused; the held fire waits for the run's end")
            }
            Ok(Err(err)) => {
                warn!(run, service = %service, id = a.id, error = %err, "cancel not delivered; the held fire waits for the run's end")
            }
            Err(_) => {
                warn!(run, service = %service, id = a.id, waited_secs = CANCEL_WAIT.as_secs(), "cancel not answered; the held fire waits for the run's end")
            }
        }
    });
}

/// Writes one outcome of `job` to the record, when there is a state directory (a write
/// that fails is logged, never fatal), and tells the line's `ON_FAILURE=`/`ON_SUCCESS=`
/// target of a final one. A notification's own outcome goes nowhere: it is logged only.
fn note(shared: &Arc<Shared>, job: &Job, outcome: &Outcome) {
    if !alert::is_told(job) {
        return;
    }
    record_run(shared, job, outcome);
    // Recorded first: whoever the notification reaches finds the run in the record.
    notify(shared, job, outcome);
}

fn record_run(shared: &Shared, job: &Job, outcome: &Outcome) {
    let Some(recorder) = &shared.recorder else {
        return;
    };
    let run = Run {
        key: job.key.clone(),
        fire: job.due,
        at: Utc::now(),
        file: shared.file.clone(),
        line: job.line,
        service: job.service.clone(),
        action: job.action.clone(),
        user: job.user.clone(),
        result: outcome.result,
        exit: outcome.exit,
        secs: outcome.secs,
        id: outcome.id,
    };
    let report = |path: &Path, damaged: usize| {
        warn!(file = %path.display(), damaged, "damaged records in the run record; skipped");
    };
    if let Err(err) = recorder.append(&job.line_key, &run, report) {
        warn!(error = %err, "cannot record the run");
    }
    if let Some(o) = &shared.outputs {
        o.outcome(&job.line_key, &run);
    }
}

/// Sends the notification of `job`'s outcome ([`alert::notice`]), if it has one.
fn notify(shared: &Arc<Shared>, job: &Job, outcome: &Outcome) {
    let Some(mut notice) = alert::notice(job, outcome, 0) else {
        return;
    };
    notice.run = shared.next_run();
    info!(run = notice.run, line = job.line, of_run = job.run, service = %notice.service, request = %notice.unkeyed(), key = %notice.key, result = outcome.result.as_str(), "notify");
    let shared2 = shared.clone();
    shared.tracker.spawn(async move {
        deliver(&shared2, &notice, None, None).await;
    });
}

/// Logs and records a fire the clock jumped past by more than the catch-up window.
fn missed_by_clock(shared: &Arc<Shared>, e: &Entry, due: DateTime<Utc>) {
    let job = Job::new(&shared.keys, 0, e, due);
    note(shared, &job, &Outcome::of(RunResult::Missed, None));
    warn!(line = e.line, service = %e.service, action = %e.action, due = %rfc3339(due), "missed: the clock jumped past it by more than the catch-up window");
    shared.record(&e.key(), due);
}

/// Starts the delivery of one fire, unless the previous run of the same line is still going.
/// `record`: what to record as the line's last fire once the service has answered the
/// request (or it is given up on), not before: a scheduler killed before that point leaves
/// the record as it was, and its next start catches the fire up. So a fire is never lost to
/// a kill; when a kill lands between the request and the record, the catch-up sends the
/// same fire key again, and the service runs it once.
///
/// A fire of a `php@each` line is one delivery per instance listed at fire time
/// ([`crate::fanout`]), each with its own key, slot and record; the line's fire is handed
/// once every one is.
fn fire(
    shared: &Arc<Shared>,
    e: &Entry,
    due: DateTime<Utc>,
    reason: &'static str,
    record: Option<DateTime<Utc>>,
) {
    let dest = e.dest();
    let listed: Vec<u32> = if dest.pick == proto::Pick::Each {
        match proto::target::instance_sockets(&shared.run_dir, &dest.service) {
            Ok(found) => found.into_iter().map(|(n, _)| n).collect(),
            Err(err) => {
                warn!(line = e.line, service = %e.service, error = %err, "cannot list the instance sockets");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let legs = fanout::legs(&dest, &listed);
    if legs.is_empty() {
        let job = Job::new(&shared.keys, 0, e, due);
        note(shared, &job, &Outcome::of(RunResult::Missed, None));
        warn!(line = e.line, service = %e.service, action = %e.action, due = %rfc3339(due), dir = %proto::target::instance_dir(&shared.run_dir, &dest.service).display(), "missed: no instance socket of the service at fire time");
        if let Some(at) = record {
            shared.record(&e.key(), at);
        }
        return;
    }
    let handed = record.map(|at| {
        Arc::new(LineFire {
            key: e.key(),
            at,
            left: fanout::Countdown::new(legs.len()),
            sent: std::sync::atomic::AtomicBool::new(false),
        })
    });
    for leg in legs {
        fire_leg(shared, e, due, reason, leg.instance, handed.clone());
    }
}

/// One delivery of a fire ([`fire`]): the line's, or one instance's of an `@each` fan-out.
fn fire_leg(
    shared: &Arc<Shared>,
    e: &Entry,
    due: DateTime<Utc>,
    reason: &'static str,
    instance: Option<u32>,
    handed: Option<Arc<LineFire>>,
) {
    let slot = Slot::new(e.key(), instance);
    let run = shared.next_run();
    let turn = match shared.take_slot(&slot, e.options.concurrency, run) {
        Ok(turn) => turn,
        Err(why) => {
            let job = Job::leg(&shared.keys, 0, e, due, instance);
            note(shared, &job, &Outcome::of(RunResult::Skipped, None));
            warn!(line = e.line, service = %job.service, request = %e.request(None), key = %job.key, due = %rfc3339(due), why = %why, "skipped: the previous run of this line has not finished");
            // Counts as handed, but a fire whose every leg was skipped is not recorded (as
            // for a line of one target: the run that holds the slot records its own fire).
            if let Some(f) = handed {
                if f.left.hand() && f.sent.load(Ordering::Acquire) {
                    shared.record(&f.key, f.at);
                }
            }
            return;
        }
    };
    let job = Job::leg(&shared.keys, run, e, due, instance);
    let late_ms = (Utc::now() - due).num_milliseconds().max(0);
    info!(run, line = e.line, service = %job.service, request = %e.request(None), key = %job.key, due = %rfc3339(due), late_ms, reason = %reason, "request");
    let guard = RunningGuard {
        shared: shared.clone(),
        slot,
        run,
    };
    let shared2 = shared.clone();
    shared.tracker.spawn(async move {
        let _guard = guard;
        if !turn.wait(&shared2, &job).await {
            return;
        }
        deliver(&shared2, &job, handed, None).await;
    });
}

/// A fire's turn on its slot ([`Shared::take_slot`]): at once, or once the run before it
/// has ended (`CONCURRENCY=queue`, and `replace`, which has that run cancelled first).
struct Turn {
    held: Option<(tokio::sync::oneshot::Receiver<()>, Decision)>,
}

impl Turn {
    /// Waits for the turn; `false` when the scheduler stops first (the fire is then not
    /// recorded as handled, and the next start catches it up).
    async fn wait(self, shared: &Arc<Shared>, job: &Job) -> bool {
        let Some((turn, decision)) = self.held else {
            return true;
        };
        let (run, line) = (job.run, job.line);
        match decision {
            Decision::Replace { cancel } => {
                info!(
                    run,
                    line,
                    "held: the previous run of this line is cancelled first (CONCURRENCY=replace)"
                );
                if let Some(a) = cancel {
                    spawn_cancel(shared, job, a);
                }
            }
            _ => info!(
                run,
                line, "queued: runs when the previous run of this line ends (CONCURRENCY=queue)"
            ),
        }
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => {
                warn!(run, service = %job.service, request = %job.request, "not delivered: the scheduler is stopping while the fire was held");
                false
            }
            _ = turn => true,
        }
    }
}

/// A fire to record as its line's last once all its deliveries are handed.
struct LineFire {
    key: String,
    at: DateTime<Utc>,
    left: fanout::Countdown,
    /// Whether a leg reached its service (not all were skipped).
    sent: std::sync::atomic::AtomicBool,
}

/// Marks a fire handled (records it as its line's last fire) once: when the service has
/// the request, or the fire is given up on.
struct Handed<'a> {
    shared: &'a Shared,
    record: Option<Arc<LineFire>>,
    done: bool,
}

impl Handed<'_> {
    fn mark(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            if let Some(f) = &self.record {
                f.sent.store(true, Ordering::Release);
                if f.left.hand() {
                    self.shared.record(&f.key, f.at);
                }
            }
        }
    }
}

/// Sends one request and logs and records its outcome, by the rules of
/// [`crate::delivery`], retrying with its [`Backoff`] for the retry window. Records
/// `record` (key, time) as the line's last fire once the service has the request, or the
/// run is given up on; a request not delivered because the scheduler is stopping is left
/// unrecorded, for the next start to catch up. `accepted`: the service's run id when the
/// fire is known to have been accepted before (a resumed run).
async fn deliver(
    shared: &Arc<Shared>,
    job: &Job,
    record: Option<Arc<LineFire>>,
    accepted: Option<u64>,
) {
    let mut handed = Handed {
        shared,
        record,
        done: false,
    };
    let mut target =
        proto::Target::parse(&job.service).unwrap_or_else(|_| proto::Target::any(&job.service));
    let path = fanout::first_path(&shared.run_dir, &target);
    let mut delivery = Delivery::new(&job.action, job.notice, accepted);
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(shared.retry_window);
    loop {
        let Some(error) = attempt(shared, job, &mut target, &mut handed, &mut delivery).await
        else {
            return;
        };
        let first = backoff.is_first();
        let waited = started.elapsed();
        let Some(pause) = backoff.pause(waited) else {
            let (outcome, why) = delivery.on_timeout(error, waited);
            finish(shared, job, &mut handed, &outcome, &why, &path);
            return;
        };
        if first {
            warn!(run = job.run, service = %job.service, socket = %path.display(), error = %error, "target unavailable; retrying");
        }
        tokio::select! {
            () = shared.cancel.cancelled() => {
                warn!(run = job.run, service = %job.service, request = %job.request, "not delivered: the scheduler is stopping");
                return;
            }
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One connection: sends the request and feeds the replies to `delivery` until it decides.
/// Returns why to ask again, or `None` when the delivery is over.
async fn attempt(
    shared: &Arc<Shared>,
    job: &Job,
    target: &mut proto::Target,
    handed: &mut Handed<'_>,
    delivery: &mut Delivery,
) -> Option<String> {
    let (mut stream, path) = match connect(&shared.run_dir, target).await {
        Ok(s) => s,
        Err(err) => return Some(err),
    };
    let path = path.as_path();
    // `php` reached through the shared name: which replica that is. Once it has accepted
    // the run, asking again goes to that replica only, whose journal knows the key (the
    // shared name may lead to another by then, which would run it again).
    let reached = (target.pick == proto::Pick::Any)
        .then(|| proto::target::instance_of_path(&shared.run_dir, &target.service, path))
        .flatten();
    // Finish this step even when stopping: a request is sent whole or not at all.
    if let Err(err) = stream
        .write_all(format!("{}\n", job.request).as_bytes())
        .await
    {
        return Some(format!("cannot send the request: {err}"));
    }
    let mut lines = FramedRead::new(stream, LinesCodec::new_with_max_length(64 * 1024));
    delivery.connected();
    loop {
        let (step, reply) = tokio::select! {
            () = shared.cancel.cancelled() => {
                // The request is in the service's socket: it will be served.
                info!(run = job.run, service = %job.service, id = delivery.id(), "scheduler stopping; the action goes on in the service");
                handed.mark();
                return None;
            }
            item = lines.next() => match item {
                None => (delivery.on_closed(), None),
                Some(Ok(line)) => {
                    let reply = Reply::parse(&line);
                    (delivery.on_line(&reply), Some(reply))
                }
                // A connection reset (the replica died under the request) is a connection
                // closed: asked again with the same key, which runs the fire at most once.
                Some(Err(tokio_util::codec::LinesCodecError::Io(err))) if is_reset(&err) => {
                    (delivery.on_closed(), None)
                }
                Some(Err(err)) => (delivery.on_read_error(&err.to_string()), None),
            },
        };
        match act(shared, job, handed, step, path) {
            // Logged once recorded: whoever sees `accepted` in the log finds it recorded.
            Next::Read => {
                shown_reply(job, reply.as_ref());
                pin(job, target, reached, delivery);
            }
            Next::Retry(why) => return Some(why),
            Next::Over => return None,
        }
    }
}

/// Whether a read failed because the peer went away (as a closed connection), not because
/// of what it sent.
fn is_reset(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Connects to `target`'s socket: `php.2` to that instance's; `php` to the shared one,
/// or, when it is missing or refuses, to the first instance socket that answers.
async fn connect(run_dir: &Path, target: &proto::Target) -> Result<(UnixStream, PathBuf), String> {
    let first = fanout::first_path(run_dir, target);
    let err = match UnixStream::connect(&first).await {
        Ok(s) => return Ok((s, first)),
        Err(err) => err.to_string(),
    };
    if target.pick == proto::Pick::Any {
        let sockets = proto::target::instance_sockets(run_dir, &target.service).unwrap_or_default();
        for (_, p) in sockets {
            if let Ok(s) = UnixStream::connect(&p).await {
                return Ok((s, p));
            }
        }
    }
    Err(err)
}

/// Once a `php` run is accepted by the replica `reached` through the shared name, it is
/// asked again (after a lost connection) at that replica's own socket only.
fn pin(job: &Job, target: &mut proto::Target, reached: Option<u32>, delivery: &Delivery) {
    if let (Some(n), Some(_), proto::Pick::Any) = (reached, delivery.accepted(), target.pick) {
        info!(run = job.run, service = %job.service, instance = n, "pinned: asked again at this instance only");
        *target = target.at(n);
    }
}

/// What [`attempt`] does after a step.
enum Next {
    Read,
    Retry(String),
    Over,
}

/// Carries out one step of the delivery: records, marks, finishes.
fn act(shared: &Arc<Shared>, job: &Job, handed: &mut Handed<'_>, step: Step, path: &Path) -> Next {
    match step {
        Step::Wait => Next::Read,
        Step::Running(id) => {
            note(shared, job, &Outcome::of(RunResult::Running, Some(id)));
            on_accepted(shared, job, id, path);
            Next::Read
        }
        Step::Handed { running, then } => {
            // A run is recorded `running` before the fire is marked handled: a kill in
            // between leaves a run the next start resumes, never a fire run and missing
            // from the record.
            if let Some(id) = running {
                note(shared, job, &Outcome::of(RunResult::Running, Some(id)));
                on_accepted(shared, job, id, path);
            }
            handed.mark();
            act(shared, job, handed, *then, path)
        }
        Step::Retry(why) => Next::Retry(why),
        Step::Over(outcome, why) => {
            finish(shared, job, handed, &outcome, &why, path);
            Next::Over
        }
    }
}

/// Logs a reply that does not end the delivery: `accepted`, a line of text.
fn shown_reply(job: &Job, reply: Option<&Reply>) {
    match reply {
        Some(Reply::Accepted { id, action }) => {
            info!(run = job.run, service = %job.service, id, action = %shown(action), "accepted");
        }
        Some(Reply::Text(text)) => {
            info!(run = job.run, service = %job.service, text = %shown(text), "reply");
        }
        _ => {}
    }
}

/// The delivery is over: records the outcome (and tells it), logs it, marks the fire
/// handled. Recorded before it is logged: whoever sees the log line finds the record.
fn finish(
    shared: &Arc<Shared>,
    job: &Job,
    handed: &mut Handed<'_>,
    outcome: &Outcome,
    why: &Why,
    path: &Path,
) {
    note(shared, job, outcome);
    log_over(job, outcome, why, path);
    handed.mark();
}

/// The log line of a delivery's end.
fn log_over(job: &Job, outcome: &Outcome, why: &Why, path: &Path) {
    let (run, service, request, id) = (
        job.run,
        job.service.as_str(),
        job.request.as_str(),
        outcome.id,
    );
    match why {
        Why::Done if outcome.result == RunResult::Ok => {
            info!(run, service = %service, id, exit = outcome.exit, secs = outcome.secs, "done");
        }
        Why::Done => {
            warn!(run, service = %service, id, exit = outcome.exit, secs = outcome.secs, "done: action failed");
        }
        Why::Answered => {}
        Why::Refused { code, message } => {
            warn!(run, service = %service, request = %request, code = %code, detail = %shown(message), "refused");
        }
        Why::ErrorAfterAccepted { code, message } => {
            warn!(run, service = %service, request = %request, id, code = %code, detail = %shown(message), "failed: error after accepted");
        }
        Why::OtherAction { accepted } => {
            warn!(run, service = %service, request = %request, id, asked = %job.action, accepted = %shown(accepted), "refused: the service accepted another action than the one asked for (is the user named like one of its actions?)");
        }
        Why::BuiltinText { text } => {
            warn!(run, service = %service, request = %request, asked = %job.action, reply = %shown(text), "refused: the service answered with text, as to a built-in, not with accepted");
        }
        Why::Lost { message } => {
            warn!(run, service = %service, request = %request, id, detail = %shown(message), "failed: the service lost this run with its container (the key never runs again)");
        }
        Why::ReadError(error) => {
            warn!(run, service = %service, id, error = %error, "failed: reading the reply");
        }
        Why::NoDone { error, waited } => {
            warn!(run, service = %service, request = %request, id, error = %error, waited_secs = waited.as_secs(), "failed: no done from the service within the retry window");
        }
        Why::Unreachable { error, waited } if job.notice => {
            warn!(run, service = %service, request = %request, socket = %path.display(), error = %error, waited_secs = waited.as_secs(), "notification not delivered: target unavailable for the whole retry window");
        }
        Why::Unreachable { error, waited } => {
            warn!(run, service = %service, request = %request, socket = %path.display(), error = %error, waited_secs = waited.as_secs(), "missed: target unavailable for the whole retry window");
        }
    }
}
