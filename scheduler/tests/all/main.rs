//! The scheduler's one integration-test binary: the schedule maths against a brute-force
//! scanner and hand-checked daylight-saving days, the command line, and the real daemon
//! against a small socket peer.

mod cli;
mod daemon;
mod dst;
mod faults;
mod files;
mod metrics;
mod notify;
mod page;
mod props;
mod service;
mod status;
mod support;
