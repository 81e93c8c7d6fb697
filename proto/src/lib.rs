//! The wire formats shared by bosun's three programs.
//!
//! * [`request`]: the one request line a client sends to `<service>-request.sock`.
//! * [`builtin`]: the table of built-ins and the supervisor's answers to them.
//! * [`digest`]: what binds a key to the words of its request (SHA-256).
//! * [`reply`]: the reply lines (`accepted`, `done`, `error`) the server sends back.
//! * [`status`]: the answer to `status` as a value, written and read in one place.
//! * [`control`]: the private channel between `supervisor` and its `listener` child.
//! * [`metrics`]: the Prometheus text exposition format, written in one place.
//! * [`target`]: replica targets (`php`, `php.2`, `php@each`) and instance sockets.
//!
//! * [`client`]: one request's reply sequence (pure) and a small blocking client, for
//!   `scheduler send`, the scheduler daemon and the tests.
//!
//! Everything here is pure (no I/O) except the two small fd-passing helpers in
//! [`control`] and [`client`]'s blocking connection, so it can be unit-tested and fuzzed
//! without processes.
//!
//! Where a new thing goes: a built-in is one row of `Builtin::TABLE` (its name, who answers,
//! its words, its flags) and one function on the side that answers it (the listener's
//! `builtins` module or the supervisor core's `on_command`); a new reply is a variant of
//! [`reply::Reply`] with its `Display` and parse.

pub mod builtin;
pub mod client;
pub mod control;
pub mod digest;
pub mod metrics;
pub mod reply;
pub mod request;
pub mod status;
pub mod target;

pub use builtin::{Answer, Builtin, By, Row, Words};
pub use reply::{ErrorCode, Reply};
pub use request::{parse_line, valid_key, Query, Request, RequestError, MAX_KEY, MAX_LINE};
pub use status::Status;
pub use target::{Pick, Target};

/// Turns an action name into its bash function: `rotate-logs` -> `CB_rotate_logs`.
pub fn callback_function(action: &str) -> String {
    format!("CB_{}", action.replace('-', "_"))
}

/// The request socket of a service: `<run_dir>/<service>-request.sock`.
pub fn request_socket_path(run_dir: &std::path::Path, service: &str) -> std::path::PathBuf {
    run_dir.join(format!("{service}-request.sock"))
}
