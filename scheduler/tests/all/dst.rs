//! Hand-checked daylight-saving days (2026) in three zones, fixed-time and wildcard jobs,
//! spring-forward and fall-back. Expected instants are written with the offset in force.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use scheduler::cron::CronExpr;
use scheduler::plan::fires;

fn check(expr: &str, zone: Tz, from: &str, expected: &[&str]) {
    let e = CronExpr::parse(expr).unwrap();
    let from = DateTime::parse_from_rfc3339(from)
        .unwrap()
        .with_timezone(&Utc);
    let got: Vec<String> = fires(&e, &zone, from)
        .take(expected.len())
        .map(|t| t.with_timezone(&zone).to_rfc3339())
        .collect();
    assert_eq!(got, expected, "`{expr}` in {zone} after {from}");
}

use chrono_tz::America::New_York as NY;
use chrono_tz::Australia::Lord_Howe as LH;
use chrono_tz::Europe::London as LON;

#[test]
fn london_spring_forward() {
    // 2026-03-29 01:00 GMT -> 02:00 BST.
    check(
        "30 1 * * *",
        LON,
        "2026-03-28T12:00:00Z",
        &["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"],
    );
    check(
        "*/30 * * * *",
        LON,
        "2026-03-29T00:45:00Z",
        &["2026-03-29T02:00:00+01:00", "2026-03-29T02:30:00+01:00"],
    );
    check(
        "@daily",
        LON,
        "2026-03-28T12:00:00Z",
        &["2026-03-29T00:00:00+00:00", "2026-03-30T00:00:00+01:00"],
    );
}

#[test]
fn london_fall_back() {
    // 2026-10-25 02:00 BST -> 01:00 GMT.
    check(
        "30 1 * * *",
        LON,
        "2026-10-24T12:00:00Z",
        &["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"],
    );
    check(
        "15 * * * *",
        LON,
        "2026-10-25T00:00:00+01:00",
        &[
            "2026-10-25T00:15:00+01:00",
            "2026-10-25T01:15:00+01:00",
            "2026-10-25T01:15:00+00:00",
            "2026-10-25T02:15:00+00:00",
        ],
    );
    check(
        "@hourly",
        LON,
        "2026-10-25T00:30:00+01:00",
        &[
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T02:00:00+00:00",
        ],
    );
}

#[test]
fn new_york_spring_forward() {
    // 2026-03-08 02:00 EST -> 03:00 EDT.
    check(
        "30 2 * * *",
        NY,
        "2026-03-07T12:00:00-05:00",
        &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    );
    // Several times in the gap and the time right after it: once.
    check(
        "0 1-3 * * *",
        NY,
        "2026-03-08T00:30:00-05:00",
        &[
            "2026-03-08T01:00:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T01:00:00-04:00",
        ],
    );
    check(
        "*/30 2 * * *",
        NY,
        "2026-03-07T12:00:00-05:00",
        &["2026-03-07T02:30:00-05:00", "2026-03-09T02:00:00-04:00"][1..],
    );
}

#[test]
fn new_york_fall_back() {
    // 2026-11-01 02:00 EDT -> 01:00 EST.
    check(
        "0 1 * * *",
        NY,
        "2026-10-31T12:00:00-04:00",
        &["2026-11-01T01:00:00-04:00", "2026-11-02T01:00:00-05:00"],
    );
    check(
        "*/20 1 * * *",
        NY,
        "2026-11-01T00:50:00-04:00",
        &[
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:20:00-04:00",
            "2026-11-01T01:40:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:20:00-05:00",
            "2026-11-01T01:40:00-05:00",
            "2026-11-02T01:00:00-05:00",
        ],
    );
}

#[test]
fn lord_howe_spring_forward_half_hour() {
    // 2026-10-04 02:00 +10:30 -> 02:30 +11:00.
    check(
        "15 2 * * *",
        LH,
        "2026-10-03T12:00:00+10:30",
        &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
    );
    check(
        "*/15 2 * * *",
        LH,
        "2026-10-04T01:50:00+10:30",
        &[
            "2026-10-04T02:30:00+11:00",
            "2026-10-04T02:45:00+11:00",
            "2026-10-05T02:00:00+11:00",
        ],
    );
}

#[test]
fn lord_howe_fall_back_half_hour() {
    // 2026-04-05 02:00 +11:00 -> 01:30 +10:30.
    check(
        "45 1 * * *",
        LH,
        "2026-04-04T12:00:00+11:00",
        &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
    );
    check(
        "*/15 * * * *",
        LH,
        "2026-04-05T01:20:00+11:00",
        &[
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:00:00+10:30",
        ],
    );
}

#[test]
fn zone_per_line_not_per_daemon() {
    // The same file, two zones: each line keeps its own DST rules.
    let text = "CRON_TZ=America/New_York\n30 2 * * * a b\nCRON_TZ=Europe/London\n30 2 * * * c d\n";
    let s = scheduler::schedule::parse("f", text.as_bytes(), Tz::UTC).unwrap();
    let from = DateTime::parse_from_rfc3339("2026-03-08T05:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        s.entries[0].next_after(from).unwrap().to_rfc3339(),
        "2026-03-08T07:00:00+00:00"
    );
    assert_eq!(
        s.entries[1].next_after(from).unwrap().to_rfc3339(),
        "2026-03-09T02:30:00+00:00"
    );
}
