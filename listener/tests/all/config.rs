//! Bad settings: one clear line each on stderr, exit 2, before serving anything.

use std::process::{Command, Stdio};

fn run(env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_listener"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_exit_2_with_one_line_each() {
    let (code, err) = run(&[
        ("BOSUN_SERVICE", "x"),
        ("BOSUN_MAX_ACTIONS", "lots"),
        ("BOSUN_READ_TIMEOUT", "soon"),
    ]);
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("BOSUN_READ_TIMEOUT: \"soon\" is not a duration")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("BOSUN_MAX_ACTIONS: \"lots\" is not a whole number")),
        "{err}"
    );
}

#[test]
fn bad_log_settings_are_errors() {
    // The same rule as the supervisor's and the scheduler's: one line each, no fallback.
    let (code, err) = run(&[
        ("BOSUN_SERVICE", "x"),
        ("BOSUN_LOG", "loud=yes"),
        ("BOSUN_LOG_FORMAT", "xml"),
    ]);
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("BOSUN_LOG: \"loud=yes\" is not a level")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("BOSUN_LOG_FORMAT: \"xml\" is not a log format")),
        "{err}"
    );
}

#[test]
fn service_is_required() {
    let (code, err) = run(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("BOSUN_SERVICE"), "{err}");
}

#[test]
fn without_the_socket_fd() {
    // fd 3 is not ours to give here: cargo's test runner may hold anything there, so run
    // through a shell that closes it.
    let out = Command::new("sh")
        .args([
            "-c",
            "exec 3>&- 4>&-; exec \"$0\"",
            env!("CARGO_BIN_EXE_listener"),
        ])
        .env_clear()
        .env("BOSUN_SERVICE", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fd 3"), "{err}");
}
