//! The long-running scheduler: sleep, fire, deliver, reload. The I/O edge around the pure
//! [`crate::planner`], which decides what is due (cursor, clock steps, reloads).
//!
//! One loop owns the schedule and the planner. It sleeps on a realtime timerfd
//! ([`crate::timer`]) until the earliest next fire (never polling), and wakes for three
//! reasons only: a fire is due, the wall clock was stepped, or the directory holding the
//! schedule changed (inotify, via notify).
//!
//! Each fire is delivered by its own task ([`deliver`]) so deliveries never block one
//! another or the loop; a set of running line keys makes a fire whose previous run has not
//! finished be skipped and logged.
//!
//! Every request is keyed (`@<tag>:<fire time>`, [`crate::state::FireKeys`], the tag a
//! keyed hash under a secret of the state directory, so nobody else can compute a coming
//! fire's key and send it first): a retry, a catch-up of the same fire after a restart, and
//! a re-send after a connection lost between `accepted` and `done` all carry the fire's one
//! key, so the service runs the fire once and answers the repeats with the first run's
//! replies.
//!
//! The reply must be the one asked for (DESIGN.md section 2): an `accepted` that names
//! another action (the service read the user as one of its actions) or a built-in's text
//! to an action request is recorded `refused`, never `ok`; `error lost <id>` (the key's run
//! was lost with its container and never runs again) is recorded `failed` at once, without
//! a retry. Both are told to `ON_FAILURE=`. Text from the service is logged with its
//! control characters escaped (`common::text::shown`). A run a killed scheduler left
//! `running` in the record is asked for again at the next start ([`resume`]), with its key,
//! so the record gets its real outcome without the action running twice.
//!
//! With `BOSUN_METRICS_FILE` and `BOSUN_STATE_DIR` (whose record they are built from) the
//! metrics file, and with `BOSUN_STATUS_HTML` the status page, are rewritten after every
//! outcome, at start and after a reload, by [`crate::outputs`] on a thread of its own; a
//! file that cannot be written is logged and the schedule runs on.
//!
//! A line under `ON_FAILURE=`/`ON_SUCCESS=` has its outcome told to that target by a
//! notification ([`notify`]): a request like any other (keyed, retried for the retry window,
//! then logged), keyed by its run's key plus `:f` or `:s`, so a repeat of the outcome (a
//! resumed run) tells it once. At start, each line's last outcome (within the catch-up
//! window) is told again with its key ([`resume`]): a notification a killed scheduler did not
//! get through is delivered, one already delivered is answered from the target's journal. A notification's own outcome is only logged: it is not a run
//! of a line, so it is neither recorded nor told to anyone, and cannot loop.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt;
use notify::Watcher;
use proto::{ErrorCode, Reply};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::outputs::{self, Outputs};
use crate::planner::{missed_while_down, Fire, Outcome, Planner};
use crate::record::{RecordError, Recorder, Run, RunResult};
use crate::schedule::{self, Entry, FileErrors, Notify, Schedule, When};
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
    /// Keys of lines with a delivery in progress.
    running: Mutex<HashSet<String>>,
    runs: AtomicU64,
    /// Where fires are recorded (`BOSUN_STATE_DIR`), for catch-up.
    store: Option<StateStore>,
    /// The record of every run (`BOSUN_STATE_DIR`), for `scheduler status`.
    recorder: Option<Recorder>,
    /// The schedule file, as the record names it.
    file: String,
    /// Where notifications are spawned, so that shutdown waits for them too.
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
}

