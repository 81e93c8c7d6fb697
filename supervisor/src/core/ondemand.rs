//! On-demand start's decisions (DESIGN.md section 5): when a connection starts the main
//! process, when held clients go through, when a start has failed, when idleness stops it.
//!
//! The held socket, the proxy and the scan of the kernel's socket tables are I/O and live
//! in `crate::ondemand` and `crate::proxy`; the loop reports what they saw as events
//! ([`Event::Connection`], [`Event::Traffic`], ...) and carries out the effects asked here.
//!
//! [`Event::Connection`]: super::Event::Connection
//! [`Event::Traffic`]: super::Event::Traffic

use std::time::{Duration, Instant};

use tracing::{error, info};

use super::{Core, Effect, Main, Why};
use crate::backoff::Backoff;
use crate::signals::Exit;

/// How soon held clients are offered to the backend again when it could not take them.
pub const PENDING_RETRY: Duration = Duration::from_millis(20);

/// What on-demand decisions depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemandPolicy {
    /// No traffic for this long stops the main process.
    pub idle: Duration,
    /// A start not ready within this has failed.
    pub start_timeout: Duration,
    /// Proxy mode (a `backend` is set): the supervisor accepts and holds clients itself.
    pub proxy: bool,
    /// Proxy mode with a unix `listen` and a unix `backend`: once the backend is ready,
    /// the listen name is handed to the backend's socket (new clients connect to it
    /// directly) and taken back before the main process stops. TCP keeps proxying.
    pub handover: bool,
}

/// On-demand state.
#[derive(Debug)]
pub(super) struct OnDemandState {
    policy: OnDemandPolicy,
    /// Proxy mode: clients accepted and waiting for the backend.
    pub(super) pending: usize,
    last_activity: Instant,
    next_scan: Instant,
    /// Handoff mode: the listening socket is not polled again before this (see
    /// `crate::ondemand`: one wake-up a second on a busy site).
    quiet_until: Instant,
    start_deadline: Option<Instant>,
    /// A failed start is not retried before this.
    retry_after: Instant,
    backoff: Backoff,
    /// Handover: the listen name leads to the backend's socket (asked with
    /// [`Effect::GiveName`], not yet taken back).
    given: bool,
    /// Handover: the name is not offered to the backend again before this (the last
    /// try could not be carried out: [`Event::NameKept`]).
    ///
    /// [`Event::NameKept`]: super::Event::NameKept
    give_after: Instant,
    /// Handover: refused for this run of the main process (not tried again before the
    /// next start).
    refused: bool,
}

