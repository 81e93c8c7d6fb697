//! The listener's settings, read from the environment the supervisor gives it.
//!
//! Parsing is a pure function of an env lookup, so it is unit-tested without touching the
//! process environment, and it reports every bad setting at once (an operator fixing a
//! compose file should not have to restart once per typo).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Default location of the personality's callbacks.
pub const DEFAULT_CALLBACKS: &str = "/usr/local/bin/docker-callbacks.sh";

/// Log line format (`BOSUN_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the listener needs to know, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `BOSUN_SERVICE`: the service name, passed to callbacks.
    pub service: String,
    /// `BOSUN_CALLBACKS`: the bash file defining the `CB_*` functions.
    pub callbacks: PathBuf,
    /// `BOSUN_ACTION_TIMEOUT`: how long an action may run (default 1 h).
    pub action_timeout: Duration,
    /// `BOSUN_ACTION_TIMEOUTS`: per-action overrides (`rotate-logs=5m,nightly-backup=3h`).
    pub action_timeouts: HashMap<String, Duration>,
    /// `BOSUN_MAX_ACTIONS`: how many actions may run at once (default 8).
    pub max_actions: usize,
    /// `BOSUN_ALLOW_UIDS`: peers allowed by uid; empty together with `allow_gids` = anyone.
    pub allow_uids: Vec<u32>,
    /// `BOSUN_ALLOW_GIDS`: peers allowed by primary gid.
    pub allow_gids: Vec<u32>,
    /// `BOSUN_STOP_TIMEOUT`: grace for running actions on shutdown (default 8 s).
    pub stop_timeout: Duration,
    /// `BOSUN_READ_TIMEOUT`: a client must send its line within this (default 5 s).
    pub read_timeout: Duration,
    /// `BOSUN_KILL_GRACE`: between TERM and KILL when an action times out (default 5 s).
    pub kill_grace: Duration,
    /// `BOSUN_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `BOSUN_LOG`: the log filter (default `info`; `warn,listener::runner=debug`). Shared
    /// with the supervisor, which ignores a bad one; so does the listener, with a warning,
    /// rather than crash-looping over a log setting.
    pub log_filter: String,
    /// `BOSUN_NEXT_ID`: the first request id to hand out (default 1).
    pub next_id: u64,
}

/// One bad setting: which variable, what it held, what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{var}={value:?}: {expected}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub expected: String,
}

/// All the bad settings found, one a line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "listener: bad setting {e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads the settings through `get` (normally `std::env::var`). Unset and empty values
    /// take the default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let val = |var: &str| {
            get(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let service = match val("BOSUN_SERVICE") {
            Some(s) => s,
            None => {
                errors.push(ConfigError {
                    var: "BOSUN_SERVICE",
                    value: String::new(),
                    expected: "required: the service's name".into(),
                });
                String::new()
            }
        };
        let callbacks = PathBuf::from(val("BOSUN_CALLBACKS").unwrap_or(DEFAULT_CALLBACKS.into()));

        let mut duration = |var: &'static str, default: Duration| match val(var) {
            None => default,
            Some(v) => match parse_duration(&v) {
                Ok(d) => d,
                Err(expected) => {
                    errors.push(ConfigError {
                        var,
                        value: v,
                        expected,
                    });
                    default
                }
            },
        };
        let action_timeout = duration("BOSUN_ACTION_TIMEOUT", Duration::from_secs(3600));
        let stop_timeout = duration("BOSUN_STOP_TIMEOUT", Duration::from_secs(8));
        let read_timeout = duration("BOSUN_READ_TIMEOUT", Duration::from_secs(5));
        let kill_grace = duration("BOSUN_KILL_GRACE", Duration::from_secs(5));

        let mut action_timeouts = HashMap::new();
        if let Some(v) = val("BOSUN_ACTION_TIMEOUTS") {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let parsed = item.split_once('=').and_then(|(a, d)| {
                    let a = a.trim();
                    let valid_name = !a.is_empty()
                        && a.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    let d = parse_duration(d.trim()).ok()?;
                    valid_name.then(|| (a.replace('_', "-"), d))
                });
                match parsed {
                    Some((a, d)) => {
                        action_timeouts.insert(a, d);
                    }
                    None => errors.push(ConfigError {
                        var: "BOSUN_ACTION_TIMEOUTS",
                        value: v.clone(),
                        expected: format!(
                            "item {item:?} is not ACTION=DURATION, as in rotate-logs=5m,nightly-backup=3h"
                        ),
                    }),
                }
            }
        }

        let max_actions = match val("BOSUN_MAX_ACTIONS") {
            None => 8,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    errors.push(ConfigError {
                        var: "BOSUN_MAX_ACTIONS",
                        value: v,
                        expected: "a whole number of at least 1".into(),
                    });
                    8
                }
            },
        };
        let next_id = match val("BOSUN_NEXT_ID") {
            None => 1,
            Some(v) => match v.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    errors.push(ConfigError {
                        var: "BOSUN_NEXT_ID",
                        value: v,
                        expected: "a whole number".into(),
                    });
                    1
                }
            },
        };
        let log_format = match val("BOSUN_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                errors.push(ConfigError {
                    var: "BOSUN_LOG_FORMAT",
                    value: other.into(),
                    expected: "`text` or `json`".into(),
                });
                LogFormat::Text
            }
        };
        let log_filter = val("BOSUN_LOG").unwrap_or_else(|| "info".into());

        let allow_uids = id_list(
            "BOSUN_ALLOW_UIDS",
            val("BOSUN_ALLOW_UIDS"),
            lookup_user,
            &mut errors,
        );
        let allow_gids = id_list(
            "BOSUN_ALLOW_GIDS",
            val("BOSUN_ALLOW_GIDS"),
            lookup_group,
            &mut errors,
        );

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            service,
            callbacks,
            action_timeout,
            action_timeouts,
            max_actions,
            allow_uids,
            allow_gids,
            stop_timeout,
            read_timeout,
            kill_grace,
            log_format,
            log_filter,
            next_id,
        })
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// The timeout of one action: its own entry in `BOSUN_ACTION_TIMEOUTS`, else the default.
    pub fn timeout_of(&self, action: &str) -> Duration {
        self.action_timeouts
            .get(action)
            .copied()
            .unwrap_or(self.action_timeout)
    }

    /// Whether a peer may send requests. With no allow-list anyone who can open the socket
    /// may (the socket's mode and group are the first gate). With one, root (uid 0) is
    /// always allowed: inside the container root can act on everything anyway, and an
    /// operator's `docker exec ... scheduler send` runs as root.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        if self.allow_uids.is_empty() && self.allow_gids.is_empty() {
            return true;
        }
        uid == 0 || self.allow_uids.contains(&uid) || self.allow_gids.contains(&gid)
    }
}

