//! One rule for the names bosun takes from users: service names (they name a socket
//! file), action names and user (site, tenant) names (handed to callbacks that build paths
//! and command lines from them). 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`
//! or `-`: no `/`, no `..`, nothing a command would read as an option.

use thiserror::Error;

/// Longest name accepted.
pub const MAX: usize = 64;

/// What a valid name is, for error messages.
pub const RULE: &str = "1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'";

/// A name that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a valid name: {RULE}")]
pub struct NameError(pub String);

/// Whether `s` is a valid name.
pub fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// [`is_valid`] as a `Result`.
pub fn check(s: &str) -> Result<(), NameError> {
    if is_valid(s) {
        Ok(())
    } else {
        Err(NameError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid() {
        for s in [
            "mysql",
            "php-fpm",
            "a",
            "x.y_z-1",
            "_private",
            "9",
            &"a".repeat(64),
        ] {
            assert!(is_valid(s), "{s}");
        }
    }

    #[test]
    fn invalid() {
        for s in [
            "",
            ".hidden",
            "-opt",
            "a/b",
            "..",
            "a b",
            "é",
            "a:b",
            &"a".repeat(65),
        ] {
            assert!(!is_valid(s), "{s}");
            assert!(check(s)
                .unwrap_err()
                .to_string()
                .contains("not a valid name"));
        }
    }
}