impl OnDemandState {
    pub(super) fn new(policy: OnDemandPolicy, now: Instant) -> OnDemandState {
        OnDemandState {
            policy,
            pending: 0,
            last_activity: now,
            next_scan: now,
            quiet_until: now,
            start_deadline: None,
            retry_after: now,
            backoff: Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(10),
                Duration::from_secs(60),
            ),
            given: false,
            give_after: now,
            refused: false,
        }
    }

    /// Whether activity is looked for in the kernel's socket table: handoff mode, and
    /// proxy mode while the name is handed over (the supervisor no longer sees the bytes).
    fn scans(&self) -> bool {
        !self.policy.proxy || self.given
    }

    fn scan_interval(&self) -> Duration {
        (self.policy.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Core {
    /// Whether the loop polls the held socket this turn.
    pub fn want_listen_poll(&self, now: Instant) -> bool {
        let Some(od) = &self.od else { return false };
        if self.shutdown.is_some() {
            return false;
        }
        match self.main {
            Main::Down => now >= od.retry_after,
            Main::Up { .. } => od.policy.proxy || now >= od.quiet_until,
            Main::Starting(_) | Main::Stopping { .. } | Main::Backoff { .. } => od.policy.proxy,
        }
    }

    pub(super) fn od_deadline(&self, now: Instant) -> Option<Instant> {
        let od = self.od.as_ref()?;
        let mut d = Vec::new();
        match self.main {
            // Past instants are not deadlines: once `retry_after` or `quiet_until` has
            // passed, the held socket itself is polled and wakes the loop.
            Main::Down if od.retry_after > now => d.push(od.retry_after),
            Main::Up { ready: false, .. } => d.extend(od.start_deadline),
            Main::Up { ready: true, .. } => {
                d.push(od.last_activity + od.policy.idle);
                // Held clients the backend could not take yet (its backlog full, or no
                // descriptor free): tried again soon, but not in a tight loop.
                if od.pending > 0 {
                    d.push(now + PENDING_RETRY);
                }
                if od.scans() {
                    d.push(od.next_scan);
                }
                if !od.policy.proxy && od.quiet_until > now {
                    d.push(od.quiet_until);
                }
                if od.policy.handover && !od.given && !od.refused {
                    d.push(od.give_after.max(now));
                }
            }
            _ => {}
        }
        d.into_iter().min()
    }

    /// The held socket is readable: a client is waiting.
    pub(super) fn on_connection(&mut self, pending: usize, now: Instant) {
        let Some(od) = &mut self.od else { return };
        od.pending = pending;
        od.last_activity = now;
        match self.main {
            Main::Down => {
                info!("connection while idle; starting the main process");
                self.start_main(Why::OnDemand);
            }
            _ if !od.policy.proxy => od.quiet_until = now + Duration::from_secs(1),
            Main::Up { ready: true, .. } if od.pending > 0 => self.out.push(Effect::ConnectPending),
            _ => {}
        }
    }

    pub(super) fn on_traffic(&mut self, now: Instant) {
        if let Some(od) = &mut self.od {
            od.last_activity = now;
        }
    }

    /// A start on demand is under way.
    pub(super) fn od_started(&mut self, now: Instant) {
        if let Some(od) = &mut self.od {
            od.start_deadline = Some(now + od.policy.start_timeout);
            od.refused = false;
        }
    }

    /// The main process is ready: held clients go through.
    pub(super) fn od_ready(&mut self, now: Instant) {
        let Some(od) = &mut self.od else { return };
        od.start_deadline = None;
        od.last_activity = now;
        if od.pending > 0 {
            self.out.push(Effect::ConnectPending);
        }
        self.give_name(now);
    }

    /// Handover: the listen name goes to the ready backend's socket, so that new clients
    /// reach it directly. Never in TCP mode, nor while stopping.
    fn give_name(&mut self, now: Instant) {
        let Some(od) = &mut self.od else { return };
        if od.policy.handover
            && !od.given
            && !od.refused
            && now >= od.give_after
            && self.shutdown.is_none()
            && matches!(self.main, Main::Up { ready: true, .. })
        {
            od.given = true;
            // Activity is now seen in the kernel's table: the first scan is due at once.
            od.next_scan = now;
            self.out.push(Effect::GiveName);
        }
    }

    /// Handover: the listen name back to the held socket. Done BEFORE anything stops the
    /// main process, so no new client queues in a backlog that is about to go away.
    pub(super) fn take_name(&mut self) {
        if let Some(od) = &mut self.od {
            if std::mem::take(&mut od.given) {
                self.out.push(Effect::TakeName);
            }
        }
    }

    /// Handover: the name is with the held socket, which proxies meanwhile: it is tried
    /// again a scan interval later (the backend's socket is missing, does not accept yet,
    /// or changed), or not before the next start (`again` false: it never can).
    pub(super) fn on_name_kept(&mut self, again: bool, now: Instant) {
        if let Some(od) = &mut self.od {
            od.given = false;
            od.give_after = now + od.scan_interval();
            od.refused |= !again;
        }
    }

    /// Handover: a signal goes to the main process (`reload`, or one passed on): a
    /// backend may bind its socket anew, so the name comes back first and goes over
    /// again, checked, a scan interval later.
    pub(super) fn od_signalled(&mut self, now: Instant) {
        if self.od.as_ref().is_some_and(|od| od.given) {
            self.take_name();
            if let Some(od) = &mut self.od {
                od.give_after = now + od.scan_interval();
            }
        }
    }

    /// On demand, an exit is not the container's end: the socket stays held and the next
    /// connection starts the main process again. Exiting before it was ready is a failed
    /// start.
    pub(super) fn od_main_exited(&mut self, exit: Exit, started: Option<Instant>, now: Instant) {
        let Some(od) = &self.od else { return };
        let starting = od.start_deadline.is_some();
        let failed = starting || started.is_some();
        if starting {
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
        let Some(od) = &self.od else { return };
        if od.policy.proxy {
            self.out.push(Effect::CloseProxied);
        }
        // Clients that arrived while it was stopping for idleness start it again.
        if !failed && od.pending > 0 {
            self.start_main(Why::OnDemand);
        }
        for seq in std::mem::take(&mut self.stop_waiters) {
            self.reply(
                seq,
                proto::Answer::Stopped {
                    exit: Some(exit.code()),
                },
            );
        }
    }

    /// A start failed: every waiting client is closed at once (they would otherwise wait
    /// for a backend that is not coming), and the next try waits for the backoff.
    pub(super) fn fail_start(&mut self, now: Instant, why: &str) {
        let Some(od) = &mut self.od else { return };
        let waiting = std::mem::take(&mut od.pending);
        let delay = od.backoff.delay(now, now);
        od.retry_after = now + delay;
        od.start_deadline = None;
        error!(waiting, retry_in = ?delay, "{why}");
        self.out.push(Effect::CloseWaiting);
    }

    pub(super) fn tick_on_demand(&mut self, now: Instant) {
        let Some(od) = &mut self.od else { return };
        match self.main {
            Main::Up {
                pid, ready: false, ..
            } if od.start_deadline.is_some_and(|d| now >= d) => {
                let t = od.policy.start_timeout;
                self.fail_start(
                    now,
                    &format!(
                        "on-demand start failed: not ready within {}",
                        common::duration::show(t)
                    ),
                );
                self.stop_main(pid, now, false);
            }
            Main::Up { ready: true, .. } => {
                od.start_deadline = None;
                if od.policy.handover && !od.given && now >= od.give_after {
                    // After an idle check's grace: no client, the idle stop; else the
                    // name goes over again.
                    self.check_idle(now);
                    self.give_name(now);
                }
                let Some(od) = &mut self.od else { return };
                if od.pending > 0 {
                    self.out.push(Effect::ConnectPending);
                } else if od.scans() && now >= od.next_scan {
                    // The idle decision waits for the scan's answer.
                    od.next_scan = now + od.scan_interval();
                    self.out.push(Effect::Scan);
                } else {
                    self.check_idle(now);
                }
            }
            _ => {}
        }
    }

    /// Stops the main process when it has had no traffic for `idle`.
    pub(super) fn check_idle(&mut self, now: Instant) {
        let (
            Some(od),
            Main::Up {
                pid, ready: true, ..
            },
        ) = (&self.od, self.main)
        else {
            return;
        };
        if now.saturating_duration_since(od.last_activity) < od.policy.idle {
            return;
        }
        if od.given {
            // The kernel's table shows only the connections open at a scan: short ones
            // between two scans go unseen. So the name comes back to the held socket for
            // one scan interval first, where every client is seen: a client then is
            // activity (and the name goes over again), none is the idle stop.
            let grace = od.scan_interval();
            info!(grace = %common::duration::show(grace), "no connection seen in the kernel's table; the held socket watches for clients before the idle stop");
            self.take_name();
            let Some(od) = &mut self.od else { return };
            od.last_activity = now.checked_sub(od.policy.idle - grace).unwrap_or(now);
            od.give_after = now + grace;
            return;
        }
        info!(idle = %common::duration::show(od.policy.idle), "no traffic; stopping the main process");
        self.stop_main(pid, now, false);
    }

    #[cfg(test)]
    pub(super) fn od_given(&self) -> Option<bool> {
        self.od.as_ref().map(|o| o.given)
    }

    #[cfg(test)]
    pub(super) fn od_pending(&self) -> Option<usize> {
        self.od.as_ref().map(|o| o.pending)
    }
}
