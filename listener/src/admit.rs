//! Admission: whether a request for an action runs, replays a keyed run, or is refused,
//! decided without I/O (DESIGN.md section 2: busy, too-many, keyed requests, load limits).
//!
//! The server holds one [`State`] under a lock. For an action request it asks
//! [`State::admit`], which either reserves the action's slot and an id ([`Decision::Run`])
//! or says why not; for a key seen before it asks [`replay`] at each turn of its wait for
//! the first run. The journal is seen through [`Records`], so every rule here is a plain
//! function of state, request and clock, unit-tested with fakes (`tests` below).
//! The refusals' texts are made here too, so each is written once.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proto::{ErrorCode, Reply, Request};

/// Waiters on one running key, at most; more get `error busy` at once.
pub const WAITERS_PER_KEY: usize = 8;
/// Waiters on running keys in all, at most.
pub const WAITERS: usize = 64;
/// Connections at most, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept for everything but connections (journal, runtime, actions' pipes).
pub const FD_MARGIN: u64 = 48;

/// The limits admission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Actions running at once (`BOSUN_MAX_ACTIONS`).
    pub max_actions: usize,
    pub waiters_per_key: usize,
    pub waiters: usize,
}

impl Limits {
    pub fn new(max_actions: usize) -> Limits {
        Limits {
            max_actions,
            waiters_per_key: WAITERS_PER_KEY,
            waiters: WAITERS,
        }
    }
}

/// A key bound to the words of its request: the same key with other words is another run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub key: String,
    pub digest: String,
}

impl Key {
    /// The key of a keyed request, with its words' digest.
    pub fn of(req: &Request) -> Option<Key> {
        req.key.as_ref().map(|key| Key {
            key: key.clone(),
            digest: req.digest(),
        })
    }
}

/// A running action, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub id: u64,
    pub user: Option<String>,
    pub started: Instant,
}

/// What admission remembers between requests.
#[derive(Debug, Default)]
pub struct State {
    /// Action name -> the run holding it.
    pub running: BTreeMap<String, RunInfo>,
    /// Keyed runs started here whose end is not in the journal yet.
    pub keys: HashMap<Key, u64>,
    /// Waiters on running keys: per key, and in all.
    waiters: HashMap<String, usize>,
    waiting: usize,
    /// The id the next run gets.
    pub next_id: u64,
}

/// What the journal knows of a run, as admission needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub action: String,
    /// Lost with its container or listener: it never runs again.
    pub lost: bool,
    /// How it ended: `(exit, secs)`.
    pub end: Option<(i32, f64)>,
}

/// The run journal, as admission reads it.
pub trait Records {
    /// The run first started with this key and these words.
    fn by_key(&self, key: &Key) -> Option<u64>;
    /// What is recorded of run `id`.
    fn run(&self, id: u64) -> Option<Recorded>;
}

impl Records for journal::Journal {
    fn by_key(&self, key: &Key) -> Option<u64> {
        journal::Journal::by_key(self, &key.key, &key.digest).map(|r| r.id)
    }

    fn run(&self, id: u64) -> Option<Recorded> {
        self.get(id).map(|r| Recorded {
            action: r.action.clone(),
            lost: r.lost,
            end: r.end.map(|e| (e.exit, e.secs)),
        })
    }
}

/// What becomes of an action request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// It runs as `id`; its slot is reserved ([`State::admit`] did).
    Run(u64),
    /// Its key was seen with these words: the replies of run `id`, never a second run.
    Replay(u64),
    /// The action runs already, as `id`.
    Busy { action: String, id: u64 },
    /// As many actions run as may.
    TooMany { running: usize },
}

impl Decision {
    /// The reply of a refusal (`Busy`, `TooMany`); `None` for the others.
    pub fn refusal(&self) -> Option<Reply> {
        match self {
            Decision::Busy { action, id } => Some(Reply::error(
                ErrorCode::Busy,
                format!("{action} is running as {id}"),
            )),
            Decision::TooMany { running } => Some(Reply::error(
                ErrorCode::TooMany,
                format!("{running} actions are running, the most allowed (BOSUN_MAX_ACTIONS)"),
            )),
            Decision::Run(_) | Decision::Replay(_) => None,
        }
    }
}

/// Decides an action request, without changing anything: a key seen before (here or in
/// the journal) replays; else the same action running is `busy`; else a full table is
/// `too-many`; else it runs with the next id.
pub fn decide(st: &State, limits: &Limits, records: &impl Records, req: &Request) -> Decision {
    if let Some(key) = Key::of(req) {
        if let Some(id) = st.keys.get(&key).copied().or_else(|| records.by_key(&key)) {
            return Decision::Replay(id);
        }
    }
    if let Some(r) = st.running.get(&req.action) {
        return Decision::Busy {
            action: req.action.clone(),
            id: r.id,
        };
    }
    if st.running.len() >= limits.max_actions {
        return Decision::TooMany {
            running: st.running.len(),
        };
    }
    Decision::Run(st.next_id)
}

impl State {
    /// A state whose runs are numbered from `next_id`.
    pub fn new(next_id: u64) -> State {
        State {
            next_id,
            ..State::default()
        }
    }

    /// [`decide`], and on [`Decision::Run`] the reservation: the action's slot, the id, the
    /// key (so a second request with it, at once, follows this run).
    pub fn admit(
        &mut self,
        limits: &Limits,
        records: &impl Records,
        req: &Request,
        now: Instant,
    ) -> Decision {
        let d = decide(self, limits, records, req);
        if let Decision::Run(id) = d {
            self.next_id = id + 1;
            self.running.insert(
                req.action.clone(),
                RunInfo {
                    id,
                    user: req.user.clone(),
                    started: now,
                },
            );
            if let Some(key) = Key::of(req) {
                self.keys.insert(key, id);
            }
        }
        d
    }

