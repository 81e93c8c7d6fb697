//! Next-fire computation: a cron expression, a zone and an instant in; the next instant out.
//!
//! The daylight-saving rules are those of Debian's cron and cronie, applied in the
//! expression's own zone (see README.md, "The scheduler"):
//!
//! * a local time that occurs once fires once;
//! * clock goes back (a local time occurs twice): a *fixed-time* job fires only in the first
//!   pass, a *wildcard* job in both;
//! * clock jumps forward (a local time does not occur): a wildcard job skips it, a fixed-time
//!   job fires once at the first instant after the gap, however many of its times the gap
//!   swallowed (New York `30 2` fires at 03:00 EDT).
//!
//! The search walks the matching *local* minutes in order (cheap: bit sets, see
//! [`CronExpr::next_local`]) and maps each one to its instants with the zone. The first-pass
//! instants of successive local minutes never go backwards, so the walk can stop at the first
//! local minute whose first instant is past `after`; it starts a little early (by the size of
//! an upcoming fall-back) so that second-pass instants of a wildcard job are not missed.
//! Everything is generic over [`TimeZone`], so the same code serves chrono-tz zones and the
//! fixed offsets the property tests use.

use chrono::{DateTime, Duration, LocalResult, Offset, TimeZone, Timelike, Utc};

use crate::cron::{CronExpr, JobKind};

/// How far ahead a local match is looked for. Every expression that parses fires within
/// it: `0 0 29 2 *` can wait 8 years (2096 to 2104), and February 29 on a given weekday
/// (`0 0 29 2 */7`: AND, because of the leading `*`) up to 40 years (a 28-year cycle,
/// stretched by the skipped leap day of 2100).
const HORIZON_DAYS: u32 = 366 * 41;

/// How far past a local time that does not exist the end of its gap is looked for (real
/// gaps are 30 min to 1 day: Samoa skipped 2011-12-30 entirely).
const MAX_GAP_MINUTES: i64 = 48 * 60;

/// The first fire strictly after `after`, or `None` when there is none within the horizon.
pub fn next_fire<Z: TimeZone>(
    expr: &CronExpr,
    zone: &Z,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let offset_at = |t: DateTime<Utc>| {
        i64::from(
            zone.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    };
    // Start early enough to see the second pass of a fall-back that is coming up.
    let lookahead = after
        .checked_add_signed(Duration::hours(26))
        .unwrap_or(after);
    let shift = offset_at(after).min(offset_at(lookahead));
    let start = after
        .naive_utc()
        .checked_add_signed(Duration::seconds(shift))?
        .with_second(0)?
        .with_nanosecond(0)?;
    let mut m = expr.next_local(start, HORIZON_DAYS)?;
    let mut best: Option<DateTime<Utc>> = None;
    let consider = |t: DateTime<Utc>, best: &mut Option<DateTime<Utc>>| {
        if t > after && best.is_none_or(|b| t < b) {
            *best = Some(t);
        }
    };
    // Bounded: a fall-back of a few hours holds at most a few hundred matching minutes.
    for _ in 0..100_000 {
        let first = match zone.from_local_datetime(&m) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(early, late) => {
                if expr.kind() == JobKind::Wildcard {
                    consider(late.with_timezone(&Utc), &mut best);
                }
                Some(early.with_timezone(&Utc))
            }
            LocalResult::None => match expr.kind() {
                JobKind::Wildcard => None,
                JobKind::Fixed => gap_end(zone, m),
            },
        };
        if let Some(t) = first {
            consider(t, &mut best);
            if t > after {
                return best;
            }
        }
        let from = m.checked_add_signed(Duration::minutes(1))?;
        match expr.next_local(from, HORIZON_DAYS) {
            Some(next) => m = next,
            None => return best,
        }
    }
    best
}

/// The first instant after the gap that swallowed local time `m`.
fn gap_end<Z: TimeZone>(zone: &Z, m: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    (1..=MAX_GAP_MINUTES).find_map(|k| {
        let probe = m.checked_add_signed(Duration::minutes(k))?;
        zone.from_local_datetime(&probe)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The fires strictly after `after`, in order.
pub fn fires<'a, Z: TimeZone>(
    expr: &'a CronExpr,
    zone: &'a Z,
    after: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + 'a {
    let mut cursor = after;
    std::iter::from_fn(move || {
        let t = next_fire(expr, zone, cursor)?;
        cursor = t;
        Some(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn run(expr: &str, zone: Tz, from: &str, n: usize) -> Vec<String> {
        let e = CronExpr::parse(expr).unwrap();
        fires(&e, &zone, at(from))
            .take(n)
            .map(|t| t.with_timezone(&zone).to_rfc3339())
            .collect()
    }

    #[test]
    fn utc_basics() {
        assert_eq!(
            run("*/20 * * * *", Tz::UTC, "2026-11-22T00:00:00Z", 3),
            [
                "2026-11-22T00:20:00+00:00",
                "2026-11-22T00:40:00+00:00",
                "2026-11-22T01:00:00+00:00"
            ]
        );
        // Strictly after, and a sub-second `after` rounds up.
        assert_eq!(
            run("0 0 * * *", Tz::UTC, "2026-11-22T00:00:00.5Z", 1),
            ["2026-11-23T00:00:00+00:00"]
        );
    }

    #[test]
    fn rare_dates_are_found() {
        assert_eq!(
            run("0 0 29 2 */7", Tz::UTC, "2026-01-01T00:00:00Z", 2),
            ["2032-02-29T00:00:00+00:00", "2060-02-29T00:00:00+00:00"]
        );
        assert_eq!(
            run("0 0 29 2 *", Tz::UTC, "2097-01-01T00:00:00Z", 1),
            ["2104-02-29T00:00:00+00:00"]
        );
    }

    #[test]
    fn new_york_spring_forward() {
        let ny = chrono_tz::America::New_York;
        // 2026-03-08: 02:00 EST -> 03:00 EDT.
        assert_eq!(
            run("30 2 * * *", ny, "2026-03-07T12:00:00-05:00", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
        // Several times in the gap: still once.
        assert_eq!(
            run("0,15,30,45 2 * * *", ny, "2026-03-08T00:00:00-05:00", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]
        );
        // Wildcard skips the missing slots.
        assert_eq!(
            run("30 * * * *", ny, "2026-03-08T00:45:00-05:00", 2),
            ["2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"]
        );
    }

    #[test]
    fn new_york_fall_back() {
        let ny = chrono_tz::America::New_York;
        // 2026-11-01: 02:00 EDT -> 01:00 EST.
        assert_eq!(
            run("30 1 * * *", ny, "2026-10-31T12:00:00-04:00", 2),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        assert_eq!(
            run("30 * * * *", ny, "2026-11-01T00:45:00-04:00", 3),
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:30:00-05:00"
            ]
        );
        // Starting inside the first pass still sees the second pass.
        assert_eq!(
            run("30 * * * *", ny, "2026-11-01T01:40:00-04:00", 1),
            ["2026-11-01T01:30:00-05:00"]
        );
    }
}
