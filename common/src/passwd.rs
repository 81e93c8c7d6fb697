//! Users and groups by name, read from `/etc/passwd` and `/etc/group` directly.
//!
//! Not through glibc's NSS (`getpwnam`): a statically linked binary cannot load NSS modules,
//! and bosun's binaries are static so that they run in any image (DESIGN.md section 8). In a
//! container the files are the whole user database anyway. The parsing is pure and
//! unit-tested; only [`user_by_name`], [`user_by_uid`] and [`group_by_name`] read the files.

use std::path::{Path, PathBuf};

/// The user database, as in `passwd(5)`.
pub const PASSWD: &str = "/etc/passwd";
/// The group database, as in `group(5)`.
pub const GROUP: &str = "/etc/group";

/// One line of `/etc/passwd`: what bosun uses of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The home directory (`HOME` of a process run as this user).
    pub dir: PathBuf,
}

/// The accounts of a `passwd(5)` text; lines that do not parse (comments, NIS `+` lines,
/// a hand edit gone wrong) are skipped.
pub fn parse_passwd(text: &str) -> impl Iterator<Item = Account> + '_ {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        Some(Account {
            name: f[0].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            dir: PathBuf::from(f[5]),
        })
    })
}

/// `(name, gid)` of each line of a `group(5)` text; lines that do not parse are skipped.
pub fn parse_group(text: &str) -> impl Iterator<Item = (&str, u32)> + '_ {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        Some((f[0], f[2].parse().ok()?))
    })
}

/// The gids of the groups of a `group(5)` text that list `user` among their members (the
/// fourth field), in file order, each once: what `initgroups(3)` adds to the primary group.
pub fn member_of(text: &str, user: &str) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
            continue;
        }
        let Ok(gid) = f[2].parse::<u32>() else {
            continue;
        };
        if f[3].split(',').any(|m| m.trim() == user) && !out.contains(&gid) {
            out.push(gid);
        }
    }
    out
}

/// The supplementary groups of `user` with primary group `primary`, as `initgroups(3)`
/// sets them: the primary first, then every group of `/etc/group` that lists the user.
pub fn groups_of(user: &str, primary: u32) -> Vec<u32> {
    let mut out = vec![primary];
    for g in member_of(&read(Path::new(GROUP)), user) {
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The first account named `name` in `/etc/passwd`.
pub fn user_by_name(name: &str) -> Option<Account> {
    parse_passwd(&read(Path::new(PASSWD))).find(|a| a.name == name)
}

/// The first account with `uid` in `/etc/passwd`.
pub fn user_by_uid(uid: u32) -> Option<Account> {
    parse_passwd(&read(Path::new(PASSWD))).find(|a| a.uid == uid)
}

/// The gid of the first group named `name` in `/etc/group`.
pub fn group_by_name(name: &str) -> Option<u32> {
    parse_group(&read(Path::new(GROUP)))
        .find(|&(n, _)| n == name)
        .map(|(_, g)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
        broken:x:notanumber:1:::\n\
        short:x:1\n\
        +nis::::::\n\
        app:x:1000:1001::/home/app:/bin/sh\n";

    #[test]
    fn passwd_lines() {
        let all: Vec<Account> = parse_passwd(PASSWD_TEXT).collect();
        assert_eq!(
            all.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["root", "www-data", "app"]
        );
        assert_eq!(
            all[2],
            Account {
                name: "app".into(),
                uid: 1000,
                gid: 1001,
                dir: "/home/app".into()
            }
        );
    }

    #[test]
    fn group_lines() {
        let text = "root:x:0:\nwww-data:x:33:\nbad:x::\nstaff:x:50:app,other\n";
        assert_eq!(
            parse_group(text).collect::<Vec<_>>(),
            [("root", 0), ("www-data", 33), ("staff", 50)]
        );
    }

    #[test]
    fn memberships() {
        let text = "root:x:0:\nstaff:x:50:app,other\n# x:x:7:app\nssl:x:103: other , app\nbad:x:zz:app\nstaff2:x:50:app\n";
        assert_eq!(member_of(text, "app"), [50, 103]);
        assert_eq!(member_of(text, "other"), [50, 103]);
        assert_eq!(member_of(text, "ap"), Vec::<u32>::new(), "whole names only");
        assert_eq!(member_of(text, "root"), Vec::<u32>::new());
    }

    #[test]
    fn this_machines_files() {
        // Every Linux system has root with uid 0 and a group root with gid 0.
        assert_eq!(user_by_name("root").map(|a| a.uid), Some(0));
        assert_eq!(user_by_uid(0).map(|a| a.name), Some("root".into()));
        assert_eq!(group_by_name("root"), Some(0));
        assert_eq!(user_by_name("no-such-user-here"), None);
        assert_eq!(group_by_name("no-such-group-here"), None);
    }
}