/// `5s`, `1h 30m`, `250ms` (humantime), or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 30s, 5m, 1h30m"))
}

fn id_list(
    var: &'static str,
    value: Option<String>,
    by_name: fn(&str) -> Option<u32>,
    errors: &mut Vec<ConfigError>,
) -> Vec<u32> {
    let Some(value) = value else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u32>().ok().or_else(|| by_name(item)) {
            Some(id) => ids.push(id),
            None => errors.push(ConfigError {
                var,
                value: value.clone(),
                expected: format!("{item:?} is neither a number nor a known name"),
            }),
        }
    }
    ids
}

fn lookup_user(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn lookup_group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[("BOSUN_SERVICE", "mysql")]).unwrap();
        assert_eq!(c.service, "mysql");
        assert_eq!(c.callbacks, PathBuf::from(DEFAULT_CALLBACKS));
        assert_eq!(c.action_timeout, Duration::from_secs(3600));
        assert_eq!(c.max_actions, 8);
        assert_eq!(c.stop_timeout, Duration::from_secs(8));
        assert_eq!(c.read_timeout, Duration::from_secs(5));
        assert_eq!(c.next_id, 1);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.allows(1234, 1234));
    }

    #[test]
    fn per_action_timeouts() {
        let c = cfg(&[
            ("BOSUN_SERVICE", "x"),
            ("BOSUN_ACTION_TIMEOUT", "10m"),
            ("BOSUN_ACTION_TIMEOUTS", "rotate-logs=5m, nightly_backup=3h"),
        ])
        .unwrap();
        assert_eq!(c.timeout_of("rotate-logs"), Duration::from_secs(300));
        assert_eq!(
            c.timeout_of("nightly-backup"),
            Duration::from_secs(3 * 3600)
        );
        assert_eq!(c.timeout_of("other"), Duration::from_secs(600));
    }

    #[test]
    fn every_error_reported_at_once() {
        let e = cfg(&[
            ("BOSUN_ACTION_TIMEOUT", "soon"),
            ("BOSUN_MAX_ACTIONS", "0"),
            ("BOSUN_LOG_FORMAT", "xml"),
            ("BOSUN_ACTION_TIMEOUTS", "a=1s,b"),
            ("BOSUN_ALLOW_UIDS", "0,no-such-user-here"),
            ("BOSUN_NEXT_ID", "-1"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = e.0.iter().map(|e| e.var).collect();
        assert_eq!(
            vars,
            [
                "BOSUN_SERVICE",
                "BOSUN_ACTION_TIMEOUT",
                "BOSUN_ACTION_TIMEOUTS",
                "BOSUN_MAX_ACTIONS",
                "BOSUN_NEXT_ID",
                "BOSUN_LOG_FORMAT",
                "BOSUN_ALLOW_UIDS"
            ]
        );
        let text = e.to_string();
        assert_eq!(text.lines().count(), 7);
        assert!(text.contains("BOSUN_MAX_ACTIONS=\"0\""), "{text}");
    }

    #[test]
    fn allow_list() {
        let c = cfg(&[
            ("BOSUN_SERVICE", "x"),
            ("BOSUN_ALLOW_UIDS", "1000, 1001"),
            ("BOSUN_ALLOW_GIDS", "33"),
        ])
        .unwrap();
        assert!(c.allows(0, 0), "root is always allowed");
        assert!(c.allows(1001, 5));
        assert!(c.allows(5, 33));
        assert!(!c.allows(5, 5));
        let c = cfg(&[("BOSUN_SERVICE", "x"), ("BOSUN_ALLOW_UIDS", "root")]).unwrap();
        assert_eq!(c.allow_uids, [0]);
    }

    #[test]
    fn bare_seconds() {
        let c = cfg(&[("BOSUN_SERVICE", "x"), ("BOSUN_READ_TIMEOUT", "2")]).unwrap();
        assert_eq!(c.read_timeout, Duration::from_secs(2));
    }
}
