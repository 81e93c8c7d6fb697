//! The supervisor's loop: reap, tick, poll, read what woke it, hand each event to the
//! [`Core`], carry out the effects. Every decision is the core's; this file only does I/O.
//!
//! Why one thread and a signalfd: the supervisor must reap every process with
//! `waitpid(-1)`, which steals exit statuses from any other waiter in the process, so
//! nothing else may wait for children here (no tokio, no `Child::wait`). With all signals
//! blocked and read through a signalfd, signals become ordinary readable events in the
//! same `poll`, no handler runs concurrently, and no extra thread costs memory. Nothing
//! here blocks but `poll`: every socket it reads or accepts on is polled first or
//! non-blocking, so a TERM is always read.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::{getpid, Pid};
use proto::control::{self, Msg, Received};
use tracing::{error, info, warn};

use crate::accept::{accept_some, Gate, Note};
use crate::config::{Ready, Settings};
use crate::core::{Core, Effect, Event, Policy, Target};
use crate::ondemand::{self, Activity, Addr};
use crate::procfs::{children_of, groups_in_session};
use crate::ready;
use crate::socket::BoundSocket;
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

/// How often the request socket's name is checked (see [`Supervisor::check_socket_name`]).
const NAME_CHECK: Duration = Duration::from_secs(5);

/// Clients read at once while no listener runs, at most.
const MAX_ASKING: usize = 64;
/// How long a client may take to send its line before it is passed to the listener
/// anyway (which applies the real `read_timeout`).
const ASK_TIME: Duration = Duration::from_secs(1);

/// A client on the request socket while no listener runs: its line is peeked at, not
/// read, so that it can still be passed to the listener whole.
struct Asking {
    fd: OwnedFd,
    since: Instant,
}

/// On demand: the held socket and what only I/O can know of it.
struct OnDemandIo {
    held: ondemand::Held,
    /// Proxy mode: the backend's address and the byte pump.
    proxy: Option<(Addr, crate::proxy::Proxy)>,
    /// Proxy mode: clients accepted while the backend starts, and since when.
    pending: Vec<(OwnedFd, Instant)>,
    activity: Activity,
    last_bytes: u64,
    /// Paused after an accept ran out of descriptors.
    gate: Gate,
    /// Proxy mode: proxied pairs plus held clients, at most (`on_demand.max_connections`,
    /// lowered to fit the descriptor limit); more wait in the backlog.
    cap: usize,
    /// Proxy mode: a held client waits for the backend this long at most.
    hold: Duration,
    /// Proxy mode: pairs silent this long are closed; checked at `next_sweep`.
    idle: Option<Duration>,
    next_sweep: Instant,
}

impl OnDemandIo {
    /// How many more clients may be accepted now (proxy mode).
    fn room(&self) -> usize {
        let open = self.proxy.as_ref().map_or(0, |(_, p)| p.len()) + self.pending.len();
        self.cap.saturating_sub(open)
    }

    /// Whether the held socket is polled this turn, as far as I/O goes (the core has its say
    /// first): not while paused, nor in proxy mode while the cap is reached.
    fn pollable(&self, now: Instant) -> bool {
        self.gate.open(now) && (self.proxy.is_none() || self.room() > 0)
    }

    fn sweep_interval(&self) -> Option<Duration> {
        self.idle
            .map(|i| (i / 4).clamp(Duration::from_millis(50), Duration::from_secs(30)))
    }
}

/// Descriptors kept free of proxied pairs, for the loop's own needs (spawning, the
/// control channel, the request socket's clients).
const FD_RESERVE: u64 = 32;
/// Descriptors one proxied pair may use: two sockets and, while bytes are in flight both
/// ways, two pipes (two ends each).
const FDS_PER_PAIR: u64 = 6;

/// `on_demand.max_connections`, lowered so that the pairs fit the descriptor limit.
fn pair_cap(max_connections: usize, nofile: u64) -> usize {
    let fit = nofile.saturating_sub(FD_RESERVE.min(nofile / 4)) / FDS_PER_PAIR;
    max_connections.min(usize::try_from(fit).unwrap_or(usize::MAX).max(1))
}