/// After a change in the directory, wait for this much quiet before reading the file.
const SETTLE: Duration = Duration::from_millis(100);
/// How long in-flight deliveries get to finish their current step on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until `shutdown` completes. Fails only at start (unreadable or invalid schedule,
/// unusable state directory, no inotify); later problems are logged and survived.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let (mut bytes, mut schedule) = load(&config.file, config.default_zone)?;
    let store = match &config.state_dir {
        Some(dir) => Some(StateStore::open(dir)?),
        None => None,
    };
    let recorder = match &config.state_dir {
        Some(dir) => Some(Recorder::open(dir)?),
        None => None,
    };
    let keys = match &config.state_dir {
        Some(dir) => FireKeys::open(dir)?,
        None => FireKeys::random().map_err(|source| DaemonError::Io {
            doing: "making the fire key secret from /dev/urandom",
            source,
        })?,
    };
    let (tx, mut changes) = mpsc::channel::<()>(1);
    let (mut watcher, dir) = watch(&config.file, tx)?;
    let mut timer = RealtimeTimer::new().map_err(|source| DaemonError::Io {
        doing: "creating the timerfd",
        source,
    })?;
    let tracker = TaskTracker::new();
    let file = config.file.display().to_string();
    let paths = outputs::Paths {
        metrics: config.metrics_file.clone(),
        page: config.status_html.clone(),
    };
    let outputs = match &config.state_dir {
        Some(dir) => Outputs::start(paths, file.clone(), dir, &schedule).map_err(|source| {
            DaemonError::Io {
                doing: "starting the thread that writes the reports",
                source,
            }
        })?,
        None => {
            for (var, path) in [
                ("BOSUN_METRICS_FILE", &paths.metrics),
                ("BOSUN_STATUS_HTML", &paths.page),
            ] {
                if let Some(path) = path {
                    warn!(file = %path.display(), "{var} is set but BOSUN_STATE_DIR is not: it is not written (it is built from the run record)");
                }
            }
            None
        }
    };
    let shared = Arc::new(Shared {
        run_dir: config.run_dir.clone(),
        retry_window: config.retry_window,
        cancel: CancellationToken::new(),
        running: Mutex::new(HashSet::new()),
        runs: AtomicU64::new(0),
        store: store.clone(),
        recorder,
        file,
        tracker: tracker.clone(),
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
    for e in &schedule.entries {
        if e.when == When::Reboot {
            fire(&shared, &tracker, e, start, "reboot", None);
        }
    }
    if let Some(store) = &store {
        let caught = catch_up(
            &shared,
            &tracker,
            store,
            &schedule,
            start,
            config.catchup_window,
        );
        resume(
            &shared,
            &tracker,
            &schedule,
            start,
            config.catchup_window,
            &caught,
        );
    }
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
                let now = Utc::now();
                if wake == Wake::ClockChanged {
                    info!(now = %rfc3339(now), "wall clock was set");
                }
                let fires = match planner.wake(&schedule, now, window) {
                    Outcome::SteppedBack { from } => {
                        warn!(from = %rfc3339(from), to = %rfc3339(now), "wall clock stepped back more than an hour; planning from the new time");
                        continue;
                    }
                    Outcome::Fires(fires) => fires,
                };
                for f in fires {
                    match f {
                        Fire::Run { index, due } => {
                            let e = &schedule.entries[index];
                            let late = now - due;
                            if late > chrono::Duration::seconds(2) {
                                warn!(line = e.line, due = %rfc3339(due), late_secs = late.num_seconds(), "late fire (clock jump or suspend); runs once");
                            }
                            fire(&shared, &tracker, e, due, "schedule", Some(due));
                        }
                        Fire::Missed { index, due } => {
                            missed_by_clock(&shared, &schedule.entries[index], due);
                        }
                    }
                }
            }
            Some(()) = changes.recv() => {
                settle(&mut changes).await;
                // A replaced directory (a new mount of conf/) loses its inotify watch: the
                // parent's watch told us, so watch the new one. Harmless when unchanged.
                let _ = watcher.watch(&dir, notify::RecursiveMode::NonRecursive);
                match load(&config.file, config.default_zone) {
                    Ok((new_bytes, _)) if new_bytes == bytes => {}
                    Ok((new_bytes, new_schedule)) => {
                        bytes = new_bytes;
                        let now = Utc::now();
                        planner.reload(&schedule, &new_schedule, now);
                        schedule = new_schedule;
                        if let Some(o) = &shared.outputs {
                            o.set_schedule(&schedule);
                        }
                        if let Some(store) = &store {
                            baseline(store, &schedule, now);
                        }
                        let first = planner.due().map(rfc3339);
                        info!(entries = schedule.entries.len(), next = %first.as_deref().unwrap_or("none"), "schedule reloaded");
                    }
                    Err(DaemonError::Schedule(errors)) => {
                        for line in errors.to_string().lines() {
                            error!("{line}");
                        }
                        warn!(errors = errors.errors.len(), "schedule not reloaded; the previous one keeps running");
                    }
                    Err(err) => warn!(error = %err, "schedule not reloaded; the previous one keeps running"),
                }
            }
        }
    }
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
    Ok(())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
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
    tracker: &TaskTracker,
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
            fire(shared, tracker, e, missed, "catch-up", Some(now));
            caught.insert(shared.keys.fire(&key, missed));
        }
    }
    baseline(store, schedule, now);
    caught
}

