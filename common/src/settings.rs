//! The one settings type of the supervisor and the listener: `conf/service.toml`, each key
//! overridable by `BOSUN_<KEY>`, and the main process's argv from `supervisor -- CMD ...`.
//!
//! One parser, one set of defaults, one validation. The supervisor loads the file and the
//! environment with [`Settings::load`] before anything starts; every unknown key, bad value
//! and missing setting is collected and reported together, one line each (`FILE:LINE:COL:
//! key: ...` for the file, `BOSUN_<KEY>: ...` for the environment). It then hands the
//! validated values to the listener as variables ([`Settings::to_env`]), which reads them
//! back with the same [`Settings::load`] (role [`Role::Listener`]): there is no second set
//! of rules to drift apart.
//!
//! Values are typed once here (addresses, probes, signals, durations) so that the code
//! that uses them never parses text.
//!
//! The file is read only with the `toml` feature (the supervisor's), by
//! [`ServiceFile::read`], which the listener never calls: it reads the environment alone,
//! so its binary holds no TOML parser even when a workspace build turns the feature on.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};

use crate::log::{Filter, LogFormat};
use crate::{duration, passwd};

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

/// The keys of `service.toml`, in the order problems are reported.
pub const KEYS: &[&str] = &[
    "service",
    "exec",
    "run_dir",
    "state_dir",
    "setup",
    "callbacks",
    "stop_signal",
    "stop_timeout",
    "restart",
    "ready",
    "run_as",
    "log",
    "log_format",
    "socket_mode",
    "socket_group",
    "allow_uids",
    "allow_gids",
    "max_actions",
    "action_timeout",
    "action_timeouts",
    "read_timeout",
    "kill_grace",
    "listener_start",
    "listener_idle",
    "replay_wait",
    "max_connections",
    "on_demand",
];
/// The keys of the `[on_demand]` table (`BOSUN_ON_DEMAND_<KEY>`).
pub const ON_DEMAND_KEYS: &[&str] = &[
    "listen",
    "idle",
    "backend",
    "start_timeout",
    "socket_mode",
    "socket_group",
    "max_connections",
    "connection_idle",
];

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

/// Restart policy of the main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }
}

/// When the listener is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerStart {
    /// Never (`BOSUN_LISTENER=off`): nothing but the supervisor answers the socket.
    Off,
    /// At boot, for the container's whole life.
    Boot,
    /// At the first request the supervisor does not answer itself (it answers `ping` and
    /// `status`), until it has been idle for `listener_idle`; after a crash or an idle
    /// exit, at the next such request.
    Request,
}

impl ListenerStart {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerStart::Off => "off",
            ListenerStart::Boot => "boot",
            ListenerStart::Request => "request",
        }
    }
}

/// A socket address of on-demand start: where the held socket listens, or the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Addr {
    /// `/path` (any text with a `/`) is a unix socket; `IP:PORT` is TCP. Host names are
    /// refused rather than resolved: an address that changes under a running container
    /// is not an address to hold.
    pub fn parse(s: &str) -> Result<Addr, String> {
        if s.contains('/') {
            return Ok(Addr::Unix(PathBuf::from(s)));
        }
        s.parse::<SocketAddr>().map(Addr::Tcp).map_err(|_| {
            format!(
                "{s:?} is neither a socket path (with a '/') nor an IP:PORT like 127.0.0.1:9000 \
                 (host names are not resolved: write the IP address)"
            )
        })
    }

    /// The text php-fpm's `FPM_SOCKETS` and systemd's `LISTEN_FDNAMES` use.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Unix(p) => write!(f, "{}", p.display()),
            Addr::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// How readiness of the main process is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// `socket:PATH`: a unix socket accepts.
    Socket(PathBuf),
    /// `tcp:HOST:PORT`: a TCP port accepts. HOST is an IP address or `localhost`
    /// (127.0.0.1): PID 1 never waits on a name service.
    Tcp(SocketAddr),
    /// `exec:COMMAND`: `sh -c COMMAND` exits 0.
    Exec(String),
    /// `notify`: the main process sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify).
    Notify,
}

impl Ready {
    pub fn parse(s: &str) -> Result<Ready, String> {
        let bad = || {
            format!(
                "{s:?} is not a ready probe (socket:PATH, tcp:HOST:PORT, exec:COMMAND or notify)"
            )
        };
        match s.split_once(':') {
            Some(("socket", p)) if !p.is_empty() => Ok(Ready::Socket(PathBuf::from(p))),
            Some(("tcp", a)) => {
                let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(bad)?;
                let ip = match host {
                    "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
                    h => h.parse().map_err(|_| {
                        format!(
                            "{s:?}: {h:?} is not an IP address or localhost (PID 1 does not \
                             look names up: it must never wait on DNS)"
                        )
                    })?,
                };
                Ok(Ready::Tcp(SocketAddr::new(ip, port)))
            }
            Some(("exec", c)) if !c.trim().is_empty() => Ok(Ready::Exec(c.to_string())),
            None if s == "notify" => Ok(Ready::Notify),
            _ => Err(bad()),
        }
    }

    /// The probe that fits a proxy backend: it is ready when it accepts.
    pub fn of_backend(backend: &Addr) -> Ready {
        match backend {
            Addr::Unix(p) => Ready::Socket(p.clone()),
            Addr::Tcp(a) => Ready::Tcp(*a),
        }
    }
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Socket(p) => write!(f, "socket:{}", p.display()),
            Ready::Tcp(a) => write!(f, "tcp:{a}"),
            Ready::Exec(c) => write!(f, "exec:{c}"),
            Ready::Notify => f.write_str("notify"),
        }
    }
}

/// The user the main process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    /// Set when given by name (or found in passwd): used for HOME, USER and groups.
    pub user: Option<passwd::Account>,
    /// The supplementary groups, as `initgroups(3)` (systemd's `User=`, `su`) sets them:
    /// `gid` first, then each group of `/etc/group` that lists the user.
    pub groups: Vec<Gid>,
}