/// The supervisor: the core's decisions plus the fds and children they are about.
pub struct Supervisor {
    s: Settings,
    self_exe: PathBuf,
    pid1: bool,
    core: Core,
    socket: BoundSocket,
    /// The listener's end of the control channel, while it runs.
    control: Option<OwnedFd>,
    /// Held requests' connections, by request id.
    conns: HashMap<u64, OwnedFd>,
    /// Clients the supervisor looks at while no listener runs, by a number of its own.
    asking: BTreeMap<u64, Asking>,
    /// The request socket is paused after an accept ran out of descriptors.
    request_gate: Gate,
    /// When the socket's name is checked next, and whether its replacement was logged.
    name_check_at: Instant,
    replaced_logged: bool,
    next_conn: u64,
    /// Whether `ping` and `status` may be answered without the listener: not with an
    /// allow-list, which only the listener applies.
    answer_here: bool,
    od: Option<OnDemandIo>,
    /// `ready = "notify"`: where the main process says `READY=1`.
    notify: Option<BoundSocket>,
    /// A `READY=1` from another process than the main one was logged (once).
    notify_warned: bool,
    /// When code pages and free heap are given back (see `trim`): [`crate::trim::AFTER`] after
    /// start and after a burst of activity, so a short-lived container does not pay the
    /// page faults and an idle one keeps only what idling uses.
    trim_at: Option<Instant>,
}

impl Supervisor {
    pub fn new(s: Settings, socket: BoundSocket, held: Option<ondemand::Held>) -> Supervisor {
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
        let backend = s.on_demand.as_ref().and_then(|o| o.backend.clone());
        let od_settings = s.on_demand.clone();
        let od = held.map(|held| {
            let proxy = backend.map(|addr| {
                // Only the supervisor accepts on it in proxy mode.
                set_nonblocking(held.fd.as_fd(), true);
                (addr, crate::proxy::Proxy::new())
            });
            let proxy = match proxy {
                Some((addr, Ok(p))) => Some((addr, p)),
                Some((_, Err(e))) => {
                    error!(error = %e, "cannot create the proxy");
                    None
                }
                None => None,
            };
            let (max, hold, idle) = od_settings.as_ref().map_or(
                (
                    common::settings::ON_DEMAND_MAX_CONNECTIONS,
                    Duration::from_secs(30),
                    None,
                ),
                |o| (o.max_connections, o.start_timeout, o.connection_idle),
            );
            let nofile = common::rlimit::nofile().map_or(1024, |(soft, _)| soft);
            let cap = pair_cap(max, nofile);
            if proxy.is_some() && cap < max {
                warn!(
                    max_connections = max,
                    nofile,
                    cap,
                    "fewer proxied connections than on_demand.max_connections: the descriptor limit is lower"
                );
            }
            OnDemandIo {
                held,
                proxy,
                pending: Vec::new(),
                activity: Activity::default(),
                last_bytes: 0,
                gate: Gate::default(),
                cap,
                hold,
                idle,
                next_sweep: now,
            }
        });
        let answer_here = !s.has_allow_list();
        // Accepted on by the supervisor itself while no listener runs: never block on it.
        set_nonblocking(socket.fd.as_fd(), true);
        Supervisor {
            core: Core::new(Policy::from_settings(&s), now),
            s,
            self_exe,
            pid1,
            socket,
            control: None,
            conns: HashMap::new(),
            asking: BTreeMap::new(),
            request_gate: Gate::default(),
            name_check_at: now + NAME_CHECK,
            replaced_logged: false,
            next_conn: 1,
            answer_here,
            od,
            notify: None,
            notify_warned: false,
            trim_at: Some(now + crate::trim::AFTER),
        }
    }

