//! The supervisor's settings: `conf/service.toml`, each key overridable by `BOSUN_<KEY>`,
//! and the main process's argv from `supervisor -- CMD ...`.
//!
//! Loading never stops at the first problem: every unknown key, bad value and missing
//! setting is collected and reported together, one line each, before anything starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Group, Uid, User};
use serde::Deserialize;

use crate::signals::parse_signal;

/// Where `service.toml` is looked for unless `BOSUN_CONFIG` names another file.
pub const DEFAULT_CONFIG: &str = "/usr/local/conf/service.toml";
const DEFAULT_SETUP: &str = "/usr/local/bin/docker-entry-setup.sh";
const DEFAULT_CALLBACKS: &str = "/usr/local/bin/docker-callbacks.sh";

/// The file as written. Durations and names stay text here so that every bad value can be
/// reported with its key, after environment overrides are applied.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    service: Option<String>,
    exec: Option<Vec<String>>,
    run_dir: Option<String>,
    setup: Option<String>,
    callbacks: Option<String>,
    stop_signal: Option<String>,
    stop_timeout: Option<String>,
    restart: Option<String>,
    ready: Option<String>,
    run_as: Option<String>,
    log_format: Option<String>,
    socket_mode: Option<String>,
    socket_group: Option<String>,
    allow_uids: Option<Vec<u32>>,
    allow_gids: Option<Vec<u32>>,
    max_actions: Option<u32>,
    action_timeout: Option<String>,
    action_timeouts: Option<BTreeMap<String, String>>,
    read_timeout: Option<String>,
    listener_start: Option<String>,
    on_demand: Option<OnDemandFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDemandFile {
    listen: Option<String>,
    idle: Option<String>,
    backend: Option<String>,
    start_timeout: Option<String>,
}

const KEYS: &[&str] = &[
    "service",
    "exec",
    "run_dir",
    "setup",
    "callbacks",
    "stop_signal",
    "stop_timeout",
    "restart",
    "ready",
    "run_as",
    "log_format",
    "socket_mode",
    "socket_group",
    "allow_uids",
    "allow_gids",
    "max_actions",
    "action_timeout",
    "action_timeouts",
    "read_timeout",
    "listener_start",
    "on_demand",
];
const ON_DEMAND_KEYS: &[&str] = &["listen", "idle", "backend", "start_timeout"];

/// Restart policy of the main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

/// When the listener is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerStart {
    /// Never (`BOSUN_LISTENER=off`): nothing but the supervisor answers the socket.
    Off,
    /// At boot, for the container's whole life.
    Boot,
    /// At the first request the supervisor does not answer itself (it answers `ping` and
    /// `status`), then for the container's life; after a crash, at the next such request.
    Request,
}

/// How readiness of the main process is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    Socket(PathBuf),
    Tcp(String),
    Exec(String),
    /// sd_notify: the main process sends `READY=1` to `$NOTIFY_SOCKET`.
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The user the main process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    /// Set when given by name (or found in passwd): used for HOME, USER and groups.
    pub user: Option<User>,
}

/// Settings of on-demand start (DESIGN.md section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemand {
    pub listen: String,
    pub idle: Duration,
    pub backend: Option<String>,
    pub start_timeout: Duration,
}

/// Everything the supervisor needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service: String,
    pub exec: Vec<String>,
    pub run_dir: PathBuf,
    pub setup: Option<PathBuf>,
    pub callbacks: PathBuf,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub restart: Restart,
    pub ready: Option<Ready>,
    pub run_as: Option<RunAs>,
    pub log_format: LogFormat,
    pub socket_mode: u32,
    pub socket_gid: Option<Gid>,
    pub on_demand: Option<OnDemand>,
    /// The listener binary, or `None` when `BOSUN_LISTENER=off`.
    pub listener: Option<PathBuf>,
    /// `listener_start`: `request` (default) or `boot`.
    pub listener_start: ListenerStart,
    /// Settings only the listener reads, passed to it as `BOSUN_*` variables.
    pub listener_env: Vec<(String, String)>,
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
}

