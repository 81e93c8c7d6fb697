//! Parity with tini and dumb-init: what their own test suites check (tini's
//! `test/run_inner_tests.py` and `test/sigconf`, dumb-init's `tests/`), ported to
//! `supervisor -- CMD` where it applies. What is checked elsewhere is not repeated here:
//! exit codes 0..255 and 128+N for a main process that kills itself (exit_codes.rs), a
//! burst of double-fork orphans reaped (reaping.rs), HUP USR1 USR2 WINCH and the stop
//! signals (signals.rs).
//!
//! Each expectation was checked against tini (`tini -s -- CMD`) by hand; where bosun does
//! more than tini (the default PATH is given to the child, as docker does; leftovers of
//! the main process's group get TERM before KILL), the test says so.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const T10: Duration = Duration::from_secs(10);

/// Every signal the supervisor passes on, by name and number, but the three that stop it
/// (TERM, INT, QUIT: see signals.rs).
const FORWARDED: [(&str, i32); 15] = [
    ("HUP", libc::SIGHUP),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("CONT", libc::SIGCONT),
    ("URG", libc::SIGURG),
    ("STKFLT", libc::SIGSTKFLT),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
];

/// dumb-init's `print_signals`: a main process that logs every signal it gets to
/// `$T/signals`, after a `ready` line.
const PRINT_SIGNALS: &str = r#"
for s in HUP USR1 USR2 PIPE ALRM CONT URG STKFLT XCPU XFSZ VTALRM PROF WINCH IO PWR; do
  trap "echo $s >> $T/signals" $s
done
trap 'exit 0' TERM
echo ready >> $T/signals
while :; do sleep 0.05 & wait $!; done
"#;

#[test]
fn every_forwarded_signal_reaches_the_main_process() {
    for mode in MODES {
        let mut s = sup(mode)
            .script(PRINT_SIGNALS)
            .start_with(|c| inherit(c, &[], &[]));
        s.wait_file("signals", "ready", T10);
        let mut expect = String::from("ready\n");
        for (name, n) in FORWARDED {
            s.signal(n);
            expect.push_str(name);
            expect.push('\n');
            s.wait_file("signals", &expect, T10);
        }
        s.signal(SIGTERM);
        assert_eq!(s.wait(T10).code(), Some(0), "{mode:?}: {}", s.stderr());
    }
}

/// tini's signals test, for every signal whose default action ends a process: the main
/// process dies of the forwarded signal and the supervisor exits 128+N. TERM becomes the
/// stop signal (TERM too by default); INT and QUIT are passed on as themselves.
/// (`tini -s -- sh -c '...; exec sleep 1000'` gives the same 15 codes.)
#[test]
fn death_by_a_forwarded_signal_is_128_plus_n() {
    let killing = FORWARDED
        .iter()
        .copied()
        .filter(|(n, _)| !matches!(*n, "CONT" | "URG" | "WINCH"))
        .chain([
            ("TERM", libc::SIGTERM),
            ("INT", libc::SIGINT),
            ("QUIT", libc::SIGQUIT),
        ]);
    for (name, n) in killing {
        for mode in MODES {
            // No core files from QUIT, XCPU and XFSZ.
            let mut s = sup(mode)
                .cmd(&[
                    "sh",
                    "-c",
                    "ulimit -c 0; echo ready > $T/ready; exec sleep 1000",
                ])
                .start_with(|c| inherit(c, &[], &[]));
            s.wait_file("ready", "ready", T10);
            s.signal(n);
            let st = s.wait(T10);
            assert_eq!(
                st.code(),
                Some(128 + n),
                "{mode:?} {name}; stderr:\n{}",
                s.stderr()
            );
        }
    }
}

/// tini's process-group test (`tini -g`, dumb-init's default): a signal reaches every process
/// of the main process's group, not only its leader.
#[test]
fn signals_reach_the_whole_process_group() {
    for mode in MODES {
        let s = sup(mode)
            .script(
                r#"trap 'echo main >> $T/signals' USR1
                   sh -c 'trap "echo child >> \$T/signals" USR1; echo ready >> $T/ready
                          while :; do sleep 0.05; done' &
                   while :; do sleep 0.05 & wait $!; done"#,
            )
            .start();
        s.wait_file("ready", "ready", T10);
        s.signal(SIGUSR1);
        let got = wait_until(T10, "USR1 in both processes", || {
            let t = std::fs::read_to_string(s.path("signals")).ok()?;
            (t.contains("main\n") && t.contains("child\n")).then_some(t)
        });
        assert_eq!(got.lines().count(), 2, "{mode:?}: {got}");
    }
}

/// Starts the supervisor with `blocked` blocked and `ignored` ignored (see
/// [`testkit::supervisor::inherit_signals`]).
fn inherit(c: &mut Command, blocked: &[(&str, i32)], ignored: &[(&str, i32)]) {
    inherit_signals(c, SUPERVISOR, blocked, ignored);
}

