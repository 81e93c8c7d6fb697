//! The supervisor's loop: reap, tick, poll, read what woke it, hand each event to the
//! [`Core`], carry out the effects. Every decision, and every deadline but those of I/O
//! alone (an accept pause, a proxied client's wait), is the core's; this file only does I/O.
//!
//! Why one thread and a signalfd: the supervisor must reap every process with
//! `waitpid(-1)`, which steals exit statuses from any other waiter in the process, so
//! nothing else may wait for children here (no tokio, no `Child::wait`). With all signals
//! blocked and read through a signalfd, signals become ordinary readable events in the
//! same `poll`, no handler runs concurrently, and no extra thread costs memory. Nothing
//! here blocks but `poll`: every socket it reads, accepts or connects on is non-blocking
//! or polled first (a ready probe's connect finishes as a later poll event), so a TERM is
//! always read. The one exception is a pause of 100 ms after `poll` itself fails (out of
//! memory), so that a failing poll does not spin.
//!
//! The I/O of two subsystems lives beside it: [`crate::lazy`] (clients on the request
//! socket while no listener runs) and [`crate::ondemand`] (the held socket and the proxy).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{getpid, Pid};
use proto::control::{self, Msg, Received};
use tracing::{error, info, warn};

use crate::config::{Ready, Settings};
use crate::core::{Core, Effect, Event, Policy, Target};
use crate::lazy::{self, Callers, Peeked};
use crate::ondemand::{self, Frontend};
use crate::procfs::{children_of, groups_in_session};
use crate::ready;
use crate::socket::{set_nonblocking, BoundSocket};
use crate::spawn;