    /// Runs until the container should end; returns the exit code.
    pub fn run(mut self, sigfd: SignalFd) -> i32 {
        if let Some(path) = self.s.notify_path() {
            match notify_socket(&path, self.s.run_as.as_ref()) {
                Ok(d) => self.notify = Some(d),
                Err(e) => {
                    error!(error = %e, "cannot create the notify socket; the main process will never be ready")
                }
            }
        }
        if let Some(od) = &self.od {
            info!(listen = %od.held.addr.key(), mode = if od.proxy.is_some() { "proxy" } else { "handoff" }, "holding the socket; the main process starts on the first connection");
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
            self.observe_proxy(now);
            if now >= self.name_check_at {
                self.name_check_at = now + NAME_CHECK;
                self.check_socket_name();
            }
            self.handle(Event::Tick, now);
            if self.trim_at.is_some_and(|t| now >= t) {
                self.trim_at = None;
                crate::trim::release_startup_text();
            }
            if let Some(code) = self.core.finished(no_children, now) {
                break code;
            }
            reap_due = self.wait(&sigfd);
        };
        self.socket.remove();
        if let Some(od) = &self.od {
            od.held.remove();
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
        let ask_deadline = self.asking.values().map(|a| a.since + ASK_TIME).min();
        let od_deadlines = self.od.as_ref().map(|o| {
            let sweep = o
                .proxy
                .as_ref()
                .filter(|(_, p)| !p.is_empty() && o.idle.is_some())
                .map(|_| o.next_sweep);
            let held = o.pending.iter().map(|(_, since)| *since + o.hold).min();
            [o.gate.deadline(now), sweep, held]
        });
        let deadline = [
            self.core.next_deadline(now),
            ask_deadline,
            self.trim_at,
            self.request_gate.deadline(now),
            Some(self.name_check_at).filter(|_| !self.core.exiting()),
        ]
        .into_iter()
        .chain(od_deadlines.into_iter().flatten())
        .flatten()
        .min();
        let timeout = match deadline {
            None => -1,
            Some(d) => d
                .saturating_duration_since(now)
                .as_millis()
                .clamp(1, 60_000) as i32,
        };
        let mut fds = PollSet::default();
        let sig_at = fds.push(Some(sigfd.as_fd()), libc::POLLIN);
        let held_at = fds.push(
            self.od
                .as_ref()
                .filter(|o| self.core.want_listen_poll(now) && o.pollable(now))
                .map(|o| o.held.fd.as_fd()),
            libc::POLLIN,
        );
        let control_at = fds.push(
            self.control
                .as_ref()
                .filter(|_| self.core.control_open())
                .map(|c| c.as_fd()),
            libc::POLLIN,
        );
        let proxy_at = fds.push(
            self.od
                .as_ref()
                .and_then(|o| o.proxy.as_ref())
                .map(|(_, p)| p.as_fd()),
            libc::POLLIN,
        );
        let notify_at = fds.push(self.notify.as_ref().map(|n| n.fd.as_fd()), libc::POLLIN);
        let request_at = fds.push(
            Some(self.socket.fd.as_fd()).filter(|_| {
                self.core.want_request_poll()
                    && self.asking.len() < MAX_ASKING
                    && self.request_gate.open(now)
            }),
            libc::POLLIN,
        );
        let asking: Vec<(u64, Option<usize>)> = self
            .asking
            .iter()
            .map(|(&conn, a)| {
                (
                    conn,
                    fds.push(Some(a.fd.as_fd()), libc::POLLIN | libc::POLLRDHUP),
                )
            })
            .collect();
        if let Err(e) = fds.poll(timeout) {
            if e != Errno::EINTR {
                error!(error = %e, "poll failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let ready = |i: Option<usize>| fds.revents(i) != 0;
        let (sig, held, ctl, proxy, notify) = (
            ready(sig_at),
            ready(held_at),
            ready(control_at),
            ready(proxy_at),
            ready(notify_at),
        );
        let request = ready(request_at);
        // Activity faults code back in: give it back once things are quiet again.
        if (sig || held || ctl || proxy || notify || request) && self.trim_at.is_none() {
            self.trim_at = Some(Instant::now() + crate::trim::AFTER);
        }
        let asked: Vec<(u64, bool)> = asking
            .into_iter()
            .filter(|&(_, i)| ready(i))
            .map(|(conn, i)| {
                (
                    conn,
                    fds.revents(i) & (libc::POLLRDHUP | libc::POLLHUP) != 0,
                )
            })
            .collect();
        drop(fds);
        for (conn, hup) in asked {
            self.look_at(conn, hup);
        }
        self.ask_timeouts(Instant::now());
        if request {
            self.accept_asking();
        }
        if proxy {
            if let Some((_, p)) = self.od.as_mut().and_then(|o| o.proxy.as_mut()) {
                p.run_ready();
            }
        }
        if notify {
            self.read_notify();
        }
        if held {
            self.on_connection();
        }
        let mut chld = false;
        if sig {
            while let Ok(Some(info)) = sigfd.read_signal() {
                chld |= info.ssi_signo == Signal::SIGCHLD as u32;
                // Real-time signals have no name here and are not forwarded.
                if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
                    self.handle(Event::Signal(s), Instant::now());
                }
            }
        }
        if ctl {
            self.read_control();
        }
        chld
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
                let text = answer.to_string();
                if let Some(c) = &self.control {
                    if let Err(e) = control::send(c.as_fd(), &Msg::Reply { seq, text }, None) {
                        warn!(error = %e, "cannot answer the listener");
                    }
                }
                None
            }
            Effect::Answer { id, line } => {
                if let Some(conn) = self.conns.remove(&id) {
                    answer(&conn, &line);
                }
                None
            }
            Effect::ConnectPending => Some(Event::Pending(self.connect_pending())),
            Effect::CloseWaiting => {
                let od = self.od.as_mut()?;
                let mut closed = std::mem::take(&mut od.pending).len();
                if od.proxy.is_none() {
                    // Handoff: the clients wait in the kernel's backlog of the held socket,
                    // which the main process shares: never block on it.
                    // A few at a time, each closed at once: never more descriptors than that.
                    set_nonblocking(od.held.fd.as_fd(), true);
                    loop {
                        let (some, err) = accept_some(od.held.fd.as_fd(), 16);
                        closed += some.len();
                        if some.is_empty() || err.is_some() {
                            break;
                        }
                    }
                    set_nonblocking(od.held.fd.as_fd(), false);
                }
                if closed > 0 {
                    info!(closed, "closed the clients waiting for the main process");
                }
                None
            }
            Effect::CloseProxied => {
                if let Some((_, p)) = self.od.as_mut().and_then(|o| o.proxy.as_mut()) {
                    p.close_all();
                }
                None
            }
            Effect::Relink => {
                let od = self.od.as_ref()?;
                match od.held.relink() {
                    Ok(true) => {
                        info!(path = %od.held.addr.key(), "restored the socket's name after the main process removed it")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        error!(path = %od.held.addr.key(), error = %e, "cannot restore the socket's name")
                    }
                }
                None
            }
            Effect::Respond { conn, line } => {
                if let Some(a) = self.asking.remove(&conn) {
                    respond(&a.fd, &line);
                }
                None
            }
            Effect::HandOn { conn } => {
                let a = self.asking.remove(&conn)?;
                let sent = self
                    .control
                    .as_ref()
                    .map(|c| control::send(c.as_fd(), &Msg::Conn, Some(a.fd.as_fd())));
                if !matches!(sent, Some(Ok(()))) {
                    warn!(error = ?sent, "cannot pass a client to the listener");
                    respond(
                        &a.fd,
                        &proto::Answer::error(
                            proto::ErrorCode::Unavailable,
                            "the listener is not reachable",
                        )
                        .to_string(),
                    );
                }
                None
            }
            Effect::Scan => {
                let od = self.od.as_mut()?;
                let _ = now;
                Some(if od.activity.scan(&od.held.addr) {
                    Event::Traffic
                } else {
                    Event::Quiet
                })
            }
        }
    }

    fn spawn_main(&mut self) -> Result<Pid, i32> {
        let key = self.od.as_ref().map(|o| o.held.addr.key());
        let name = key
            .as_deref()
            .map(|k| k.rsplit('/').next().unwrap_or(k).to_string());
        let handoff = match (&self.od, &key, &name) {
            (Some(od), Some(key), Some(name)) if od.proxy.is_none() => Some(spawn::Handoff {
                fd: od.held.raw(),
                key,
                name,
            }),
            _ => None,
        };
        match spawn::spawn_main(&self.s, &self.self_exe, handoff) {
            Ok(pid) => {
                info!(child = "main", pid = pid.as_raw(), cmd = %shown(&self.s.exec), "spawned");
                Ok(pid)
            }
            Err(e) => {
                let code = match e.kind() {
                    std::io::ErrorKind::NotFound => 127,
                    _ => 126,
                };
                error!(child = "main", cmd = %shown(&self.s.exec), error = %e, code, "cannot start");
                Err(code)
            }
        }
    }

    fn spawn_listener(&mut self, next_id: u64) -> Option<Pid> {
        let exe = self.s.listener.clone()?;
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
        let mut env = self.s.to_env();
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

    fn probe(&mut self) -> Option<Event> {
        let r = self.s.ready.as_ref()?;
        match ready::check_connect(r) {
            Some(ok) => Some(Event::ProbeResult(ok)),
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
                    if let Some(ev) = self.take_in(m, fd) {
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
                        self.take_in(m, fd)
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
    fn take_in(&mut self, m: Msg, fd: Option<OwnedFd>) -> Option<Event> {
        match (m, fd) {
            (Msg::Hold { id, pgid, action }, Some(conn)) => {
                self.conns.insert(id, conn);
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

    // ----- the request socket while no listener runs ---------------------------------

    /// Accepts as many clients as there is room for; the others stay in the backlog, where
    /// the listener (or the next turn) finds them.
    fn accept_asking(&mut self) {
        let room = MAX_ASKING.saturating_sub(self.asking.len());
        let now = Instant::now();
        let (accepted, err) = accept_some(self.socket.fd.as_fd(), room);
        let note = match err {
            Some(_) => self.request_gate.failed(now),
            None if !accepted.is_empty() => self.request_gate.succeeded(),
            None => Note::Nothing,
        };
        log_gate(note, err, "the request socket");
        for fd in accepted {
            let conn = self.next_conn;
            self.next_conn += 1;
            self.asking.insert(conn, Asking { fd, since: now });
            // A line may be there already.
            self.look_at(conn, false);
        }
    }

    /// Peeks at a client's request line; once it is whole (or the client has stopped
    /// sending), tells the core what it asks.
    fn look_at(&mut self, conn: u64, hup: bool) {
        let Some(a) = self.asking.get(&conn) else {
            return;
        };
        let mut buf = [0u8; proto::MAX_LINE + 2];
        let n = match nix::sys::socket::recv(
            a.fd.as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => {
                // Gone before a word.
                self.asking.remove(&conn);
                return;
            }
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            Err(_) => {
                self.asking.remove(&conn);
                return;
            }
        };
        let line = match buf[..n].iter().position(|&b| b == b'\n') {
            Some(end) => &buf[..end],
            None if hup || n > proto::MAX_LINE => &buf[..n],
            None => return,
        };
        let builtin = self.answer_here.then(|| ask_of(line)).flatten();
        self.handle(Event::Asked { conn, builtin }, Instant::now());
    }

    /// A client slow to send its line goes to the listener, which applies the real read
    /// timeout.
    fn ask_timeouts(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .asking
            .iter()
            .filter(|(_, a)| now >= a.since + ASK_TIME)
            .map(|(&c, _)| c)
            .collect();
        for conn in late {
            self.handle(
                Event::Asked {
                    conn,
                    builtin: None,
                },
                now,
            );
        }
    }

    // ----- on demand ----------------------------------------------------------------

    /// The held socket is readable: in proxy mode the supervisor accepts the clients
    /// itself; in handoff mode they wait in the backlog for the main process.
    fn on_connection(&mut self) {
        let Some(od) = &mut self.od else { return };
        if od.proxy.is_some() {
            let now = Instant::now();
            let (accepted, err) = accept_some(od.held.fd.as_fd(), od.room());
            let note = match err {
                Some(_) => od.gate.failed(now),
                None if !accepted.is_empty() => od.gate.succeeded(),
                None => Note::Nothing,
            };
            log_gate(note, err, "the held socket");
            od.pending.extend(accepted.into_iter().map(|fd| (fd, now)));
        }
        let pending = od.pending.len();
        self.handle(Event::Connection { pending }, Instant::now());
    }

    /// Proxied bytes are traffic.
    fn observe_proxy(&mut self, now: Instant) {
        let Some(od) = &mut self.od else { return };
        if let (Some(idle), Some(every), Some((_, p))) =
            (od.idle, od.sweep_interval(), od.proxy.as_mut())
        {
            if now >= od.next_sweep {
                od.next_sweep = now + every;
                let closed = p.close_idle(idle, now);
                if closed > 0 {
                    info!(closed, idle = %common::duration::show(idle), "closed proxied connections with no traffic");
                }
            }
        }
        let Some((_, p)) = &od.proxy else { return };
        if p.bytes() != od.last_bytes {
            od.last_bytes = p.bytes();
            self.handle(Event::Traffic, now);
        }
    }

    /// Proxy mode: connects waiting clients to the backend; returns how many still wait.
    fn connect_pending(&mut self) -> usize {
        let Some(od) = &mut self.od else { return 0 };
        let Some((backend, proxy)) = &mut od.proxy else {
            return 0;
        };
        let mut waiting = Vec::new();
        let now = Instant::now();
        let mut expired = 0;
        let mut pending = std::mem::take(&mut od.pending).into_iter();
        for (client, since) in pending.by_ref() {
            if now >= since + od.hold {
                expired += 1;
                continue;
            }
            match connect_nonblocking(backend) {
                Ok(Some(b)) => {
                    if let Err(e) = proxy.add(client, b) {
                        warn!(error = %e, "cannot proxy a connection");
                    }
                }
                // The backend's backlog is full: try again on the next turn.
                Ok(None) => waiting.push((client, since)),
                // Out of descriptors: this client and the rest wait for some to free.
                Err(e) if crate::accept::is_exhaustion(e) => {
                    waiting.push((client, since));
                    break;
                }
                Err(e) => {
                    warn!(backend = %backend.key(), error = %e, "cannot reach the backend; closing a client")
                }
            }
        }
        waiting.extend(pending);
        if expired > 0 {
            warn!(closed = expired, waited = %common::duration::show(od.hold), "closed clients that waited too long for the backend");
        }
        od.pending = waiting;
        od.pending.len()
    }
}

/// The built-in a request line asks for when it is one the supervisor answers while no
/// listener runs: exactly `ping` or `status`.
fn ask_of(line: &[u8]) -> Option<proto::Builtin> {
    match proto::parse_line(line).ok()?.as_slice() {
        [one] => proto::Builtin::parse(one)
            .filter(|b| matches!(b, proto::Builtin::Ping | proto::Builtin::Status)),
        _ => None,
    }
}

/// Answers a client the supervisor looked at: its request is read (so that closing does
/// not reset the connection under the reply), the line written, the connection closed.
fn respond(conn: &OwnedFd, line: &str) {
    let mut buf = [0u8; proto::MAX_LINE + 2];
    let _ = nix::sys::socket::recv(conn.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT);
    answer(conn, line);
}

/// The file descriptors one turn of the loop waits on. (Raw `poll(2)`: nix's `PollFlags`
/// has no `POLLRDHUP`, and drops the whole `revents` when that bit is set.)
#[derive(Default)]
struct PollSet<'a> {
    fds: Vec<libc::pollfd>,
    _borrowed: std::marker::PhantomData<BorrowedFd<'a>>,
}

impl<'a> PollSet<'a> {
    /// Adds `fd` (when there is one) waiting for `events`; returns its index.
    fn push(&mut self, fd: Option<BorrowedFd<'a>>, events: libc::c_short) -> Option<usize> {
        let fd = fd?;
        self.fds.push(libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        });
        Some(self.fds.len() - 1)
    }

    /// Waits up to `timeout_ms` (-1: no limit) for any of them.
    fn poll(&mut self, timeout_ms: i32) -> nix::Result<()> {
        // SAFETY: `fds` is a valid array of `len` pollfd structs for the whole call; the
        // descriptors are borrowed for 'a, so none is closed while we wait.
        let n = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        Errno::result(n).map(drop)
    }

    /// What happened on the descriptor at `i` (0 for none).
    fn revents(&self, i: Option<usize>) -> libc::c_short {
        i.and_then(|i| self.fds.get(i)).map_or(0, |p| p.revents)
    }
}

/// Writes `line` (when not empty) to a client, then lets the connection go. A client gone
/// already (fire and forget) makes the write fail: that's fine.
fn answer(conn: &OwnedFd, line: &str) {
    if !line.is_empty() {
        let _ = send(
            conn.as_raw_fd(),
            format!("{line}\n").as_bytes(),
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        );
    }
    let _ = nix::sys::socket::shutdown(conn.as_raw_fd(), nix::sys::socket::Shutdown::Write);
}

/// An argv as one line for the log (bytes that are not UTF-8 shown as U+FFFD).
fn shown(argv: &[std::ffi::OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let mut f = OFlag::from_bits_truncate(flags);
        f.set(OFlag::O_NONBLOCK, on);
        let _ = fcntl(fd, FcntlArg::F_SETFL(f));
    }
}

/// Starts a non-blocking connect to the backend. `Ok(None)`: a unix backend's backlog is
/// full (`EAGAIN`), try again later.
fn connect_nonblocking(addr: &Addr) -> nix::Result<Option<OwnedFd>> {
    use nix::sys::socket::{connect, socket, SockaddrIn, SockaddrIn6, UnixAddr};
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let (fd, res) = match addr {
        Addr::Unix(p) => {
            let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &UnixAddr::new(p)?);
            (fd, res)
        }
        Addr::Tcp(std::net::SocketAddr::V4(a)) => {
            let fd = socket(AddressFamily::Inet, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &SockaddrIn::from(*a));
            (fd, res)
        }
        Addr::Tcp(std::net::SocketAddr::V6(a)) => {
            let fd = socket(AddressFamily::Inet6, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &SockaddrIn6::from(*a));
            (fd, res)
        }
    };
    match res {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(Some(fd)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
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

/// Logs what a [`Gate`] says, once per run of failures.
fn log_gate(note: Note, err: Option<Errno>, what: &str) {
    match note {
        Note::Paused(pause) => warn!(
            socket = what,
            error = %err.map_or(Errno::UnknownErrno, |e| e),
            pause = ?pause,
            "out of file descriptors: not accepting for a while (logged once until it works again)"
        ),
        Note::Resumed => info!(socket = what, "accepting again"),
        Note::Nothing => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_fit_the_descriptor_limit() {
        assert_eq!(pair_cap(1024, 1 << 20), 1024);
        assert_eq!(pair_cap(1024, 1024), (1024 - 32) / 6);
        assert_eq!(pair_cap(1024, 64), (64 - 16) / 6);
        assert_eq!(pair_cap(1024, 4), 1, "always at least one");
        assert_eq!(pair_cap(10, 1024), 10);
    }
}
