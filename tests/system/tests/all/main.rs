//! bosun's system tests: the supervisor, the listener and the scheduler of this build
//! working together, each test with exactly these binaries (cargo builds them with the
//! tests: no test runs cargo). What one program does alone is tested in its own crate.
//!
//! - `supervisor`: the supervisor with its real listener (built-ins, requests, journal,
//!   metrics, faults, descriptors running out, running as another user), and the
//!   scheduler's client and daemon against it;
//! - `listener`: the listener's settings as the real supervisor hands them on;
//! - `scheduler`: the scheduler's daemon firing at a real service.

mod listener;
mod scheduler;
mod supervisor;

/// The programs of this build.
pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_system-supervisor");
pub const LISTENER: &str = env!("CARGO_BIN_EXE_system-listener");
pub const SCHEDULER: &str = env!("CARGO_BIN_EXE_system-scheduler");