/// Blocks the signals the supervisor handles and opens a signalfd for them. Must run
/// before any thread or child exists, so that every thread inherits the mask.
pub fn signal_fd() -> nix::Result<SignalFd> {
    let mut set = SigSet::all();
    // Faults stay deliverable; KILL and STOP cannot be blocked anyway.
    for s in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGILL,
        Signal::SIGTRAP,
        Signal::SIGABRT,
        Signal::SIGSYS,
    ] {
        set.remove(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// The supervisor: the core's decisions plus the fds and children they are about.
pub struct Supervisor {
    settings: Settings,
    self_exe: PathBuf,
    pid1: bool,
    core: Core,
    socket: BoundSocket,
    /// The listener's end of the control channel, while it runs.
    control: Option<OwnedFd>,
    /// Held requests' connections, by request id.
    held_conns: HashMap<u64, OwnedFd>,
    /// Clients the supervisor reads while no listener runs.
    callers: Callers,
    /// On demand: the held socket.
    frontend: Option<Frontend>,
    /// `ready = "notify"`: where the main process says `READY=1`.
    notify: Option<BoundSocket>,
    /// A `READY=1` from another process than the main one was logged (once).
    notify_warned: bool,
    /// The request socket's replacement was logged (once until it is ours again).
    replaced_logged: bool,
    /// A problem with the service's shared socket name was logged (once).
    shared_logged: bool,
    /// A ready probe's TCP connect in progress, judged when it is writable.
    probing: Option<OwnedFd>,
}

impl Supervisor {
    pub fn new(
        settings: Settings,
        socket: BoundSocket,
        held: Option<ondemand::Held>,
    ) -> Supervisor {
        let pid1 = getpid().as_raw() == 1;
        if !pid1 {
            // Orphans of our children come to us, as they would to a PID 1.
            if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
                warn!(error = %e, "cannot become a child subreaper; orphans will not be reaped");
            }
        }
        let self_exe =
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/sbin/supervisor"));
        let now = Instant::now();
        let frontend = held.map(|h| Frontend::new(h, settings.on_demand.as_ref(), now));
        // Accepted on by the supervisor itself while no listener runs: never block on it.
        set_nonblocking(socket.fd.as_fd(), true);
        Supervisor {
            core: Core::new(Policy::from_settings(&settings), now),
            settings,
            self_exe,
            pid1,
            socket,
            control: None,
            held_conns: HashMap::new(),
            callers: Callers::default(),
            frontend,
            notify: None,
            notify_warned: false,
            replaced_logged: false,
            shared_logged: false,
            probing: None,
        }
    }

    /// Runs until the container should end; returns the exit code.
    pub fn run(mut self, sigfd: SignalFd) -> i32 {
        info!(
            socket = %self.socket.path.display(),
            "serving the request socket of this instance"
        );
        self.keep_shared();
        self.open_notify();
        if let Some(f) = &self.frontend {
            info!(listen = %f.held.addr.key(), mode = f.mode(), "holding the socket; the main process starts on the first connection");
        }
        self.handle(Event::Boot, Instant::now());
        // Reap at start and after every SIGCHLD (the signalfd never loses one: a child
        // that ends after a reap leaves SIGCHLD pending again).
        let mut reap_due = true;
        let mut no_children = false;
        let code = loop {
            let now = Instant::now();
            if reap_due {
                no_children = self.reap(now);
            }
            // Proxied bytes are traffic.
            if self.frontend.as_mut().is_some_and(|f| f.observe(now)) {
                self.handle(Event::Traffic, now);
            }
            self.handle(Event::Tick, now);
            self.handle(Event::Upkeep, now);
            if let Some(code) = self.core.finished(no_children, now) {
                break code;
            }
            reap_due = self.wait(&sigfd);
        };
        crate::instance::release_shared(&self.socket, &crate::config::socket_path(&self.settings));
        self.socket.remove();
        if let Some(f) = &mut self.frontend {
            f.remove();
        }
        if let Some(n) = &self.notify {
            n.remove();
        }
        info!(code, "exit");
        code
    }

    /// Polls until something happens or the next deadline, and hands what woke it to the
    /// core. Returns whether SIGCHLD came (children to reap).
    fn wait(&mut self, sigfd: &SignalFd) -> bool {
        let now = Instant::now();
        let timeout = poll_timeout(self.next_deadline(now), now);
        let woke = {
            let mut sources = Sources::default();
            self.watch(&mut sources, sigfd, now);
            sources.wait(timeout)
        };
        if !woke.is_empty() {
            self.handle(Event::Activity, Instant::now());
        }
        let mut chld = false;
        for (source, hup) in woke {
            match source {
                Source::Caller(conn) => self.peek_caller(conn, hup),
                Source::Requests => self.accept_callers(),
                Source::Proxy => self.frontend.iter_mut().for_each(Frontend::pump),
                Source::Notify => self.read_notify(),
                Source::Held => self.on_connection(),
                Source::Probe => self.probe_answered(),
                Source::Signals => chld |= self.read_signals(sigfd),
                Source::Control => self.read_control(),
            }
        }
        chld
    }

    /// The earliest of the core's deadlines and those of I/O alone.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let io = self.frontend.iter().flat_map(|f| f.deadlines(now));
        let io = io.chain(self.callers.deadline(now));
        self.core.next_wake(now).into_iter().chain(io).min()
    }

    /// Every descriptor that can wake the loop this turn.
    fn watch<'a>(&'a self, sources: &mut Sources<'a>, sigfd: &'a SignalFd, now: Instant) {
        sources.add(Source::Signals, sigfd.as_fd(), libc::POLLIN);
        if let Some(f) = &self.frontend {
            if self.core.want_listen_poll(now) && f.pollable(now) {
                sources.add(Source::Held, f.held.fd.as_fd(), libc::POLLIN);
            }
            if let Some(p) = f.proxy_fd() {
                sources.add(Source::Proxy, p, libc::POLLIN);
            }
        }
        if let Some(c) = self.control.as_ref().filter(|_| self.core.control_open()) {
            sources.add(Source::Control, c.as_fd(), libc::POLLIN);
        }
        if let Some(n) = &self.notify {
            sources.add(Source::Notify, n.fd.as_fd(), libc::POLLIN);
        }
        if self.core.request_room() > 0 && self.callers.open(now) {
            sources.add(Source::Requests, self.socket.fd.as_fd(), libc::POLLIN);
        }
        if let Some(p) = &self.probing {
            sources.add(Source::Probe, p.as_fd(), libc::POLLOUT);
        }
        for (conn, fd) in self.callers.fds() {
            sources.add(Source::Caller(conn), fd, libc::POLLIN | libc::POLLRDHUP);
        }
    }

    /// Hands one event to the core and carries out the effects, and the events they give
    /// back, until none is left.
    fn handle(&mut self, ev: Event, now: Instant) {
        let mut queue = VecDeque::from([ev]);
        while let Some(ev) = queue.pop_front() {
            for eff in self.core.handle(ev, now) {
                queue.extend(self.apply(eff, now));
            }
        }
    }

    /// Collects every ended child. Returns true when no child is left at all.
    fn reap(&mut self, now: Instant) -> bool {
        let mut reaped = Vec::new();
        let no_children = crate::reap::reap_all(&mut reaped);
        for (pid, exit) in reaped {
            if self.core.main_pid() == Some(pid) {
                // A probe still connecting was for this process, not the next one.
                self.probing = None;
            }
            if self.core.listener_pid() == Some(pid) {
                // What the listener sent just before it died (a `hold` for an action it had
                // just started) may still wait on the channel: take it in first, so that
                // its client gets its answer and its action is stopped like the others.
                if let Some(c) = self.control.take() {
                    self.drain_control(&c);
                }
            }
            self.handle(Event::Exited(pid, exit), now);
        }
        no_children
    }

    /// Reads every signal waiting; returns whether SIGCHLD was one.
    fn read_signals(&mut self, sigfd: &SignalFd) -> bool {
        let mut chld = false;
        while let Ok(Some(info)) = sigfd.read_signal() {
            chld |= info.ssi_signo == Signal::SIGCHLD as u32;
            // Real-time signals have no name here and are not forwarded.
            if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
                self.handle(Event::Signal(s), Instant::now());
            }
        }
        chld
    }

    // ----- effects ------------------------------------------------------------------

    fn apply(&mut self, eff: Effect, now: Instant) -> Option<Event> {
        match eff {
            Effect::SpawnMain => Some(Event::MainSpawned(self.spawn_main())),
            Effect::SpawnListener { next_id } => {
                Some(Event::ListenerSpawned(self.spawn_listener(next_id)))
            }
            Effect::Probe => self.probe(),
            Effect::Kill(target, sig) => {
                self.kill(target, sig);
                None
            }
            Effect::Reply { seq, answer } => {
                let msg = Msg::Reply {
                    seq,
                    text: answer.to_string(),
                };
                if let Some(c) = &self.control {
                    if let Err(e) = control::send(c.as_fd(), &msg, None) {
                        warn!(error = %e, "cannot answer the listener");
                    }
                }
                None
            }
            Effect::Answer { id, line } => {
                if let Some(conn) = self.held_conns.remove(&id) {
                    lazy::write_line(&conn, &line);
                }
                None
            }
            Effect::Respond { conn, line } => {
                self.callers.answer(conn, &line);
                None
            }
            Effect::HandOn { conn } => {
                self.pass_to_listener(conn);
                None
            }
            Effect::ReleaseMemory => {
                crate::trim::release_memory();
                None
            }
            Effect::CheckSocketName => {
                self.check_socket_name();
                None
            }
            Effect::ConnectPending
            | Effect::CloseWaiting
            | Effect::CloseProxied
            | Effect::Relink
            | Effect::GiveName
            | Effect::TakeName
            | Effect::Scan => self.apply_on_demand(eff, now),
        }
    }

    /// The on-demand effects, carried out on the held socket.
    fn apply_on_demand(&mut self, eff: Effect, now: Instant) -> Option<Event> {
        let f = self.frontend.as_mut()?;
        match eff {
            Effect::ConnectPending => return Some(Event::Pending(f.connect_waiting(now))),
            Effect::CloseWaiting => f.close_waiting(),
            Effect::CloseProxied => f.close_proxied(),
            Effect::Relink => f.relink(),
            Effect::GiveName => return f.give_name().map(|again| Event::NameKept { again }),
            Effect::TakeName => f.take_name(),
            Effect::Scan => {
                if f.name_stale() {
                    f.take_name();
                    return Some(Event::NameKept { again: true });
                }
                return Some(if f.scan() {
                    Event::Traffic
                } else {
                    Event::Quiet
                });
            }
            _ => {}
        }
        None
    }

    fn spawn_main(&mut self) -> Result<Pid, i32> {
        let key = self.frontend.as_ref().map(|f| f.held.addr.key());
        let name = key
            .as_deref()
            .map(|k| k.rsplit('/').next().unwrap_or(k).to_string());
        let fd = self.frontend.as_ref().and_then(Frontend::handoff);
        let handoff = match (fd, &key, &name) {
            (Some(fd), Some(key), Some(name)) => Some(spawn::Handoff {
                fd: fd.as_raw_fd(),
                key,
                name,
            }),
            _ => None,
        };
        match spawn::spawn_main(&self.settings, &self.self_exe, handoff) {
            Ok(pid) => {
                info!(child = "main", pid = pid.as_raw(), cmd = %shown(&self.settings.exec), "spawned");
                Ok(pid)
            }
            Err(e) => {
                let code = match e.kind() {
                    std::io::ErrorKind::NotFound => 127,
                    _ => 126,
                };
                error!(child = "main", cmd = %shown(&self.settings.exec), error = %e, code, "cannot start");
                Err(code)
            }
        }
    }

    fn spawn_listener(&mut self, next_id: u64) -> Option<Pid> {
        let exe = self.settings.listener.clone()?;
        let pair = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        );
        let (ours, theirs) = match pair {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot create the control channel");
                return None;
            }
        };
        set_nonblocking(ours.as_fd(), true);
        let mut env = self.settings.to_env();
        env.push(("BOSUN_NEXT_ID".into(), next_id.to_string()));
        match spawn::spawn_listener(&exe, self.socket.fd.as_fd(), theirs.as_fd(), &env) {
            Ok(pid) => {
                self.control = Some(ours);
                Some(pid)
            }
            Err(e) => {
                error!(child = "listener", error = %e, "cannot start");
                None
            }
        }
    }

    /// Runs the ready probe: a connect is started and, when it cannot be decided at once,
    /// answered by a later poll event ([`Self::probe_answered`]); a new probe drops one
    /// still in progress (not ready within the interval). `exec:` starts a child.
    fn probe(&mut self) -> Option<Event> {
        let r = self.settings.ready.as_ref()?;
        self.probing = None;
        match ready::start_connect(r) {
            Some(ready::Connect::Done(ok)) => Some(Event::ProbeResult(ok)),
            Some(ready::Connect::Pending(fd)) => {
                self.probing = Some(fd);
                None
            }
            None => {
                let Ready::Exec(cmd) = r else { return None };
                match spawn::spawn_probe(cmd) {
                    Ok(pid) => Some(Event::ProbeStarted(Some(pid))),
                    Err(e) => {
                        warn!(error = %e, "cannot run the ready probe");
                        Some(Event::ProbeStarted(None))
                    }
                }
            }
        }
    }

    /// The probe's connect is done, one way or the other.
    fn probe_answered(&mut self) {
        if let Some(fd) = self.probing.take() {
            let ok = ready::connected(&fd);
            self.handle(Event::ProbeResult(ok), Instant::now());
        }
    }

    fn kill(&self, target: Target, sig: Signal) {
        match target {
            Target::Group(pid) => {
                let _ = common::signal::signal_group(pid, sig);
            }
            Target::Leftovers(pgid) => {
                if killpg(pgid, sig).is_ok() {
                    warn!(
                        pgid = pgid.as_raw(),
                        signal = sig.as_str(),
                        "sent to what was left of its process group"
                    );
                }
            }
            Target::Others if self.pid1 => {
                let _ = kill(Pid::from_raw(-1), sig);
            }
            Target::Others => {
                for pid in children_of(getpid()) {
                    let _ = kill(pid, sig);
                }
            }
            Target::SessionGroups { sid, except } => {
                let groups: Vec<Pid> = groups_in_session(sid)
                    .into_iter()
                    .filter(|g| !except.contains(&g.as_raw()))
                    .collect();
                if !groups.is_empty() {
                    warn!(groups = ?groups, "stopping what the crashed listener had started and not reported");
                    for g in groups {
                        let _ = killpg(g, sig);
                    }
                }
            }
        }
    }

    /// The request socket's name must lead to this supervisor's socket: clients find the
    /// service by it. When it was removed or replaced (by hand, or by a process that can
    /// write the run dir), requests no longer reach this service: said loudly, once until
    /// it is right again. A replacement is left alone (and not removed at exit). What
    /// prevents it is DESIGN.md section 9: clients get the directory read-only.
    fn check_socket_name(&mut self) {
        use crate::socket::NameCheck;
        if self.core.exiting() {
            return;
        }
        self.keep_shared();
        let path = self.socket.path.display().to_string();
        let problem = match self.socket.check_name() {
            NameCheck::Ours => {
                if std::mem::replace(&mut self.replaced_logged, false) {
                    info!(
                        path,
                        "the request socket's name leads to this service again"
                    );
                }
                return;
            }
            NameCheck::Removed => "was removed".to_string(),
            NameCheck::Replaced => "now leads to another file".to_string(),
            NameCheck::Failed(e) => format!("cannot be checked: {e}"),
        };
        if !std::mem::replace(&mut self.replaced_logged, true) {
            error!(path, "the request socket's name {problem}: requests do not reach this service (restart the container to bind it again; logged once)");
        }
    }

    /// This replica's instance (claimed before the supervisor was made).
    fn instance(&self) -> u32 {
        self.settings.instance.unwrap_or(1)
    }

    /// `<service>-request.sock` leads to a live replica: to this one when it led nowhere
    /// live (DESIGN.md section 10). Said when this replica takes it, and when something
    /// that is not a socket has the name (once).
    fn keep_shared(&mut self) {
        use crate::instance::Shared;
        let shared = crate::config::socket_path(&self.settings);
        match crate::instance::keep_shared(&self.socket, &shared, self.instance()) {
            Shared::Took => {
                self.shared_logged = false;
                info!(path = %shared.display(), "serving the service's shared request socket too");
            }
            Shared::Ours | Shared::Other => self.shared_logged = false,
            Shared::NotSocket => {
                if !std::mem::replace(&mut self.shared_logged, true) {
                    error!(path = %shared.display(), "is not a socket: clients of the service's shared name do not reach any replica (logged once)");
                }
            }
            Shared::Failed(e) => {
                if !std::mem::replace(&mut self.shared_logged, true) {
                    warn!(path = %shared.display(), error = %e, "cannot make the service's shared request socket lead to this replica (logged once)");
                }
            }
        }
    }

    /// `READY=1` counts from the main process only (systemd's `NotifyAccess=main`).
    fn read_notify(&mut self) {
        let Some(n) = &self.notify else { return };
        let main = self.core.main_pid().map(Pid::as_raw);
        let said = ready::read_notify(n.fd.as_fd(), main);
        for pid in said.ignored {
            if std::mem::replace(&mut self.notify_warned, true) {
                tracing::debug!(
                    sender = pid,
                    "READY=1 from another process than the main one; ignored"
                );
            } else {
                warn!(sender = pid, main = ?main, "READY=1 from another process than the main one; ignored (only the main process's own pid counts; logged once)");
            }
        }
        if said.ready {
            self.handle(Event::Notified, Instant::now());
        }
    }

    // ----- the listener's control channel -------------------------------------------

    fn read_control(&mut self) {
        loop {
            let Some(c) = &self.control else { return };
            match control::recv(c.as_fd()) {
                Ok(Received::Msg(m, fd)) => {
                    if let Some(ev) = self.control_event(m, fd) {
                        self.handle(ev, Instant::now());
                    }
                }
                Ok(Received::Invalid(t)) => warn!(msg = %t, "invalid control message"),
                Err(Errno::EAGAIN) => return,
                Ok(Received::Eof) => {
                    self.control = None;
                    return self.handle(Event::ControlClosed, Instant::now());
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!(error = %e, "control channel");
                    return;
                }
            }
        }
    }

    /// Takes the messages still queued on a dead listener's channel.
    fn drain_control(&mut self, c: &OwnedFd) {
        loop {
            match control::recv(c.as_fd()) {
                Ok(Received::Msg(m, fd)) => {
                    if let Some(ev @ (Event::Hold { .. } | Event::Release { .. })) =
                        self.control_event(m, fd)
                    {
                        self.handle(ev, Instant::now());
                    }
                }
                Ok(Received::Invalid(_)) | Err(Errno::EINTR) => {}
                Ok(Received::Eof) | Err(_) => return,
            }
        }
    }

    /// A control message as an event; a held request's connection is kept here.
    fn control_event(&mut self, m: Msg, fd: Option<OwnedFd>) -> Option<Event> {
        match (m, fd) {
            (Msg::Hold { id, pgid, action }, Some(conn)) => {
                self.held_conns.insert(id, conn);
                Some(Event::Hold { id, pgid, action })
            }
            (Msg::Release { id, reply }, _) => Some(Event::Release { id, reply }),
            (Msg::Cmd { seq, cmd }, _) => Some(Event::Command { seq, cmd }),
            (Msg::Idle { next_id }, _) => Some(Event::ListenerIdle { next_id }),
            (m, _) => {
                warn!(msg = ?m, "unexpected control message");
                None
            }
        }
    }

    /// `$NOTIFY_SOCKET`, for `ready = "notify"`.
    fn open_notify(&mut self) {
        let Some(path) = self.settings.notify_path() else {
            return;
        };
        match notify_socket(&path, self.settings.run_as.as_ref()) {
            Ok(d) => self.notify = Some(d),
            Err(e) => {
                error!(error = %e, "cannot create the notify socket; the main process will never be ready")
            }
        }
    }

    // ----- the request socket while no listener runs ---------------------------------

    /// Accepts as many clients as the core has room for; the others stay in the backlog,
    /// where the listener (or the next turn) finds them.
    fn accept_callers(&mut self) {
        let now = Instant::now();
        let room = self.core.request_room();
        for conn in self.callers.accept(self.socket.fd.as_fd(), room, now) {
            self.handle(Event::Caller { conn }, now);
            // A line may be there already.
            self.peek_caller(conn, false);
        }
    }

    /// Peeks at a client's request line; once it is whole (or the client has stopped
    /// sending), tells the core what it asks.
    fn peek_caller(&mut self, conn: u64, hup: bool) {
        let ev = match self.callers.peek(conn, hup) {
            Peeked::Partial => return,
            Peeked::Gone => Event::CallerGone { conn },
            Peeked::Line(builtin) => Event::Asked { conn, builtin },
        };
        self.handle(ev, Instant::now());
    }

    /// Passes a client, its request unread, to the listener.
    fn pass_to_listener(&mut self, conn: u64) {
        let Some(fd) = self.callers.take(conn) else {
            return;
        };
        let sent = self
            .control
            .as_ref()
            .map(|c| control::send(c.as_fd(), &Msg::Conn, Some(fd.as_fd())));
        if !matches!(sent, Some(Ok(()))) {
            warn!(error = ?sent, "cannot pass a client to the listener");
            let line = proto::Reply::error(
                proto::ErrorCode::Unavailable,
                "the listener is not reachable",
            );
            lazy::answer_read(&fd, &line.to_string());
        }
    }

    // ----- on demand ----------------------------------------------------------------

    /// The held socket is readable: in proxy mode the supervisor accepts the clients
    /// itself; in handoff mode they wait in the backlog for the main process.
    fn on_connection(&mut self) {
        let now = Instant::now();
        let Some(f) = &mut self.frontend else { return };
        let pending = f.accept(now);
        self.handle(Event::Connection { pending }, now);
    }
}

