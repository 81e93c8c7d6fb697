//! The one logger of the three programs: a minimal `tracing` subscriber, one event a line
//! on stderr, text or JSON.
//!
//! Why not tracing-subscriber: the supervisor and the listener run in every container and
//! are measured for PSS; tracing-subscriber's fmt + env-filter + json layers doubled a
//! binary (1.1 MB vs 0.6 MB), and the text pages a process touches are most of its PSS.
//! bosun uses no spans, so events are all there is to format.
//!
//! `BOSUN_LOG` takes the simple directives of tracing's env-filter: a default level and/or
//! `target=level` items, comma separated (`info`, `warn,listener::runner=debug`);
//! `BOSUN_LOG_FORMAT` is `text` or `json`. A value that does not parse is an error for
//! all three programs (see [`init`]), never silently replaced.
//! Text lines look like tracing-subscriber's: `2026-11-22T00:09:56.589034Z  INFO
//! listener::server: request uid=0 action=ping`; values with blanks, quotes or `=` are
//! quoted, so a line always splits back into fields. JSON lines are flat objects:
//! `{"timestamp":..,"level":"INFO","target":..,"message":"request","uid":0,..}`.

use crate::text::json_str;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::SystemTime;

use thiserror::Error;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A `BOSUN_LOG` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a level (trace, debug, info, warn, error, off) or TARGET=LEVEL")]
pub struct FilterError(pub String);

/// A `BOSUN_LOG_FORMAT` value that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a log format (text, json)")]
pub struct LogFormatError(pub String);

/// Log line format (`BOSUN_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(s: &str) -> Result<LogFormat, LogFormatError> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(LogFormatError(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Which events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    default: LevelFilter,
    /// (target prefix, level), longest prefix first.
    targets: Vec<(String, LevelFilter)>,
}

fn level(s: &str) -> Option<LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => return None,
    })
}

impl Default for Filter {
    /// `info` for everything.
    fn default() -> Filter {
        Filter {
            default: LevelFilter::INFO,
            targets: Vec::new(),
        }
    }
}

impl Filter {
    pub fn parse(spec: &str) -> Result<Filter, FilterError> {
        let mut f = Filter {
            default: LevelFilter::INFO,
            targets: Vec::new(),
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                None => match level(item) {
                    Some(l) => f.default = l,
                    // A bare target means "everything from it".
                    None if is_target(item) => f.targets.push((item.into(), LevelFilter::TRACE)),
                    None => return Err(FilterError(item.into())),
                },
                Some((t, l)) => match (is_target(t.trim()), level(l.trim())) {
                    (true, Some(l)) => f.targets.push((t.trim().into(), l)),
                    _ => return Err(FilterError(item.into())),
                },
            }
        }
        f.targets.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        Ok(f)
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(t, _)| {
                target == t
                    || (target.starts_with(t.as_str()) && target[t.len()..].starts_with("::"))
            })
            .map(|(_, l)| *l)
            .unwrap_or(self.default)
    }

    /// Whether an event at `level` from `target` is written.
    pub fn enabled(&self, target: &str, level: &tracing::Level) -> bool {
        *level <= self.level_for(target)
    }

    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, std::cmp::max)
    }
}

fn is_target(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
}

/// The subscriber.
#[derive(Debug)]
pub struct LineLogger {
    filter: Filter,
    json: bool,
}

impl LineLogger {
    pub fn new(filter: Filter, json: bool) -> LineLogger {
        LineLogger { filter, json }
    }

    /// Formats one event as a line (with its `\n`).
    pub fn format(&self, event: &Event<'_>, now: SystemTime) -> String {
        let meta = event.metadata();
        let mut v = Fields {
            json: self.json,
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut v);
        if let Some(n) = INSTANCE.get() {
            v.raw_named("instance", &n.to_string());
        }
        let ts = crate::time::rfc3339_us(now);
        let mut out = String::with_capacity(96 + v.message.len() + v.fields.len());
        if self.json {
            out.push_str("{\"timestamp\":\"");
            out.push_str(&ts);
            let _ = write!(out, "\",\"level\":\"{}\",\"target\":", meta.level());
            json_str(&mut out, meta.target());
            out.push_str(",\"message\":");
            json_str(&mut out, &v.message);
            out.push_str(&v.fields);
            out.push_str("}\n");
        } else {
            let _ = write!(
                out,
                "{ts} {:>5} {}: {}",
                meta.level(),
                meta.target(),
                v.message
            );
            out.push_str(&v.fields);
            out.push('\n');
        }
        out
    }
}

impl Subscriber for LineLogger {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if self.filter.enabled(meta.target(), meta.level()) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max())
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.filter.enabled(meta.target(), meta.level())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Spans are not used; every span shares one id and is ignored.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = self.format(event, SystemTime::now());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// This process's replica instance, once known: every line then says `instance=<n>`
/// (DESIGN.md section 10), so that the lines of replicas sharing one log (a Swarm
/// service's) can be told apart.
static INSTANCE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Sets the instance every later line names (the first call wins).
pub fn set_instance(n: u32) {
    let _ = INSTANCE.set(n);
}

/// Installs the logger for the whole process. The filter has been parsed already (a bad
/// one is a setting error of the program, reported before anything starts).
pub fn init(filter: Filter, format: LogFormat) {
    // Only fails when a logger is installed already (a second call): keep that one.
    let _ =
        tracing::subscriber::set_global_default(LineLogger::new(filter, format == LogFormat::Json));
}

