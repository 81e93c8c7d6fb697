//! `scheduler send`: one request to `<run_dir>/<service>-request.sock`, the replies printed
//! as they arrive, and an exit code a shell script can branch on.
//!
//! Plain blocking I/O: one connection, one line out, lines in. The exit codes follow
//! sysexits(3) where DESIGN.md names them: 64 usage, 65 an `error` reply, 69 no service.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::client::{Closed, Connection, Deadlines, Meaning, Replies};
use proto::target::{instance_dir, instance_socket_path};
use proto::{valid_key, Pick, Reply, Request, Target};

/// Bad command line (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = common::exit::USAGE;
/// The service answered `error ...` (sysexits `EX_DATAERR`).
pub const EXIT_ERROR_REPLY: u8 = common::exit::ERROR_REPLY;
/// The socket is absent or refuses, or the service went away (sysexits `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: u8 = common::exit::UNAVAILABLE;

/// What `send` sends.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// The request's key (`--key`, without its `@`): the service runs a key once.
    pub key: Option<String>,
    pub user: Option<String>,
    pub service: String,
    pub action: String,
    pub args: Vec<String>,
    /// Return after `accepted` instead of waiting for `done`.
    pub no_wait: bool,
}

/// A request that cannot be sent as one line of blank-separated tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {token:?} contains a blank or control character; request tokens cannot")]
    BadToken { what: &'static str, token: String },
    /// The target is not `SERVICE`, `SERVICE.N` or `SERVICE@each` ([`proto::Target`]).
    #[error("target {0:?}: {1}")]
    BadService(String, String),
    #[error("key {0:?} is not valid: use 1 to 64 of A-Z a-z 0-9 . _ : -")]
    BadKey(String),
    #[error("request is {0} bytes; at most {max} fit in one request", max = proto::MAX_LINE)]
    TooLong(usize),
    /// `--user` that is not a name, or that the service would read as the action
    /// ([`crate::schedule::check_user`]).
    #[error("--user: {0}")]
    BadUser(String),
}

impl SendRequest {
    /// The request, after checking every token.
    pub fn request(&self) -> Result<Request, UsageError> {
        self.target()?;
        if let Some(k) = &self.key {
            if !valid_key(k) {
                return Err(UsageError::BadKey(k.clone()));
            }
        }
        let mut tokens = Vec::new();
        if let Some(u) = &self.user {
            if !u.is_empty() && !u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                crate::schedule::check_user(u, &self.action).map_err(UsageError::BadUser)?;
            }
            tokens.push(("user", u.as_str()));
        }
        tokens.push(("action", self.action.as_str()));
        tokens.extend(self.args.iter().map(|a| ("argument", a.as_str())));
        for (what, t) in &tokens {
            if t.is_empty() {
                return Err(UsageError::Empty { what });
            }
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(UsageError::BadToken {
                    what,
                    token: t.to_string(),
                });
            }
        }
        let request = Request {
            key: self.key.clone(),
            user: self.user.clone(),
            action: self.action.clone(),
            args: self.args.clone(),
            timeout: None,
        };
        let len = request.to_string().len();
        if len > proto::MAX_LINE {
            return Err(UsageError::TooLong(len));
        }
        Ok(request)
    }

    /// The request line, without its `\n`, after checking every token.
    pub fn line(&self) -> Result<String, UsageError> {
        self.request().map(|r| r.to_string())
    }

    /// The target: `php`, `php.2` or `php@each`.
    pub fn target(&self) -> Result<Target, UsageError> {
        Target::parse(&self.service)
            .map_err(|e| UsageError::BadService(self.service.clone(), e.message))
    }

    /// The socket this request goes to first: the shared one for `php` (and for
    /// `php@each`, which is never sent there), the instance's for `php.2`.
    pub fn socket(&self, run_dir: &Path) -> PathBuf {
        match self.target() {
            Ok(Target {
                service,
                pick: Pick::One(n),
            }) => instance_socket_path(&instance_dir(run_dir, &service), &service, n),
            _ => proto::request_socket_path(run_dir, &self.service),
        }
    }
}

/// Writing a request line, which fits in the socket's buffer, never waits long; a reply
/// may take as long as the action runs.
const DEADLINES: Deadlines = Deadlines {
    write: Some(Duration::from_secs(10)),
    read: None,
};

