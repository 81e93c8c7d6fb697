//! `schedule.cron`: lines of `time [user] service action` (the service a replica target:
//! `php`, `php.2`, `php@each`, [`proto::Target`]), `CRON_TZ=`/`TZ=`,
//! `ON_FAILURE=`/`ON_SUCCESS=`, `CONCURRENCY=` and `TIMEOUT=` settings (each for the lines
//! below it), comments. The whole file is checked before anything is used, and every problem is
//! reported at once as `FILE:LINE:COL: message`, so `scheduler check` and a refused edit
//! tell the operator everything in one go.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::concurrency::Policy;
use crate::cron::{self, CronExpr, ExprError};
use crate::plan;

/// When a line fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// `@reboot`: once, when the scheduler starts.
    Reboot,
    Cron(CronExpr),
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Reboot => f.write_str("@reboot"),
            When::Cron(e) => e.fmt(f),
        }
    }
}

/// One schedule line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number in the file.
    pub line: usize,
    pub when: When,
    pub user: Option<String>,
    /// The target as written: `php`, `php.2` or `php@each` ([`Entry::dest`]).
    pub service: String,
    pub action: String,
    /// The settings in force for this line (the `NAME=value` lines above it).
    pub options: Options,
}

/// The target of `ON_FAILURE=service action` or `ON_SUCCESS=service action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub service: String,
    pub action: String,
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.action)
    }
}

/// The settings in force at a point of the file: they apply to the lines below them, and
/// each line carries the ones in force for it. A new setting is a field here and a row of
/// `SETTINGS`; it then reaches every line, and the daemon's job, without other edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `CRON_TZ=` (or `TZ=`): the zone the line's times are in.
    pub zone: Tz,
    /// `ON_FAILURE=`: told of a run that failed, missed or was refused.
    pub on_failure: Option<Notify>,
    /// `ON_SUCCESS=`: told of a run that ended with `exit=0`.
    pub on_success: Option<Notify>,
    /// `CONCURRENCY=`: what a fire does while the line's previous run still runs.
    pub concurrency: Policy,
    /// `TIMEOUT=`: sent as the request's `timeout=`; the service stops a run that takes
    /// longer (TERM, then KILL) and reports `exit=124`.
    pub timeout: Option<Duration>,
}

impl Options {
    /// What holds before any setting line: the default zone, nobody told.
    pub fn new(zone: Tz) -> Options {
        Options {
            zone,
            on_failure: None,
            on_success: None,
            concurrency: Policy::Forbid,
            timeout: None,
        }
    }

    /// The options of a notification about a line's run: the line's, with nobody to tell
    /// (a notification's outcome is never told, so it cannot loop), and not the line's
    /// timeout or policy (they are about the line's own runs).
    pub fn for_notice(&self) -> Options {
        Options {
            on_failure: None,
            on_success: None,
            concurrency: Policy::Forbid,
            timeout: None,
            ..self.clone()
        }
    }
}

/// A setting's value: unquoted, the 0-based column of its first character (`col`) and of
/// the value as written, an opening quote included (`at`).
struct Value<'a> {
    name: &'a str,
    text: &'a str,
    col: usize,
    at: usize,
}

/// How a setting's value changes the options in force (`default` is the zone of the
/// scheduler, which an empty `CRON_TZ=` goes back to).
type Setter = fn(&Value, &mut Options, Tz) -> Result<(), Vec<ExprError>>;

/// Every setting a schedule understands, in the order the error for an unknown one names
/// them.
const SETTINGS: [(&str, Setter); 6] = [
    ("CRON_TZ", set_zone),
    ("TZ", set_zone),
    ("ON_FAILURE", |v, o, _| {
        set_notify(v).map(|t| o.on_failure = t)
    }),
    ("ON_SUCCESS", |v, o, _| {
        set_notify(v).map(|t| o.on_success = t)
    }),
    ("CONCURRENCY", |v, o, _| {
        set_concurrency(v).map(|p| o.concurrency = p)
    }),
    ("TIMEOUT", |v, o, _| set_timeout(v).map(|t| o.timeout = t)),
];