/// Settings of on-demand start (DESIGN.md section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemand {
    pub listen: Addr,
    pub idle: Duration,
    /// Proxy mode when set: the main process binds it, the supervisor proxies to it.
    pub backend: Option<Addr>,
    pub start_timeout: Duration,
    /// The held socket's permission bits (`on_demand.socket_mode`, default 0660).
    pub socket_mode: u32,
    /// The held socket's group (`on_demand.socket_group`); `None`: the supervisor's.
    pub socket_gid: Option<Gid>,
    /// Proxy mode: proxied pairs plus clients held for the backend, at most (more wait in
    /// the kernel's backlog); also capped below the descriptor limit.
    pub max_connections: usize,
    /// Proxy mode: a pair with no traffic for this long is closed; `None`: never.
    pub connection_idle: Option<Duration>,
}

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
        let d = |d: Duration| duration::show(d).to_string();
        let ids = |l: &[u32]| l.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let mut env: Vec<(&str, String)> = vec![
            ("SERVICE", self.service.clone()),
            ("RUN_DIR", self.run_dir.display().to_string()),
            ("STATE_DIR", self.state_dir.display().to_string()),
            (
                "SETUP",
                self.setup
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
            ),
            ("CALLBACKS", self.callbacks.display().to_string()),
            ("STOP_SIGNAL", crate::signal::name(self.stop_signal).into()),
            ("STOP_TIMEOUT", d(self.stop_timeout)),
            ("RESTART", self.restart.as_str().into()),
            (
                "READY",
                self.ready.as_ref().map_or(String::new(), Ready::to_string),
            ),
            (
                "RUN_AS",
                self.run_as
                    .as_ref()
                    .map_or(String::new(), |r| format!("{}:{}", r.uid, r.gid)),
            ),
            ("LOG", self.log.clone()),
            ("LOG_FORMAT", self.log_format.as_str().into()),
            ("SOCKET_MODE", format!("{:04o}", self.socket_mode)),
            (
                "SOCKET_GROUP",
                self.socket_gid.map_or(String::new(), |g| g.to_string()),
            ),
            ("ALLOW_UIDS", ids(&self.allow_uids)),
            ("ALLOW_GIDS", ids(&self.allow_gids)),
            ("MAX_ACTIONS", self.max_actions.to_string()),
            ("ACTION_TIMEOUT", d(self.action_timeout)),
            (
                "ACTION_TIMEOUTS",
                self.action_timeouts
                    .iter()
                    .map(|(a, t)| format!("{a}={}", d(*t)))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("READ_TIMEOUT", d(self.read_timeout)),
            ("KILL_GRACE", d(self.kill_grace)),
            ("LISTENER_START", self.listener_start.as_str().into()),
            ("LISTENER_IDLE", self.listener_idle.map_or("0".into(), d)),
            ("REPLAY_WAIT", d(self.replay_wait)),
            (
                "MAX_CONNECTIONS",
                self.max_connections
                    .map_or(String::new(), |n| n.to_string()),
            ),
        ];
        match &self.on_demand {
            None => env.push(("ON_DEMAND_LISTEN", String::new())),
            Some(od) => {
                env.push(("ON_DEMAND_LISTEN", od.listen.to_string()));
                env.push(("ON_DEMAND_IDLE", d(od.idle)));
                env.push((
                    "ON_DEMAND_BACKEND",
                    od.backend.as_ref().map_or(String::new(), Addr::to_string),
                ));
                env.push(("ON_DEMAND_START_TIMEOUT", d(od.start_timeout)));
                env.push(("ON_DEMAND_SOCKET_MODE", format!("{:04o}", od.socket_mode)));
                env.push((
                    "ON_DEMAND_SOCKET_GROUP",
                    od.socket_gid.map_or(String::new(), |g| g.to_string()),
                ));
                env.push(("ON_DEMAND_MAX_CONNECTIONS", od.max_connections.to_string()));
                env.push((
                    "ON_DEMAND_CONNECTION_IDLE",
                    od.connection_idle.map_or("0".into(), d),
                ));
            }
        }
        env.into_iter()
            .map(|(k, v)| (format!("BOSUN_{k}"), v))
            .collect()
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

/// All problems found, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

const NOT_FOUND: &str = "main command not found: ";
const NOT_EXECUTABLE: &str = "main command not executable: ";

impl Problems {
    /// The supervisor's exit code for them: 127 when the main command does not exist,
    /// 126 when it cannot be run (as a shell would say), else 125, bosun's setup error.
    pub fn exit_code(&self) -> u8 {
        if self.0.iter().any(|e| e.starts_with(NOT_FOUND)) {
            crate::exit::NOT_FOUND
        } else if self.0.iter().any(|e| e.starts_with(NOT_EXECUTABLE)) {
            crate::exit::NOT_EXECUTABLE
        } else {
            crate::exit::SETUP
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Problems {}

/// A value as written, with where it came from (`BOSUN_X` or `FILE:LINE:COL: key`), so
/// that an error can name it.
#[derive(Debug, Clone)]
struct Raw {
    text: String,
    origin: String,
}

/// What `service.toml` said, as text in the same form as the environment's, and what is
/// wrong with the file itself (syntax, unknown keys, types), reported with the values'
/// problems by [`Settings::load`].
#[derive(Debug, Default)]
pub struct ServiceFile {
    /// Label of the file for messages.
    label: Option<String>,
    /// By key (`on_demand_listen` for `on_demand.listen`).
    values: BTreeMap<String, Raw>,
    exec: Option<Vec<String>>,
    problems: Vec<String>,
}

impl Settings {
    /// Reads `service.toml` (if present, with the `toml` feature) and the environment, and
    /// validates everything; returns every problem at once.
    pub fn load(src: &Sources<'_>) -> Result<Settings, Problems> {
        let mut errs = src.file.problems.clone();
        let settings = Loader {
            src,
            file: &src.file,
            errs: &mut errs,
        }
        .load();
        if errs.is_empty() {
            Ok(settings)
        } else {
            Err(Problems(errs))
        }
    }
}

struct Loader<'a, 'b> {
    src: &'a Sources<'a>,
    file: &'a ServiceFile,
    errs: &'b mut Vec<String>,
}

impl Loader<'_, '_> {
    /// A value from the environment wins over the file's.
    fn get(&self, key: &str) -> Option<Raw> {
        let name = format!("BOSUN_{}", key.to_ascii_uppercase());
        match (self.src.env)(&name) {
            Some(text) => Some(Raw { text, origin: name }),
            None => self.file.values.get(key).cloned(),
        }
    }

    /// Like `get`, an empty value being the same as none (the default).
    fn get_set(&self, key: &str) -> Option<Raw> {
        self.get(key).filter(|r| !r.text.trim().is_empty())
    }

    fn bad(&mut self, origin: &str, msg: impl fmt::Display) {
        self.errs.push(format!("{origin}: {msg}"));
    }

    fn parsed<T>(&mut self, key: &str, default: T, parse: impl Fn(&str) -> Result<T, String>) -> T {
        match self.get_set(key) {
            None => default,
            Some(r) => match parse(r.text.trim()) {
                Ok(v) => v,
                Err(e) => {
                    self.bad(&r.origin, e);
                    default
                }
            },
        }
    }

    fn duration(&mut self, key: &str, default: Duration) -> Duration {
        self.parsed(key, default, |s| {
            duration::parse(s).map_err(|e| e.to_string())
        })
    }

    fn optional<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let r = self.get_set(key)?;
        match parse(r.text.trim()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.bad(&r.origin, e);
                None
            }
        }
    }

    fn where_to_set(&self, key: &str) -> String {
        match &self.file.label {
            Some(l) => format!("set `{key}` in {l} or BOSUN_{}", key.to_ascii_uppercase()),
            None => format!("set BOSUN_{}", key.to_ascii_uppercase()),
        }
    }

    fn load(mut self) -> Settings {
        let role = self.src.role;
        let service = match self.get("service") {
            Some(r) if crate::name::is_valid(&r.text) => r.text,
            Some(r) => {
                let msg = format!(
                    "{:?} is not a valid service name ({})",
                    r.text,
                    crate::name::RULE
                );
                self.bad(&r.origin, msg);
                String::new()
            }
            None => {
                let msg = format!(
                    "no service name: {} (it names the request socket)",
                    self.where_to_set("service")
                );
                self.errs.push(msg);
                String::new()
            }
        };

        let exec: Vec<OsString> = if !self.src.exec.is_empty() {
            self.src.exec.clone()
        } else {
            self.file
                .exec
                .iter()
                .flatten()
                .map(OsString::from)
                .collect()
        };
        if role == Role::Supervisor {
            match exec.first() {
                None => {
                    let msg = format!(
                        "no main process: set `exec = [\"cmd\", \"arg\"]` in {} or run `supervisor -- CMD ARG...`",
                        self.file.label.as_deref().unwrap_or(DEFAULT_CONFIG)
                    );
                    self.errs.push(msg);
                }
                Some(cmd) => {
                    let path = (self.src.env)("PATH");
                    if let Err(e) = check_command(cmd, path.as_deref()) {
                        self.errs.push(e);
                    }
                }
            }
        }

        let run_dir = self.parsed("run_dir", PathBuf::from("/run"), |s| Ok(PathBuf::from(s)));
        let state_dir = self.parsed("state_dir", PathBuf::from(DEFAULT_STATE_DIR), |s| {
            Ok(PathBuf::from(s))
        });
        let setup = match self.get("setup") {
            Some(r) if !r.text.is_empty() => {
                if role == Role::Supervisor && !Path::new(&r.text).is_file() {
                    let msg = format!("setup script {:?} does not exist", r.text);
                    self.bad(&r.origin, msg);
                }
                Some(PathBuf::from(r.text))
            }
            Some(_) => None,
            None => Some(PathBuf::from(DEFAULT_SETUP)).filter(|p| p.is_file()),
        };
        let callbacks = self.parsed("callbacks", PathBuf::from(DEFAULT_CALLBACKS), |s| {
            Ok(PathBuf::from(s))
        });
        let stop_signal = self.parsed("stop_signal", Signal::SIGTERM, crate::signal::parse);
        let stop_timeout = self.duration("stop_timeout", Duration::from_secs(8));
        let restart = self.parsed("restart", Restart::No, |s| match s {
            "no" => Ok(Restart::No),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(format!(
                "{s:?} is not a restart policy (no, on-failure, always)"
            )),
        });
        let ready = self.optional("ready", Ready::parse);
        let run_as = self.optional("run_as", parse_run_as);
        let log = self.parsed("log", String::new(), |s| {
            Filter::parse(s)
                .map(|_| s.to_string())
                .map_err(|e| e.to_string())
        });
        let log_format = self.parsed("log_format", LogFormat::Text, LogFormat::parse);
        let socket_mode = self.parsed("socket_mode", 0o660, parse_mode);
        let socket_gid = self.optional("socket_group", parse_group);
        let allow_uids = self.parsed("allow_uids", Vec::new(), |s| {
            id_list(s, lookup_user, "user")
        });
        let allow_gids = self.parsed("allow_gids", Vec::new(), |s| {
            id_list(s, lookup_group, "group")
        });
        let max_actions = self.parsed("max_actions", 8, whole_number);
        let action_timeout = self.duration("action_timeout", Duration::from_secs(3600));
        let action_timeouts = self.parsed("action_timeouts", BTreeMap::new(), action_timeouts);
        let read_timeout = self.duration("read_timeout", Duration::from_secs(5));
        let kill_grace = self.duration("kill_grace", Duration::from_secs(5));
        let listener_start = self.parsed("listener_start", ListenerStart::Request, |s| match s {
            "request" => Ok(ListenerStart::Request),
            "boot" => Ok(ListenerStart::Boot),
            _ => Err(format!(
                "{s:?} is not when to start the listener (request, boot)"
            )),
        });
        let listener_idle = Some(self.duration("listener_idle", Duration::from_secs(600)))
            .filter(|d| !d.is_zero() && listener_start == ListenerStart::Request);
        let replay_wait = self.parsed("replay_wait", REPLAY_WAIT, |s| match duration::parse(s) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(format!(
                "{s:?} is not a duration above 0 (a repeated key must be able to wait for its run)"
            )),
            Err(e) => Err(e.to_string()),
        });
        let max_connections = self.optional("max_connections", whole_number);

        // Every on-demand value is checked, also without `listen`; an empty
        // BOSUN_ON_DEMAND_LISTEN turns on-demand start off for this container.
        let listen = self.optional("on_demand_listen", Addr::parse);
        let idle = self.duration("on_demand_idle", Duration::from_secs(20 * 60));
        let start_timeout = self.duration("on_demand_start_timeout", Duration::from_secs(30));
        let backend = self.optional("on_demand_backend", Addr::parse);
        let od_mode = self.parsed("on_demand_socket_mode", ON_DEMAND_SOCKET_MODE, parse_mode);
        let od_gid = self.optional("on_demand_socket_group", parse_group);
        let od_max_connections = self.parsed(
            "on_demand_max_connections",
            ON_DEMAND_MAX_CONNECTIONS,
            whole_number,
        );
        let connection_idle =
            Some(self.duration("on_demand_connection_idle", ON_DEMAND_CONNECTION_IDLE))
                .filter(|d| !d.is_zero());
        let on_demand = listen.map(|listen| OnDemand {
            listen,
            idle,
            backend,
            start_timeout,
            socket_mode: od_mode,
            socket_gid: od_gid,
            max_connections: od_max_connections,
            connection_idle,
        });
        // Proxy mode: unless told otherwise, the backend is ready when it accepts.
        let ready = match (ready, on_demand.as_ref().and_then(|o| o.backend.as_ref())) {
            (None, Some(b)) => Some(Ready::of_backend(b)),
            (ready, _) => ready,
        };

        // Not a key of the file: where the binary is, set by the image or a test.
        let listener = match (self.src.env)("BOSUN_LISTENER") {
            Some(v) if v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("listener"))),
        };
        if let (Some(l), Role::Supervisor) = (&listener, role) {
            if !l.is_file() {
                self.errs.push(format!(
                    "listener binary {} not found (set BOSUN_LISTENER to its path, or to off)",
                    l.display()
                ));
            }
        }

        Settings {
            service,
            exec,
            run_dir,
            state_dir,
            setup,
            callbacks,
            stop_signal,
            stop_timeout,
            restart,
            ready,
            run_as,
            log,
            log_format,
            socket_mode,
            socket_gid,
            allow_uids,
            allow_gids,
            max_actions,
            action_timeout,
            action_timeouts,
            read_timeout,
            kill_grace,
            on_demand,
            listener,
            listener_start,
            listener_idle,
            replay_wait,
            max_connections,
        }
    }
}

