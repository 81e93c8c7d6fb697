//! The catch-up state: the last fire of every schedule line, kept in `$BOSUN_STATE_DIR`.
//!
//! One small file per line (named by a stable hash of the line's key, holding the instant and
//! the key itself to rule out collisions), replaced atomically by rename: a fire rewrites a
//! few dozen bytes, not the whole table, so a 10,000-line schedule stays cheap, and a crash
//! mid-write leaves the previous record intact.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// Failure to use the state directory, with what we were doing and where.
#[derive(Debug, thiserror::Error)]
#[error("{doing} {}: {source}", path.display())]
pub struct StateError {
    doing: &'static str,
    path: PathBuf,
    source: io::Error,
}

/// The store.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

/// FNV-1a, 64 bits: stable across builds and Rust versions, unlike `DefaultHasher`.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A line's identity as 16 hex digits: the hash of [`crate::schedule::Entry::key`] (its
/// zone, time expression and `[user] service action`, not its line number), so that an edit
/// elsewhere in the file does not change it. Names the line's files in the state directory.
pub fn line_hash(line_key: &str) -> String {
    format!("{:016x}", fnv1a(line_key))
}

/// The key of one fire of a line (DESIGN.md section 2, "Keyed requests"): the line's hash
/// and the fire time in Unix seconds, `0123456789abcdef:1764821100` (27 characters of the
/// allowed set). A retry of the fire, and a re-send after a restart or a catch-up of the
/// same fire time, carry the same key, so the service runs it once. Cron fires fall on whole
/// minutes; an `@reboot` fire is the scheduler's start instant, which is kept to the
/// millisecond (`...:1764821100123`) so that two starts within one second each run it.
pub fn fire_key(line_key: &str, due: DateTime<Utc>) -> String {
    let at = if due.timestamp_subsec_millis() == 0 {
        due.timestamp()
    } else {
        due.timestamp_millis()
    };
    format!("{}:{at}", line_hash(line_key))
}

impl StateStore {
    /// Opens (creating if needed) the directory.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        fs::create_dir_all(dir).map_err(|source| StateError {
            doing: "creating the state directory",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(StateStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.last", line_hash(key)))
    }

    /// The recorded last fire of `key`; `None` when unknown or unreadable.
    pub fn last(&self, key: &str) -> Option<DateTime<Utc>> {
        let text = fs::read_to_string(self.path(key)).ok()?;
        let (when, stored_key) = text.split_once('\n')?;
        if stored_key.trim_end_matches('\n') != key {
            return None;
        }
        DateTime::parse_from_rfc3339(when)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Records `at` as the last fire of `key`.
    pub fn record(&self, key: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        let path = self.path(key);
        let tmp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(format!("{}\n{key}\n", at.to_rfc3339()).as_bytes())?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| StateError {
            doing: "recording the last fire in",
            path: path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("st")).unwrap();
        assert_eq!(s.last("k"), None);
        let t = DateTime::parse_from_rfc3339("2026-11-22T04:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        s.record("UTC 5 4 * * * mysql backup", t).unwrap();
        assert_eq!(s.last("UTC 5 4 * * * mysql backup"), Some(t));
        assert_eq!(s.last("UTC 5 4 * * * mysql other"), None);
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn fire_keys_are_stable_and_short() {
        let t = DateTime::from_timestamp(1_764_821_100, 0).unwrap();
        let k = fire_key("UTC 5 4 * * * forum mysql nightly-backup", t);
        assert_eq!(k, fire_key("UTC 5 4 * * * forum mysql nightly-backup", t));
        assert!(k.ends_with(":1764821100"), "{k}");
        assert_eq!(k.len(), 27);
        assert_ne!(k, fire_key("UTC 5 4 * * * forum mysql other", t));
        let reboot = t + chrono::Duration::milliseconds(123);
        assert!(fire_key("k", reboot).ends_with(":1764821100123"));
        assert_ne!(
            k,
            fire_key(
                "UTC 5 4 * * * forum mysql nightly-backup",
                t + chrono::Duration::minutes(1)
            )
        );
    }
}
