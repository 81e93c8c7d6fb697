//! Durations as users write them, one rule for every setting of the three programs:
//! humantime's `30s`, `500ms`, `5m`, `1h30m`, `1h 30m`, or a bare number of seconds.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a duration (such as 30s, 500ms, 5m, 1h30m, or a number of seconds)")]
pub struct DurationError(pub String);

/// Parses `30s`, `5m`, `1h 30m`, `250ms`, or `90` (seconds). Blanks around are ignored.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(t).map_err(|_| DurationError(text.to_string()))
}

/// Shows a duration the way [`parse`] reads it back (`1h 30m`, `500ms`).
pub fn show(d: Duration) -> impl fmt::Display {
    humantime::format_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn errors_say_what_is_valid() {
        for bad in ["", "soon", "8 parsecs", "-1", "1.5.2s"] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains("is not a duration"), "{e}");
        }
    }

    #[test]
    fn shown_reads_back() {
        for d in [
            Duration::from_secs(5400),
            Duration::from_millis(500),
            Duration::from_secs(8),
            Duration::ZERO,
        ] {
            assert_eq!(parse(&show(d).to_string()), Ok(d));
        }
    }
}
