//! The request line: `[user] action [arg ...]`, one line of UTF-8 of at most 4096 bytes.
//!
//! Parsing is split in two so the pure part needs no knowledge of the callbacks file:
//! [`parse_line`] checks the bytes and splits tokens; [`Request::resolve`] decides whether
//! the first token is the user or the action, given a predicate that knows the actions.
//!
//! A line may begin with a key, `@KEY` (DESIGN.md section 2, keyed requests): the same key
//! never runs twice. The key is checked here ([`valid_key`]), remembered by the journal.
//!
//! Between the key and the user/action, a request may carry options, `NAME=VALUE` tokens
//! (names and actions cannot contain `=`, so they are never taken for one):
//! `@k timeout=30s forum nightly-backup`. Only `timeout=` exists ([`OPTIONS`]); any other is
//! `error bad-request`. Options say how the run is supervised, not what runs, so they are
//! not part of a key's digest ([`Request::digest`]).

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::builtin::Builtin;

/// The longest request line accepted, in bytes, not counting the final `\n`.
pub const MAX_LINE: usize = 4096;

/// What is wrong with a request; every variant maps to one `error <code>` reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("request line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("request is not valid UTF-8")]
    NotUtf8,
    #[error("request contains control byte 0x{0:02x} at byte {1}")]
    ControlByte(u8, usize),
    #[error("request contains control character U+{0:04X} at byte {1}")]
    ControlChar(u32, usize),
    #[error("empty request")]
    Empty,
    #[error("no action named {0:?}")]
    UnknownAction(String),
    /// Two words of which neither names an action: `user action` with an unknown action
    /// (or an unknown action and its first argument).
    #[error("no action named {:?}", format!("{first}/{second}"))]
    UnknownActionAfter { first: String, second: String },
    #[error("user {0:?} given but no action follows")]
    MissingAction(String),
    #[error("bad key {0:?}: 1-{MAX_KEY} characters of A-Z a-z 0-9 . _ : -")]
    BadKey(String),
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("{0:?} is not a run id")]
    BadId(String),
    #[error("unknown option {0:?}: only {OPTIONS_TEXT} is understood before the action")]
    UnknownOption(String),
    #[error("option {0}= given twice")]
    RepeatedOption(String),
    #[error("bad timeout= {0:?}: a positive duration without blanks, such as 30s, 5m, 1h30m")]
    BadTimeout(String),
    #[error("options (timeout=) apply to actions, not to the built-in {0}")]
    OptionOnBuiltin(String),
    /// A built-in given words it does not take ([`Builtin::check_words`]).
    #[error("{builtin} takes {} (usage: {usage}); got {got}", takes_text(.builtin))]
    Words {
        builtin: &'static str,
        usage: String,
        got: usize,
    },
}

fn takes_text(builtin: &str) -> &'static str {
    match Builtin::parse(builtin).map(Builtin::words) {
        Some(crate::builtin::Words::One(_)) => "one word",
        Some(crate::builtin::Words::Optional(_)) => "at most one word",
        _ => "no words",
    }
}

/// What `history` and `log` ask the journal for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `history [ACTION]`.
    History(Option<String>),
    /// `log ID`.
    Log(u64),
}

/// The request options a line may carry between its key and its user/action.
pub const OPTIONS: [&str; 1] = ["timeout"];
const OPTIONS_TEXT: &str = "timeout=<duration>";

/// The longest key of a keyed request (`@KEY`), in characters.
pub const MAX_KEY: usize = 64;

/// Whether `key` (without its `@`) is a key: 1-64 characters of `A-Z a-z 0-9 . _ : -`.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl RequestError {
    /// No action of that name (one word, or two words neither of which is an action).
    pub fn is_unknown_action(&self) -> bool {
        matches!(
            self,
            RequestError::UnknownAction(_) | RequestError::UnknownActionAfter { .. }
        )
    }

    /// The reply code DESIGN.md gives this error.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            RequestError::UnknownAction(_)
            | RequestError::UnknownActionAfter { .. }
            | RequestError::MissingAction(_) => crate::ErrorCode::UnknownAction,
            _ => crate::ErrorCode::BadRequest,
        }
    }
}

