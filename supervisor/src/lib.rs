//! bosun's supervisor: PID 1 of every container. See DESIGN.md section 4.
//!
//! One duty per module: [`core`] (every supervision decision, pure: events in, effects
//! out), [`run`] (the loop that feeds it and carries out its effects), [`config`]
//! (settings), [`socket`] (the request socket's life), [`spawn`] (starting children),
//! [`reap`] (the only waiter), [`metrics`] (the main process's families), [`accept`] (accepting when descriptors run out), [`procfs`] (what is read in /proc), [`ondemand`] and
//! [`proxy`] (the held socket's I/O), [`ready`] (probes), [`status`] (the health-check
//! client), [`signals`] (names, forwarding, exit codes),, [`backoff`]. Its log is
//! `common::log`'s, as the listener's and the scheduler's.

pub mod accept;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod core;
pub mod metrics;
pub mod ondemand;
pub mod procfs;
pub mod proxy;
pub mod ready;
pub mod reap;
pub mod run;
pub mod signals;
pub mod socket;
pub mod spawn;
pub mod status;
pub mod trim;

/// Exit code for bosun's own setup errors (bad settings, socket taken), distinct from
/// 126/127 (main command cannot run) and from any code the main process is likely to use.
/// Docker uses 125 the same way for its own errors.
pub const EXIT_SETUP: i32 = common::exit::SETUP as i32;