/// At start: every run the record still shows `running` (a scheduler killed between the
/// service's `accepted` and its `done`), fired within the window, is asked for again with
/// its own key. The keyed service runs nothing new: it answers with that run's `accepted`
/// and, when the run has ended or once it ends, its `done`, which the record then gets.
/// Fires in `caught` are being sent by the catch-up already, with the same key.
fn resume(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
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
        let line_key = e.key();
        let runs = match recorder.runs(&line_key) {
            Ok(contents) => contents.runs,
            Err(err) => {
                warn!(line = e.line, error = %err, "cannot read the run record; runs left running are not resumed");
                continue;
            }
        };
        // The line's last outcome is told again, with its key: a scheduler killed between
        // recording it and delivering its notification would otherwise never tell it. The
        // target runs a key once, so one already told is not told twice.
        if let Some(r) = runs.last() {
            let told = (r.result != RunResult::Running && r.result != RunResult::Skipped)
                && (e.on_failure.is_some() || e.on_success.is_some())
                && now - r.at <= window;
            let job = Job::new(&shared.keys, 0, e, r.fire);
            if told && job.key == r.key {
                notify(shared, &job, r.result, r.exit, r.id);
            }
        }
        for r in runs {
            if r.result != RunResult::Running || now - r.fire > window || caught.contains(&r.key) {
                continue;
            }
            let run = shared.runs.fetch_add(1, Ordering::Relaxed) + 1;
            let job = Job::new(&shared.keys, run, e, r.fire);
            if job.key != r.key {
                continue;
            }
            info!(run, line = e.line, service = %e.service, request = %e.request(), key = %job.key, due = %rfc3339(r.fire), id = r.id, reason = "resume", "request");
            // The run holds its line's slot, as it would have before the restart, unless a
            // catch-up of a later fire already does.
            let free = shared
                .running
                .lock()
                .is_ok_and(|mut set| set.insert(line_key.clone()));
            let guard = free.then(|| RunningGuard {
                shared: shared.clone(),
                key: line_key.clone(),
            });
            let shared = shared.clone();
            tracker.spawn(async move {
                let _guard = guard;
                deliver(&shared, &job, None, r.id).await;
            });
        }
    }
}

/// Removes a line's key from the running set when its delivery ends, however it ends.
struct RunningGuard {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = self.shared.running.lock() {
            set.remove(&self.key);
        }
    }
}

/// One fire: what its delivery and its record need to know.
struct Job {
    /// The daemon's run counter, for the log.
    run: u64,
    /// [`Entry::key`]: the line's identity, naming its files in the state directory.
    line_key: String,
    /// The fire key, sent as `@KEY`.
    key: String,
    due: DateTime<Utc>,
    line: usize,
    service: String,
    action: String,
    user: Option<String>,
    /// The request line, key included.
    request: String,
    /// Who is told of the outcome: the line's `ON_FAILURE=`, its `ON_SUCCESS=`.
    on_failure: Option<Notify>,
    on_success: Option<Notify>,
    /// This is a notification, not a run of a line: its outcome is only logged.
    notice: bool,
}

impl Job {
    fn new(keys: &FireKeys, run: u64, e: &Entry, due: DateTime<Utc>) -> Job {
        let line_key = e.key();
        let key = keys.fire(&line_key, due);
        Job {
            run,
            request: format!("@{key} {}", e.request()),
            line_key,
            key,
            due,
            line: e.line,
            service: e.service.clone(),
            action: e.action.clone(),
            user: e.user.clone(),
            on_failure: e.on_failure.clone(),
            on_success: e.on_success.clone(),
            notice: false,
        }
    }

    /// The notification of this job's outcome to `to`: `action SERVICE ACTION USER RESULT
    /// EXIT ID`, keyed by this job's key and `suffix` (`f` or `s`).
    fn notice(
        &self,
        run: u64,
        to: &Notify,
        suffix: char,
        result: RunResult,
        exit: Option<i32>,
        id: Option<u64>,
    ) -> Job {
        let key = format!("{}:{suffix}", self.key);
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let request = format!(
            "@{key} {} {} {} {} {} {} {}",
            to.action,
            self.service,
            self.action,
            dash(self.user.clone()),
            result.as_str(),
            dash(exit.map(|c| c.to_string())),
            dash(id.map(|i| i.to_string())),
        );
        Job {
            run,
            line_key: self.line_key.clone(),
            key,
            due: self.due,
            line: self.line,
            service: to.service.clone(),
            action: to.action.clone(),
            user: None,
            request,
            on_failure: None,
            on_success: None,
            notice: true,
        }
    }
}