/// Checks one request line and splits it into tokens.
///
/// `line` is what the client sent up to (not including) the first `\n`, or up to end of
/// input. A trailing `\r` is tolerated (telnet, some `nc` builds). Tokens are separated
/// by runs of spaces or tabs; every other control byte is refused, because it can only be
/// a mistake or an attack on a log.
pub fn parse_line(line: &[u8]) -> Result<Vec<&str>, RequestError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(RequestError::TooLong);
    }
    if let Some(pos) = line
        .iter()
        .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(RequestError::ControlByte(line[pos], pos));
    }
    let text = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    // C1 controls (U+0080..U+009F) are valid UTF-8 but act as terminal escapes (U+009B is
    // CSI) in logs: refused like their ASCII cousins. Found by the request_line fuzz target.
    if let Some((pos, c)) = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && c != '\t')
    {
        return Err(RequestError::ControlChar(c as u32, pos));
    }
    let tokens: Vec<&str> = text.split([' ', '\t']).filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() {
        return Err(RequestError::Empty);
    }
    Ok(tokens)
}

/// A request whose action is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `@KEY`, without the `@`: run at most once for this key.
    pub key: Option<String>,
    pub user: Option<String>,
    pub action: String,
    pub args: Vec<String>,
    /// `timeout=<duration>`: the run may take at most this long (or its action's own
    /// timeout, when shorter); then TERM to its process group, KILL after the grace, and
    /// `exit=124`.
    pub timeout: Option<Duration>,
}

impl Request {
    /// Applies the grammar `[user] action [arg ...]`: the first token is the action when
    /// it names a built-in or a known action (`is_action`), otherwise it is the user and the
    /// second token must be the action.
    pub fn resolve(
        tokens: &[&str],
        is_action: impl Fn(&str) -> bool,
    ) -> Result<Request, RequestError> {
        let (key, tokens) = match tokens {
            [first, rest @ ..] if first.starts_with('@') => {
                let key = &first[1..];
                if !valid_key(key) {
                    return Err(RequestError::BadKey(key.to_string()));
                }
                (Some(key.to_string()), rest)
            }
            _ => (None, tokens),
        };
        let mut timeout = None;
        let mut tokens = tokens;
        while let [first, rest @ ..] = tokens {
            let Some((name, value)) = first.split_once('=') else {
                break;
            };
            match name {
                "timeout" if timeout.is_some() => {
                    return Err(RequestError::RepeatedOption(name.to_string()))
                }
                "timeout" => timeout = Some(parse_timeout(value)?),
                _ => return Err(RequestError::UnknownOption((*first).to_string())),
            }
            tokens = rest;
        }
        let known = |t: &str| Builtin::parse(t).is_some() || is_action(t);
        let (user, rest) = match tokens {
            [] => return Err(RequestError::Empty),
            [first, ..] if known(first) => (None, tokens),
            [first] => return Err(RequestError::UnknownAction((*first).to_string())),
            [first, second, ..] if known(second) => (Some((*first).to_string()), &tokens[1..]),
            [first, second, ..] => {
                return Err(RequestError::UnknownActionAfter {
                    first: (*first).to_string(),
                    second: (*second).to_string(),
                })
            }
        };
        let action = rest[0];
        if timeout.is_some() && Builtin::parse(action).is_some() && !is_action(action) {
            return Err(RequestError::OptionOnBuiltin(action.to_string()));
        }
        Ok(Request {
            key,
            user,
            action: action.to_string(),
            args: rest[1..].iter().map(|s| s.to_string()).collect(),
            timeout,
        })
    }

    /// Parses and resolves in one step.
    pub fn parse(line: &[u8], is_action: impl Fn(&str) -> bool) -> Result<Request, RequestError> {
        Request::resolve(&parse_line(line)?, is_action)
    }

    /// `history [ACTION]` and `log ID`: their arguments, checked; `None` for any other
    /// request.
    pub fn query(&self) -> Option<Result<Query, RequestError>> {
        match self.builtin()? {
            Builtin::History => Some(match self.args.as_slice() {
                [] => Ok(Query::History(None)),
                [a] => Ok(Query::History(Some(a.clone()))),
                _ => Err(RequestError::Usage("history [ACTION]")),
            }),
            Builtin::Log => Some(match self.args.as_slice() {
                [id] => id
                    .parse()
                    .map(Query::Log)
                    .map_err(|_| RequestError::BadId(id.clone())),
                _ => Err(RequestError::Usage("log ID")),
            }),
            _ => None,
        }
    }

