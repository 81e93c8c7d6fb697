//! The one settings type of the supervisor and the listener: `conf/service.toml`, each key
//! overridable by `BOSUN_<KEY>`, and the main process's argv from `supervisor -- CMD ...`;
//! and the scheduler's `BOSUN_*` variables, read by the same rules ([`scheduler`]).
//!
//! One parser, one set of defaults, one validation. The supervisor loads the file and the
//! environment with [`Settings::load`] before anything starts; every unknown key, bad value
//! and missing setting is collected and reported together, one line each (`FILE:LINE:COL:
//! key: ...` for the file, `BOSUN_<KEY>: ...` for the environment). It then hands the
//! validated values to the listener as variables ([`Settings::to_env`]), which reads them
//! back with the same [`Settings::load`] ([`ValuesOnly`]): there is no second set
//! of rules to drift apart.
//!
//! Laid out as:
//! * `keys`: the table, one row per key (names, default, file type, parser, to-env). A new
//!   setting is a field of [`Settings`] and a row there.
//! * `table`: the rows' machinery: the value rule (environment over file, trimmed, blank is
//!   the default), loading and writing back as loops over rows.
//! * [`values`]: the typed values (addresses, probes, modes, users) and their parsers.
//! * [`problem`]: typed problems; the supervisor's exit code comes from their kind.
//! * `file`: `service.toml` with spans (the `toml` feature).
//! * [`scheduler`]: the scheduler's variables, through the same rows and rules.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Gid;

use crate::log::{Filter, LogFormat};

mod file;
pub(crate) mod keys;
pub mod problem;
pub mod scheduler;
mod table;
pub mod values;

#[cfg(feature = "toml")]
pub use file::check_text;
pub use file::ServiceFile;
pub use problem::{Origin, Problem, ProblemKind, Problems, ValueError};
pub use values::*;

/// The setup script, used when present and `setup` is not set.
pub const DEFAULT_SETUP: &str = "/usr/local/bin/docker-entry-setup.sh";
/// The personality's callbacks.
pub const DEFAULT_CALLBACKS: &str = "/usr/local/bin/docker-callbacks.sh";
/// Where the run journal is kept unless `state_dir` says otherwise (DESIGN.md section 7).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/bosun";

/// The search path of the main command when `PATH` is unset (DESIGN.md section 4).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `replay_wait`'s default: how long a keyed request waits on its key's run still going.
pub const REPLAY_WAIT: Duration = Duration::from_secs(600);

/// `on_demand.socket_mode`'s default: the web server's group may connect, nobody else
/// (systemd's `SocketMode=` is 0666; a FastCGI socket is code execution, so not here).
pub const ON_DEMAND_SOCKET_MODE: u32 = 0o660;
/// `on_demand.max_connections`'s default: proxied pairs and held clients at once.
pub const ON_DEMAND_MAX_CONNECTIONS: usize = 1024;
/// `on_demand.connection_idle`'s default: a proxied pair with no byte either way for this
/// long is closed.
pub const ON_DEMAND_CONNECTION_IDLE: Duration = Duration::from_secs(600);