    /// Frees `action`'s slot if run `id` still holds it.
    pub fn release(&mut self, action: &str, id: u64) {
        if self.running.get(action).is_some_and(|r| r.id == id) {
            self.running.remove(action);
        }
    }

    /// A place among the waiters on running keys; `false` when the key or the whole has as
    /// many as it may. Given back with [`State::leave`].
    pub fn wait_on(&mut self, limits: &Limits, key: &str) -> bool {
        let of_key = self.waiters.get(key).copied().unwrap_or(0);
        if of_key >= limits.waiters_per_key || self.waiting >= limits.waiters {
            return false;
        }
        self.waiters.insert(key.to_string(), of_key + 1);
        self.waiting += 1;
        true
    }

    /// Gives back a place taken with [`State::wait_on`].
    pub fn leave(&mut self, key: &str) {
        self.waiting = self.waiting.saturating_sub(1);
        if let Some(n) = self.waiters.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.waiters.remove(key);
            }
        }
    }

    /// The running actions, as `status` lists them, by name.
    pub fn actions(&self, now: Instant) -> Vec<proto::status::Action> {
        self.running
            .iter()
            .map(|(name, r)| proto::status::Action {
                name: name.clone(),
                id: r.id,
                user: r.user.clone(),
                secs: now.saturating_duration_since(r.started).as_secs(),
            })
            .collect()
    }
}

/// Where the first run of a replayed key stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// Its start could not be recorded: it never ran; the client may try again.
    Unrecorded,
    /// It was lost with its container or listener: `error lost`, never run again.
    Lost,
    /// Still going; `recorded`: its start is in the journal (so `accepted` can be said).
    Running { action: String, recorded: bool },
    /// Over: `accepted` (if not said yet), then this `done`.
    Ended { action: String, done: Reply },
}

/// Where run `id`, the first with `key`, stands now.
pub fn replay(st: &State, records: &impl Records, key: &Key, id: u64) -> Replay {
    let Some(run) = records.run(id) else {
        if !st.keys.contains_key(key) {
            return Replay::Unrecorded;
        }
        let action = st.running.iter().find(|(_, r)| r.id == id);
        let action = action.map(|(a, _)| a.clone()).unwrap_or_default();
        return Replay::Running {
            action,
            recorded: false,
        };
    };
    match run.end {
        _ if run.lost => Replay::Lost,
        Some((exit, secs)) => Replay::Ended {
            action: run.action,
            done: Reply::Done { id, exit, secs },
        },
        None => Replay::Running {
            action: run.action,
            recorded: true,
        },
    }
}

/// `error busy <action> still running as <id>`: ask again later.
pub fn still_running(action: &str, id: u64) -> Reply {
    Reply::error(ErrorCode::Busy, format!("{action} still running as {id}"))
}

/// A key whose start could not be recorded: it did not run; the client may try again.
pub fn unrecorded(key: &str) -> Reply {
    Reply::error(
        ErrorCode::Unavailable,
        format!("journal cannot record the start of key {key}; not run, try again"),
    )
}

/// A key whose run was lost: never run again.
pub fn lost(id: u64, key: &str) -> Reply {
    Reply::error(
        ErrorCode::Lost,
        format!(
            "{id} the run of key {key} was lost (the container or the listener stopped while \
             it ran); it is not run again"
        ),
    )
}

/// A peer not on the allow lists.
pub fn denied(uid: u32, gid: u32) -> Reply {
    Reply::error(
        ErrorCode::Denied,
        format!("uid {uid} gid {gid} may not use this socket (BOSUN_ALLOW_UIDS/BOSUN_ALLOW_GIDS)"),
    )
}

/// A user name is handed to callbacks that build paths and command lines from it
/// (`/srv/$BOSUN_USER`, `mysqldump "$BOSUN_USER"`), so it is held to a plain name: no `/`,
/// no `..`, no leading `-` that a command would read as an option (`common::name`'s rule,
/// the same as for service and action names). `Err` is the reply.
pub fn check_user(req: &Request) -> Result<(), Reply> {
    match req.user.as_deref() {
        Some(user) if !common::name::is_valid(user) => Err(Reply::error(
            ErrorCode::BadRequest,
            format!("user {user:?} is not a valid name ({})", common::name::RULE),
        )),
        _ => Ok(()),
    }
}

/// `error too-many` for a connection over the limit.
pub fn too_many_connections(limit: usize) -> Reply {
    Reply::error(
        ErrorCode::TooMany,
        format!("{limit} connections are open, the most served at once; try again"),
    )
}

/// Open connections served at once: `set` (`BOSUN_MAX_CONNECTIONS`) when set, else half
/// of what the soft descriptor limit (`soft`; 1024 when unknown) leaves beside
/// [`FD_MARGIN`], at most [`MAX_CONNECTIONS`], at least 1.
pub fn connection_limit(set: Option<usize>, soft: Option<u64>) -> usize {
    if let Some(n) = set {
        return n;
    }
    let n = soft.unwrap_or(1024).saturating_sub(FD_MARGIN) / 2;
    usize::try_from(n)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(1, MAX_CONNECTIONS)
}

/// Log lines about bad or denied requests: at most this many per [`LOG_WINDOW`], then one
/// line with the count of those left out.
pub const LOG_BURST: u32 = 20;
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`]; the rest counted, and told with the next.
#[derive(Debug, Default)]
pub struct Throttle {
    window: Option<Instant>,
    lines: u32,
    dropped: u64,
}

impl Throttle {
    /// Whether a line may be logged now, and how many were left out before it.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= LOG_WINDOW)
        {
            self.window = Some(now);
            self.lines = 0;
        }
        if self.lines >= LOG_BURST {
            self.dropped += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests;
