//! The built-ins: one table of the requests bosun answers itself, and their replies as
//! values.
//!
//! A built-in is one row of [`Builtin::TABLE`] (its name, who answers it, its words and
//! its flags: quiet, answered without a listener, answered while stopping) and one
//! handler: the listener's for [`By::Listener`], the supervisor core's for
//! [`By::Supervisor`] (the listener forwards those over the control channel). Replies of
//! the supervisor's built-ins are [`Answer`] values, or a [`Reply::Error`] when refused;
//! an answer's text is made in one place, [`Answer`]'s `Display`, and is what the client
//! reads.

use std::fmt;

use crate::metrics::{render, Family};
use crate::reply::Reply;

/// A request answered without a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    Ping,
    Help,
    Status,
    Start,
    Stop,
    Restart,
    Reload,
    History,
    Log,
    Metrics,
    Version,
    Cancel,
}

/// The words a built-in takes after its name (DESIGN.md section 2: a built-in refuses words
/// it does not take, so `stop backup` or a user named `stop` never stops the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Words {
    /// None at all.
    None,
    /// At most one (`history [ACTION]`).
    Optional(&'static str),
    /// Exactly one (`log ID`).
    One(&'static str),
}

/// Who answers a built-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The listener, from what it knows (the actions, the liveness of the socket, the
    /// run journal).
    Listener,
    /// The supervisor, which owns the main process: forwarded over the control channel.
    Supervisor,
}

/// One built-in: everything the programs need to know about it besides its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub builtin: Builtin,
    /// Its name on the wire.
    pub name: &'static str,
    pub by: By,
    /// The words it takes after its name.
    pub words: Words,
    /// Asked every few seconds by health checks and scrapers: logged at debug, not info.
    pub quiet: bool,
    /// Answered by the supervisor itself while no listener runs, when the request line is
    /// exactly its name (no user, key or words): no listener is started for it.
    pub without_listener: bool,
    /// Answered by the supervisor while the container stops (the others get
    /// `error shutting-down`).
    pub while_stopping: bool,
}

impl Row {
    /// A row with every flag off: the rows below say only what differs.
    const fn new(builtin: Builtin, name: &'static str, by: By) -> Row {
        Row {
            builtin,
            name,
            by,
            words: Words::None,
            quiet: false,
            without_listener: false,
            while_stopping: false,
        }
    }

    const fn words(mut self, words: Words) -> Row {
        self.words = words;
        self
    }

    const fn quiet(mut self) -> Row {
        self.quiet = true;
        self
    }

    const fn without_listener(mut self) -> Row {
        self.without_listener = true;
        self
    }

    const fn while_stopping(mut self) -> Row {
        self.while_stopping = true;
        self
    }
}

impl Builtin {
    /// Every built-in, in `help`'s order. A new built-in is a row here, a variant above and
    /// its handler on the side that answers it (the listener's `builtins`, or the
    /// supervisor core's `on_command`).
    pub const TABLE: [Row; 12] = [
        Row::new(Builtin::Ping, "ping", By::Listener)
            .quiet()
            .without_listener(),
        Row::new(Builtin::Help, "help", By::Listener),
        Row::new(Builtin::Status, "status", By::Supervisor)
            .quiet()
            .without_listener()
            .while_stopping(),
        Row::new(Builtin::Start, "start", By::Supervisor),
        Row::new(Builtin::Stop, "stop", By::Supervisor),
        Row::new(Builtin::Restart, "restart", By::Supervisor),
        Row::new(Builtin::Reload, "reload", By::Supervisor),
        Row::new(Builtin::History, "history", By::Listener).words(Words::Optional("ACTION")),
        Row::new(Builtin::Log, "log", By::Listener).words(Words::One("ID")),
        // The supervisor answers its part (the main process); the listener appends the
        // journal's (the actions).
        Row::new(Builtin::Metrics, "metrics", By::Supervisor)
            .quiet()
            .while_stopping(),
        Row::new(Builtin::Version, "version", By::Listener).without_listener(),
        // Stops a running action (TERM to its group, KILL after the grace); its own `done`
        // reports its exit, this reply once it has ended (`cancelled id=ID exit=CODE`).
        Row::new(Builtin::Cancel, "cancel", By::Listener).words(Words::One("ID")),
    ];

