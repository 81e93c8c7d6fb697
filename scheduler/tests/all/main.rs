//! The scheduler's one integration-test binary: the schedule maths against a brute-force
//! scanner and hand-checked daylight-saving days, the command line, and the real daemon
//! against a small socket peer. (Against a real supervisor and listener: tests/system.)

mod cli;
mod daemon;
mod dst;
mod faults;
mod files;
mod metrics;
mod notify;
mod page;
mod props;
mod replicas;
mod status;
mod support;

/// The scheduler of this build (the helpers in `support` are shared with tests/system,
/// which builds its own).
pub const SCHEDULER: &str = env!("CARGO_BIN_EXE_scheduler");
