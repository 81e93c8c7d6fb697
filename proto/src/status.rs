//! The answer to `status`, as a value: the supervisor fills in the main process, the
//! listener the running actions, `supervisor status` reads it back. Its text is made by
//! [`Status`]'s `Display` and read by [`Status::parse`], nowhere else (DESIGN.md section 2):
//!
//! ```text
//! <service> <state> pid=<pid>|- ready=yes|no restarts=<n>[ uptime=<secs>s][ last_exit=<code>][ on_demand=held][ instance=<n>]
//! action <name> id=<id> user=<user>|- secs=<secs>
//! ```
//!
//! one `action` line per running action.

use std::fmt;

/// The main process's state, as `status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Up and ready.
    Running,
    /// Started, not ready yet (or being started).
    Starting,
    Stopping,
    /// Waiting to be started again after it exited.
    Backoff,
    /// Not running: stopped by request, or not started yet.
    Stopped,
    /// On demand: not running, its socket held until a connection comes.
    Idle,
    /// The container is stopping.
    Exiting,
}

impl State {
    const ALL: [State; 7] = [
        State::Running,
        State::Starting,
        State::Stopping,
        State::Backoff,
        State::Stopped,
        State::Idle,
        State::Exiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Starting => "starting",
            State::Stopping => "stopping",
            State::Backoff => "backoff",
            State::Stopped => "stopped",
            State::Idle => "idle",
            State::Exiting => "exiting",
        }
    }

    fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running action, as `status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub id: u64,
    pub user: Option<String>,
    /// Seconds since it started.
    pub secs: u64,
}

/// The whole answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub service: String,
    pub state: State,
    /// The main process, while it has one.
    pub pid: Option<i32>,
    pub ready: bool,
    /// Starts of the main process after its first.
    pub restarts: u64,
    /// Seconds since it started, while it runs.
    pub uptime: Option<u64>,
    /// The exit code of its last run.
    pub last_exit: Option<i32>,
    /// An on-demand service holding its socket.
    pub on_demand: bool,
    /// The replica's instance (DESIGN.md section 10).
    pub instance: Option<u32>,
    /// The running actions (the listener's part).
    pub actions: Vec<Action>,
}

impl Status {
    /// The health rule of `supervisor status`: `running` and ready, or an on-demand
    /// service holding its socket (`idle`, `starting` on demand), which answers
    /// connections either way.
    pub fn healthy(&self) -> bool {
        (self.state == State::Running && self.ready) || self.on_demand
    }

    /// Reads what `Display` wrote. Unknown `key=value` words are skipped (a newer
    /// supervisor may say more); `None` when the first line is not a status line (an
    /// `error ...` reply, say) or an `action` line is malformed.
    pub fn parse(text: &str) -> Option<Status> {
        let mut lines = text.split('\n');
        let mut words = lines.next()?.split(' ');
        let service = words.next().filter(|s| !s.is_empty())?.to_string();
        let state = State::parse(words.next()?)?;
        let mut st = Status {
            service,
            state,
            pid: None,
            ready: false,
            restarts: 0,
            uptime: None,
            last_exit: None,
            on_demand: false,
            instance: None,
            actions: Vec::new(),
        };
        for kv in words {
            match kv.split_once('=')? {
                ("pid", "-") => st.pid = None,
                ("pid", v) => st.pid = Some(v.parse().ok()?),
                ("ready", v) => st.ready = v == "yes",
                ("restarts", v) => st.restarts = v.parse().ok()?,
                ("uptime", v) => st.uptime = Some(v.strip_suffix('s')?.parse().ok()?),
                ("last_exit", v) => st.last_exit = Some(v.parse().ok()?),
                ("on_demand", v) => st.on_demand = v == "held",
                ("instance", v) => st.instance = Some(v.parse().ok()?),
                _ => {}
            }
        }
        for line in lines {
            st.actions.push(Action::parse(line)?);
        }
        Some(st)
    }
}

impl Action {
    fn parse(line: &str) -> Option<Action> {
        let mut words = line.split(' ');
        if words.next()? != "action" {
            return None;
        }
        let name = words.next()?.to_string();
        let (mut id, mut user, mut secs) = (None, None, None);
        for kv in words {
            match kv.split_once('=')? {
                ("id", v) => id = v.parse().ok(),
                ("user", "-") => user = Some(None),
                ("user", v) => user = Some(Some(v.to_string())),
                ("secs", v) => secs = v.parse().ok(),
                _ => {}
            }
        }
        Some(Action {
            name,
            id: id?,
            user: user?,
            secs: secs?,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "action {} id={} user={} secs={}",
            self.name,
            self.id,
            self.user.as_deref().unwrap_or("-"),
            self.secs
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} pid=", self.service, self.state)?;
        match self.pid {
            Some(p) => write!(f, "{p}")?,
            None => f.write_str("-")?,
        }
        let ready = if self.ready { "yes" } else { "no" };
        write!(f, " ready={ready} restarts={}", self.restarts)?;
        if let Some(up) = self.uptime {
            write!(f, " uptime={up}s")?;
        }
        if let Some(e) = self.last_exit {
            write!(f, " last_exit={e}")?;
        }
        if self.on_demand {
            f.write_str(" on_demand=held")?;
        }
        if let Some(n) = self.instance {
            write!(f, " instance={n}")?;
        }
        for a in &self.actions {
            write!(f, "\n{a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Status {
        Status {
            service: "mysql".into(),
            state: State::Running,
            pid: Some(3),
            ready: true,
            restarts: 0,
            uptime: None,
            last_exit: None,
            on_demand: false,
            instance: None,
            actions: Vec::new(),
        }
    }

    #[test]
    fn the_wire_text() {
        assert_eq!(
            base().to_string(),
            "mysql running pid=3 ready=yes restarts=0"
        );
        let full = Status {
            state: State::Idle,
            pid: None,
            ready: false,
            restarts: 2,
            uptime: Some(61),
            last_exit: Some(143),
            on_demand: true,
            instance: Some(2),
            actions: vec![
                Action {
                    name: "backup".into(),
                    id: 7,
                    user: Some("forum".into()),
                    secs: 12,
                },
                Action {
                    name: "rotate-logs".into(),
                    id: 8,
                    user: None,
                    secs: 0,
                },
            ],
            ..base()
        };
        assert_eq!(
            full.to_string(),
            "mysql idle pid=- ready=no restarts=2 uptime=61s last_exit=143 on_demand=held instance=2\n\
             action backup id=7 user=forum secs=12\n\
             action rotate-logs id=8 user=- secs=0"
        );
    }

    #[test]
    fn round_trip() {
        let mut s = base();
        for state in State::ALL {
            s.state = state;
            assert_eq!(Status::parse(&s.to_string()), Some(s.clone()));
        }
        s.uptime = Some(5);
        s.last_exit = Some(-1);
        s.pid = None;
        s.on_demand = true;
        s.actions.push(Action {
            name: "a".into(),
            id: 1,
            user: None,
            secs: 3,
        });
        assert_eq!(Status::parse(&s.to_string()), Some(s));
    }

    #[test]
    fn not_a_status() {
        for text in [
            "",
            "error unavailable no listener is running",
            "mysql",
            "mysql sleeping pid=3",
            "mysql running pid=x ready=yes restarts=0",
            "mysql running pid=3 ready=yes restarts=0\nnot an action",
            "mysql running pid=3 ready=yes restarts=0\naction a id=1 secs=2",
        ] {
            assert_eq!(Status::parse(text), None, "{text}");
        }
        // A newer supervisor may say more.
        let s = Status::parse("mysql running pid=3 ready=yes restarts=0 cpu=9").unwrap();
        assert_eq!(s, base());
    }

    #[test]
    fn health() {
        let healthy = |t: &str| Status::parse(t).is_some_and(|s| s.healthy());
        assert!(healthy("mysql running pid=3 ready=yes restarts=0"));
        assert!(!healthy("mysql starting pid=3 ready=no restarts=0"));
        assert!(!healthy("mysql stopped pid=- ready=no restarts=0"));
        assert!(!healthy("error unavailable x"));
        assert!(healthy("php idle pid=- ready=no restarts=0 on_demand=held"));
        assert!(healthy(
            "php starting pid=9 ready=no restarts=0 on_demand=held"
        ));
    }
}
