//! The catch-up state: the last fire of every schedule line, kept in `$BOSUN_STATE_DIR`,
//! and the secret that makes the scheduler's fire keys unguessable ([`FireKeys`]).
//!
//! One small file per line (named by a stable hash of the line's key, holding the instant and
//! the key itself to rule out collisions), replaced atomically by rename: a fire rewrites a
//! few dozen bytes, not the whole table, so a 10,000-line schedule stays cheap, and a crash
//! mid-write leaves the previous record intact. Every file goes through [`common::fs`]: the
//! directory is made 0700, files are read and written without following symlinks, and
//! temporaries are fresh (`O_EXCL`) and removed when a write fails.

use std::fs;
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use common::fs::Durability;
use siphasher::sip::SipHasher24;

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

/// Makes the fire keys (DESIGN.md section 2, "Keyed requests"): `<tag>:<fire time>`, where
/// the tag is 16 hex digits of SipHash-2-4 of the line's key and the fire time under a
/// 128-bit secret of this scheduler. Whoever can reach a service's socket but not the
/// scheduler's state directory cannot compute the key of a coming fire, so cannot send it
/// first and have the scheduled run answered from their run (the listener ties a key to its
/// request's words as well; this covers the same words sent early).
///
/// The secret lives in `$BOSUN_STATE_DIR/fire-key.secret` (mode 0600, made once), so keys
/// are the same after a restart: a catch-up, a resumed run and a retry still carry the
/// fire's one key, and the service still runs it once. Without a state directory there is
/// no catch-up and no resume to match, and the secret is made afresh at every start.
#[derive(Clone)]
pub struct FireKeys {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for FireKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FireKeys(..)")
    }
}

/// The secret's file in the state directory.
pub const SECRET_FILE: &str = "fire-key.secret";

impl FireKeys {
    /// The secret of the state directory `dir`: read, or made (128 random bits) when the
    /// file is absent. A file that does not hold a secret (damaged by hand) is replaced by
    /// a new one, with a warning: keys of fires sent before then no longer match.
    pub fn open(dir: &Path) -> Result<FireKeys, StateError> {
        let path = dir.join(SECRET_FILE);
        let err = |doing: &'static str| {
            let path = path.clone();
            move |source| StateError {
                doing,
                path,
                source,
            }
        };
        common::fs::private_dir(dir).map_err(|source| StateError {
            doing: "making the state directory",
            path: dir.to_path_buf(),
            source,
        })?;
        for _ in 0..3 {
            match common::fs::open_read(&path) {
                Ok(mut f) => {
                    let mut text = String::new();
                    f.read_to_string(&mut text)
                        .map_err(err("reading the fire key secret"))?;
                    if let Some(keys) = FireKeys::parse(&text) {
                        let mode = f.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
                        if mode & 0o077 != 0 {
                            f.set_permissions(fs::Permissions::from_mode(0o600))
                                .map_err(err("making the fire key secret private"))?;
                        }
                        return Ok(keys);
                    }
                    tracing::warn!(file = %path.display(), "the fire key secret is damaged; making a new one (runs in flight may be sent again under a new key)");
                    let keys = FireKeys::random().map_err(err("making the fire key secret"))?;
                    common::fs::write_atomic(
                        &path,
                        keys.text().as_bytes(),
                        0o600,
                        Durability::Durable,
                    )
                    .map_err(err("writing the fire key secret"))?;
                    return Ok(keys);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let keys = FireKeys::random().map_err(err("making the fire key secret"))?;
                    // Written whole to a fresh temporary, then linked to its name: the
                    // link fails when another start made it first, and then that one is
                    // read. The file is never seen half written.
                    let (tmp, mut f) = common::fs::create_temp(&path, 0o600)
                        .map_err(err("writing the fire key secret"))?;
                    let made = f
                        .write_all(keys.text().as_bytes())
                        .and_then(|()| f.sync_all())
                        .and_then(|()| fs::hard_link(&tmp, &path));
                    let _ = fs::remove_file(&tmp);
                    match made {
                        Ok(()) => {
                            let _ = common::fs::sync_dir(dir);
                            return Ok(keys);
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(err("writing the fire key secret")(e)),
                    }
                }
                Err(e) => return Err(err("reading the fire key secret")(e)),
            }
        }
        Err(err("reading the fire key secret")(io::Error::other(
            "it keeps changing",
        )))
    }

