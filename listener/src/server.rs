//! The request server: accepts connections on the request socket, reads one line from
//! each, and answers it (DESIGN.md section 2).
//!
//! Shaped like mini-redis: [`serve`] takes the listening socket and a shutdown future, so
//! tests and `main` inject the signal. Every connection is its own task; a slow or stalled
//! client only ever holds its own task. What a request gets is decided elsewhere: whether an
//! action runs, replays its key or is refused by `admit` (pure, under one lock, before
//! anything is spawned), the built-ins' answers by `builtins`. This file does the I/O:
//! accept, read the line, write the replies, spawn, journal, hold/release, and a counter of
//! live actions lets shutdown wait for their `done` lines.
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

use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto::control::Msg;
use proto::{Builtin, By, ErrorCode, Reply, Request, RequestError, MAX_LINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admit::{self, Decision, Key, Limits, Replay, Throttle};
use crate::builtins;
use crate::callbacks::{Callbacks, Known};
use crate::config::Config;
use crate::control::Control;
use crate::runner::{self, LineSink, Outcome, Running, Spec};
use journal::{End, Journal, Start};

/// Out of descriptors: how long accepting pauses when no connection ends meanwhile.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

/// How long `cancel` waits for the run's end beyond the kill grace (KILL has been sent by
/// then; this is for the output relays to drain and the end to be recorded).
const CANCEL_SLACK: Duration = Duration::from_secs(5);

/// How long a reply write may take before the client is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After refusing an over-long line, how much of the rest is read and dropped, so that the
/// client sees our error line and then EOF rather than a connection reset.
const DRAIN_BYTES: usize = 256 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    /// Running actions, keys, waiters, ids.
    admit: admit::State,
    /// Actions whose `done` has not been sent yet (shutdown waits for 0).
    active: usize,
    /// When the last connection or action ended (`listener_idle` counts from there).
    last_busy: Option<Instant>,
    /// The journal could not be written at the last write (logged once per episode).
    journal_down: bool,
    /// Rate limit of the bad/denied request lines.
    noisy: Throttle,
    /// The running actions' `cancel ID` switches, by id.
    cancels: std::collections::HashMap<u64, CancellationToken>,
}

/// Shared by every connection task.
#[derive(Debug)]
pub struct Server {
    cfg: Config,
    limits: Limits,
    callbacks: Callbacks,
    control: Arc<Control>,
    state: Mutex<State>,
    /// The run journal (history, log, keys); locked after `state` when both are.
    journal: Arc<Mutex<Journal>>,
    /// Told whenever a run's end is in the journal (keyed requests wait for it).
    ended: Notify,
    idle: Notify,
    shutdown: CancellationToken,
}

/// What a request gets.
enum Answered {
    /// These lines, then the connection is closed.
    Lines(Vec<Reply>),
    /// An action's: its lines were written as they happened, and its connection is the
    /// supervisor's to close when it holds it.
    Written,
}

impl From<Vec<Reply>> for Answered {
    fn from(replies: Vec<Reply>) -> Answered {
        Answered::Lines(replies)
    }
}

/// Who is on the other end, from SO_PEERCRED.
#[derive(Debug, Clone, Copy)]
struct Peer {
    uid: u32,
    gid: u32,
    pid: i32,
}

