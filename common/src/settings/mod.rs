//! The one settings type of the supervisor and the listener: `conf/service.toml`, each key
//! overridable by `BOSUN_<KEY>`, and the main process's argv from `supervisor -- CMD ...`;
//! and the scheduler's `BOSUN_*` variables, read by the same rules ([`scheduler`]).
//!
//! One parser, one set of defaults, one validation. The supervisor loads the file and the
//! environment with [`Settings::load`] before anything starts; every unknown key, bad value
//! and missing setting is collected and reported together, one line each (`FILE:LINE:COL:
//! key: ...` for the file, `BOSUN_<KEY>: ...` for the environment). It then hands the
//! validated values to the listener as variables ([`Settings::to_env`]), which reads them
//! back with the same [`Settings::load`] (role [`Role::Listener`]): there is no second set
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
use std::ffi::{OsStr, OsString};
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
pub use table::{FileType, Spec};
pub use values::*;

/// Where `service.toml` is looked for unless `BOSUN_CONFIG` names another file.
pub const DEFAULT_CONFIG: &str = "/usr/local/conf/service.toml";
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
    /// The listener binary, or `None` when `BOSUN_LISTENER=off`.
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

impl Settings {
    /// The request socket's path.
    pub fn socket_path(&self) -> PathBuf {
        proto::request_socket_path(&self.run_dir, &self.service)
    }

    /// `$NOTIFY_SOCKET` of the main process, with `ready = "notify"`.
    pub fn notify_path(&self) -> Option<PathBuf> {
        (self.ready == Some(Ready::Notify))
            .then(|| self.run_dir.join(format!(".{}-notify.sock", self.service)))
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

/// Who loads the settings, which decides what is checked beyond the values themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The supervisor about to start: the main command, the setup script and the listener
    /// binary must exist.
    Supervisor,
    /// `supervisor status`: only what it needs to find the socket.
    Status,
    /// The listener, reading what the supervisor validated (no main process, no files).
    Listener,
}

/// Where settings come from; the environment is passed in so tests need not mutate the
/// process environment.
pub struct Sources<'a> {
    /// `service.toml` as read ([`ServiceFile::read`]); `ServiceFile::default()` for none.
    pub file: ServiceFile,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// argv after `--` (wins over `exec` in the file).
    pub exec: Vec<OsString>,
    pub role: Role,
}
impl Settings {
    /// Reads `service.toml` (if present, with the `toml` feature) and the environment, and
    /// validates everything; returns every problem at once.
    pub fn load(src: &Sources<'_>) -> Result<Settings, Problems> {
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
        // Not a key of the file: where the binary is, set by the image or a test.
        s.listener = match (src.env)("BOSUN_LISTENER") {
            Some(v) if v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("listener"))),
        };
        if src.role == Role::Supervisor {
            problems.extend(starting_checks(&s, src, origins.get("setup")));
        }
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(Problems(problems))
        }
    }
}

/// What must exist before the supervisor starts anything: the main command, the setup
/// script when one is named, and the listener binary.
fn starting_checks(s: &Settings, src: &Sources<'_>, setup_at: Option<&Origin>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match s.exec.first() {
        None => {
            let file = src.file.label().unwrap_or(DEFAULT_CONFIG).to_string();
            problems.push(Problem::new(None, ProblemKind::NoMain { file }));
        }
        Some(cmd) => {
            if let Err(kind) = check_command(cmd, (src.env)("PATH").as_deref()) {
                problems.push(Problem::new(None, kind));
            }
        }
    }
    if let (Some(setup), Some(at)) = (&s.setup, setup_at) {
        if !setup.is_file() {
            let kind = ProblemKind::NoSetup(setup.display().to_string());
            problems.push(Problem::new(Some(at.clone()), kind));
        }
    }
    if let Some(l) = s.listener.as_ref().filter(|l| !l.is_file()) {
        problems.push(Problem::new(None, ProblemKind::NoListener(l.clone())));
    }
    problems
}

/// A command must exist and be executable before anything starts: `127`-style problems
/// are reported as settings errors, not as a crash loop. Without `PATH`, the default
/// search path is used, as for the spawn itself.
fn check_command(cmd: &OsStr, path: Option<&str>) -> Result<(), ProblemKind> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if cmd.as_bytes().contains(&b'/') {
        vec![PathBuf::from(cmd)]
    } else {
        std::env::split_paths(path.unwrap_or(DEFAULT_PATH))
            .map(|d| d.join(cmd))
            .collect()
    };
    match candidates.iter().find(|p| p.is_file()) {
        None => Err(ProblemKind::CommandNotFound(cmd.to_string_lossy().into())),
        Some(p) => match p.metadata() {
            Ok(m) if m.permissions().mode() & 0o111 != 0 => Ok(()),
            _ => Err(ProblemKind::CommandNotExecutable(p.clone())),
        },
    }
}

#[cfg(test)]
mod tests;
