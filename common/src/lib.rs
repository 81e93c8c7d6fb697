//! What the three programs (supervisor, listener, scheduler) share, once: so that they
//! log alike, read durations and names by the same rules, agree on exit codes, and the
//! supervisor and the listener read one settings type.
//!
//! * [`log`]: the small `tracing` subscriber, one event a line, text or JSON.
//! * [`duration`]: `30s`, `5m`, `1h30m` or a bare number of seconds.
//! * [`name`]: the rule for service, action and user names.
//! * [`exit`]: exit codes, and the 128+N rule for a death by signal N.
//! * [`signal`]: signal names and process-group signalling.
//! * [`shell`]: bash, or `/bin/sh` where there is no bash.
//! * [`passwd`]: users and groups by name from `/etc/passwd` and `/etc/group` (no NSS).
//! * [`peer`]: a unix socket peer's supplementary groups (`SO_PEERGROUPS`).
//! * [`settings`]: `service.toml` and the `BOSUN_*` variables, validated all at once.
//! * [`time`]: RFC 3339 timestamps, by hand.
//! * [`rlimit`]: the open-file limit, raised where many connections are held.
//! * [`text`]: others' bytes (action output, requests, replies) made safe to show.
//! * [`fs`]: state files written safely: a 0700 directory, no symlinks followed, atomic replace.
//! * [`instance`]: replicas' instance numbers and the files named after them.
//! * [`version`]: the `bosun <version> (<commit>)` line of `version` and `--version`.
//!
//! Where a new thing goes: a `service.toml` key or `BOSUN_*` variable is one row in
//! `settings/keys.rs` (its file key, variable, default, parser, how `to_env` writes it) and
//! its field in `settings/mod.rs`; the tests over the rows (round trip, names, blanks) cover
//! it without being told. A rule all three programs follow (a name, a duration, an exit
//! code) is written here once. Nothing here knows the wire (`proto`) or its callers.

pub mod duration;
pub mod exit;
pub mod fs;
pub mod instance;
pub mod log;
pub mod name;
pub mod passwd;
pub mod peer;
pub mod rlimit;
pub mod settings;
pub mod shell;
pub mod signal;
pub mod text;
pub mod time;
pub mod version;
