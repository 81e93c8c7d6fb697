//! The typed values of the settings and their parsers, each from the text a user writes
//! (the same text in `service.toml` and in `BOSUN_*`), so that the code that uses them
//! never parses text. Every parser returns a [`ValueError`] saying what would be valid.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::{Gid, Uid};

use super::problem::{ActionTimeoutError, ValueError};
use crate::{duration, passwd};

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
    pub fn parse(s: &str) -> Result<Addr, ValueError> {
        if s.contains('/') {
            return Ok(Addr::Unix(PathBuf::from(s)));
        }
        s.parse::<SocketAddr>()
            .map(Addr::Tcp)
            .map_err(|_| ValueError::Addr(s.to_string()))
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
    pub fn parse(s: &str) -> Result<Ready, ValueError> {
        let bad = || ValueError::Ready(s.to_string());
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
                    h => h.parse().map_err(|_| ValueError::ReadyHost {
                        text: s.to_string(),
                        host: h.to_string(),
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

impl Restart {
    pub fn parse(s: &str) -> Result<Restart, ValueError> {
        match s {
            "no" => Ok(Restart::No),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(ValueError::Restart(s.to_string())),
        }
    }
}

impl ListenerStart {
    pub fn parse(s: &str) -> Result<ListenerStart, ValueError> {
        match s {
            "request" => Ok(ListenerStart::Request),
            "boot" => Ok(ListenerStart::Boot),
            _ => Err(ValueError::ListenerStart(s.to_string())),
        }
    }
}

/// A count of at least 1 (`max_actions`, `max_connections`, `on_demand.max_connections`).
pub fn whole_number(s: &str) -> Result<usize, ValueError> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ValueError::Count(s.to_string())),
    }
}

/// A duration above zero (`replay_wait`: a repeated key must be able to wait).
pub fn positive_duration(s: &str) -> Result<Duration, ValueError> {
    match duration::parse(s)? {
        d if d.is_zero() => Err(ValueError::ZeroWait(s.to_string())),
        d => Ok(d),
    }
}

/// `rotate-logs=5m,nightly_backup=3h` (`_` read as `-`, as in the callbacks' names).
pub fn action_timeouts(s: &str) -> Result<BTreeMap<String, Duration>, ValueError> {
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((a, d)) = item.split_once('=') else {
            bad.push(ActionTimeoutError::NotPair(item.to_string()));
            continue;
        };
        let a = a.trim().replace('_', "-");
        if let Err(source) = crate::name::check(&a) {
            let item = item.to_string();
            bad.push(ActionTimeoutError::Name { item, source });
        }
        match duration::parse(d) {
            Ok(d) => {
                out.insert(a, d);
            }
            Err(source) => {
                let item = item.to_string();
                bad.push(ActionTimeoutError::Duration { item, source });
            }
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(ValueError::ActionTimeouts(bad))
    }
}

/// Numbers or names, comma separated.
fn id_list(
    s: &str,
    by_name: fn(&str) -> Option<u32>,
    what: &'static str,
) -> Result<Vec<u32>, ValueError> {
    let mut ids = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.parse::<u32>().ok().or_else(|| by_name(item)) {
            Some(id) => ids.push(id),
            None => {
                let item = item.to_string();
                return Err(ValueError::Id { item, what });
            }
        }
    }
    Ok(ids)
}

/// Users by number or name, comma separated (`allow_uids`).
pub fn uid_list(s: &str) -> Result<Vec<u32>, ValueError> {
    id_list(s, |n| passwd::user_by_name(n).map(|u| u.uid), "user")
}

/// Groups by number or name, comma separated (`allow_gids`).
pub fn gid_list(s: &str) -> Result<Vec<u32>, ValueError> {
    id_list(s, passwd::group_by_name, "group")
}

/// `name`, `uid` or `uid:gid`.
pub fn parse_run_as(s: &str) -> Result<RunAs, ValueError> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let (uid, user) = match u.parse::<u32>() {
        Ok(n) => (Uid::from_raw(n), passwd::user_by_uid(n)),
        Err(_) => {
            let user = passwd::user_by_name(u).ok_or_else(|| ValueError::NoUser(u.to_string()))?;
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
pub fn parse_mode(s: &str) -> Result<u32, ValueError> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() && !digits.starts_with('+') => Ok(m),
        _ => Err(ValueError::Mode(s.to_string())),
    }
}

/// A group name or number.
pub fn parse_group(s: &str) -> Result<Gid, ValueError> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    passwd::group_by_name(s)
        .map(Gid::from_raw)
        .ok_or_else(|| ValueError::NoGroup(s.to_string()))
}
