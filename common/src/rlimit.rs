//! The open-file limit (`RLIMIT_NOFILE`): raised to the hard limit by the programs that
//! hold many connections (the supervisor's proxy and held clients, the listener), so that
//! the soft limit of 1024 many hosts set is not what makes a busy stack refuse clients.
//! Children get the limit back as it was (see the supervisor's `spawn`), since some
//! programs still use `select(2)`, which breaks above 1024.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// `(soft, hard)` now.
pub fn nofile() -> Option<(u64, u64)> {
    getrlimit(Resource::RLIMIT_NOFILE).ok()
}

/// Raises the soft limit to `min(hard, cap)`; returns `(soft before, soft now)`.
pub fn raise_nofile(cap: u64) -> Option<(u64, u64)> {
    let (soft, hard) = nofile()?;
    let want = hard.min(cap).max(soft);
    if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        return Some((soft, want));
    }
    Some((soft, soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_to_the_hard_limit_at_most() {
        let (soft, hard) = nofile().unwrap();
        let (before, now) = raise_nofile(u64::MAX).unwrap();
        assert_eq!(before, soft);
        assert_eq!(now, hard.max(soft));
        assert_eq!(nofile().unwrap().0, now);
        // A lower cap never lowers it.
        assert_eq!(raise_nofile(1).unwrap().1, now);
    }
}
