//! Every supervision decision, and no I/O: `Core::handle(event, now) -> effects`.
//!
//! The supervisor's loop (`run`) turns what happens (a signal, a reaped child, a control
//! message, a connection on the held socket, time passing) into an [`Event`], hands it to
//! [`Core::handle`] with the current instant, and carries out the [`Effect`]s it gets back
//! (spawn, signal, answer). Effects whose outcome the core must know (a spawn's pid, a
//! probe's result) come back as events at once. So every transition (main process,
//! listener, stop sequence, restarts and backoff, ready probes, on-demand start, idle stop)
//! is a plain function of state, event and clock, unit-tested with a fake clock in
//! `tests.rs` without a single process.
//!
//! Beside this file: `ondemand.rs` (on-demand start), `lazy.rs` (clients on the request
//! socket while no listener runs), `upkeep.rs` (when memory is given back and the socket's
//! name checked). Every deadline the loop waits for is the core's ([`Core::next_deadline`])
//! but those of I/O alone (an accept pause, a proxied client's wait). Log lines are written
//! here, where the decision and its reasons are known; they are the only output.

mod lazy;
mod ondemand;
#[cfg(test)]
mod tests;
mod upkeep;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use proto::{Answer, Builtin, Builtin as Command, By, ErrorCode, Reply, Status};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
pub use crate::config::ListenerStart;
use crate::config::{Restart, Settings};
use crate::metrics::MainMetrics;
use crate::signals::{forwarded, Exit};

pub use lazy::{LINE_TIME, MAX_CALLERS};
pub use ondemand::OnDemandPolicy;
pub use upkeep::{NAME_CHECK, TRIM_AFTER};

/// How long, past the stop deadline and a KILL, the supervisor waits for the last
/// processes before it exits regardless (a process stuck in `D` state cannot be killed).
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How readiness of the main process is learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    /// Ready as soon as it runs.
    Start,
    /// A probe (`socket:`, `tcp:`, `exec:`) run by the loop on [`Effect::Probe`].
    Probe,
    /// `READY=1` on the notify socket.
    Notify,
}

/// The part of the settings that decisions depend on.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The service's name, first word of the status line.
    pub service: String,
    /// The replica's instance, last word of the status line.
    pub instance: Option<u32>,
    pub restart: Restart,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub ready: ReadyBy,
    /// When the listener is started, if at all.
    pub listener: ListenerStart,
    pub on_demand: Option<OnDemandPolicy>,
    /// An allow-list applies, which only the listener checks: no request is answered
    /// without it, not even `ping` and `status`.
    pub allow_list: bool,
}

impl Policy {
    pub fn from_settings(s: &Settings) -> Policy {
        use crate::config::Ready;
        Policy {
            service: s.service.clone(),
            instance: s.instance,
            restart: s.restart,
            stop_signal: s.stop_signal,
            stop_timeout: s.stop_timeout,
            ready: match &s.ready {
                None => ReadyBy::Start,
                Some(Ready::Notify) => ReadyBy::Notify,
                Some(_) => ReadyBy::Probe,
            },
            listener: match (&s.listener, s.listener_start) {
                (None, _) => ListenerStart::Off,
                (Some(_), start) => start,
            },
            on_demand: s.on_demand.as_ref().map(|o| OnDemandPolicy {
                idle: o.idle,
                start_timeout: o.start_timeout,
                proxy: o.backend.is_some(),
                handover: matches!(
                    (&o.listen, &o.backend),
                    (
                        crate::config::Addr::Unix(_),
                        Some(crate::config::Addr::Unix(_))
                    )
                ),
            }),
            allow_list: s.has_allow_list(),
        }
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The loop begins: start what starts at once.
    Boot,
    /// Once per turn of the loop: act on every deadline that is due. Only this event
    /// looks at deadlines, so effects answered by events cannot loop within one turn.
    Tick,
    /// A signal arrived on the signalfd.
    Signal(Signal),
    /// A child was reaped.
    Exited(Pid, Exit),
    /// The outcome of [`Effect::SpawnMain`]: its pid, or the shell's code (126/127).
    MainSpawned(Result<Pid, i32>),
    /// The outcome of [`Effect::SpawnListener`].
    ListenerSpawned(Option<Pid>),
    /// The outcome of [`Effect::Probe`]: `Some(true)` passed, `Some(false)` not yet;
    /// `ProbeStarted` instead when the probe is a process, judged by its exit.
    ProbeResult(bool),
    ProbeStarted(Option<Pid>),
    /// The main process said `READY=1`.
    Notified,
    /// The listener started an action and handed over a copy of its client's connection.
    Hold {
        id: u64,
        pgid: i32,
        action: String,
    },
    /// The listener is done with a held request: write `reply` (may be empty), let go.
    Release {
        id: u64,
        reply: String,
    },
    /// A built-in the listener forwards (`start`, `stop`, `restart`, `reload`, `status`).
    Command {
        seq: u64,
        cmd: Command,
    },
    /// The listener closed its control channel.
    ControlClosed,
    /// The listener has been idle for `listener_idle`, stopped accepting and exits next;
    /// it had numbered requests up to `next_id`.
    ListenerIdle {
        next_id: u64,
    },
    /// On demand: the held socket is readable; `pending` clients are accepted and waiting
    /// (proxy mode; always 0 in handoff mode, where they wait in the kernel's backlog).
    Connection {
        pending: usize,
    },
    /// On demand, proxy mode: clients still waiting after [`Effect::ConnectPending`].
    Pending(usize),
    /// On demand: traffic was seen (proxied bytes, or the answer to [`Effect::Scan`]).
    Traffic,
    /// On demand, handoff mode: the answer to [`Effect::Scan`] when nothing new was seen.
    Quiet,
    /// On demand, handover: the name is with the held socket (which proxies), not the
    /// backend's: [`Effect::GiveName`] could not be carried out, or a scan found that the
    /// backend's socket changed. `again`: worth another try later (else not before the
    /// next start: another filesystem, another mode).
    NameKept {
        again: bool,
    },
    /// While no listener runs: a client on the request socket (`conn`, numbered by the
    /// loop) sent a request line that is exactly this built-in (`ping`, `status`), or
    /// something else (`None`), which goes to the listener.
    Asked {
        conn: u64,
        builtin: Option<Builtin>,
    },
    /// While no listener runs: the loop accepted client `conn` on the request socket; its
    /// line is awaited (for [`LINE_TIME`] at most).
    Caller {
        conn: u64,
    },
    /// Client `conn` left before it sent a whole line.
    CallerGone {
        conn: u64,
    },
    /// Something woke the loop other than a deadline (for [`Effect::ReleaseMemory`]).
    Activity,
    /// Once per turn, after [`Event::Tick`]: the loop's own upkeep that is due (giving
    /// memory back, checking the socket's name), apart from the supervision deadlines.
    Upkeep,
}

/// Who a signal goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A process group (or the process alone while it has none yet).
    Group(Pid),
    /// What is left of a process group whose leader has exited (no fallback to the pid).
    Leftovers(Pid),
    /// Every process but the supervisor: all of them as PID 1, its children otherwise.
    Others,
    /// Every process group of session `sid` but those listed (a crashed listener's leftovers).
    SessionGroups { sid: Pid, except: Vec<i32> },
}

