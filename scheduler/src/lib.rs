//! bosun's scheduler: reads `schedule.cron`, sends requests to `<service>-request.sock` at
//! fire times, and is the command-line client for those sockets (`scheduler send`).
//!
//! The pure parts come first and know nothing of I/O: [`cron`] (one expression),
//! [`schedule`] (the file), [`plan`] (next fire in a zone, with the daylight-saving rules).
//! [`planner`] is the daemon's clock logic (cursor, clock steps, reloads), pure too.
//! The daemon's other decisions are pure as well: [`concurrency`] (`CONCURRENCY=`: run,
//! skip, queue or replace a fire while the line's previous run runs), [`job`] (one fire or notification to
//! deliver), [`delivery`] (what the replies to a request mean for its fire: wait, retry and
//! why, or its outcome; built on `proto::client`) and [`alert`] (which outcome is told to
//! `ON_FAILURE=`/`ON_SUCCESS=`, and again at start) and [`fanout`] (the legs of a replica
//! target's fire: one per instance for `php@each`, their keys, their report lines). A new delivery or notification rule
//! goes there, with its unit test; [`daemon`] only carries them out.
//! The edges: [`client`] (`scheduler send`), [`daemon`] (the long-running scheduler), with
//! [`timer`] (a realtime timerfd that also wakes on clock steps) and [`state`] (catch-up
//! of runs missed while the scheduler was down) and [`record`] (every run of every line, for
//! `scheduler status`), which [`status`] reads. The reports are pure too: [`summary`] (what
//! they need of a line's runs), [`metrics`] (the Prometheus text) and [`page`] (the status
//! page); [`outputs`] is the daemon's writer of `BOSUN_METRICS_FILE` and
//! `BOSUN_STATUS_HTML`. [`cli`] is the command line; `common::text::shown` escapes text from outside
//! for the log and the terminal.

pub mod alert;
pub mod cli;
pub mod client;
pub mod concurrency;
pub mod cron;
pub mod daemon;
pub mod delivery;
pub mod fanout;
pub mod job;
pub mod metrics;
pub mod outputs;
pub mod page;
pub mod plan;
pub mod planner;
pub mod record;
pub mod schedule;
pub mod state;
pub mod status;
pub mod summary;
pub mod timer;