/// `CONCURRENCY=`: `forbid`, `replace` or `queue`; empty goes back to `forbid`.
fn set_concurrency(v: &Value) -> Result<Policy, Vec<ExprError>> {
    if v.text.is_empty() {
        return Ok(Policy::default());
    }
    Policy::parse(v.text).ok_or_else(|| {
        vec![ExprError {
            col: v.col,
            message: format!(
                "unknown CONCURRENCY= `{}`: valid are forbid (the default: a fire is skipped while the line's previous run runs), replace (the running one is stopped, then the new one runs) and queue (it runs when the previous one ends)",
                v.text
            ),
        }]
    })
}

/// `TIMEOUT=`: a positive duration (`30s`, `5m`, `1h30m`); empty turns it off.
fn set_timeout(v: &Value) -> Result<Option<Duration>, Vec<ExprError>> {
    if v.text.is_empty() {
        return Ok(None);
    }
    match common::duration::parse(v.text) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(vec![ExprError {
            col: v.col,
            message: format!(
                "TIMEOUT= `{}` is not a positive duration: use such as 30s, 5m or 1h30m (or nothing to turn it off)",
                v.text
            ),
        }]),
    }
}

fn set_zone(v: &Value, o: &mut Options, default: Tz) -> Result<(), Vec<ExprError>> {
    if v.text.is_empty() {
        o.zone = default;
        return Ok(());
    }
    o.zone = parse_zone(v.text).map_err(|message| vec![ExprError { col: v.at, message }])?;
    Ok(())
}

/// `ON_FAILURE=` / `ON_SUCCESS=`: a target, or nobody when empty.
fn set_notify(v: &Value) -> Result<Option<Notify>, Vec<ExprError>> {
    if v.text.is_empty() {
        return Ok(None);
    }
    parse_notify(v.name, v.text, v.col).map(Some)
}

/// `CRON_TZ=, TZ=, ON_FAILURE= and ON_SUCCESS=`, from `SETTINGS`.
fn setting_names() -> String {
    let names: Vec<String> = SETTINGS.iter().map(|(n, _)| format!("{n}=")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

impl Entry {
    /// The request sent to the service, `[@key ][timeout=T ][user ]action` as a line.
    pub fn request(&self, key: Option<String>) -> proto::Request {
        proto::Request {
            key,
            user: self.user.clone(),
            action: self.action.clone(),
            args: Vec::new(),
            timeout: self.options.timeout,
        }
    }

    /// The line's target: its service and which replicas (`php`, `php.2`, `php@each`),
    /// checked when the file was parsed.
    pub fn dest(&self) -> proto::Target {
        proto::Target::parse(&self.service).unwrap_or_else(|_| proto::Target::any(&self.service))
    }

    /// `[user ]service action`, as `scheduler next` prints it.
    pub fn target(&self) -> String {
        match &self.user {
            Some(u) => format!("{u} {} {}", self.service, self.action),
            None => format!("{} {}", self.service, self.action),
        }
    }

    /// Identity of a line across edits (line numbers move, content does not): used for
    /// overlap detection and the catch-up state.
    pub fn key(&self) -> String {
        format!(
            "{} {} {}",
            self.options.zone.name(),
            self.when,
            self.target()
        )
    }

    /// Next fire strictly after `after`; `None` for `@reboot`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Reboot => None,
            When::Cron(e) => plan::next_fire(e, &self.options.zone, after),
        }
    }
}

/// A parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    pub entries: Vec<Entry>,
}

/// One problem, with a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// All problems of a file, displayed one `FILE:LINE:COL: message` a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileErrors {
    pub file: String,
    pub errors: Vec<LineError>,
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            // A message quotes the file's own text (a user, a zone): shown, not obeyed.
            write!(
                f,
                "{}:{}:{}: {}",
                common::text::shown(&self.file),
                e.line,
                e.col,
                common::text::shown(&e.message)
            )?;
        }
        Ok(())
    }
}