/// Everything the supervisor and the listener read, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service: String,
    /// `BOSUN_INSTANCE`: this replica's instance (DESIGN.md section 10). Unset: the
    /// supervisor claims the lowest free one and passes it on to the listener.
    pub instance: Option<u32>,
    /// argv of the main process, as bytes (not only UTF-8).
    pub exec: Vec<OsString>,
    pub run_dir: PathBuf,
    /// Where the run journal lives (`<state_dir>/<service>.journal`).
    pub state_dir: PathBuf,
    pub setup: Option<PathBuf>,
    pub callbacks: PathBuf,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub restart: Restart,
    pub ready: Option<Ready>,
    pub run_as: Option<RunAs>,
    /// `log` / `BOSUN_LOG`: the log filter, as written (validated).
    pub log: String,
    pub log_format: LogFormat,
    pub socket_mode: u32,
    pub socket_gid: Option<Gid>,
    /// Peers allowed by uid; empty together with `allow_gids` = anyone.
    pub allow_uids: Vec<u32>,
    /// Peers allowed by group: the primary gid or a supplementary one
    /// ([`Settings::allows_groups`]).
    pub allow_gids: Vec<u32>,
    /// How many actions may run at once.
    pub max_actions: usize,
    /// How long an action may run.
    pub action_timeout: Duration,
    /// Per-action overrides of `action_timeout`.
    pub action_timeouts: BTreeMap<String, Duration>,
    /// A client must send its line within this.
    pub read_timeout: Duration,
    /// Between TERM and KILL when an action times out.
    pub kill_grace: Duration,
    pub on_demand: Option<OnDemand>,
    /// The listener binary, found by the supervisor's checks; `None` when
    /// `BOSUN_LISTENER=off`, and for the listener itself.
    pub listener: Option<PathBuf>,
    /// `listener_start`: `request` (default) or `boot`.
    pub listener_start: ListenerStart,
    /// `listener_idle`: with `listener_start = request`, a listener with no connection and
    /// no action for this long exits, to be started again by the next request; `None`
    /// (`0`, or `listener_start = boot`): it stays.
    pub listener_idle: Option<Duration>,
    /// `replay_wait`: how long a keyed request waits for the end of its key's run still
    /// going before `error busy <action> still running as <id>` (default [`REPLAY_WAIT`]).
    pub replay_wait: Duration,
    /// `max_connections`: the listener's open connections at most; one more is answered
    /// `error too-many`. `None` (unset): the listener computes it from its descriptor
    /// limit (half of `RLIMIT_NOFILE` - 48, at most 1024; see its `server` module).
    pub max_connections: Option<usize>,
}

/// An environment from `(name, value)` pairs, as [`Sources`] reads one (the first pair of a
/// name wins): for tests, and for callers that make an environment rather than read theirs.
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let env: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

impl Settings {
    /// `$NOTIFY_SOCKET` of the main process, with `ready = "notify"`.
    pub fn notify_path(&self) -> Option<PathBuf> {
        (self.ready == Some(Ready::Notify))
            .then(|| self.run_dir.join(format!(".{}-notify.sock", self.stem())))
    }

    /// The stem of this replica's own files (journal, notify socket): the service name,
    /// or `<service>.<n>` for instances from 2 on ([`crate::instance::stem`]).
    pub fn stem(&self) -> String {
        crate::instance::stem(&self.service, self.instance)
    }

    /// This replica's request socket: `<run_dir>/<service>.<n>-request.sock`.
    pub fn instance_socket(&self, n: u32) -> PathBuf {
        crate::instance::socket_path(&self.run_dir, &self.service, n)
    }

    /// The settings of instance `n`: `{instance}` in the on-demand socket's path and in a
    /// `socket:` ready probe replaced by `n` (so replicas sharing a directory each hold
    /// their own, DESIGN.md section 10).
    pub fn for_instance(mut self, n: u32) -> Settings {
        use crate::instance::expand;
        let fix = |p: &mut PathBuf| {
            if let Some(t) = p.to_str() {
                *p = PathBuf::from(expand(t, n));
            }
        };
        self.instance = Some(n);
        if let Some(Addr::Unix(p)) = self.on_demand.as_mut().map(|o| &mut o.listen) {
            fix(p);
        }
        if let Some(Some(Addr::Unix(p))) = self.on_demand.as_mut().map(|o| &mut o.backend) {
            fix(p);
        }
        if let Some(Ready::Socket(p)) = &mut self.ready {
            fix(p);
        }
        self
    }

    /// The log filter (validated when loading).
    pub fn log_filter(&self) -> Filter {
        Filter::parse(&self.log).unwrap_or_default()
    }

    /// The timeout of one action: its own entry in `action_timeouts`, else the default.
    pub fn timeout_of(&self, action: &str) -> Duration {
        self.action_timeouts
            .get(action)
            .copied()
            .unwrap_or(self.action_timeout)
    }