/// Which descriptor woke the loop. The order of the variants is the order in which what
/// woke it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// A client on the request socket, while no listener runs.
    Caller(u64),
    /// The request socket, while no listener runs.
    Requests,
    /// On demand, proxy mode: the proxy's epoll instance.
    Proxy,
    /// `$NOTIFY_SOCKET`.
    Notify,
    /// On demand: the held socket.
    Held,
    /// A ready probe's connect.
    Probe,
    Signals,
    /// The listener's control channel.
    Control,
}

/// The descriptors one turn of the loop waits on, each with the source it stands for.
/// (Raw `poll(2)`: nix's `PollFlags` has no `POLLRDHUP`, and drops the whole `revents`
/// when that bit is set.)
#[derive(Default)]
struct Sources<'a> {
    fds: Vec<libc::pollfd>,
    sources: Vec<Source>,
    _borrowed: std::marker::PhantomData<BorrowedFd<'a>>,
}

impl<'a> Sources<'a> {
    fn add(&mut self, source: Source, fd: BorrowedFd<'a>, events: libc::c_short) {
        self.fds.push(libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        });
        self.sources.push(source);
    }

    /// Waits up to `timeout_ms` (-1: no limit); returns the sources that woke, in the
    /// order they are read, each with whether its peer hung up.
    fn wait(mut self, timeout_ms: i32) -> Vec<(Source, bool)> {
        // SAFETY: `fds` is a valid array of `len` pollfd structs for the whole call; the
        // descriptors are borrowed for 'a, so none is closed while we wait.
        let n = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if let Err(e) = Errno::result(n) {
            if e != Errno::EINTR {
                error!(error = %e, "poll failed");
                std::thread::sleep(Duration::from_millis(100));
            }
            return Vec::new();
        }
        let mut woke: Vec<(Source, bool)> = (self.fds.iter().zip(self.sources))
            .filter(|(p, _)| p.revents != 0)
            .map(|(p, s)| (s, p.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0))
            .collect();
        woke.sort_by_key(|&(s, _)| s);
        woke
    }
}

