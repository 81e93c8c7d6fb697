//! Replicas (DESIGN.md section 10): the one rule for instance names and the files named
//! after them, for all three programs.
//!
//! An instance is a whole number 1 to [`MAX`], written without leading zeros (Swarm's
//! `{{.Task.Slot}}` is one). Replica `n` of service `s` serves `<run_dir>/s.n-request.sock`;
//! `<run_dir>/s-request.sock` is another name (a hard link) of one live replica's socket.
//! So in a target `php.2` the text after the last `.` is the instance when it is all digits.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The highest instance number.
pub const MAX: u32 = 9999;

/// The placeholder that service.toml paths may hold: replaced by the instance.
pub const PLACEHOLDER: &str = "{instance}";

/// What a valid instance is, for error messages.
pub const RULE: &str = "a whole number from 1 to 9999 without leading zeros";

/// An instance name that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not an instance: {RULE}")]
pub struct InstanceError(pub String);

/// Reads an instance number.
pub fn parse(s: &str) -> Result<u32, InstanceError> {
    let bad = || InstanceError(s.to_string());
    if s.is_empty() || s.len() > 4 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<u32>().map_err(|_| bad())
}

/// `<service>.<n>-request.sock` in `dir`: instance `n`'s request socket.
pub fn socket_path(dir: &Path, service: &str, n: u32) -> PathBuf {
    dir.join(format!("{service}.{n}-request.sock"))
}

/// The instance a file name in a run directory is the request socket of, for `service`
/// (`php.2-request.sock` -> 2).
pub fn of_socket_name(name: &str, service: &str) -> Option<u32> {
    let rest = name.strip_prefix(service)?.strip_prefix('.')?;
    parse(rest.strip_suffix("-request.sock")?).ok()
}

/// The instances whose request socket files are in `dir`, sorted (live or not: whether one
/// answers is found by connecting).
pub fn list(dir: &Path, service: &str) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = of_socket_name(e.file_name().to_str()?, service)?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// The stem of instance `n`'s journal and other per-replica files: the service name for
/// instance 1 (so a single container keeps the files it had before replicas), else
/// `<service>.<n>`.
pub fn stem(service: &str, n: Option<u32>) -> String {
    match n {
        None | Some(1) => service.to_string(),
        Some(n) => format!("{service}.{n}"),
    }
}

/// `text` with every [`PLACEHOLDER`] replaced by `n`.
pub fn expand(text: &str, n: u32) -> String {
    text.replace(PLACEHOLDER, &n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_only_without_leading_zeros() {
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse("9999"), Ok(9999));
        for bad in ["", "0", "01", "10000", "-1", "+1", "a", "1a", " 1", "1.0"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("x").unwrap_err().to_string().contains("1 to 9999"));
    }

    #[test]
    fn socket_names() {
        let p = socket_path(Path::new("/run"), "php", 3);
        assert_eq!(p, Path::new("/run/php.3-request.sock"));
        assert_eq!(of_socket_name("php.3-request.sock", "php"), Some(3));
        assert_eq!(of_socket_name("php-request.sock", "php"), None);
        assert_eq!(of_socket_name("php.03-request.sock", "php"), None);
        assert_eq!(of_socket_name("phpx.3-request.sock", "php"), None);
        assert_eq!(of_socket_name("my.app.2-request.sock", "my.app"), Some(2));
        assert_eq!(of_socket_name("php.3-request.sock.tmp", "php"), None);
    }

    #[test]
    fn lists_sorted() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "php.10-request.sock",
            "php.2-request.sock",
            "php-request.sock",
            "wiki.1-request.sock",
        ] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let l: Vec<u32> = list(d.path(), "php").into_iter().map(|(n, _)| n).collect();
        assert_eq!(l, [2, 10]);
        assert!(list(&d.path().join("none"), "php").is_empty());
    }

    #[test]
    fn stems_and_placeholders() {
        assert_eq!(stem("php", None), "php");
        assert_eq!(stem("php", Some(1)), "php");
        assert_eq!(stem("php", Some(2)), "php.2");
        assert_eq!(expand("/s/forum.{instance}.sock", 4), "/s/forum.4.sock");
        assert_eq!(expand("/s/forum.sock", 4), "/s/forum.sock");
    }
}
