//! Signals: forwarded to the main process's group; TERM, INT and QUIT stop the container
//! in order; a main process that ignores TERM is KILLed after `stop_timeout`; a stop ends
//! as soon as the last process is gone.

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn every_forwarded_signal_reaches_the_main_process() {
    for mode in MODES {
        for (stop, stop_n) in [("TERM", SIGTERM), ("INT", SIGINT), ("QUIT", SIGQUIT)] {
            let mut s = sup(mode).script(SIGNAL_LOGGER).start();
            s.wait_file("signals", "ready", Duration::from_secs(10));
            let mut expect = String::from("ready\n");
            for (name, n) in [
                ("HUP", SIGHUP),
                ("USR1", SIGUSR1),
                ("USR2", SIGUSR2),
                ("WINCH", SIGWINCH),
            ] {
                s.signal(n);
                expect.push_str(name);
                expect.push('\n');
                s.wait_file("signals", &expect, Duration::from_secs(10));
            }
            s.signal(stop_n);
            let st = s.wait(Duration::from_secs(10));
            let got = std::fs::read_to_string(s.path("signals")).unwrap();
            assert_eq!(got, format!("{expect}{stop}\n"), "{mode:?}");
            assert_eq!(
                st.code(),
                Some(0),
                "{mode:?} {stop}; stderr:\n{}",
                s.stderr()
            );
        }
    }
}

#[test]
fn term_becomes_the_configured_stop_signal() {
    for mode in MODES {
        let mut s = sup(mode)
            .env("BOSUN_STOP_SIGNAL", "USR2")
            .script(
                r#"trap "echo USR2 >> $T/signals; exit 7" USR2; echo ready >> $T/signals
                   while :; do sleep 0.05 & wait $!; done"#,
            )
            .start();
        s.wait_file("signals", "ready", Duration::from_secs(10));
        s.signal(SIGTERM);
        let st = s.wait(Duration::from_secs(10));
        assert_eq!(st.code(), Some(7), "{mode:?}");
        assert!(std::fs::read_to_string(s.path("signals"))
            .unwrap()
            .contains("USR2"));
    }
}

#[test]
fn a_main_process_that_ignores_term_is_killed_after_stop_timeout() {
    for mode in MODES {
        let mut s = sup(mode)
            .env("BOSUN_STOP_TIMEOUT", "1s")
            .script(r#"trap '' TERM; echo ready >> $T/signals; while :; do sleep 0.05; done"#)
            .start();
        s.wait_file("signals", "ready", Duration::from_secs(10));
        let t = Instant::now();
        s.signal(SIGTERM);
        let st = s.wait(Duration::from_secs(10));
        let took = t.elapsed();
        assert_eq!(
            st.code(),
            Some(137),
            "{mode:?}: KILLed main gives 128+9; {}",
            s.stderr()
        );
        assert!(
            took >= Duration::from_millis(950),
            "{mode:?}: stopped after {took:?}, before the timeout"
        );
        assert!(took < Duration::from_secs(4), "{mode:?}: took {took:?}");
    }
}

#[test]
fn stop_finishes_as_soon_as_the_last_process_is_gone() {
    for mode in MODES {
        let mut s = sup(mode)
            .env("BOSUN_STOP_TIMEOUT", "20s")
            .script(SIGNAL_LOGGER)
            .start();
        s.wait_file("signals", "ready", Duration::from_secs(10));
        let t = Instant::now();
        s.signal(SIGTERM);
        let st = s.wait(Duration::from_secs(10));
        assert_eq!(st.code(), Some(0));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{mode:?}: stop took {:?}",
            t.elapsed()
        );
        assert!(
            !s.socket().exists(),
            "{mode:?}: the socket is removed on exit"
        );
    }
}

#[test]
fn leftover_daemons_are_stopped_with_the_container() {
    // The main process leaves a daemonised child behind that ignores nothing: it gets TERM
    // after the main process is gone, and the stop still ends promptly.
    for mode in MODES {
        let mut s = sup(mode)
            .env("BOSUN_STOP_TIMEOUT", "20s")
            .script(
                r#"( setsid sleep 1000 & echo $! > $T/daemon ) ; echo ready >> $T/signals
                   trap 'exit 0' TERM; while :; do sleep 0.05 & wait $!; done"#,
            )
            .start();
        s.wait_file("signals", "ready", Duration::from_secs(10));
        let t = Instant::now();
        s.signal(SIGTERM);
        let st = s.wait(Duration::from_secs(10));
        assert_eq!(st.code(), Some(0));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{mode:?}: took {:?}",
            t.elapsed()
        );
        if mode == Mode::Subreaper {
            let pid = std::fs::read_to_string(s.path("daemon")).unwrap();
            let alive = std::path::Path::new(&format!("/proc/{}", pid.trim())).exists();
            assert!(!alive, "the daemon outlived the supervisor");
        }
    }
}
