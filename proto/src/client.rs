//! One client of `<service>-request.sock`: what the reply lines to a request mean
//! ([`Replies`], pure), and a small blocking [`Connection`] with deadlines. `scheduler
//! send` and the scheduler daemon (which reads its lines with tokio and feeds the same
//! [`Replies`]) are its users; each decides what a [`Meaning`] does to it (an exit code, a
//! retry, a recorded outcome).
//!
//! The request line is [`Request`]'s `Display`, the one way a request is written.
//!
//! The reply must be the one asked for (DESIGN.md section 2): an `accepted` that names
//! another action (the service read the user as one of its actions) or a built-in's text
//! to an action request means the service read the request otherwise.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::{Builtin, ErrorCode, Reply, Request};

/// The longest reply line read; longer lines are cut (a reply is short text).
pub const MAX_REPLY_LINE: usize = 64 * 1024;

/// What one reply line means to the client that asked for an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Meaning {
    /// `accepted` of the action asked for; `new`: an id not known before for this request
    /// (a repeat of a keyed request answers with the first run's id).
    Accepted { id: u64, new: bool },
    /// `done`.
    Done { id: u64, exit: i32, secs: f64 },
    /// `error unavailable` as the first reply (the listener crashed or is restarting: the
    /// action did not run) or after `accepted` on this connection (the listener went away
    /// while it ran): the same request, keyed, asked again brings its outcome.
    Unavailable { message: String },
    /// `error lost`: the key's run was lost with its container and never runs again; `id`
    /// from the message, else the one accepted.
    Lost { id: Option<u64>, message: String },
    /// `accepted` of another action than the one asked for.
    OtherAction { id: u64, action: String },
    /// Text as the first reply to an action request: the service read it as a built-in.
    BuiltinText { text: String },
    /// Any other `error` before `accepted`: the request is refused.
    Refused { code: ErrorCode, message: String },
    /// Any other `error` after `accepted` (on this connection or an earlier one): about the
    /// run's end.
    ErrorAfterAccepted {
        id: u64,
        code: ErrorCode,
        message: String,
    },
    /// Any other line: text to show.
    Text { text: String },
}

/// How a connection the service closed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Without a reply.
    Silent,
    /// After `accepted` on this connection, before `done`: the action may still be going.
    BeforeDone(u64),
    /// After text only (a built-in's answer): nothing more to wait for.
    Answered,
}

/// The replies to one request, across its connections, one line at a time.
#[derive(Debug, Clone)]
pub struct Replies {
    /// The action asked for.
    action: String,
    /// Whether that is a built-in (its answer is text, not `accepted`).
    builtin: bool,
    /// The run id once any connection got `accepted`.
    accepted: Option<u64>,
    /// The run id `accepted` on the current connection.
    id: Option<u64>,
    /// No reply read yet on the current connection.
    first: bool,
}

impl Replies {
    /// The replies to a request for `action`; `accepted`: its run id when it is known to
    /// have been accepted before (a keyed request asked again).
    pub fn new(action: &str, accepted: Option<u64>) -> Replies {
        Replies {
            action: action.to_string(),
            builtin: Builtin::parse(action).is_some(),
            accepted,
            id: None,
            first: true,
        }
    }

    /// Whether the action asked for is a built-in.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// Whether no reply has been read on the current connection.
    pub fn is_first(&self) -> bool {
        self.first
    }

    /// The run id once any connection got `accepted`.
    pub fn accepted(&self) -> Option<u64> {
        self.accepted
    }

    /// The run id `accepted` on the current connection.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// A new connection: its replies start afresh.
    pub fn connected(&mut self) {
        self.id = None;
        self.first = true;
    }

