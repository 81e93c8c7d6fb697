//! The settings' tests: every key, every problem, the file and the environment.

use nix::unistd::Uid;

use super::*;
use crate::passwd;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    // No listener binary in a unit test: `off` unless the test says otherwise.
    super::env_of(&[pairs, &[("BOSUN_LISTENER", "off")]].concat())
}

fn load_env(pairs: &[(&str, &str)], role: ValuesOnly) -> Result<Settings, Problems> {
    let env = env_of(pairs);
    Settings::load(&Sources {
        file: ServiceFile::default(),
        env: &env,
        exec: Vec::new(),
        role,
    })
}

#[test]
fn defaults() {
    let s = load_env(&[("BOSUN_SERVICE", "mysql")], ValuesOnly).unwrap();
    assert_eq!(s.service, "mysql");
    assert_eq!(s.callbacks, PathBuf::from(DEFAULT_CALLBACKS));
    assert_eq!(s.action_timeout, Duration::from_secs(3600));
    assert_eq!(s.max_actions, 8);
    assert_eq!(s.stop_timeout, Duration::from_secs(8));
    assert_eq!(s.read_timeout, Duration::from_secs(5));
    assert_eq!(s.kill_grace, Duration::from_secs(5));
    assert_eq!(s.log_format, LogFormat::Text);
    assert_eq!(s.restart, Restart::No);
    assert_eq!(s.socket_mode, 0o660);
    assert!(s.allows(1234, 1234));
    assert!(s.on_demand.is_none());
    assert_eq!(s.replay_wait, REPLAY_WAIT);
    assert_eq!(s.max_connections, None, "the listener computes it");
    // Unset reads back as unset: the listener gets no fixed number from the supervisor.
    let env = s.to_env();
    assert!(env.contains(&("BOSUN_MAX_CONNECTIONS".into(), String::new())));
    assert!(env.contains(&("BOSUN_REPLAY_WAIT".into(), "10m".into())));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let back = load_env(&pairs, ValuesOnly).unwrap();
    assert_eq!(format!("{back:?}"), format!("{s:?}"));
}

