//! What can be wrong with the settings, typed: where it was found ([`Origin`]) and what is
//! wrong ([`ProblemKind`], [`ValueError`]). The supervisor's exit code comes from the kind
//! ([`Problems::exit_code`]), never from the text.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::duration::DurationError;
use crate::log::{FilterError, LogFormatError};
use crate::name::NameError;
use crate::passwd;

/// Where a value or a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A variable of the environment (`BOSUN_STOP_TIMEOUT`).
    Env(&'static str),
    /// A place in `service.toml`: `FILE:LINE:COL` (or `FILE` alone), and the key when the
    /// problem is one key's (`FILE:3:16: stop_timeout`).
    File { at: String, key: Option<String> },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => f.write_str(name),
            Origin::File { at, key: None } => f.write_str(at),
            Origin::File { at, key: Some(k) } => write!(f, "{at}: {k}"),
        }
    }
}

/// A value that does not parse, as its parser says it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("{0:?} is not a duration above 0 (a repeated key must be able to wait for its run)")]
    ZeroWait(String),
    #[error("{0:?} is not a whole number of at least 1")]
    Count(String),
    #[error("{0:?} is not a whole number")]
    Whole(String),
    #[error(transparent)]
    Instance(#[from] crate::instance::InstanceError),
    #[error("{0:?} is not a restart policy (no, on-failure, always)")]
    Restart(String),
    #[error("{0:?} is not when to start the listener (request, boot)")]
    ListenerStart(String),
    /// What [`crate::signal::parse`] says.
    #[error("{0}")]
    Signal(String),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    LogFormat(#[from] LogFormatError),
    #[error("{0:?} is not a valid service name ({rule})", rule = crate::name::RULE)]
    ServiceName(String),
    #[error("{0:?} is not an octal file mode like 0660 (permission bits only: 0000 to 0777)")]
    Mode(String),
    #[error("no group named {0:?} in {file}", file = passwd::GROUP)]
    NoGroup(String),
    #[error("no user named {0:?} in {file}", file = passwd::PASSWD)]
    NoUser(String),
    #[error("{item:?} is neither a number nor a known {what} name (a comma-separated list of ids or names)")]
    Id { item: String, what: &'static str },
    #[error("{}", join(.0))]
    ActionTimeouts(Vec<ActionTimeoutError>),
    #[error(
        "{0:?} is neither a socket path (with a '/') nor an IP:PORT like 127.0.0.1:9000 \
         (host names are not resolved: write the IP address)"
    )]
    Addr(String),
    #[error("{0:?} is not a ready probe (socket:PATH, tcp:HOST:PORT, exec:COMMAND or notify)")]
    Ready(String),
    #[error(
        "{text:?}: {host:?} is not an IP address or localhost (PID 1 does not look names up: \
         it must never wait on DNS)"
    )]
    ReadyHost { text: String, host: String },
    /// A required value is not set: `no {what}: ... ({why})`, reported without an origin.
    #[error("{what} is required ({why})")]
    Missing {
        what: &'static str,
        why: &'static str,
    },
}

/// One bad item of `action_timeouts`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActionTimeoutError {
    #[error("{0:?} is not ACTION=DURATION, as in rotate-logs=5m,nightly-backup=3h")]
    NotPair(String),
    #[error("in {item:?}: {source}")]
    Name { item: String, source: NameError },
    #[error("in {item:?}: {source}")]
    Duration { item: String, source: DurationError },
}

fn join(errs: &[ActionTimeoutError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What is wrong, beyond one value's text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProblemKind {
    #[error(transparent)]
    Value(#[from] ValueError),
    /// The file's TOML syntax, as the parser says it.
    #[error("{0}")]
    Syntax(String),
    #[error("cannot read: {0}")]
    Unreadable(String),
    #[error("unknown key `{key}` (known keys: {known})")]
    UnknownKey { key: String, known: String },
    #[error("unknown key `{key}` (known: {known})")]
    UnknownSubKey { key: String, known: String },
    /// The file holds another TOML type than the key takes (`expected a string`).
    #[error("expected {0}")]
    Type(&'static str),
    #[error("no {what}: {hint} ({why})")]
    Missing {
        what: &'static str,
        why: &'static str,
        hint: String,
    },
    #[error("no main process: set `exec = [\"cmd\", \"arg\"]` in {file} or run `supervisor -- CMD ARG...`")]
    NoMain { file: String },
    #[error("main command not found: {0:?} (is it installed, and on PATH?)")]
    CommandNotFound(String),
    #[error("main command not executable: {}", .0.display())]
    CommandNotExecutable(PathBuf),
    #[error("setup script {0:?} does not exist")]
    NoSetup(String),
    #[error("listener binary {} not found (set BOSUN_LISTENER to its path, or to off)", .0.display())]
    NoListener(PathBuf),
}

/// One problem: `ORIGIN: what is wrong`, or the kind alone when it has no one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Option<Origin>,
    pub kind: ProblemKind,
}

impl Problem {
    pub fn new(origin: Option<Origin>, kind: impl Into<ProblemKind>) -> Problem {
        Problem {
            origin,
            kind: kind.into(),
        }
    }

    /// The supervisor's exit code for it: 127 when the main command does not exist, 126
    /// when it cannot be run (as a shell would say), else 125, bosun's setup error.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ProblemKind::CommandNotFound(_) => crate::exit::NOT_FOUND,
            ProblemKind::CommandNotExecutable(_) => crate::exit::NOT_EXECUTABLE,
            _ => crate::exit::SETUP,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(o) => write!(f, "{o}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for Problem {}

/// All problems found, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// The supervisor's exit code for them: the most specific one's (127 over 126 over
    /// 125, the order in which a shell reports them, which is also the numeric one).
    pub fn exit_code(&self) -> u8 {
        self.0
            .iter()
            .map(Problem::exit_code)
            .max()
            .unwrap_or(crate::exit::SETUP)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Problems {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
