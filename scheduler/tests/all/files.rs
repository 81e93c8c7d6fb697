//! The daemon's files in a directory others might write (DESIGN.md section 9, review L1):
//! the state directory made 0700 whatever the umask, the record, the catch-up state and the
//! fire key secret 0600, the report files 0644; symlinks planted at the files' paths and
//! at the old fixed temporary names never followed; no temporary left behind when the
//! disk is full (a real 256 KiB tmpfs).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use scheduler::state::line_hash;

use crate::support::{bin, peer, rename_over, wait_file, Answer, Daemon};

const SHORT: Duration = Duration::from_secs(10);

/// Two lines: one that fires at start (a record), one that never fires in the test (a
/// catch-up state file, made at start).
const SCHEDULE: &str = "@reboot svc x\n0 0 1 1 * svc never\n";

fn line_keys() -> (String, String) {
    let s = scheduler::schedule::parse("f", SCHEDULE.as_bytes(), chrono_tz::Tz::UTC).unwrap();
    (s.entries[0].key(), s.entries[1].key())
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The daemon on `file`, with its state in `state` and its reports in `out`, under
/// `umask`.
fn daemon(file: &Path, run_dir: &Path, state: &Path, out: &Path, umask: u32) -> Daemon {
    let mut cmd: Command = bin();
    cmd.arg(file)
        .env("BOSUN_RUN_DIR", run_dir)
        .env("BOSUN_STATE_DIR", state)
        .env("BOSUN_METRICS_FILE", out.join("bosun.prom"))
        .env("BOSUN_STATUS_HTML", out.join("status.html"));
    let mask = nix::sys::stat::Mode::from_bits_truncate(umask);
    // SAFETY: umask(2) is async-signal-safe and touches only the child's own mask.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::stat::umask(mask);
            Ok(())
        });
    }
    Daemon::spawn(cmd)
}

/// Expected: under umask 0 the daemon makes its state directory 0700; the record, the
/// catch-up state and the fire key secret are 0600, the metrics file and the page 0644
/// (nginx and node_exporter read them); no temporary is left.
#[test]
fn state_dir_is_0700_and_files_private_under_umask_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, SCHEDULE).unwrap();
    let state = dir.path().join("a/state");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let _svc = peer(dir.path(), "svc", Answer::Done(0));
    let mut d = daemon(&file, dir.path(), &state, &out, 0);
    d.wait_for(&["done", "service=svc", "exit=0"], SHORT);
    wait_file(&out.join("bosun.prom"), SHORT, |t| {
        t.contains(
            "bosun_schedule_runs_total{service=\"svc\",action=\"x\",user=\"\",result=\"ok\"} 1",
        )
    });
    assert_eq!(d.stop(), 0);
    assert_eq!(mode(&state), 0o700);
    let (reboot, never) = line_keys();
    let runs = format!("{}.runs", line_hash(&reboot));
    let last = format!("{}.last", line_hash(&never));
    let mut want = vec![runs.clone(), last.clone(), "fire-key.secret".to_string()];
    want.sort();
    assert_eq!(names(&state), want);
    for f in [&runs, &last, "fire-key.secret"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    assert_eq!(names(&out), ["bosun.prom", "status.html"]);
    for f in ["bosun.prom", "status.html"] {
        assert_eq!(mode(&out.join(f)), 0o644, "{f}");
    }
}

/// Expected: symlinks planted at the record's and the catch-up state's paths, at the old
/// fixed temporary names (`<hash>.tmp`, `<hash>.runs.tmp`, `.bosun.prom.tmp`,
/// `.status.html.tmp`) are never followed: every target keeps its content. A symlinked
/// record is reported and the run goes on; the state file and the reports are written as
/// files of their own.
#[test]
fn planted_symlinks_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, SCHEDULE).unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(&out).unwrap();
    let victims = dir.path().join("victims");
    std::fs::create_dir(&victims).unwrap();
    let (reboot, never) = line_keys();
    let (hr, hn) = (line_hash(&reboot), line_hash(&never));
    let planted: Vec<PathBuf> = vec![
        state.join(format!("{hr}.runs")),
        state.join(format!("{hr}.runs.tmp")),
        state.join(format!("{hn}.last")),
        state.join(format!("{hn}.tmp")),
        out.join(".bosun.prom.tmp"),
        out.join(".status.html.tmp"),
    ];
    for (i, p) in planted.iter().enumerate() {
        let v = victims.join(format!("v{i}"));
        std::fs::write(&v, "IMPORTANT").unwrap();
        symlink(&v, p).unwrap();
    }
    let _svc = peer(dir.path(), "svc", Answer::Done(0));
    let mut d = daemon(&file, dir.path(), &state, &out, 0o022);
    d.wait_for(&["done", "service=svc", "exit=0"], SHORT);
    d.wait_for(&["cannot record the run", &format!("{hr}.runs")], SHORT);
    wait_file(&out.join("status.html"), SHORT, |t| t.contains("</html>"));
    wait_file(&out.join("bosun.prom"), SHORT, |t| {
        t.contains(
            "bosun_schedule_runs_total{service=\"svc\",action=\"x\",user=\"\",result=\"ok\"} 1",
        )
    });
    assert_eq!(d.stop(), 0);
    for (i, p) in planted.iter().enumerate() {
        let v = victims.join(format!("v{i}"));
        assert_eq!(
            std::fs::read_to_string(&v).unwrap(),
            "IMPORTANT",
            "{} was followed",
            p.display()
        );
    }
    // The state file, the metrics file and the page are files of their own now.
    for p in [
        state.join(format!("{hn}.last")),
        out.join("bosun.prom"),
        out.join("status.html"),
    ] {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_file(), "{}", p.display());
    }
    // The record stays a symlink nobody wrote through.
    assert!(std::fs::symlink_metadata(&planted[0])
        .unwrap()
        .file_type()
        .is_symlink());
}

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs (the test needs root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until a write fails with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    p
}

/// Expected: with the reports' directory full (a real 256 KiB tmpfs), writing them fails,
/// is logged once, and leaves no temporary behind; once there is room, the next rewrite
/// (here: a reload) writes them again.
#[test]
fn a_full_disk_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("conf/schedule.cron");
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(&file, SCHEDULE).unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let _fs = Tmpfs::mount(&out, "256k");
    let filler = fill(&out);
    let _svc = peer(dir.path(), "svc", Answer::Done(0));
    let mut d = daemon(&file, dir.path(), &state, &out, 0o022);
    d.wait_for(&["done", "service=svc", "exit=0"], SHORT);
    d.wait_for(&["cannot write the status page", "No space left"], SHORT);
    d.wait_for(&["cannot write the metrics file", "No space left"], SHORT);
    // A write may be in flight when the failures are logged (each outcome rewrites the
    // reports, and only the first failure is logged): what must hold is that every
    // temporary goes, so the directory is waited for, and a temporary left behind fails.
    testkit::wait::wait_until(SHORT, "no temporary left in the full directory", || {
        (names(&out) == ["filler"]).then_some(())
    });
    std::fs::remove_file(&filler).unwrap();
    rename_over(&file, &format!("{SCHEDULE}0 0 1 1 * svc other\n"));
    d.wait_for(&["the status page is written again"], SHORT);
    d.wait_for(&["the metrics file is written again"], SHORT);
    assert_eq!(d.stop(), 0);
    assert_eq!(names(&out), ["bosun.prom", "status.html"]);
}