/// Reads `BOSUN_LOG` and `BOSUN_LOG_FORMAT` through `get` (unset or blank: `info`,
/// `text`), by the settings' rows for them. Every bad one is reported, one line each, as
/// `VAR: problem`.
pub fn from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> Result<(Filter, LogFormat), crate::settings::Problems> {
    crate::settings::keys::log_from_lookup(&get)
}

struct Fields {
    json: bool,
    message: String,
    fields: String,
}

impl Fields {
    fn raw(&mut self, field: &Field, json_value: &str) {
        self.raw_named(field.name(), json_value);
    }

    fn raw_named(&mut self, name: &str, json_value: &str) {
        if self.json {
            self.fields.push(',');
            json_str(&mut self.fields, name);
            self.fields.push(':');
            self.fields.push_str(json_value);
        } else {
            let _ = write!(self.fields, " {name}={json_value}");
        }
    }

    fn text(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            // One event, one line, whatever the message holds.
            self.message = value.replace(['\n', '\r'], " ");
            return;
        }
        if self.json {
            self.fields.push(',');
            json_str(&mut self.fields, field.name());
            self.fields.push(':');
            json_str(&mut self.fields, value);
        } else {
            let plain = !value.is_empty()
                && !value
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
            if plain {
                let _ = write!(self.fields, " {}={value}", field.name());
            } else {
                let _ = write!(self.fields, " {}={value:?}", field.name());
            }
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let s = format!("{value:?}");
        self.text(field, &s);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, &value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, &value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, &value.to_string());
        } else {
            self.text(field, &value.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates() {
        use crate::time::rfc3339_us;
        assert_eq!(rfc3339_us(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_307_396_589_034);
        assert_eq!(rfc3339_us(t), "2026-11-22T00:29:56.589034Z");
    }

    #[test]
    fn filters() {
        let f = Filter::parse("warn,listener::runner=debug").unwrap();
        assert!(f.enabled("listener::runner", &tracing::Level::DEBUG));
        assert!(!f.enabled("listener::runner", &tracing::Level::TRACE));
        assert!(!f.enabled("listener::server", &tracing::Level::INFO));
        assert!(f.enabled("listener::server", &tracing::Level::WARN));
        assert!(!f.enabled("listener::runnerx", &tracing::Level::DEBUG));
        assert!(!Filter::parse("off")
            .unwrap()
            .enabled("x", &tracing::Level::ERROR));
        assert!(Filter::parse("lo ud").is_err());
        assert!(Filter::parse("x=loud").is_err());
        assert!(Filter::parse("a=b").is_err());
        assert_eq!(Filter::parse("").unwrap().default, LevelFilter::INFO);
    }

    #[test]
    fn settings_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let (f, fmt) = from_lookup(env(&[])).unwrap();
        assert_eq!((f, fmt), (Filter::default(), LogFormat::Text));
        let (_, fmt) =
            from_lookup(env(&[("BOSUN_LOG", "debug"), ("BOSUN_LOG_FORMAT", "json")])).unwrap();
        assert_eq!(fmt, LogFormat::Json);
        let errs = from_lookup(env(&[
            ("BOSUN_LOG", "loud=yes"),
            ("BOSUN_LOG_FORMAT", "xml"),
        ]))
        .unwrap_err();
        let errs: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("BOSUN_LOG: \"loud=yes\" is not a level"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("BOSUN_LOG_FORMAT: \"xml\" is not a log format"),
            "{errs:?}"
        );
    }

    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    /// Captures formatted lines instead of writing them.
    struct Capture(LineLogger, Buf);

    impl Subscriber for Capture {
        fn enabled(&self, m: &Metadata<'_>) -> bool {
            self.0.enabled(m)
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, e: &Event<'_>) {
            let line = self.0.format(e, UNIX_EPOCH);
            self.1 .0.lock().unwrap().push(line);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn capture(json: bool, f: impl FnOnce()) -> Vec<String> {
        let buf = Buf::default();
        let sub = Capture(
            LineLogger::new(Filter::parse("debug").unwrap(), json),
            buf.clone(),
        );
        tracing::subscriber::with_default(sub, f);
        let lines = buf.0.lock().unwrap().clone();
        lines
    }

    #[test]
    fn text_lines() {
        let lines = capture(false, || {
            let msg = "timed out\nafter 5s";
            tracing::info!(uid = 0u32, action = "ping", error = %msg, ok = true, "request");
        });
        assert_eq!(
            lines,
            [
                "1970-01-01T00:00:00.000000Z  INFO common::log::tests: request uid=0 action=ping error=\"timed out\\nafter 5s\" ok=true\n"
            ]
        );
    }

    #[test]
    fn json_lines() {
        let lines = capture(true, || {
            tracing::warn!(id = 7u64, user = "a \"b\"", "done");
        });
        assert_eq!(
            lines,
            [
                "{\"timestamp\":\"1970-01-01T00:00:00.000000Z\",\"level\":\"WARN\",\"target\":\"common::log::tests\",\"message\":\"done\",\"id\":7,\"user\":\"a \\\"b\\\"\"}\n"
            ]
        );
    }
}
