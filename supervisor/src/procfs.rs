//! What the supervisor reads in `/proc`: the fields of `/proc/<pid>/stat` it needs to find
//! its children and a session's process groups. The parser is pure and never panics.

use nix::unistd::Pid;

/// The fields of one `/proc/<pid>/stat` line the supervisor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
}

/// Parses a stat line. The command name may hold spaces and `)`: fields are read after
/// the last `)`. `None` for anything short or malformed.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = line.get(line.rfind(')')? + 1..)?;
    let mut f = rest.split_ascii_whitespace();
    let _state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    Some(Stat {
        ppid,
        pgrp,
        session,
    })
}

fn all_stats() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat(&text)?))
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