/// A count of at least 1 (`max_actions`, `max_connections`, `on_demand.max_connections`).
fn whole_number(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// `rotate-logs=5m,nightly_backup=3h` (`_` read as `-`, as in the callbacks' names).
fn action_timeouts(s: &str) -> Result<BTreeMap<String, Duration>, String> {
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((a, d)) = item.split_once('=') else {
            bad.push(format!(
                "{item:?} is not ACTION=DURATION, as in rotate-logs=5m,nightly-backup=3h"
            ));
            continue;
        };
        let a = a.trim().replace('_', "-");
        if let Err(e) = crate::name::check(&a) {
            bad.push(format!("in {item:?}: {e}"));
        }
        match duration::parse(d) {
            Ok(d) => {
                out.insert(a, d);
            }
            Err(e) => bad.push(format!("in {item:?}: {e}")),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad.join("; "))
    }
}

/// Numbers or names, comma separated.
fn id_list(s: &str, by_name: fn(&str) -> Option<u32>, what: &str) -> Result<Vec<u32>, String> {
    let mut ids = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.parse::<u32>().ok().or_else(|| by_name(item)) {
            Some(id) => ids.push(id),
            None => {
                return Err(format!(
                    "{item:?} is neither a number nor a known {what} name (a comma-separated list of ids or names)"
                ))
            }
        }
    }
    Ok(ids)
}

