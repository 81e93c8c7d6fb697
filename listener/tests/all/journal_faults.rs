//! "Never run unrecorded" (DESIGN.md section 2) and the state files (section 9), with real
//! faults: a tiny tmpfs filled to the last byte, planted symlinks, umask 0.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::keys::{count_lines, counting};

/// A tmpfs of `size`, unmounted at drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        testkit::prereq::require_root("mount a tmpfs");
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs");
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Every byte taken: dd, then single bytes until the disk says no.
    fn fill(&self) {
        let filler = self.path().join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=1k", "count=100000"])
            .arg(format!("of={}", filler.display()))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&filler)
            .unwrap();
        while std::io::Write::write(&mut f, b"x").is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Sends `line` until the reply's first line is not `error unavailable` (the journal retries
/// its file at most once a second), within the deadline.
fn until_available(l: &Listener, line: &[u8]) -> Vec<String> {
    let end = Instant::now() + DEADLINE;
    loop {
        let r = l.request(line);
        if !r[0].starts_with("error unavailable ") {
            return r;
        }
        assert!(Instant::now() < end, "still {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_disk_refuses_keyed_runs_and_the_journal_recovers_by_itself() {
    let disk = Tmpfs::mount("64k");
    let out = tempfile::tempdir().unwrap();
    let count = out.path().join("count");
    let state = disk.path().join("state");
    let cbs = counting(&count);
    let l = Listener::start(Opts::default().callbacks(Some(&cbs)).state_dir(&state)).ready();
    assert!(l.request(b"count first\n")[1].starts_with("done 1 exit=0"));
    disk.fill();
    // The journal file's last page may still take a record or two: run until it is full
    // (a new key each time: a key that got through is durable and would only replay).
    let mut runs = 1;
    let refused = loop {
        let r = l.request(format!("@k:{runs} count keyed\n").as_bytes());
        if r[0].starts_with("error unavailable ") {
            break r;
        }
        runs += 1;
        assert!(runs < 100, "the disk never filled: {r:?}");
    };
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("error unavailable journal cannot record the start "),
        "{refused:?}"
    );
    assert_eq!(count_lines(&count), runs, "the refused request did not run");
    l.log.wait_for("journal: cannot record the start");
    // Unkeyed requests still run.
    let unkeyed = l.request(b"count unkeyed\n");
    assert!(unkeyed[1].contains(" exit=0 "), "{unkeyed:?}");
    assert_eq!(count_lines(&count), runs + 1);
    let unkeyed_id: u64 = unkeyed[0].split(' ').nth(1).unwrap().parse().unwrap();
    // The error is logged once, not at every run.
    let again = l.request(b"count unkeyed\n");
    assert!(again[1].contains(" exit=0 "), "{again:?}");
    let again_id = again[0].split(' ').nth(1).unwrap().to_string();
    let lines = l.log.wait_until("the second unkeyed run's done", |ls| {
        ls.iter()
            .any(|s| s.contains("done") && s.contains(&format!("id={again_id} ")))
    });
    let errors = lines
        .iter()
        .filter(|s| s.contains("journal: cannot record"))
        .count();
    assert_eq!(errors, 1, "{lines:#?}");

    // Space again: the next keyed request runs, and is on disk, without a restart.
    disk.free();
    let ran = until_available(&l, b"@k:fresh count keyed\n");
    assert!(ran[1].contains(" exit=0 "), "{ran:?}");
    l.log.wait_for("journal: written again");
    let file = std::fs::read_to_string(state.join("test.journal")).unwrap();
    assert!(file.contains(" k:fresh "), "the key is on disk:\n{file}");
    assert!(
        file.contains(&format!(" S {unkeyed_id} ")),
        "the run kept in memory was written out:\n{file}"
    );
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["test.journal"], "no temporary left behind");
    let counted = count_lines(&count);
    drop(l);

    // A restart: the key replays, ids go on.
    let l = Listener::start(Opts::default().callbacks(Some(&cbs)).state_dir(&state)).ready();
    assert_eq!(l.request(b"@k:fresh count keyed\n"), ran);
    assert_eq!(count_lines(&count), counted);
    let ran_id: u64 = ran[0].split(' ').nth(1).unwrap().parse().unwrap();
    let next = l.request(b"count\n");
    assert_eq!(
        next[0],
        format!("accepted {} count", ran_id + 1),
        "{next:?}"
    );
}

#[test]
fn an_unwritable_journal_refuses_keys_and_keeps_the_listener_from_idling_out() {
    let out = tempfile::tempdir().unwrap();
    let count = out.path().join("count");
    // A path under a regular file cannot be a directory, even for root.
    std::fs::write(out.path().join("file"), "").unwrap();
    let state = out.path().join("file/state");
    let cbs = counting(&count);
    let l = Listener::start(
        Opts::default()
            .callbacks(Some(&cbs))
            .state_dir(&state)
            .env("BOSUN_LISTENER_IDLE", "1s"),
    )
    .ready();
    l.log.wait_for("keeping the journal in memory");
    let r = l.request(b"@k count\n");
    assert!(
        r[0].starts_with("error unavailable journal cannot record the start "),
        "{r:?}"
    );
    assert_eq!(count_lines(&count), 0);
    assert!(l.request(b"count\n")[1].contains(" exit=0"));
    // Idle, but what memory holds would be lost with it: it stays.
    l.log
        .wait_for("idle, but the journal is in memory only: not exiting");
    assert_eq!(l.request(b"history\n").len(), 1);
}

#[test]
fn planted_symlinks_are_not_followed_and_the_state_dir_is_private() {
    let out = tempfile::tempdir().unwrap();
    let count = out.path().join("count");
    let state = out.path().join("state");
    let cbs = counting(&count);
    // Made under umask 0: 0700 all the same, the journal 0600.
    let l = Listener::start(
        Opts::default()
            .callbacks(Some(&cbs))
            .state_dir(&state)
            .umask(0),
    )
    .ready();
    assert!(l.request(b"@a count\n")[1].contains(" exit=0"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("test.journal")), 0o600);
    drop(l);

    // A symlink planted at the journal: refused, not followed, keys refused.
    let victim = out.path().join("victim");
    std::fs::write(&victim, "IMPORTANT").unwrap();
    std::fs::remove_file(state.join("test.journal")).unwrap();
    symlink(&victim, state.join("test.journal")).unwrap();
    for tmp in ["test.journal.tmp", ".test.journal.tmp"] {
        symlink(&victim, state.join(tmp)).unwrap();
    }
    let l = Listener::start(Opts::default().callbacks(Some(&cbs)).state_dir(&state)).ready();
    let warn = l.log.wait_for("keeping the journal in memory");
    assert!(warn.contains("not followed"), "{warn}");
    let r = l.request(b"@b count\n");
    assert!(r[0].starts_with("error unavailable "), "{r:?}");
    assert!(l.request(b"count\n")[1].contains(" exit=0"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "IMPORTANT");
    assert!(std::fs::symlink_metadata(state.join("test.journal"))
        .unwrap()
        .file_type()
        .is_symlink());
}