/// Something the loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    SpawnMain,
    /// Start the listener; it numbers requests from `next_id`.
    SpawnListener {
        next_id: u64,
    },
    /// Run the ready probe once.
    Probe,
    Kill(Target, Signal),
    /// Answer a forwarded built-in: an [`Answer`]'s text, or an error.
    Reply {
        seq: u64,
        answer: Reply,
    },
    /// Write `line` (when not empty) to held request `id`'s client, then let it go.
    Answer {
        id: u64,
        line: String,
    },
    /// On demand, proxy mode: connect waiting clients to the backend.
    ConnectPending,
    /// On demand: close every waiting client (accepted ones, and the backlog in handoff).
    CloseWaiting,
    /// On demand, proxy mode: close every proxied connection (the backend is gone).
    CloseProxied,
    /// On demand: put the held socket's public name back (php-fpm unlinks it on exit).
    Relink,
    /// On demand, handover: make the listen name lead to the ready backend's socket
    /// (`link` + `rename`, atomic); answered with [`Event::NameKept`] when it cannot.
    GiveName,
    /// On demand, handover: make the listen name lead to the held socket again (its
    /// spare link renamed over it, atomic), before the main process is stopped.
    TakeName,
    /// On demand, handoff mode: look for new connections in the kernel's socket table;
    /// answered with [`Event::Traffic`] or [`Event::Quiet`].
    Scan,
    /// Answer client `conn` (of [`Event::Asked`]) with `line`, then close it.
    Respond {
        conn: u64,
        line: String,
    },
    /// Pass client `conn`, its request unread, to the listener.
    HandOn {
        conn: u64,
    },
    /// Give back start-up text pages and free heap (`crate::trim`).
    ReleaseMemory,
    /// Check that the request socket's name still leads to this supervisor's socket.
    CheckSocketName,
}

/// The main process's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Main {
    /// Not running: stopped by request, or not started yet.
    Down,
    /// [`Effect::SpawnMain`] is out; [`Event::MainSpawned`] comes next.
    Starting(Why),
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
    /// Waiting to be started again after it ended.
    Backoff { until: Instant },
}

/// Why the main process is being started: it decides what a start's outcome answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// At boot, or again after backoff: a failed start is an exit like any other.
    Run,
    /// A forwarded `start` (or `restart` of a stopped process): request `seq` is answered
    /// `started` (`restarted` when `restart`) with the pid, or with the failure.
    Command { seq: u64, restart: bool },
    /// The end of a `restart` (its waiters are answered).
    Restart,
    /// A client on the held socket.
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    Off,
    /// Not started yet: the supervisor watches the request socket itself.
    Idle,
    Starting,
    Up {
        pid: Pid,
        started: Instant,
        /// False once the listener closed its end (it is exiting).
        control: bool,
        /// It said it is idle and exits next (`listener_idle`).
        idle: bool,
    },
    Backoff {
        until: Instant,
    },
    Gone,
}