#[test]
fn every_environment_problem_at_once() {
    let e = load_env(
        &[
            ("BOSUN_STOP_TIMEOUT", "8 parsecs"),
            ("BOSUN_STOP_SIGNAL", "TERMINATE"),
            ("BOSUN_RESTART", "sometimes"),
            ("BOSUN_READY", "http://x"),
            ("BOSUN_LOG", "loud=yes"),
            ("BOSUN_LOG_FORMAT", "xml"),
            ("BOSUN_MAX_ACTIONS", "0"),
            ("BOSUN_ACTION_TIMEOUTS", "a=1s,b"),
            ("BOSUN_ALLOW_UIDS", "0,no-such-user-here"),
            ("BOSUN_ON_DEMAND_LISTEN", "localhost"),
            ("BOSUN_ON_DEMAND_BACKEND", "localhost:9000"),
            ("BOSUN_REPLAY_WAIT", "soon"),
            ("BOSUN_MAX_CONNECTIONS", "many"),
        ],
        ValuesOnly,
    )
    .unwrap_err();
    let all = e.to_string();
    for needle in [
        "no service name: set BOSUN_SERVICE",
        "BOSUN_STOP_TIMEOUT: \"8 parsecs\" is not a duration",
        "BOSUN_STOP_SIGNAL: \"TERMINATE\" is not a signal name",
        "BOSUN_RESTART: \"sometimes\" is not a restart policy",
        "BOSUN_READY: \"http://x\" is not a ready probe",
        "BOSUN_LOG: \"loud=yes\" is not a level",
        "BOSUN_LOG_FORMAT: \"xml\" is not a log format",
        "BOSUN_MAX_ACTIONS: \"0\" is not a whole number",
        "BOSUN_ACTION_TIMEOUTS: \"b\" is not ACTION=DURATION",
        "BOSUN_ALLOW_UIDS: \"no-such-user-here\" is neither",
        "BOSUN_ON_DEMAND_LISTEN: \"localhost\" is neither a socket path",
        "BOSUN_ON_DEMAND_BACKEND: \"localhost:9000\" is neither a socket path",
        "BOSUN_REPLAY_WAIT: \"soon\" is not a duration",
        "BOSUN_MAX_CONNECTIONS: \"many\" is not a whole number of at least 1",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(e.0.len(), 14, "{all}");
    // Zero is no limit and no wait: both refused.
    let e = load_env(
        &[
            ("BOSUN_SERVICE", "x"),
            ("BOSUN_REPLAY_WAIT", "0s"),
            ("BOSUN_MAX_CONNECTIONS", "0"),
        ],
        ValuesOnly,
    )
    .unwrap_err();
    let all = e.to_string();
    assert!(
        all.contains("BOSUN_REPLAY_WAIT: \"0s\" is not a duration above 0"),
        "{all}"
    );
    assert!(
        all.contains("BOSUN_MAX_CONNECTIONS: \"0\" is not a whole number"),
        "{all}"
    );
    assert_eq!(e.0.len(), 2, "{all}");
    assert_eq!(e.exit_code(), 125);
}

#[test]
fn addresses_and_probes() {
    assert_eq!(
        Addr::parse("/run/php/forum.sock"),
        Ok(Addr::Unix("/run/php/forum.sock".into()))
    );
    assert_eq!(
        Addr::parse("127.0.0.1:9000").unwrap().key(),
        "127.0.0.1:9000"
    );
    assert_eq!(Addr::parse("[::1]:80").unwrap().to_string(), "[::1]:80");
    assert!(Addr::parse("localhost").is_err());
    assert!(Addr::parse("localhost:9000").is_err());
    for (text, ready) in [
        ("socket:/run/a.sock", Ready::Socket("/run/a.sock".into())),
        (
            "tcp:10.0.0.5:3306",
            Ready::Tcp("10.0.0.5:3306".parse().unwrap()),
        ),
        ("tcp:[::1]:80", Ready::Tcp("[::1]:80".parse().unwrap())),
        ("exec:pg_isready -q", Ready::Exec("pg_isready -q".into())),
        ("notify", Ready::Notify),
    ] {
        let r = Ready::parse(text).unwrap();
        assert_eq!(r, ready);
        assert_eq!(r.to_string(), text, "reads back");
    }
    for bad in [
        "tcp:db",
        "tcp::80",
        "tcp:db:99999",
        "socket:",
        "exec: ",
        "http://x",
    ] {
        assert!(Ready::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Ready::of_backend(&Addr::parse("127.0.0.1:9000").unwrap()),
        Ready::Tcp("127.0.0.1:9000".parse().unwrap())
    );
    assert_eq!(
        Ready::parse("tcp:localhost:9000"),
        Ok(Ready::Tcp("127.0.0.1:9000".parse().unwrap()))
    );
    let e = Ready::parse("tcp:db:3306").unwrap_err();
    assert!(
        e.to_string().contains("not an IP address or localhost"),
        "{e}"
    );
}

#[test]
fn per_action_timeouts_and_allow_lists() {
    let s = load_env(
        &[
            ("BOSUN_SERVICE", "x"),
            ("BOSUN_ACTION_TIMEOUT", "10m"),
            ("BOSUN_ACTION_TIMEOUTS", "rotate-logs=5m, nightly_backup=3h"),
            ("BOSUN_ALLOW_UIDS", "1000, root"),
            ("BOSUN_ALLOW_GIDS", "33"),
        ],
        ValuesOnly,
    )
    .unwrap();
    assert_eq!(s.timeout_of("rotate-logs"), Duration::from_secs(300));
    assert_eq!(
        s.timeout_of("nightly-backup"),
        Duration::from_secs(3 * 3600)
    );
    assert_eq!(s.timeout_of("other"), Duration::from_secs(600));
    assert_eq!(s.allow_uids, [1000, 0]);
    assert!(s.allows(0, 0), "root is always allowed");
    assert!(s.allows(1000, 5));
    assert!(s.allows(5, 33));
    assert!(!s.allows(5, 5));
    assert!(s.allows_groups(5, 5, &[7, 33]), "a supplementary group");
    assert!(!s.allows_groups(5, 5, &[7, 8]));
}

#[test]
fn to_env_reads_back_the_same() {
    let s = load_env(
        &[
            ("BOSUN_SERVICE", "php"),
            ("BOSUN_STOP_SIGNAL", "QUIT"),
            ("BOSUN_STOP_TIMEOUT", "1m 30s"),
            ("BOSUN_RESTART", "on-failure"),
            ("BOSUN_RUN_AS", "1000:1001"),
            ("BOSUN_LOG", "warn,listener::runner=debug"),
            ("BOSUN_LOG_FORMAT", "json"),
            ("BOSUN_SOCKET_MODE", "0640"),
            ("BOSUN_SOCKET_GROUP", "33"),
            ("BOSUN_ALLOW_UIDS", "0,33"),
            ("BOSUN_MAX_ACTIONS", "3"),
            ("BOSUN_ACTION_TIMEOUTS", "a=5m,b=250ms"),
            ("BOSUN_KILL_GRACE", "2"),
            ("BOSUN_LISTENER_START", "boot"),
            ("BOSUN_REPLAY_WAIT", "1m 30s"),
            ("BOSUN_MAX_CONNECTIONS", "300"),
            ("BOSUN_ON_DEMAND_LISTEN", "127.0.0.1:8080"),
            ("BOSUN_ON_DEMAND_BACKEND", "/run/php/fpm.sock"),
            ("BOSUN_ON_DEMAND_IDLE", "5m"),
            ("BOSUN_ON_DEMAND_SOCKET_MODE", "0o600"),
            ("BOSUN_ON_DEMAND_SOCKET_GROUP", "root"),
            ("BOSUN_ON_DEMAND_MAX_CONNECTIONS", "12"),
            ("BOSUN_ON_DEMAND_CONNECTION_IDLE", "0"),
        ],
        ValuesOnly,
    )
    .unwrap();
    let env = s.to_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let back = load_env(&pairs, ValuesOnly).unwrap();
    assert_eq!(format!("{back:?}"), format!("{s:?}"));
    assert_eq!(back.ready, Some(Ready::Socket("/run/php/fpm.sock".into())));
    assert_eq!(back.stop_signal, Signal::SIGQUIT);
    assert_eq!(back.socket_mode, 0o640);
    assert_eq!(back.replay_wait, Duration::from_secs(90));
    assert_eq!(back.max_connections, Some(300));
    let od = back.on_demand.unwrap();
    assert_eq!(
        (od.socket_mode, od.socket_gid),
        (0o600, Some(Gid::from_raw(0)))
    );
    assert_eq!((od.max_connections, od.connection_idle), (12, None));
}

#[test]
fn on_demand_socket_mode_and_group() {
    let s = load_env(
        &[
            ("BOSUN_SERVICE", "php"),
            ("BOSUN_ON_DEMAND_LISTEN", "/run/php/a.sock"),
        ],
        ValuesOnly,
    )
    .unwrap();
    let od = s.on_demand.unwrap();
    assert_eq!(od.socket_mode, 0o660, "never world-connectable by default");
    assert_eq!(od.socket_gid, None);
    assert_eq!(od.max_connections, ON_DEMAND_MAX_CONNECTIONS);
    assert_eq!(od.connection_idle, Some(ON_DEMAND_CONNECTION_IDLE));
    for (text, mode) in [
        ("0660", 0o660),
        ("660", 0o660),
        ("0o640", 0o640),
        ("0", 0),
        ("0777", 0o777),
    ] {
        assert_eq!(parse_mode(text), Ok(mode), "{text}");
    }
    for bad in [
        "4755",
        "01777",
        "0888",
        "rw-rw----",
        "",
        "0o",
        "+660",
        "-1",
        "1000",
    ] {
        assert!(parse_mode(bad).is_err(), "{bad}");
    }
    let e = load_env(
        &[
            ("BOSUN_SERVICE", "php"),
            ("BOSUN_ON_DEMAND_LISTEN", "/run/php/a.sock"),
            ("BOSUN_ON_DEMAND_SOCKET_MODE", "2770"),
            ("BOSUN_ON_DEMAND_SOCKET_GROUP", "no-such-group-here"),
            ("BOSUN_ON_DEMAND_MAX_CONNECTIONS", "0"),
        ],
        ValuesOnly,
    )
    .unwrap_err();
    let all = e.to_string();
    for needle in [
        "BOSUN_ON_DEMAND_SOCKET_MODE: \"2770\" is not an octal file mode",
        "BOSUN_ON_DEMAND_SOCKET_GROUP: no group named \"no-such-group-here\"",
        "BOSUN_ON_DEMAND_MAX_CONNECTIONS: \"0\" is not a whole number",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(e.0.len(), 3, "{all}");
    assert_eq!(e.exit_code(), 125);
}

#[test]
fn run_as_sets_supplementary_groups() {
    // The first account of this machine that /etc/group lists as a member somewhere
    // (postgres in ssl-cert on the CI image); skipped where there is none.
    let groups = std::fs::read_to_string(passwd::GROUP).unwrap_or_default();
    let passwd_text = std::fs::read_to_string(passwd::PASSWD).unwrap_or_default();
    let Some(a) = passwd::parse_passwd(&passwd_text)
        .find(|a| !passwd::member_of(&groups, &a.name).is_empty())
    else {
        eprintln!("skipped: no user here is listed in a group");
        return;
    };
    let extra = passwd::member_of(&groups, &a.name);
    let r = parse_run_as(&a.name).unwrap();
    assert_eq!(r.groups[0].as_raw(), a.gid, "the primary group first");
    for g in &extra {
        assert!(
            r.groups.contains(&Gid::from_raw(*g)),
            "{g} of {:?}",
            r.groups
        );
    }
    // By number too: the account is found by uid and its groups with it.
    let r2 = parse_run_as(&format!("{}:{}", a.uid, a.gid)).unwrap();
    assert_eq!(r2.groups, r.groups);
    // A uid with no account has its one group only.
    assert_eq!(
        parse_run_as("4242424:77").unwrap().groups,
        [Gid::from_raw(77)]
    );
}

#[test]
fn run_as_forms() {
    assert_eq!(parse_run_as("0").unwrap().uid, Uid::from_raw(0));
    let r = parse_run_as("1000:1001").unwrap();
    assert_eq!((r.uid.as_raw(), r.gid.as_raw()), (1000, 1001));
    assert_eq!(parse_run_as("root").unwrap().gid, Gid::from_raw(0));
    assert!(parse_run_as("no-such-user-xyz")
        .unwrap_err()
        .to_string()
        .contains("no user named"));
}

#[cfg(feature = "toml")]
mod file {
    use super::*;
    use std::io::Write;
    use std::path::Path;

    pub(super) fn load_with(
        toml: &str,
        env: &[(&str, &str)],
        exec: &[&str],
    ) -> Result<Settings, Problems> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        let env = env_of(env);
        Settings::load(&Sources {
            file: ServiceFile::read(f.path()),
            env: &env,
            exec: exec.iter().map(OsString::from).collect(),
            role: ValuesOnly,
        })
    }

    #[test]
    fn file_and_env_override() {
        let s = load_with(
            "service = \"mysql\"\nexec = [\"sleep\", \"1\"]\nstop_timeout = \"20s\"\nrestart = \"always\"\n",
            &[("BOSUN_STOP_TIMEOUT", "3s"), ("BOSUN_STOP_SIGNAL", "QUIT")],
            &[],
        )
        .unwrap();
        assert_eq!(s.service, "mysql");
        assert_eq!(s.exec, vec!["sleep", "1"]);
        assert_eq!(s.stop_timeout, Duration::from_secs(3));
        assert_eq!(s.stop_signal, Signal::SIGQUIT);
        assert_eq!(s.restart, Restart::Always);
    }

    #[test]
    fn command_line_exec_wins() {
        let s = load_with("service = \"a\"\nexec = [\"false\"]\n", &[], &["true"]).unwrap();
        assert_eq!(s.exec, vec!["true"]);
    }

    #[test]
    fn types_and_syntax_have_positions() {
        let e = load_with("service = \"a\"\nexec = \"sleep 1\"\n", &[], &["true"]).unwrap_err();
        assert!(
            e.to_string().contains(":2:8: exec: expected an array"),
            "{e}"
        );
        let errs = check_text("s.toml", "service = \"a\"\nx = \n[[\n");
        assert!(!errs.is_empty());
        for e in &errs {
            assert!(e.starts_with("s.toml:"), "{e}");
        }
        // Every error is one line, whatever the keys hold.
        let errs = check_text(
            "s.toml",
            "\"a\\nb\" = 1\n[on_demand]\n\"c\\nd\" = 2\n[action_timeouts]\n\"e\\nf\" = 3\n",
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        for e in &errs {
            assert!(e.starts_with("s.toml:") && !e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn a_table_key_is_not_a_top_level_one() {
        let errs = check_text("s.toml", "\"on_demand.listen\" = \"/run/a.sock\"\n");
        assert_eq!(
            errs,
            [
                "s.toml:1:1: unknown key `on_demand.listen` (known keys: service, exec, instance, run_dir, \
              state_dir, setup, callbacks, stop_signal, stop_timeout, restart, ready, run_as, log, \
              log_format, socket_mode, socket_group, allow_uids, allow_gids, max_actions, \
              action_timeout, action_timeouts, read_timeout, kill_grace, listener_start, \
              listener_idle, replay_wait, max_connections, on_demand)"
            ]
        );
        let errs = check_text("s.toml", "[on_demand]\nlisen = 1\n");
        assert_eq!(
            errs,
            [
                "s.toml:2:1: unknown key `on_demand.lisen` (known: listen, idle, backend, \
              start_timeout, socket_mode, socket_group, max_connections, connection_idle)"
            ]
        );
    }

    #[test]
    fn the_fuzz_corpus_gives_one_line_errors_and_no_panic() {
        // What the fuzz target checks, over its stored corpus, in every test run.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/service_toml");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            for err in check_text("service.toml", text) {
                assert!(
                    err.starts_with("service.toml") && !err.contains('\n'),
                    "{:?}: {err:?}",
                    e.path()
                );
            }
        }
    }

    #[test]
    fn on_demand_and_listener_settings() {
        let s = load_with(
            "service = \"php\"\nexec = [\"true\"]\nallow_uids = [0, 33]\nsocket_mode = 0o640\nmax_actions = 2\n[action_timeouts]\nnightly-backup = \"3h\"\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nidle = \"5m\"\n",
            &[],
            &[],
        )
        .unwrap();
        let od = s.on_demand.clone().unwrap();
        assert_eq!(od.listen, Addr::Unix("/run/php/forum.sock".into()));
        assert_eq!(od.idle, Duration::from_secs(300));
        assert!(od.backend.is_none());
        assert_eq!(s.allow_uids, [0, 33]);
        assert_eq!(s.socket_mode, 0o640);
        assert_eq!(s.max_actions, 2);
        assert_eq!(
            s.timeout_of("nightly-backup"),
            Duration::from_secs(3 * 3600)
        );
        let env = s.to_env();
        assert!(env.contains(&("BOSUN_ALLOW_UIDS".into(), "0,33".into())));
        assert!(env.contains(&("BOSUN_ACTION_TIMEOUTS".into(), "nightly-backup=3h".into())));
    }

    #[test]
    fn replay_wait_and_max_connections_in_the_file() {
        let s = load_with(
            "service = \"a\"\nexec = [\"true\"]\nreplay_wait = \"2m\"\nmax_connections = 40\n",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(s.replay_wait, Duration::from_secs(120));
        assert_eq!(s.max_connections, Some(40));
        let env = s.to_env();
        assert!(env.contains(&("BOSUN_REPLAY_WAIT".into(), "2m".into())));
        assert!(env.contains(&("BOSUN_MAX_CONNECTIONS".into(), "40".into())));
        // The environment wins over the file, as for every key.
        let s = load_with(
            "service = \"a\"\nexec = [\"true\"]\nreplay_wait = \"2m\"\nmax_connections = \"40\"\n",
            &[("BOSUN_REPLAY_WAIT", "5s"), ("BOSUN_MAX_CONNECTIONS", "7")],
            &[],
        )
        .unwrap();
        assert_eq!(
            (s.replay_wait, s.max_connections),
            (Duration::from_secs(5), Some(7))
        );
        let e = load_with(
            "service = \"a\"\nexec = [\"true\"]\nreplay_wait = \"soon\"\nmax_connections = 0\n",
            &[],
            &[],
        )
        .unwrap_err();
        let all = e.to_string();
        assert!(
            all.contains(":3:15: replay_wait: \"soon\" is not a duration"),
            "{all}"
        );
        assert!(
            all.contains(":4:19: max_connections: \"0\" is not a whole number of at least 1"),
            "{all}"
        );
        assert_eq!(e.0.len(), 2, "{all}");
        let e = load_with(
            "service = \"a\"\nexec = [\"true\"]\nmax_connections = 1.5\n",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(":3:19: max_connections: expected a string"),
            "{e}"
        );
    }

    #[test]
    fn on_demand_socket_keys_in_the_file() {
        let s = load_with(
            "service = \"php\"\nexec = [\"true\"]\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nsocket_mode = 0o640\nsocket_group = 0\nmax_connections = 50\nconnection_idle = \"30s\"\n",
            &[],
            &[],
        )
        .unwrap();
        let od = s.on_demand.unwrap();
        assert_eq!(od.socket_mode, 0o640);
        assert_eq!(od.socket_gid, Some(Gid::from_raw(0)));
        assert_eq!(od.max_connections, 50);
        assert_eq!(od.connection_idle, Some(Duration::from_secs(30)));
        let s = load_with(
            "service = \"php\"\nexec = [\"true\"]\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nsocket_mode = \"0660\"\nsocket_group = \"root\"\n",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(s.on_demand.unwrap().socket_mode, 0o660);
        let e = load_with(
            "service = \"php\"\nexec = [\"true\"]\n[on_demand]\nlisten = \"/run/php/forum.sock\"\nsocket_mode = \"u+rw\"\nsocket_group = \"no-such-group-here\"\n",
            &[],
            &[],
        )
        .unwrap_err();
        let all = e.to_string();
        assert!(
            all.contains(":5:15: on_demand.socket_mode: \"u+rw\" is not an octal file mode"),
            "{all}"
        );
        assert!(
            all.contains(":6:16: on_demand.socket_group: no group named"),
            "{all}"
        );
        assert_eq!(e.0.len(), 2, "{all}");
    }
}

/// For every row of the table: its example (not the default) set alone reads as something
/// else than the default, and `to_env` gives it back: a row whose `show` is dropped or
/// wrong fails here, whatever the key.
#[test]
fn every_row_round_trips_through_to_env() {
    for row in keys::ROWS {
        let spec = row.spec;
        let mut pairs = Vec::new();
        if spec.key != "service" {
            pairs.push(("BOSUN_SERVICE", "svc"));
        }
        if spec.key.starts_with("on_demand.") && spec.key != "on_demand.listen" {
            // The table's other values are written only when on-demand start is on.
            pairs.push(("BOSUN_ON_DEMAND_LISTEN", "/run/od.sock"));
        }
        pairs.push((spec.env, spec.example));
        let set = load_env(&pairs, ValuesOnly).unwrap_or_else(|e| panic!("{}: {e}", spec.env));
        let unset = load_env(&pairs[..pairs.len() - 1], ValuesOnly);
        if let Ok(unset) = unset {
            assert_ne!(
                format!("{unset:?}"),
                format!("{set:?}"),
                "{}: the example {:?} must differ from the default",
                spec.env,
                spec.example
            );
        }
        let env = set.to_env();
        assert!(
            env.iter().any(|(k, _)| k == spec.env),
            "{} is not written by to_env",
            spec.env
        );
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let back = load_env(&pairs, ValuesOnly).unwrap();
        assert_eq!(format!("{back:?}"), format!("{set:?}"), "{}", spec.env);
    }
}

/// The names follow one rule: `BOSUN_` and the key in capitals, `.` as `_`; each once.
#[test]
fn every_variable_is_named_after_its_key() {
    let mut seen = std::collections::BTreeSet::new();
    for row in keys::ROWS {
        let spec = row.spec;
        let named = format!("BOSUN_{}", spec.key.replace('.', "_").to_ascii_uppercase());
        assert_eq!(spec.env, named);
        assert!(seen.insert(spec.env), "{} twice", spec.env);
    }
}

/// One rule for blank values in every program: `BOSUN_RUN_DIR=" "` is the default `/run`
/// for the supervisor, the listener and the scheduler alike; values are trimmed.
#[test]
fn blank_is_the_default_for_every_program() {
    let s = load_env(
        &[("BOSUN_SERVICE", "x"), ("BOSUN_RUN_DIR", " ")],
        ValuesOnly,
    )
    .unwrap();
    assert_eq!(s.run_dir, PathBuf::from("/run"));
    let get = env_of(&[
        ("BOSUN_RUN_DIR", " "),
        ("BOSUN_STATE_DIR", " /var/lib/x "),
        ("BOSUN_METRICS_FILE", ""),
        ("BOSUN_RETRY_WINDOW", " "),
    ]);
    let e = scheduler::SchedulerEnv::from_lookup(&get).unwrap();
    assert_eq!(e.run_dir, PathBuf::from("/run"));
    assert_eq!(e.state_dir, Some(PathBuf::from("/var/lib/x")));
    assert_eq!(e.metrics_file, None);
    assert_eq!(e.retry_window, Duration::from_secs(300));
    assert_eq!(e.catchup_window, Duration::from_secs(24 * 3600));
    assert_eq!(
        scheduler::SchedulerEnv::run_dir(&get),
        PathBuf::from("/run")
    );
    assert_eq!(
        scheduler::SchedulerEnv::state_dir(&get),
        Some(PathBuf::from("/var/lib/x"))
    );
    assert_eq!(scheduler::SchedulerEnv::state_dir(&env_of(&[])), None);
    let (f, fmt) = crate::log::from_lookup(env_of(&[
        ("BOSUN_LOG", " "),
        ("BOSUN_LOG_FORMAT", " json "),
    ]))
    .unwrap();
    assert_eq!((f, fmt), (Filter::default(), LogFormat::Json));
}

#[test]
fn scheduler_problems_name_the_variable() {
    let get = env_of(&[
        ("BOSUN_RETRY_WINDOW", "soon"),
        ("BOSUN_CATCHUP_WINDOW", "1 fortnight"),
    ]);
    let e = scheduler::SchedulerEnv::from_lookup(&get).unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
    assert_eq!(e.0[0].origin, Some(Origin::Env("BOSUN_RETRY_WINDOW")));
    assert!(
        matches!(&e.0[0].kind, ProblemKind::Value(ValueError::Duration(d)) if d.0 == "soon"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("BOSUN_RETRY_WINDOW: \"soon\" is not a duration"),
        "{e}"
    );
}

/// The exit code comes from the kind of problem, whatever the other problems and texts.
#[test]
fn exit_code_from_the_kind() {
    let p = |kind: ProblemKind| Problem::new(None, kind);
    let setup = p(ProblemKind::Value(ValueError::Mode("x".into())));
    let missing = p(ProblemKind::CommandNotFound("x".into()));
    let not_exec = p(ProblemKind::CommandNotExecutable("/x".into()));
    assert_eq!(Problems(vec![setup.clone()]).exit_code(), 125);
    assert_eq!(
        Problems(vec![setup.clone(), not_exec.clone()]).exit_code(),
        126
    );
    assert_eq!(Problems(vec![not_exec, missing, setup]).exit_code(), 127);
    // A value that merely reads like one is still a setup error.
    let lookalike = p(ProblemKind::Syntax("main command not found: \"x\"".into()));
    assert_eq!(Problems(vec![lookalike]).exit_code(), 125);
}
