//! The supervisor's event loop: one thread that reaps, reads signals from a signalfd,
//! serves the listener's control channel and keeps the deadlines (backoff, stop timeout,
//! ready probes).
//!
//! Why one thread and a signalfd: the supervisor must reap every process with
//! `waitpid(-1)`, which steals exit statuses from any other waiter in the process, so
//! nothing else may wait for children here (no tokio, no `Child::wait`). With all signals
//! blocked and read through a signalfd, signals become ordinary readable events in the
//! same `poll`, no handler runs concurrently, and no extra thread costs memory.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::{getpid, Pid};
use proto::control::{self, Command, Msg, Received};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::config::{OnDemand, Ready, Restart, Settings};
use crate::ondemand::{self, Activity};
use crate::ready;
use crate::signals::Exit;
use crate::socket::BoundSocket;
use crate::spawn;

/// How long, past the stop deadline and a KILL, the supervisor waits for the last
/// processes before it exits regardless (a process stuck in `D` state cannot be killed).
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The main process's state.
#[derive(Debug)]
enum Main {
    /// Not running: stopped by request, or not started yet.
    Down,
    /// Running; `ready` once its probe passed (at once without a probe).
    Up {
        pid: Pid,
        started: Instant,
        ready: bool,
    },
    /// Told to stop; KILLed at `deadline`. `then_start` for a `restart`.
    Stopping {
        pid: Pid,
        deadline: Instant,
        killed: bool,
        then_start: bool,
    },
    /// Waiting to be restarted after it ended.
    Backoff { until: Instant },
}

#[derive(Debug)]
enum Listener {
    Off,
    Up {
        pid: Pid,
        started: Instant,
        /// `None` once the listener closed its end (it is exiting).
        control: Option<OwnedFd>,
    },
    Backoff {
        until: Instant,
    },
    Gone,
}

/// A connection the listener is answering, kept so that it can still get an
/// `error unavailable` line if the listener dies.
struct Held {
    conn: OwnedFd,
    pgid: i32,
    action: String,
}

struct Probe {
    next: Option<Instant>,
    attempt: u32,
    pid: Option<Pid>,
}

/// On-demand state: the held socket and what is known of its traffic.
struct Od {
    cfg: OnDemand,
    held: ondemand::Held,
    /// Connections accepted while the backend starts (proxy mode).
    pending: Vec<OwnedFd>,
    last_activity: Instant,
    activity: Activity,
    next_scan: Instant,
    /// Handoff mode: the listening socket is not polled again before this (see ondemand).
    quiet_until: Instant,
    start_deadline: Option<Instant>,
    /// A failed start is not retried before this.
    retry_after: Instant,
    backoff: Backoff,
    /// Proxy mode: the backend's address and the byte pump.
    proxy: Option<(ondemand::Addr, crate::proxy::Proxy)>,
    last_bytes: u64,
}

