//! Finds the commit the programs are built from, for `common::version`: the short hash of
//! `HEAD` when git and a repository are there; else `BOSUN_COMMIT` from the build's
//! environment (a Docker build context has no `.git`); else `unknown`. Never fails the
//! build: a missing git is an ordinary case, not an error.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BOSUN_COMMIT");
    let commit = from_git()
        .or_else(|| clean(std::env::var("BOSUN_COMMIT").ok()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BOSUN_COMMIT={commit}");
}

/// `git rev-parse --short=12 HEAD`, with the files that move when `HEAD` does watched, so
/// a commit or a checkout builds the new hash in.
fn from_git() -> Option<String> {
    let commit = clean(git(&["rev-parse", "--short=12", "HEAD"]))?;
    for path in ["HEAD", "packed-refs"] {
        watch(path);
    }
    if let Some(branch) = clean(git(&["symbolic-ref", "-q", "HEAD"])) {
        watch(&branch);
    }
    Some(commit)
}

/// Asks cargo to build again when `path` (relative to the git directory: `HEAD`,
/// `refs/heads/main`) changes; worktrees keep `HEAD` and refs in different places, which
/// `--git-path` resolves.
fn watch(path: &str) {
    if let Some(p) = clean(git(&["rev-parse", "--git-path", path])) {
        let p = PathBuf::from(p);
        let p = if p.is_absolute() {
            p
        } else {
            let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
            dir.unwrap_or_default().join(p)
        };
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

/// A one-word value, or nothing: a hash or a tag, never text that could break the line.
fn clean(s: Option<String>) -> Option<String> {
    let s = s?.trim().to_string();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    ok.then_some(s)
}
