//! What the supervisor reads in `/proc`: the fields of `/proc/<pid>/stat` it needs to find
//! its children and a session's process groups.
//!
//! The stat line is read as bytes and parsed as bytes: the command name is whatever the
//! process chose (`prctl(PR_SET_NAME)`), so it may hold spaces, `)`, newlines or bytes
//! that are not UTF-8, and a read can come back short when the process exits meanwhile.
//! PID 1 must not panic on any of that: [`parse_stat`] takes any bytes and answers `None`
//! for what it cannot read (property-tested here, fuzzed by `fuzz/fuzz_targets/proc_stat.rs`).

use nix::unistd::Pid;

/// The fields of one `/proc/<pid>/stat` line the supervisor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
}

/// Parses a stat line: `pid (comm) state ppid pgrp session ...`. The command name may hold
/// spaces and `)`, so the fields are read after the last `)`. `None` for anything short or
/// malformed; never panics, whatever the bytes.
pub fn parse_stat(line: &[u8]) -> Option<Stat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut f = line
        .get(close + 1..)?
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let _state = f.next()?;
    let ppid = number(f.next()?)?;
    let pgrp = number(f.next()?)?;
    let session = number(f.next()?)?;
    Some(Stat {
        ppid,
        pgrp,
        session,
    })
}

/// A decimal `i32` (the kernel prints pids this way; a `-` only for "none").
fn number(field: &[u8]) -> Option<i32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn all_stats() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat(&bytes)?))
        })
        .collect()
}

/// Direct children of `parent` (ourselves; the supervisor has one thread, so its task
/// file lists them all), or by reading every `/proc/*/stat` where that file is missing.
pub fn children_of(parent: Pid) -> Vec<Pid> {
    if let Ok(list) = std::fs::read_to_string(format!("/proc/self/task/{parent}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(Pid::from_raw)
            .collect();
    }
    all_stats()
        .into_iter()
        .filter(|(_, s)| s.ppid == parent.as_raw())
        .map(|(pid, _)| Pid::from_raw(pid))
        .collect()
}

/// The process groups of session `sid` (every `/proc/*/stat` read; only after a crash).
pub fn groups_in_session(sid: Pid) -> Vec<Pid> {
    let mut groups: Vec<Pid> = all_stats()
        .into_iter()
        .filter(|(_, s)| s.session == sid.as_raw() && s.pgrp > 1)
        .map(|(_, s)| Pid::from_raw(s.pgrp))
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stat(ppid: i32, pgrp: i32, session: i32) -> Option<Stat> {
        Some(Stat {
            ppid,
            pgrp,
            session,
        })
    }

    #[test]
    fn real_lines() {
        let own = std::fs::read("/proc/self/stat").unwrap();
        let s = parse_stat(&own).unwrap();
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(s.pgrp, nix::unistd::getpgrp().as_raw());
        assert_eq!(
            parse_stat(b"1 (init) S 0 1 1 0 -1 4194560 2004 0"),
            stat(0, 1, 1)
        );
        assert_eq!(
            parse_stat(b"77 (a) b) (c ) R 5 77 77 34816 77"),
            stat(5, 77, 77)
        );
        assert_eq!(parse_stat(b"7 (\xff\xfe\n) Z 1 7 1\n"), stat(1, 7, 1));
    }

    #[test]
    fn short_and_broken_lines() {
        for line in [
            &b""[..],
            b")",
            b"12 (sh",
            b"12 (sh)",
            b"12 (sh) S",
            b"12 (sh) S 1 2",
            b"12 (sh) S 1 2 x",
            b"12 (sh) S 1 2 99999999999",
            b"12 (sh) S \xff 2 3",
            b"12 (sh) S 1 2 3)",
        ] {
            assert_eq!(
                parse_stat(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_stat(&bytes);
        }

        #[test]
        fn any_comm_round_trips(
            pid in 1..i32::MAX,
            comm in proptest::collection::vec(any::<u8>(), 0..40),
            state in "[RSDZTtXxKWPI]",
            ppid in 0..i32::MAX,
            pgrp in 0..i32::MAX,
            session in 0..i32::MAX,
            tail in "( -?[0-9]{1,20}){0,40}",
        ) {
            let mut line = format!("{pid} (").into_bytes();
            line.extend(&comm);
            line.extend(format!(") {state} {ppid} {pgrp} {session}{tail}\n").bytes());
            prop_assert_eq!(parse_stat(&line), stat(ppid, pgrp, session));
        }

        #[test]
        fn any_cut_never_panics(
            comm in proptest::collection::vec(any::<u8>(), 0..40),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut line = b"42 (".to_vec();
            line.extend(&comm);
            line.extend(b") S 1 42 42 0 -1 4194560 99 0 0 0\n");
            let short = &line[..cut.index(line.len() + 1)];
            let _ = parse_stat(short);
        }
    }
}