/// Where settings come from; the environment is passed in so tests need not mutate the
/// process environment.
pub struct Sources<'a> {
    pub config_path: PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub exec: Vec<String>,
    /// Validate only what `supervisor status` needs (no exec, no listener).
    pub for_status: bool,
}

impl Sources<'_> {
    fn var(&self, key: &str) -> Option<(String, String)> {
        let name = format!("BOSUN_{}", key.to_ascii_uppercase());
        (self.env)(&name).map(|v| (v, name))
    }
}

/// All problems found, one line each.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl ConfigErrors {
    /// 127 when the main command does not exist, 126 when it cannot be run (as a shell
    /// would say), else bosun's own setup error code.
    pub fn exit_code(&self) -> i32 {
        if self.0.iter().any(|e| e.starts_with(NOT_FOUND)) {
            127
        } else if self.0.iter().any(|e| e.starts_with(NOT_EXECUTABLE)) {
            126
        } else {
            crate::EXIT_SETUP
        }
    }
}

const NOT_FOUND: &str = "main command not found: ";
const NOT_EXECUTABLE: &str = "main command not executable: ";

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

/// Reads `service.toml` (if present) and the environment, and validates everything.
pub fn load(src: &Sources<'_>) -> Result<Settings, ConfigErrors> {
    let mut errs = Vec::new();
    let file = read_file(&src.config_path, &mut errs);
    let path = src.config_path.display().to_string();

    // A value from the environment wins; each value remembers where it came from so an
    // error can name it.
    let get = |key: &str, from_file: Option<String>| -> Option<(String, String)> {
        src.var(key)
            .or_else(|| from_file.map(|v| (v, format!("{path}: {key}"))))
    };

    let service = get("service", file.service.clone());
    let service = match service {
        Some((s, _)) if valid_name(&s) => s,
        Some((s, origin)) => {
            errs.push(format!(
                "{origin}: {s:?} is not a valid service name (use letters, digits, '-', '_', '.')"
            ));
            String::new()
        }
        None => {
            errs.push(format!(
                "no service name: set `service` in {path} or BOSUN_SERVICE (it names the request socket)"
            ));
            String::new()
        }
    };

    let exec = if !src.exec.is_empty() {
        src.exec.clone()
    } else {
        file.exec.clone().unwrap_or_default()
    };
    if exec.is_empty() && !src.for_status {
        errs.push(format!(
            "no main process: set `exec = [\"cmd\", \"arg\"]` in {path} or run `supervisor -- CMD ARG...`"
        ));
    } else if !src.for_status {
        if let Err(e) = check_command(&exec[0]) {
            errs.push(e);
        }
    }

    let run_dir = PathBuf::from(
        get("run_dir", file.run_dir.clone())
            .map(|v| v.0)
            .unwrap_or("/run".into()),
    );

    let setup = match get("setup", file.setup.clone()) {
        Some((p, origin)) if !p.is_empty() => {
            if !src.for_status && !Path::new(&p).is_file() {
                errs.push(format!("{origin}: setup script {p} does not exist"));
            }
            Some(PathBuf::from(p))
        }
        Some(_) => None,
        None => Some(PathBuf::from(DEFAULT_SETUP)).filter(|p| p.is_file()),
    };
    let callbacks = PathBuf::from(
        get("callbacks", file.callbacks.clone())
            .map(|v| v.0)
            .unwrap_or(DEFAULT_CALLBACKS.into()),
    );

    let stop_signal = match get("stop_signal", file.stop_signal.clone()) {
        Some((s, origin)) => parse_signal(&s).unwrap_or_else(|e| {
            errs.push(format!("{origin}: {e}"));
            Signal::SIGTERM
        }),
        None => Signal::SIGTERM,
    };
    let stop_timeout = duration(
        get("stop_timeout", file.stop_timeout.clone()),
        Duration::from_secs(8),
        &mut errs,
    );

    let restart = match get("restart", file.restart.clone()) {
        None => Restart::No,
        Some((s, origin)) => match s.as_str() {
            "no" => Restart::No,
            "on-failure" => Restart::OnFailure,
            "always" => Restart::Always,
            _ => {
                errs.push(format!(
                    "{origin}: {s:?} is not a restart policy (no, on-failure, always)"
                ));
                Restart::No
            }
        },
    };

    let ready = get("ready", file.ready.clone()).and_then(|(s, origin)| {
        parse_ready(&s)
            .map_err(|e| errs.push(format!("{origin}: {e}")))
            .ok()
    });

    let run_as = get("run_as", file.run_as.clone()).and_then(|(s, origin)| {
        parse_run_as(&s)
            .map_err(|e| errs.push(format!("{origin}: {e}")))
            .ok()
    });

    let log_format = match get("log_format", file.log_format.clone()) {
        None => LogFormat::Text,
        Some((s, _)) if s == "text" => LogFormat::Text,
        Some((s, _)) if s == "json" => LogFormat::Json,
        Some((s, origin)) => {
            errs.push(format!("{origin}: {s:?} is not a log format (text, json)"));
            LogFormat::Text
        }
    };

    let socket_mode = match get("socket_mode", file.socket_mode.clone()) {
        None => 0o660,
        Some((s, origin)) => match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => m,
            _ => {
                errs.push(format!(
                    "{origin}: {s:?} is not an octal file mode like 0660"
                ));
                0o660
            }
        },
    };
    let socket_gid = get("socket_group", file.socket_group.clone()).and_then(|(s, origin)| {
        parse_group(&s)
            .map_err(|e| errs.push(format!("{origin}: {e}")))
            .ok()
    });

    // Listener settings: checked here so a bad one stops the container before anything
    // runs, then handed to the listener as variables.
    let mut listener_env = Vec::new();
    let list =
        |v: Option<Vec<u32>>| v.map(|l| l.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    for (key, from_file) in [
        ("allow_uids", list(file.allow_uids.clone())),
        ("allow_gids", list(file.allow_gids.clone())),
    ] {
        if let Some((v, origin)) = get(key, from_file) {
            if v.split(',')
                .filter(|p| !p.trim().is_empty())
                .any(|p| p.trim().parse::<u32>().is_err())
            {
                errs.push(format!(
                    "{origin}: {v:?} is not a comma-separated list of numeric ids"
                ));
            }
            listener_env.push((format!("BOSUN_{}", key.to_ascii_uppercase()), v));
        }
    }
    if let Some((v, origin)) = get("max_actions", file.max_actions.map(|n| n.to_string())) {
        if !matches!(v.parse::<u32>(), Ok(n) if n > 0) {
            errs.push(format!("{origin}: {v:?} is not a positive whole number"));
        }
        listener_env.push(("BOSUN_MAX_ACTIONS".into(), v));
    }
    for (key, from_file) in [
        ("action_timeout", file.action_timeout.clone()),
        ("read_timeout", file.read_timeout.clone()),
    ] {
        if let Some(v) = get(key, from_file) {
            duration(Some(v.clone()), Duration::ZERO, &mut errs);
            listener_env.push((format!("BOSUN_{}", key.to_ascii_uppercase()), v.0));
        }
    }
    let timeouts = file.action_timeouts.as_ref().map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    if let Some((v, origin)) = get("action_timeouts", timeouts) {
        for part in v.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((_, d)) => {
                    duration(
                        Some((d.to_string(), format!("{origin} ({part})"))),
                        Duration::ZERO,
                        &mut errs,
                    );
                }
                None => errs.push(format!("{origin}: {part:?} is not action=duration")),
            }
        }
        listener_env.push(("BOSUN_ACTION_TIMEOUTS".into(), v));
    }
    listener_env.push((
        "BOSUN_STOP_TIMEOUT".into(),
        humantime::format_duration(stop_timeout).to_string(),
    ));
    listener_env.push(("BOSUN_CALLBACKS".into(), callbacks.display().to_string()));
    listener_env.push(("BOSUN_SERVICE".into(), service.clone()));
    listener_env.push((
        "BOSUN_LOG_FORMAT".into(),
        if log_format == LogFormat::Json {
            "json"
        } else {
            "text"
        }
        .into(),
    ));

    let od = file.on_demand.as_ref();
    let on_demand =
        // An empty BOSUN_ON_DEMAND_LISTEN turns on-demand start off for this container.
        get("on_demand_listen", od.and_then(|o| o.listen.clone())).filter(|(l, _)| !l.is_empty()).map(|(listen, _)| {
            let idle = duration(
                get("on_demand_idle", od.and_then(|o| o.idle.clone())),
                Duration::from_secs(20 * 60),
                &mut errs,
            );
            let start_timeout = duration(
                get(
                    "on_demand_start_timeout",
                    od.and_then(|o| o.start_timeout.clone()),
                ),
                Duration::from_secs(30),
                &mut errs,
            );
            let backend = get("on_demand_backend", od.and_then(|o| o.backend.clone())).map(|v| v.0);
            OnDemand {
                listen,
                idle,
                backend,
                start_timeout,
            }
        });

    // Proxy mode: unless told otherwise, the backend is ready when it accepts connections.
    let ready = match (
        &ready,
        on_demand.as_ref().and_then(|o| o.backend.as_deref()),
    ) {
        (None, Some(b)) if b.contains('/') => Some(Ready::Socket(PathBuf::from(b))),
        (None, Some(b)) => Some(Ready::Tcp(b.to_string())),
        _ => ready,
    };

    let listener_start = match get("listener_start", file.listener_start.clone()) {
        None => ListenerStart::Request,
        Some((s, _)) if s == "request" => ListenerStart::Request,
        Some((s, _)) if s == "boot" => ListenerStart::Boot,
        Some((s, origin)) => {
            errs.push(format!(
                "{origin}: {s:?} is not when to start the listener (request, boot)"
            ));
            ListenerStart::Request
        }
    };

    let listener = match (src.env)("BOSUN_LISTENER") {
        Some(v) if v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("listener"))),
    };
    if let (Some(l), false) = (&listener, src.for_status) {
        if !l.is_file() {
            errs.push(format!(
                "listener binary {} not found (set BOSUN_LISTENER to its path, or to off)",
                l.display()
            ));
        }
    }

    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    Ok(Settings {
        service,
        exec,
        run_dir,
        setup,
        callbacks,
        stop_signal,
        stop_timeout,
        restart,
        ready,
        run_as,
        log_format,
        socket_mode,
        socket_gid,
        on_demand,
        listener,
        listener_start,
        listener_env,
    })
}