    /// What `reply`, the next line on this connection, means.
    pub fn on_line(&mut self, reply: &Reply) -> Meaning {
        let first = std::mem::replace(&mut self.first, false);
        match reply {
            Reply::Error {
                code: ErrorCode::Unavailable,
                message,
            } if first || self.id.is_some() => Meaning::Unavailable {
                message: message.clone(),
            },
            Reply::Accepted { id, action } if *action != self.action => Meaning::OtherAction {
                id: *id,
                action: action.clone(),
            },
            Reply::Accepted { id, .. } => {
                self.id = Some(*id);
                let new = self.accepted != Some(*id);
                self.accepted = Some(*id);
                Meaning::Accepted { id: *id, new }
            }
            Reply::Error {
                code: ErrorCode::Lost,
                message,
            } => Meaning::Lost {
                id: message
                    .split(' ')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok())
                    .or(self.id)
                    .or(self.accepted),
                message: message.clone(),
            },
            Reply::Text(text) if first && !self.builtin => {
                Meaning::BuiltinText { text: text.clone() }
            }
            Reply::Done { id, exit, secs } => Meaning::Done {
                id: *id,
                exit: *exit,
                secs: *secs,
            },
            Reply::Error { code, message } => match self.id.or(self.accepted) {
                Some(id) => Meaning::ErrorAfterAccepted {
                    id,
                    code: *code,
                    message: message.clone(),
                },
                None => Meaning::Refused {
                    code: *code,
                    message: message.clone(),
                },
            },
            Reply::Text(text) => Meaning::Text { text: text.clone() },
        }
    }

    /// How the connection the service closed ended.
    pub fn on_closed(&self) -> Closed {
        match self.id {
            _ if self.first => Closed::Silent,
            Some(id) => Closed::BeforeDone(id),
            None => Closed::Answered,
        }
    }
}

/// Deadlines of a [`Connection`]; `None` waits as long as it takes (an action's `done` may
/// come hours later).
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadlines {
    /// For writing the request.
    pub write: Option<Duration>,
    /// For each reply line.
    pub read: Option<Duration>,
}

/// One blocking connection to a request socket: one line out, lines in.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<UnixStream>,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects to `path` (a missing or refusing socket is an error at once).
    pub fn open(path: &Path, deadlines: Deadlines) -> io::Result<Connection> {
        let stream = UnixStream::connect(path)?;
        stream.set_write_timeout(deadlines.write)?;
        stream.set_read_timeout(deadlines.read)?;
        Ok(Connection {
            reader: BufReader::new(stream),
            buf: Vec::new(),
        })
    }

    /// Writes `request` as its line.
    pub fn send(&mut self, request: &Request) -> io::Result<()> {
        let line = format!("{request}\n");
        self.reader.get_mut().write_all(line.as_bytes())
    }

    /// The next reply line, without its line end (invalid UTF-8 replaced, a line longer
    /// than [`MAX_REPLY_LINE`] cut); `None` once the service has closed the connection.
    pub fn read_line(&mut self) -> io::Result<Option<String>> {
        read_line(&mut self.reader, &mut self.buf)
    }
}