/// Parses a zone name as `CRON_TZ=`, `TZ=` or `--tz` give it.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    let name = name.strip_prefix(':').unwrap_or(name);
    name.parse::<Tz>().map_err(|_| {
        let hint = chrono_tz::TZ_VARIANTS
            .iter()
            .find(|z| z.name().eq_ignore_ascii_case(name))
            .map(|z| format!(" (did you mean {}?)", z.name()))
            .unwrap_or_default();
        format!("unknown time zone `{name}`{hint}: use an IANA name such as Europe/London, America/New_York or UTC")
    })
}

/// The zone of lines before any `CRON_TZ=`: `$TZ` when it names a zone, else UTC.
pub fn default_zone() -> Tz {
    std::env::var("TZ")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| parse_zone(&v).ok())
        .unwrap_or(Tz::UTC)
}

/// Parses a whole file; `file` names it in errors.
pub fn parse(file: &str, bytes: &[u8], default: Tz) -> Result<Schedule, FileErrors> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut settings = Options::new(default);
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                let col = String::from_utf8_lossy(&raw[..e.valid_up_to()])
                    .chars()
                    .count()
                    + 1;
                errors.push(LineError {
                    line: line_no,
                    col,
                    message: "not valid UTF-8: the file must be UTF-8 text".into(),
                });
                continue;
            }
        };
        let mut push = |e: ExprError| {
            errors.push(LineError {
                line: line_no,
                col: e.col + 1,
                message: e.message,
            })
        };
        match parse_line(text, &mut settings, default) {
            Ok(None) => {}
            Ok(Some((when, user, service, action))) => entries.push(Entry {
                line: line_no,
                when,
                user,
                service,
                action,
                options: settings.clone(),
            }),
            Err(es) => es.into_iter().for_each(&mut push),
        }
    }
    if errors.is_empty() {
        Ok(Schedule { entries })
    } else {
        Err(FileErrors {
            file: file.to_string(),
            errors,
        })
    }
}

type Parsed = (When, Option<String>, String, String);

/// One line: `Ok(None)` for blank, comment and setting lines.
fn parse_line(
    text: &str,
    settings: &mut Options,
    default: Tz,
) -> Result<Option<Parsed>, Vec<ExprError>> {
    let trimmed = text.trim_start_matches([' ', '\t']);
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let indent = text.chars().count() - trimmed.chars().count();
    // Before anything else: a value quoted in a message (a zone name, a user) must not
    // carry an escape sequence into the log or the terminal.
    if let Some(pos) = text.chars().position(|c| c.is_control() && c != '\t') {
        return Err(vec![ExprError {
            col: pos,
            message: "control character in the line: only text, blanks and tabs are allowed".into(),
        }]);
    }
    if let Some((name, value)) = setting(trimmed) {
        return parse_setting(name, value, text, indent, settings, default).map(|()| None);
    }
    let tokens = cron::tokens(text);
    let mut errors = Vec::new();
    let (when, rest) = parse_when(&tokens, &mut errors)?;
    let end = text.chars().count();
    if let Some(&(col, _)) = rest.iter().find(|(_, t)| t.starts_with('#')) {
        errors.push(ExprError {
            col,
            message: "a comment must be on a line of its own (start the line with #)".into(),
        });
        return Err(errors);
    }
    let target = parse_target(rest, end, &mut errors);
    match (when, target, errors.is_empty()) {
        (Some(when), Some((user, service, action)), true) => Ok(Some((
            when,
            user.map(str::to_string),
            service.to_string(),
            action.to_string(),
        ))),
        _ => Err(errors),
    }
}

/// A token of a line and its column.
type Token<'a> = (usize, &'a str);