/// Reads and parses the file; a missing file is no error (everything can come from the
/// environment), anything else wrong with it is.
fn read_file(path: &Path, errs: &mut Vec<String>) -> FileSettings {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileSettings::default(),
        Err(e) => {
            errs.push(format!("{}: cannot read: {e}", path.display()));
            return FileSettings::default();
        }
    };
    parse_text(&path.display().to_string(), &text, errs)
}

/// Checks the text of a `service.toml`, reporting every problem of the file itself
/// (syntax, unknown keys, wrong types) as `FILE:LINE:COL: message`. Values are checked
/// later, after the environment's overrides. Public for the fuzz target.
pub fn check_text(label: &str, text: &str) -> Vec<String> {
    let mut errs = Vec::new();
    parse_text(label, text, &mut errs);
    errs
}

fn parse_text(p: &str, text: &str, errs: &mut Vec<String>) -> FileSettings {
    // Unknown keys are found first and all together; serde would stop at the first.
    match text.parse::<toml::Table>() {
        Ok(table) => {
            let mut unknown = false;
            for (key, value) in &table {
                let nested = match (key.as_str(), value) {
                    ("on_demand", toml::Value::Table(t)) => Some(t),
                    _ => None,
                };
                if !KEYS.contains(&key.as_str()) {
                    unknown = true;
                    errs.push(format!(
                        "{p}:{}: unknown key `{key}` (known keys: {})",
                        line_of_key(text, key),
                        KEYS.join(", ")
                    ));
                }
                for k in nested.into_iter().flat_map(|t| t.keys()) {
                    if !ON_DEMAND_KEYS.contains(&k.as_str()) {
                        unknown = true;
                        errs.push(format!(
                            "{p}:{}: unknown key `on_demand.{k}` (known: {})",
                            line_of_key(text, k),
                            ON_DEMAND_KEYS.join(", ")
                        ));
                    }
                }
            }
            if unknown {
                return FileSettings::default();
            }
        }
        Err(e) => {
            errs.push(toml_error(p, text, &e));
            return FileSettings::default();
        }
    }
    toml::from_str(text).unwrap_or_else(|e| {
        errs.push(toml_error(p, text, &e));
        FileSettings::default()
    })
}