    /// `cancel ID`: the run id, checked; `None` for any other request.
    pub fn cancel_id(&self) -> Option<Result<u64, RequestError>> {
        if self.builtin()? != Builtin::Cancel {
            return None;
        }
        Some(match self.args.as_slice() {
            [id] => id.parse().map_err(|_| RequestError::BadId(id.clone())),
            _ => Err(RequestError::Usage("cancel ID")),
        })
    }

    /// What the key of a keyed request is bound to: a digest of its words (user, action and
    /// args), 32 hex digits (128 bits of SHA-256). Not the key, and not the options:
    /// `timeout=` says how the run is supervised, not what runs, so a fire sent again after
    /// its line's `TIMEOUT=` was edited still replays its first run instead of running
    /// twice. The same key with other words is another run, never a replay (DESIGN.md
    /// section 2), and SHA-256 makes sure nobody can choose other words with the digest of
    /// someone else's request.
    pub fn digest(&self) -> String {
        crate::digest::words(self.user.as_deref(), &self.action, &self.args)
    }

    /// The built-in this request names, if it names one.
    pub fn builtin(&self) -> Option<Builtin> {
        Builtin::parse(&self.action)
    }
}

/// The request line, without its `\n`: `[@key] [user] action [arg ...]`.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(k) = &self.key {
            write!(f, "@{k} ")?;
        }
        if let Some(t) = self.timeout {
            write!(f, "timeout={} ", duration_token(t))?;
        }
        if let Some(u) = &self.user {
            write!(f, "{u} ")?;
        }
        f.write_str(&self.action)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// The longest `timeout=`, in seconds (136 years): any longer is no timeout, and refused,
/// so that every accepted one is shown in nanoseconds without overflow.
const MAX_TIMEOUT_SECS: u64 = u32::MAX as u64;

/// `timeout=`'s value: a positive duration (`30s`, `5m`, `1h30m`, `500ms`, `90`).
fn parse_timeout(value: &str) -> Result<Duration, RequestError> {
    match common::duration::parse(value) {
        Ok(d) if !d.is_zero() && d.as_secs() <= MAX_TIMEOUT_SECS && !value.trim().is_empty() => {
            Ok(d)
        }
        _ => Err(RequestError::BadTimeout(value.to_string())),
    }
}