/// Sends `req`, copies every reply line to `out` as it arrives, reports problems on `err`,
/// and returns the exit code of `scheduler send`. `php@each` goes to every live instance
/// at once (`send_each`); `php` to the shared socket, or to a live instance when that
/// one is missing or refuses.
pub fn send(run_dir: &Path, req: &SendRequest, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let (request, target) = match req.request().and_then(|r| Ok((r, req.target()?))) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "scheduler send: {e}");
            return EXIT_USAGE;
        }
    };
    if target.pick == Pick::Each {
        return send_each(run_dir, req, &request, &target, out, err);
    }
    let path = req.socket(run_dir);
    let mut conn = match Connection::open(&path, DEADLINES) {
        Ok(c) => c,
        Err(e) if target.pick == Pick::Any => match any_instance(run_dir, &target.service) {
            Some((_, c)) => c,
            None => {
                let _ = writeln!(
                    err,
                    "scheduler send: cannot reach {}: {e}, and no instance socket of {} answers",
                    path.display(),
                    target.service
                );
                return EXIT_UNAVAILABLE;
            }
        },
        Err(e) => {
            let _ = writeln!(err, "scheduler send: cannot reach {}: {e}", path.display());
            return EXIT_UNAVAILABLE;
        }
    };
    exchange(&mut conn, &request, &path, req, out, err)
}

/// The first instance socket of `service` that accepts a connection, in instance order.
fn any_instance(run_dir: &Path, service: &str) -> Option<(PathBuf, Connection)> {
    let sockets = proto::target::instance_sockets(run_dir, service).ok()?;
    sockets
        .into_iter()
        .find_map(|(_, p)| Connection::open(&p, DEADLINES).ok().map(|c| (p, c)))
}

/// Writes the request on `conn` and reads the replies (see [`read_replies`]).
fn exchange(
    conn: &mut Connection,
    request: &Request,
    path: &Path,
    req: &SendRequest,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    if let Err(e) = conn.send(request) {
        let _ = writeln!(err, "scheduler send: writing to {}: {e}", path.display());
        return EXIT_UNAVAILABLE;
    }
    read_replies(|| conn.read_line(), &req.action, req.no_wait, out, err)
}

/// `scheduler send php@each ...`: the request goes to every instance socket of the
/// service at once, each on its own thread; every line an instance's exchange prints (its
/// replies on `out`, its problems on `err`) is prefixed `php.<n>: `. An instance whose
/// socket does not accept a connection is not live: said on `err`, and not counted. The
/// exit code: [`EXIT_UNAVAILABLE`] when no instance is live, else the first non-zero code
/// of the live instances in instance order ([`each_exit`]), 0 when all ended `exit=0`.
/// With `--key K`, instance `n` gets the key `K:n`, as the daemon keys an `@each` fire.
fn send_each(
    run_dir: &Path,
    req: &SendRequest,
    request: &Request,
    target: &Target,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let sockets = match proto::target::instance_sockets(run_dir, &target.service) {
        Ok(s) => s,
        Err(e) => {
            let dir = instance_dir(run_dir, &target.service);
            let _ = writeln!(err, "scheduler send: cannot list {}: {e}", dir.display());
            return EXIT_UNAVAILABLE;
        }
    };
    let mut requests = Vec::with_capacity(sockets.len());
    for (n, path) in sockets {
        let mut r = request.clone();
        if let Some(k) = &request.key {
            let key = format!("{k}:{n}");
            if !valid_key(&key) {
                let _ = writeln!(err, "scheduler send: {}", UsageError::BadKey(key));
                return EXIT_USAGE;
            }
            r.key = Some(key);
        }
        requests.push((n, path, r));
    }
    let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
    let codes: Vec<(u32, Option<u8>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(n, path, r)| {
                let tx = tx.clone();
                let prefix = format!("{}: ", target.at(*n));
                let handle = scope.spawn(move || {
                    let mut o = ChanWriter::new(&tx, false, &prefix);
                    let mut e = ChanWriter::new(&tx, true, &prefix);
                    let mut conn = match Connection::open(path, DEADLINES) {
                        Ok(c) => c,
                        Err(error) => {
                            let _ = writeln!(
                                e,
                                "not live ({error}): {} not sent there",
                                path.display()
                            );
                            return None;
                        }
                    };
                    Some(exchange(&mut conn, r, path, req, &mut o, &mut e))
                });
                (*n, handle)
            })
            .collect();
        drop(tx);
        // Lines as they come, from whichever instance, each whole.
        for (is_err, line) in rx {
            let sink: &mut dyn Write = if is_err { &mut *err } else { &mut *out };
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
        handles
            .into_iter()
            .map(|(n, h)| (n, h.join().unwrap_or(Some(EXIT_UNAVAILABLE))))
            .collect()
    });
    let code = each_exit(&codes);
    if code == EXIT_UNAVAILABLE && codes.iter().all(|(_, c)| c.is_none()) {
        let _ = writeln!(
            err,
            "scheduler send: no live instance of {} (no {}.<n>-request.sock in {} accepts a connection)",
            target.service,
            target.service,
            instance_dir(run_dir, &target.service).display()
        );
    }
    code
}

