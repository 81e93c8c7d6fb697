//! The request server: accepts connections on the request socket, reads one line from
//! each, and answers it (DESIGN.md section 2).
//!
//! Shaped like mini-redis: [`serve`] takes the listening socket and a shutdown future, so
//! tests and `main` inject the signal. Every connection is its own task; a slow or stalled
//! client only ever holds its own task. Actions are reserved in one table under a lock
//! (same action twice -> `busy`, full table -> `too-many`) before anything is spawned, and a
//! counter of live actions lets shutdown wait for their `done` lines.
//!
//! Exhaustion (DESIGN.md section 2, "load and exhaustion"): open connections are counted,
//! and one over the limit is answered `error too-many` and closed at once; when `accept`
//! itself fails for want of descriptors, accepting pauses until a connection ends (or a
//! back-off passes), one client is answered `too-many` through a reserve descriptor per
//! pause, and that is logged once per episode, never in a loop. Waiters on a running key
//! are capped per key and in all, and wait at most `BOSUN_REPLAY_WAIT`.
//!
//! Keyed requests are never run unrecorded: the start must be durable in the journal first
//! (else `error unavailable`), and while the journal is in memory only the listener does not
//! exit on idle, so what memory holds is written out once the file can be written again.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto::control::Msg;
use proto::{Builtin, By, ErrorCode, Query, Reply, Request, RequestError, MAX_LINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::callbacks::{Callbacks, Known};
use crate::config::Config;
use crate::control::Control;
use crate::runner::{self, LineSink, Spec};
use journal::{End, Journal, Run, Start};

/// At most this many runs in a `history` reply (DESIGN.md section 7).
const HISTORY_LINES: usize = 100;

/// Waiters on one running key, at most; more get `error busy` at once.
const WAITERS_PER_KEY: usize = 8;
/// Waiters on running keys in all, at most.
const WAITERS: usize = 64;
/// Connections at most, whatever the descriptor limit allows.
const MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept for everything but connections (journal, runtime, actions' pipes).
const FD_MARGIN: u64 = 48;
/// Out of descriptors: how long accepting pauses when no connection ends meanwhile.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// Log lines about bad or denied requests: at most this many per [`LOG_WINDOW`], then one
/// line with the count of those left out.
const LOG_BURST: u32 = 20;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// How long a reply write may take before the client is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After refusing an over-long line, how much of the rest is read and dropped, so that the
/// client sees our error line and then EOF rather than a connection reset.
const DRAIN_BYTES: usize = 256 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// A running action, as `status` shows it.
#[derive(Debug, Clone)]
struct RunInfo {
    id: u64,
    user: Option<String>,
    started: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Action name -> the run holding it.
    running: BTreeMap<String, RunInfo>,
    /// Actions whose `done` has not been sent yet (shutdown waits for 0).
    active: usize,
    /// When the last connection or action ended (`listener_idle` counts from there).
    last_busy: Option<Instant>,
    /// (key, digest) of keyed runs started here whose end is not in the journal yet.
    keys: HashMap<(String, String), u64>,
    /// Waiters on running keys: per key, and in all.
    waiters: HashMap<String, usize>,
    waiting: usize,
    /// The journal could not be written at the last write (logged once per episode).
    journal_down: bool,
    /// Rate limit of the bad/denied request lines.
    noisy: Throttle,
}

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`]; the rest counted, and told with the next.
#[derive(Debug, Default)]
struct Throttle {
    window: Option<Instant>,
    lines: u32,
    dropped: u64,
}

impl Throttle {
    /// Whether a line may be logged now, and how many were left out before it.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= LOG_WINDOW)
        {
            self.window = Some(now);
            self.lines = 0;
        }
        if self.lines >= LOG_BURST {
            self.dropped += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.dropped))
    }
}

/// Shared by every connection task.
#[derive(Debug)]
pub struct Server {
    cfg: Config,
    callbacks: Callbacks,
    control: Arc<Control>,
    state: Mutex<State>,
    /// The run journal (history, log, keys); locked after `state` when both are.
    journal: Arc<Mutex<Journal>>,
    /// Told whenever a run's end is in the journal (keyed requests wait for it).
    ended: Notify,
    idle: Notify,
    shutdown: CancellationToken,
    next_id: AtomicU64,
}

/// Who is on the other end, from SO_PEERCRED.
#[derive(Debug, Clone, Copy)]
struct Peer {
    uid: u32,
    gid: u32,
    pid: i32,
}

/// Serves `listener` until `shutdown` completes, then refuses new work with
/// `error shutting-down`, TERMs running actions, gives them `stop_timeout` (then KILL),
/// reports their `done` and returns.
pub async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) {
    let (journal, warnings) = Journal::open(&cfg.state_dir, &cfg.service);
    for w in warnings {
        tracing::warn!(dir = %cfg.state_dir.display(), "journal: {w}");
    }
    // Ids are never reused: neither the supervisor's count nor the journal's.
    let next_id = cfg.next_id.max(journal.next_id());
    let server = Arc::new(Server {
        callbacks: Callbacks::new(cfg.callbacks.clone(), cfg.service.clone()),
        next_id: AtomicU64::new(next_id),
        journal: Arc::new(Mutex::new(journal)),
        ended: Notify::new(),
        cfg,
        control: control.clone(),
        state: Mutex::new(State::default()),
        idle: Notify::new(),
        shutdown: CancellationToken::new(),
    });
    let handed = control.handed();
    tokio::spawn(control.read_loop());
    // Discover at once, so a broken callbacks file is in the log at start.
    server.callbacks.known().await;
    tracing::info!(
        service = %server.cfg.service,
        next_id,
        max_actions = server.cfg.max_actions,
        "listening"
    );
    let limit = connection_limit(server.cfg.max_connections);
    tracing::debug!(max_connections = limit, "connections");
    let mut acceptor = tokio::spawn(accept_loop(listener, handed, server.clone(), limit));
    tokio::select! {
        () = shutdown => {}
        _ = &mut acceptor => {
            // Idle: nothing runs and nothing is connected; clients from now on wait in
            // the socket's backlog for the supervisor, which starts a listener again.
            tracing::info!(
                idle = %common::duration::show(server.cfg.listener_idle.unwrap_or_default()),
                "idle; exiting"
            );
            let next_id = server.next_id.load(Ordering::Relaxed);
            if let Err(e) = server.control.send(&Msg::Idle { next_id }, None).await {
                tracing::warn!(error = %e, "cannot tell the supervisor");
            }
            return;
        }
    }
    let running = lock(&server.state).active;
    tracing::info!(running, "shutting down");
    server.shutdown.cancel();
    server.wait_idle().await;
    acceptor.abort();
    tracing::info!("stopped");
}

/// Open connections served at once: `max_connections` (`BOSUN_MAX_CONNECTIONS`) when set,
/// else (the setting's default, computed here since it is this process's limit that counts)
/// half of what the descriptor limit leaves beside [`FD_MARGIN`], at most
/// [`MAX_CONNECTIONS`], at least 1.
fn connection_limit(set: Option<usize>) -> usize {
    if let Some(n) = set {
        return n;
    }
    let soft = common::rlimit::nofile().map_or(1024, |(soft, _)| soft);
    let n = soft.saturating_sub(FD_MARGIN) / 2;
    usize::try_from(n)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(1, MAX_CONNECTIONS)
}

/// Serves the clients accepted on the request socket and those the supervisor passes on.
/// Returns once nothing has been connected or running for `listener_idle` (never while the
/// journal is in memory only: what it holds would be lost with the process).
async fn accept_loop(
    listener: UnixListener,
    mut handed: tokio::sync::mpsc::UnboundedReceiver<std::os::fd::OwnedFd>,
    server: Arc<Server>,
    limit: usize,
) {
    let conns = Arc::new(Conns::default());
    let started = Instant::now();
    let mut gate = Gate::new();
    loop {
        let quiet = async {
            let Some(idle) = server.cfg.listener_idle else {
                return std::future::pending::<bool>().await;
            };
            let (busy, last) = {
                let st = lock(&server.state);
                (st.active > 0, st.last_busy.unwrap_or(started))
            };
            let busy = busy || conns.live.load(Ordering::Relaxed) > 0;
            // While busy, look again after `idle`; the end of the work sets `last_busy`.
            let at = if busy { Instant::now() } else { last } + idle;
            tokio::time::sleep_until(at.into()).await;
            let st = lock(&server.state);
            st.active == 0
                && conns.live.load(Ordering::Relaxed) == 0
                && st.last_busy.unwrap_or(started).elapsed() >= idle
        };
        let got = tokio::select! {
            quiet = quiet => {
                if quiet {
                    if server.journal().is_persistent() {
                        return;
                    }
                    tracing::debug!("idle, but the journal is in memory only: not exiting");
                }
                continue;
            }
            a = listener.accept() => a.map(|(s, _)| s),
            Some(fd) = handed.recv() => {
                let std = std::os::unix::net::UnixStream::from(fd);
                std.set_nonblocking(true).and_then(|()| UnixStream::from_std(std))
            }
        };
        match got {
            Ok(stream) => {
                gate.accepted();
                if conns.live.load(Ordering::Relaxed) >= limit {
                    gate.over_limit(limit);
                    refuse(stream.into_std().ok(), &too_many_connections(limit));
                    continue;
                }
                gate.under_limit();
                conns.opened();
                let conns = conns.clone();
                let server = server.clone();
                tokio::spawn(async move {
                    server.clone().handle(stream).await;
                    lock(&server.state).last_busy = Some(Instant::now());
                    conns.closed();
                });
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE)
                ) =>
            {
                // The backlog holds the clients; the socket stays readable, so polling it now
                // would spin. Answer one through the reserve descriptor, then pause until a
                // connection ends or the back-off passes.
                gate.exhausted(&e, conns.live.load(Ordering::Relaxed));
                gate.shed(&listener, &too_many_connections(limit));
                let freed = conns.freed.notified();
                tokio::select! {
                    () = freed => {}
                    () = tokio::time::sleep(ACCEPT_PAUSE) => {}
                }
            }
            Err(e) => {
                gate.failed(&e);
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

fn too_many_connections(limit: usize) -> String {
    Reply::error(
        ErrorCode::TooMany,
        format!("{limit} connections are open, the most served at once; try again"),
    )
    .to_string()
}

/// What accepting has run into, so that each episode (out of descriptors, at the connection
/// limit, another accept error) is logged once when it starts and once when it ends.
struct Gate {
    /// A descriptor kept open to be closed when `accept` fails with EMFILE, so one client
    /// can still be accepted and answered.
    reserve: Option<std::fs::File>,
    exhausted: Option<(Instant, u64)>,
    over: Option<(Instant, u64)>,
    failing: bool,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            reserve: reserve_fd(),
            exhausted: None,
            over: None,
            failing: false,
        }
    }

    fn accepted(&mut self) {
        if let Some((since, shed)) = self.exhausted.take() {
            tracing::info!(
                paused_ms = since.elapsed().as_millis() as u64,
                answered_too_many = shed,
                "file descriptors free again; accepting"
            );
        }
        if std::mem::take(&mut self.failing) {
            tracing::info!("accepting again");
        }
        if self.reserve.is_none() {
            self.reserve = reserve_fd();
        }
    }

    fn over_limit(&mut self, limit: usize) {
        match &mut self.over {
            Some((_, n)) => *n += 1,
            None => {
                tracing::warn!(
                    max_connections = limit,
                    "connections at the limit; answering too-many"
                );
                self.over = Some((Instant::now(), 1));
            }
        }
    }

    fn under_limit(&mut self) {
        if let Some((since, n)) = self.over.take() {
            tracing::info!(
                secs = since.elapsed().as_secs(),
                answered_too_many = n,
                "connections below the limit again"
            );
        }
    }

    fn exhausted(&mut self, e: &std::io::Error, live: usize) {
        if self.exhausted.is_none() {
            tracing::warn!(
                error = %e,
                connections = live,
                "out of file descriptors; accepting paused until one frees"
            );
            self.exhausted = Some((Instant::now(), 0));
        }
    }

    /// Closes the reserve descriptor, accepts one client with it, answers `reply` and
    /// closes; the reserve is opened again at the next accept.
    fn shed(&mut self, listener: &UnixListener, reply: &str) {
        if self.reserve.take().is_none() {
            self.reserve = reserve_fd();
            return;
        }
        let flags =
            nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK;
        if let Ok(fd) = nix::sys::socket::accept4(listener.as_fd().as_raw_fd(), flags) {
            // SAFETY: accept4 just returned this descriptor; nothing else owns it.
            let conn = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
            refuse(Some(conn), reply);
            if let Some((_, n)) = &mut self.exhausted {
                *n += 1;
            }
        }
        self.reserve = reserve_fd();
    }

    fn failed(&mut self, e: &std::io::Error) {
        if !std::mem::replace(&mut self.failing, true) {
            tracing::error!(error = %e, "accept failed; trying again");
        }
    }
}

fn reserve_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Answers a connection that is not served with `reply` and closes it, without waiting: what
/// the client sent so far is read first (closing a unix socket with unread data resets the
/// connection under the reply), the line fits in an empty socket buffer.
fn refuse(conn: Option<std::os::unix::net::UnixStream>, reply: &str) {
    use std::io::{Read, Write};
    let Some(mut conn) = conn else { return };
    let _ = conn.set_nonblocking(true);
    let mut buf = [0u8; 4096];
    for _ in 0..2 {
        if !matches!(conn.read(&mut buf), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = conn.write_all(format!("{reply}\n").as_bytes());
    let _ = conn.shutdown(std::net::Shutdown::Write);
}

/// Counts connections so that the heap a burst of them left behind is given back once the
/// burst is over: glibc keeps freed memory in its arena, and 1,000 clients at once would
/// otherwise leave the listener's resident set ~0.5 MB larger for the container's life.
#[derive(Debug, Default)]
struct Conns {
    /// Told when a connection ends (accepting resumes when descriptors were out).
    freed: Notify,
    live: std::sync::atomic::AtomicUsize,
    since_trim: std::sync::atomic::AtomicUsize,
    trim_pending: std::sync::atomic::AtomicBool,
}

/// Connections served between two heap trims, at least.
const TRIM_AFTER: usize = 256;
/// Open connections (held actions, say) below which a burst counts as over.
const TRIM_BELOW: usize = 16;
/// How long after a burst the trim runs, so the burst's last tasks are gone too.
const TRIM_DELAY: Duration = Duration::from_millis(500);

impl Conns {
    fn opened(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
        self.since_trim.fetch_add(1, Ordering::Relaxed);
    }

    fn closed(self: &Arc<Self>) {
        let live = self.live.fetch_sub(1, Ordering::Relaxed) - 1;
        self.freed.notify_waiters();
        if live < TRIM_BELOW
            && self.since_trim.load(Ordering::Relaxed) >= TRIM_AFTER
            && !self.trim_pending.swap(true, Ordering::Relaxed)
        {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(TRIM_DELAY).await;
                me.trim_pending.store(false, Ordering::Relaxed);
                // Another burst under way: its own end schedules the trim.
                if me.live.load(Ordering::Relaxed) < TRIM_BELOW {
                    me.since_trim.store(0, Ordering::Relaxed);
                    trim_heap();
                }
            });
        }
    }
}

/// Returns free heap pages to the kernel.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What reading the request line gave.
enum Line {
    Got(Vec<u8>),
    TooLong,
    TimedOut,
    Gone,
}

impl Server {
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if lock(&self.state).active == 0 {
                return;
            }
            notified.await;
        }
    }

    async fn handle(self: Arc<Self>, mut stream: UnixStream) {
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid().unwrap_or(0),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials");
                Peer {
                    uid: u32::MAX,
                    gid: u32::MAX,
                    pid: 0,
                }
            }
        };
        // Before anything is read for its meaning (review L11): a denied peer learns nothing
        // of the actions and cannot fill the log with its lines.
        // `allow_gids` matches supplementary groups too, as the socket file's group
        // permission does; without them (an old kernel) the primary gid still counts.
        let groups = common::peer::groups(stream.as_fd()).unwrap_or_default();
        if !self.cfg.allows_groups(peer.uid, peer.gid, &groups) {
            if let Some(left_out) = self.noisy() {
                tracing::warn!(
                    uid = peer.uid,
                    gid = peer.gid,
                    pid = peer.pid,
                    left_out,
                    "denied"
                );
            }
            let reply = Reply::error(
                ErrorCode::Denied,
                format!(
                    "uid {} gid {} may not use this socket (BOSUN_ALLOW_UIDS/BOSUN_ALLOW_GIDS)",
                    peer.uid, peer.gid
                ),
            );
            // its line read (bounded), so closing does not reset the connection under the reply
            let _ = read_line(
                &mut stream,
                self.cfg.read_timeout.min(Duration::from_secs(1)),
            )
            .await;
            answer(&mut stream, &reply.to_string()).await;
            return;
        }
        let line = match read_line(&mut stream, self.cfg.read_timeout).await {
            Line::Got(l) => l,
            Line::Gone => {
                tracing::debug!(
                    uid = peer.uid,
                    pid = peer.pid,
                    "client left before a request"
                );
                return;
            }
            Line::TimedOut => {
                let msg = format!(
                    "timed out after {} waiting for the request line",
                    common::duration::show(self.cfg.read_timeout)
                );
                self.bad_request(peer, ErrorCode::BadRequest, &msg, &[]);
                let reply = Reply::error(ErrorCode::BadRequest, msg);
                answer(&mut stream, &reply.to_string()).await;
                return;
            }
            Line::TooLong => {
                let e = RequestError::TooLong;
                self.bad_request(peer, e.code(), &e.to_string(), &[]);
                answer(
                    &mut stream,
                    &Reply::error(e.code(), e.to_string()).to_string(),
                )
                .await;
                drain(&mut stream).await;
                return;
            }
        };
        let text = self.respond(&mut stream, peer, &line).await;
        if let Some(text) = text {
            answer(&mut stream, &text).await;
        }
    }

    /// Answers one request line; returns the reply text, or `None` when it was written
    /// already (actions).
    async fn respond(&self, stream: &mut UnixStream, peer: Peer, line: &[u8]) -> Option<String> {
        let tokens = match proto::parse_line(line) {
            Ok(t) => t,
            Err(e) => {
                self.bad_request(peer, e.code(), &e.to_string(), line);
                return Some(Reply::error(e.code(), e.to_string()).to_string());
            }
        };
        let known = self.callbacks.known().await;
        let req = match Request::resolve(&tokens, |t| known.has(t)) {
            Ok(r) => r,
            Err(e) => {
                // The error names what was sent: the excerpt says it, at most once.
                let why = match &e {
                    RequestError::UnknownAction(_) => "no such action",
                    RequestError::MissingAction(_) => "no action after the user",
                    RequestError::BadKey(_) => "bad key",
                    _ => "bad request",
                };
                self.bad_request(peer, e.code(), why, line);
                let reply = match (&*known, &e) {
                    (Known::Broken(msg), RequestError::UnknownAction(_)) => Reply::error(
                        ErrorCode::Unavailable,
                        format!("callbacks file {}: {msg}", self.callbacks.path().display()),
                    ),
                    (_, RequestError::UnknownAction(_)) => {
                        Reply::error(e.code(), format!("{e}; `help` lists the actions"))
                    }
                    _ => Reply::error(e.code(), e.to_string()),
                };
                return Some(reply.to_string());
            }
        };
        if let Some(user) = req.user.as_deref().filter(|u| !valid_user(u)) {
            self.bad_request(peer, ErrorCode::BadRequest, "not a valid user name", line);
            return Some(
                Reply::error(
                    ErrorCode::BadRequest,
                    format!(
                        "user {user:?} is not a valid name (letters, digits, '.', '_', '-', \
                         not starting with '.' or '-', at most {} bytes)",
                        common::name::MAX
                    ),
                )
                .to_string(),
            );
        }
        // `ping` and `status` are what health checks send every few seconds: at info they would bury the
        // container log. Every other request is logged with who sent it.
        let is_ping = req.builtin().is_some_and(Builtin::is_quiet);
        macro_rules! log_request {
            ($lvl:ident) => {
                tracing::$lvl!(
                    uid = peer.uid,
                    gid = peer.gid,
                    pid = peer.pid,
                    user = %req.user.as_deref().unwrap_or("-"),
                    action = %req.action,
                    args = req.args.len(),
                    "request"
                )
            };
        }
        if is_ping {
            log_request!(debug);
        } else {
            log_request!(info);
        }
        if self.shutdown.is_cancelled() {
            return Some(shutting_down().to_string());
        }
        // A callbacks file may define `CB_reload`: then `reload` is that action.
        let builtin = req
            .builtin()
            .filter(|&b| !(b == Builtin::Reload && known.has("reload")));
        if let Some(b) = builtin {
            // `stop backup`, `ping now`: a built-in refuses words it does not take (a user
            // named like a built-in can never reroute a request to it).
            if let Err(e) = b.check_words(&req.args) {
                return Some(Reply::error(e.code(), e.to_string()).to_string());
            }
            return Some(match b.by() {
                By::Listener => self.answer(b, &req, &known),
                By::Supervisor => self.forward(b).await,
            });
        }
        let Some(function) = known.function(&req.action) else {
            // Only a built-in we do not forward could get here; answer rather than panic.
            return Some(
                Reply::error(
                    ErrorCode::UnknownAction,
                    format!("no action named {:?}", req.action),
                )
                .to_string(),
            );
        };
        let function = function.to_string();
        drop(known);
        self.run(stream, peer, req, function).await
    }

    /// A built-in the listener answers itself.
    fn answer(&self, b: Builtin, req: &Request, known: &Known) -> String {
        match b {
            Builtin::Ping => "pong".into(),
            Builtin::Help => self.help(known),
            Builtin::History | Builtin::Log => self.query(req),
            // The table says the supervisor answers the others: never asked here.
            other => Reply::error(
                ErrorCode::Unavailable,
                format!("{other} is not answered here"),
            )
            .to_string(),
        }
    }

    /// `history [ACTION]` (newest first, one run a line) and `log ID` (the run's output
    /// lines, oldest first).
    fn query(&self, req: &Request) -> String {
        let q = match req.query() {
            Some(Ok(q)) => q,
            Some(Err(e)) => return Reply::error(e.code(), e.to_string()).to_string(),
            None => return String::new(),
        };
        let j = self.journal();
        match q {
            Query::History(action) => j
                .history(action.as_deref(), HISTORY_LINES)
                .iter()
                .map(|r| r.history_line())
                .collect::<Vec<_>>()
                .join("\n"),
            Query::Log(id) => match j.get(id) {
                None => Reply::error(ErrorCode::NotFound, format!("no run {id} in the journal"))
                    .to_string(),
                // as the container log shows them: control bytes escaped
                Some(run) => run
                    .lines
                    .iter()
                    .map(|l| String::from_utf8_lossy(&common::text::escape_output(l)).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
        }
    }

    /// Logs a bad request once: who sent it, the reply's code and at most
    /// [`common::text::EXCERPT`] bytes of what was sent, escaped (the error's own text would
    /// say it again); rate-limited with the denied lines. `why` goes to the log only when
    /// nothing was sent.
    fn bad_request(&self, peer: Peer, code: ErrorCode, why: &str, sent: &[u8]) {
        let Some(left_out) = self.noisy() else {
            return;
        };
        let code = code.as_str();
        match (sent.is_empty(), left_out) {
            (true, 0) => tracing::warn!(uid = peer.uid, pid = peer.pid, code, why, "bad request"),
            (true, _) => {
                tracing::warn!(
                    uid = peer.uid,
                    pid = peer.pid,
                    code,
                    why,
                    left_out,
                    "bad request"
                )
            }
            (false, 0) => tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                code,
                sent = %common::text::excerpt(sent),
                "bad request"
            ),
            (false, _) => tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                code,
                sent = %common::text::excerpt(sent),
                left_out,
                "bad request"
            ),
        }
    }

    /// Whether a bad/denied request line may be logged now: `Some(left out before it)`.
    fn noisy(&self) -> Option<u64> {
        lock(&self.state).noisy.allow(Instant::now())
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A journal write, on the runtime's own thread: one fdatasync per run (~0.1 ms) costs
    /// less than handing it to a blocking pool, whose threads would each keep a malloc
    /// arena of their own (megabytes after a burst; bench/journal/README.md).
    fn journal_write(
        &self,
        what: &'static str,
        id: u64,
        write: impl FnOnce(&mut Journal) -> std::io::Result<()>,
    ) {
        let written = write(&mut self.journal());
        self.journal_state(what, id, written.as_ref().err());
    }

    /// Logs the journal going down (once, not at every run) and coming back.
    fn journal_state(&self, what: &str, id: u64, err: Option<&std::io::Error>) {
        let mut st = lock(&self.state);
        match err {
            Some(e) if !st.journal_down => {
                st.journal_down = true;
                tracing::error!(
                    id,
                    error = %e,
                    "journal: cannot record the {what}; keyed requests are refused until it can \
                     be written, others run and are kept in memory"
                );
            }
            None if st.journal_down => {
                st.journal_down = false;
                tracing::info!(id, "journal: written again");
            }
            _ => {}
        }
    }

    /// A keyed request whose key has been seen with these words (`digest`): the first run's
    /// replies, never a second run. `None`: the key is new for these words (the same key
    /// with other words is another run, DESIGN.md section 2). A lost run's key is answered
    /// `error lost`; a waiter on a running one waits at most `replay_wait`, and there are
    /// at most [`WAITERS_PER_KEY`] of them per key and [`WAITERS`] in all, the others
    /// answered `error busy` at once.
    async fn replay(&self, stream: &mut UnixStream, key: &str, digest: &str) -> Option<String> {
        let k = (key.to_string(), digest.to_string());
        let id = {
            let st = lock(&self.state);
            match st.keys.get(&k) {
                Some(&id) => id,
                None => self.journal().by_key(key, digest)?.id,
            }
        };
        let mut slot = None;
        let deadline = tokio::time::Instant::now() + self.cfg.replay_wait;
        let mut accepted = false;
        loop {
            let ended = self.ended.notified();
            let run = self.journal().get(id).cloned();
            let action = match &run {
                Some(r) => r.action.clone(),
                None => {
                    let st = lock(&self.state);
                    if !st.keys.contains_key(&k) {
                        // its start could not be recorded: it never ran
                        return Some(unrecorded_reply(key));
                    }
                    st.running
                        .iter()
                        .find(|(_, r)| r.id == id)
                        .map(|(a, _)| a.clone())
                        .unwrap_or_default()
                }
            };
            if let Some(run) = &run {
                if run.lost {
                    tracing::warn!(id, key, "keyed request: its run was lost; not run again");
                    return Some(
                        Reply::error(
                            ErrorCode::Lost,
                            format!(
                                "{id} the run of key {key} was lost (the container or the \
                                 listener stopped while it ran); it is not run again"
                            ),
                        )
                        .to_string(),
                    );
                }
            }
            let ended_run = run.as_ref().and_then(|r| r.end.map(|e| (r, e)));
            if ended_run.is_none() && slot.is_none() {
                slot = self.wait_slot(key);
                if slot.is_none() {
                    tracing::warn!(id, key, "keyed request: too many waiting on this run");
                    return Some(still_running(&action, id));
                }
            }
            if !accepted && run.is_some() {
                tracing::info!(id, key, action = %action, "keyed request: already run");
                let line = Reply::Accepted {
                    id,
                    action: action.clone(),
                };
                let _ = write_line(stream, &line.to_string()).await;
                accepted = true;
            }
            if let Some((run, end)) = ended_run {
                return Some(done_of(run, end).to_string());
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return Some(still_running(&action, id));
            }
        }
    }

    /// A place among the waiters on running keys, given back when dropped; `None` when the
    /// key or the whole has as many as it may.
    fn wait_slot(&self, key: &str) -> Option<WaitSlot<'_>> {
        let mut st = lock(&self.state);
        let of_key = st.waiters.get(key).copied().unwrap_or(0);
        if of_key >= WAITERS_PER_KEY || st.waiting >= WAITERS {
            return None;
        }
        st.waiters.insert(key.to_string(), of_key + 1);
        st.waiting += 1;
        Some(WaitSlot {
            server: self,
            key: key.to_string(),
        })
    }

    fn help(&self, known: &Known) -> String {
        let mut lines: Vec<String> = Builtin::names().map(str::to_string).collect();
        match known {
            Known::Actions(m) => {
                lines.extend(m.keys().filter(|a| Builtin::parse(a).is_none()).cloned())
            }
            Known::Missing => {}
            Known::Broken(msg) => lines.push(format!(
                "# callbacks file {} unusable: {msg}",
                self.callbacks.path().display()
            )),
        }
        lines.join("\n")
    }

    /// A built-in answered by the supervisor.
    async fn forward(&self, cmd: Builtin) -> String {
        let timeout = self.cfg.stop_timeout + Duration::from_secs(60);
        let text = match self.control.command(cmd, timeout).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(command = cmd.name(), error = %e, "control command failed");
                return Reply::error(ErrorCode::Unavailable, e.to_string()).to_string();
            }
        };
        if cmd == Builtin::Metrics && !text.starts_with("error ") {
            let tallies = self.journal().tallies();
            return crate::metrics::reply(&text, &tallies);
        }
        if cmd != Builtin::Status {
            return text;
        }
        let mut out = text;
        let st = lock(&self.state);
        for (name, r) in &st.running {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!(
                "action {name} id={} user={} secs={}",
                r.id,
                r.user.as_deref().unwrap_or("-"),
                r.started.elapsed().as_secs()
            ));
        }
        out
    }

    /// Runs an action for this connection: `accepted`, then `done` when it ends.
    async fn run(
        &self,
        stream: &mut UnixStream,
        peer: Peer,
        req: Request,
        function: String,
    ) -> Option<String> {
        // A key is bound to the words of its request.
        let keyed = req.key.clone().map(|key| (key, req.digest()));
        if let Some((key, digest)) = &keyed {
            if let Some(text) = self.replay(stream, key, digest).await {
                return Some(text);
            }
        }
        let id = {
            let mut st = lock(&self.state);
            // Checked again under the lock that reserves: two requests with one new key at
            // once, the second follows the first.
            let seen = keyed.as_ref().filter(|k| {
                st.keys.contains_key(*k) || self.journal().by_key(&k.0, &k.1).is_some()
            });
            if let Some(key) = seen {
                Err(key.clone())
            } else {
                if let Some(r) = st.running.get(&req.action) {
                    return Some(
                        Reply::error(
                            ErrorCode::Busy,
                            format!("{} is running as {}", req.action, r.id),
                        )
                        .to_string(),
                    );
                }
                if st.running.len() >= self.cfg.max_actions {
                    return Some(
                        Reply::error(
                            ErrorCode::TooMany,
                            format!(
                                "{} actions are running, the most allowed (BOSUN_MAX_ACTIONS)",
                                st.running.len()
                            ),
                        )
                        .to_string(),
                    );
                }
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                st.running.insert(
                    req.action.clone(),
                    RunInfo {
                        id,
                        user: req.user.clone(),
                        started: Instant::now(),
                    },
                );
                st.active += 1;
                if let Some(k) = &keyed {
                    st.keys.insert(k.clone(), id);
                }
                Ok(id)
            }
        };
        let id = match id {
            Ok(id) => id,
            Err((key, digest)) => {
                return Some(
                    self.replay(stream, &key, &digest)
                        .await
                        .unwrap_or_else(|| unrecorded_reply(&key)),
                )
            }
        };
        let action = req.action.clone();
        // Recorded, durably, before the action runs: a key is known before its run starts.
        let start = Start {
            id,
            action: action.clone(),
            user: req.user.clone(),
            key: req.key.clone(),
            uid: peer.uid,
            start_ms: unix_ms(),
        };
        let digest = keyed.as_ref().map(|k| k.1.clone());
        let written = self.journal().start_with(start, digest);
        self.journal_state("start", id, written.as_ref().err());
        match (written, &keyed) {
            (Err(e), Some(k)) => {
                // Never run unrecorded (DESIGN.md section 2): a keyed run starts only once
                // its start is durable, or a retry of the same key could run it twice.
                tracing::warn!(action = %action, id, key = %k.0, error = %e, "keyed request refused: its start cannot be recorded");
                lock(&self.state).keys.remove(k);
                self.release_slot(&action, id);
                self.finished();
                self.ended.notify_waiters();
                return Some(
                    Reply::error(
                        ErrorCode::Unavailable,
                        format!(
                            "journal cannot record the start ({e}); {action} not run, try again"
                        ),
                    )
                    .to_string(),
                );
            }
            // unkeyed: runs all the same, kept in memory (logged once by journal_state)
            (Err(_), None) => {}
            // waiters on the key can say `accepted` now
            (Ok(()), _) => self.ended.notify_waiters(),
        }
        let sink = {
            let j = self.journal.clone();
            LineSink::new(move |line: &[u8]| {
                j.lock().unwrap_or_else(|e| e.into_inner()).output(id, line)
            })
        };
        let key = keyed;
        let spec = Spec {
            id,
            action: action.clone(),
            function,
            user: req.user.clone(),
            args: req.args,
            callbacks: self.cfg.callbacks.clone(),
            service: self.cfg.service.clone(),
            timeout: self.cfg.timeout_of(&action),
            kill_grace: self.cfg.kill_grace,
            sink: Some(sink),
        };
        let running = match runner::spawn(spec) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(action = %action, id, error = %e, "cannot start the action");
                self.record_end(id, key.as_ref(), 127, 0.0);
                self.release_slot(&action, id);
                self.finished();
                return Some(
                    Reply::error(
                        ErrorCode::Unavailable,
                        format!("cannot run {}: {e}", common::shell::shell()),
                    )
                    .to_string(),
                );
            }
        };
        let pgid = running.pgid;
        tracing::info!(action = %action, id, pgid, user = %req.user.as_deref().unwrap_or("-"), "started");
        let hold = Msg::Hold {
            id,
            pgid,
            action: action.clone(),
        };
        let held = match self.control.send(&hold, Some(stream.as_fd())).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(id, error = %e, "hold not sent");
                false
            }
        };
        let accepted = Reply::Accepted {
            id,
            action: action.clone(),
        };
        // A client gone already (fire and forget) makes these writes fail: that's fine.
        let _ = write_line(stream, &accepted.to_string()).await;

        let outcome = running
            .finish(self.shutdown.clone(), self.cfg.stop_timeout)
            .await;
        // In the journal before anyone is told `done`, so `history` and a repeated key see it.
        self.record_end(id, key.as_ref(), outcome.exit, outcome.secs);
        // Free the action before saying done, so a client that reacts to `done` at once
        // is not told `busy`.
        self.release_slot(&action, id);
        let secs = format!("{:.3}", outcome.secs);
        if outcome.exit == 0 {
            tracing::info!(action = %action, id, exit = outcome.exit, secs = %secs, "done");
        } else {
            tracing::warn!(
                action = %action,
                id,
                exit = outcome.exit,
                secs = %secs,
                timed_out = outcome.timed_out,
                stopped = outcome.stopped,
                "done"
            );
        }
        let done = Reply::Done {
            id,
            exit: outcome.exit,
            secs: outcome.secs,
        };
        // A held request is answered by the supervisor, which writes the `done` that comes
        // with the release: were we to write it and die before the release, it would add
        // `error unavailable` after our `done`. Without the supervisor, we answer.
        let release = Msg::Release {
            id,
            reply: done.to_string(),
        };
        let answered = held && {
            match self.control.send(&release, None).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(id, error = %e, "release not sent");
                    false
                }
            }
        };
        if !answered {
            let _ = write_line(stream, &done.to_string()).await;
            let _ = stream.shutdown().await;
        }
        self.finished();
        None
    }

    /// Records a run's end, then lets requests waiting on its key go.
    fn record_end(&self, id: u64, key: Option<&(String, String)>, exit: i32, secs: f64) {
        let end = End {
            end_ms: unix_ms(),
            exit,
            secs,
        };
        self.journal_write("end", id, move |j| j.end(id, end));
        if let Some(key) = key {
            lock(&self.state).keys.remove(key);
        }
        self.ended.notify_waiters();
    }

    fn release_slot(&self, action: &str, id: u64) {
        let mut st = lock(&self.state);
        if st.running.get(action).is_some_and(|r| r.id == id) {
            st.running.remove(action);
        }
    }

    fn finished(&self) {
        let mut st = lock(&self.state);
        st.active = st.active.saturating_sub(1);
        st.last_busy = Some(Instant::now());
        if st.active == 0 {
            self.idle.notify_waiters();
        }
    }
}

/// A place among the replay waiters ([`Server::wait_slot`]).
struct WaitSlot<'a> {
    server: &'a Server,
    key: String,
}

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.server.state);
        st.waiting = st.waiting.saturating_sub(1);
        if let Some(n) = st.waiters.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.waiters.remove(&self.key);
            }
        }
    }
}

/// `error busy <action> still running as <id>`: ask again later.
fn still_running(action: &str, id: u64) -> String {
    Reply::error(ErrorCode::Busy, format!("{action} still running as {id}")).to_string()
}

/// A key whose start could not be recorded: it did not run; the client may try again.
fn unrecorded_reply(key: &str) -> String {
    Reply::error(
        ErrorCode::Unavailable,
        format!("journal cannot record the start of key {key}; not run, try again"),
    )
    .to_string()
}

/// A user name is handed to callbacks that build paths and command lines from it
/// (`/srv/$BOSUN_USER`, `mysqldump "$BOSUN_USER"`), so it is held to a plain name: no `/`,
/// no `..`, no leading `-` that a command would read as an option (`common::name`'s rule,
/// the same as for service and action names).
fn valid_user(u: &str) -> bool {
    common::name::is_valid(u)
}

/// The `done` line of a run that has ended.
fn done_of(run: &Run, end: End) -> Reply {
    Reply::Done {
        id: run.id,
        exit: end.exit,
        secs: end.secs,
    }
}

/// Now, in milliseconds since the Unix epoch.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn shutting_down() -> Reply {
    Reply::error(ErrorCode::ShuttingDown, "the listener is stopping")
}

/// Reads the request line: up to the first `\n`, or to EOF, at most `MAX_LINE` bytes (plus
/// a tolerated `\r`), within `timeout`. Bytes after the newline are ignored.
async fn read_line(stream: &mut UnixStream, timeout: Duration) -> Line {
    let read = async {
        let mut line = Vec::with_capacity(128);
        let mut buf = [0u8; 1024];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Line::Gone,
            };
            if n == 0 {
                // End of input ends the line (`printf ping | nc -NU ...`); nothing at all
                // is an empty request, answered as such.
                return Line::Got(line);
            }
            if let Some(pos) = buf[..n].iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&buf[..pos]);
                return if line.len() > MAX_LINE + 1 {
                    Line::TooLong
                } else {
                    Line::Got(line)
                };
            }
            line.extend_from_slice(&buf[..n]);
            if line.len() > MAX_LINE + 1 {
                return Line::TooLong;
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Line::TimedOut)
}

/// Reads and drops what the client still sends, bounded in bytes and time.
async fn drain(stream: &mut UnixStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < DRAIN_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

async fn write_line(stream: &mut UnixStream, text: &str) -> std::io::Result<()> {
    let mut out = String::with_capacity(text.len() + 1);
    out.push_str(text);
    out.push('\n');
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(out.as_bytes())).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Writes the final reply and closes our side.
async fn answer(stream: &mut UnixStream, text: &str) {
    // An empty text (no runs in `history`, no output in `log`) is no line at all.
    if !text.is_empty() {
        if let Err(e) = write_line(stream, text).await {
            tracing::debug!(error = %e, "reply not delivered");
        }
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::valid_user;

    #[test]
    fn user_names() {
        for ok in ["forum", "site_1", "a.b-c", "_x", "0"] {
            assert!(valid_user(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "-rf",
            "a/b",
            "../etc",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_user(bad), "{bad}");
        }
    }
}
