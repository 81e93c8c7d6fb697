//! What a test needs from the machine and cannot do without: a missing one fails the test
//! with what to install or how to run, never a silent pass. scripts/test runs the suite as
//! root and CI installs every tool and module named here.

use std::process::Command;

/// Fails the test unless it runs as root; `why` completes "needs root to ...".
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to {why}: run the tests as root, as scripts/test does"
    );
}

/// Fails the test unless `python3` can import `module`; `install` says how to get it.
pub fn require_python_module(module: &str, install: &str) {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    match probe {
        Err(e) => panic!("this test needs python3 ({e}); then {install}"),
        Ok(o) if !o.status.success() => panic!(
            "this test needs python3's {module} ({install}):\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "needs python3's no_such_module_here (pip install nothing)")]
    fn a_missing_module_fails_saying_how_to_get_it() {
        require_python_module("no_such_module_here", "pip install nothing");
    }
}
