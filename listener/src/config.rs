//! The listener's settings: `common::settings::Settings`, the supervisor's own type, read
//! from the environment the supervisor gives it (`Settings::to_env`) by the same rules the
//! supervisor validated them with before anything started. A bad value here means the
//! listener was started by hand with a bad environment; every problem is reported at once.
//!
//! Beside the settings, `BOSUN_NEXT_ID`: not a setting but where the supervisor's count of
//! request ids stands, so ids are not reused after a listener restart. The listener's own
//! limits (`replay_wait`, `max_connections`) are settings like the others; only the
//! default of `max_connections`, computed from the descriptor limit, is the listener's
//! (`server::connection_limit`).

use std::fmt;

use common::settings::{Origin, Problem, Sources, ValueError, ValuesOnly};
pub use common::settings::{Settings, DEFAULT_CALLBACKS};
use thiserror::Error;

/// Everything the listener needs to know, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// `BOSUN_NEXT_ID`: the first request id to hand out (default 1).
    pub next_id: u64,
}

/// All the bad settings found, one a line (`BOSUN_X: problem`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors(pub Vec<Problem>);

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

/// Where the supervisor's count of request ids stands.
const NEXT_ID: &str = "BOSUN_NEXT_ID";

impl Config {
    /// Reads the settings through `get` (normally `std::env::var`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let loaded = Settings::load(&Sources {
            file: Default::default(),
            env: &get,
            exec: Vec::new(),
            role: ValuesOnly,
        });
        let mut errors = match &loaded {
            Ok(_) => Vec::new(),
            Err(p) => p.0.clone(),
        };
        let next_id = match get(NEXT_ID).filter(|v| !v.trim().is_empty()) {
            None => 1,
            Some(v) => v.trim().parse::<u64>().unwrap_or_else(|_| {
                let origin = Some(Origin::Env(NEXT_ID));
                errors.push(Problem::new(origin, ValueError::Whole(v)));
                1
            }),
        };
        match loaded {
            Ok(settings) if errors.is_empty() => Ok(Config { settings, next_id }),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

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
        assert_eq!(c.settings.service, "mysql");
        assert_eq!(c.next_id, 1);
        assert_eq!(c.settings.read_timeout, Duration::from_secs(5));
        assert_eq!(c.settings.replay_wait, common::settings::REPLAY_WAIT);
        assert_eq!(c.settings.max_connections, None);
        let c = cfg(&[
            ("BOSUN_SERVICE", "mysql"),
            ("BOSUN_REPLAY_WAIT", "2s"),
            ("BOSUN_MAX_CONNECTIONS", "8"),
        ])
        .unwrap();
        assert_eq!(c.settings.replay_wait, Duration::from_secs(2));
        assert_eq!(c.settings.max_connections, Some(8));
    }

    #[test]
    fn every_error_reported_at_once() {
        let e = cfg(&[
            ("BOSUN_ACTION_TIMEOUT", "soon"),
            ("BOSUN_MAX_ACTIONS", "0"),
            ("BOSUN_NEXT_ID", "-1"),
            ("BOSUN_REPLAY_WAIT", "0s"),
            ("BOSUN_MAX_CONNECTIONS", "many"),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert_eq!(text.lines().count(), 6, "{text}");
        for needle in [
            "listener: bad setting no service name",
            "listener: bad setting BOSUN_ACTION_TIMEOUT: \"soon\" is not a duration",
            "listener: bad setting BOSUN_MAX_ACTIONS: \"0\" is not",
            "listener: bad setting BOSUN_NEXT_ID: \"-1\" is not a whole number",
            "listener: bad setting BOSUN_REPLAY_WAIT: \"0s\" is not a duration",
            "listener: bad setting BOSUN_MAX_CONNECTIONS: \"many\" is not a whole number of at least 1",
        ] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
    }

    #[test]
    fn what_the_supervisor_gives_reads_back() {
        let s = cfg(&[
            ("BOSUN_SERVICE", "x"),
            ("BOSUN_READ_TIMEOUT", "2"),
            ("BOSUN_REPLAY_WAIT", "45s"),
            ("BOSUN_MAX_CONNECTIONS", "12"),
        ])
        .unwrap()
        .settings;
        let mut env = s.to_env();
        env.push(("BOSUN_NEXT_ID".into(), "7".into()));
        let map: HashMap<String, String> = env.into_iter().collect();
        let c = Config::from_lookup(|k| map.get(k).cloned()).unwrap();
        assert_eq!(c.settings.read_timeout, Duration::from_secs(2));
        assert_eq!(c.next_id, 7);
        assert_eq!(c.settings.replay_wait, Duration::from_secs(45));
        assert_eq!(c.settings.max_connections, Some(12));
    }
}
