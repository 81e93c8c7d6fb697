//! The supervisor under test ([`testkit::supervisor`]) with this build's listener.

#![allow(dead_code, unused_imports)]

pub use crate::{SCHEDULER, SUPERVISOR};
pub use testkit::supervisor::*;

const BINS: Bins = Bins {
    supervisor: SUPERVISOR,
    listener: Some(crate::LISTENER),
};

/// A supervisor run of this build's binaries.
pub fn sup(mode: Mode) -> Builder {
    Builder::new(BINS, mode)
}

/// This build's scheduler.
pub fn scheduler_path() -> std::path::PathBuf {
    SCHEDULER.into()
}

/// The listener's process name as /proc shows it (`comm`: its file name, cut to 15 bytes).
pub fn listener_comm() -> String {
    let name = std::path::Path::new(crate::LISTENER)
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    name.chars().take(15).collect()
}