const BLOCKED: &[(&str, i32)] = &[
    ("TTIN", libc::SIGTTIN),
    ("ILL", libc::SIGILL),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
];
const IGNORED: &[(&str, i32)] = &[
    ("TTOU", libc::SIGTTOU),
    ("SEGV", libc::SIGSEGV),
    ("INT", libc::SIGINT),
    ("HUP", libc::SIGHUP),
    ("PIPE", libc::SIGPIPE),
];

/// tini's signal configuration test: the main process starts with the mask and the
/// ignored signals the supervisor was started with, though the supervisor itself blocks
/// everything, and Rust's runtime ignores SIGPIPE; with and without a setup script.
#[test]
fn the_main_process_starts_with_the_inherited_mask_and_ignored_signals() {
    for mode in MODES {
        for setup in [false, true] {
            let b = sup(mode).cmd(&["cat", "/proc/self/status"]);
            let b = if setup {
                let p = b.file("setup.sh", "export FROM_SETUP=1\n");
                b.env("BOSUN_SETUP", p.to_str().unwrap())
            } else {
                b
            };
            let mut s = b.start_with(|c| inherit(c, BLOCKED, IGNORED));
            let st = s.wait(T10);
            assert_eq!(st.code(), Some(0), "{mode:?}: {}", s.stderr());
            let (blk, ign) = sig_masks(&s.wait_stdout("SigIgn:", T10));
            let ign = ign & !LIBC_OWN;
            assert_eq!(blk, bits(BLOCKED), "{mode:?} setup={setup}: SigBlk {blk:x}");
            assert_eq!(ign, bits(IGNORED), "{mode:?} setup={setup}: SigIgn {ign:x}");
        }
    }
}

#[test]
fn nothing_inherited_means_nothing_blocked_or_ignored() {
    // Not even SIGPIPE, which the supervisor's own runtime ignores.
    for mode in MODES {
        let mut s = sup(mode)
            .cmd(&["cat", "/proc/self/status"])
            .start_with(|c| inherit(c, &[], &[]));
        let st = s.wait(T10);
        assert_eq!(st.code(), Some(0), "{mode:?}: {}", s.stderr());
        let out = s.wait_stdout("SigIgn:", T10);
        let (blk, ign) = sig_masks(&out);
        assert_eq!((blk, ign & !LIBC_OWN), (0, 0), "{mode:?}: {out}");
    }
}

/// A SIGCHLD inherited ignored would have the kernel reap the main process for the
/// supervisor, which would never learn its exit code: the supervisor takes SIGCHLD back
/// for itself, and the main process still gets it ignored. (Here bosun parts from tini,
/// which then never sees its child end and has to be KILLed.)
#[test]
fn an_inherited_ignored_sigchld_still_gives_the_exit_code() {
    for mode in MODES {
        // cat prints its status, then fails on the missing file: exit 1.
        let mut s = sup(mode)
            .cmd(&["cat", "/proc/self/status", "/nonexistent"])
            .start_with(|c| inherit(c, &[], &[("CHLD", libc::SIGCHLD)]));
        let st = s.wait(T10);
        assert_eq!(st.code(), Some(1), "{mode:?}: {}", s.stderr());
        let (_, ign) = sig_masks(&s.wait_stdout("SigIgn:", T10));
        assert_eq!(
            ign & !LIBC_OWN,
            bits(&[("CHLD", libc::SIGCHLD)]),
            "{mode:?}"
        );
    }
}

/// `env -i supervisor -- env`: with no PATH the command is looked up in docker's default
/// search path, and the main process is given it (tini finds `env` through execvp's own
/// default, but passes no PATH on; docker would have set one).
#[test]
fn no_path_means_the_default_search_path() {
    for mode in MODES {
        let mut s = sup(mode).cmd(&["env"]).start_with(|c| {
            let keep: Vec<_> = c
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
                .collect();
            c.env_clear().envs(keep);
        });
        let st = s.wait(T10);
        assert_eq!(st.code(), Some(0), "{mode:?}: {}", s.stderr());
        s.wait_stdout(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            T10,
        );
    }
    // A PATH that is set is the one used and passed on.
    let (st, out, err) = sup(Mode::Subreaper)
        .env("PATH", "/nowhere:/usr/bin:/bin")
        .cmd(&["printenv", "PATH"])
        .run(T10);
    assert_eq!(st.code(), Some(0), "{err}");
    assert_eq!(out, "/nowhere:/usr/bin:/bin\n");
}

