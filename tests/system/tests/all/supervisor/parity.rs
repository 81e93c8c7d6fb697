//! Parity with tini and dumb-init through the listener: the actions it starts get the
//! signal state the supervisor was started with (the supervisor's own parity.rs checks the
//! main process).

use super::harness::*;

const T10: std::time::Duration = std::time::Duration::from_secs(10);

fn inherit(c: &mut std::process::Command, blocked: &[(&str, i32)], ignored: &[(&str, i32)]) {
    inherit_signals(c, SUPERVISOR, blocked, ignored);
}

/// The listener's actions start with the inherited state too: the listener gets it from
/// the supervisor, and its children from it. (The listener keeps TERM, INT and CHLD
/// unblocked for itself, and its runtime's handlers and std's SIGPIPE reset mean those
/// four reach an action at their defaults: not checked here.)
#[test]
fn actions_start_with_the_inherited_mask_and_ignored_signals() {
    const BLOCKED: &[(&str, i32)] = &[("USR1", libc::SIGUSR1), ("TTIN", libc::SIGTTIN)];
    const IGNORED: &[(&str, i32)] = &[("HUP", libc::SIGHUP), ("TTOU", libc::SIGTTOU)];
    for mode in MODES {
        let b = sup(mode)
            .with_listener()
            .script("echo ready > $T/ready; while :; do sleep 0.05 & wait $!; done");
        b.file(
            "callbacks.sh",
            "CB_sigs() { cat /proc/self/status | grep -E '^Sig(Blk|Ign)'; }\n",
        );
        let s = b.start_with(|c| inherit(c, BLOCKED, IGNORED));
        s.wait_socket();
        s.request("sigs");
        let err = s.wait_stderr("[sigs#1] SigIgn:", T10);
        let status: String = err
            .lines()
            .filter_map(|l| l.strip_prefix("[sigs#1] "))
            .map(|l| format!("{l}\n"))
            .collect();
        let (blk, ign) = sig_masks(&status);
        assert_eq!(blk, bits(BLOCKED), "{mode:?}: SigBlk {blk:x}");
        assert_eq!(ign & !LIBC_OWN, bits(IGNORED), "{mode:?}: SigIgn {ign:x}");
    }
}
