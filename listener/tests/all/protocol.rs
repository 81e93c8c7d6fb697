//! Replies to well-formed requests: built-ins, the user form, the action list.

use crate::harness::*;

#[test]
fn ping_pong() {
    let l = Listener::start(Opts::default()).ready();
    assert_eq!(l.request(b"ping\n"), ["pong"]);
    // End of input ends the line too, and a trailing CR is tolerated.
    assert_eq!(l.request(b"ping"), ["pong"]);
    assert_eq!(l.request(b"ping\r\n"), ["pong"]);
    // The user form works for built-ins.
    assert_eq!(l.request(b"forum ping\n"), ["pong"]);
}

#[test]
fn help_lists_builtins_and_actions() {
    let l = Listener::start(Opts::default()).ready();
    let lines = l.request(b"help\n");
    for want in [
        "ping",
        "help",
        "status",
        "start",
        "stop",
        "restart",
        "reload",
        "version",
        "hello",
        "echo-args",
        "slow-b",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "{want} missing in {lines:?}"
        );
    }
}

#[test]
fn version_names_the_build() {
    let l = Listener::start(Opts::default()).ready();
    let want = common::version::text();
    assert!(
        want.starts_with(&format!("bosun {} (", env!("CARGO_PKG_VERSION"))),
        "{want}"
    );
    assert_eq!(l.request(b"version\n"), [want.as_str()]);
    assert_eq!(l.request(b"forum version\n"), [want.as_str()]);
    // A built-in: it takes no words and runs nothing.
    let lines = l.request(b"version 2\n");
    assert_eq!(
        lines,
        ["error bad-request version takes no words (usage: version); got 1"]
    );
    // `--version` prints the same line, without a socket or settings.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_listener"))
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{want}\n"));
}

#[test]
fn action_accepted_then_done() {
    let l = Listener::start(Opts::default()).ready();
    let lines = l.request(b"hello\n");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "accepted 1 hello");
    assert!(lines[1].starts_with("done 1 exit=0 secs="), "{lines:?}");
    // Output in the container log, prefixed with action and id; the outcome logged.
    l.log
        .wait(r#""[hello#1] hello""#, |s| s == "[hello#1] hello");
    let done = l
        .log
        .wait("done log", |s| s.contains("done") && s.contains("id=1"));
    assert!(
        done.contains("exit=0") && done.contains("action=hello"),
        "{done}"
    );
}

#[test]
fn exit_code_reported() {
    let l = Listener::start(Opts::default()).ready();
    let lines = l.request(b"fail\n");
    assert!(lines[1].starts_with("done 1 exit=3 "), "{lines:?}");
    l.log.wait_for("[fail#1] failing");
}

#[test]
fn ids_start_at_next_id_and_increase() {
    let l = Listener::start(Opts::default().env("BOSUN_NEXT_ID", "100")).ready();
    assert_eq!(l.request(b"hello\n")[0], "accepted 100 hello");
    // Built-ins take no id.
    assert_eq!(l.request(b"ping\n"), ["pong"]);
    assert_eq!(l.request(b"hello\n")[0], "accepted 101 hello");
}

#[test]
fn user_form_and_callback_environment() {
    let l = Listener::start(Opts::default()).ready();
    let lines = l.request(b"forum env a  b\n");
    assert_eq!(lines[0], "accepted 1 env");
    l.log
        .wait_for("[env#1] user=<forum> action=<env> id=<1> service=<test> args=<a b>");
    // Without a user, BOSUN_USER is empty.
    l.request(b"env\n");
    l.log
        .wait_for("[env#2] user=<> action=<env> id=<2> service=<test> args=<>");
}

#[test]
fn args_are_data_not_shell_text() {
    let l = Listener::start(Opts::default()).ready();
    let marker = l.dir.path().join("pwned");
    let req = format!(
        "echo-args $(touch {m}) `touch {m}` ;touch {m} * $HOME '\"q\"'\n",
        m = marker.display()
    );
    let lines = l.request(req.as_bytes());
    assert!(lines[1].starts_with("done 1 exit=0"), "{lines:?}");
    let m = marker.display().to_string();
    for want in [
        "arg=<$(touch>".to_string(),
        format!("arg=<{m})>"),
        "arg=<`touch>".to_string(),
        format!("arg=<{m}`>"),
        "arg=<;touch>".to_string(),
        "arg=<*>".to_string(),
        "arg=<$HOME>".to_string(),
        "arg=<'\"q\"'>".to_string(),
    ] {
        l.log.wait_for(&format!("[echo-args#1] {want}"));
    }
    assert!(!marker.exists(), "an argument was run as shell text");
}

