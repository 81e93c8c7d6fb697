//! Reply lines: `accepted <id> <action>`, `done <id> exit=<code> secs=<seconds>`,
//! `error <code> <message>`. Built-ins answer with free text lines (`pong`, the action
//! list, the status), which [`Reply::parse`] returns as [`Reply::Text`].

use std::fmt;

/// The `<code>` of an `error` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownAction,
    Busy,
    Denied,
    TooMany,
    ShuttingDown,
    Unavailable,
    /// `log <id>` of a run the journal does not have.
    NotFound,
    /// A keyed request whose run was lost with its container: `error lost <id> ...`; it
    /// never runs again (DESIGN.md section 2).
    Lost,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownAction,
        ErrorCode::Busy,
        ErrorCode::Denied,
        ErrorCode::TooMany,
        ErrorCode::ShuttingDown,
        ErrorCode::Unavailable,
        ErrorCode::NotFound,
        ErrorCode::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::UnknownAction => "unknown-action",
            ErrorCode::Busy => "busy",
            ErrorCode::Denied => "denied",
            ErrorCode::TooMany => "too-many",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Lost => "lost",
        }
    }

    #[allow(clippy::should_implement_trait)] // an Option, not a Result: no error to report
    pub fn from_str(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reply line.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Accepted {
        id: u64,
        action: String,
    },
    Done {
        id: u64,
        exit: i32,
        secs: f64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Any other line (built-in output).
    Text(String),
}

impl Reply {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            message: message.into(),
        }
    }

    /// Reads one line (without its `\n`). Lines that look like `accepted`/`done`/`error`
    /// but do not parse are returned as text, never as an error: a client must not fail on
    /// a line it can show to the user.
    pub fn parse(line: &str) -> Reply {
        let mut it = line.splitn(3, ' ');
        let (head, a, b) = (it.next().unwrap_or(""), it.next(), it.next());
        let parsed = match (head, a, b) {
            ("accepted", Some(id), Some(action)) => id.parse().ok().map(|id| Reply::Accepted {
                id,
                action: action.to_string(),
            }),
            ("done", Some(id), Some(rest)) => parse_done(id, rest),
            ("error", Some(code), msg) => ErrorCode::from_str(code).map(|code| Reply::Error {
                code,
                message: msg.unwrap_or("").to_string(),
            }),
            _ => None,
        };
        parsed.unwrap_or_else(|| Reply::Text(line.to_string()))
    }
}

fn parse_done(id: &str, rest: &str) -> Option<Reply> {
    let id = id.parse().ok()?;
    let mut exit = None;
    let mut secs = None;
    for kv in rest.split(' ') {
        match kv.split_once('=') {
            Some(("exit", v)) => exit = v.parse().ok(),
            Some(("secs", v)) => secs = v.parse().ok(),
            _ => {}
        }
    }
    Some(Reply::Done {
        id,
        exit: exit?,
        secs: secs?,
    })
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Accepted { id, action } => write!(f, "accepted {id} {action}"),
            Reply::Done { id, exit, secs } => write!(f, "done {id} exit={exit} secs={secs:.3}"),
            // What `parse` read from a bare `error <code>` is written back as it was.
            Reply::Error { code, message } if message.is_empty() => write!(f, "error {code}"),
            Reply::Error { code, message } => {
                // A message is one line: never let a newline split the reply.
                let message = message.replace(['\n', '\r'], " ");
                write!(f, "error {code} {message}")
            }
            Reply::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for r in [
            Reply::Accepted {
                id: 7,
                action: "nightly-backup".into(),
            },
            Reply::Done {
                id: 7,
                exit: 3,
                secs: 1.25,
            },
            Reply::error(ErrorCode::Busy, "nightly-backup is running as 6"),
            Reply::error(ErrorCode::Busy, ""),
            Reply::Text("pong".into()),
        ] {
            assert_eq!(Reply::parse(&r.to_string()), r);
        }
    }

    #[test]
    fn odd_lines_are_text() {
        assert_eq!(
            Reply::parse("done x exit=1"),
            Reply::Text("done x exit=1".into())
        );
        assert_eq!(
            Reply::parse("error nope hi"),
            Reply::Text("error nope hi".into())
        );
        assert_eq!(
            Reply::parse("error busy"),
            Reply::Error {
                code: ErrorCode::Busy,
                message: String::new()
            }
        );
    }

    #[test]
    fn error_message_is_one_line() {
        let r = Reply::error(ErrorCode::BadRequest, "a\nb");
        assert_eq!(r.to_string(), "error bad-request a b");
    }
}
