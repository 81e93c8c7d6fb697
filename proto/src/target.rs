//! Replica targets (DESIGN.md section 10): `php` (any one live replica), `php.2` (instance
//! 2), `php@each` (every live instance), as `schedule.cron` and `scheduler send` take them,
//! and the discovery of a service's instance sockets.
//!
//! A trailing `.<digits>` of a target is always the instance, so a service whose own name
//! ends so cannot be named as a whole (`php.2` is never "the service php.2"); an instance
//! is 1..=9999 without a leading zero, as the supervisor claims it.
//!
//! Discovery only lists socket files: whether an instance is live is found by connecting
//! to it when a request is delivered, so a listing is never trusted as "up".

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The highest instance a replica may claim.
pub const MAX_INSTANCE: u32 = common::instance::MAX;

/// Which replicas of a service a target reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pick {
    /// `php`: any one live replica (the shared socket, else any live instance socket).
    Any,
    /// `php.2`: that instance.
    One(u32),
    /// `php@each`: every live instance.
    Each,
}

/// A service and which of its replicas: `php`, `php.2`, `php@each`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub service: String,
    pub pick: Pick,
}

/// Why a text is not a target; `col` is the 0-based column of the problem in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub col: usize,
    pub message: String,
}

/// What a target is, for error messages.
pub const FORMS: &str =
    "a target is SERVICE (any one replica), SERVICE.N (instance N, 1-9999) or SERVICE@each (every replica)";

/// Parses an instance number by the supervisor's rule ([`common::instance::parse`]), with
/// a message that says what is wrong with it.
pub fn parse_instance(text: &str) -> Result<u32, String> {
    if let Ok(n) = common::instance::parse(text) {
        return Ok(n);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "instance `{text}` is not a number: an instance is 1 to {MAX_INSTANCE}"
        ));
    }
    if text.starts_with('0') {
        return Err(if text.bytes().all(|b| b == b'0') {
            format!("instance `{text}` is out of range: instances count from 1 (to {MAX_INSTANCE})")
        } else {
            format!(
                "instance `{text}` has a leading zero: write it `{}`",
                text.trim_start_matches('0')
            )
        });
    }
    match text.parse::<u32>() {
        Ok(n) if n <= MAX_INSTANCE => Ok(n),
        _ => Err(format!(
            "instance `{text}` is out of range: an instance is 1 to {MAX_INSTANCE}"
        )),
    }
}

impl Target {
    /// Any one replica of `service`.
    pub fn any(service: &str) -> Target {
        Target {
            service: service.to_string(),
            pick: Pick::Any,
        }
    }