fn lookup_user(name: &str) -> Option<u32> {
    passwd::user_by_name(name).map(|u| u.uid)
}

fn lookup_group(name: &str) -> Option<u32> {
    passwd::group_by_name(name)
}

/// `name`, `uid` or `uid:gid`.
pub fn parse_run_as(s: &str) -> Result<RunAs, String> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let (uid, user) = match u.parse::<u32>() {
        Ok(n) => (Uid::from_raw(n), passwd::user_by_uid(n)),
        Err(_) => {
            let user = passwd::user_by_name(u)
                .ok_or_else(|| format!("no user named {u:?} in {}", passwd::PASSWD))?;
            (Uid::from_raw(user.uid), Some(user))
        }
    };
    let gid = match g {
        Some(g) => parse_group(g)?,
        None => Gid::from_raw(user.as_ref().map_or(uid.as_raw(), |u| u.gid)),
    };
    let groups = match &user {
        Some(u) => passwd::groups_of(&u.name, gid.as_raw())
            .into_iter()
            .map(Gid::from_raw)
            .collect(),
        None => vec![gid],
    };
    Ok(RunAs {
        uid,
        gid,
        user,
        groups,
    })
}

/// A socket's permission bits: octal, `0660`, `660` or `0o660`; nothing beyond 0777 (no
/// setuid, setgid or sticky bit: they mean nothing on a socket).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() && !digits.starts_with('+') => Ok(m),
        _ => Err(format!(
            "{s:?} is not an octal file mode like 0660 (permission bits only: 0000 to 0777)"
        )),
    }
}

/// A group name or number.
pub fn parse_group(s: &str) -> Result<Gid, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    passwd::group_by_name(s)
        .map(Gid::from_raw)
        .ok_or_else(|| format!("no group named {s:?} in {}", passwd::GROUP))
}

/// A command must exist and be executable before anything starts: `127`-style problems
/// are reported as settings errors, not as a crash loop. Without `PATH`, the default
/// search path is used, as for the spawn itself.
fn check_command(cmd: &OsStr, path: Option<&str>) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let shown = cmd.to_string_lossy();
    let candidates: Vec<PathBuf> = if cmd.as_bytes().contains(&b'/') {
        vec![PathBuf::from(cmd)]
    } else {
        std::env::split_paths(path.unwrap_or(DEFAULT_PATH))
            .map(|d| d.join(cmd))
            .collect()
    };
    match candidates.iter().find(|p| p.is_file()) {
        None => Err(format!(
            "{NOT_FOUND}{shown:?} (is it installed, and on PATH?)"
        )),
        Some(p) => match p.metadata() {
            Ok(m) if m.permissions().mode() & 0o111 != 0 => Ok(()),
            _ => Err(format!("{NOT_EXECUTABLE}{}", p.display())),
        },
    }
}

#[cfg(feature = "toml")]
impl ServiceFile {
    /// Reads and checks the file; a missing file is no error (everything can come from
    /// the environment), anything else wrong with it is.
    pub fn read(path: &Path) -> ServiceFile {
        let label = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => ServiceFile::parse(&label, &text),
            Err(e) => ServiceFile {
                problems: if e.kind() == std::io::ErrorKind::NotFound {
                    Vec::new()
                } else {
                    vec![format!("{label}: cannot read: {e}")]
                },
                label: Some(label),
                ..ServiceFile::default()
            },
        }
    }

    /// Checks the text of a `service.toml` named `label` in messages.
    pub fn parse(label: &str, text: &str) -> ServiceFile {
        let mut problems = Vec::new();
        let mut f = file::parse(label, text, &mut problems);
        f.problems = problems;
        f
    }
}

/// Checks the text of a `service.toml`, reporting every problem of the file itself
/// (syntax, unknown keys, wrong types) as `FILE:LINE:COL: message`. Values are checked
/// later, after the environment's overrides. Public for the fuzz target.
#[cfg(feature = "toml")]
pub fn check_text(label: &str, text: &str) -> Vec<String> {
    ServiceFile::parse(label, text).problems
}

/// `service.toml` read with spans, keys checked one by one: the serde way stops at the
/// first unknown key, and a file with four mistakes must report four.
#[cfg(feature = "toml")]
mod file {
    use std::ops::Range;

    use toml::de::{DeTable, DeValue};

    use super::{Raw, ServiceFile, KEYS, ON_DEMAND_KEYS};

