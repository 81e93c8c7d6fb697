//! The supervisor with its real listener (and the scheduler as a client of both).

mod exhaustion;
mod faults;
mod harness;
mod journal;
mod metrics;
mod parity;
mod privilege;
mod replicas;
mod requests;
