//! The scheduler's daemon and client against a real service.

mod concurrency;
mod faults;
mod replicas;
mod service;
// The scheduler's own test helpers (its daemon and a stand-in peer), with this build's
// scheduler.
#[allow(dead_code)]
#[path = "../../../../../scheduler/tests/all/support.rs"]
mod support;
