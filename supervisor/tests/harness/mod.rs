//! The supervisor under test, from the kit ([`testkit::supervisor`]) with this crate's
//! binary and no listener: tests that need the listener or the scheduler are system tests
//! (tests/system), whose build has all three.

#![allow(dead_code, unused_imports)]

pub use testkit::supervisor::*;

pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

const BINS: Bins = Bins {
    supervisor: SUPERVISOR,
    listener: None,
};

/// A supervisor run of this crate's binary.
pub fn sup(mode: Mode) -> Builder {
    Builder::new(BINS, mode)
}