/// The exit code of `scheduler send SERVICE@each` from each instance's: `None` for an
/// instance that was not live. [`EXIT_UNAVAILABLE`] when none was live; else the first
/// non-zero code in instance order; else 0.
pub fn each_exit(codes: &[(u32, Option<u8>)]) -> u8 {
    let mut live = codes
        .iter()
        .filter_map(|(n, c)| c.map(|c| (*n, c)))
        .peekable();
    if live.peek().is_none() {
        return EXIT_UNAVAILABLE;
    }
    let mut live: Vec<(u32, u8)> = live.collect();
    live.sort();
    live.into_iter()
        .map(|(_, c)| c)
        .find(|c| *c != 0)
        .unwrap_or(0)
}

/// A writer that sends each whole line, prefixed, to the thread that prints them.
struct ChanWriter<'a> {
    tx: &'a std::sync::mpsc::Sender<(bool, String)>,
    is_err: bool,
    prefix: &'a str,
    pending: Vec<u8>,
}

impl<'a> ChanWriter<'a> {
    fn new(tx: &'a std::sync::mpsc::Sender<(bool, String)>, is_err: bool, prefix: &'a str) -> Self {
        ChanWriter {
            tx,
            is_err,
            prefix,
            pending: Vec::new(),
        }
    }
}

impl Write for ChanWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let line = format!("{}{}", self.prefix, String::from_utf8_lossy(&line));
            self.tx
                .send((self.is_err, line))
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChanWriter<'_> {
    /// A last line without its `\n` is still printed, ended.
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.write_all(b"\n");
        }
    }
}

/// Reads the replies from `next` to their end (or the first that decides), each copied to
/// `out`. An action's: `accepted`, then `done` (or an `error` line); `accepted` of another
/// action, or a built-in's text, means the service read the request as something else (a
/// user named like an action or a built-in): exit 65, never 0. A built-in's: text lines
/// until the service closes (none at all is an empty answer: `log` of a run that printed
/// nothing), or one `error` line. Only its first line is looked at, so a line of a run's
/// output that reads like a reply (`done 3 exit=1 ...`) is printed, not obeyed.
fn read_replies(
    mut next: impl FnMut() -> io::Result<Option<String>>,
    asked: &str,
    no_wait: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let mut replies = Replies::new(asked, None);
    loop {
        let line = match next() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                let _ = writeln!(err, "scheduler send: reading the reply: {e}");
                return EXIT_UNAVAILABLE;
            }
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        let first = replies.is_first();
        let meaning = replies.on_line(&Reply::parse(&line));
        let code = if replies.is_builtin() {
            if first {
                builtin_exit(&meaning)
            } else {
                None
            }
        } else {
            action_exit(&meaning, asked, no_wait, err)
        };
        if let Some(code) = code {
            return code;
        }
    }
    if replies.is_builtin() {
        return 0;
    }
    let why = match replies.on_closed() {
        Closed::Answered => return 0,
        Closed::BeforeDone(_) => "before the action finished",
        Closed::Silent => "without a reply",
    };
    let _ = writeln!(
        err,
        "scheduler send: the service closed the connection {why}"
    );
    EXIT_UNAVAILABLE
}

/// The exit code a built-in's first reply line decides, if it decides one.
fn builtin_exit(meaning: &Meaning) -> Option<u8> {
    match meaning {
        Meaning::Unavailable { .. } => Some(EXIT_UNAVAILABLE),
        Meaning::Refused { .. } | Meaning::Lost { .. } | Meaning::ErrorAfterAccepted { .. } => {
            Some(EXIT_ERROR_REPLY)
        }
        _ => None,
    }
}