    /// A secret of this process only (no state directory).
    pub fn random() -> io::Result<FireKeys> {
        let mut b = [0u8; 16];
        fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        let (k0, k1) = b.split_at(8);
        Ok(FireKeys {
            k0: u64::from_le_bytes(k0.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(k1.try_into().unwrap_or_default()),
        })
    }

    fn text(&self) -> String {
        format!("{:016x}{:016x}\n", self.k0, self.k1)
    }

    fn parse(text: &str) -> Option<FireKeys> {
        let t = text.strip_suffix('\n').unwrap_or(text);
        if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(FireKeys {
            k0: u64::from_str_radix(&t[..16], 16).ok()?,
            k1: u64::from_str_radix(&t[16..], 16).ok()?,
        })
    }

    /// The key of one fire of a line: the tag and the fire time in Unix seconds,
    /// `0123456789abcdef:1764821100` (27 characters of the allowed set). A retry of the
    /// fire, and a re-send after a restart or a catch-up of the same fire time, carry the
    /// same key, so the service runs it once. Cron fires fall on whole minutes; an
    /// `@reboot` fire is the scheduler's start instant, which is kept to the millisecond
    /// (`...:1764821100123`) so that two starts within one second each run it.
    pub fn fire(&self, line_key: &str, due: DateTime<Utc>) -> String {
        let at = if due.timestamp_subsec_millis() == 0 {
            due.timestamp()
        } else {
            due.timestamp_millis()
        };
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write(line_key.as_bytes());
        h.write(&[0]);
        h.write(at.to_string().as_bytes());
        format!("{:016x}:{at}", h.finish())
    }
}

impl StateStore {
    /// Opens (creating if needed) the directory.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        common::fs::private_dir(dir).map_err(|source| StateError {
            doing: "making the state directory",
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
        let mut text = String::new();
        common::fs::open_read(&self.path(key))
            .ok()?
            .read_to_string(&mut text)
            .ok()?;
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
        // To the millisecond, as fire times are kept (an `@reboot` fire's is its start).
        let text = format!(
            "{}\n{key}\n",
            common::time::rfc3339_ms(at.timestamp_millis())
        );
        // Not fsynced: a fire lost to a crash is caught up again, with its key.
        common::fs::write_atomic(&path, text.as_bytes(), 0o600, Durability::Atomic).map_err(
            |source| StateError {
                doing: "recording the last fire in",
                path: path.clone(),
                source,
            },
        )
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
        let dir = tempfile::tempdir().unwrap();
        let keys = FireKeys::open(dir.path()).unwrap();
        let fire_key = |k: &str, t| keys.fire(k, t);
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
        // the same secret after a restart: the same keys
        let again = FireKeys::open(dir.path()).unwrap();
        assert_eq!(again.fire("UTC 5 4 * * * forum mysql nightly-backup", t), k);
    }

    /// Expected: the key of a fire depends on the secret (another state directory, another
    /// key: nobody without the secret can compute it, as the old `<line hash>:<time>` could
    /// be); the secret file is 0600 whatever the umask, a damaged one is replaced, and a
    /// symlink planted at its name is not followed.
    #[test]
    fn fire_keys_need_the_secret() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let t = DateTime::from_timestamp(1_764_821_100, 0).unwrap();
        let line = "UTC 5 4 * * * forum mysql nightly-backup";
        let ka = FireKeys::open(a.path()).unwrap().fire(line, t);
        let kb = FireKeys::open(b.path()).unwrap().fire(line, t);
        assert_ne!(ka, kb);
        assert_ne!(ka.split(':').next(), Some(line_hash(line).as_str()));
        let secret = a.path().join(SECRET_FILE);
        assert_eq!(
            fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(FireKeys::random().unwrap().fire(line, t) != ka);
        // damaged: a new secret, another key
        fs::write(&secret, "not a secret\n").unwrap();
        let kc = FireKeys::open(a.path()).unwrap().fire(line, t);
        assert_ne!(kc, ka);
        assert_eq!(FireKeys::open(a.path()).unwrap().fire(line, t), kc);
        // a planted symlink is refused, its target untouched
        let c = tempfile::tempdir().unwrap();
        let victim = c.path().join("victim");
        fs::write(&victim, "IMPORTANT").unwrap();
        std::os::unix::fs::symlink(&victim, c.path().join(SECRET_FILE)).unwrap();
        assert!(FireKeys::open(c.path()).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "IMPORTANT");
    }
}