/// Writes one outcome of `job` to the record, when there is a state directory (a write
/// that fails is logged, never fatal), and tells the line's `ON_FAILURE=`/`ON_SUCCESS=`
/// target of a final one. A notification's own outcome goes nowhere: it is logged only.
fn note(
    shared: &Arc<Shared>,
    job: &Job,
    result: RunResult,
    exit: Option<i32>,
    secs: Option<f64>,
    id: Option<u64>,
) {
    if job.notice {
        return;
    }
    record_run(shared, job, result, exit, secs, id);
    // Recorded first: whoever the notification reaches finds the run in the record.
    notify(shared, job, result, exit, id);
}

fn record_run(
    shared: &Shared,
    job: &Job,
    result: RunResult,
    exit: Option<i32>,
    secs: Option<f64>,
    id: Option<u64>,
) {
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
        result,
        exit,
        secs,
        id,
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

/// Sends the notification of a final outcome to the line's `ON_FAILURE=` (`failed`,
/// `missed`, `refused`) or `ON_SUCCESS=` (`ok`) target, if it has one.
fn notify(shared: &Arc<Shared>, job: &Job, result: RunResult, exit: Option<i32>, id: Option<u64>) {
    let (to, suffix) = match result {
        RunResult::Ok => (&job.on_success, 's'),
        RunResult::Failed | RunResult::Missed | RunResult::Refused => (&job.on_failure, 'f'),
        RunResult::Skipped | RunResult::Running => return,
    };
    let Some(to) = to else {
        return;
    };
    let run = shared.runs.fetch_add(1, Ordering::Relaxed) + 1;
    let notice = job.notice(run, to, suffix, result, exit, id);
    info!(run, line = job.line, of_run = job.run, service = %notice.service, request = %unkeyed(&notice.request), key = %notice.key, result = result.as_str(), "notify");
    let shared2 = shared.clone();
    shared.tracker.spawn(async move {
        deliver(&shared2, &notice, None, None).await;
    });
}

/// A request line without its `@KEY`, for the log.
fn unkeyed(request: &str) -> &str {
    request.split_once(' ').map_or(request, |(_, r)| r)
}

/// Logs and records a fire the clock jumped past by more than the catch-up window.
fn missed_by_clock(shared: &Arc<Shared>, e: &Entry, due: DateTime<Utc>) {
    note(
        shared,
        &Job::new(&shared.keys, 0, e, due),
        RunResult::Missed,
        None,
        None,
        None,
    );
    warn!(line = e.line, service = %e.service, action = %e.action, due = %rfc3339(due), "missed: the clock jumped past it by more than the catch-up window");
    shared.record(&e.key(), due);
}

/// Starts the delivery of one fire, unless the previous run of the same line is still going.
/// `record`: what to record as the line's last fire once the service has answered the
/// request (or it is given up on), not before: a scheduler killed before that point leaves
/// the record as it was, and its next start catches the fire up. So a fire is never lost to
/// a kill; when a kill lands between the request and the record, the catch-up sends the
/// same fire key again, and the service runs it once.
fn fire(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    e: &Entry,
    due: DateTime<Utc>,
    reason: &'static str,
    record: Option<DateTime<Utc>>,
) {
    let fresh = match shared.running.lock() {
        Ok(mut set) => set.insert(e.key()),
        Err(_) => true,
    };
    if !fresh {
        let job = Job::new(&shared.keys, 0, e, due);
        note(shared, &job, RunResult::Skipped, None, None, None);
        warn!(line = e.line, service = %e.service, request = %e.request(), key = %job.key, due = %rfc3339(due), "skipped: the previous run of this line has not finished");
        return;
    }
    let run = shared.runs.fetch_add(1, Ordering::Relaxed) + 1;
    let job = Job::new(&shared.keys, run, e, due);
    let late_ms = (Utc::now() - due).num_milliseconds().max(0);
    info!(run, line = e.line, service = %e.service, request = %e.request(), key = %job.key, due = %rfc3339(due), late_ms, reason = %reason, "request");
    let guard = RunningGuard {
        shared: shared.clone(),
        key: e.key(),
    };
    let shared = shared.clone();
    let record = record.map(|at| (e.key(), at));
    tracker.spawn(async move {
        let _guard = guard;
        deliver(&shared, &job, record, None).await;
    });
}

/// Sends one request and logs and records its outcome. A socket that is missing or refuses,
/// a service that closes the connection without a word and an `error unavailable` answer
/// (its listener crashed or is restarting: the action did not run) are retried with capped
/// exponential backoff for the retry window; then the run is missed. A connection lost after
/// `accepted` is retried too: the same key runs nothing new and brings the run's `done`.
/// Records `record` (key, time) as the line's last fire once the service has answered
/// otherwise, or the run is given up on; a request not delivered because the scheduler is
/// stopping is left unrecorded, for the next start to catch up. `accepted`: the service's
/// run id when the fire is known to have been accepted before (a resumed run).
async fn deliver(
    shared: &Arc<Shared>,
    job: &Job,
    record: Option<(String, DateTime<Utc>)>,
    accepted: Option<u64>,
) {
    let handled = || {
        if let Some((key, at)) = &record {
            shared.record(key, *at);
        }
    };
    let (run, service, request) = (job.run, job.service.as_str(), job.request.as_str());
    let path = proto::request_socket_path(&shared.run_dir, service);
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut accepted = accepted;
    loop {
        let why = match attempt(shared, job, &path, &handled, &mut accepted).await {
            Attempt::Over => return,
            Attempt::Retry(why) => why,
        };
        let waited = started.elapsed();
        if waited >= shared.retry_window {
            // Recorded before it is logged: whoever sees the log line finds the record.
            if accepted.is_some() {
                note(shared, job, RunResult::Failed, None, None, accepted);
                warn!(run, service = %service, request = %request, id = accepted, error = %why, waited_secs = waited.as_secs(), "failed: no done from the service within the retry window");
            } else if job.notice {
                warn!(run, service = %service, request = %request, socket = %path.display(), error = %why, waited_secs = waited.as_secs(), "notification not delivered: target unavailable for the whole retry window");
            } else {
                note(shared, job, RunResult::Missed, None, None, None);
                warn!(run, service = %service, request = %request, socket = %path.display(), error = %why, waited_secs = waited.as_secs(), "missed: target unavailable for the whole retry window");
            }
            handled();
            return;
        }
        if delay == Duration::from_millis(250) {
            warn!(run, service = %service, socket = %path.display(), error = %why, "target unavailable; retrying");
        }
        let pause = delay.min(shared.retry_window - waited);
        tokio::select! {
            () = shared.cancel.cancelled() => {
                warn!(run, service = %service, request = %request, "not delivered: the scheduler is stopping");
                return;
            }
            () = tokio::time::sleep(pause) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

enum Attempt {
    /// Answered (or failed past retrying): logged, and recorded.
    Over,
    /// Not delivered, for this reason: try again.
    Retry(String),
}

/// One connection: sends the request and reads the answer to its end. `accepted` keeps the
/// service's run id across attempts.
async fn attempt(
    shared: &Arc<Shared>,
    job: &Job,
    path: &Path,
    handled: &impl Fn(),
    accepted: &mut Option<u64>,
) -> Attempt {
    let (run, service, request) = (job.run, job.service.as_str(), job.request.as_str());
    let mut stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(err) => return Attempt::Retry(err.to_string()),
    };
    // Finish this step even when stopping: a request is sent whole or not at all.
    if let Err(err) = stream.write_all(format!("{request}\n").as_bytes()).await {
        return Attempt::Retry(format!("cannot send the request: {err}"));
    }
    let mut lines = FramedRead::new(stream, LinesCodec::new_with_max_length(64 * 1024));
    let mut id = None;
    let mut first = true;
    loop {
        let item = tokio::select! {
            () = shared.cancel.cancelled() => {
                // The request is in the service's socket: it will be served.
                info!(run, service = %service, id, "scheduler stopping; the action goes on in the service");
                handled();
                return Attempt::Over;
            }
            item = lines.next() => item,
        };
        let line = match item {
            None if first => {
                return Attempt::Retry("the service closed the connection without a reply".into())
            }
            None => break,
            Some(Ok(line)) => line,
            Some(Err(err)) => {
                note(shared, job, RunResult::Failed, None, None, id);
                warn!(run, service = %service, id, error = %err, "failed: reading the reply");
                handled();
                return Attempt::Over;
            }
        };
        let reply = Reply::parse(&line);
        if let Reply::Error {
            code: ErrorCode::Unavailable,
            message,
        } = &reply
        {
            if first || id.is_some() {
                // Not run (first), or its listener went away while it ran: the same key
                // brings its outcome once the service is back.
                return Attempt::Retry(format!("error unavailable {}", shown(message)));
            }
        }
        if let Reply::Error {
            code: ErrorCode::Busy,
            message,
        } = &reply
        {
            if first && job.notice {
                // The notify action is telling of another run (two lines ended together):
                // a notification waits its turn, within the retry window, instead of being
                // lost. A line's own run that finds its action busy is refused, as before.
                return Attempt::Retry(format!("error busy {}", shown(message)));
            }
        }
        match &reply {
            Reply::Accepted { id: i, action } if *action != job.action => {
                // The service read the request as another action than the one asked for
                // (a user named like one of its actions): that run is not this fire's, and
                // its outcome must not pass for this one's.
                note(shared, job, RunResult::Refused, None, None, Some(*i));
                warn!(run, service = %service, request = %request, id = *i, asked = %job.action, accepted = %shown(action), "refused: the service accepted another action than the one asked for (is the user named like one of its actions?)");
                handled();
                return Attempt::Over;
            }
            Reply::Error {
                code: ErrorCode::Lost,
                message,
            } => {
                // The run of this key was lost with its container: the service never runs
                // the key again, so asking again would change nothing.
                let lost = message
                    .split(' ')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok())
                    .or(id)
                    .or(*accepted);
                note(shared, job, RunResult::Failed, None, None, lost);
                warn!(run, service = %service, request = %request, id = lost, detail = %shown(message), "failed: the service lost this run with its container (the key never runs again)");
                handled();
                return Attempt::Over;
            }
            Reply::Text(text) if first && proto::Builtin::parse(&job.action).is_none() => {
                // A built-in's answer to an action request: the service read it as a
                // built-in (`stop`, ...), which is not what this line asks for.
                note(shared, job, RunResult::Refused, None, None, None);
                warn!(run, service = %service, request = %request, asked = %job.action, reply = %shown(text), "refused: the service answered with text, as to a built-in, not with accepted");
                handled();
                return Attempt::Over;
            }
            _ => {}
        }
        if first {
            // The service has it: from here on, a restart must not send it again. An
            // `accepted` is recorded as `running` first, so that a kill in between leaves a
            // run the next start resumes, never a fire run and missing from the record.
            first = false;
            if let Reply::Accepted { id: i, .. } = &reply {
                if *accepted != Some(*i) {
                    *accepted = Some(*i);
                    note(shared, job, RunResult::Running, None, None, Some(*i));
                }
            }
            handled();
        }
        match reply {
            Reply::Accepted { id: i, action } => {
                id = Some(i);
                if *accepted != Some(i) {
                    *accepted = Some(i);
                    note(shared, job, RunResult::Running, None, None, id);
                }
                info!(run, service = %service, id = i, action = %shown(&action), "accepted");
            }
            Reply::Done { id: i, exit, secs } => {
                let result = if exit == 0 {
                    RunResult::Ok
                } else {
                    RunResult::Failed
                };
                note(shared, job, result, Some(exit), Some(secs), Some(i));
                if exit == 0 {
                    info!(run, service = %service, id = i, exit, secs, "done");
                } else {
                    warn!(run, service = %service, id = i, exit, secs, "done: action failed");
                }
                return Attempt::Over;
            }
            Reply::Error { code, message } => {
                // After an `accepted` (on this connection or an earlier one) the action ran:
                // an error now is about its end, not a refusal.
                let id = id.or(*accepted);
                if id.is_some() {
                    note(shared, job, RunResult::Failed, None, None, id);
                    warn!(run, service = %service, request = %request, id, code = %code, detail = %shown(&message), "failed: error after accepted");
                } else {
                    note(shared, job, RunResult::Refused, None, None, None);
                    warn!(run, service = %service, request = %request, code = %code, detail = %shown(&message), "refused");
                }
                return Attempt::Over;
            }
            Reply::Text(text) => info!(run, service = %service, text = %shown(&text), "reply"),
        }
    }
    if id.is_some() {
        // The action was accepted and may still be going: ask again with the same key,
        // which runs nothing new and brings its `done`.
        return Attempt::Retry("the service closed the connection before done".into());
    }
    // Text only, to a built-in such as `restart`: answered, nothing more to wait for.
    note(shared, job, RunResult::Ok, None, None, None);
    Attempt::Over
}