    struct Ctx<'a> {
        label: &'a str,
        text: &'a str,
        errs: &'a mut Vec<String>,
    }

    impl Ctx<'_> {
        fn at(&self, span: Range<usize>) -> String {
            let (l, c) = line_col(self.text, span.start);
            format!("{}:{l}:{c}", self.label)
        }

        fn bad(&mut self, span: Range<usize>, msg: impl std::fmt::Display) {
            let at = self.at(span);
            self.errs.push(format!("{at}: {msg}"));
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    pub(super) fn parse(label: &str, text: &str, errs: &mut Vec<String>) -> ServiceFile {
        let mut out = ServiceFile {
            label: Some(label.to_string()),
            ..ServiceFile::default()
        };
        let (table, syntax) = DeTable::parse_recoverable(text);
        let mut cx = Ctx { label, text, errs };
        for e in &syntax {
            let msg = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(s) => cx.bad(s, msg),
                None => cx.errs.push(format!("{label}: {msg}")),
            }
        }
        for (k, v) in table.get_ref() {
            let key: &str = k.get_ref();
            if !KEYS.contains(&key) {
                cx.bad(
                    k.span(),
                    format!(
                        "unknown key `{}` (known keys: {})",
                        key.escape_debug(),
                        KEYS.join(", ")
                    ),
                );
                continue;
            }
            let span = v.span();
            match (key, v.get_ref()) {
                ("exec", DeValue::Array(items)) => {
                    let mut argv = Vec::new();
                    for i in items.iter() {
                        match i.get_ref() {
                            DeValue::String(s) => argv.push(s.to_string()),
                            _ => cx.bad(i.span(), "exec: expected a string"),
                        }
                    }
                    out.exec = Some(argv);
                }
                ("exec", _) => cx.bad(
                    span,
                    "exec: expected an array of strings, as [\"cmd\", \"arg\"]",
                ),
                ("on_demand", DeValue::Table(t)) => {
                    for (k, v) in t {
                        let sub: &str = k.get_ref();
                        if !ON_DEMAND_KEYS.contains(&sub) {
                            cx.bad(
                                k.span(),
                                format!(
                                    "unknown key `on_demand.{}` (known: {})",
                                    sub.escape_debug(),
                                    ON_DEMAND_KEYS.join(", ")
                                ),
                            );
                            continue;
                        }
                        let name = format!("on_demand.{sub}");
                        if let Some(text) = scalar(&mut cx, &name, v.get_ref(), v.span()) {
                            let origin = format!("{}: {name}", cx.at(v.span()));
                            out.values
                                .insert(format!("on_demand_{sub}"), Raw { text, origin });
                        }
                    }
                }
                ("on_demand", _) => cx.bad(span, "on_demand: expected a table ([on_demand])"),
                ("action_timeouts", DeValue::Table(t)) => {
                    let mut items = Vec::new();
                    for (k, v) in t {
                        match v.get_ref() {
                            DeValue::String(d) => items.push(format!("{}={d}", k.get_ref())),
                            _ => cx.bad(
                                v.span(),
                                format!(
                                    "action_timeouts.{}: expected a duration string like \"5m\"",
                                    k.get_ref().escape_debug()
                                ),
                            ),
                        }
                    }
                    insert(&mut out, &cx, key, items.join(","), span);
                }
                ("allow_uids" | "allow_gids", DeValue::Array(items)) => {
                    let mut ids = Vec::new();
                    for i in items.iter() {
                        match i.get_ref() {
                            DeValue::Integer(n) => ids.push(integer(n, false)),
                            DeValue::String(s) => ids.push(s.to_string()),
                            _ => cx.bad(i.span(), format!("{key}: expected an id or a name")),
                        }
                    }
                    insert(&mut out, &cx, key, ids.join(","), span);
                }
                (_, value) => {
                    if let Some(text) = scalar(&mut cx, key, value, span.clone()) {
                        insert(&mut out, &cx, key, text, span);
                    }
                }
            }
        }
        out
    }

    fn insert(out: &mut ServiceFile, cx: &Ctx<'_>, key: &str, text: String, span: Range<usize>) {
        let origin = format!("{}: {key}", cx.at(span));
        out.values.insert(key.to_string(), Raw { text, origin });
    }

    /// A string, or an integer where a number is meant; anything else is reported.
    fn scalar(cx: &mut Ctx<'_>, key: &str, v: &DeValue<'_>, span: Range<usize>) -> Option<String> {
        match v {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(n) if key == "max_actions" || key == "max_connections" => {
                Some(integer(n, false))
            }
            DeValue::Integer(n)
                if matches!(
                    key,
                    "on_demand.max_connections" | "socket_group" | "on_demand.socket_group"
                ) =>
            {
                Some(integer(n, false))
            }
            DeValue::Integer(n) if key == "socket_mode" || key == "on_demand.socket_mode" => {
                Some(integer(n, true))
            }
            _ => {
                cx.bad(span, format!("{key}: expected a string"));
                None
            }
        }
    }

    /// The integer's text; a mode written `0o660` stays octal, one written `660` is read
    /// as the octal digits it looks like.
    fn integer(n: &toml::de::DeInteger<'_>, octal: bool) -> String {
        match (n.radix(), octal) {
            (10, _) => n.as_str().to_string(),
            (r, true) => i64::from_str_radix(n.as_str(), r)
                .map_or(n.as_str().to_string(), |v| format!("{v:o}")),
            (r, false) => {
                i64::from_str_radix(n.as_str(), r).map_or(n.as_str().to_string(), |v| v.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let env: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| {
            let v = env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            v.or_else(|| (k == "BOSUN_LISTENER").then(|| "off".to_string()))
        }
    }

    fn load_env(pairs: &[(&str, &str)], role: Role) -> Result<Settings, Problems> {
        let env = env_of(pairs);
        Settings::load(&Sources {
            file: ServiceFile::default(),
            env: &env,
            exec: Vec::new(),
            role,
        })
    }

    #[test]
    fn defaults() {
        let s = load_env(&[("BOSUN_SERVICE", "mysql")], Role::Listener).unwrap();
        assert_eq!(s.service, "mysql");
        assert_eq!(s.callbacks, PathBuf::from(DEFAULT_CALLBACKS));
        assert_eq!(s.action_timeout, Duration::from_secs(3600));
        assert_eq!(s.max_actions, 8);
        assert_eq!(s.stop_timeout, Duration::from_secs(8));
        assert_eq!(s.read_timeout, Duration::from_secs(5));
        assert_eq!(s.kill_grace, Duration::from_secs(5));
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.restart, Restart::No);
        assert_eq!(s.socket_mode, 0o660);
        assert_eq!(s.socket_path(), PathBuf::from("/run/mysql-request.sock"));
        assert!(s.allows(1234, 1234));
        assert!(s.on_demand.is_none());
        assert_eq!(s.replay_wait, REPLAY_WAIT);
        assert_eq!(s.max_connections, None, "the listener computes it");
        // Unset reads back as unset: the listener gets no fixed number from the supervisor.
        let env = s.to_env();
        assert!(env.contains(&("BOSUN_MAX_CONNECTIONS".into(), String::new())));
        assert!(env.contains(&("BOSUN_REPLAY_WAIT".into(), "10m".into())));
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let back = load_env(&pairs, Role::Listener).unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
    }

    #[test]
    fn every_environment_problem_at_once() {
        let e = load_env(
            &[
                ("BOSUN_STOP_TIMEOUT", "8 parsecs"),
                ("BOSUN_STOP_SIGNAL", "TERMINATE"),
                ("BOSUN_RESTART", "sometimes"),
                ("BOSUN_READY", "http://x"),
                ("BOSUN_LOG", "loud=yes"),
                ("BOSUN_LOG_FORMAT", "xml"),
                ("BOSUN_MAX_ACTIONS", "0"),
                ("BOSUN_ACTION_TIMEOUTS", "a=1s,b"),
                ("BOSUN_ALLOW_UIDS", "0,no-such-user-here"),
                ("BOSUN_ON_DEMAND_LISTEN", "localhost"),
                ("BOSUN_ON_DEMAND_BACKEND", "localhost:9000"),
                ("BOSUN_REPLAY_WAIT", "soon"),
                ("BOSUN_MAX_CONNECTIONS", "many"),
            ],
            Role::Listener,
        )
        .unwrap_err();
        let all = e.to_string();
        for needle in [
            "no service name: set BOSUN_SERVICE",
            "BOSUN_STOP_TIMEOUT: \"8 parsecs\" is not a duration",
            "BOSUN_STOP_SIGNAL: \"TERMINATE\" is not a signal name",
            "BOSUN_RESTART: \"sometimes\" is not a restart policy",
            "BOSUN_READY: \"http://x\" is not a ready probe",
            "BOSUN_LOG: \"loud=yes\" is not a level",
            "BOSUN_LOG_FORMAT: \"xml\" is not a log format",
            "BOSUN_MAX_ACTIONS: \"0\" is not a whole number",
            "BOSUN_ACTION_TIMEOUTS: \"b\" is not ACTION=DURATION",
            "BOSUN_ALLOW_UIDS: \"no-such-user-here\" is neither",
            "BOSUN_ON_DEMAND_LISTEN: \"localhost\" is neither a socket path",
            "BOSUN_ON_DEMAND_BACKEND: \"localhost:9000\" is neither a socket path",
            "BOSUN_REPLAY_WAIT: \"soon\" is not a duration",
            "BOSUN_MAX_CONNECTIONS: \"many\" is not a whole number of at least 1",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(e.0.len(), 14, "{all}");
        // Zero is no limit and no wait: both refused.
        let e = load_env(
            &[
                ("BOSUN_SERVICE", "x"),
                ("BOSUN_REPLAY_WAIT", "0s"),
                ("BOSUN_MAX_CONNECTIONS", "0"),
            ],
            Role::Listener,
        )
        .unwrap_err();
        let all = e.to_string();
        assert!(
            all.contains("BOSUN_REPLAY_WAIT: \"0s\" is not a duration above 0"),
            "{all}"
        );
        assert!(
            all.contains("BOSUN_MAX_CONNECTIONS: \"0\" is not a whole number"),
            "{all}"
        );
        assert_eq!(e.0.len(), 2, "{all}");
        assert_eq!(e.exit_code(), 125);
    }

    #[test]
    fn addresses_and_probes() {
        assert_eq!(
            Addr::parse("/run/php/forum.sock"),
            Ok(Addr::Unix("/run/php/forum.sock".into()))
        );
        assert_eq!(
            Addr::parse("127.0.0.1:9000").unwrap().key(),
            "127.0.0.1:9000"
        );
        assert_eq!(Addr::parse("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(Addr::parse("localhost").is_err());
        assert!(Addr::parse("localhost:9000").is_err());
        for (text, ready) in [
            ("socket:/run/a.sock", Ready::Socket("/run/a.sock".into())),
            (
                "tcp:10.0.0.5:3306",
                Ready::Tcp("10.0.0.5:3306".parse().unwrap()),
            ),
            ("tcp:[::1]:80", Ready::Tcp("[::1]:80".parse().unwrap())),
            ("exec:pg_isready -q", Ready::Exec("pg_isready -q".into())),
            ("notify", Ready::Notify),
        ] {
            let r = Ready::parse(text).unwrap();
            assert_eq!(r, ready);
            assert_eq!(r.to_string(), text, "reads back");
        }
        for bad in [
            "tcp:db",
            "tcp::80",
            "tcp:db:99999",
            "socket:",
            "exec: ",
            "http://x",
        ] {
            assert!(Ready::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Ready::of_backend(&Addr::parse("127.0.0.1:9000").unwrap()),
            Ready::Tcp("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(
            Ready::parse("tcp:localhost:9000"),
            Ok(Ready::Tcp("127.0.0.1:9000".parse().unwrap()))
        );
        let e = Ready::parse("tcp:db:3306").unwrap_err();
        assert!(e.contains("not an IP address or localhost"), "{e}");
    }

    #[test]
    fn per_action_timeouts_and_allow_lists() {
        let s = load_env(
            &[
                ("BOSUN_SERVICE", "x"),
                ("BOSUN_ACTION_TIMEOUT", "10m"),
                ("BOSUN_ACTION_TIMEOUTS", "rotate-logs=5m, nightly_backup=3h"),
                ("BOSUN_ALLOW_UIDS", "1000, root"),
                ("BOSUN_ALLOW_GIDS", "33"),
            ],
            Role::Listener,
        )
        .unwrap();
        assert_eq!(s.timeout_of("rotate-logs"), Duration::from_secs(300));
        assert_eq!(
            s.timeout_of("nightly-backup"),
            Duration::from_secs(3 * 3600)
        );
        assert_eq!(s.timeout_of("other"), Duration::from_secs(600));
        assert_eq!(s.allow_uids, [1000, 0]);
        assert!(s.allows(0, 0), "root is always allowed");
        assert!(s.allows(1000, 5));
        assert!(s.allows(5, 33));
        assert!(!s.allows(5, 5));
        assert!(s.allows_groups(5, 5, &[7, 33]), "a supplementary group");
        assert!(!s.allows_groups(5, 5, &[7, 8]));
    }

    #[test]
    fn to_env_reads_back_the_same() {
        let s = load_env(
            &[
                ("BOSUN_SERVICE", "php"),
                ("BOSUN_STOP_SIGNAL", "QUIT"),
                ("BOSUN_STOP_TIMEOUT", "1m 30s"),
                ("BOSUN_RESTART", "on-failure"),
                ("BOSUN_RUN_AS", "1000:1001"),
                ("BOSUN_LOG", "warn,listener::runner=debug"),
                ("BOSUN_LOG_FORMAT", "json"),
                ("BOSUN_SOCKET_MODE", "0640"),
                ("BOSUN_SOCKET_GROUP", "33"),
                ("BOSUN_ALLOW_UIDS", "0,33"),
                ("BOSUN_MAX_ACTIONS", "3"),
                ("BOSUN_ACTION_TIMEOUTS", "a=5m,b=250ms"),
                ("BOSUN_KILL_GRACE", "2"),
                ("BOSUN_LISTENER_START", "boot"),
                ("BOSUN_REPLAY_WAIT", "1m 30s"),
                ("BOSUN_MAX_CONNECTIONS", "300"),
                ("BOSUN_ON_DEMAND_LISTEN", "127.0.0.1:8080"),
                ("BOSUN_ON_DEMAND_BACKEND", "/run/php/fpm.sock"),
                ("BOSUN_ON_DEMAND_IDLE", "5m"),
                ("BOSUN_ON_DEMAND_SOCKET_MODE", "0o600"),
                ("BOSUN_ON_DEMAND_SOCKET_GROUP", "root"),
                ("BOSUN_ON_DEMAND_MAX_CONNECTIONS", "12"),
                ("BOSUN_ON_DEMAND_CONNECTION_IDLE", "0"),
            ],
            Role::Listener,
        )
        .unwrap();
        let env = s.to_env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let back = load_env(&pairs, Role::Listener).unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
        assert_eq!(back.ready, Some(Ready::Socket("/run/php/fpm.sock".into())));
        assert_eq!(back.stop_signal, Signal::SIGQUIT);
        assert_eq!(back.socket_mode, 0o640);
        assert_eq!(back.replay_wait, Duration::from_secs(90));
        assert_eq!(back.max_connections, Some(300));
        let od = back.on_demand.unwrap();
        assert_eq!(
            (od.socket_mode, od.socket_gid),
            (0o600, Some(Gid::from_raw(0)))
        );
        assert_eq!((od.max_connections, od.connection_idle), (12, None));
    }

    #[test]
    fn on_demand_socket_mode_and_group() {
        let s = load_env(
            &[
                ("BOSUN_SERVICE", "php"),
                ("BOSUN_ON_DEMAND_LISTEN", "/run/php/a.sock"),
            ],
            Role::Listener,
        )
        .unwrap();
        let od = s.on_demand.unwrap();
        assert_eq!(od.socket_mode, 0o660, "never world-connectable by default");
        assert_eq!(od.socket_gid, None);
        assert_eq!(od.max_connections, ON_DEMAND_MAX_CONNECTIONS);
        assert_eq!(od.connection_idle, Some(ON_DEMAND_CONNECTION_IDLE));
        for (text, mode) in [
            ("0660", 0o660),
            ("660", 0o660),
            ("0o640", 0o640),
            ("0", 0),
            ("0777", 0o777),
        ] {
            assert_eq!(parse_mode(text), Ok(mode), "{text}");
        }
        for bad in [
            "4755",
            "01777",
            "0888",
            "rw-rw----",
            "",
            "0o",
            "+660",
            "-1",
            "1000",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
        let e = load_env(
            &[
                ("BOSUN_SERVICE", "php"),
                ("BOSUN_ON_DEMAND_LISTEN", "/run/php/a.sock"),
                ("BOSUN_ON_DEMAND_SOCKET_MODE", "2770"),
                ("BOSUN_ON_DEMAND_SOCKET_GROUP", "no-such-group-here"),
                ("BOSUN_ON_DEMAND_MAX_CONNECTIONS", "0"),
            ],
            Role::Listener,
        )
        .unwrap_err();
        let all = e.to_string();
        for needle in [
            "BOSUN_ON_DEMAND_SOCKET_MODE: \"2770\" is not an octal file mode",
            "BOSUN_ON_DEMAND_SOCKET_GROUP: no group named \"no-such-group-here\"",
            "BOSUN_ON_DEMAND_MAX_CONNECTIONS: \"0\" is not a whole number",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(e.0.len(), 3, "{all}");
        assert_eq!(e.exit_code(), 125);
    }

    #[test]
    fn run_as_sets_supplementary_groups() {
        // The first account of this machine that /etc/group lists as a member somewhere
        // (postgres in ssl-cert on the CI image); skipped where there is none.
        let groups = std::fs::read_to_string(passwd::GROUP).unwrap_or_default();
        let passwd_text = std::fs::read_to_string(passwd::PASSWD).unwrap_or_default();
        let Some(a) = passwd::parse_passwd(&passwd_text)
            .find(|a| !passwd::member_of(&groups, &a.name).is_empty())
        else {
            eprintln!("skipped: no user here is listed in a group");
            return;
        };
        let extra = passwd::member_of(&groups, &a.name);
        let r = parse_run_as(&a.name).unwrap();
        assert_eq!(r.groups[0].as_raw(), a.gid, "the primary group first");
        for g in &extra {
            assert!(
                r.groups.contains(&Gid::from_raw(*g)),
                "{g} of {:?}",
                r.groups
            );
        }
        // By number too: the account is found by uid and its groups with it.
        let r2 = parse_run_as(&format!("{}:{}", a.uid, a.gid)).unwrap();
        assert_eq!(r2.groups, r.groups);
        // A uid with no account has its one group only.
        assert_eq!(
            parse_run_as("4242424:77").unwrap().groups,
            [Gid::from_raw(77)]
        );
    }

    #[test]
    fn run_as_forms() {
        assert_eq!(parse_run_as("0").unwrap().uid, Uid::from_raw(0));
        let r = parse_run_as("1000:1001").unwrap();
        assert_eq!((r.uid.as_raw(), r.gid.as_raw()), (1000, 1001));
        assert_eq!(parse_run_as("root").unwrap().gid, Gid::from_raw(0));
        assert!(parse_run_as("no-such-user-xyz")
            .unwrap_err()
            .contains("no user named"));
    }

    #[test]
    fn command_checks() {
        assert!(
            check_command(OsStr::new("sh"), None).is_ok(),
            "found on the default PATH"
        );
        assert!(check_command(OsStr::new("sh"), Some("/nonexistent"))
            .unwrap_err()
            .starts_with(NOT_FOUND));
        assert!(check_command(OsStr::new("/etc/passwd"), None)
            .unwrap_err()
            .starts_with(NOT_EXECUTABLE));
    }

    #[cfg(feature = "toml")]
    mod file {
        use super::*;
        use std::io::Write;

        pub(super) fn load_with(
            toml: &str,
            env: &[(&str, &str)],
            exec: &[&str],
        ) -> Result<Settings, Problems> {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(toml.as_bytes()).unwrap();
            let env = env_of(env);
            Settings::load(&Sources {
                file: ServiceFile::read(f.path()),
                env: &env,
                exec: exec.iter().map(OsString::from).collect(),
                role: Role::Supervisor,
            })
        }

        #[test]
        fn file_and_env_override() {
            let s = load_with(
                "service = \"mysql\"\nexec = [\"sleep\", \"1\"]\nstop_timeout = \"20s\"\nrestart = \"always\"\n",
                &[("BOSUN_STOP_TIMEOUT", "3s"), ("BOSUN_STOP_SIGNAL", "QUIT")],
                &[],
            )
            .unwrap();
            assert_eq!(s.service, "mysql");
            assert_eq!(s.exec, vec!["sleep", "1"]);
            assert_eq!(s.stop_timeout, Duration::from_secs(3));
            assert_eq!(s.stop_signal, Signal::SIGQUIT);
            assert_eq!(s.restart, Restart::Always);
        }

        #[test]
        fn command_line_exec_wins() {
            let s = load_with("service = \"a\"\nexec = [\"false\"]\n", &[], &["true"]).unwrap();
            assert_eq!(s.exec, vec!["true"]);
        }

        #[test]
        fn every_problem_at_once_with_positions() {
            let e = load_with(
                "colour = 1\nshape = 2\nstop_timeout = \"8 parsecs\"\nrestart = \"sometimes\"\n[on_demand]\nbackend = \"localhost:9000\"\nlisen = 1\n",
                &[("BOSUN_STOP_SIGNAL", "TERMINATE"), ("BOSUN_READY", "http://x")],
                &["/no/such/cmd"],
            )
            .unwrap_err();
            let all = e.to_string();
            for needle in [
                ":1:1: unknown key `colour`",
                ":2:1: unknown key `shape`",
                ":3:16: stop_timeout: \"8 parsecs\" is not a duration",
                ":4:11: restart: \"sometimes\" is not a restart policy",
                ":6:11: on_demand.backend: \"localhost:9000\" is neither",
                ":7:1: unknown key `on_demand.lisen`",
                "no service name",
                "BOSUN_STOP_SIGNAL: \"TERMINATE\" is not a signal name",
                "BOSUN_READY: \"http://x\" is not a ready probe",
                "main command not found: \"/no/such/cmd\"",
            ] {
                assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
            }
            assert_eq!(e.0.len(), 10, "{all}");
            assert_eq!(e.exit_code(), 127);
        }

        #[test]
        fn types_and_syntax_have_positions() {
            let e = load_with("service = \"a\"\nexec = \"sleep 1\"\n", &[], &["true"]).unwrap_err();
            assert!(
                e.to_string().contains(":2:8: exec: expected an array"),
                "{e}"
            );
            let errs = check_text("s.toml", "service = \"a\"\nx = \n[[\n");
            assert!(!errs.is_empty());
            for e in &errs {
                assert!(e.starts_with("s.toml:"), "{e}");
            }
            // Every error is one line, whatever the keys hold.
            let errs = check_text(
                "s.toml",
                "\"a\\nb\" = 1\n[on_demand]\n\"c\\nd\" = 2\n[action_timeouts]\n\"e\\nf\" = 3\n",
            );
            assert_eq!(errs.len(), 3, "{errs:?}");
            for e in &errs {
                assert!(e.starts_with("s.toml:") && !e.contains('\n'), "{e:?}");
            }
        }

        #[test]
        fn the_fuzz_corpus_gives_one_line_errors_and_no_panic() {
            // What the fuzz target checks, over its stored corpus, in every test run.
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/service_toml");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return;
            };
            for e in entries.flatten() {
                let bytes = std::fs::read(e.path()).unwrap();
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    continue;
                };
                for err in check_text("service.toml", text) {
                    assert!(
                        err.starts_with("service.toml") && !err.contains('\n'),
                        "{:?}: {err:?}",
                        e.path()
                    );
                }
            }
        }

        #[test]
        fn on_demand_and_listener_settings() {
            let s = load_with(
                "service = \"php\"\nexec = [\"true\"]\nallow_uids = [0, 33]\nsocket_mode = 0o640\nmax_actions = 2\n[action_timeouts]\nnightly-backup = \"3h\"\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nidle = \"5m\"\n",
                &[],
                &[],
            )
            .unwrap();
            let od = s.on_demand.clone().unwrap();
            assert_eq!(od.listen, Addr::Unix("/run/php/forum.sock".into()));
            assert_eq!(od.idle, Duration::from_secs(300));
            assert!(od.backend.is_none());
            assert_eq!(s.allow_uids, [0, 33]);
            assert_eq!(s.socket_mode, 0o640);
            assert_eq!(s.max_actions, 2);
            assert_eq!(
                s.timeout_of("nightly-backup"),
                Duration::from_secs(3 * 3600)
            );
            let env = s.to_env();
            assert!(env.contains(&("BOSUN_ALLOW_UIDS".into(), "0,33".into())));
            assert!(env.contains(&("BOSUN_ACTION_TIMEOUTS".into(), "nightly-backup=3h".into())));
        }

        #[test]
        fn replay_wait_and_max_connections_in_the_file() {
            let s = load_with(
                "service = \"a\"\nexec = [\"true\"]\nreplay_wait = \"2m\"\nmax_connections = 40\n",
                &[],
                &[],
            )
            .unwrap();
            assert_eq!(s.replay_wait, Duration::from_secs(120));
            assert_eq!(s.max_connections, Some(40));
            let env = s.to_env();
            assert!(env.contains(&("BOSUN_REPLAY_WAIT".into(), "2m".into())));
            assert!(env.contains(&("BOSUN_MAX_CONNECTIONS".into(), "40".into())));
            // The environment wins over the file, as for every key.
            let s = load_with(
                "service = \"a\"\nexec = [\"true\"]\nreplay_wait = \"2m\"\nmax_connections = \"40\"\n",
                &[("BOSUN_REPLAY_WAIT", "5s"), ("BOSUN_MAX_CONNECTIONS", "7")],
                &[],
            )
            .unwrap();
            assert_eq!(
                (s.replay_wait, s.max_connections),
                (Duration::from_secs(5), Some(7))
            );
            let e = load_with(
                "service = \"a\"\nexec = [\"true\"]\nreplay_wait = \"soon\"\nmax_connections = 0\n",
                &[],
                &[],
            )
            .unwrap_err();
            let all = e.to_string();
            assert!(
                all.contains(":3:15: replay_wait: \"soon\" is not a duration"),
                "{all}"
            );
            assert!(
                all.contains(":4:19: max_connections: \"0\" is not a whole number of at least 1"),
                "{all}"
            );
            assert_eq!(e.0.len(), 2, "{all}");
            let e = load_with(
                "service = \"a\"\nexec = [\"true\"]\nmax_connections = 1.5\n",
                &[],
                &[],
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .contains(":3:19: max_connections: expected a string"),
                "{e}"
            );
        }

        #[test]
        fn on_demand_socket_keys_in_the_file() {
            let s = load_with(
                "service = \"php\"\nexec = [\"true\"]\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nsocket_mode = 0o640\nsocket_group = 0\nmax_connections = 50\nconnection_idle = \"30s\"\n",
                &[],
                &[],
            )
            .unwrap();
            let od = s.on_demand.unwrap();
            assert_eq!(od.socket_mode, 0o640);
            assert_eq!(od.socket_gid, Some(Gid::from_raw(0)));
            assert_eq!(od.max_connections, 50);
            assert_eq!(od.connection_idle, Some(Duration::from_secs(30)));
            let s = load_with(
                "service = \"php\"\nexec = [\"true\"]\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nsocket_mode = \"0660\"\nsocket_group = \"root\"\n",
                &[],
                &[],
            )
            .unwrap();
            assert_eq!(s.on_demand.unwrap().socket_mode, 0o660);
            let e = load_with(
                "service = \"php\"\nexec = [\"true\"]\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nsocket_mode = \"u+rw\"\nsocket_group = \"no-such-group-here\"\n",
                &[],
                &[],
            )
            .unwrap_err();
            let all = e.to_string();
            assert!(
                all.contains(":5:15: on_demand.socket_mode: \"u+rw\" is not an octal file mode"),
                "{all}"
            );
            assert!(
                all.contains(":6:16: on_demand.socket_group: no group named"),
                "{all}"
            );
            assert_eq!(e.0.len(), 2, "{all}");
        }
    }
}
