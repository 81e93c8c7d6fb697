//! Bad settings: one clear line each, a non-zero exit, and nothing started.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use crate::harness::*;

/// Runs with a main process that would leave a mark, and checks it never ran.
fn refused(b: Builder, needle: &str, code: i32) {
    let mark = b.dir().join("main-ran");
    let (st, out, err) = b
        .cmd(&["sh", "-c", &format!("touch {}", mark.display())])
        .run(Duration::from_secs(10));
    assert_eq!(st.code(), Some(code), "stderr:\n{err}");
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.is_empty());
    assert!(!mark.exists(), "the main process ran despite: {err}");
    for line in err.lines() {
        assert!(
            line.starts_with("supervisor: "),
            "not one clear line: {line:?}"
        );
    }
}

#[test]
fn missing_service_name() {
    refused(
        sup(Mode::Subreaper).env("BOSUN_SERVICE", ""),
        "not a valid service name",
        125,
    );
    let b = sup(Mode::Subreaper);
    let mut c = b.command();
    c.env_remove("BOSUN_SERVICE");
    let out = c.args(["--", "true"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("no service name"), "{err}");
}

#[test]
fn unknown_keys_all_reported_with_lines() {
    let b = sup(Mode::Subreaper);
    b.file(
        "service.toml",
        "service = \"t\"\nstop_timeuot = \"8s\"\n\nrestrat = \"always\"\n",
    );
    let toml = b.dir().join("service.toml");
    refused(
        b,
        &format!("{}:2:1: unknown key `stop_timeuot`", toml.display()),
        125,
    );
}

#[test]
fn unknown_keys_are_all_listed() {
    let b = sup(Mode::Subreaper);
    b.file(
        "service.toml",
        "stop_timeuot = \"8s\"\nrestrat = \"always\"\n",
    );
    let (st, _, err) = b.cmd(&["true"]).run(Duration::from_secs(10));
    assert_eq!(st.code(), Some(125));
    assert!(
        err.contains(":1:1: unknown key `stop_timeuot`")
            && err.contains(":2:1: unknown key `restrat`"),
        "{err}"
    );
}

#[test]
fn bad_duration() {
    refused(
        sup(Mode::Subreaper).env("BOSUN_STOP_TIMEOUT", "eight"),
        "BOSUN_STOP_TIMEOUT: \"eight\" is not a duration",
        125,
    );
    let b = sup(Mode::Subreaper);
    b.file("service.toml", "stop_timeout = \"8 fortnights\"\n");
    refused(
        b,
        "service.toml:1:16: stop_timeout: \"8 fortnights\" is not a duration",
        125,
    );
}

#[test]
fn bad_signal_name() {
    refused(
        sup(Mode::Subreaper).env("BOSUN_STOP_SIGNAL", "SIGSTOPPP"),
        "is not a signal name",
        125,
    );
}

#[test]
fn command_that_does_not_exist() {
    for mode in MODES {
        let (st, _, err) = sup(mode)
            .cmd(&["/no/such/program"])
            .run(Duration::from_secs(10));
        assert_eq!(st.code(), Some(127), "{err}");
        assert!(err.contains("main command not found"), "{err}");
    }
    let b = sup(Mode::Subreaper);
    let f = b.file("not-exec", "#!/bin/sh\n");
    let (st, _, err) = b.cmd(&[f.to_str().unwrap()]).run(Duration::from_secs(10));
    assert_eq!(st.code(), Some(126), "{err}");
}

#[test]
fn given_instance_taken_by_a_live_server() {
    let b = sup(Mode::Subreaper).env("BOSUN_INSTANCE", "2");
    std::fs::create_dir_all(b.dir().join("run")).unwrap();
    let _live = UnixListener::bind(b.dir().join("run/t.2-request.sock")).unwrap();
    refused(b, "a live server is already answering", 125);
}

#[test]
fn bad_instance() {
    refused(
        sup(Mode::Subreaper).env("BOSUN_INSTANCE", "02"),
        "BOSUN_INSTANCE: \"02\" is not an instance",
        125,
    );
}

#[test]
fn a_stale_socket_is_replaced() {
    let b = sup(Mode::Subreaper);
    std::fs::create_dir_all(b.dir().join("run")).unwrap();
    drop(UnixListener::bind(b.dir().join("run/t-request.sock")).unwrap());
    let (st, _, err) = b.cmd(&["true"]).run(Duration::from_secs(10));
    assert!(st.success(), "{err}");
}

#[test]
fn bad_usage_exits_64() {
    let out = std::process::Command::new(SUPERVISOR)
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn socket_mode_and_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let b = sup(Mode::Subreaper)
        .env("BOSUN_SOCKET_MODE", "0640")
        .env("BOSUN_SOCKET_GROUP", "65534");
    let sock = b.dir().join("run/t-request.sock");
    let mut s = b.cmd(&["sleep", "1000"]).start();
    let m = wait_until(Duration::from_secs(10), "socket", || {
        std::fs::metadata(&sock).ok()
    });
    assert_eq!(m.permissions().mode() & 0o777, 0o640);
    assert_eq!(m.gid(), 65534);
    s.signal(SIGTERM);
    s.wait(Duration::from_secs(10));
    refused(
        sup(Mode::Subreaper).env("BOSUN_SOCKET_MODE", "rw-rw----"),
        "is not an octal file mode",
        125,
    );
    refused(
        sup(Mode::Subreaper).env("BOSUN_SOCKET_GROUP", "no-such-group-x"),
        "no group named",
        125,
    );
}

#[test]
fn a_backend_host_name_is_refused_naming_the_variable() {
    // Dropped silently, it would leave proxy mode without a backend.
    let b = sup(Mode::Subreaper);
    let listen = b.dir().join("public.sock");
    refused(
        b.env("BOSUN_ON_DEMAND_LISTEN", listen.to_str().unwrap())
            .env("BOSUN_ON_DEMAND_BACKEND", "localhost:9000"),
        "BOSUN_ON_DEMAND_BACKEND: \"localhost:9000\" is neither a socket path",
        125,
    );
    refused(
        sup(Mode::Subreaper).env("BOSUN_ON_DEMAND_LISTEN", "localhost:8080"),
        "BOSUN_ON_DEMAND_LISTEN: \"localhost:8080\"",
        125,
    );
    refused(
        sup(Mode::Subreaper).env("BOSUN_READY", "tcp:db"),
        "BOSUN_READY: \"tcp:db\" is not a ready probe",
        125,
    );
}

#[test]
fn four_mistakes_in_service_toml_are_four_lines() {
    let b = sup(Mode::Subreaper);
    b.file(
        "service.toml",
        "stop_timeuot = \"8s\"\nrestart = \"sometimes\"\nready = \"tcp:db\"\n[on_demand]\nlisten = \"/run/x.sock\"\nbackend = \"localhost:9000\"\n",
    );
    let toml = b.dir().join("service.toml");
    let (st, out, err) = b
        .cmd(&["sh", "-c", "touch \"$T/main-ran\""])
        .run(Duration::from_secs(10));
    assert_eq!(st.code(), Some(125), "{err}");
    assert!(out.is_empty());
    let t = toml.display();
    let expected = [
        format!("supervisor: {t}:1:1: unknown key `stop_timeuot`"),
        format!("supervisor: {t}:2:11: restart: \"sometimes\" is not a restart policy"),
        format!("supervisor: {t}:3:9: ready: \"tcp:db\" is not a ready probe"),
        format!("supervisor: {t}:6:11: on_demand.backend: \"localhost:9000\" is neither"),
    ];
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    for want in &expected {
        assert!(
            lines.iter().any(|l| l.starts_with(want.as_str())),
            "expected a line starting {want:?} in:\n{err}"
        );
    }
}

#[test]
fn bad_log_settings_are_errors() {
    refused(
        sup(Mode::Subreaper).env("BOSUN_LOG", "loud=yes"),
        "BOSUN_LOG: \"loud=yes\" is not a level",
        125,
    );
    refused(
        sup(Mode::Subreaper).env("BOSUN_LOG_FORMAT", "xml"),
        "BOSUN_LOG_FORMAT: \"xml\" is not a log format (text, json)",
        125,
    );
}

#[test]
fn argv_bytes_reach_the_main_process_intact() {
    // Not UTF-8: tini passes such bytes on, and so must the supervisor (clap's default
    // `String` arguments refuse them with 64). Through the plain spawn and through the
    // setup script's shell.
    let arg: &[u8] = b"a\xffb\xfe c\x01";
    for (mode, setup) in [
        (Mode::Subreaper, false),
        (Mode::Pid1, false),
        (Mode::Subreaper, true),
    ] {
        let b = sup(mode);
        let out_file = b.dir().join("argv");
        let mut c = b.command();
        if setup {
            let s = b.file("setup.sh", "true\n");
            c.env("BOSUN_SETUP", s);
        }
        let out = c
            .arg("--")
            .args(["sh", "-c", "printf %s \"$1\" > \"$T/argv\"", "sh"])
            .arg(OsStr::from_bytes(arg))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode:?} setup={setup}: {err}");
        assert_eq!(
            std::fs::read(&out_file).unwrap(),
            arg,
            "{mode:?} setup={setup}"
        );
    }
}
