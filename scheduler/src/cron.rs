//! The five-field cron expression, with Vixie cron's semantics, and nothing else.
//!
//! An expression is parsed into one bit set per field plus the two facts Vixie cron keeps
//! about the *text* of the fields: whether the day-of-month and day-of-week fields start
//! with `*` (which turns the day rule from OR into AND), and whether the minute or hour
//! field starts with `*` (which makes the job a *wildcard* job for the daylight-saving
//! rules in [`crate::plan`]). Nothing here knows about time zones.
//!
//! Errors carry a 0-based character offset into the expression so that the schedule-file
//! parser can turn them into `FILE:LINE:COL` positions; an expression may have several
//! errors (one per bad field), all reported. Six or seven fields are an error, never a
//! seconds field, and an expression that can never fire (`0 0 31 2 *`) is an error too.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// One problem in an expression: `col` is the 0-based character offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub col: usize,
    pub message: String,
}

impl ExprError {
    fn new(col: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            col,
            message: message.into(),
        }
    }
}

/// The errors of one expression, in order of position; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| format!("column {}: {}", e.col + 1, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ExprErrors(pub Vec<ExprError>);

/// The five fields, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// Smallest and largest number accepted (day-of-week accepts 7 for Sunday).
    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// What the field accepts, for messages.
    fn valid(self) -> &'static str {
        match self {
            Field::Minute => "0-59",
            Field::Hour => "0-23",
            Field::DayOfMonth => "1-31",
            Field::Month => "1-12 or jan-dec",
            Field::DayOfWeek => "0-7 (0 and 7 are Sunday) or sun-sat",
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &MONTHS,
            Field::DayOfWeek => &DAYS,
            _ => &[],
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The `@` macros, with the five fields they stand for. `@reboot` is not here: it has no
/// fields and is handled as its own kind of schedule.
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Whether the daylight-saving rules treat a job as a wildcard or a fixed-time job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Minute or hour field starts with `*` (also `@hourly`): runs in every real slot,
    /// skips slots that a spring-forward removes, runs twice when the clock goes back.
    Wildcard,
    /// Every other job (`@daily` too): runs once per local time, in the first pass when
    /// the clock goes back, at the end of the gap when its time is skipped.
    Fixed,
}

/// A parsed five-field expression (or a macro other than `@reboot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    /// The text as written, normalised to single spaces; `@daily` stays `@daily`.
    text: String,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    doms: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday 0 (7 is folded into 0).
    dows: u8,
    dom_star: bool,
    dow_star: bool,
    kind: JobKind,
}

impl CronExpr {
    /// Parses an expression: five blank-separated fields or one of the macros.
    pub fn parse(text: &str) -> Result<CronExpr, ExprErrors> {
        let tokens = tokens(text);
        if let Some(&(col, first)) = tokens.first() {
            if first.starts_with('@') {
                let lower = first.to_ascii_lowercase();
                if lower == "@reboot" {
                    return Err(ExprErrors(vec![ExprError::new(
                        col,
                        "@reboot has no fire times; it is only valid as a schedule line",
                    )]));
                }
                let Some(&(_, fields)) = MACROS.iter().find(|(m, _)| *m == lower) else {
                    return Err(ExprErrors(vec![ExprError::new(col, unknown_macro(first))]));
                };
                if let Some(&(col2, extra)) = tokens.get(1) {
                    return Err(ExprErrors(vec![ExprError::new(
                        col2,
                        format!("unexpected `{extra}` after {lower}: a macro stands for all five fields"),
                    )]));
                }
                let mut expr = CronExpr::from_tokens(&self::tokens(fields))
                    .map_err(|_| ExprErrors(vec![ExprError::new(col, "internal macro error")]))?;
                expr.text = lower;
                return Ok(expr);
            }
        }
        CronExpr::from_tokens(&tokens)
    }

