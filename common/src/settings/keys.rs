//! The table of `service.toml` keys and their `BOSUN_*` variables: one row each, in the
//! order problems are reported. A new setting is a field of [`Settings`] and a row here
//! (and, if it is not a plain value, a line in [`Draft::finish`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::problem::ValueError;
use super::table::{opt, set, show_opt, FileType, Read, Row, Spec};
use super::values::*;
use super::{Settings, DEFAULT_CALLBACKS, DEFAULT_SETUP, DEFAULT_STATE_DIR};
use crate::duration;
use crate::log::{Filter, LogFormat};

/// `run_dir`: the one default of every program's run directory.
pub(crate) const RUN_DIR: Spec = Spec::new("run_dir", "BOSUN_RUN_DIR", "/run", "/tmp/run");
/// `log`: the log filter, for every program.
pub(crate) const LOG: Spec = Spec::new("log", "BOSUN_LOG", "", "warn,listener::runner=debug");
/// `log_format`, for every program.
pub(crate) const LOG_FORMAT: Spec = Spec::new("log_format", "BOSUN_LOG_FORMAT", "text", "json");

/// The settings while rows are read: the on-demand values are kept apart until it is
/// known whether `on_demand.listen` is set.
pub(super) struct Draft {
    pub s: Settings,
    pub listen: Option<Addr>,
    pub od: OnDemand,
}

impl Draft {
    /// Placeholders only: every row writes its field (its default when unset).
    pub fn new() -> Draft {
        Draft {
            s: Settings {
                service: String::new(),
                instance: None,
                exec: Vec::new(),
                run_dir: PathBuf::new(),
                state_dir: PathBuf::new(),
                setup: None,
                callbacks: PathBuf::new(),
                stop_signal: Signal::SIGTERM,
                stop_timeout: Duration::ZERO,
                restart: Restart::No,
                ready: None,
                run_as: None,
                log: String::new(),
                log_format: LogFormat::Text,
                socket_mode: 0,
                socket_gid: None,
                allow_uids: Vec::new(),
                allow_gids: Vec::new(),
                max_actions: 0,
                action_timeout: Duration::ZERO,
                action_timeouts: Default::default(),
                read_timeout: Duration::ZERO,
                kill_grace: Duration::ZERO,
                on_demand: None,
                listener: None,
                listener_start: ListenerStart::Request,
                listener_idle: None,
                replay_wait: Duration::ZERO,
                max_connections: None,
            },
            listen: None,
            od: OnDemand {
                listen: Addr::Unix(PathBuf::new()),
                idle: Duration::ZERO,
                backend: None,
                start_timeout: Duration::ZERO,
                socket_mode: 0,
                socket_gid: None,
                max_connections: 0,
                connection_idle: None,
            },
        }
    }

    /// The values that depend on others.
    pub fn finish(self) -> Settings {
        let Draft { mut s, listen, od } = self;
        // An idle exit only for a listener started on request; 0 is never.
        s.listener_idle = s
            .listener_idle
            .filter(|d| !d.is_zero() && s.listener_start == ListenerStart::Request);
        s.on_demand = listen.map(|listen| OnDemand { listen, ..od });
        // Proxy mode: unless told otherwise, the backend is ready when it accepts.
        if let (None, Some(b)) = (
            &s.ready,
            s.on_demand.as_ref().and_then(|o| o.backend.as_ref()),
        ) {
            s.ready = Some(Ready::of_backend(b));
        }
        s
    }
}

fn dur(d: Duration) -> String {
    duration::show(d).to_string()
}

