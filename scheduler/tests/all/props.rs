//! Property tests: `next` agrees with a brute-force scanner that walks minute by minute and
//! matches with its own, independent reading of the fields (built from the same random
//! structure that renders the expression text, never from the parser's output).

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use proptest::prelude::*;
use scheduler::cron::CronExpr;
use scheduler::plan::next_fire;

#[derive(Debug, Clone)]
enum Item {
    Star,
    StarStep(u32),
    Value(u32),
    Range(u32, u32),
    RangeStep(u32, u32, u32),
}

#[derive(Debug, Clone)]
struct FieldSpec {
    items: Vec<Item>,
}

impl FieldSpec {
    fn text(&self) -> String {
        self.items
            .iter()
            .map(|i| match i {
                Item::Star => "*".to_string(),
                Item::StarStep(s) => format!("*/{s}"),
                Item::Value(v) => v.to_string(),
                Item::Range(a, b) => format!("{a}-{b}"),
                Item::RangeStep(a, b, s) => format!("{a}-{b}/{s}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The set this field stands for, with `*` covering `lo..=star_hi`.
    fn set(&self, lo: u32, star_hi: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for i in &self.items {
            match *i {
                Item::Star => out.extend(lo..=star_hi),
                Item::StarStep(s) => out.extend((lo..=star_hi).step_by(s as usize)),
                Item::Value(v) => out.push(v),
                Item::Range(a, b) => out.extend(a..=b),
                Item::RangeStep(a, b, s) => out.extend((a..=b).step_by(s as usize)),
            }
        }
        out
    }

    fn starts_star(&self) -> bool {
        matches!(self.items[0], Item::Star | Item::StarStep(_))
    }
}

fn field(lo: u32, hi: u32) -> impl Strategy<Value = FieldSpec> {
    let span = hi - lo;
    let item = prop_oneof![
        2 => Just(Item::Star),
        1 => (1..=span).prop_map(Item::StarStep),
        3 => (lo..=hi).prop_map(Item::Value),
        2 => (lo..=hi, lo..=hi).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        1 => (lo..=hi, lo..=hi, 1..=span).prop_map(|(a, b, s)| Item::RangeStep(a.min(b), a.max(b), s)),
    ];
    prop::collection::vec(item, 1..=3).prop_map(|items| FieldSpec { items })
}

#[derive(Debug, Clone)]
struct Spec {
    fields: [FieldSpec; 5],
}

impl Spec {
    fn text(&self) -> String {
        self.fields
            .iter()
            .map(FieldSpec::text)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Vixie's matching, written out plainly.
    fn matches(&self, t: NaiveDateTime) -> bool {
        let [mi, h, dom, mon, dow] = &self.fields;
        let dows: Vec<u32> = dow.set(0, 7).into_iter().map(|d| d % 7).collect();
        let dom_ok = dom.set(1, 31).contains(&t.day());
        let dow_ok = dows.contains(&t.weekday().num_days_from_sunday());
        let day_ok = if dom.starts_star() || dow.starts_star() {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        };
        mi.set(0, 59).contains(&t.minute())
            && h.set(0, 23).contains(&t.hour())
            && mon.set(1, 12).contains(&t.month())
            && day_ok
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        field(0, 59),
        field(0, 23),
        field(1, 31),
        field(1, 12),
        field(0, 7),
    )
        .prop_map(|(a, b, c, d, e)| Spec {
            fields: [a, b, c, d, e],
        })
}

/// Minute by minute through the real instants after `after`, for at most `limit` minutes.
fn brute<Z: TimeZone>(
    spec: &Spec,
    zone: &Z,
    after: DateTime<Utc>,
    limit: i64,
) -> Option<DateTime<Utc>> {
    let mut t = after.with_second(0).unwrap().with_nanosecond(0).unwrap() + Duration::minutes(1);
    for _ in 0..limit {
        let local = t.with_timezone(zone).naive_local();
        if local.second() == 0 && spec.matches(local) {
            return Some(t);
        }
        t += Duration::minutes(1);
    }
    None
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2001..2035, to the second.
    (978_307_200i64..2_051_222_400).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

const LIMIT: i64 = 3 * 24 * 60;

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// Fixed offsets (UTC among them) have no DST: the scanner is exact.
    #[test]
    fn agrees_with_scanner_on_fixed_offsets(spec in spec(), after in instant(), quarter_hours in -48i32..=56) {
        let zone = FixedOffset::east_opt(quarter_hours * 15 * 60).unwrap();
        match CronExpr::parse(&spec.text()) {
            Err(e) => {
                // Only "never fires" may be refused, and then the scanner agrees over 8 years
                // of dates (checked day by day at each matching time).
                prop_assert!(e.to_string().contains("never fires"), "{}: {e}", spec.text());
                let mut d = after.date_naive();
                for _ in 0..(366 * 8) {
                    let midnight = d.and_hms_opt(0, 0, 0).unwrap();
                    let any = (0..1440).step_by(1).any(|m| spec.matches(midnight + Duration::minutes(m)));
                    prop_assert!(!any, "{} fires on {d}", spec.text());
                    d = d.succ_opt().unwrap();
                }
            }
            Ok(expr) => {
                let got = next_fire(&expr, &zone, after);
                let want = brute(&spec, &zone, after, LIMIT);
                match want {
                    Some(w) => prop_assert_eq!(got, Some(w), "{} after {}", spec.text(), after),
                    None => prop_assert!(got.is_some_and(|g| g > after + Duration::minutes(LIMIT)), "{}: got {:?}", spec.text(), got),
                }
                prop_assert_eq!(expr.to_string(), spec.text());
            }
        }
    }

    /// Real zones, compared only where the offset is the same all the way from `after` to
    /// the answer (away from DST changes, where the scanner is obviously right).
    #[test]
    fn agrees_with_scanner_in_real_zones(spec in spec(), after in instant(), zi in 0usize..chrono_tz::TZ_VARIANTS.len()) {
        let zone = chrono_tz::TZ_VARIANTS[zi];
        let Ok(expr) = CronExpr::parse(&spec.text()) else { return Ok(()) };
        let want = brute(&spec, &zone, after, LIMIT);
        let got = next_fire(&expr, &zone, after);
        let end = want.unwrap_or(after + Duration::minutes(LIMIT));
        let off = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
        let mut t = after;
        let mut steady = true;
        while t <= end + Duration::hours(1) {
            if off(t) != off(after) { steady = false; break; }
            t += Duration::minutes(30);
        }
        prop_assume!(steady);
        match want {
            Some(w) => prop_assert_eq!(got, Some(w), "{} in {} after {}", spec.text(), zone, after),
            None => prop_assert!(got.is_none_or(|g| g > end), "{} in {}: {:?}", spec.text(), zone, got),
        }
    }

    /// Any text: never a panic; a parsed expression displays to text that parses the same.
    #[test]
    fn parse_never_panics_and_round_trips(text in "[0-9a-z*/,@ -]{0,40}") {
        if let Ok(e) = CronExpr::parse(&text) {
            prop_assert_eq!(CronExpr::parse(&e.to_string()), Ok(e));
        }
    }
}
