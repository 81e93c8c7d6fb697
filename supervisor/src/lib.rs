//! bosun's supervisor: PID 1 of every container. See DESIGN.md section 4.
//!
//! One duty per module:
//! - [`core`]: every supervision decision and deadline, pure (events in, effects out);
//!   a new decision goes there, with a fake-clock test in `core/tests.rs`;
//! - [`run`]: the loop that feeds the core and carries out its effects;
//! - I/O beside the loop: [`lazy`] (clients on the request socket while no listener runs),
//!   [`ondemand`] (the held socket) and [`proxy`] (its byte pump), [`socket`] (binding and
//!   connecting), [`instance`] (this replica's number, its socket and the shared name),
//!   [`spawn`] (starting children), [`reap`] (the only waiter), [`accept`]
//!   (accepting when descriptors run out), [`ready`] (probes and `READY=1`), [`procfs`]
//!   (what is read in /proc), [`trim`] (giving memory back);
//! - small pieces: [`cli`] (the command line; `main.rs` only calls it), [`config`]
//!   (settings, and the starting checks), [`status`] (the health-check client),
//!   [`metrics`] (the main process's metric families), [`signals`] (which signals are
//!   forwarded), [`backoff`].
//!
//! Its log is `common::log`'s, as the listener's and the scheduler's.

pub mod accept;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod core;
pub mod instance;
pub mod lazy;
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
