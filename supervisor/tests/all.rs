//! The supervisor's black-box tests: the real binary, real processes, real signals.
//! Each PID-1 duty is checked twice: as PID 1 of a fresh PID namespace (`unshare --pid
//! --fork --mount-proc`, the way it runs in a container) and as a plain child subreaper.
//!
//! One integration-test binary for the crate (faster to link); modules by duty. The
//! supervisor with its listener or the scheduler: tests/system.

mod harness;

mod bad_input;
mod exhaustion;
mod exit_codes;
mod faults;
mod lifecycle;
mod ondemand;
mod parity;
mod privilege;
mod proxy_mode;
mod reaping;
mod signals;
