//! RFC 3339 timestamps by hand, one format per purpose, for the three programs: the
//! supervisor and the listener stay small, so no date crate for one conversion (Howard
//! Hinnant's `civil_from_days`, exact for every day of the proleptic Gregorian calendar).
//!
//! - [`rfc3339`], to the second: an instant shown to people or other programs (the
//!   journal's `history` lines, the scheduler's status page and `status --json`);
//! - [`rfc3339_ms`], to the millisecond: an instant in a log field or a state file, where
//!   two events in one second must stay apart (the scheduler's fire times);
//! - [`rfc3339_us`], to the microsecond: the time of a log line.
//!
//! All are in UTC with `Z`. A time in a zone, for people (`scheduler status`), is the
//! scheduler's, with its zone database.

use std::time::{SystemTime, UNIX_EPOCH};

/// `unix_ms` as RFC 3339 in UTC with second precision and `Z`, e.g. `2026-12-04T23:48:00Z`.
/// Milliseconds are floored (a time before 1970 rounds towards the past, like `date`).
pub fn rfc3339(unix_ms: i64) -> String {
    let (date, _) = split(unix_ms);
    format!("{date}Z")
}

/// `unix_ms` as RFC 3339 in UTC with millisecond precision and `Z`, e.g.
/// `2026-12-04T23:48:00.250Z`.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let (date, ms) = split(unix_ms);
    format!("{date}.{ms:03}Z")
}

/// `t` as RFC 3339 in UTC with microsecond precision and `Z`, e.g.
/// `2026-11-22T00:09:56.589034Z`; a time before 1970 is the epoch.
pub fn rfc3339_us(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (date, _) = split(ms);
    format!("{date}.{:06}Z", d.subsec_micros())
}

/// `unix_ms` as `YYYY-MM-DDTHH:MM:SS` (UTC) and its milliseconds, floored.
fn split(unix_ms: i64) -> (String, i64) {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    (date, unix_ms.rem_euclid(1000))
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(999), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_428_080_000), "2026-12-04T23:48:00Z");
        assert_eq!(rfc3339(4_102_444_799_000), "2099-12-31T23:59:59Z");
        // whatever a damaged clock gives, no overflow
        assert!(rfc3339(i64::MAX).ends_with('Z'));
        assert!(rfc3339(i64::MIN).ends_with('Z'));
    }

    #[test]
    fn one_instant_at_each_precision() {
        assert_eq!(rfc3339_ms(1_796_428_080_250), "2026-12-04T23:48:00.250Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_796_428_080_250_017);
        assert_eq!(rfc3339_us(t), "2026-12-04T23:48:00.250017Z");
        let before = UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(rfc3339_us(before), "1970-01-01T00:00:00.000000Z");
    }

    /// Against a day-by-day walk of the calendar from 1900 to 2200.
    #[test]
    fn every_day_against_a_walk() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1900i64, 1u32, 1u32);
        let mut days = -25_567i64; // 1900-01-01
        while y < 2200 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            days += 1;
            d += 1;
            if d > len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