/// What the main process left in its group when it exited gets TERM first: a helper that
/// traps it to finish its work is given the time (tini, as PID 1, exits at once and the
/// kernel KILLs them; bosun promises TERM, KILL only at `stop_timeout`).
#[test]
fn a_leftover_that_finishes_on_term_is_given_time() {
    for mode in MODES {
        let t = Instant::now();
        let mut s = sup(mode)
            .env("BOSUN_STOP_TIMEOUT", "20s")
            .script(
                r#"bash -c 'trap "sleep 0.3; echo flushed > $T/left; exit 0" TERM
                            echo up > $T/leftover; while :; do sleep 0.05; done' &
                   until [ -s $T/leftover ]; do sleep 0.01; done
                   exit 3"#,
            )
            .start();
        let st = s.wait(Duration::from_secs(30));
        assert_eq!(st.code(), Some(3), "{mode:?}: {}", s.stderr());
        assert_eq!(
            std::fs::read_to_string(s.path("left")).ok().as_deref(),
            Some("flushed\n"),
            "{mode:?}: the leftover was not given time to finish; {}",
            s.stderr()
        );
        // It ends the run as soon as it is gone, long before stop_timeout.
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{mode:?}: {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn a_leftover_that_ignores_term_is_killed_at_stop_timeout() {
    for mode in MODES {
        let mut s = sup(mode)
            .env("BOSUN_STOP_TIMEOUT", "1s")
            .script(
                r#"bash -c 'trap "" TERM; echo $$ > $T/leftover
                            while :; do sleep 0.05; done' &
                   until [ -s $T/leftover ]; do sleep 0.01; done
                   exit 3"#,
            )
            .start();
        s.wait_file("leftover", "\n", T10);
        let t = Instant::now();
        let st = s.wait(T10);
        let took = t.elapsed();
        assert_eq!(st.code(), Some(3), "{mode:?}: {}", s.stderr());
        assert!(
            took >= Duration::from_millis(900),
            "{mode:?}: KILLed after {took:?}, before stop_timeout"
        );
        assert!(took < Duration::from_secs(5), "{mode:?}: took {took:?}");
        if mode == Mode::Subreaper {
            let pid = std::fs::read_to_string(s.path("leftover")).unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
            assert!(
                stat.is_err(),
                "the leftover outlived the supervisor: {stat:?}"
            );
        }
    }
}

/// dumb-init's tty tests: with a terminal on stdin, the main process gets the foreground
/// process group (tini's `tcsetpgrp`), so it can read the terminal without being stopped
/// by SIGTTIN, and its job control works.
#[test]
fn with_a_tty_the_main_process_is_in_the_foreground() {
    for mode in MODES {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut master = std::fs::File::from(pty.master);
        let slave = pty.slave;
        let s = sup(mode)
            .script(
                r#"s=$(cat /proc/$$/stat); s=${s##*) }; set -- $s
                   echo "pgrp=$3 tpgid=$6"
                   read -r line; echo "read:$line""#,
            )
            .start_with(|c| {
                c.stdin(Stdio::from(slave));
                // SAFETY: setsid and ioctl(TIOCSCTTY) between fork and exec.
                unsafe {
                    c.pre_exec(|| {
                        if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            });
        let out = s.wait_stdout("tpgid=", T10);
        let line = out.lines().find(|l| l.starts_with("pgrp=")).unwrap();
        let (pgrp, tpgid) = line.split_once(' ').unwrap();
        assert_eq!(
            pgrp.trim_start_matches("pgrp="),
            tpgid.trim_start_matches("tpgid="),
            "{mode:?}: {line}"
        );
        master.write_all(b"hello\n").unwrap();
        s.wait_stdout("read:hello", T10);
        let mut s = s;
        assert_eq!(s.wait(T10).code(), Some(0), "{mode:?}: {}", s.stderr());
    }
}

/// Odd arguments reach the main process byte for byte.
#[test]
fn odd_arguments_pass_through() {
    let odd = ["", " ", "a b", "new\nline", "'\"$x`", "--", "-c", "ünï"];
    for mode in MODES {
        let mut argv = vec!["sh", "-c", r#"for a; do printf '[%s]' "$a"; done"#, "sh"];
        argv.extend(odd);
        let (st, out, err) = sup(mode).cmd(&argv).run(T10);
        assert_eq!(st.code(), Some(0), "{mode:?}: {err}");
        let want: String = odd.iter().map(|a| format!("[{a}]")).collect();
        assert_eq!(out, want, "{mode:?}");
    }
}

/// An environment that is not UTF-8 is passed on untouched.
#[test]
fn odd_environment_passes_through() {
    for mode in MODES {
        let mut s = sup(mode)
            .cmd(&["sh", "-c", r#"printf %s "$ODD" | od -An -tx1"#])
            .start_with(|c| {
                c.env("ODD", OsStr::from_bytes(b"x\xff y\n"));
            });
        let st = s.wait(T10);
        assert_eq!(st.code(), Some(0), "{mode:?}: {}", s.stderr());
        assert_eq!(
            s.wait_stdout("\n", T10).trim(),
            "78 ff 20 79 0a",
            "{mode:?}"
        );
    }
}