fn toml_error(path: &str, text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("{path}:{line}:{col}: {msg}")
        }
        None => format!("{path}: {msg}"),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn line_of_key(text: &str, key: &str) -> String {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or("?".into(), |n| format!("{}:1", n + 1))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with('.')
}

/// Parses a duration like `8s`, `1m 30s`, `500ms`; reports it with its origin.
fn duration(v: Option<(String, String)>, default: Duration, errs: &mut Vec<String>) -> Duration {
    match v {
        None => default,
        Some((s, origin)) => humantime::parse_duration(s.trim()).unwrap_or_else(|e| {
            errs.push(format!(
                "{origin}: {s:?} is not a duration like 8s, 500ms or 1h30m ({e})"
            ));
            default
        }),
    }
}

fn parse_ready(s: &str) -> Result<Ready, String> {
    match s.split_once(':') {
        Some(("socket", p)) if !p.is_empty() => Ok(Ready::Socket(PathBuf::from(p))),
        Some(("tcp", a))
            if a.rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok()) =>
        {
            Ok(Ready::Tcp(a.to_string()))
        }
        Some(("exec", c)) if !c.trim().is_empty() => Ok(Ready::Exec(c.to_string())),
        None if s == "notify" => Ok(Ready::Notify),
        _ => Err(format!(
            "{s:?} is not a ready probe (socket:PATH, tcp:HOST:PORT, exec:COMMAND or notify)"
        )),
    }
}