#[test]
fn callbacks_edit_takes_effect_without_restart() {
    let l = Listener::start(Opts::default()).ready();
    assert!(l.request(b"fresh\n")[0].starts_with("error unknown-action "));
    std::fs::write(&l.callbacks, "CB_fresh() { echo fresh-one; }\n").unwrap();
    let lines = l.request(b"fresh\n");
    assert_eq!(lines[0], "accepted 1 fresh", "{lines:?}");
    l.log.wait_for("[fresh#1] fresh-one");
    // The old actions are gone with the edit.
    assert!(l.request(b"hello\n")[0].starts_with("error unknown-action "));
}

#[test]
fn missing_callbacks_file_means_no_actions() {
    let l = Listener::start(Opts::default().callbacks(None)).ready();
    assert_eq!(l.request(b"ping\n"), ["pong"]);
    let lines = l.request(b"hello\n");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("error unknown-action "), "{lines:?}");
    assert_eq!(l.request(b"help\n").len(), proto::Builtin::TABLE.len());
}

#[test]
fn syntax_error_reported_at_start_and_per_request() {
    let bad = "CB_hello() { echo hello; }\nCB_broken() {\n  if then\n}\n";
    let l = Listener::start(Opts::default().callbacks(Some(bad))).ready();
    let start = l.log.wait_for("callbacks file unusable");
    assert!(start.contains("syntax error"), "{start}");
    let lines = l.request(b"hello\n");
    assert_eq!(lines.len(), 1);
    let want = format!(
        "error unavailable callbacks file {}: ",
        l.callbacks.display()
    );
    assert!(lines[0].starts_with(&want), "{lines:?}");
    assert!(lines[0].contains("syntax error"), "{lines:?}");
    assert_eq!(l.request(b"ping\n"), ["pong"]);
    assert_eq!(l.request(b"forum ping\n"), ["pong"]);
    assert!(l
        .request(b"help\n")
        .iter()
        .any(|h| h.contains("unusable") && h.contains("syntax error")));
    // Fixed: works again without a restart.
    std::fs::write(&l.callbacks, "CB_hello() { echo hello-again; }\n").unwrap();
    assert_eq!(l.request(b"hello\n")[0], "accepted 1 hello");
}

#[test]
fn json_log_lines() {
    let l = Listener::start(Opts::default().env("BOSUN_LOG_FORMAT", "json")).ready();
    l.request(b"forum hello\n");
    let line = l
        .log
        .wait("json done", |s| s.contains(r#""message":"done""#));
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(line.contains(r#""action":"hello""#), "{line}");
    assert!(line.contains(r#""exit":0"#), "{line}");
    let req = l
        .log
        .wait("json request", |s| s.contains(r#""message":"request""#));
    assert!(req.contains(r#""user":"forum""#), "{req}");
    // Action output stays as the callback wrote it, prefixed.
    l.log.wait_for("[hello#1] hello");
}

#[test]
fn callbacks_file_failing_to_source_is_unavailable() {
    // `source` returning non-zero would stop every action (`source ... && CB_x`): say so.
    let cbs = "CB_hello() { echo hello; }\n[ -e /nonexistent-bosun ] && echo never\n";
    let l = Listener::start(Opts::default().callbacks(Some(cbs))).ready();
    let lines = l.request(b"hello\n");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("error unavailable callbacks file ")
            && lines[0].ends_with("sourcing it returned status 1"),
        "{lines:?}"
    );
    assert_eq!(l.request(b"ping\n"), ["pong"]);
}

#[test]
fn callback_environment_holds_no_listener_bookkeeping() {
    let cbs = "CB_show() { echo \"next=<${BOSUN_NEXT_ID-unset}> cb=<$BOSUN_CALLBACKS>\"; }\n";
    let l = Listener::start(
        Opts::default()
            .callbacks(Some(cbs))
            .env("BOSUN_NEXT_ID", "7"),
    )
    .ready();
    assert_eq!(l.request(b"show\n")[0], "accepted 7 show");
    l.log.wait_for(&format!(
        "[show#7] next=<unset> cb=<{}>",
        l.callbacks.display()
    ));
}
