//! The listener's integration tests: the real binary, real processes, real sockets.
//! `harness` plays the supervisor; each module is one part of DESIGN.md section 2. Under
//! the real supervisor: tests/system.

#[path = "all/harness.rs"]
mod harness;

#[path = "all/actions.rs"]
mod actions;
#[path = "all/bad_input.rs"]
mod bad_input;
#[path = "all/clients.rs"]
mod clients;
#[path = "all/config.rs"]
mod config;
#[path = "all/control.rs"]
mod control;
#[path = "all/exhaustion.rs"]
mod exhaustion;
#[path = "all/journal_faults.rs"]
mod journal_faults;
#[path = "all/keys.rs"]
mod keys;
#[path = "all/options.rs"]
mod options;
#[path = "all/protocol.rs"]
mod protocol;
#[path = "all/security.rs"]
mod security;
#[path = "all/shutdown.rs"]
mod shutdown;
