//! A one-shot timer on the wall clock that also wakes when the wall clock is stepped.
//!
//! Cron fires at wall-clock instants, so the daemon sleeps on `CLOCK_REALTIME` with an
//! absolute expiry (`TFD_TIMER_ABSTIME`): a suspend or an NTP step cannot make it wake at
//! the wrong wall time, as a relative sleep on a monotonic clock would. With
//! `TFD_TIMER_CANCEL_ON_SET` the kernel also wakes us (read fails with `ECANCELED`) when the
//! clock is set, so the planner can re-plan at once instead of polling for clock changes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

/// Why [`RealtimeTimer::sleep_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The wall clock reached the instant.
    Expired,
    /// The wall clock was set (stepped) while we slept.
    ClockChanged,
}

struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The timer; one per daemon.
pub struct RealtimeTimer {
    fd: AsyncFd<Fd>,
}

impl RealtimeTimer {
    /// Creates the timerfd; needs a tokio runtime with I/O enabled.
    pub fn new() -> io::Result<RealtimeTimer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Fd` owns the timerfd (an `OwnedFd` inside `TimerFd`) and returns the same
        // open descriptor from every `as_raw_fd` call until it is dropped with the `AsyncFd`.
        let fd = unsafe { AsyncFd::register(Fd(fd)) }.map_err(io::Error::from)?;
        Ok(RealtimeTimer { fd })
    }

    /// Sleeps until the wall clock reads `at` (at once if it is past), or the clock is set.
    pub async fn sleep_until(&mut self, at: DateTime<Utc>) -> io::Result<Wake> {
        let secs = at.timestamp().max(0);
        let nanos = if at.timestamp() < 0 {
            1
        } else {
            i64::from(at.timestamp_subsec_nanos())
        };
        // An all-zero expiry would disarm the timer: 1 ns past the epoch is "long past".
        let spec = TimeSpec::new(secs, if secs == 0 && nanos == 0 { 1 } else { nanos });
        self.fd.get_ref().0.set(
            Expiration::OneShot(spec),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
        )?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            match nix::unistd::read(guard.get_inner().0.as_fd(), &mut buf) {
                Ok(_) => return Ok(Wake::Expired),
                Err(Errno::ECANCELED) => return Ok(Wake::ClockChanged),
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn wakes_on_time() {
        let mut t = RealtimeTimer::new().unwrap();
        let at = Utc::now() + chrono::Duration::milliseconds(30);
        assert_eq!(t.sleep_until(at).await.unwrap(), Wake::Expired);
        let now = Utc::now();
        assert!(now >= at, "woke early: {now} < {at}");
        assert!(
            now - at < chrono::Duration::milliseconds(50),
            "late: {}",
            now - at
        );
        // A past instant returns at once.
        let past = Utc::now() - chrono::Duration::seconds(5);
        assert_eq!(t.sleep_until(past).await.unwrap(), Wake::Expired);
    }
}