/// A request whose action the listener runs; the loop keeps its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    pgid: i32,
    action: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    next: Option<Instant>,
    attempt: u32,
    pid: Option<Pid>,
}

/// What the main process left in its process group when it ended: TERMed then, KILLed at
/// `deadline` if still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leftovers {
    pgid: Pid,
    deadline: Instant,
}

/// The supervisor's whole state.
pub struct Core {
    p: Policy,
    main: Main,
    last_exit: Option<Exit>,
    restarts: u32,
    /// Starts of the main process by a connection (`metrics`).
    on_demand_starts: u64,
    main_backoff: Backoff,
    probe: Probe,
    listener: Listener,
    listener_backoff: Backoff,
    held: BTreeMap<u64, Held>,
    next_id: u64,
    stop_waiters: Vec<u64>,
    restart_waiters: Vec<u64>,
    /// Clients waiting for the listener to start, to be handed on to it.
    waiting: Vec<u64>,
    leftovers: Option<Leftovers>,
    /// Set once the container is going down: the stop deadline.
    shutdown: Option<Instant>,
    others_signalled: bool,
    killed_all: bool,
    od: Option<ondemand::OnDemandState>,
    /// Clients on the request socket whose line is awaited, and until when.
    callers: BTreeMap<u64, Instant>,
    upkeep: upkeep::Upkeep,
    out: Vec<Effect>,
}