    /// Parses exactly the given `(offset, token)` fields; used by the file parser, which
    /// has already split the line.
    pub fn from_tokens(tokens: &[(usize, &str)]) -> Result<CronExpr, ExprErrors> {
        let end = tokens
            .last()
            .map(|(c, t)| c + t.chars().count())
            .unwrap_or(0);
        if tokens.len() < 5 {
            return Err(ExprErrors(vec![ExprError::new(
                end,
                format!(
                    "{} time field{} but a schedule needs 5: minute hour day-of-month month day-of-week, or a macro such as @daily",
                    tokens.len(),
                    if tokens.len() == 1 { "" } else { "s" }
                ),
            )]));
        }
        if tokens.len() > 5 {
            return Err(ExprErrors(vec![too_many_fields(tokens.len(), tokens[5].0)]));
        }
        let mut errors = Vec::new();
        let mut sets = [0u64; 5];
        for (i, field) in Field::ALL.into_iter().enumerate() {
            let (col, text) = tokens[i];
            match parse_field(field, text, col) {
                Ok(bits) => sets[i] = bits,
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(ExprErrors(errors));
        }
        let starts_star = |i: usize| tokens[i].1.starts_with('*');
        let mut dows = sets[4];
        if dows & (1 << 7) != 0 {
            dows = (dows | 1) & !(1 << 7);
        }
        let expr = CronExpr {
            text: tokens.iter().map(|t| t.1).collect::<Vec<_>>().join(" "),
            minutes: sets[0],
            hours: sets[1] as u32,
            doms: sets[2] as u32,
            months: sets[3] as u16,
            dows: dows as u8,
            dom_star: starts_star(2),
            dow_star: starts_star(4),
            kind: if starts_star(0) || starts_star(1) {
                JobKind::Wildcard
            } else {
                JobKind::Fixed
            },
        };
        if !expr.can_fire() {
            return Err(ExprErrors(vec![ExprError::new(
                tokens[2].0,
                format!(
                    "`{} {}` never fires: no month in `{}` has such a day; pick days that exist (February has at most 29)",
                    tokens[2].1, tokens[3].1, tokens[3].1
                ),
            )]));
        }
        Ok(expr)
    }

    /// The job kind for the daylight-saving rules.
    pub fn kind(&self) -> JobKind {
        self.kind
    }

    /// True when some date matches. Only a restricted day-of-month combined (AND) with an
    /// unrestricted-looking day-of-week can fail: with OR, every month has every weekday,
    /// and a `*`-prefixed day-of-month always contains day 1.
    fn can_fire(&self) -> bool {
        if self.dom_star || !self.dow_star {
            return true;
        }
        (1..=12u32).any(|m| {
            self.months & (1 << m) != 0 && (1..=max_days(m)).any(|d| self.doms & (1 << d) != 0)
        })
    }

    /// Does this local date match the day fields (with Vixie's OR/AND rule)?
    pub fn matches_date(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.doms & (1 << date.day()) != 0;
        let dow = self.dows & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Does this local time (whole minute) match?
    pub fn matches(&self, t: NaiveDateTime) -> bool {
        self.minutes & (1 << t.minute()) != 0
            && self.hours & (1 << t.hour()) != 0
            && self.matches_date(t.date())
    }

    /// The first local minute `>= from` (rounded up to a whole minute) that matches, looking
    /// at most `max_days` days ahead.
    pub fn next_local(&self, from: NaiveDateTime, max_days: u32) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let (mut h0, mut m0) = (from.hour(), from.minute());
        if from.second() != 0 || from.nanosecond() != 0 {
            m0 += 1;
            if m0 == 60 {
                m0 = 0;
                h0 += 1;
            }
        }
        if h0 == 24 {
            date = date.succ_opt()?;
            h0 = 0;
        }
        for _ in 0..=max_days {
            if self.matches_date(date) {
                if let Some((h, m)) = self.first_time_at_or_after(h0, m0) {
                    return Some(date.and_time(NaiveTime::from_hms_opt(h, m, 0)?));
                }
            }
            date = date.succ_opt()?;
            h0 = 0;
            m0 = 0;
        }
        None
    }

    fn first_time_at_or_after(&self, h0: u32, m0: u32) -> Option<(u32, u32)> {
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let from = if h == h0 { m0 } else { 0 };
            let mask = self.minutes & (!0u64 << from) & ((1u64 << 60) - 1);
            if mask != 0 {
                return Some((h, mask.trailing_zeros()));
            }
        }
        None
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Days in a month at most (February 29, for leap years).
fn max_days(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Splits on blanks, keeping each token's 0-based character offset.
pub fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (char col, byte index)
    for (col, (i, c)) in text.char_indices().enumerate() {
        if c == ' ' || c == '\t' {
            if let Some((sc, sb)) = start.take() {
                out.push((sc, &text[sb..i]));
            }
        } else if start.is_none() {
            start = Some((col, i));
        }
    }
    if let Some((sc, sb)) = start {
        out.push((sc, &text[sb..]));
    }
    out
}

pub(crate) fn too_many_fields(n: usize, col: usize) -> ExprError {
    ExprError::new(
        col,
        format!(
            "{n} time fields, but a schedule takes exactly 5 (minute hour day-of-month month day-of-week); there is no seconds or year field"
        ),
    )
}

fn unknown_macro(text: &str) -> String {
    format!(
        "unknown macro `{text}`: valid are @yearly @annually @monthly @weekly @daily @midnight @hourly @reboot"
    )
}

/// Parses one field into a bit set (bit n = value n).
fn parse_field(field: Field, text: &str, col: usize) -> Result<u64, ExprError> {
    let mut bits = 0u64;
    let mut offset = 0usize; // chars into `text`
    for part in text.split(',') {
        let part_col = col + offset;
        offset += part.chars().count() + 1;
        if part.is_empty() {
            return Err(ExprError::new(
                part_col,
                format!(
                    "empty list item in {} field `{text}`: write values separated by single commas",
                    field.name()
                ),
            ));
        }
        bits |= parse_range(field, part, part_col)?;
    }
    Ok(bits)
}

/// `*`, `N`, `N-M`, `*/S`, `N-M/S`.
fn parse_range(field: Field, part: &str, col: usize) -> Result<u64, ExprError> {
    let (lo_b, hi_b) = field.bounds();
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (part, None),
    };
    let (lo, hi, is_range) = if range == "*" {
        (lo_b, if field == Field::DayOfWeek { 6 } else { hi_b }, true)
    } else if let Some((a, b)) = range.split_once('-') {
        let lo = parse_value(field, a, col)?;
        let hi = parse_value(field, b, col + a.chars().count() + 1)?;
        if lo > hi {
            return Err(ExprError::new(
                col,
                format!(
                    "range `{range}` runs backwards: the {} field needs low-high with low <= high (no wrap-around)",
                    field.name()
                ),
            ));
        }
        (lo, hi, true)
    } else {
        let v = parse_value(field, range, col)?;
        (v, v, false)
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let step_col = col + range.chars().count() + 1;
            if !is_range {
                return Err(ExprError::new(
                    col,
                    format!(
                        "a step needs a range: write `*/{s}` or `{range}-{hi_b}/{s}` instead of `{part}`"
                    ),
                ));
            }
            let span = hi_b - lo_b;
            match s.parse::<u32>() {
                Ok(n) if n >= 1 && n <= span => n,
                _ => {
                    return Err(ExprError::new(
                        step_col,
                        format!(
                            "bad step `{s}` in the {} field: valid steps are 1-{span}",
                            field.name()
                        ),
                    ))
                }
            }
        }
    };
    let mut bits = 0u64;
    let mut v = lo;
    while v <= hi {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits)
}

