//! The main process's life: setup script, restart policies with backoff, privilege drop.

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn setup_is_sourced_and_its_exports_reach_the_main_process() {
    for mode in MODES {
        let b = sup(mode);
        let setup = b.file(
            "setup.sh",
            "export GREETING=\"hello from setup\"\nmkdir -p \"$T/made\"\n",
        );
        let (st, out, err) = b
            .env("BOSUN_SETUP", setup.to_str().unwrap())
            .script(r#"test -d "$T/made" && echo "$GREETING""#)
            .run(Duration::from_secs(10));
        assert!(st.success(), "{mode:?}: {err}");
        assert_eq!(out, "hello from setup\n");
    }
}

#[test]
fn a_failing_setup_ends_with_its_code_and_never_starts_main() {
    let b = sup(Mode::Subreaper);
    let setup = b.file("setup.sh", "echo 'setting up'; false\n");
    let (st, out, err) = b
        .env("BOSUN_SETUP", setup.to_str().unwrap())
        .script("echo main ran")
        .run(Duration::from_secs(10));
    assert_eq!(st.code(), Some(1));
    assert_eq!(out, "setting up\n");
    assert!(
        err.contains("setup script") && err.contains("failed with exit 1"),
        "{err}"
    );
}

#[test]
fn on_failure_restarts_with_growing_backoff_then_exits_with_success() {
    for mode in MODES {
        // Fails three times, then succeeds: with on-failure, success ends the container.
        let (st, _, err) = sup(mode)
            .env("BOSUN_RESTART", "on-failure")
            .script(
                r#"date +%s.%N >> $T/starts; n=$(wc -l < $T/starts); [ "$n" -ge 4 ] && exit 0; exit 3"#,
            )
            .run(Duration::from_secs(20));
        assert_eq!(st.code(), Some(0), "{mode:?}: {err}");
        assert_eq!(err.matches("restarting after backoff").count(), 3, "{err}");
    }
}

#[test]
fn backoff_gaps_grow_and_a_crash_loop_does_not_spin() {
    let b = sup(Mode::Subreaper).env("BOSUN_RESTART", "always");
    let s = b.script(r#"date +%s%N >> $T/starts; exit 1"#).start();
    let text = s.wait_file_lines("starts", 5, Duration::from_secs(20));
    let t: Vec<f64> = text
        .lines()
        .map(|l| l.trim().parse::<f64>().unwrap() / 1e9)
        .collect();
    let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // Nominal 0.25, 0.5, 1, 2 s: each at least the nominal, and growing.
    for (g, nominal) in gaps.iter().zip([0.25, 0.5, 1.0, 2.0]) {
        assert!(*g >= nominal * 0.95, "gaps {gaps:?}");
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "gaps {gaps:?}");
}

#[test]
fn always_restarts_even_after_success_and_stops_on_term() {
    let mut s = sup(Mode::Pid1)
        .env("BOSUN_RESTART", "always")
        .script("echo x >> $T/starts")
        .start();
    s.wait_file_lines("starts", 2, Duration::from_secs(10));
    let t = Instant::now();
    s.signal(SIGTERM);
    let st = s.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn run_as_drops_privileges() {
    testkit::prereq::require_root("run as another user");
    for mode in MODES {
        let (st, out, err) = sup(mode)
            .env("BOSUN_RUN_AS", "nobody")
            .cmd(&["sh", "-c", "echo $(id -u):$(id -g):$HOME"])
            .run(Duration::from_secs(10));
        assert!(st.success(), "{err}");
        assert_eq!(out, "65534:65534:/nonexistent\n", "{mode:?}");
    }
    // With a setup script, setup runs as root and only the main process drops.
    let b = sup(Mode::Subreaper);
    let setup = b.file("setup.sh", "id -u > \"$T/setup-uid\"\n");
    let (st, out, err) = b
        .env("BOSUN_SETUP", setup.to_str().unwrap())
        .env("BOSUN_RUN_AS", "65534:65534")
        .cmd(&["sh", "-c", "id -u"])
        .run(Duration::from_secs(10));
    assert!(st.success(), "{err}");
    assert_eq!(out, "65534\n");
}

#[test]
fn json_logs_are_one_object_a_line_and_children_pass_through() {
    let (st, out, err) = sup(Mode::Subreaper)
        .env("BOSUN_LOG_FORMAT", "json")
        .cmd(&["sh", "-c", "echo plain; echo err-plain >&2"])
        .run(Duration::from_secs(10));
    assert!(st.success());
    assert_eq!(out, "plain\n");
    let mut objects = 0;
    for line in err.lines() {
        if line == "err-plain" {
            continue;
        }
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON object: {line}"
        );
        objects += 1;
    }
    assert!(
        err.contains(r#""message":"spawned""#) && err.contains(r#""child":"main""#),
        "{err}"
    );
    assert!(objects >= 3, "{err}");
}

#[test]
fn a_crashed_main_process_takes_its_workers_with_it() {
    // The main process forks a worker into its own group, then dies of KILL: the worker
    // must not survive into the next start (it would hold the sockets the new one needs).
    for mode in MODES {
        let s = sup(mode)
            .env("BOSUN_RESTART", "on-failure")
            .script(
                r#"n=$(wc -l < $T/starts 2>/dev/null || echo 0); echo start >> $T/starts
                   if [ "$n" -ge 1 ]; then exit 0; fi
                   sleep 1000 & echo $! > $T/worker; kill -KILL $$"#,
            )
            .start();
        s.wait_file_lines("starts", 2, Duration::from_secs(10));
        let worker = std::fs::read_to_string(s.path("worker")).unwrap();
        let w = worker.trim();
        if mode == Mode::Subreaper {
            // (Inside a PID namespace the recorded pid means nothing out here.)
            wait_until(Duration::from_secs(5), "the worker gone", || {
                let stat = std::fs::read_to_string(format!("/proc/{w}/stat")).unwrap_or_default();
                (stat.is_empty() || stat.contains(") Z ")).then_some(())
            });
        }
        s.wait_stderr(
            "sent to what was left of its process group",
            Duration::from_secs(5),
        );
    }
}
