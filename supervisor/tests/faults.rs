//! Faults the supervisor meets alone: a run directory with no room for the socket, and a
//! request socket removed or replaced while it runs. (With the listener: the system tests'
//! supervisor/faults.rs.) In each case it says so once, clearly, and carries on or exits
//! with its documented code.

use std::time::Duration;

use crate::harness::*;

#[test]
fn a_full_run_directory_is_a_clear_setup_error() {
    testkit::prereq::require_root("mount a tmpfs");
    let b = sup(Mode::Subreaper);
    let run = b.dir().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let cmd = b.command();
    let mut args: Vec<String> = vec![cmd.get_program().to_string_lossy().into_owned()];
    args.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    args.extend(["--".into(), "true".into()]);
    // A tmpfs with room for one inode (its root): the socket cannot be created.
    let mut c = testkit::process::private_mounts(&format!(
        "mount -t tmpfs -o size=16k,nr_inodes=1 tmpfs {}",
        run.display()
    ));
    c.args(&args);
    testkit::process::copy_env(&cmd, &mut c);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_removed_or_replaced_request_socket_is_said_once_and_a_replacement_left_alone() {
    let mut s = sup(Mode::Pid1).cmd(&["sleep", "1000"]).start();
    // The service's shared name: removed, this replica links it again (DESIGN.md 10).
    let shared = s.socket();
    wait_until(Duration::from_secs(10), "socket", || {
        shared.exists().then_some(())
    });
    std::fs::remove_file(&shared).unwrap();
    wait_until(Duration::from_secs(12), "the shared name back", || {
        std::os::unix::net::UnixStream::connect(&shared).ok()
    });
    // This replica's own socket: not made again, said once.
    let sock = shared.with_file_name("t.1-request.sock");
    std::fs::remove_file(&sock).unwrap();
    // Checked every 5 s.
    s.wait_stderr("socket's name was removed", Duration::from_secs(12));
    // Replaced by another file: said once more (a new problem after the first? no: still
    // wrong, so still once), left alone, and not removed at exit either.
    std::fs::write(&sock, "someone else's").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    s.signal(SIGTERM);
    s.wait(Duration::from_secs(15));
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "someone else's");
    let said = s
        .stderr()
        .matches("requests do not reach this service")
        .count();
    assert_eq!(said, 1, "{}", s.stderr());
}