/// One reply line from `input` (see [`Connection::read_line`]); `buf` is scratch space.
pub fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<String>> {
    loop {
        buf.clear();
        match Read::take(&mut *input, MAX_REPLY_LINE as u64).read_until(b'\n', buf) {
            Ok(0) => return Ok(None),
            Ok(_) => {
                let text = String::from_utf8_lossy(buf);
                return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meanings(r: &mut Replies, lines: &[&str]) -> Vec<Meaning> {
        r.connected();
        lines.iter().map(|l| r.on_line(&Reply::parse(l))).collect()
    }

    #[test]
    fn accepted_then_done() {
        let mut r = Replies::new("backup", None);
        assert_eq!(
            meanings(
                &mut r,
                &["accepted 7 backup", "note", "done 7 exit=3 secs=1.5"]
            ),
            vec![
                Meaning::Accepted { id: 7, new: true },
                Meaning::Text {
                    text: "note".into()
                },
                Meaning::Done {
                    id: 7,
                    exit: 3,
                    secs: 1.5
                }
            ]
        );
        assert_eq!(r.on_closed(), Closed::BeforeDone(7));
        // A keyed repeat answers with the same run: not new.
        assert_eq!(
            meanings(&mut r, &["accepted 7 backup"]),
            vec![Meaning::Accepted { id: 7, new: false }]
        );
        let mut r = Replies::new("backup", Some(7));
        assert_eq!(
            meanings(&mut r, &["accepted 7 backup"]),
            vec![Meaning::Accepted { id: 7, new: false }]
        );
    }

    #[test]
    fn unavailable_first_or_after_accepted_only() {
        let mut r = Replies::new("backup", None);
        assert_eq!(
            meanings(&mut r, &["error unavailable restarting"]),
            vec![Meaning::Unavailable {
                message: "restarting".into()
            }]
        );
        assert!(matches!(
            meanings(&mut r, &["accepted 1 backup", "error unavailable x"])[1],
            Meaning::Unavailable { .. }
        ));
        // After a built-in's text it is an error like any other.
        let mut r = Replies::new("restart", None);
        assert_eq!(
            meanings(&mut r, &["restarting", "error unavailable x"])[1],
            Meaning::Refused {
                code: ErrorCode::Unavailable,
                message: "x".into()
            }
        );
        assert_eq!(r.on_closed(), Closed::Answered);
    }

    #[test]
    fn the_reply_must_be_the_one_asked_for() {
        let mut r = Replies::new("backup", None);
        assert_eq!(
            meanings(&mut r, &["accepted 9 noop"]),
            vec![Meaning::OtherAction {
                id: 9,
                action: "noop".into()
            }]
        );
        assert_eq!(r.accepted(), None);
        assert_eq!(
            meanings(&mut r, &["stopped exit=143"]),
            vec![Meaning::BuiltinText {
                text: "stopped exit=143".into()
            }]
        );
        // To a built-in, text is its answer.
        let mut r = Replies::new("status", None);
        assert!(r.is_builtin());
        assert_eq!(
            meanings(&mut r, &["running"]),
            vec![Meaning::Text {
                text: "running".into()
            }]
        );
    }

    #[test]
    fn errors_are_refusals_before_accepted_and_ends_after() {
        let mut r = Replies::new("backup", None);
        assert_eq!(
            meanings(&mut r, &["error busy backup is running as 6"]),
            vec![Meaning::Refused {
                code: ErrorCode::Busy,
                message: "backup is running as 6".into()
            }]
        );
        assert_eq!(
            meanings(&mut r, &["accepted 7 backup", "error shutting-down bye"])[1],
            Meaning::ErrorAfterAccepted {
                id: 7,
                code: ErrorCode::ShuttingDown,
                message: "bye".into()
            }
        );
        // On a later connection, the id accepted before still counts.
        assert!(matches!(
            meanings(&mut r, &["error denied no"])[0],
            Meaning::ErrorAfterAccepted { id: 7, .. }
        ));
    }

    #[test]
    fn lost_names_the_best_known_id() {
        let lost = |accepted, lines: &[&str]| {
            let mut r = Replies::new("backup", accepted);
            match meanings(&mut r, lines).pop() {
                Some(Meaning::Lost { id, .. }) => id,
                m => panic!("{m:?}"),
            }
        };
        assert_eq!(lost(None, &["error lost 5 gone"]), Some(5));
        assert_eq!(
            lost(None, &["accepted 7 backup", "error lost gone"]),
            Some(7)
        );
        assert_eq!(lost(Some(3), &["error lost x"]), Some(3));
        assert_eq!(lost(None, &["error lost"]), None);
    }

    #[test]
    fn a_silent_close() {
        let mut r = Replies::new("backup", Some(4));
        r.connected();
        assert_eq!(r.on_closed(), Closed::Silent);
    }

    #[test]
    fn lines_are_cut_and_made_text() {
        let long = format!("{}\n", "x".repeat(MAX_REPLY_LINE + 10));
        let mut input = b"a\r\nb\xff\n".to_vec();
        input.extend_from_slice(format!("{long}end").as_bytes());
        let mut input = &input[..];
        let mut buf = Vec::new();
        let mut next = || read_line(&mut input, &mut buf).unwrap();
        assert_eq!(next().as_deref(), Some("a"));
        assert_eq!(next().as_deref(), Some("b\u{fffd}"));
        assert_eq!(next().map(|l| l.len()), Some(MAX_REPLY_LINE));
        assert_eq!(next().as_deref(), Some("xxxxxxxxxx"));
        assert_eq!(next().as_deref(), Some("end"));
        assert_eq!(next(), None);
    }

    #[test]
    fn a_request_is_sent_as_its_line() {
        let dir = std::env::temp_dir().join(format!("proto-client-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s-request.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            (&s).write_all(b"accepted 1 backup\n").unwrap();
            line
        });
        let deadlines = Deadlines {
            write: Some(Duration::from_secs(5)),
            read: Some(Duration::from_secs(5)),
        };
        let mut c = Connection::open(&path, deadlines).unwrap();
        let req = Request {
            key: Some("k:1".into()),
            user: Some("forum".into()),
            action: "backup".into(),
            args: vec!["db1".into()],
            timeout: None,
        };
        c.send(&req).unwrap();
        assert_eq!(c.read_line().unwrap().as_deref(), Some("accepted 1 backup"));
        assert_eq!(c.read_line().unwrap(), None);
        assert_eq!(server.join().unwrap(), "@k:1 forum backup db1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