/// `name`, `uid` or `uid:gid`.
pub fn parse_run_as(s: &str) -> Result<RunAs, String> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let user = if let Ok(n) = u.parse::<u32>() {
        User::from_uid(Uid::from_raw(n)).ok().flatten()
    } else {
        Some(
            User::from_name(u)
                .ok()
                .flatten()
                .ok_or_else(|| format!("no user named {u:?} in /etc/passwd"))?,
        )
    };
    let uid = match (&user, u.parse::<u32>()) {
        (_, Ok(n)) => Uid::from_raw(n),
        (Some(us), _) => us.uid,
        (None, Err(_)) => unreachable!("a name either resolved or returned above"),
    };
    let gid = match g {
        Some(g) => parse_group(g)?,
        None => user
            .as_ref()
            .map(|u| u.gid)
            .unwrap_or(Gid::from_raw(uid.as_raw())),
    };
    Ok(RunAs { uid, gid, user })
}

fn parse_group(s: &str) -> Result<Gid, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    Group::from_name(s)
        .ok()
        .flatten()
        .map(|g| g.gid)
        .ok_or_else(|| format!("no group named {s:?} in /etc/group"))
}

/// A command must exist and be executable before anything starts: `127`-style problems
/// are reported as configuration errors, not as a crash loop.
fn check_command(cmd: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if cmd.contains('/') {
        vec![PathBuf::from(cmd)]
    } else {
        let path = crate::spawn::search_path();
        std::env::split_paths(&path).map(|d| d.join(cmd)).collect()
    };
    let found = candidates.iter().find(|p| p.is_file());
    match found {
        None => Err(format!(
            "{NOT_FOUND}{cmd:?} (is it installed, and on PATH?)"
        )),
        Some(p) => match p.metadata() {
            Ok(m) if m.permissions().mode() & 0o111 != 0 => Ok(()),
            _ => Err(format!("{NOT_EXECUTABLE}{}", p.display())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_with(
        toml: &str,
        env: &[(&str, &str)],
        exec: &[&str],
    ) -> Result<Settings, ConfigErrors> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| {
            let v = env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            v.or_else(|| (k == "BOSUN_LISTENER").then(|| "off".to_string()))
        };
        load(&Sources {
            config_path: f.path().to_path_buf(),
            env: &lookup,
            exec: exec.iter().map(|s| s.to_string()).collect(),
            for_status: false,
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
        assert_eq!(s.socket_path(), PathBuf::from("/run/mysql-request.sock"));
    }

    #[test]
    fn command_line_exec_wins() {
        let s = load_with("service = \"a\"\nexec = [\"false\"]\n", &[], &["true"]).unwrap();
        assert_eq!(s.exec, vec!["true"]);
    }

    #[test]
    fn every_problem_at_once() {
        let e = load_with(
            "colour = 1\nshape = 2\n",
            &[
                ("BOSUN_STOP_TIMEOUT", "8 parsecs"),
                ("BOSUN_STOP_SIGNAL", "TERMINATE"),
                ("BOSUN_RESTART", "sometimes"),
                ("BOSUN_READY", "http://x"),
            ],
            &["/no/such/cmd"],
        )
        .unwrap_err();
        let all = e.to_string();
        for needle in [
            ":1:1: unknown key `colour`",
            ":2:1: unknown key `shape`",
            "no service name",
            "BOSUN_STOP_TIMEOUT: \"8 parsecs\" is not a duration",
            "BOSUN_STOP_SIGNAL: \"TERMINATE\" is not a signal name",
            "BOSUN_RESTART: \"sometimes\" is not a restart policy",
            "BOSUN_READY: \"http://x\" is not a ready probe",
            "main command not found: \"/no/such/cmd\"",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(e.0.len(), 8, "{all}");
    }

    #[test]
    fn toml_type_error_has_position() {
        let e = load_with("service = \"a\"\nexec = \"sleep 1\"\n", &[], &[]).unwrap_err();
        assert!(e.to_string().contains(":2:8: "), "{e}");
    }

    #[test]
    fn on_demand_and_listener_settings() {
        let s = load_with(
            "service = \"php\"\nexec = [\"true\"]\nallow_uids = [0, 33]\n[action_timeouts]\nnightly-backup = \"3h\"\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nidle = \"5m\"\n",
            &[],
            &[],
        )
        .unwrap();
        let od = s.on_demand.unwrap();
        assert_eq!(od.listen, "/run/php/forum.sock");
        assert_eq!(od.idle, Duration::from_secs(300));
        assert!(od.backend.is_none());
        assert!(s
            .listener_env
            .contains(&("BOSUN_ALLOW_UIDS".into(), "0,33".into())));
        assert!(s
            .listener_env
            .contains(&("BOSUN_ACTION_TIMEOUTS".into(), "nightly-backup=3h".into())));
        let e = load_with(
            "service = \"x\"\nexec = [\"true\"]\n[on_demand]\nlisen = \"a\"\n",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(":4:1: unknown key `on_demand.lisen`"),
            "{e}"
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
}
