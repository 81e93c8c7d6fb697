//! The supervisor's settings: `common::settings`, the one type the supervisor and the
//! listener share (`conf/service.toml`, `BOSUN_<KEY>` overrides, `supervisor -- CMD ...`),
//! loaded and validated all at once before anything starts. The listener gets them from
//! [`Settings::to_env`] and reads them back with the same rules.

pub use common::settings::*;
