//! bosun's test kit, shared by the black-box tests of every crate (a dev-dependency only).
//!
//! - [`exhaustion`]: descriptors running out, CPU spent;
//! - [`wait`]: waiting for a condition with a deadline;
//! - [`lines`]: a program's output, waited on line by line, with its end as an event;
//! - [`prereq`]: root, a python module: missing, the test fails saying so;
//! - [`process`]: a spawned program whose output is pumped on threads that are joined;
//! - [`random`]: random fault points a seed replays;
//! - [`socket`]: one request over a unix socket, every reply line back;
//! - [`supervisor`]: the supervisor under test, built from the binaries a test crate has.
//!
//! Every wait here has a deadline and panics naming what it waited for.

pub mod exhaustion;
pub mod lines;
pub mod prereq;
pub mod process;
pub mod random;
pub mod socket;
pub mod supervisor;
pub mod wait;

pub use lines::Lines;
pub use process::Proc;
pub use wait::wait_until;

/// The default deadline of a wait for one event (a line, a reply, an exit).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);