/// The time of a line (`@reboot`, `@daily`..., or five fields) and the tokens after it;
/// `None` with its problems in `errors`. More than five time-like fields is an error at
/// once: the rest of the line cannot be read.
fn parse_when<'t, 'a>(
    tokens: &'t [Token<'a>],
    errors: &mut Vec<ExprError>,
) -> Result<(Option<When>, &'t [Token<'a>]), Vec<ExprError>> {
    if tokens[0].1.starts_with('@') {
        let (col, word) = tokens[0];
        let when = if word.eq_ignore_ascii_case("@reboot") {
            Some(When::Reboot)
        } else {
            match CronExpr::parse(word) {
                Ok(e) => Some(When::Cron(e)),
                Err(es) => {
                    errors.extend(es.0.into_iter().map(|e| ExprError {
                        col: col + e.col,
                        ..e
                    }));
                    None
                }
            }
        };
        return Ok((when, &tokens[1..]));
    }
    let looks_like_time = |t: &str| t.bytes().all(|b| b"0123456789*,/-".contains(&b));
    let n_time = 5 + tokens
        .iter()
        .skip(5)
        .take_while(|(_, t)| looks_like_time(t))
        .count();
    if n_time > 5 && tokens.len() >= 5 {
        return Err(vec![cron::too_many_fields(n_time, tokens[5].0)]);
    }
    let n = tokens.len().min(5);
    let when = match CronExpr::from_tokens(&tokens[..n]) {
        Ok(e) => Some(When::Cron(e)),
        Err(es) => {
            errors.extend(es.0);
            None
        }
    };
    Ok((when, &tokens[n..]))
}

/// `[user] service action` after the time, each name checked; `None` with its problems in
/// `errors`. `end`: the column after the line, where a missing target is reported.
fn parse_target<'a>(
    rest: &[Token<'a>],
    end: usize,
    errors: &mut Vec<ExprError>,
) -> Option<(Option<&'a str>, &'a str, &'a str)> {
    let (user, service, action, col) = match rest {
        [] | [_] => {
            errors.push(ExprError {
                col: end,
                message: "missing `service action` after the time: a line is `min hour dom mon dow [user] service action`".into(),
            });
            return None;
        }
        [(_, s), (_, a)] => (None, *s, *a, rest[0].0),
        [(_, u), (_, s), (_, a)] => (Some(*u), *s, *a, rest[1].0),
        [_, _, _, (col, extra), ..] => {
            errors.push(ExprError {
                col: *col,
                message: format!("unexpected `{extra}`: a line ends with `[user] service action`, and arguments cannot be given"),
            });
            return None;
        }
    };
    if let Some(user) = user {
        if let Err(message) = check_user(user, action) {
            errors.push(ExprError {
                col: rest[0].0,
                message,
            });
        }
    }
    // A replica target (DESIGN.md section 10): `php`, `php.2` or `php@each`.
    if let Err(e) = proto::Target::parse(service) {
        errors.push(ExprError {
            col: col + e.col,
            message: e.message,
        });
    }
    if !common::name::is_valid(action) {
        errors.push(ExprError {
            col: rest[rest.len() - 1].0,
            message: format!(
                "`{action}` is not a valid action name: {}",
                common::name::RULE
            ),
        });
    }
    Some((user, service, action))
}

/// `NAME=value` or `NAME = value`, where NAME is an identifier.
fn setting(line: &str) -> Option<(&str, &str)> {
    let end = line
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)?;
    if end == 0 {
        return None;
    }
    let rest = line[end..].trim_start_matches([' ', '\t']);
    let value = rest.strip_prefix('=')?;
    Some((&line[..end], value))
}

fn parse_setting(
    name: &str,
    value: &str,
    text: &str,
    indent: usize,
    settings: &mut Options,
    default: Tz,
) -> Result<(), Vec<ExprError>> {
    let Some((_, set)) = SETTINGS.iter().find(|(n, _)| *n == name) else {
        return Err(vec![ExprError {
            col: indent,
            message: format!(
                "unknown setting `{name}`: only {} are understood (lines are requests, not shell commands)",
                setting_names()
            ),
        }]);
    };
    let value_col = text.chars().count() - value.chars().count();
    let v = value.trim_matches([' ', '\t']);
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v);
    let lead = value
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .count();
    // Quotes, when present, come before the value's first character.
    let quote = usize::from(v.len() + 2 == value.trim_matches([' ', '\t']).len());
    let value = Value {
        name,
        text: v,
        col: value_col + lead + quote,
        at: value_col + lead,
    };
    set(&value, settings, default)
}