/// A number or a name of this field.
fn parse_value(field: Field, text: &str, col: usize) -> Result<u32, ExprError> {
    let (lo, hi) = field.bounds();
    if text.is_empty() {
        return Err(ExprError::new(
            col,
            format!(
                "missing value in the {} field: valid values are {}",
                field.name(),
                field.valid()
            ),
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(n) if n >= lo && n <= hi => Ok(n),
            _ => Err(ExprError::new(
                col,
                format!(
                    "{} `{text}` is out of range: valid values are {}",
                    field.name(),
                    field.valid()
                ),
            )),
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names().iter().position(|n| *n == lower) {
        return Ok(if field == Field::Month {
            i as u32 + 1
        } else {
            i as u32
        });
    }
    let hint = if MONTHS.contains(&lower.as_str()) {
        format!(" (`{text}` is a month name, valid only in the month field)")
    } else if DAYS.contains(&lower.as_str()) {
        format!(" (`{text}` is a day name, valid only in the day-of-week field)")
    } else if text.starts_with('*') {
        " (`*` stands alone or as `*/step`)".to_string()
    } else {
        String::new()
    };
    Err(ExprError::new(
        col,
        format!(
            "`{text}` is not valid in the {} field: valid values are {}{hint}",
            field.name(),
            field.valid()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CronExpr {
        CronExpr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> Vec<ExprError> {
        CronExpr::parse(s).expect_err(s).0
    }
    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn fields_and_names() {
        let e = p("*/15 9-17 * jan-mar,dec mon-fri");
        assert_eq!(e.minutes, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(e.hours, (9..=17).fold(0, |a, h| a | 1 << h));
        assert_eq!(e.months, 1 << 1 | 1 << 2 | 1 << 3 | 1 << 12);
        assert_eq!(e.dows, 0b0111110);
        assert_eq!(e.kind(), JobKind::Wildcard);
        assert_eq!(p("0 12 * * 7").dows, 1);
        assert_eq!(p("0 12 * * 5-7").dows, 1 | 1 << 5 | 1 << 6);
        assert_eq!(p("0 12 * * */2").dows, 1 | 1 << 2 | 1 << 4 | 1 << 6);
        assert_eq!(p("5 4 * * *").kind(), JobKind::Fixed);
        assert_eq!(p("@daily").kind(), JobKind::Fixed);
        assert_eq!(p("@hourly").kind(), JobKind::Wildcard);
        assert_eq!(p("0 */2 * * *").kind(), JobKind::Wildcard);
        assert_eq!(p("@DAILY").to_string(), "@daily");
        assert_eq!(p("1  2\t3 4 5").to_string(), "1 2 3 4 5");
    }

    #[test]
    fn day_rule_or_and_leading_star() {
        // OR: the 13th or any Friday.
        let e = p("0 0 13 * fri");
        assert!(e.matches_date(d(2026, 11, 13)));
        assert!(e.matches_date(d(2026, 11, 20))); // a Friday
        assert!(!e.matches_date(d(2026, 11, 21)));
        // Leading star on day-of-month: AND. Odd days that are weekend days.
        let e = p("0 12 */2 * 0,6");
        assert!(e.matches_date(d(2026, 11, 21))); // Sat 21
        assert!(!e.matches_date(d(2026, 11, 22))); // Sun 22: even
        assert!(!e.matches_date(d(2026, 11, 23))); // Mon 23
                                                   // Leading star on day-of-week: AND too.
        let e = p("0 0 1 * */1");
        assert!(e.matches_date(d(2026, 12, 1)));
        assert!(!e.matches_date(d(2026, 12, 2)));
    }

    #[test]
    fn next_local_walks_days() {
        let e = p("30 2 29 2 *");
        let from = d(2026, 1, 1).and_hms_opt(0, 0, 0).unwrap();
        assert_eq!(
            e.next_local(from, 4000),
            Some(d(2028, 2, 29).and_hms_opt(2, 30, 0).unwrap())
        );
        let e = p("* * * * *");
        let from = d(2026, 12, 31).and_hms_opt(23, 59, 1).unwrap();
        assert_eq!(
            e.next_local(from, 1),
            Some(d(2027, 1, 1).and_hms_opt(0, 0, 0).unwrap())
        );
    }

    #[test]
    fn errors_say_what_is_valid() {
        let e = err("0 0 * * * *");
        assert_eq!(e[0].col, 10);
        assert!(e[0].message.contains("exactly 5"), "{}", e[0].message);
        assert!(err("0 0 * * * * *")[0].message.contains("7 time fields"));
        let e = err("0 0 31 2 *");
        assert!(e[0].message.contains("never fires"));
        assert!(CronExpr::parse("0 0 30 2 mon").is_ok()); // OR: Mondays in February
        assert!(CronExpr::parse("0 0 29 2 *").is_ok());
        assert!(err("0 0 31 4,6,9,11 *")[0].message.contains("never fires"));
        let e = err("0 0 * mon *");
        assert_eq!(e[0].col, 6);
        assert!(e[0].message.contains("day name"), "{}", e[0].message);
        assert!(err("0 0 * * jan")[0].message.contains("month name"));
        let e = err("60 24 0 13 8");
        assert_eq!(e.len(), 5);
        assert_eq!(
            e.iter().map(|e| e.col).collect::<Vec<_>>(),
            vec![0, 3, 6, 8, 11]
        );
        assert!(err("5-1 * * * *")[0].message.contains("backwards"));
        assert!(err("*/0 * * * *")[0]
            .message
            .contains("valid steps are 1-59"));
        let e = err("1,,2 * * * *");
        assert_eq!(e[0].col, 2);
        assert!(err("5/10 * * * *")[0]
            .message
            .contains("a step needs a range"));
        assert!(err("@fortnightly")[0].message.contains("@weekly"));
        assert!(err("@daily 5")[0].message.contains("unexpected"));
        assert!(err("0 0 * *")[0].message.contains("4 time fields"));
        assert!(err("")[0].message.contains("0 time fields"));
        assert!(err("@reboot")[0].message.contains("@reboot"));
        assert!(err("0 0 * * 1-")[0].message.contains("missing value"));
    }
}