pub async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) {
    let (journal, warnings) = Journal::open(&cfg.settings.state_dir, &cfg.settings.stem());
    for w in warnings {
        tracing::warn!(dir = %cfg.settings.state_dir.display(), "journal: {w}");
    }
    // Ids are never reused: neither the supervisor's count nor the journal's.
    let next_id = cfg.next_id.max(journal.next_id());
    let server = Arc::new(Server {
        callbacks: Callbacks::new(cfg.settings.callbacks.clone(), cfg.settings.service.clone()),
        limits: Limits::new(cfg.settings.max_actions),
        journal: Arc::new(Mutex::new(journal)),
        ended: Notify::new(),
        cfg,
        control: control.clone(),
        state: Mutex::new(State {
            admit: admit::State::new(next_id),
            ..State::default()
        }),
        idle: Notify::new(),
        shutdown: CancellationToken::new(),
    });
    let handed = control.handed();
    tokio::spawn(control.read_loop());
    // Discover at once, so a broken callbacks file is in the log at start.
    server.callbacks.known().await;
    tracing::info!(
        service = %server.cfg.settings.service,
        next_id,
        max_actions = server.cfg.settings.max_actions,
        "listening"
    );
    let soft = common::rlimit::nofile().map(|(soft, _)| soft);
    let limit = admit::connection_limit(server.cfg.settings.max_connections, soft);
    tracing::debug!(max_connections = limit, "connections");
    let mut acceptor = tokio::spawn(accept_loop(listener, handed, server.clone(), limit));
    tokio::select! {
        () = shutdown => {}
        _ = &mut acceptor => {
            // Idle: nothing runs and nothing is connected; clients from now on wait in
            // the socket's backlog for the supervisor, which starts a listener again.
            tracing::info!(
                idle = %common::duration::show(server.cfg.settings.listener_idle.unwrap_or_default()),
                "idle; exiting"
            );
            let next_id = lock(&server.state).admit.next_id;
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
        let quiet = quiet(&server, &conns, started);
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
                    let reply = admit::too_many_connections(limit).to_string();
                    refuse(stream.into_std().ok(), &reply);
                    continue;
                }
                gate.under_limit();
                spawn_conn(&server, &conns, stream);
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
                gate.shed(&listener, &admit::too_many_connections(limit).to_string());
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

/// Resolves after `listener_idle` with nothing connected or running: `true` when that is
/// still so (the loop then exits), `false` to look again; never without `listener_idle`.
async fn quiet(server: &Server, conns: &Conns, started: Instant) -> bool {
    let Some(idle) = server.cfg.settings.listener_idle else {
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
}

/// Serves one connection in a task of its own, counted while it lasts.
fn spawn_conn(server: &Arc<Server>, conns: &Arc<Conns>, stream: UnixStream) {
    conns.opened();
    let conns = conns.clone();
    let server = server.clone();
    tokio::spawn(async move {
        server.clone().handle(stream).await;
        lock(&server.state).last_busy = Some(Instant::now());
        conns.closed();
    });
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
        let peer = peer_of(&stream);
        // Before anything is read for its meaning: a denied peer learns nothing of the
        // actions and cannot fill the log with its lines.
        // `allow_gids` matches supplementary groups too, as the socket file's group
        // permission does; without them (an old kernel) the primary gid still counts.
        let groups = common::peer::groups(stream.as_fd()).unwrap_or_default();
        if !self.cfg.settings.allows_groups(peer.uid, peer.gid, &groups) {
            if let Some(left_out) = self.noisy() {
                let (uid, gid, pid) = (peer.uid, peer.gid, peer.pid);
                tracing::warn!(uid, gid, pid, left_out, "denied");
            }
            // its line read (bounded), so closing does not reset the connection under the reply
            let wait = self.cfg.settings.read_timeout.min(Duration::from_secs(1));
            let _ = read_line(&mut stream, wait).await;
            return answer(&mut stream, &[admit::denied(peer.uid, peer.gid)]).await;
        }
        let line = match read_line(&mut stream, self.cfg.settings.read_timeout).await {
            Line::Got(l) => l,
            Line::Gone => {
                let (uid, pid) = (peer.uid, peer.pid);
                return tracing::debug!(uid, pid, "client left before a request");
            }
            Line::TimedOut => {
                let msg = format!(
                    "timed out after {} waiting for the request line",
                    common::duration::show(self.cfg.settings.read_timeout)
                );
                self.bad_request(peer, ErrorCode::BadRequest, &msg, &[]);
                let reply = Reply::error(ErrorCode::BadRequest, msg);
                return answer(&mut stream, &[reply]).await;
            }
            Line::TooLong => {
                let e = RequestError::TooLong;
                self.bad_request(peer, e.code(), &e.to_string(), &[]);
                answer(&mut stream, &[Reply::error(e.code(), e.to_string())]).await;
                return drain(&mut stream).await;
            }
        };
        match self.respond(&mut stream, peer, &line).await {
            Answered::Lines(replies) => answer(&mut stream, &replies).await,
            Answered::Written => {}
        }
    }

    /// Answers one request line: the reply lines, or [`Answered::Written`] for an action,
    /// which writes its own as they happen.
    async fn respond(&self, stream: &mut UnixStream, peer: Peer, line: &[u8]) -> Answered {
        let tokens = match proto::parse_line(line) {
            Ok(t) => t,
            Err(e) => {
                self.bad_request(peer, e.code(), &e.to_string(), line);
                return vec![Reply::error(e.code(), e.to_string())].into();
            }
        };
        let known = self.callbacks.known().await;
        let req = match Request::resolve(&tokens, |t| known.has(t)) {
            Ok(r) => r,
            Err(e) => {
                self.bad_request(peer, e.code(), unresolved_why(&e), line);
                return vec![unresolved(&e, &known, self.callbacks.path())].into();
            }
        };
        if let Err(reply) = admit::check_user(&req) {
            self.bad_request(peer, ErrorCode::BadRequest, "not a valid user name", line);
            return vec![reply].into();
        }
        log_request(peer, &req);
        if self.shutdown.is_cancelled() {
            return vec![shutting_down()].into();
        }
        // A callbacks file may define `CB_reload`: then `reload` is that action.
        let builtin = req
            .builtin()
            .filter(|&b| !(b == Builtin::Reload && known.has("reload")));
        if let Some(b) = builtin {
            // `stop backup`, `ping now`: a built-in refuses words it does not take (a user
            // named like a built-in can never reroute a request to it).
            if let Err(e) = b.check_words(&req.args) {
                return vec![Reply::error(e.code(), e.to_string())].into();
            }
            if b == Builtin::Cancel {
                return self.cancel(&req).await.into();
            }
            return match b.by() {
                By::Listener => builtins::answer(b, &req, &self.ctx(&known)),
                By::Supervisor => self.forward(b).await,
            }
            .into();
        }
        let Some(function) = known.function(&req.action) else {
            // Only a built-in we do not forward could get here; answer rather than panic.
            let msg = format!("no action named {:?}", req.action);
            return vec![Reply::error(ErrorCode::UnknownAction, msg)].into();
        };
        let function = function.to_string();
        drop(known);
        self.run(stream, peer, req, function).await
    }

    fn ctx<'a>(&'a self, known: &'a Known) -> builtins::Ctx<'a> {
        builtins::Ctx {
            known,
            callbacks: self.callbacks.path(),
            journal: &self.journal,
            instance: self.cfg.settings.instance.unwrap_or(1),
        }
    }

    /// `cancel ID`: stops the run (TERM to its group, KILL after the grace) and answers once
    /// its end is recorded, with the exit its own `done` reports.
    async fn cancel(&self, req: &Request) -> Vec<Reply> {
        let id = match builtins::cancel(req, &lock(&self.state).cancels) {
            Ok(id) => id,
            Err(reply) => return vec![reply],
        };
        let wait = self.cfg.settings.kill_grace + CANCEL_SLACK;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ended = self.ended.notified();
            if let Some(end) = self.journal().get(id).and_then(|r| r.end) {
                return vec![builtins::cancelled(id, end.exit)];
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                let msg = format!(
                    "run {id} was sent TERM (KILL after the grace) but has not ended within {}",
                    common::duration::show(wait)
                );
                return vec![Reply::error(ErrorCode::Unavailable, msg)];
            }
        }
    }

    /// A built-in answered by the supervisor, completed with what the listener knows.
    async fn forward(&self, cmd: Builtin) -> Vec<Reply> {
        let timeout = self.cfg.settings.stop_timeout + Duration::from_secs(60);
        let replies = match self.control.command(cmd, timeout).await {
            Ok(replies) => replies,
            Err(e) => {
                tracing::warn!(command = cmd.name(), error = %e, "control command failed");
                return vec![Reply::error(ErrorCode::Unavailable, e.to_string())];
            }
        };
        match cmd {
            Builtin::Metrics => builtins::metrics(
                replies,
                &self.journal().tallies(),
                self.cfg.settings.instance.unwrap_or(1),
            ),
            Builtin::Status => {
                let actions = lock(&self.state).admit.actions(Instant::now());
                builtins::status(replies, actions)
            }
            _ => replies,
        }
    }

    /// Runs an action for this connection, or replays its key, or refuses it: `accepted`,
    /// then `done` when it ends, are written here as they happen.
    async fn run(
        &self,
        stream: &mut UnixStream,
        peer: Peer,
        req: Request,
        function: String,
    ) -> Answered {
        // A key is bound to the words of its request.
        let key = Key::of(&req);
        let decision = {
            let mut st = lock(&self.state);
            let d = st
                .admit
                .admit(&self.limits, &*self.journal(), &req, Instant::now());
            if let Decision::Run(_) = d {
                st.active += 1;
            }
            d
        };
        let id = match (decision, &key) {
            (Decision::Run(id), _) => id,
            (Decision::Replay(id), Some(key)) => return self.replay(stream, key, id).await.into(),
            (refused, _) => return Answered::Lines(refused.refusal().into_iter().collect()),
        };
        if let Err(reply) = self.record_start(&req, key.as_ref(), peer, id) {
            return vec![reply].into();
        }
        let running = match self.spawn(&req, key.as_ref(), id, function) {
            Ok(r) => r,
            Err(reply) => return vec![reply].into(),
        };
        let cancel = CancellationToken::new();
        lock(&self.state).cancels.insert(id, cancel.clone());
        let held = self.hold(stream, id, running.pgid, &req.action).await;
        let accepted = Reply::Accepted {
            id,
            action: req.action.clone(),
        };
        // A client gone already (fire and forget) makes these writes fail: that's fine.
        let _ = write_line(stream, &accepted.to_string()).await;
        let outcome = running
            .finish(
                self.shutdown.clone(),
                self.cfg.settings.stop_timeout,
                cancel,
            )
            .await;
        self.ended(stream, &req.action, key.as_ref(), id, outcome, held)
            .await;
        Answered::Written
    }

    /// Records a run's start, durably, before it runs: a key is known before its run
    /// starts. `Err`: a keyed request refused because its start cannot be recorded (its
    /// slot given back); an unkeyed one runs all the same, kept in memory.
    fn record_start(
        &self,
        req: &Request,
        key: Option<&Key>,
        peer: Peer,
        id: u64,
    ) -> Result<(), Reply> {
        let start = Start {
            id,
            action: req.action.clone(),
            user: req.user.clone(),
            key: req.key.clone(),
            uid: peer.uid,
            start_ms: unix_ms(),
        };
        let written = self
            .journal()
            .start_with(start, key.map(|k| k.digest.clone()));
        self.journal_state("start", id, written.as_ref().err());
        match (written, key) {
            (Err(e), Some(k)) => {
                // Never run unrecorded (DESIGN.md section 2): a keyed run starts only once
                // its start is durable, or a retry of the same key could run it twice.
                let action = &req.action;
                tracing::warn!(action = %action, id, key = %k.key, error = %e, "keyed request refused: its start cannot be recorded");
                lock(&self.state).admit.keys.remove(k);
                self.release_slot(action, id);
                self.finished();
                self.ended.notify_waiters();
                Err(Reply::error(
                    ErrorCode::Unavailable,
                    format!("journal cannot record the start ({e}); {action} not run, try again"),
                ))
            }
            // unkeyed: runs all the same, kept in memory (logged once by journal_state)
            (Err(_), None) => Ok(()),
            // waiters on the key can say `accepted` now
            (Ok(()), _) => {
                self.ended.notify_waiters();
                Ok(())
            }
        }
    }

    /// Starts the action's process group, its output going to the journal too. `Err`: it
    /// could not start (recorded as exit 127, its slot given back).
    fn spawn(
        &self,
        req: &Request,
        key: Option<&Key>,
        id: u64,
        function: String,
    ) -> Result<Running, Reply> {
        let sink = {
            let j = self.journal.clone();
            LineSink::new(move |line: &[u8]| {
                j.lock().unwrap_or_else(|e| e.into_inner()).output(id, line)
            })
        };
        let action = &req.action;
        let spec = Spec {
            id,
            action: action.clone(),
            function,
            user: req.user.clone(),
            args: req.args.clone(),
            callbacks: self.cfg.settings.callbacks.clone(),
            service: self.cfg.settings.service.clone(),
            // The request's `timeout=` may shorten the action's own, never lengthen it.
            timeout: req
                .timeout
                .map_or(self.cfg.settings.timeout_of(action), |t| {
                    t.min(self.cfg.settings.timeout_of(action))
                }),
            kill_grace: self.cfg.settings.kill_grace,
            sink: Some(sink),
        };
        match runner::spawn(spec) {
            Ok(r) => {
                let user = req.user.as_deref().unwrap_or("-");
                tracing::info!(action = %action, id, pgid = r.pgid, user = %user, "started");
                Ok(r)
            }
            Err(e) => {
                tracing::error!(action = %action, id, error = %e, "cannot start the action");
                self.record_end(id, key, runner::EXIT_NOT_STARTED, 0.0);
                self.release_slot(action, id);
                self.finished();
                let msg = format!("cannot run {}: {e}", common::shell::shell());
                Err(Reply::error(ErrorCode::Unavailable, msg))
            }
        }
    }

    /// Gives the supervisor a copy of the client's connection, so that it can answer
    /// should this listener die; `true` when it has it.
    async fn hold(&self, stream: &UnixStream, id: u64, pgid: i32, action: &str) -> bool {
        let action = action.to_string();
        let hold = Msg::Hold { id, pgid, action };
        match self.control.send(&hold, Some(stream.as_fd())).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(id, error = %e, "hold not sent");
                false
            }
        }
    }

    /// A run has ended: recorded, its slot freed, logged, and its `done` told (by the
    /// supervisor when it holds the connection).
    async fn ended(
        &self,
        stream: &mut UnixStream,
        action: &str,
        key: Option<&Key>,
        id: u64,
        outcome: Outcome,
        held: bool,
    ) {
        // Not cancellable once it has ended: `cancel` says not-found from here on.
        lock(&self.state).cancels.remove(&id);
        // In the journal before anyone is told `done`, so `history` and a repeated key see it.
        self.record_end(id, key, outcome.exit, outcome.secs);
        // Free the action before saying done, so a client that reacts to `done` at once
        // is not told `busy`.
        self.release_slot(action, id);
        log_done(action, id, &outcome);
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
    }

    /// A keyed request whose key has been seen with these words: the first run's replies
    /// (`accepted` once its start is recorded, `done` once it has ended), never a second
    /// run. A waiter on a running one waits at most `replay_wait`, and there are at most
    /// so many of them per key and in all (`admit::Limits`), the others answered
    /// `error busy` at once.
    async fn replay(&self, stream: &mut UnixStream, key: &Key, id: u64) -> Vec<Reply> {
        let mut slot = None;
        let deadline = tokio::time::Instant::now() + self.cfg.settings.replay_wait;
        let mut accepted = false;
        loop {
            let ended = self.ended.notified();
            let now = {
                let st = lock(&self.state);
                admit::replay(&st.admit, &*self.journal(), key, id)
            };
            let (action, recorded) = match now {
                Replay::Unrecorded => return vec![admit::unrecorded(&key.key)],
                Replay::Lost => {
                    let k = &key.key;
                    tracing::warn!(id, key = %k, "keyed request: its run was lost; not run again");
                    return vec![admit::lost(id, k)];
                }
                Replay::Running { action, recorded } => (action, recorded),
                Replay::Ended { action, done } => {
                    if !accepted {
                        self.say_accepted(stream, key, id, &action).await;
                    }
                    return vec![done];
                }
            };
            if slot.is_none() {
                slot = self.wait_slot(&key.key);
                if slot.is_none() {
                    let k = &key.key;
                    tracing::warn!(id, key = %k, "keyed request: too many waiting on this run");
                    return vec![admit::still_running(&action, id)];
                }
            }
            if recorded && !accepted {
                self.say_accepted(stream, key, id, &action).await;
                accepted = true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return vec![admit::still_running(&action, id)];
            }
        }
    }

    /// The `accepted` line of a replayed key's first run.
    async fn say_accepted(&self, stream: &mut UnixStream, key: &Key, id: u64, action: &str) {
        tracing::info!(id, key = %key.key, action = %action, "keyed request: already run");
        let line = Reply::Accepted {
            id,
            action: action.to_string(),
        };
        let _ = write_line(stream, &line.to_string()).await;
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
        let (uid, pid) = (peer.uid, peer.pid);
        match (sent.is_empty(), left_out) {
            (true, 0) => tracing::warn!(uid, pid, code, why, "bad request"),
            (true, _) => tracing::warn!(uid, pid, code, why, left_out, "bad request"),
            (false, 0) => {
                let sent = common::text::excerpt(sent);
                tracing::warn!(uid, pid, code, sent = %sent, "bad request")
            }
            (false, _) => {
                let sent = common::text::excerpt(sent);
                tracing::warn!(uid, pid, code, sent = %sent, left_out, "bad request")
            }
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

    /// A place among the waiters on running keys, given back when dropped; `None` when the
    /// key or the whole has as many as it may.
    fn wait_slot(&self, key: &str) -> Option<WaitSlot<'_>> {
        let took = lock(&self.state).admit.wait_on(&self.limits, key);
        took.then(|| WaitSlot {
            server: self,
            key: key.to_string(),
        })
    }

    /// Records a run's end, then lets requests waiting on its key go.
    fn record_end(&self, id: u64, key: Option<&Key>, exit: i32, secs: f64) {
        let end = End {
            end_ms: unix_ms(),
            exit,
            secs,
        };
        self.journal_write("end", id, move |j| j.end(id, end));
        if let Some(key) = key {
            lock(&self.state).admit.keys.remove(key);
        }
        self.ended.notify_waiters();
    }

    fn release_slot(&self, action: &str, id: u64) {
        lock(&self.state).admit.release(action, id);
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
        lock(&self.server.state).admit.leave(&self.key);
    }
}