/// The value of `ON_FAILURE=` or `ON_SUCCESS=`: `service action`, both valid names. `col`
/// is the 0-based column of the value's first character.
fn parse_notify(name: &str, value: &str, col: usize) -> Result<Notify, Vec<ExprError>> {
    let words = cron::tokens(value);
    let at = |(c, _): (usize, &str)| col + c;
    match words.as_slice() {
        [(_, service), (_, action)] => {
            let mut errors = Vec::new();
            if let Err(message) = check_service(service) {
                errors.push(ExprError {
                    col: at(words[0]),
                    message,
                });
            }
            if !common::name::is_valid(action) {
                errors.push(ExprError {
                    col: at(words[1]),
                    message: format!(
                        "`{action}` is not a valid action name: {}",
                        common::name::RULE
                    ),
                });
            } else if proto::Builtin::parse(action).is_some() {
                errors.push(ExprError {
                    col: at(words[1]),
                    message: format!(
                        "`{action}` is a built-in: {name}= sends an action (a callback) the arguments SERVICE ACTION USER RESULT EXIT ID, which a built-in does not take"
                    ),
                });
            }
            if errors.is_empty() {
                Ok(Notify {
                    service: service.to_string(),
                    action: action.to_string(),
                })
            } else {
                Err(errors)
            }
        }
        [_, _, extra, ..] => Err(vec![ExprError {
            col: at(*extra),
            message: format!(
                "unexpected `{}`: {name}= takes `service action` (the arguments are always SERVICE ACTION USER RESULT EXIT ID), or nothing to turn it off",
                extra.1
            ),
        }]),
        _ => Err(vec![ExprError {
            col: col + value.chars().count(),
            message: format!(
                "{name}= takes `service action` (e.g. `{name}=scheduler notify`), or nothing to turn it off"
            ),
        }]),
    }
}

/// Whether `user` can be sent as the user of a request for `action` (DESIGN.md section 2):
/// a valid name, and not one the service would read as the action. The service takes the
/// first token for the action whenever it names a built-in or a known action, so a user
/// named `stop` turns `stop nightly-backup` into the built-in `stop`, and a user named like
/// the action itself runs that action with the real action as its argument. (A user named
/// like another action of the target cannot be seen from here: the service's `accepted
/// <id> <action>` then names that action, and the run is refused, see
/// [`crate::daemon`].) `scheduler check` and `scheduler send --user` both apply it.
pub fn check_user(user: &str, action: &str) -> Result<(), String> {
    if !common::name::is_valid(user) {
        return Err(format!(
            "`{user}` is not a valid user name: {}",
            common::name::RULE
        ));
    }
    if proto::Builtin::parse(user).is_some() {
        return Err(format!(
            "user `{user}` is named like the built-in `{user}`: the service would read `{user} {action}` as that built-in, not as {action}; name the user otherwise"
        ));
    }
    if user == action {
        return Err(format!(
            "user `{user}` is named like the action: the service would read `{user} {action}` as {action} with the argument `{action}`; name the user otherwise"
        ));
    }
    Ok(())
}