/// A path: any text is one.
fn any_path(t: &str) -> Result<PathBuf, ValueError> {
    Ok(PathBuf::from(t))
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn ids(l: &[u32]) -> String {
    l.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn mode(m: u32) -> String {
    format!("{m:04o}")
}

/// `on_demand`'s value when on-demand start is on; its other rows are not written when
/// it is off (an empty `BOSUN_ON_DEMAND_LISTEN` says so).
fn od<V>(s: &Settings, f: impl Fn(&OnDemand) -> V) -> Option<V> {
    s.on_demand.as_ref().map(f)
}

type Key = Row<Draft, Settings>;

/// Every key of `service.toml` but `exec` (argv, not a value: see [`super::Sources`]).
pub(super) static ROWS: &[Key] = &[
    Key {
        spec: Spec::new("service", "BOSUN_SERVICE", "", "php"),
        file: FileType::Text,
        read: Read::AsWritten(|d, v| match v {
            None => Err(ValueError::Missing {
                what: "service name",
                why: "it names the request socket",
            }),
            Some(t) if crate::name::is_valid(t) => {
                d.s.service = t.to_string();
                Ok(())
            }
            Some(t) => Err(ValueError::ServiceName(t.to_string())),
        }),
        show: |s| Some(s.service.clone()),
    },
    Key {
        // Unset: the supervisor claims the lowest free instance (DESIGN.md section 10).
        spec: Spec::new("instance", "BOSUN_INSTANCE", "", "2"),
        file: FileType::Number,
        read: Read::Text(|d, t| {
            set(
                &mut d.s.instance,
                opt(t, |t| crate::instance::parse(t).map_err(ValueError::from)),
            )
        }),
        show: |s| show_opt(&s.instance),
    },
    Key {
        spec: RUN_DIR,
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.run_dir, any_path(t))),
        show: |s| Some(path(&s.run_dir)),
    },
    Key {
        spec: Spec::new(
            "state_dir",
            "BOSUN_STATE_DIR",
            DEFAULT_STATE_DIR,
            "/tmp/state",
        ),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.state_dir, any_path(t))),
        show: |s| Some(path(&s.state_dir)),
    },
    Key {
        // Unset: the image's setup script when it is there; set empty: none.
        spec: Spec::new("setup", "BOSUN_SETUP", DEFAULT_SETUP, "/etc/setup.sh"),
        file: FileType::Text,
        read: Read::AsWritten(|d, v| {
            d.s.setup = match v {
                None => Some(PathBuf::from(DEFAULT_SETUP)).filter(|p| p.is_file()),
                Some("") => None,
                Some(t) => Some(PathBuf::from(t)),
            };
            Ok(())
        }),
        show: |s| Some(s.setup.as_deref().map_or(String::new(), path)),
    },
    Key {
        spec: Spec::new(
            "callbacks",
            "BOSUN_CALLBACKS",
            DEFAULT_CALLBACKS,
            "/etc/callbacks.sh",
        ),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.callbacks, any_path(t))),
        show: |s| Some(path(&s.callbacks)),
    },
    Key {
        spec: Spec::new("stop_signal", "BOSUN_STOP_SIGNAL", "TERM", "QUIT"),
        file: FileType::Text,
        read: Read::Text(|d, t| {
            set(
                &mut d.s.stop_signal,
                crate::signal::parse(t).map_err(ValueError::Signal),
            )
        }),
        show: |s| Some(crate::signal::name(s.stop_signal).into()),
    },
    Key {
        spec: Spec::new("stop_timeout", "BOSUN_STOP_TIMEOUT", "8s", "1m 30s"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.stop_timeout, duration::parse(t))),
        show: |s| Some(dur(s.stop_timeout)),
    },
    Key {
        spec: Spec::new("restart", "BOSUN_RESTART", "no", "on-failure"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.restart, Restart::parse(t))),
        show: |s| Some(s.restart.as_str().into()),
    },
    Key {
        spec: Spec::new("ready", "BOSUN_READY", "", "tcp:127.0.0.1:80"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.ready, opt(t, Ready::parse))),
        show: |s| show_opt(&s.ready),
    },
    Key {
        spec: Spec::new("run_as", "BOSUN_RUN_AS", "", "1000:1001"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.run_as, opt(t, parse_run_as))),
        show: |s| {
            Some(
                s.run_as
                    .as_ref()
                    .map_or(String::new(), |r| format!("{}:{}", r.uid, r.gid)),
            )
        },
    },
    Key {
        spec: LOG,
        file: FileType::Text,
        read: Read::Text(|d, t| {
            Filter::parse(t)?;
            d.s.log = t.to_string();
            Ok(())
        }),
        show: |s| Some(s.log.clone()),
    },
    Key {
        spec: LOG_FORMAT,
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.log_format, LogFormat::parse(t))),
        show: |s| Some(s.log_format.as_str().into()),
    },
    Key {
        spec: Spec::new("socket_mode", "BOSUN_SOCKET_MODE", "0660", "0640"),
        file: FileType::Mode,
        read: Read::Text(|d, t| set(&mut d.s.socket_mode, parse_mode(t))),
        show: |s| Some(mode(s.socket_mode)),
    },
    Key {
        spec: Spec::new("socket_group", "BOSUN_SOCKET_GROUP", "", "33"),
        file: FileType::Number,
        read: Read::Text(|d, t| set(&mut d.s.socket_gid, opt(t, parse_group))),
        show: |s| show_opt(&s.socket_gid),
    },
    Key {
        spec: Spec::new("allow_uids", "BOSUN_ALLOW_UIDS", "", "0,33"),
        file: FileType::Ids,
        read: Read::Text(|d, t| set(&mut d.s.allow_uids, uid_list(t))),
        show: |s| Some(ids(&s.allow_uids)),
    },
    Key {
        spec: Spec::new("allow_gids", "BOSUN_ALLOW_GIDS", "", "33,34"),
        file: FileType::Ids,
        read: Read::Text(|d, t| set(&mut d.s.allow_gids, gid_list(t))),
        show: |s| Some(ids(&s.allow_gids)),
    },
    Key {
        spec: Spec::new("max_actions", "BOSUN_MAX_ACTIONS", "8", "3"),
        file: FileType::Number,
        read: Read::Text(|d, t| set(&mut d.s.max_actions, whole_number(t))),
        show: |s| Some(s.max_actions.to_string()),
    },
    Key {
        spec: Spec::new("action_timeout", "BOSUN_ACTION_TIMEOUT", "1h", "10m"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.action_timeout, duration::parse(t))),
        show: |s| Some(dur(s.action_timeout)),
    },
    Key {
        spec: Spec::new(
            "action_timeouts",
            "BOSUN_ACTION_TIMEOUTS",
            "",
            "a=5m,b=250ms",
        ),
        file: FileType::Timeouts,
        read: Read::Text(|d, t| set(&mut d.s.action_timeouts, action_timeouts(t))),
        show: |s| {
            let items: Vec<String> = s
                .action_timeouts
                .iter()
                .map(|(a, t)| format!("{a}={}", dur(*t)))
                .collect();
            Some(items.join(","))
        },
    },
    Key {
        spec: Spec::new("read_timeout", "BOSUN_READ_TIMEOUT", "5s", "2s"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.read_timeout, duration::parse(t))),
        show: |s| Some(dur(s.read_timeout)),
    },
    Key {
        spec: Spec::new("kill_grace", "BOSUN_KILL_GRACE", "5s", "2s"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.kill_grace, duration::parse(t))),
        show: |s| Some(dur(s.kill_grace)),
    },
    Key {
        spec: Spec::new("listener_start", "BOSUN_LISTENER_START", "request", "boot"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.listener_start, ListenerStart::parse(t))),
        show: |s| Some(s.listener_start.as_str().into()),
    },
    Key {
        spec: Spec::new("listener_idle", "BOSUN_LISTENER_IDLE", "10m", "5m"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.listener_idle, duration::parse(t).map(Some))),
        show: |s| Some(s.listener_idle.map_or("0".into(), dur)),
    },
    Key {
        spec: Spec::new("replay_wait", "BOSUN_REPLAY_WAIT", "10m", "1m 30s"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.s.replay_wait, positive_duration(t))),
        show: |s| Some(dur(s.replay_wait)),
    },
    Key {
        spec: Spec::new("max_connections", "BOSUN_MAX_CONNECTIONS", "", "300"),
        file: FileType::Number,
        read: Read::Text(|d, t| set(&mut d.s.max_connections, opt(t, whole_number))),
        show: |s| show_opt(&s.max_connections),
    },
    // `[on_demand]`: every value is checked, also without `listen`; an empty
    // BOSUN_ON_DEMAND_LISTEN turns on-demand start off for this container.
    Key {
        spec: Spec::new(
            "on_demand.listen",
            "BOSUN_ON_DEMAND_LISTEN",
            "",
            "127.0.0.1:8080",
        ),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.listen, opt(t, Addr::parse))),
        show: |s| Some(od(s, |o| o.listen.to_string()).unwrap_or_default()),
    },
    Key {
        spec: Spec::new("on_demand.idle", "BOSUN_ON_DEMAND_IDLE", "20m", "5m"),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.od.idle, duration::parse(t))),
        show: |s| od(s, |o| dur(o.idle)),
    },
    Key {
        spec: Spec::new(
            "on_demand.backend",
            "BOSUN_ON_DEMAND_BACKEND",
            "",
            "/run/php/fpm.sock",
        ),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.od.backend, opt(t, Addr::parse))),
        show: |s| {
            od(s, |o| {
                o.backend.as_ref().map_or(String::new(), Addr::to_string)
            })
        },
    },
    Key {
        spec: Spec::new(
            "on_demand.start_timeout",
            "BOSUN_ON_DEMAND_START_TIMEOUT",
            "30s",
            "10s",
        ),
        file: FileType::Text,
        read: Read::Text(|d, t| set(&mut d.od.start_timeout, duration::parse(t))),
        show: |s| od(s, |o| dur(o.start_timeout)),
    },
    Key {
        spec: Spec::new(
            "on_demand.socket_mode",
            "BOSUN_ON_DEMAND_SOCKET_MODE",
            "0660",
            "0o600",
        ),
        file: FileType::Mode,
        read: Read::Text(|d, t| set(&mut d.od.socket_mode, parse_mode(t))),
        show: |s| od(s, |o| mode(o.socket_mode)),
    },
    Key {
        spec: Spec::new(
            "on_demand.socket_group",
            "BOSUN_ON_DEMAND_SOCKET_GROUP",
            "",
            "root",
        ),
        file: FileType::Number,
        read: Read::Text(|d, t| set(&mut d.od.socket_gid, opt(t, parse_group))),
        show: |s| od(s, |o| show_opt(&o.socket_gid).unwrap_or_default()),
    },
    Key {
        spec: Spec::new(
            "on_demand.max_connections",
            "BOSUN_ON_DEMAND_MAX_CONNECTIONS",
            "1024",
            "12",
        ),
        file: FileType::Number,
        read: Read::Text(|d, t| set(&mut d.od.max_connections, whole_number(t))),
        show: |s| od(s, |o| o.max_connections.to_string()),
    },
    Key {
        spec: Spec::new(
            "on_demand.connection_idle",
            "BOSUN_ON_DEMAND_CONNECTION_IDLE",
            "10m",
            "0",
        ),
        file: FileType::Text,
        read: Read::Text(|d, t| {
            set(
                &mut d.od.connection_idle,
                duration::parse(t).map(|d| Some(d).filter(|d| !d.is_zero())),
            )
        }),
        show: |s| od(s, |o| o.connection_idle.map_or("0".into(), dur)),
    },
];

/// `BOSUN_LOG` and `BOSUN_LOG_FORMAT` alone, for [`crate::log::from_lookup`]: the same rows
/// as the settings' `log` and `log_format`, read into the logger's own types.
static LOG_ROWS: &[Row<(Filter, LogFormat)>] = &[
    Row {
        spec: LOG,
        file: FileType::Text,
        read: Read::Text(|l, t| set(&mut l.0, Filter::parse(t))),
        show: |_| None,
    },
    Row {
        spec: LOG_FORMAT,
        file: FileType::Text,
        read: Read::Text(|l, t| set(&mut l.1, LogFormat::parse(t))),
        show: |l| Some(l.1.as_str().into()),
    },
];

/// Reads `BOSUN_LOG` and `BOSUN_LOG_FORMAT` through `get`.
pub(crate) fn log_from_lookup(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(Filter, LogFormat), super::Problems> {
    let mut log = (Filter::default(), LogFormat::Text);
    let problems = super::table::read_env(LOG_ROWS, &mut log, get);
    if problems.is_empty() {
        Ok(log)
    } else {
        Err(super::Problems(problems))
    }
}