    /// Whether an allow-list is set (only the listener applies it).
    pub fn has_allow_list(&self) -> bool {
        !self.allow_uids.is_empty() || !self.allow_gids.is_empty()
    }

    /// Whether a peer may send requests. With no allow-list anyone who can open the socket
    /// may (the socket's mode and group are the first gate). With one, root (uid 0) is
    /// always allowed: inside the container root can act on everything anyway, and an
    /// operator's `docker exec ... scheduler send` runs as root. (Root of *another*
    /// container is uid 0 too: what keeps it out is that it cannot reach the socket, the
    /// directory mounts of DESIGN.md section 9, not a uid rule.)
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        self.allows_groups(uid, gid, &[])
    }

    /// [`Settings::allows`], `allow_gids` matched against the peer's supplementary groups
    /// too (`SO_PEERGROUPS`, see [`crate::peer::groups`]), as the socket file's own group
    /// permission is.
    pub fn allows_groups(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        if !self.has_allow_list() {
            return true;
        }
        uid == 0
            || self.allow_uids.contains(&uid)
            || self.allow_gids.contains(&gid)
            || groups.iter().any(|g| self.allow_gids.contains(g))
    }

    /// Every setting as the `BOSUN_*` variable that gives it, in the form [`Settings::load`]
    /// reads back: how the supervisor hands its validated settings to the listener.
    /// (`exec` is not among them: it is the main process's, not the listener's.)
    pub fn to_env(&self) -> Vec<(String, String)> {
        table::show(keys::ROWS, self)
    }
}

/// What is checked beyond the values themselves, by the program that loads them: the
/// supervisor checks that what it will start exists (its `config::Role`); the listener
/// reads what the supervisor validated and checks nothing more ([`ValuesOnly`]).
pub trait Checks {
    /// Completes `s` with what is not a value (the supervisor's listener binary) and says
    /// what is wrong with it.
    fn check(&self, s: &mut Settings, cx: &Context<'_>) -> Vec<Problem>;
}

/// The values alone: what the listener checks (the supervisor checked the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValuesOnly;

impl Checks for ValuesOnly {
    fn check(&self, _: &mut Settings, _: &Context<'_>) -> Vec<Problem> {
        Vec::new()
    }
}

/// What [`Checks::check`] may look at beside the settings.
pub struct Context<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The file's name, when there is a file.
    pub file: Option<&'a str>,
    /// Where each key's value came from (by file key), for the keys that were set.
    pub origins: &'a BTreeMap<&'static str, Origin>,
}

/// Where settings come from; the environment is passed in so tests need not mutate the
/// process environment.
pub struct Sources<'a, R: Checks = ValuesOnly> {
    /// `service.toml` as read (`ServiceFile::read` (the `toml` feature)); `ServiceFile::default()` for none.
    pub file: ServiceFile,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// argv after `--` (wins over `exec` in the file).
    pub exec: Vec<OsString>,
    /// Who loads them, which decides what is checked beyond the values.
    pub role: R,
}

impl Settings {
    /// Reads `service.toml` (if present, with the `toml` feature) and the environment, and
    /// validates everything; returns every problem at once.
    pub fn load<R: Checks>(src: &Sources<'_, R>) -> Result<Settings, Problems> {
        let mut problems = src.file.problems.clone();
        let values = table::Values {
            env: src.env,
            file: Some(&src.file),
        };
        let mut draft = keys::Draft::new();
        let origins = table::read(keys::ROWS, &mut draft, &values, &mut problems);
        let mut s = draft.finish();
        s.exec = if src.exec.is_empty() {
            let file_exec = src.file.exec.iter().flatten();
            file_exec.map(OsString::from).collect()
        } else {
            src.exec.clone()
        };
        let cx = Context {
            env: src.env,
            file: src.file.label(),
            origins: &origins,
        };
        problems.extend(src.role.check(&mut s, &cx));
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(Problems(problems))
        }
    }
}

#[cfg(test)]
mod tests;