/// The exit code a reply line to an action decides, if it decides one.
fn action_exit(meaning: &Meaning, asked: &str, no_wait: bool, err: &mut dyn Write) -> Option<u8> {
    match meaning {
        Meaning::Accepted { .. } if no_wait => Some(0),
        Meaning::Accepted { .. } | Meaning::Text { .. } => None,
        Meaning::Done { exit, .. } => Some(exit_code(*exit)),
        // A listener that crashed answers `unavailable` or closes without a reply
        // (DESIGN.md section 4): both are the same outcome, 69.
        Meaning::Unavailable { .. } => Some(EXIT_UNAVAILABLE),
        Meaning::Refused { .. } | Meaning::ErrorAfterAccepted { .. } => Some(EXIT_ERROR_REPLY),
        Meaning::OtherAction { action, .. } => {
            let _ = writeln!(
                err,
                "scheduler send: the service accepted {action:?}, not {asked:?}: it read the request otherwise (is the user named like one of its actions?)"
            );
            Some(EXIT_ERROR_REPLY)
        }
        Meaning::Lost { .. } => {
            let _ = writeln!(
                err,
                "scheduler send: the run of this key was lost with its container; the key never runs again (send it under a new key to run it)"
            );
            Some(EXIT_ERROR_REPLY)
        }
        Meaning::BuiltinText { .. } => {
            let _ = writeln!(
                err,
                "scheduler send: the service answered as to a built-in, not with `accepted {asked}`: it read the request otherwise (is the user named like a built-in?)"
            );
            Some(EXIT_ERROR_REPLY)
        }
    }
}