/// Who is on the other end of `stream`.
fn peer_of(stream: &UnixStream) -> Peer {
    match stream.peer_cred() {
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
    }
}

/// Logs a request with who sent it: at debug for the table's quiet built-ins (`ping`,
/// `status`, `metrics`: health checks and scrapers ask them every few seconds, at info they
/// would bury the container log), at info for every other.
fn log_request(peer: Peer, req: &Request) {
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
    if req.builtin().is_some_and(Builtin::is_quiet) {
        log_request!(debug);
    } else {
        log_request!(info);
    }
}

/// A run's end in the log: at warn when it failed.
fn log_done(action: &str, id: u64, outcome: &Outcome) {
    let secs = format!("{:.3}", outcome.secs);
    let exit = outcome.exit;
    if exit == 0 {
        tracing::info!(action = %action, id, exit, secs = %secs, "done");
    } else {
        let (timed_out, stopped, cancelled) =
            (outcome.timed_out, outcome.stopped, outcome.cancelled);
        tracing::warn!(action = %action, id, exit, secs = %secs, timed_out, stopped, cancelled, "done");
    }
}

/// What a request that names no action is logged as (the excerpt says what was sent).
fn unresolved_why(e: &RequestError) -> &'static str {
    match e {
        RequestError::UnknownAction(_) | RequestError::UnknownActionAfter { .. } => {
            "no such action"
        }
        RequestError::MissingAction(_) => "no action after the user",
        RequestError::BadKey(_) => "bad key",
        _ => "bad request",
    }
}

/// The reply to a request that names no action: an unusable callbacks file says so.
fn unresolved(e: &RequestError, known: &Known, callbacks: &std::path::Path) -> Reply {
    match (known, e) {
        (Known::Broken(msg), e) if e.is_unknown_action() => Reply::error(
            ErrorCode::Unavailable,
            format!("callbacks file {}: {msg}", callbacks.display()),
        ),
        (_, e) if e.is_unknown_action() => {
            Reply::error(e.code(), format!("{e}; `help` lists the actions"))
        }
        _ => Reply::error(e.code(), e.to_string()),
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

/// Writes the final reply lines and closes our side.
async fn answer(stream: &mut UnixStream, replies: &[Reply]) {
    let text = builtins::join(replies);
    // No lines (no runs in `history`, no output in `log`) is no line at all.
    if !text.is_empty() {
        if let Err(e) = write_line(stream, &text).await {
            tracing::debug!(error = %e, "reply not delivered");
        }
    }
    let _ = stream.shutdown().await;
}