impl Core {
    pub fn new(p: Policy, now: Instant) -> Core {
        let listener = match p.listener {
            ListenerStart::Off => Listener::Off,
            ListenerStart::Boot => Listener::Backoff { until: now },
            ListenerStart::Request => Listener::Idle,
        };
        let od = p
            .on_demand
            .clone()
            .map(|o| ondemand::OnDemandState::new(o, now));
        Core {
            p,
            main: Main::Down,
            last_exit: None,
            restarts: 0,
            on_demand_starts: 0,
            main_backoff: Backoff::new(
                Duration::from_millis(250),
                Duration::from_secs(30),
                Duration::from_secs(10),
            ),
            probe: Probe::default(),
            listener,
            listener_backoff: Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(10),
                Duration::from_secs(10),
            ),
            held: BTreeMap::new(),
            next_id: 1,
            stop_waiters: Vec::new(),
            restart_waiters: Vec::new(),
            waiting: Vec::new(),
            leftovers: None,
            shutdown: None,
            others_signalled: false,
            killed_all: false,
            od,
            callers: BTreeMap::new(),
            upkeep: upkeep::Upkeep::new(now),
            out: Vec::new(),
        }
    }

    /// Applies one event; returns what the loop must do, in order.
    pub fn handle(&mut self, ev: Event, now: Instant) -> Vec<Effect> {
        match ev {
            Event::Boot => self.boot(now),
            Event::Tick => self.tick(now),
            Event::Signal(sig) => self.on_signal(sig, now),
            Event::Exited(pid, exit) => self.on_exit(pid, exit, now),
            Event::MainSpawned(r) => self.on_main_spawned(r, now),
            Event::ListenerSpawned(r) => self.on_listener_spawned(r, now),
            Event::ProbeResult(true) | Event::Notified => self.set_ready(now),
            Event::ProbeResult(false) => {}
            Event::ProbeStarted(pid) => self.probe.pid = pid,
            Event::Hold { id, pgid, action } => {
                self.next_id = self.next_id.max(id + 1);
                self.held.insert(id, Held { pgid, action });
            }
            Event::Release { id, reply } => {
                if self.held.remove(&id).is_some() {
                    self.out.push(Effect::Answer { id, line: reply });
                }
            }
            Event::Command { seq, cmd } => self.on_command(seq, cmd, now),
            Event::ControlClosed => self.on_control_closed(),
            Event::ListenerIdle { next_id } => {
                if let Listener::Up { idle, .. } = &mut self.listener {
                    *idle = true;
                    self.next_id = self.next_id.max(next_id);
                }
            }
            Event::Connection { pending } => self.on_connection(pending, now),
            Event::Pending(n) => {
                if let Some(od) = &mut self.od {
                    od.pending = n;
                }
            }
            Event::Traffic => self.on_traffic(now),
            Event::Quiet => self.check_idle(now),
            Event::NameKept { again } => self.on_name_kept(again, now),
            Event::Asked { conn, builtin } => {
                self.callers.remove(&conn);
                let builtin = builtin.filter(|_| !self.p.allow_list);
                self.on_asked(conn, builtin, now)
            }
            Event::Caller { conn } => self.on_caller(conn, now),
            Event::CallerGone { conn } => {
                self.callers.remove(&conn);
            }
            Event::Activity => self.on_activity(now),
            Event::Upkeep => self.tick_upkeep(now),
        }
        std::mem::take(&mut self.out)
    }

    // ----- queries the loop asks ----------------------------------------------------

    /// The main process's pid, while it runs or stops.
    pub fn main_pid(&self) -> Option<Pid> {
        match self.main {
            Main::Up { pid, .. } | Main::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    pub fn listener_pid(&self) -> Option<Pid> {
        match self.listener {
            Listener::Up { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Whether the container is going down (the socket files are about to be removed).
    pub fn exiting(&self) -> bool {
        self.shutdown.is_some()
    }

    /// Whether the loop watches the request socket itself (no listener runs yet).
    pub fn want_request_poll(&self) -> bool {
        self.listener == Listener::Idle && self.shutdown.is_none()
    }

    /// Whether the listener's control channel is still read.
    pub fn control_open(&self) -> bool {
        matches!(self.listener, Listener::Up { control: true, .. })
    }

    /// The next instant at which [`Event::Tick`] has something to do.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut d: Vec<Instant> = Vec::new();
        match self.main {
            Main::Backoff { until } => d.push(until),
            Main::Stopping {
                deadline,
                killed: false,
                ..
            } => d.push(deadline),
            _ => {}
        }
        if let Listener::Backoff { until } = self.listener {
            d.push(until);
        }
        if self.probe.pid.is_none() {
            d.extend(self.probe.next);
        }
        d.extend(self.leftovers.map(|l| l.deadline));
        if let Some(s) = self.shutdown {
            d.push(if self.killed_all { s + KILL_GRACE } else { s });
        }
        if self.shutdown.is_none() {
            d.extend(self.od_deadline(now));
        }
        d.extend(self.callers_deadline());
        d.into_iter().min()
    }

    /// When the loop must wake at the latest: the next deadline of [`Event::Tick`] or of
    /// [`Event::Upkeep`].
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        self.next_deadline(now)
            .into_iter()
            .chain(self.upkeep_deadlines())
            .min()
    }

    /// The exit code once the container is done: everything is down and no child is left
    /// (`no_children`), or the grace after the final KILL has passed.
    pub fn finished(&self, no_children: bool, now: Instant) -> Option<i32> {
        let deadline = self.shutdown?;
        let down = matches!(self.main, Main::Down)
            && !matches!(self.listener, Listener::Up { .. } | Listener::Starting);
        let down = down && self.waiting.is_empty();
        (down && (no_children || now >= deadline + KILL_GRACE))
            .then(|| self.last_exit.map_or(0, Exit::code))
    }

    /// The supervisor's part of `metrics`.
    /// The main process's metric families, labelled with the replica's instance.
    fn metric_families(&self, m: MainMetrics) -> Vec<proto::metrics::Family> {
        let n = self.p.instance.unwrap_or(1).to_string();
        proto::metrics::with_label(m.families(), "instance", &n)
    }

    pub fn main_metrics(&self) -> MainMetrics {
        MainMetrics {
            up: matches!(self.main, Main::Up { .. }),
            restarts: u64::from(self.restarts),
            on_demand_starts: self.on_demand_starts,
        }
    }

    /// The main process's part of `status` (DESIGN.md section 2); the listener adds the
    /// running actions.
    pub fn status(&self, now: Instant) -> Status {
        use proto::status::State;
        let (state, pid, ready, up) = match self.main {
            Main::Up {
                pid,
                started,
                ready,
            } => (
                if ready {
                    State::Running
                } else {
                    State::Starting
                },
                Some(pid),
                ready,
                Some(started),
            ),
            Main::Starting(_) => (State::Starting, None, false, None),
            Main::Stopping { pid, .. } => (State::Stopping, Some(pid), false, None),
            Main::Backoff { .. } => (State::Backoff, None, false, None),
            Main::Down => (State::Stopped, None, false, None),
        };
        let state = match (&self.od, self.main) {
            _ if self.shutdown.is_some() => State::Exiting,
            (Some(_), Main::Down) => State::Idle,
            _ => state,
        };
        Status {
            service: self.p.service.clone(),
            state,
            pid: pid.map(Pid::as_raw),
            ready,
            restarts: u64::from(self.restarts),
            uptime: up.map(|up| now.saturating_duration_since(up).as_secs()),
            last_exit: self.last_exit.map(|e| e.code()),
            on_demand: self.od.is_some(),
            instance: self.p.instance,
            actions: Vec::new(),
        }
    }

    /// The one-line state of `status` and `supervisor status`, as [`Core::status`] says it:
    /// `<service> <state> pid=<pid> ready=<yes|no> restarts=<n> uptime=<secs>s`.
    pub fn status_line(&self, now: Instant) -> String {
        self.status(now).to_string()
    }

    // ----- events -------------------------------------------------------------------

    fn boot(&mut self, now: Instant) {
        // The main process first: it is what the container is for; requests wait in the
        // socket's backlog meanwhile. On demand, the first connection starts it.
        if self.od.is_none() {
            self.start_main(Why::Run);
        }
        self.tick(now);
    }

    fn on_signal(&mut self, sig: Signal, now: Instant) {
        match sig {
            Signal::SIGCHLD => {} // the loop reaps
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => {
                // TERM is what `docker stop` sends: it becomes `stop_signal`. INT and QUIT
                // are passed on as themselves. All three stop the container.
                let fwd = if sig == Signal::SIGTERM {
                    self.p.stop_signal
                } else {
                    sig
                };
                info!(signal = sig.as_str(), forward = fwd.as_str(), "stopping");
                self.begin_shutdown(now, Some(fwd));
            }
            sig if forwarded(sig) => {
                if let Some(pid) = self.main_pid() {
                    self.od_signalled(now);
                    debug!(signal = sig.as_str(), pid = pid.as_raw(), "forwarding");
                    self.out.push(Effect::Kill(Target::Group(pid), sig));
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
        } = self.listener
        {
            if lpid == pid {
                return self.on_listener_exit(pid, exit, started, now);
            }
        }
        match self.main {
            Main::Up {
                pid: p, started, ..
            } if p == pid => self.on_main_exit(pid, exit, Some(started), false, now),
            Main::Stopping {
                pid: p, then_start, ..
            } if p == pid => self.on_main_exit(pid, exit, None, then_start, now),
            _ => debug!(pid = pid.as_raw(), %exit, "reaped"),
        }
    }

    fn on_main_spawned(&mut self, r: Result<Pid, i32>, now: Instant) {
        let Main::Starting(why) = self.main else {
            return;
        };
        match r {
            Ok(pid) => {
                if self.last_exit.is_some() {
                    self.restarts += 1;
                }
                self.main = Main::Up {
                    pid,
                    started: now,
                    ready: self.p.ready == ReadyBy::Start,
                };
                self.probe = Probe {
                    next: (self.p.ready == ReadyBy::Probe).then_some(now),
                    ..Probe::default()
                };
                if self.shutdown.is_some() {
                    // The container began to stop while it was being started.
                    let sig = self.p.stop_signal;
                    return self.begin_shutdown(now, Some(sig));
                }
                self.started_for(why, pid, now);
                if self.p.ready == ReadyBy::Start {
                    self.od_ready(now);
                }
            }
            Err(code) => {
                self.last_exit = Some(Exit::Code(code));
                self.main = Main::Down;
                match why {
                    // A command that cannot run ends like a main process that exited
                    // with 126/127: the restart policy decides.
                    Why::Run => self.after_main_ended(Exit::Code(code), Some(now), now),
                    Why::Command { seq, .. } => self.reply(
                        seq,
                        Reply::error(
                            ErrorCode::Unavailable,
                            format!("start failed with exit {code}"),
                        ),
                    ),
                    Why::Restart => {
                        for seq in std::mem::take(&mut self.restart_waiters) {
                            self.reply(
                                seq,
                                Reply::error(
                                    ErrorCode::Unavailable,
                                    format!("restart failed with exit {code}"),
                                ),
                            );
                        }
                    }
                    Why::OnDemand => self.fail_start(
                        now,
                        "on-demand start failed: the main process could not be started",
                    ),
                }
            }
        }
    }

    /// The main process started for `why`: whoever asked for the start is answered.
    fn started_for(&mut self, why: Why, pid: Pid, now: Instant) {
        match why {
            Why::Run => {}
            Why::Command { seq, restart } => {
                let pid = pid.as_raw();
                self.reply(
                    seq,
                    if restart {
                        Answer::Restarted { pid }
                    } else {
                        Answer::Started { pid }
                    },
                )
            }
            Why::Restart => {
                for seq in std::mem::take(&mut self.restart_waiters) {
                    self.reply(seq, Answer::Restarted { pid: pid.as_raw() });
                }
            }
            Why::OnDemand => {
                self.on_demand_starts += 1;
                self.od_started(now)
            }
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
        // Its socket is gone: new clients go to the held socket again.
        self.take_name();
        self.last_exit = Some(exit);
        self.main = Main::Down;
        self.probe = Probe {
            pid: self.probe.pid,
            ..Probe::default()
        };
        if self.shutdown.is_none() {
            // Workers it left in its group would keep its sockets and ports and make the
            // next start fail ("address in use"): they get TERM now, KILL at stop_timeout.
            self.out
                .push(Effect::Kill(Target::Leftovers(pid), Signal::SIGTERM));
            self.leftovers = Some(Leftovers {
                pgid: pid,
                deadline: now + self.p.stop_timeout,
            });
        }
        if self.od.is_some() {
            self.out.push(Effect::Relink);
        }
        if self.shutdown.is_some() {
            return;
        }
        if self.od.is_some() && !then_start {
            return self.od_main_exited(exit, started, now);
        }
        if then_start {
            return self.start_main(Why::Restart);
        }
        let Some(_) = started else {
            // A requested stop finished.
            for seq in std::mem::take(&mut self.stop_waiters) {
                self.reply(
                    seq,
                    Answer::Stopped {
                        exit: Some(exit.code()),
                    },
                );
            }
            return;
        };
        self.after_main_ended(exit, started, now);
    }

    /// The main process ended by itself: restart it or end the container, per policy.
    fn after_main_ended(&mut self, exit: Exit, started: Option<Instant>, now: Instant) {
        let again = match self.p.restart {
            Restart::No => false,
            Restart::OnFailure => !exit.success(),
            Restart::Always => true,
        };
        if again {
            let delay = self.main_backoff.delay(started.unwrap_or(now), now);
            info!(child = "main", delay = %common::duration::show(delay), "restarting after backoff");
            self.main = Main::Backoff { until: now + delay };
        } else {
            self.begin_shutdown(now, None);
        }
    }

    fn on_listener_spawned(&mut self, r: Option<Pid>, now: Instant) {
        if self.listener != Listener::Starting {
            return;
        }
        self.listener = match r {
            Some(pid) => {
                info!(child = "listener", pid = pid.as_raw(), "spawned");
                for conn in std::mem::take(&mut self.waiting) {
                    self.out.push(Effect::HandOn { conn });
                }
                Listener::Up {
                    pid,
                    started: now,
                    control: true,
                    idle: false,
                }
            }
            None => {
                let delay = self.listener_backoff.delay(now, now);
                Listener::Backoff { until: now + delay }
            }
        };
        if self.shutdown.is_some() {
            if let Listener::Up { pid, .. } = self.listener {
                self.out
                    .push(Effect::Kill(Target::Group(pid), Signal::SIGTERM));
            }
        }
    }

    fn on_listener_exit(&mut self, pid: Pid, exit: Exit, started: Instant, now: Instant) {
        if self.shutdown.is_some() {
            info!(child = "listener", %exit, "exited");
            self.listener = Listener::Gone;
            self.answer_held("shutting down");
            return;
        }
        let said_idle = matches!(self.listener, Listener::Up { idle: true, .. });
        if said_idle && exit.success() && self.held.is_empty() {
            info!(
                child = "listener",
                "exited, idle; the next request starts it again"
            );
            self.listener = Listener::Idle;
            if !self.waiting.is_empty() {
                self.start_listener();
            }
            return;
        }
        let delay = self.listener_backoff.delay(started, now);
        error!(child = "listener", %exit, held = self.held.len(), delay = %common::duration::show(delay), "crashed; restarting");
        let except: Vec<i32> = self.held.values().map(|h| h.pgid).collect();
        self.answer_held(&format!(
            "listener crashed ({exit}); the action was stopped"
        ));
        // The rest of what it started: an action it had not reported yet, a callback's
        // background job in a group of its own. All of it is in the listener's session.
        self.out.push(Effect::Kill(
            Target::SessionGroups { sid: pid, except },
            Signal::SIGTERM,
        ));
        self.listener = Listener::Backoff { until: now + delay };
    }

    fn on_control_closed(&mut self) {
        if let Listener::Up {
            pid, control, idle, ..
        } = &mut self.listener
        {
            *control = false;
            if self.shutdown.is_none() && !*idle {
                // A listener that closed its control channel cannot work.
                warn!(child = "listener", "closed its control channel; killing it");
                let pid = *pid;
                self.out
                    .push(Effect::Kill(Target::Group(pid), Signal::SIGKILL));
            }
        }
    }

    fn on_command(&mut self, seq: u64, cmd: Command, now: Instant) {
        // The listener answers its own; the control codec never forwards them.
        if cmd.by() != By::Supervisor {
            return;
        }
        // `status` is what health checks ask every few seconds: keep it out of the log.
        log_request(cmd);
        if self.shutdown.is_some() && !cmd.while_stopping() {
            return self.reply(seq, shutting_down());
        }
        match (cmd, self.main) {
            (Command::Status, _) => {
                let status = self.status(now);
                self.reply(seq, Answer::Status(status))
            }
            (Command::Metrics, _) => {
                let m = self.main_metrics();
                self.reply(seq, Answer::Metrics(self.metric_families(m)))
            }
            (Command::Start, Main::Up { pid, .. }) => {
                self.reply(seq, Answer::Running { pid: pid.as_raw() })
            }
            (Command::Start | Command::Restart | Command::Stop, Main::Starting(_)) => {
                self.reply(seq, Reply::error(ErrorCode::Busy, "starting"))
            }
            (Command::Start, Main::Stopping { pid, .. }) => self.reply(
                seq,
                Reply::error(ErrorCode::Busy, format!("stopping pid={pid}")),
            ),
            (Command::Start, Main::Down | Main::Backoff { .. }) => self.start_main(Why::Command {
                seq,
                restart: false,
            }),
            (Command::Stop, Main::Up { pid, .. }) => {
                self.stop_main(pid, now, false);
                self.stop_waiters.push(seq);
            }
            (Command::Stop, Main::Stopping { .. }) => self.stop_waiters.push(seq),

            (Command::Stop, Main::Backoff { .. } | Main::Down) => {
                self.main = Main::Down;
                self.reply(seq, Answer::Stopped { exit: None })
            }
            (Command::Restart, _) => self.on_restart(seq, now),
            (Command::Reload, _) => self.on_reload(seq, now),
            // The listener's rows returned above: a new built-in of the supervisor's
            // without its arm here is refused, never left unanswered (a test walks the
            // table).
            (other, _) => self.reply(
                seq,
                Reply::error(
                    ErrorCode::Unavailable,
                    format!("{other} is not answered here"),
                ),
            ),
        }
    }

    /// `restart`: stop, then start, then answer; a stop under way starts again after it.
    fn on_restart(&mut self, seq: u64, now: Instant) {
        match self.main {
            Main::Up { pid, .. } => {
                self.stop_main(pid, now, true);
                self.restart_waiters.push(seq);
            }
            Main::Stopping {
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
                self.start_main(Why::Command { seq, restart: true })
            }
            Main::Starting(_) => self.reply(seq, Reply::error(ErrorCode::Busy, "starting")),
        }
    }

    /// `reload`: SIGHUP to the main process's group.
    fn on_reload(&mut self, seq: u64, now: Instant) {
        match self.main_pid() {
            Some(pid) => {
                self.od_signalled(now);
                self.out
                    .push(Effect::Kill(Target::Group(pid), Signal::SIGHUP));
                self.reply(seq, Answer::Reloaded { pid: pid.as_raw() })
            }
            None => self.reply(
                seq,
                Reply::error(ErrorCode::Unavailable, "the main process is not running"),
            ),
        }
    }

    // ----- deadlines ----------------------------------------------------------------

    /// Acts on every deadline that has passed.
    fn tick(&mut self, now: Instant) {
        if let Main::Backoff { until } = self.main {
            if now >= until && self.shutdown.is_none() {
                self.start_main(Why::Run);
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
                self.out
                    .push(Effect::Kill(Target::Group(pid), Signal::SIGKILL));
                self.main = Main::Stopping {
                    pid,
                    deadline,
                    killed: true,
                    then_start,
                };
            }
        }
        if let Some(l) = self.leftovers {
            if now >= l.deadline {
                self.leftovers = None;
                // A new main process may have been given the same pid: its group is not
                // a leftover.
                if self.main_pid() != Some(l.pgid) {
                    self.out
                        .push(Effect::Kill(Target::Leftovers(l.pgid), Signal::SIGKILL));
                }
            }
        }
        if let Listener::Backoff { until } = self.listener {
            if now >= until && self.shutdown.is_none() {
                if self.p.listener == ListenerStart::Request && self.waiting.is_empty() {
                    // Started again by the next request that needs it.
                    self.listener = Listener::Idle;
                } else {
                    self.start_listener();
                }
            }
        }
        if self.probe.pid.is_none() && self.probe.next.is_some_and(|n| now >= n) {
            self.run_probe(now);
        }
        if self.shutdown.is_none() {
            self.tick_on_demand(now);
        }
        self.tick_callers(now);
        if let Some(deadline) = self.shutdown {
            self.tick_shutdown(deadline, now);
        }
    }

    /// The container is going down: what is left gets TERM once the main process and the
    /// listener are down, and KILL at the stop deadline.
    fn tick_shutdown(&mut self, deadline: Instant, now: Instant) {
        let main_down = matches!(self.main, Main::Down);
        let listener_down = !matches!(self.listener, Listener::Up { .. });
        if main_down && listener_down && !self.others_signalled {
            // Whatever else is left (daemonised helpers, stray action children) gets
            // the same polite request before the deadline's KILL.
            self.others_signalled = true;
            self.out.push(Effect::Kill(Target::Others, Signal::SIGTERM));
        }
        if now >= deadline && !self.killed_all {
            self.killed_all = true;
            warn!("stop timeout; sending KILL to what is left");
            if let Main::Up { pid, .. }
            | Main::Stopping {
                pid, killed: false, ..
            } = self.main
            {
                self.out
                    .push(Effect::Kill(Target::Group(pid), Signal::SIGKILL));
            }
            if let Listener::Up { pid, .. } = self.listener {
                self.out
                    .push(Effect::Kill(Target::Group(pid), Signal::SIGKILL));
            }
            for h in self.held.values() {
                if h.pgid > 1 {
                    self.out.push(Effect::Kill(
                        Target::Group(Pid::from_raw(h.pgid)),
                        Signal::SIGKILL,
                    ));
                }
            }
            self.out.push(Effect::Kill(Target::Others, Signal::SIGKILL));
        }
    }

    fn run_probe(&mut self, now: Instant) {
        if !matches!(self.main, Main::Up { ready: false, .. }) {
            self.probe.next = None;
            return;
        }
        let interval = probe_interval(self.probe.attempt, self.od.is_some());
        self.probe.next = Some(now + interval);
        self.probe.attempt += 1;
        self.out.push(Effect::Probe);
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
            self.od_ready(now);
        }
    }

    // ----- actions ------------------------------------------------------------------

    fn start_listener(&mut self) {
        self.listener = Listener::Starting;
        self.out.push(Effect::SpawnListener {
            next_id: self.next_id,
        });
    }

    /// A request while no listener runs: the built-ins the table answers without a
    /// listener (`ping`, `status`, `version`) are answered here, anything else waits for
    /// the listener, started for it.
    fn on_asked(&mut self, conn: u64, builtin: Option<Builtin>, now: Instant) {
        if self.shutdown.is_some() {
            let line = shutting_down().to_string();
            return self.out.push(Effect::Respond { conn, line });
        }
        if let Some(line) = builtin.and_then(|b| self.answer_without_listener(b, now)) {
            return self.out.push(Effect::Respond { conn, line });
        }
        match self.listener {
            Listener::Up {
                control: true,
                idle: false,
                ..
            } => self.out.push(Effect::HandOn { conn }),
            // Exiting idle: started again for this client once it is gone.
            Listener::Up { idle: true, .. } => self.waiting.push(conn),
            Listener::Idle => {
                self.waiting.push(conn);
                self.start_listener();
            }
            Listener::Starting | Listener::Backoff { .. } => self.waiting.push(conn),
            Listener::Off
            | Listener::Gone
            | Listener::Up {
                control: false,
                idle: false,
                ..
            } => {
                let line = Reply::error(ErrorCode::Unavailable, "no listener is running");
                let line = line.to_string();
                self.out.push(Effect::Respond { conn, line })
            }
        }
    }

    /// The answer to a built-in of the table's `without_listener` rows; `None` for the
    /// others, which go to a listener.
    fn answer_without_listener(&self, b: Builtin, now: Instant) -> Option<String> {
        if !b.row().without_listener {
            return None;
        }
        let line = match b {
            Builtin::Ping => "pong".to_string(),
            Builtin::Status => self.status_line(now),
            Builtin::Version => common::version::text(),
            _ => return None,
        };
        log_request(b);
        Some(line)
    }

    fn start_main(&mut self, why: Why) {
        self.main = Main::Starting(why);
        self.out.push(Effect::SpawnMain);
    }

    fn stop_main(&mut self, pid: Pid, now: Instant, then_start: bool) {
        // The name first, then the signal: no client queues at a backend that stops.
        self.take_name();
        info!(
            child = "main",
            pid = pid.as_raw(),
            signal = self.p.stop_signal.as_str(),
            "stopping"
        );
        self.out
            .push(Effect::Kill(Target::Group(pid), self.p.stop_signal));
        self.main = Main::Stopping {
            pid,
            deadline: now + self.p.stop_timeout,
            killed: false,
            then_start,
        };
    }

    /// The container stops: `forward` is the signal for the main process (none when it
    /// has already ended).
    fn begin_shutdown(&mut self, now: Instant, forward: Option<Signal>) {
        self.take_name();
        if let Some(od) = &mut self.od {
            if od.pending > 0 {
                od.pending = 0;
                self.out.push(Effect::CloseWaiting);
            }
        }
        if self.shutdown.is_none() {
            self.shutdown = Some(now + self.p.stop_timeout);
            match self.listener {
                Listener::Up { pid, .. } => self
                    .out
                    .push(Effect::Kill(Target::Group(pid), Signal::SIGTERM)),
                // A spawn under way is TERMed when its pid comes back.
                Listener::Starting => {}
                Listener::Off => {}
                _ => self.listener = Listener::Gone,
            }
            for conn in std::mem::take(&mut self.waiting) {
                let line = shutting_down().to_string();
                self.out.push(Effect::Respond { conn, line });
            }
            for seq in std::mem::take(&mut self.stop_waiters)
                .into_iter()
                .chain(std::mem::take(&mut self.restart_waiters))
            {
                self.reply(seq, shutting_down());
            }
        }
        match self.main {
            Main::Up { pid, .. } | Main::Stopping { pid, .. } => {
                if let Some(sig) = forward {
                    self.out.push(Effect::Kill(Target::Group(pid), sig));
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
            // A spawn under way: its pid comes back at once and is then stopped.
            Main::Starting(_) => {}
            Main::Backoff { .. } | Main::Down => self.main = Main::Down,
        }
    }

    /// Answers every held request with `error unavailable` and stops its action: no one
    /// is left to report its outcome, and a new listener must be free to run it again.
    fn answer_held(&mut self, why: &str) {
        for (id, h) in std::mem::take(&mut self.held) {
            let line = proto::Reply::error(
                proto::ErrorCode::Unavailable,
                format!("request {id} ({}): {why}", h.action),
            )
            .to_string();
            self.out.push(Effect::Answer { id, line });
            if h.pgid > 1 {
                self.out.push(Effect::Kill(
                    Target::Group(Pid::from_raw(h.pgid)),
                    Signal::SIGTERM,
                ));
            }
        }
    }

    fn reply(&mut self, seq: u64, answer: impl Into<Reply>) {
        let answer = answer.into();
        self.out.push(Effect::Reply { seq, answer });
    }
}

/// The interval between ready probes: quick at first, then once a second. On demand a
/// client waits for the start, so the probe starts at 1 ms and doubles only to 2 ms: what
/// bosun adds to a cold start after the backend is ready stays within 2 ms (bench/ondemand's
/// goal), at most 500 probes a second while a start lasts (`start_timeout`), each a
/// non-blocking connect.
pub fn probe_interval(attempt: u32, on_demand: bool) -> Duration {
    let (first, cap) = if on_demand {
        (Duration::from_millis(1), Duration::from_millis(2))
    } else {
        (Duration::from_millis(50), Duration::from_secs(1))
    };
    (first * (1u32 << attempt.min(5))).min(cap)
}

fn shutting_down() -> Reply {
    Reply::error(ErrorCode::ShuttingDown, "the container is stopping")
}

/// Logs a built-in request: at debug for the table's quiet ones (health checks ask them
/// every few seconds), at info for the others.
fn log_request(b: Builtin) {
    if b.is_quiet() {
        debug!(command = b.name(), "request");
    } else {
        info!(command = b.name(), "request");
    }
}