/// The action's exit status as our exit code: 0 stays 0, 1..=255 pass through, anything
/// else (which no process exit can produce) becomes 1 so that a failure is never 0.
pub fn exit_code(exit: i32) -> u8 {
    u8::try_from(exit).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(text: &str, no_wait: bool) -> (u8, String) {
        read(text, "a", no_wait)
    }

    /// The replies `text` to a request for `action`.
    fn read(text: &str, action: &str, no_wait: bool) -> (u8, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut input = text.as_bytes();
        let mut buf = Vec::new();
        let next = || proto::client::read_line(&mut input, &mut buf);
        let code = read_replies(next, action, no_wait, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_builtins_answer_is_text_to_the_end() {
        let log = "backup starts\ndone 3 exit=1 secs=2\nerror busy x\naccepted 9 y\n";
        assert_eq!(read(log, "log", false), (0, log.to_string()));
        assert_eq!(read("", "log", false), (0, String::new()));
        assert_eq!(
            read("error not-found no run 7\n", "log", false).0,
            EXIT_ERROR_REPLY
        );
        assert_eq!(
            read("error unavailable listener restarting\n", "log", false).0,
            EXIT_UNAVAILABLE
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            replies("accepted 1 a\ndone 1 exit=0 secs=0.1\n", false).0,
            0
        );
        assert_eq!(
            replies("accepted 1 a\ndone 1 exit=3 secs=0.1\n", false).0,
            3
        );
        assert_eq!(
            replies("accepted 1 a\ndone 1 exit=-1 secs=0.1\n", false).0,
            1
        );
        assert_eq!(replies("accepted 1 a\n", false).0, EXIT_UNAVAILABLE);
        assert_eq!(replies("accepted 1 a\n", true).0, 0);
        assert_eq!(
            replies("error busy a is running\n", false).0,
            EXIT_ERROR_REPLY
        );
        assert_eq!(
            replies("accepted 1 a\nerror unavailable listener crashed\n", false).0,
            EXIT_UNAVAILABLE
        );
        assert_eq!(
            replies("error unavailable listener restarting\n", false).0,
            EXIT_UNAVAILABLE
        );
        assert_eq!(replies("", false).0, EXIT_UNAVAILABLE);
    }

    /// Expected: the reply is the one asked for. `accepted` of another action (the
    /// service read the user as the action), a built-in's text (it read the user as a
    /// built-in: `--user stop` answered `stopped` must not exit 0) and `error lost` are exit 65,
    /// after the line is printed.
    #[test]
    fn another_reply_than_asked_is_65() {
        assert_eq!(
            replies("accepted 1 noop\ndone 1 exit=0 secs=0.1\n", false),
            (EXIT_ERROR_REPLY, "accepted 1 noop\n".into())
        );
        assert_eq!(replies("accepted 1 noop\n", true).0, EXIT_ERROR_REPLY);
        assert_eq!(
            replies("stopped exit=143\n", false),
            (EXIT_ERROR_REPLY, "stopped exit=143\n".into())
        );
        assert_eq!(replies("pong\n", false).0, EXIT_ERROR_REPLY);
        assert_eq!(
            replies("error lost 7 the run was lost with its container\n", false).0,
            EXIT_ERROR_REPLY
        );
        // after `accepted`, text lines are shown (a service's extra words), not obeyed
        assert_eq!(
            replies("accepted 1 a\nnote\ndone 1 exit=0 secs=0.1\n", false),
            (0, "accepted 1 a\nnote\ndone 1 exit=0 secs=0.1\n".into())
        );
    }

    #[test]
    fn request_line() {
        let mut r = SendRequest {
            key: None,
            user: Some("forum".into()),
            service: "mysql".into(),
            action: "nightly-backup".into(),
            args: vec!["db1".into()],
            no_wait: false,
        };
        assert_eq!(r.line().unwrap(), "forum nightly-backup db1");
        r.args.push("a b".into());
        assert!(matches!(r.line(), Err(UsageError::BadToken { .. })));
        r.args.clear();
        r.key = Some("nightly:1764821100".into());
        assert_eq!(
            r.line().unwrap(),
            "@nightly:1764821100 forum nightly-backup"
        );
        for bad in ["", "a b", "a@b", "é", &"k".repeat(65)] {
            r.key = Some(bad.into());
            assert_eq!(r.line(), Err(UsageError::BadKey(bad.into())));
        }
        r.key = Some("k".repeat(64));
        assert!(r.line().is_ok());
        r.key = None;
        for (user, action) in [("stop", "nightly-backup"), ("x", "x"), ("a/b", "y")] {
            r.user = Some(user.into());
            r.action = action.into();
            assert!(matches!(r.line(), Err(UsageError::BadUser(_))), "{user}");
        }
        r.user = Some("forum".into());
        r.service = "../etc".into();
        assert!(matches!(r.line(), Err(UsageError::BadService(..))));
        for bad in ["php.0", "php.01", "php@all", ""] {
            r.service = bad.into();
            assert!(matches!(r.line(), Err(UsageError::BadService(..))), "{bad}");
        }
        for good in ["php.2", "php@each", "php"] {
            r.service = good.into();
            assert!(r.line().is_ok(), "{good}");
        }
    }

    /// Expected: 69 when no instance was live; else the first non-zero code in instance
    /// order, whatever order the instances ended in; 0 when all ended `exit=0`.
    #[test]
    fn each_exit_codes() {
        assert_eq!(each_exit(&[]), EXIT_UNAVAILABLE);
        assert_eq!(each_exit(&[(1, None), (2, None)]), EXIT_UNAVAILABLE);
        assert_eq!(each_exit(&[(1, Some(0)), (2, None), (3, Some(0))]), 0);
        assert_eq!(each_exit(&[(3, Some(7)), (1, Some(0)), (2, Some(65))]), 65);
        assert_eq!(each_exit(&[(1, None), (2, Some(69)), (3, Some(2))]), 69);
    }

    #[test]
    fn prefixed_lines_are_sent_whole() {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut w = ChanWriter::new(&tx, false, "php.2: ");
            write!(w, "accepted 1 ").unwrap();
            writeln!(w, "a").unwrap();
            write!(w, "done 1 exit=0 secs=0.1\nx").unwrap();
        }
        drop(tx);
        let got: Vec<_> = rx.into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            got,
            [
                "php.2: accepted 1 a\n",
                "php.2: done 1 exit=0 secs=0.1\n",
                "php.2: x\n"
            ]
        );
    }

    #[test]
    fn the_daemons_fire_keys_are_valid_keys() {
        let t = chrono::DateTime::from_timestamp(4_102_444_800, 0).unwrap();
        let k = crate::state::FireKeys::random()
            .unwrap()
            .fire("Pacific/Chatham @reboot a b c", t);
        assert!(valid_key(&k), "{k}");
        assert!(valid_key("A-Z.a_z:0-9"));
    }
}