    /// Its row of [`Builtin::TABLE`].
    pub fn row(self) -> &'static Row {
        Builtin::TABLE
            .iter()
            .find(|r| r.builtin == self)
            .unwrap_or(&Builtin::TABLE[0])
    }

    pub fn name(self) -> &'static str {
        self.row().name
    }

    pub fn by(self) -> By {
        self.row().by
    }

    /// The words it takes after its name.
    pub fn words(self) -> Words {
        self.row().words
    }

    /// Whether `n` words after its name are what it takes.
    pub fn takes(self, n: usize) -> bool {
        match self.words() {
            Words::None => n == 0,
            Words::Optional(_) => n <= 1,
            Words::One(_) => n == 1,
        }
    }

    /// Its usage line: `ping`, `history [ACTION]`, `log ID`.
    pub fn usage(self) -> String {
        match self.words() {
            Words::None => self.name().to_string(),
            Words::Optional(w) => format!("{} [{w}]", self.name()),
            Words::One(w) => format!("{} {w}", self.name()),
        }
    }

    /// Checks the words after its name: `Err` is the `error bad-request` to answer
    /// (`stop backup`, `ping now`, `log`, `log 1 2`). Every side that answers a built-in
    /// (the listener, the supervisor while no listener runs) asks this first.
    pub fn check_words<S: AsRef<str>>(self, words: &[S]) -> Result<(), crate::RequestError> {
        if self.takes(words.len()) {
            return Ok(());
        }
        Err(crate::RequestError::Words {
            builtin: self.name(),
            usage: self.usage(),
            got: words.len(),
        })
    }

    /// The built-in named `name`, if any.
    pub fn parse(name: &str) -> Option<Builtin> {
        Builtin::TABLE
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.builtin)
    }

    /// The names, in `help`'s order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Builtin::TABLE.iter().map(|r| r.name)
    }

    /// Health checks and scrapers ask these every few seconds: they are logged at debug,
    /// not info.
    pub fn is_quiet(self) -> bool {
        self.row().quiet
    }

    /// Answered by the supervisor while the container stops.
    pub fn while_stopping(self) -> bool {
        self.row().while_stopping
    }

    /// The built-in the supervisor answers itself while no listener runs, when `line` (a
    /// request line, without its newline) asks for one: exactly its name, alone. Any other
    /// line (`None`) is for a listener.
    pub fn without_listener(line: &[u8]) -> Option<Builtin> {
        match crate::parse_line(line).ok()?.as_slice() {
            [one] => Builtin::parse(one).filter(|b| b.row().without_listener),
            _ => None,
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The reply to a built-in the supervisor answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `status`: the main process's part (the listener adds the actions).
    Status(crate::status::Status),
    /// `start` when it already runs.
    Running {
        pid: i32,
    },
    Started {
        pid: i32,
    },
    Restarted {
        pid: i32,
    },
    Reloaded {
        pid: i32,
    },
    /// `metrics`: the supervisor's part, the main process's families.
    Metrics(Vec<Family>),
    /// `stop`: with the exit code when a running process was stopped.
    Stopped {
        exit: Option<i32>,
    },
}

/// An answer goes on the wire as the text its `Display` makes.
impl From<Answer> for Reply {
    fn from(a: Answer) -> Reply {
        Reply::Text(a.to_string())
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Status(s) => s.fmt(f),
            Answer::Metrics(families) => f.write_str(render(families).trim_end_matches('\n')),
            Answer::Running { pid } => write!(f, "running pid={pid}"),
            Answer::Started { pid } => write!(f, "started pid={pid}"),
            Answer::Restarted { pid } => write!(f, "restarted pid={pid}"),
            Answer::Reloaded { pid } => write!(f, "reloaded pid={pid}"),
            Answer::Stopped { exit: None } => f.write_str("stopped"),
            Answer::Stopped { exit: Some(c) } => write!(f, "stopped exit={c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn one_table() {
        for row in Builtin::TABLE {
            let b = row.builtin;
            assert_eq!(Builtin::parse(row.name), Some(b));
            assert_eq!(b.name(), row.name);
            assert_eq!(b.row(), &row);
            assert_eq!(b.to_string(), row.name);
            // The supervisor answers a built-in while stopping only if it answers it at all.
            assert!(!row.while_stopping || row.by == By::Supervisor, "{b}");
        }
        assert_eq!(Builtin::parse("rotate-logs"), None);
        assert_eq!(
            Builtin::names().collect::<Vec<_>>(),
            [
                "ping", "help", "status", "start", "stop", "restart", "reload", "history", "log",
                "metrics", "version", "cancel"
            ]
        );
    }

    #[test]
    fn flags() {
        let quiet: Vec<_> = Builtin::TABLE
            .iter()
            .filter(|r| r.quiet)
            .map(|r| r.name)
            .collect();
        assert_eq!(quiet, ["ping", "status", "metrics"]);
        let stopping: Vec<_> = Builtin::TABLE
            .iter()
            .filter(|r| r.while_stopping)
            .map(|r| r.name)
            .collect();
        assert_eq!(stopping, ["status", "metrics"]);
        for (line, want) in [
            (&b"ping"[..], Some(Builtin::Ping)),
            (b"status", Some(Builtin::Status)),
            (b"version", Some(Builtin::Version)),
            (b" version\r", Some(Builtin::Version)),
            (b"help", None),
            (b"forum ping", None),
            (b"@k ping", None),
            (b"ping now", None),
            (b"metrics", None),
            (b"\xff", None),
        ] {
            assert_eq!(Builtin::without_listener(line), want, "{line:?}");
        }
    }

    #[test]
    fn builtins_refuse_words_they_do_not_take() {
        let none: [&str; 0] = [];
        for Row { builtin: b, .. } in Builtin::TABLE {
            let one_ok = matches!(b, Builtin::History | Builtin::Log | Builtin::Cancel);
            assert_eq!(b.check_words(&["x"]).is_ok(), one_ok, "{b} x");
            let none_ok = !matches!(b, Builtin::Log | Builtin::Cancel);
            assert_eq!(b.check_words(&none).is_ok(), none_ok, "{b}");
            assert!(b.check_words(&["x", "y"]).is_err(), "{b} x y");
        }
        let e = Builtin::Stop.check_words(&["backup"]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadRequest);
        assert_eq!(e.to_string(), "stop takes no words (usage: stop); got 1");
        let e = Builtin::Log.check_words(&["1", "2"]).unwrap_err();
        assert_eq!(e.to_string(), "log takes one word (usage: log ID); got 2");
        let e = Builtin::History.check_words(&["a", "b"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "history takes at most one word (usage: history [ACTION]); got 2"
        );
    }

    #[test]
    fn answers() {
        assert_eq!(Answer::Started { pid: 7 }.to_string(), "started pid=7");
        assert_eq!(Answer::Stopped { exit: None }.to_string(), "stopped");
        assert_eq!(
            Answer::Stopped { exit: Some(143) }.to_string(),
            "stopped exit=143"
        );
        assert_eq!(
            Reply::from(Answer::Reloaded { pid: 9 }),
            Reply::Text("reloaded pid=9".into())
        );
        let mut f = Family::new("bosun_x", "X.", crate::metrics::Kind::Gauge);
        f.sample(&[], 1.0);
        let m = Answer::Metrics(vec![f]).to_string();
        assert!(!m.ends_with('\n'), "no trailing newline on the channel");
        assert!(m.ends_with("\nbosun_x 1"), "{m}");
    }
}
