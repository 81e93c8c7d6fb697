//! The one version line of bosun's three programs: `bosun <version> (<commit>)`, as the
//! `version` built-in answers and `--version` prints it. The version is the workspace's
//! (Cargo.toml); the commit is found at build time by `common/build.rs` (git, else the
//! `BOSUN_COMMIT` build variable, else `unknown`).

/// The workspace version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit built from: 12 hex digits, or `unknown`.
pub const COMMIT: &str = env!("BOSUN_COMMIT");

/// `bosun 0.1.0 (ac15a5f1b2c3)`.
pub fn text() -> String {
    format!("bosun {VERSION} ({COMMIT})")
}

/// Whether a program's first argument asks for its version (`--version`, `-V`).
pub fn asked<S: AsRef<std::ffi::OsStr>>(first: Option<S>) -> bool {
    first.is_some_and(|a| matches!(a.as_ref().to_str(), Some("--version" | "-V")))
}

/// `--version` for every program, one line in its `main`: when its first argument asks for
/// the version, prints [`text`] and returns `true` (exit 0 then).
pub fn print_if_asked() -> bool {
    let asked = asked(std::env::args_os().nth(1));
    if asked {
        println!("{}", text());
    }
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_version_and_commit() {
        let t = text();
        assert!(t.starts_with("bosun 0."), "{t}");
        assert!(t.ends_with(&format!(" ({COMMIT})")), "{t}");
        assert!(!t.contains('\n'));
        assert!(!COMMIT.is_empty() && !COMMIT.contains(' '), "{COMMIT}");
    }

    #[test]
    fn version_flags() {
        assert!(asked(Some("--version")) && asked(Some("-V")));
        assert!(!asked(None::<&str>) && !asked(Some("--versions")) && !asked(Some("status")));
    }
}
