//! Exit codes round-trip: the main process's code, or 128+N for death by signal N.

use std::time::Duration;

use crate::harness::*;

#[test]
fn codes_0_to_255_round_trip() {
    for mode in MODES {
        for code in 0..=255 {
            let (st, _, err) = sup(mode)
                .cmd(&["sh", "-c", &format!("exit {code}")])
                .run(Duration::from_secs(10));
            assert_eq!(
                st.code(),
                Some(code),
                "{mode:?} exit {code}; stderr:\n{err}"
            );
        }
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    for mode in MODES {
        for (name, n) in [
            ("TERM", SIGTERM),
            ("INT", SIGINT),
            ("USR1", SIGUSR1),
            ("KILL", SIGKILL),
        ] {
            let (st, _, err) = sup(mode)
                .cmd(&["sh", "-c", &format!("kill -{name} $$")])
                .run(Duration::from_secs(10));
            assert_eq!(st.code(), Some(128 + n), "{mode:?} {name}; stderr:\n{err}");
        }
    }
}

#[test]
fn output_passes_through_untouched() {
    for mode in MODES {
        let (st, out, err) = sup(mode)
            .cmd(&[
                "sh",
                "-c",
                "printf 'raw\\001line\\n'; printf 'to stderr\\n' >&2",
            ])
            .run(Duration::from_secs(10));
        assert!(st.success());
        assert_eq!(out, "raw\x01line\n");
        assert!(err.contains("to stderr\n"), "{err}");
    }
}