impl Od {
    fn scan_interval(&self) -> Duration {
        (self.cfg.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// The supervisor. Fields are the whole state; `step`-like methods below change it in
/// response to one event each.
pub struct Supervisor {
    s: Settings,
    self_exe: PathBuf,
    pid1: bool,
    socket: BoundSocket,
    main: Main,
    last_exit: Option<Exit>,
    restarts: u32,
    main_backoff: Backoff,
    probe: Probe,
    listener: Listener,
    listener_backoff: Backoff,
    held: HashMap<u64, Held>,
    next_id: u64,
    stop_waiters: Vec<u64>,
    restart_waiters: Vec<u64>,
    /// Set once the container is going down: the stop deadline.
    shutdown: Option<Instant>,
    others_signalled: bool,
    killed_all: bool,
    od: Option<Od>,
    /// When start-up code pages are given back (see `trim`): not at once, so that a
    /// short-lived container does not pay page faults for it.
    trim_at: Option<Instant>,
    /// `ready = "notify"`: where the main process says `READY=1`.
    notify: Option<std::os::unix::net::UnixDatagram>,
}

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
        let listener = if s.listener.is_some() {
            Listener::Backoff {
                until: Instant::now(),
            }
        } else {
            Listener::Off
        };
        let now = Instant::now();
        let proxy = s
            .on_demand
            .as_ref()
            .and_then(|o| o.backend.as_deref())
            .and_then(|b| {
                let addr = ondemand::Addr::parse(b).ok()?;
                match crate::proxy::Proxy::new() {
                    Ok(p) => Some((addr, p)),
                    Err(e) => {
                        error!(error = %e, "cannot create the proxy");
                        None
                    }
                }
            });
        if let (Some(_), Some(h)) = (&proxy, &held) {
            // Only the supervisor accepts on it in proxy mode.
            let _ = nix::fcntl::fcntl(
                &h.fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
        }
        let od = match (s.on_demand.clone(), held) {
            (Some(cfg), Some(held)) => Some(Od {
                cfg,
                held,
                pending: Vec::new(),
                last_activity: now,
                activity: Activity::default(),
                next_scan: now,
                quiet_until: now,
                start_deadline: None,
                retry_after: now,
                backoff: Backoff::new(
                    Duration::from_millis(100),
                    Duration::from_secs(10),
                    Duration::from_secs(60),
                ),
                proxy,
                last_bytes: 0,
            }),
            _ => None,
        };
        Supervisor {
            s,
            self_exe,
            pid1,
            socket,
            main: Main::Down,
            last_exit: None,
            restarts: 0,
            main_backoff: Backoff::new(
                Duration::from_millis(250),
                Duration::from_secs(30),
                Duration::from_secs(10),
            ),
            probe: Probe {
                next: None,
                attempt: 0,
                pid: None,
            },
            listener,
            listener_backoff: Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(10),
                Duration::from_secs(10),
            ),
            held: HashMap::new(),
            next_id: 1,
            stop_waiters: Vec::new(),
            restart_waiters: Vec::new(),
            shutdown: None,
            others_signalled: false,
            killed_all: false,
            od,
            notify: None,
            trim_at: Some(now + Duration::from_secs(2)),
        }
    }

    /// Runs until the container should end; returns the exit code.
    pub fn run(mut self, sigfd: SignalFd) -> i32 {
        if let Some(path) = self.s.notify_path() {
            let _ = std::fs::remove_file(&path);
            match std::os::unix::net::UnixDatagram::bind(&path)
                .and_then(|d| d.set_nonblocking(true).map(|_| d))
            {
                Ok(d) => self.notify = Some(d),
                Err(e) => {
                    error!(path = %path.display(), error = %e, "cannot create the notify socket; the main process will never be ready")
                }
            }
        }
        let now = Instant::now();
        // The main process first: it is what the container is for; the listener's
        // requests wait in the socket's backlog meanwhile.
        if let Some(od) = &self.od {
            info!(listen = %od.held.addr.key(), mode = if od.cfg.backend.is_some() { "proxy" } else { "handoff" }, "holding the socket; the main process starts on the first connection");
        } else if let Err(code) = self.start_main(now) {
            self.begin_shutdown(now, None);
            self.last_exit = Some(Exit::Code(code));
        }
        self.tick(now); // starts the listener
        let mut reaped = Vec::new();
        // Reap at start and after every SIGCHLD (the signalfd never loses one: a child
        // that ends after a reap leaves SIGCHLD pending again).
        let mut reap_due = true;
        let mut no_children = false;
        loop {
            let now = Instant::now();
            if reap_due {
                reap_due = false;
                reaped.clear();
                no_children = crate::reap::reap_all(&mut reaped);
                for &(pid, exit) in &reaped {
                    self.on_exit(pid, exit, now);
                }
            }
            self.tick(now);
            if self.finished(no_children, now) {
                break;
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let control = match &self.listener {
                // SAFETY: the fd belongs to `self.listener`, which is not changed until
                // `fds` is dropped below.
                Listener::Up {
                    control: Some(control),
                    ..
                } => Some(unsafe { BorrowedFd::borrow_raw(control.as_raw_fd()) }),
                _ => None,
            };
            let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            // SAFETY: the held socket lives in `self.od` for the supervisor's whole life.
            let od_fd = self.want_listen_poll(now).then(|| unsafe {
                BorrowedFd::borrow_raw(self.od.as_ref().map_or(-1, |o| o.held.raw()))
            });
            let od_at = od_fd.map(|fd| {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                fds.len() - 1
            });
            let ctl_at = control.map(|c| {
                fds.push(PollFd::new(c, PollFlags::POLLIN));
                fds.len() - 1
            });
            let proxy_at = self
                .od
                .as_ref()
                .and_then(|o| o.proxy.as_ref())
                .map(|(_, p)| {
                    // SAFETY: the proxy lives in `self.od` for the supervisor's whole life.
                    fds.push(PollFd::new(
                        unsafe { BorrowedFd::borrow_raw(p.as_fd().as_raw_fd()) },
                        PollFlags::POLLIN,
                    ));
                    fds.len() - 1
                });
            let notify_at = self.notify.as_ref().map(|n| {
                fds.push(PollFd::new(n.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let pt = match timeout {
                None => PollTimeout::NONE,
                Some(t) => PollTimeout::try_from(t.as_millis().clamp(1, 60_000) as i32)
                    .unwrap_or(PollTimeout::MAX),
            };
            match poll(&mut fds, pt) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    error!(error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let ready = |i: Option<usize>| {
                i.and_then(|i| fds[i].revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let (sig_ready, od_ready, ctl_ready) = (ready(Some(0)), ready(od_at), ready(ctl_at));
            let notify_ready = ready(notify_at);
            let proxy_ready = ready(proxy_at);
            drop(fds);
            if proxy_ready {
                if let Some((_, p)) = self.od.as_mut().and_then(|o| o.proxy.as_mut()) {
                    p.run_ready();
                }
            }
            if notify_ready && self.notify.as_ref().is_some_and(ready::read_notify) {
                self.set_ready(Instant::now());
            }
            if od_ready {
                self.on_connection(Instant::now());
            }
            if sig_ready {
                while let Ok(Some(info)) = sigfd.read_signal() {
                    reap_due |= info.ssi_signo == Signal::SIGCHLD as u32;
                    self.on_signal(info.ssi_signo as i32, Instant::now());
                }
            }
            if ctl_ready {
                self.on_control();
            }
        }
        self.answer_held("shutting down");
        self.socket.remove();
        if let Some(od) = &self.od {
            od.held.remove();
        }
        if let Some(p) = self.s.notify_path() {
            let _ = std::fs::remove_file(p);
        }
        let code = self.last_exit.map_or(0, Exit::code);
        info!(code, "exit");
        code
    }

    // ----- events -------------------------------------------------------------------

    fn on_signal(&mut self, signo: i32, now: Instant) {
        let Ok(sig) = Signal::try_from(signo) else {
            return;
        };
        match sig {
            Signal::SIGCHLD => {} // the loop reaps
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => {
                // TERM is what `docker stop` sends: it becomes `stop_signal`. INT and QUIT
                // are passed on as themselves. All three stop the container.
                let fwd = if sig == Signal::SIGTERM {
                    self.s.stop_signal
                } else {
                    sig
                };
                info!(signal = sig.as_str(), forward = fwd.as_str(), "stopping");
                self.begin_shutdown(now, Some(fwd));
            }
            Signal::SIGHUP | Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGWINCH => {
                if let Some(pid) = self.main_pid() {
                    debug!(signal = sig.as_str(), pid = pid.as_raw(), "forwarding");
                    signal_group(pid, sig);
                }
            }
            _ => debug!(signal = sig.as_str(), "ignored"),
        }
    }

    fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant) {
        if self.probe.pid == Some(pid) {
            self.probe.pid = None;
            if exit.success() {
                self.set_ready(now);
            }
            return;
        }
        if let Listener::Up {
            pid: lpid, started, ..
        } = &self.listener
        {
            if *lpid == pid {
                let started = *started;
                self.on_listener_exit(pid, exit, started, now);
                return;
            }
        }
        match &self.main {
            Main::Up {
                pid: p, started, ..
            } if *p == pid => {
                let started = *started;
                self.on_main_exit(pid, exit, Some(started), false, now)
            }
            Main::Stopping {
                pid: p, then_start, ..
            } if *p == pid => {
                let then_start = *then_start;
                self.on_main_exit(pid, exit, None, then_start, now)
            }
            _ => debug!(pid = pid.as_raw(), %exit, "reaped"),
        }
    }

    fn on_main_exit(
        &mut self,
        pid: Pid,
        exit: Exit,
        started: Option<Instant>,
        then_start: bool,
        now: Instant,
    ) {
        info!(child = "main", %exit, "exited");
        if self.shutdown.is_none() && killpg(pid, Signal::SIGKILL).is_ok() {
            // Workers of a main process that crashed would keep its sockets and ports and
            // make the next start fail ("address in use"): its group goes with it.
            warn!(
                child = "main",
                pgid = pid.as_raw(),
                "killed what was left of its process group"
            );
        }
        self.last_exit = Some(exit);
        self.main = Main::Down;
        self.probe = Probe {
            next: None,
            attempt: 0,
            pid: self.probe.pid,
        };
        if let Some(od) = &self.od {
            match od.held.relink() {
                Ok(true) => {
                    info!(path = %od.held.addr.key(), "restored the socket's name after the main process removed it")
                }
                Ok(false) => {}
                Err(e) => {
                    error!(path = %od.held.addr.key(), error = %e, "cannot restore the socket's name")
                }
            }
        }
        if self.shutdown.is_some() {
            return;
        }
        if let (Some(od), false) = (&self.od, then_start) {
            // On demand, an exit is not the container's end: the socket stays held and the
            // next connection starts the main process again. Exiting before it was ready
            // is a failed start.
            let failed = od.start_deadline.is_some() || started.is_some();
            if od.start_deadline.is_some() {
                self.fail_start(
                    now,
                    "on-demand start failed: the main process exited before it was ready",
                );
            } else if started.is_some() {
                // It ended by itself: clients waiting for it are told at once, and a crash
                // loop is paced by the backoff.
                self.fail_start(
                    now,
                    "the main process exited by itself; the next connection starts it again",
                );
            }
            if let Some(od) = &mut self.od {
                if let Some((_, p)) = &mut od.proxy {
                    p.close_all();
                }
                // Clients that arrived while it was stopping for idleness start it again.
                if !failed && !od.pending.is_empty() && self.start_main(now).is_ok() {
                    if let Some(od) = &mut self.od {
                        od.start_deadline = Some(now + od.cfg.start_timeout);
                    }
                }
            }
            for seq in std::mem::take(&mut self.stop_waiters) {
                self.reply(seq, format!("stopped exit={}", exit.code()));
            }
            return;
        }
        if then_start {
            let reply = match self.start_main(now) {
                Ok(pid) => format!("restarted pid={pid}"),
                Err(code) => format!("error unavailable restart failed with exit {code}"),
            };
            for seq in std::mem::take(&mut self.restart_waiters) {
                self.reply(seq, reply.clone());
            }
            return;
        }
        let Some(started) = started else {
            // A requested stop finished.
            for seq in std::mem::take(&mut self.stop_waiters) {
                self.reply(seq, format!("stopped exit={}", exit.code()));
            }
            return;
        };
        let again = match self.s.restart {
            Restart::No => false,
            Restart::OnFailure => !exit.success(),
            Restart::Always => true,
        };
        if again {
            let delay = self.main_backoff.delay(started, now);
            info!(child = "main", delay = %humantime::format_duration(delay), "restarting after backoff");
            self.main = Main::Backoff { until: now + delay };
        } else {
            self.begin_shutdown(now, None);
        }
    }

    fn on_listener_exit(&mut self, pid: Pid, exit: Exit, started: Instant, now: Instant) {
        // What the listener sent just before it died (a `hold` for an action it had just
        // started) may still wait on the control channel: take it in first, so that its
        // client gets its answer and its action is stopped like every other held one.
        if let Listener::Up { control, .. } = &mut self.listener {
            if let Some(control) = control.take() {
                self.drain_control(&control);
            }
        }
        if self.shutdown.is_some() {
            info!(child = "listener", %exit, "exited");
            self.listener = Listener::Gone;
            self.answer_held("shutting down");
            return;
        }
        let delay = self.listener_backoff.delay(started, now);
        error!(child = "listener", %exit, held = self.held.len(), delay = %humantime::format_duration(delay), "crashed; restarting");
        let held: Vec<i32> = self.held.values().map(|h| h.pgid).collect();
        self.answer_held(&format!(
            "listener crashed ({exit}); the action was stopped"
        ));
        // The rest of what it started: an action it had not reported yet, a callback's
        // background job in a group of its own. All of it is in the listener's session.
        let others: Vec<Pid> = groups_in_session(pid)
            .into_iter()
            .filter(|g| !held.contains(&g.as_raw()))
            .collect();
        if !others.is_empty() {
            warn!(groups = ?others, "stopping what the crashed listener had started and not reported");
            for g in others {
                let _ = killpg(g, Signal::SIGTERM);
            }
        }
        self.listener = Listener::Backoff { until: now + delay };
    }

    /// Writes `error unavailable` to every held connection and stops their actions: no one
    /// is left to report their outcome, and a new listener must be free to run them again.
    fn answer_held(&mut self, why: &str) {
        for (id, h) in self.held.drain() {
            let line = format!(
                "{}\n",
                proto::Reply::error(
                    proto::ErrorCode::Unavailable,
                    format!("request {id} ({}): {why}", h.action)
                )
            );
            let _ = send(
                h.conn.as_raw_fd(),
                line.as_bytes(),
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            );
            if h.pgid > 1 {
                let _ = killpg(Pid::from_raw(h.pgid), Signal::SIGTERM);
            }
        }
    }

    /// A held request is over: its `done` line goes to the client, then the connection.
    fn release(&mut self, id: u64, reply: &str) {
        if let Some(h) = self.held.remove(&id) {
            if !reply.is_empty() {
                // A client gone already (fire and forget) makes this fail: that's fine.
                let _ = send(
                    h.conn.as_raw_fd(),
                    format!("{reply}\n").as_bytes(),
                    MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
                );
                let _ = nix::sys::socket::shutdown(
                    h.conn.as_raw_fd(),
                    nix::sys::socket::Shutdown::Write,
                );
            }
        }
    }

    /// Takes in a `hold` (with its connection) or a `release`; gives back any other message.
    fn take_in(&mut self, msg: Msg, fd: Option<OwnedFd>) -> Option<Msg> {
        match (msg, fd) {
            (Msg::Hold { id, pgid, action }, Some(conn)) => {
                self.next_id = self.next_id.max(id + 1);
                self.held.insert(id, Held { conn, pgid, action });
                None
            }
            (Msg::Release { id, reply }, _) => {
                self.release(id, &reply);
                None
            }
            (msg, _) => Some(msg),
        }
    }

    /// Takes the `hold` and `release` messages still queued on a dead listener's channel.
    fn drain_control(&mut self, control: &OwnedFd) {
        loop {
            match control::recv(control.as_fd()) {
                Ok(Received::Msg(m, fd)) => {
                    let _ = self.take_in(m, fd);
                }
                Ok(Received::Invalid(_)) | Err(Errno::EINTR) => {}
                Ok(Received::Eof) | Err(_) => return,
            }
        }
    }

    fn on_control(&mut self) {
        loop {
            let got = match &self.listener {
                Listener::Up {
                    control: Some(control),
                    ..
                } => control::recv(control.as_fd()),
                _ => return,
            };
            match got {
                Ok(Received::Msg(m, fd)) => match self.take_in(m, fd) {
                    None => {}
                    Some(Msg::Cmd { seq, cmd }) => self.on_command(seq, cmd, Instant::now()),
                    Some(m) => warn!(msg = ?m, "unexpected control message"),
                },
                Ok(Received::Invalid(t)) => warn!(msg = %t, "invalid control message"),
                Err(Errno::EAGAIN) => return,
                Ok(Received::Eof) => {
                    if let Listener::Up { pid, control, .. } = &mut self.listener {
                        *control = None;
                        if self.shutdown.is_none() {
                            // A listener that closed its control channel cannot work.
                            warn!(child = "listener", "closed its control channel; killing it");
                            signal_group(*pid, Signal::SIGKILL);
                        }
                    }
                    return;
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!(error = %e, "control channel");
                    return;
                }
            }
        }
    }

    fn on_command(&mut self, seq: u64, cmd: Command, now: Instant) {
        // `status` is what health checks ask every few seconds: keep it out of the log.
        if cmd == Command::Status {
            debug!(command = cmd.as_str(), "request");
        } else {
            info!(command = cmd.as_str(), "request");
        }
        if self.shutdown.is_some() && cmd != Command::Status {
            return self.reply(seq, "error shutting-down the container is stopping".into());
        }
        match cmd {
            Command::Status => {
                let text = self.status_line(now);
                self.reply(seq, text)
            }
            Command::Start => match &self.main {
                Main::Up { pid, .. } => self.reply(seq, format!("running pid={pid}")),
                Main::Stopping { pid, .. } => {
                    self.reply(seq, format!("error busy stopping pid={pid}"))
                }
                Main::Down | Main::Backoff { .. } => {
                    let text = match self.start_main(now) {
                        Ok(pid) => format!("started pid={pid}"),
                        Err(code) => format!("error unavailable start failed with exit {code}"),
                    };
                    self.reply(seq, text)
                }
            },
            Command::Stop => match &self.main {
                Main::Up { pid, .. } => {
                    let pid = *pid;
                    self.stop_main(pid, now, false);
                    self.stop_waiters.push(seq);
                }
                Main::Stopping { .. } => self.stop_waiters.push(seq),
                Main::Backoff { .. } | Main::Down => {
                    self.main = Main::Down;
                    self.reply(seq, "stopped".into())
                }
            },
            Command::Restart => match &self.main {
                Main::Up { pid, .. } => {
                    let pid = *pid;
                    self.stop_main(pid, now, true);
                    self.restart_waiters.push(seq);
                }
                &Main::Stopping {
                    pid,
                    deadline,
                    killed,
                    ..
                } => {
                    self.main = Main::Stopping {
                        pid,
                        deadline,
                        killed,
                        then_start: true,
                    };
                    self.restart_waiters.push(seq);
                }
                Main::Down | Main::Backoff { .. } => {
                    let text = match self.start_main(now) {
                        Ok(pid) => format!("restarted pid={pid}"),
                        Err(code) => format!("error unavailable start failed with exit {code}"),
                    };
                    self.reply(seq, text)
                }
            },
            Command::Reload => match self.main_pid() {
                Some(pid) => {
                    signal_group(pid, Signal::SIGHUP);
                    self.reply(seq, format!("reloaded pid={pid}"))
                }
                None => self.reply(
                    seq,
                    "error unavailable the main process is not running".into(),
                ),
            },
        }
    }

    fn reply(&mut self, seq: u64, text: String) {
        if let Listener::Up {
            control: Some(control),
            ..
        } = &self.listener
        {
            if let Err(e) = control::send(control.as_fd(), &Msg::Reply { seq, text }, None) {
                warn!(error = %e, "cannot answer the listener");
            }
        }
    }

    // ----- on demand ----------------------------------------------------------------

    /// Whether the held socket is polled this turn (see `ondemand` for handoff's throttle).
    fn want_listen_poll(&self, now: Instant) -> bool {
        let Some(od) = &self.od else { return false };
        if self.shutdown.is_some() {
            return false;
        }
        match &self.main {
            Main::Down => now >= od.retry_after,
            Main::Up { .. } => od.cfg.backend.is_some() || now >= od.quiet_until,
            Main::Stopping { .. } | Main::Backoff { .. } => od.cfg.backend.is_some(),
        }
    }

    /// The held socket is readable: a client is waiting.
    fn on_connection(&mut self, now: Instant) {
        let Some(od) = &mut self.od else { return };
        let proxy = od.cfg.backend.is_some();
        if proxy {
            od.pending.extend(accept_ready(od.held.raw(), false));
        }
        od.last_activity = now;
        match self.main {
            Main::Down => {
                info!(listen = %od.held.addr.key(), "connection while idle; starting the main process");
                match self.start_main(now) {
                    Ok(_) => {
                        if let Some(od) = &mut self.od {
                            od.start_deadline = Some(now + od.cfg.start_timeout);
                        }
                    }
                    Err(_) => self.fail_start(
                        now,
                        "on-demand start failed: the main process could not be started",
                    ),
                }
            }
            _ if !proxy => od.quiet_until = now + Duration::from_secs(1),
            _ => self.connect_pending(),
        }
    }

    /// Proxy mode: connects held clients to the backend once it is ready.
    fn connect_pending(&mut self) {
        if !matches!(self.main, Main::Up { ready: true, .. }) {
            return;
        }
        let Some(od) = &mut self.od else { return };
        let Some((backend, proxy)) = &mut od.proxy else {
            return;
        };
        let mut waiting = Vec::new();
        for client in od.pending.drain(..) {
            match connect_nonblocking(backend) {
                Ok(Some(b)) => {
                    if let Err(e) = proxy.add(client, b) {
                        warn!(error = %e, "cannot proxy a connection");
                    }
                }
                // The backend's backlog is full: try again on the next turn.
                Ok(None) => waiting.push(client),
                Err(e) => {
                    warn!(backend = %backend.key(), error = %e, "cannot reach the backend; closing a client")
                }
            }
        }
        od.pending = waiting;
    }

    /// A start failed: every held client is closed at once (they would otherwise wait for
    /// a backend that is not coming), and the next try waits for the backoff.
    fn fail_start(&mut self, now: Instant, why: &str) {
        let Some(od) = &mut self.od else { return };
        let mut closed = od.pending.len();
        od.pending.clear();
        if od.cfg.backend.is_none() {
            // Handoff: the clients wait in the kernel's backlog of the held socket.
            closed += accept_ready(od.held.raw(), true).len();
        }
        let delay = od.backoff.delay(now, now);
        od.retry_after = now + delay;
        od.start_deadline = None;
        error!(listen = %od.held.addr.key(), closed, retry_in = ?delay, "{why}");
    }

    fn tick_on_demand(&mut self, now: Instant) {
        let Some(od) = &mut self.od else { return };
        if self.shutdown.is_some() {
            return;
        }
        match self.main {
            Main::Up {
                pid, ready: false, ..
            } if od.start_deadline.is_some_and(|d| now >= d) => {
                let t = od.cfg.start_timeout;
                self.fail_start(
                    now,
                    &format!(
                        "on-demand start failed: not ready within {}",
                        humantime::format_duration(t)
                    ),
                );
                self.stop_main(pid, now, false);
            }
            Main::Up {
                pid, ready: true, ..
            } => {
                od.start_deadline = None;
                if let Some((_, p)) = &od.proxy {
                    if p.bytes() != od.last_bytes {
                        od.last_bytes = p.bytes();
                        od.last_activity = now;
                    }
                }
                if !od.pending.is_empty() {
                    self.connect_pending();
                    return;
                }
                if od.cfg.backend.is_none() && now >= od.next_scan {
                    if od.activity.scan(&od.held.addr) {
                        od.last_activity = now;
                    }
                    od.next_scan = now + od.scan_interval();
                }
                if now.saturating_duration_since(od.last_activity) >= od.cfg.idle {
                    info!(idle = %humantime::format_duration(od.cfg.idle), "no traffic; stopping the main process");
                    self.stop_main(pid, now, false);
                }
            }
            _ => {}
        }
    }

    // ----- actions ------------------------------------------------------------------

    fn start_main(&mut self, now: Instant) -> Result<Pid, i32> {
        let key = self.od.as_ref().map(|o| o.held.addr.key());
        let name = key
            .as_deref()
            .map(|k| k.rsplit('/').next().unwrap_or(k).to_string());
        let handoff = match (&self.od, &key, &name) {
            (Some(od), Some(key), Some(name)) if od.cfg.backend.is_none() => Some(spawn::Handoff {
                fd: od.held.raw(),
                key,
                name,
            }),
            _ => None,
        };
        match spawn::spawn_main(&self.s, &self.self_exe, handoff) {
            Ok(pid) => {
                if self.last_exit.is_some() {
                    self.restarts += 1;
                }
                info!(child = "main", pid = pid.as_raw(), cmd = %self.s.exec.join(" "), "spawned");
                self.main = Main::Up {
                    pid,
                    started: now,
                    ready: self.s.ready.is_none(),
                };
                self.probe = Probe {
                    next: self
                        .s
                        .ready
                        .as_ref()
                        .filter(|r| **r != Ready::Notify)
                        .map(|_| now),
                    attempt: 0,
                    pid: None,
                };
                Ok(pid)
            }
            Err(e) => {
                let code = match e.kind() {
                    std::io::ErrorKind::NotFound => 127,
                    _ => 126,
                };
                error!(child = "main", cmd = %self.s.exec.join(" "), error = %e, code, "cannot start");
                self.last_exit = Some(Exit::Code(code));
                self.main = Main::Down;
                Err(code)
            }
        }
    }

    fn stop_main(&mut self, pid: Pid, now: Instant, then_start: bool) {
        info!(
            child = "main",
            pid = pid.as_raw(),
            signal = self.s.stop_signal.as_str(),
            "stopping"
        );
        signal_group(pid, self.s.stop_signal);
        self.main = Main::Stopping {
            pid,
            deadline: now + self.s.stop_timeout,
            killed: false,
            then_start,
        };
    }

    /// The container stops: `forward` is the signal for the main process (none when it
    /// has already ended).
    fn begin_shutdown(&mut self, now: Instant, forward: Option<Signal>) {
        if let Some(od) = &mut self.od {
            od.pending.clear();
        }
        if self.shutdown.is_none() {
            self.shutdown = Some(now + self.s.stop_timeout);
            if let Listener::Up { pid, .. } = &self.listener {
                signal_group(*pid, Signal::SIGTERM);
            } else {
                self.listener = match self.listener {
                    Listener::Off => Listener::Off,
                    _ => Listener::Gone,
                };
            }
            for seq in std::mem::take(&mut self.stop_waiters)
                .into_iter()
                .chain(std::mem::take(&mut self.restart_waiters))
            {
                self.reply(seq, "error shutting-down the container is stopping".into());
            }
        }
        match &self.main {
            Main::Up { pid, .. } | Main::Stopping { pid, .. } => {
                let pid = *pid;
                if let Some(sig) = forward {
                    signal_group(pid, sig);
                }
                let deadline = self.shutdown.unwrap_or(now);
                let killed = matches!(self.main, Main::Stopping { killed: true, .. });
                self.main = Main::Stopping {
                    pid,
                    deadline,
                    killed,
                    then_start: false,
                };
            }
            Main::Backoff { .. } | Main::Down => self.main = Main::Down,
        }
    }

    /// Acts on every deadline that has passed.
    fn tick(&mut self, now: Instant) {
        if let Main::Backoff { until } = self.main {
            if now >= until && self.shutdown.is_none() {
                let _ = self.start_main(now);
            }
        }
        if let Main::Stopping {
            pid,
            deadline,
            killed: false,
            then_start,
        } = self.main
        {
            if now >= deadline {
                warn!(
                    child = "main",
                    pid = pid.as_raw(),
                    "stop timeout; sending KILL"
                );
                signal_group(pid, Signal::SIGKILL);
                self.main = Main::Stopping {
                    pid,
                    deadline,
                    killed: true,
                    then_start,
                };
            }
        }
        if let Listener::Backoff { until } = self.listener {
            if now >= until && self.shutdown.is_none() {
                self.start_listener(now);
            }
        }
        if self.probe.pid.is_none() && self.probe.next.is_some_and(|n| now >= n) {
            self.run_probe(now);
        }
        self.tick_on_demand(now);
        if self.trim_at.is_some_and(|t| now >= t) {
            self.trim_at = None;
            crate::trim::release_startup_text();
        }
        if let Some(deadline) = self.shutdown {
            let main_down = matches!(self.main, Main::Down);
            let listener_down = !matches!(self.listener, Listener::Up { .. });
            if main_down && listener_down && !self.others_signalled {
                // Whatever else is left (daemonised helpers, stray action children) gets
                // the same polite request before the deadline's KILL.
                self.others_signalled = true;
                self.signal_others(Signal::SIGTERM);
            }
            if now >= deadline && !self.killed_all {
                self.killed_all = true;
                warn!("stop timeout; sending KILL to what is left");
                if let Some(pid) = self.main_pid() {
                    signal_group(pid, Signal::SIGKILL);
                }
                if let Listener::Up { pid, .. } = &self.listener {
                    signal_group(*pid, Signal::SIGKILL);
                }
                for h in self.held.values() {
                    if h.pgid > 1 {
                        let _ = killpg(Pid::from_raw(h.pgid), Signal::SIGKILL);
                    }
                }
                self.signal_others(Signal::SIGKILL);
            }
        }
    }

    fn finished(&self, no_children: bool, now: Instant) -> bool {
        let Some(deadline) = self.shutdown else {
            return false;
        };
        let down = matches!(self.main, Main::Down) && !matches!(self.listener, Listener::Up { .. });
        down && (no_children || now >= deadline + KILL_GRACE)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut d: Vec<Instant> = Vec::new();
        d.extend(self.trim_at);
        match &self.main {
            Main::Backoff { until } => d.push(*until),
            Main::Stopping {
                deadline,
                killed: false,
                ..
            } => d.push(*deadline),
            _ => {}
        }
        if let Listener::Backoff { until } = &self.listener {
            d.push(*until);
        }
        if self.probe.pid.is_none() {
            d.extend(self.probe.next);
        }
        if let Some(s) = self.shutdown {
            d.push(if self.killed_all { s + KILL_GRACE } else { s });
        }
        if let (Some(od), None) = (&self.od, self.shutdown) {
            match &self.main {
                // Past instants are not deadlines: once `retry_after` or `quiet_until`
                // has passed, the held socket itself is polled and wakes the loop.
                Main::Down if od.retry_after > now => d.push(od.retry_after),
                Main::Up { ready: false, .. } => d.extend(od.start_deadline),
                Main::Up { ready: true, .. } => {
                    d.push(od.last_activity + od.cfg.idle);
                    if !od.pending.is_empty() {
                        d.push(now + Duration::from_millis(1));
                    }
                    if od.cfg.backend.is_none() {
                        d.push(od.next_scan);
                        if od.quiet_until > now {
                            d.push(od.quiet_until);
                        }
                    }
                }
                _ => {}
            }
        }
        d.into_iter().min()
    }

    fn start_listener(&mut self, now: Instant) {
        let Some(exe) = self.s.listener.clone() else {
            return;
        };
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
                self.listener = Listener::Backoff {
                    until: now + Duration::from_secs(1),
                };
                return;
            }
        };
        let _ = nix::fcntl::fcntl(
            &ours,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        let mut env = self.s.listener_env.clone();
        env.push(("BOSUN_NEXT_ID".into(), self.next_id.to_string()));
        match spawn::spawn_listener(&exe, self.socket.fd.as_fd(), theirs.as_fd(), &env) {
            Ok(pid) => {
                info!(child = "listener", pid = pid.as_raw(), "spawned");
                self.listener = Listener::Up {
                    pid,
                    started: now,
                    control: Some(ours),
                };
            }
            Err(e) => {
                let delay = self.listener_backoff.delay(now, now);
                error!(child = "listener", error = %e, "cannot start");
                self.listener = Listener::Backoff { until: now + delay };
            }
        }
    }

    fn run_probe(&mut self, now: Instant) {
        let Some(r) = self.s.ready.clone() else {
            return;
        };
        if !matches!(self.main, Main::Up { ready: false, .. }) {
            self.probe.next = None;
            return;
        }
        // A client is waiting on an on-demand start: probe often so readiness is seen within
        // a few milliseconds.
        let interval = if self.od.is_some() {
            Duration::from_millis(1)
        } else {
            ready::next_interval(self.probe.attempt)
        };
        self.probe.next = Some(now + interval);
        self.probe.attempt += 1;
        match ready::check_connect(&r) {
            Some(true) => self.set_ready(now),
            Some(false) => {}
            None => {
                if let Ready::Exec(cmd) = &r {
                    match spawn::spawn_probe(cmd) {
                        Ok(pid) => self.probe.pid = Some(pid),
                        Err(e) => warn!(error = %e, "cannot run the ready probe"),
                    }
                }
            }
        }
    }

    fn set_ready(&mut self, now: Instant) {
        if let Main::Up {
            pid,
            started,
            ready: false,
        } = self.main
        {
            info!(child = "main", pid = pid.as_raw(), after = ?now.saturating_duration_since(started), "ready");
            self.main = Main::Up {
                pid,
                started,
                ready: true,
            };
            self.probe.next = None;
            if let Some(od) = &mut self.od {
                od.start_deadline = None;
                od.last_activity = now;
            }
            self.connect_pending();
        }
    }

    /// Signals every process left besides ourselves: all of them as PID 1, our direct
    /// children (orphans adopted as subreaper included) otherwise.
    fn signal_others(&self, sig: Signal) {
        if self.pid1 {
            let _ = kill(Pid::from_raw(-1), sig);
            return;
        }
        for pid in children_of(getpid()) {
            let _ = kill(pid, sig);
        }
    }

    fn main_pid(&self) -> Option<Pid> {
        match &self.main {
            Main::Up { pid, .. } | Main::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// The one-line state used by `status` and `supervisor status`:
    /// `<service> <state> pid=<pid> ready=<yes|no> restarts=<n> uptime=<secs>s`.
    fn status_line(&self, now: Instant) -> String {
        let (state, pid, ready, up) = match &self.main {
            Main::Up {
                pid,
                started,
                ready,
            } => (
                if *ready { "running" } else { "starting" },
                Some(*pid),
                *ready,
                Some(*started),
            ),
            Main::Stopping { pid, .. } => ("stopping", Some(*pid), false, None),
            Main::Backoff { .. } => ("backoff", None, false, None),
            Main::Down => ("stopped", None, false, None),
        };
        let state = match (&self.od, &self.main) {
            _ if self.shutdown.is_some() => "exiting",
            (Some(_), Main::Down) => "idle",
            _ => state,
        };
        let mut line = format!(
            "{} {state} pid={} ready={} restarts={}",
            self.s.service,
            pid.map_or("-".to_string(), |p| p.to_string()),
            if ready { "yes" } else { "no" },
            self.restarts
        );
        if let Some(up) = up {
            line.push_str(&format!(
                " uptime={}s",
                now.saturating_duration_since(up).as_secs()
            ));
        }
        if let Some(e) = self.last_exit {
            line.push_str(&format!(" last_exit={}", e.code()));
        }
        if self.od.is_some() {
            line.push_str(" on_demand=held");
        }
        line
    }
}

/// Signals a process group, falling back to the process alone when it has no group of its
/// own yet (between fork and setpgid). `ESRCH` means it is already gone: fine.
fn signal_group(pid: Pid, sig: Signal) {
    if killpg(pid, sig) == Err(Errno::ESRCH) {
        let _ = kill(pid, sig);
    }
}

/// Direct children of `parent` (ourselves; the supervisor has one thread, so its task
/// file lists them all), or by reading every `/proc/*/stat` where that file is missing.
fn children_of(parent: Pid) -> Vec<Pid> {
    if let Ok(list) = std::fs::read_to_string(format!("/proc/self/task/{parent}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(Pid::from_raw)
            .collect();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command name may hold spaces and parentheses: parse after the last ')'.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<i32>().ok()
                })
                == Some(parent.as_raw())
        })
        .map(Pid::from_raw)
        .collect()
}

/// The process groups of session `sid` (every `/proc/*/stat` read; only after a crash).
fn groups_in_session(sid: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut groups: Vec<Pid> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name (which may hold ')'): state ppid pgrp session.
            let mut f = stat[stat.rfind(')')? + 2..].split(' ').skip(2);
            let pgrp: i32 = f.next()?.parse().ok()?;
            let session: i32 = f.next()?.parse().ok()?;
            (session == sid.as_raw() && pgrp > 1).then_some(Pid::from_raw(pgrp))
        })
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// Starts a non-blocking connect to the backend. `Ok(None)`: a unix backend's backlog is
/// full (`EAGAIN`), try again later.
fn connect_nonblocking(addr: &ondemand::Addr) -> nix::Result<Option<OwnedFd>> {
    use nix::sys::socket::{connect, socket, SockaddrIn, SockaddrIn6, UnixAddr};
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let (fd, res) = match addr {
        ondemand::Addr::Unix(p) => {
            let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &UnixAddr::new(p)?);
            (fd, res)
        }
        ondemand::Addr::Tcp(std::net::SocketAddr::V4(a)) => {
            let fd = socket(AddressFamily::Inet, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &SockaddrIn::from(*a));
            (fd, res)
        }
        ondemand::Addr::Tcp(std::net::SocketAddr::V6(a)) => {
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

/// Accepts every connection already waiting on `listen`, without ever blocking. A shared
/// socket (handoff mode: the main process has the same open file) keeps its flags and is
/// polled before each accept; an unshared one (proxy mode) is non-blocking already.
fn accept_ready(listen: i32, shared: bool) -> Vec<OwnedFd> {
    use nix::sys::socket::{accept4, SockFlag};
    use std::os::fd::FromRawFd;
    let mut out = Vec::new();
    loop {
        // SAFETY: `listen` is the held socket, open for the supervisor's whole life.
        let fd = unsafe { BorrowedFd::borrow_raw(listen) };
        let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
        if shared && !matches!(poll(&mut p, PollTimeout::ZERO), Ok(n) if n > 0) {
            return out;
        }
        match accept4(listen, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new fd that nothing else owns.
            Ok(c) => out.push(unsafe { OwnedFd::from_raw_fd(c) }),
            Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => continue,
            Err(_) => return out,
        }
    }
}