/// A duration as one token that reads back the same: `30s`, else `250ms`, else in `ns`.
pub fn duration_token(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(a: &str) -> bool {
        matches!(a, "rotate-logs" | "nightly-backup" | "echo-args")
    }

    #[test]
    fn action_first() {
        let r = Request::parse(b"rotate-logs\n".strip_suffix(b"\n").unwrap(), known).unwrap();
        assert_eq!(r.user, None);
        assert_eq!(r.action, "rotate-logs");
        assert!(r.args.is_empty());
    }

    #[test]
    fn user_form_and_args() {
        let r = Request::parse(b"forum  nightly-backup\tdb1 db2", known).unwrap();
        assert_eq!(r.user.as_deref(), Some("forum"));
        assert_eq!(r.action, "nightly-backup");
        assert_eq!(r.args, vec!["db1", "db2"]);
        assert_eq!(r.to_string(), "forum nightly-backup db1 db2");
        assert_eq!(Request::parse(r.to_string().as_bytes(), known), Ok(r));
    }

    #[test]
    fn builtin_wins_over_user() {
        let r = Request::parse(b"status", known).unwrap();
        assert_eq!(r.builtin(), Some(Builtin::Status));
        let r = Request::parse(b"forum ping", known).unwrap();
        assert_eq!(r.user.as_deref(), Some("forum"));
        assert_eq!(r.action, "ping");
    }

    #[test]
    fn shell_text_is_data() {
        let r = Request::parse(b"echo-args $(rm -rf /) ;`id`", known).unwrap();
        assert_eq!(r.args, vec!["$(rm", "-rf", "/)", ";`id`"]);
    }

    #[test]
    fn errors() {
        assert_eq!(Request::parse(b"", known), Err(RequestError::Empty));
        assert_eq!(Request::parse(b"  \t ", known), Err(RequestError::Empty));
        assert_eq!(Request::parse(b"\r", known), Err(RequestError::Empty));
        assert_eq!(
            Request::parse(b"nope", known),
            Err(RequestError::UnknownAction("nope".into()))
        );
        assert_eq!(
            Request::parse(b"forum nope x", known),
            Err(RequestError::UnknownActionAfter {
                first: "forum".into(),
                second: "nope".into()
            })
        );
        // Said as before: both words, as sent.
        assert_eq!(
            Request::parse(b"forum nope", known)
                .unwrap_err()
                .to_string(),
            r#"no action named "forum/nope""#
        );
        assert_eq!(
            Request::parse(b"ping\0", known),
            Err(RequestError::ControlByte(0, 4))
        );
        assert_eq!(
            Request::parse(b"pi\x1bng", known),
            Err(RequestError::ControlByte(0x1b, 2))
        );
        assert_eq!(
            Request::parse(b"ping \xff", known),
            Err(RequestError::NotUtf8)
        );
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(Request::parse(&long, known), Err(RequestError::TooLong));
        let max = vec![b'a'; MAX_LINE];
        assert!(matches!(
            Request::parse(&max, known),
            Err(RequestError::UnknownAction(_))
        ));
    }

    #[test]
    fn keys() {
        let r = Request::parse(b"@nightly:1764821100 forum nightly-backup db1", known).unwrap();
        assert_eq!(r.key.as_deref(), Some("nightly:1764821100"));
        assert_eq!(r.user.as_deref(), Some("forum"));
        assert_eq!(r.action, "nightly-backup");
        assert_eq!(r.args, vec!["db1"]);
        assert_eq!(
            r.to_string(),
            "@nightly:1764821100 forum nightly-backup db1"
        );
        assert_eq!(Request::parse(r.to_string().as_bytes(), known), Ok(r));
        let r = Request::parse(b"@k rotate-logs", known).unwrap();
        assert_eq!((r.key.as_deref(), r.user), (Some("k"), None));
        assert!(valid_key(&"a".repeat(MAX_KEY)));
        for bad in [
            "@",
            "@a/b",
            "@caf\u{e9}",
            &format!("@{}", "a".repeat(MAX_KEY + 1)),
        ] {
            let line = format!("{bad} rotate-logs");
            assert!(
                matches!(
                    Request::parse(line.as_bytes(), known),
                    Err(RequestError::BadKey(_))
                ),
                "{line}"
            );
        }
        assert_eq!(
            RequestError::BadKey("x y".into()).code().as_str(),
            "bad-request"
        );
        // A key alone is no request.
        assert_eq!(Request::parse(b"@k", known), Err(RequestError::Empty));
    }

    #[test]
    fn queries() {
        let q = |l: &str| Request::parse(l.as_bytes(), known).unwrap().query();
        assert_eq!(q("history"), Some(Ok(Query::History(None))));
        assert_eq!(
            q("history rotate-logs"),
            Some(Ok(Query::History(Some("rotate-logs".into()))))
        );
        assert_eq!(q("log 42"), Some(Ok(Query::Log(42))));
        assert_eq!(q("log x"), Some(Err(RequestError::BadId("x".into()))));
        assert_eq!(q("log"), Some(Err(RequestError::Usage("log ID"))));
        assert_eq!(q("log 1 2"), Some(Err(RequestError::Usage("log ID"))));
        assert_eq!(
            q("history a b"),
            Some(Err(RequestError::Usage("history [ACTION]")))
        );
        assert_eq!(q("ping"), None);
        let c = |l: &str| Request::parse(l.as_bytes(), known).unwrap().cancel_id();
        assert_eq!(c("cancel 7"), Some(Ok(7)));
        assert_eq!(c("cancel x"), Some(Err(RequestError::BadId("x".into()))));
        assert_eq!(c("cancel"), Some(Err(RequestError::Usage("cancel ID"))));
        assert_eq!(c("log 7"), None);
        assert_eq!(
            RequestError::BadId("x".into()).code().as_str(),
            "bad-request"
        );
    }

    #[test]
    fn digest_binds_user_action_and_args_not_the_key() {
        let d = |l: &str| Request::parse(l.as_bytes(), known).unwrap().digest();
        let base = d("forum nightly-backup db1");
        assert_eq!(base.len(), 32);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(base, d("@k1 forum  nightly-backup\tdb1"));
        assert_eq!(base, d("@other forum nightly-backup db1"));
        for other in [
            "nightly-backup db1",
            "forum nightly-backup",
            "forum nightly-backup db1 db2",
            "forum rotate-logs db1",
            "wiki nightly-backup db1",
            "forum nightly-backup db",
        ] {
            assert_ne!(d(other), base, "{other}");
        }
        // No two ways of cutting the same bytes into words give one digest.
        assert_ne!(d("echo-args ab c"), d("echo-args a bc"));
        assert_ne!(d("echo-args a"), d("a echo-args"));
    }

    #[test]
    fn options_between_the_key_and_the_action() {
        let r = Request::parse(b"@k timeout=30s forum nightly-backup db1", known).unwrap();
        assert_eq!(r.key.as_deref(), Some("k"));
        assert_eq!(r.timeout, Some(Duration::from_secs(30)));
        assert_eq!(r.user.as_deref(), Some("forum"));
        assert_eq!(r.action, "nightly-backup");
        assert_eq!(r.args, ["db1"]);
        assert_eq!(r.to_string(), "@k timeout=30s forum nightly-backup db1");
        assert_eq!(Request::parse(r.to_string().as_bytes(), known), Ok(r));
        // Without a key, and in every form of duration; shown so that it reads back.
        for (text, want, shown) in [
            ("5m", Duration::from_secs(300), "300s"),
            ("1h30m", Duration::from_secs(5400), "5400s"),
            ("250ms", Duration::from_millis(250), "250ms"),
            ("90", Duration::from_secs(90), "90s"),
        ] {
            let r =
                Request::parse(format!("timeout={text} rotate-logs").as_bytes(), known).unwrap();
            assert_eq!(r.timeout, Some(want), "{text}");
            assert_eq!(r.to_string(), format!("timeout={shown} rotate-logs"));
        }
        // Whatever the form, what is shown reads back the same.
        for text in ["1500us", "1ns", "1s 5ms", "4294967295s", "2h 1ns"] {
            let r = Request::parse(
                format!("timeout={} rotate-logs", text.replace(' ', "")).as_bytes(),
                known,
            );
            let r = r.unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(Request::parse(r.to_string().as_bytes(), known), Ok(r));
        }
        assert_eq!(
            Request::parse(b"timeout=4294967296s rotate-logs", known),
            Err(RequestError::BadTimeout("4294967296s".into()))
        );
        // An `=` in an argument is data.
        let r = Request::parse(b"echo-args timeout=1s a=b", known).unwrap();
        assert_eq!((r.timeout, r.args.len()), (None, 2));
        let bad = |l: &str| Request::parse(l.as_bytes(), known).unwrap_err();
        assert_eq!(
            bad("@k retries=3 rotate-logs"),
            RequestError::UnknownOption("retries=3".into())
        );
        assert_eq!(
            bad("retries=3 rotate-logs").to_string(),
            r#"unknown option "retries=3": only timeout=<duration> is understood before the action"#
        );
        for v in ["0", "0s", "soon", "", "-1s"] {
            assert_eq!(
                bad(&format!("timeout={v} rotate-logs")),
                RequestError::BadTimeout(v.into()),
                "{v}"
            );
        }
        assert_eq!(
            bad("timeout=1s timeout=2s rotate-logs"),
            RequestError::RepeatedOption("timeout".into())
        );
        assert_eq!(
            bad("timeout=1s ping"),
            RequestError::OptionOnBuiltin("ping".into())
        );
        assert_eq!(bad("timeout=1s"), RequestError::Empty);
        for e in [
            bad("x=1 ping"),
            bad("timeout=x ping"),
            bad("timeout=1s ping"),
        ] {
            assert_eq!(e.code().as_str(), "bad-request", "{e}");
        }
        // A callbacks file's `CB_reload` is an action: it takes a timeout.
        let r = Request::parse(b"timeout=1s reload", |a| a == "reload").unwrap();
        assert_eq!(r.timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn the_timeout_is_not_part_of_the_digest() {
        let d = |l: &str| Request::parse(l.as_bytes(), known).unwrap().digest();
        assert_eq!(
            d("@k forum nightly-backup"),
            d("@k timeout=30s forum nightly-backup")
        );
    }

    #[test]
    fn error_codes() {
        assert_eq!(RequestError::Empty.code().as_str(), "bad-request");
        assert_eq!(
            RequestError::UnknownAction("x".into()).code().as_str(),
            "unknown-action"
        );
    }
}