/// `poll`'s timeout until `deadline`: at least 1 ms, at most a minute, -1 for none.
fn poll_timeout(deadline: Option<Instant>, now: Instant) -> i32 {
    match deadline {
        None => -1,
        Some(d) => d
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, 60_000) as i32,
    }
}

/// An argv as one line for the log (bytes that are not UTF-8 shown as U+FFFD).
fn shown(argv: &[std::ffi::OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The notify socket: 0600, owned by the `run_as` user (root otherwise), credentials on.
fn notify_socket(
    path: &std::path::Path,
    run_as: Option<&crate::config::RunAs>,
) -> Result<BoundSocket, crate::socket::SocketError> {
    let perms = crate::socket::Perms {
        mode: 0o600,
        uid: run_as.map(|r| r.uid),
        gid: run_as.map(|r| r.gid),
    };
    let s = crate::socket::bind_datagram(path, perms)?;
    let on = nix::sys::socket::setsockopt(&s.fd, nix::sys::socket::sockopt::PassCred, &true);
    if let Err(e) = on {
        s.remove();
        return Err(crate::socket::SocketError::Io {
            path: path.to_path_buf(),
            what: "while asking for senders' credentials (SO_PASSCRED)",
            err: e.into(),
        });
    }
    set_nonblocking(s.fd.as_fd(), true);
    Ok(s)
}
