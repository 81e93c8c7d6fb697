//! The listener under the real supervisor.

mod with_supervisor;