    /// Parses `php`, `php.2` or `php@each`.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        let err = |col: usize, message: String| TargetError { col, message };
        if text.is_empty() {
            return Err(err(0, format!("empty target: {FORMS}")));
        }
        let (service, pick) = if let Some(at) = text.find('@') {
            let (service, rest) = (&text[..at], &text[at + 1..]);
            if rest != "each" {
                let col = text[..at + 1].chars().count();
                return Err(err(
                    col,
                    format!(
                        "unknown replica selector `@{rest}`: only `@each` (every replica) is understood; {FORMS}"
                    ),
                ));
            }
            (service, Pick::Each)
        } else {
            match text.rsplit_once('.') {
                Some((service, digits))
                    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    let col = service.chars().count() + 1;
                    let n = parse_instance(digits).map_err(|m| err(col, m))?;
                    (service, Pick::One(n))
                }
                Some((_, "")) => {
                    return Err(err(
                        text.chars().count(),
                        format!("missing instance after `.`: {FORMS}"),
                    ));
                }
                _ => (text, Pick::Any),
            }
        };
        if !common::name::is_valid(service) {
            return Err(err(
                0,
                format!(
                    "`{service}` is not a valid service name: {} (it names the socket <service>-request.sock)",
                    common::name::RULE
                ),
            ));
        }
        Ok(Target {
            service: service.to_string(),
            pick,
        })
    }

    /// The instance this target names, if it names one.
    pub fn instance(&self) -> Option<u32> {
        match self.pick {
            Pick::One(n) => Some(n),
            _ => None,
        }
    }

    /// The same service's instance `n`: what one delivery of an `@each` fan-out goes to.
    pub fn at(&self, n: u32) -> Target {
        Target {
            service: self.service.clone(),
            pick: Pick::One(n),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pick {
            Pick::Any => f.write_str(&self.service),
            Pick::One(n) => write!(f, "{}.{n}", self.service),
            Pick::Each => write!(f, "{}@each", self.service),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Target, TargetError> {
        Target::parse(s)
    }
}

/// The socket file of instance `n` of `service` in `dir`: `<service>.<n>-request.sock`.
pub fn instance_socket_path(dir: &Path, service: &str, n: u32) -> PathBuf {
    common::instance::socket_path(dir, service, n)
}

/// The directory holding the instance sockets of `service`: the one that
/// `<run_dir>/<service>-request.sock` leads to when it is a symlink (the scheduler's
/// `/run/php-request.sock -> php/php-request.sock` gives `/run/php`), else `run_dir`.
pub fn instance_dir(run_dir: &Path, service: &str) -> PathBuf {
    let shared = crate::request_socket_path(run_dir, service);
    match std::fs::read_link(&shared) {
        Ok(to) => {
            let to = if to.is_absolute() {
                to
            } else {
                run_dir.join(to)
            };
            match to.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => run_dir.to_path_buf(),
            }
        }
        Err(_) => run_dir.to_path_buf(),
    }
}

/// The instance of a file name `<service>.<n>-request.sock`, if it is one.
pub fn instance_of_name(service: &str, name: &str) -> Option<u32> {
    common::instance::of_socket_name(name, service)
}

/// The instance sockets of `service` ([`instance_dir`]), sorted by instance: every
/// `<service>.<n>-request.sock` that is a socket (a symlink to one counts). Whether each is
/// live is found by connecting. A directory that does not exist has none.
pub fn instance_sockets(run_dir: &Path, service: &str) -> io::Result<Vec<(u32, PathBuf)>> {
    use std::os::unix::fs::FileTypeExt;
    let dir = instance_dir(run_dir, service);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| instance_of_name(service, n)) else {
            continue;
        };
        let path = entry.path();
        if std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            found.push((n, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The instance whose socket `path` is: by its name (`php.3-request.sock`), or, for the
/// shared `php-request.sock` (a hard link to one replica's socket), by the instance socket
/// that is the same file. `None` when none is (or `path` is gone).
pub fn instance_of_path(run_dir: &Path, service: &str, path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    if let Some(n) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| instance_of_name(service, n))
    {
        return Some(n);
    }
    let m = std::fs::metadata(path).ok()?;
    instance_sockets(run_dir, service)
        .ok()?
        .into_iter()
        .find(|(_, p)| std::fs::metadata(p).is_ok_and(|o| o.ino() == m.ino() && o.dev() == m.dev()))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, String) {
        let e = Target::parse(text).unwrap_err();
        (e.col, e.message)
    }

    #[test]
    fn the_three_forms_round_trip() {
        for (text, service, pick) in [
            ("php", "php", Pick::Any),
            ("php.2", "php", Pick::One(2)),
            ("php.9999", "php", Pick::One(9999)),
            ("php@each", "php", Pick::Each),
            ("a.b.3", "a.b", Pick::One(3)),
            ("a.b", "a.b", Pick::Any),
            ("x-1.y", "x-1.y", Pick::Any),
        ] {
            let t = Target::parse(text).unwrap();
            assert_eq!((t.service.as_str(), t.pick), (service, pick), "{text}");
            assert_eq!(t.to_string(), text);
        }
        assert_eq!(
            Target::parse("php@each").unwrap().at(3).to_string(),
            "php.3"
        );
        assert_eq!(Target::parse("php.7").unwrap().instance(), Some(7));
        assert_eq!(Target::any("php").instance(), None);
    }

    #[test]
    fn bad_targets_say_what_and_where() {
        assert_eq!(err("php.0").0, 4);
        assert!(
            err("php.0").1.contains("count from 1"),
            "{:?}",
            err("php.0")
        );
        assert_eq!(
            err("php.01"),
            (
                4,
                "instance `01` has a leading zero: write it `1`".to_string()
            )
        );
        assert!(err("php.10000").1.contains("out of range"));
        assert!(err("php.99999999999").1.contains("out of range"));
        let (col, m) = err("php@all");
        assert_eq!(col, 4);
        assert!(m.starts_with("unknown replica selector `@all`"), "{m}");
        assert!(err("php@").1.contains("`@`"));
        assert!(err("").1.starts_with("empty target"));
        assert_eq!(err("php.").0, 4);
        assert!(err("@each").1.contains("not a valid service name"));
        assert!(err(".x.2").1.contains("not a valid service name"));
        assert!(err("a/b@each").1.contains("not a valid service name"));
        assert!(err("php@each@each").1.contains("`@each@each`"));
    }

    #[test]
    fn instance_numbers() {
        assert_eq!(parse_instance("1"), Ok(1));
        assert_eq!(parse_instance("9999"), Ok(9999));
        for bad in ["", "0", "00", "01", "+1", "-1", "1x", "10000", " 1"] {
            assert!(parse_instance(bad).is_err(), "{bad:?}");
        }
        assert_eq!(instance_of_name("php", "php.2-request.sock"), Some(2));
        assert_eq!(instance_of_name("php", "php-request.sock"), None);
        assert_eq!(instance_of_name("php", "php.02-request.sock"), None);
        assert_eq!(instance_of_name("php", "phpx.2-request.sock"), None);
        assert_eq!(instance_of_name("a.b", "a.b.3-request.sock"), Some(3));
        assert_eq!(instance_of_name("a", "a.b.3-request.sock"), None);
    }

    #[test]
    fn discovery_lists_sockets_sorted_in_the_linked_directory() {
        use std::os::unix::net::UnixListener;
        let run = tempfile::tempdir().unwrap();
        // No directory, no link: none.
        assert!(instance_sockets(&run.path().join("nope"), "php")
            .unwrap()
            .is_empty());
        let _l: Vec<UnixListener> = [10, 2, 1]
            .iter()
            .map(|n| UnixListener::bind(instance_socket_path(run.path(), "php", *n)).unwrap())
            .collect();
        // Not sockets, or not this service's: ignored.
        std::fs::write(run.path().join("php.3-request.sock"), "").unwrap();
        let _o = UnixListener::bind(run.path().join("phpx.4-request.sock")).unwrap();
        let got = instance_sockets(run.path(), "php").unwrap();
        let ns: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(ns, [1, 2, 10]);
        assert_eq!(got[0].1, run.path().join("php.1-request.sock"));
        // A relative symlink for the shared socket: its directory is where instances live.
        let sub = run.path().join("php");
        std::fs::create_dir(&sub).unwrap();
        let _s = UnixListener::bind(sub.join("php.5-request.sock")).unwrap();
        std::os::unix::fs::symlink("php/php-request.sock", run.path().join("php-request.sock"))
            .unwrap();
        assert_eq!(instance_dir(run.path(), "php"), sub);
        let got = instance_sockets(run.path(), "php").unwrap();
        assert_eq!(got, [(5, sub.join("php.5-request.sock"))]);
        // The shared name is a hard link to one instance's socket: that instance.
        let shared = sub.join("php-request.sock");
        std::fs::hard_link(sub.join("php.5-request.sock"), &shared).unwrap();
        assert_eq!(instance_of_path(run.path(), "php", &shared), Some(5));
        assert_eq!(
            instance_of_path(run.path(), "php", &run.path().join("php-request.sock")),
            Some(5)
        );
        assert_eq!(
            instance_of_path(run.path(), "php", &sub.join("php.7-request.sock")),
            Some(7)
        );
        assert_eq!(instance_of_path(run.path(), "php", &sub.join("nope")), None);
    }
}