/// A service names a socket file: `<service>-request.sock`.
fn check_service(s: &str) -> Result<(), String> {
    if common::name::is_valid(s) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid service name: {} (it names the socket <service>-request.sock)",
            common::name::RULE
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse("s.cron", text.as_bytes(), Tz::UTC) {
            Ok(s) => panic!("parsed: {s:?}"),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn design_example() {
        let text =
            "# comments and blank lines are ignored\n\nCRON_TZ=Europe/London            # zone\n";
        // A trailing comment on a setting is not a zone name.
        assert!(parse("f", text.as_bytes(), Tz::UTC).is_err());
        let text = "# comments and blank lines are ignored\n\nCRON_TZ=Europe/London\n#min hour dom mon dow [user] service action\n  5    4   *   *   *  forum  mysql   nightly-backup\n*/10   *   *   *   *         static  git-pull\n@daily                       nginx   rotate-logs\n@reboot                      nginx   warm-cache\n";
        let s = parse("f", text.as_bytes(), Tz::UTC).unwrap();
        assert_eq!(s.entries.len(), 4);
        let e = &s.entries[0];
        assert_eq!(e.line, 5);
        assert_eq!(e.options.zone, chrono_tz::Europe::London);
        assert_eq!(e.user.as_deref(), Some("forum"));
        assert_eq!(e.request(None).to_string(), "forum nightly-backup");
        assert_eq!(s.entries[1].target(), "static git-pull");
        assert_eq!(s.entries[3].when, When::Reboot);
        assert_eq!(s.entries[2].key(), "Europe/London @daily nginx rotate-logs");
    }

    #[test]
    fn zones_apply_below() {
        let text = "0 1 * * * a b\nTZ=America/New_York\n0 1 * * * a b\nCRON_TZ=\"Asia/Tokyo\"\n0 1 * * * a b\nTZ=\n0 1 * * * a b\n";
        let s = parse("f", text.as_bytes(), chrono_tz::Europe::Paris).unwrap();
        let zones: Vec<_> = s.entries.iter().map(|e| e.options.zone.name()).collect();
        assert_eq!(
            zones,
            [
                "Europe/Paris",
                "America/New_York",
                "Asia/Tokyo",
                "Europe/Paris"
            ]
        );
    }

    #[test]
    fn all_errors_at_once() {
        let text = "0 0 * * * * svc act\n60 0 * * * svc act\nCRON_TZ=Europe/Lndon\n0 0 31 2 * svc act\n0 0 * * * svc\n@often svc act\nMAILTO=root\n0 0 * * * u svc act more\n0 0 * * * svc/x act\n0 0 * mon * s a\n";
        let e = errs(text);
        assert_eq!(
            e,
            [
                "s.cron:1:11: 6 time fields, but a schedule takes exactly 5 (minute hour day-of-month month day-of-week); there is no seconds or year field",
                "s.cron:2:1: minute `60` is out of range: valid values are 0-59",
                "s.cron:3:9: unknown time zone `Europe/Lndon`: use an IANA name such as Europe/London, America/New_York or UTC",
                "s.cron:4:5: `31 2` never fires: no month in `2` has such a day; pick days that exist (February has at most 29)",
                "s.cron:5:14: missing `service action` after the time: a line is `min hour dom mon dow [user] service action`",
                "s.cron:6:1: unknown macro `@often`: valid are @yearly @annually @monthly @weekly @daily @midnight @hourly @reboot",
                "s.cron:7:1: unknown setting `MAILTO`: only CRON_TZ=, TZ=, ON_FAILURE=, ON_SUCCESS=, CONCURRENCY= and TIMEOUT= are understood (lines are requests, not shell commands)",
                "s.cron:8:21: unexpected `more`: a line ends with `[user] service action`, and arguments cannot be given",
                "s.cron:9:11: `svc/x` is not a valid service name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-' (it names the socket <service>-request.sock)",
                "s.cron:10:7: `mon` is not valid in the month field: valid values are 1-12 or jan-dec (`mon` is a day name, valid only in the day-of-week field)",
            ]
        );
        assert_eq!(
            errs("TZ=europe/london\n"),
            ["s.cron:1:4: unknown time zone `europe/london` (did you mean Europe/London?): use an IANA name such as Europe/London, America/New_York or UTC"]
        );
        assert_eq!(
            errs("0 0 * * * 0 svc act\n")[0],
            "s.cron:1:11: 6 time fields, but a schedule takes exactly 5 (minute hour day-of-month month day-of-week); there is no seconds or year field"
        );
        assert!(errs("0 0 * * * s a # nightly\n")[0].contains("comment must be on a line"));
    }

    #[test]
    fn notify_settings_apply_below_and_an_empty_value_turns_them_off() {
        let text = "0 1 * * * a b\nON_FAILURE=scheduler notify\n0 1 * * * a c\n ON_SUCCESS = \"hc beat\"\n0 1 * * * a d\nON_FAILURE=\n0 1 * * * a e\nON_SUCCESS=''\n0 1 * * * a f\n";
        let s = parse("f", text.as_bytes(), Tz::UTC).unwrap();
        let got: Vec<_> = s
            .entries
            .iter()
            .map(|e| {
                (
                    e.options.on_failure.as_ref().map(|n| n.to_string()),
                    e.options.on_success.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        let n = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            [
                (None, None),
                (n("scheduler notify"), None),
                (n("scheduler notify"), n("hc beat")),
                (None, n("hc beat")),
                (None, None),
            ]
        );
    }

    #[test]
    fn bad_notify_settings_are_reported_with_their_column() {
        assert_eq!(
            errs("ON_FAILURE=onlyone\n"),
            ["s.cron:1:19: ON_FAILURE= takes `service action` (e.g. `ON_FAILURE=scheduler notify`), or nothing to turn it off"]
        );
        assert_eq!(
            errs("ON_SUCCESS=svc/x ok\nON_FAILURE = \"a .hidden\"\nON_FAILURE=a b c\n"),
            [
                "s.cron:1:12: `svc/x` is not a valid service name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-' (it names the socket <service>-request.sock)",
                "s.cron:2:17: `.hidden` is not a valid action name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                "s.cron:3:16: unexpected `c`: ON_FAILURE= takes `service action` (the arguments are always SERVICE ACTION USER RESULT EXIT ID), or nothing to turn it off",
            ]
        );
    }

    /// A user the service would read as the action (a built-in, the action itself) or
    /// that is not a name is reported at the user's column; the file does not load.
    #[test]
    fn users_that_would_reroute_are_reported_at_their_column() {
        let text = "5 4 * * * stop svc backup\n5 4 * * * backup svc backup\n\
                    5 4 * * * <script>&\"x svc backup\n@daily   log svc backup\n\
                    5 4 * * * forum svc backup\n5 4 * * * ping svc x;y\n";
        assert_eq!(
            errs(text),
            [
                "s.cron:1:11: user `stop` is named like the built-in `stop`: the service would read `stop backup` as that built-in, not as backup; name the user otherwise",
                "s.cron:2:11: user `backup` is named like the action: the service would read `backup backup` as backup with the argument `backup`; name the user otherwise",
                "s.cron:3:11: `<script>&\"x` is not a valid user name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                "s.cron:4:10: user `log` is named like the built-in `log`: the service would read `log backup` as that built-in, not as backup; name the user otherwise",
                "s.cron:6:11: user `ping` is named like the built-in `ping`: the service would read `ping x;y` as that built-in, not as x;y; name the user otherwise",
                "s.cron:6:20: `x;y` is not a valid action name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            ]
        );
        for b in proto::Builtin::names() {
            assert!(check_user(b, "backup").is_err(), "{b}");
        }
        assert_eq!(check_user("forum", "backup"), Ok(()));
        assert_eq!(
            errs("ON_FAILURE=scheduler stop\n"),
            ["s.cron:1:22: `stop` is a built-in: ON_FAILURE= sends an action (a callback) the arguments SERVICE ACTION USER RESULT EXIT ID, which a built-in does not take"]
        );
        assert_eq!(
            errs("5 4 * * * \u{202e}x svc backup\n"),
            ["s.cron:1:11: `\\u{202e}x` is not a valid user name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"]
        );
        assert_eq!(
            errs("TZ=\u{1b}[31m\n"),
            ["s.cron:1:4: control character in the line: only text, blanks and tabs are allowed"]
        );
        // a built-in as the action itself is fine (`@daily nginx restart`)
        assert!(parse("f", b"@daily nginx restart\n", Tz::UTC).is_ok());
    }

    /// Replica targets (DESIGN.md section 10) are read, and a bad one is reported at its
    /// own column (the instance's, the selector's).
    #[test]
    fn replica_targets_and_their_errors() {
        let text = "0 0 * * * php@each rotate\n0 0 * * * forum php.2 backup\n@daily php x\n";
        let s = parse("f", text.as_bytes(), Tz::UTC).unwrap();
        let picks: Vec<_> = s.entries.iter().map(|e| e.dest().pick).collect();
        assert_eq!(
            picks,
            [proto::Pick::Each, proto::Pick::One(2), proto::Pick::Any]
        );
        assert_eq!(s.entries[0].key(), "UTC 0 0 * * * php@each rotate");
        let e = errs("0 0 * * * php.0 a\n0 0 * * * u php.01 a\n@daily php@all a\n@hourly php. a\n");
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].starts_with("s.cron:1:15: instance `0` is out of range"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("s.cron:2:17: instance `01` has a leading zero"),
            "{e:?}"
        );
        assert!(
            e[2].starts_with("s.cron:3:12: unknown replica selector `@all`"),
            "{e:?}"
        );
        assert!(
            e[3].starts_with("s.cron:4:13: missing instance after `.`"),
            "{e:?}"
        );
    }

    #[test]
    fn concurrency_and_timeout_apply_below_and_an_empty_value_resets_them() {
        let text = "0 1 * * * a b\nCONCURRENCY=queue\nTIMEOUT=90s\n0 1 * * * a c\nCONCURRENCY = \"replace\"\nTIMEOUT=1h30m\n0 1 * * * a d\nCONCURRENCY=\nTIMEOUT=\n0 1 * * * a e\n";
        let s = parse("f", text.as_bytes(), Tz::UTC).unwrap();
        let got: Vec<_> = s
            .entries
            .iter()
            .map(|e| (e.options.concurrency, e.options.timeout))
            .collect();
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(
            got,
            [
                (Policy::Forbid, None),
                (Policy::Queue, secs(90)),
                (Policy::Replace, secs(5400)),
                (Policy::Forbid, None),
            ]
        );
        // The timeout goes with the request, between the key and the user/action.
        let e = &s.entries[2];
        assert_eq!(
            e.request(Some("k".into())).to_string(),
            "@k timeout=5400s d"
        );
        // The line's identity (its state, its record) does not change with them.
        assert_eq!(e.key(), "UTC 0 1 * * * a d");
        // A notification about the line's run carries neither.
        let n = e.options.for_notice();
        assert_eq!((n.concurrency, n.timeout), (Policy::Forbid, None));
    }

    #[test]
    fn bad_concurrency_and_timeout_are_reported_with_their_column() {
        assert_eq!(
            errs("CONCURRENCY=allow\nTIMEOUT = soon\nTIMEOUT=0\nTIMEOUT='-5m'\n"),
            [
                "s.cron:1:13: unknown CONCURRENCY= `allow`: valid are forbid (the default: a fire is skipped while the line's previous run runs), replace (the running one is stopped, then the new one runs) and queue (it runs when the previous one ends)",
                "s.cron:2:11: TIMEOUT= `soon` is not a positive duration: use such as 30s, 5m or 1h30m (or nothing to turn it off)",
                "s.cron:3:9: TIMEOUT= `0` is not a positive duration: use such as 30s, 5m or 1h30m (or nothing to turn it off)",
                "s.cron:4:10: TIMEOUT= `-5m` is not a positive duration: use such as 30s, 5m or 1h30m (or nothing to turn it off)",
            ]
        );
    }

    #[test]
    fn bytes_and_crlf() {
        let s = parse("f", b"0 0 * * * s a\r\n", Tz::UTC).unwrap();
        assert_eq!(s.entries[0].action, "a");
        let e = parse("f", b"0 0 * * * s \xff\n", Tz::UTC).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f:1:13: not valid UTF-8: the file must be UTF-8 text"
        );
    }
}
