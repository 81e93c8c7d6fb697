//! On-demand start (DESIGN.md section 5): the held listening socket and how activity is
//! seen on it.
//!
//! The supervisor binds `on_demand.listen` itself at start, so clients can connect while
//! the service sleeps: the kernel keeps them in the socket's backlog (handoff mode) or the
//! supervisor accepts and holds them (proxy mode) until the backend is ready.
//!
//! **Activity in handoff mode.** The main process accepts on the handed-off socket itself,
//! so the supervisor never sees an accept. It looks at the kernel's table of sockets
//! instead (`/proc/net/unix`, `/proc/net/tcp{,6}`): every *new* connected socket on the
//! listening address is activity. An open connection that stays silent is the same
//! socket on every scan, so it does not keep the backend awake (the DESIGN's keep-alive
//! rule). A connection short enough to open and close between two scans is still caught
//! by the supervisor's poll on the listening socket, which wakes on every arriving
//! connection (throttled to once a second, so a busy site costs one wake-up a second).
//! nginx opens one FastCGI connection per request, so every request counts.
//!
//! **php-fpm unlinks its socket path on exit.** With `FPM_SOCKETS` the path is the key it
//! matches, and it removes it when it stops. The supervisor keeps a second hard link to
//! the same socket (`.<name>.bosun` beside it) and puts the public name back as soon as
//! the main process has exited, so the name nginx uses points at the same held socket
//! before and after every idle stop.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::Gid;

use crate::socket::{bind_unix, BoundSocket, SocketError};

/// Permission bits of a held TCP socket do not exist; a unix one gets these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldPerms {
    pub mode: u32,
    pub gid: Option<Gid>,
}

/// Where the held socket listens, or the backend: validated with the settings.
pub use crate::config::Addr;

/// The held listening socket.
#[derive(Debug)]
pub struct Held {
    pub fd: OwnedFd,
    pub addr: Addr,
    unix: Option<BoundSocket>,
    keep: Option<PathBuf>,
}

impl Held {
    /// Binds the held socket; a unix one is born with `perms` (`on_demand.socket_mode`,
    /// `socket_group`: 0660 by default, as systemd's `SocketMode=`/`SocketGroup=` but never
    /// world-connectable unless configured so), and so is its spare link, the same file.
    pub fn bind(addr: &Addr, perms: HeldPerms) -> Result<Held, SocketError> {
        match addr {
            Addr::Unix(path) => {
                let s = bind_unix(path, perms.mode, perms.gid, 65535)?;
                let keep = keep_link(path);
                let _ = std::fs::remove_file(&keep);
                s.link_to(&keep).map_err(|err| SocketError::Io {
                    path: keep.clone(),
                    what: "while making the spare link to the held socket",
                    err,
                })?;
                let fd = s.fd.try_clone().map_err(|err| SocketError::Io {
                    path: path.clone(),
                    what: "while duplicating the socket",
                    err,
                })?;
                Ok(Held {
                    fd,
                    addr: addr.clone(),
                    unix: Some(s),
                    keep: Some(keep),
                })
            }
            Addr::Tcp(a) => {
                let fd = bind_tcp(a).map_err(|err| SocketError::Io {
                    path: PathBuf::from(a.to_string()),
                    what: "while binding",
                    err: err.into(),
                })?;
                Ok(Held {
                    fd,
                    addr: addr.clone(),
                    unix: None,
                    keep: None,
                })
            }
        }
    }

    /// Puts the public name back if the main process removed it (php-fpm does on exit).
    /// The link is made from the socket's own descriptor (the spare link only keeps the
    /// file alive), so a file planted under the spare name is never linked.
    pub fn relink(&self) -> io::Result<bool> {
        let (Addr::Unix(path), Some(s)) = (&self.addr, &self.unix) else {
            return Ok(false);
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.ino() == s.ino() => Ok(false),
            Ok(_) => Ok(false), // someone else's file now: leave it alone
            Err(_) => s.link_to(path).map(|_| true),
        }
    }

    pub fn remove(&self) {
        if let Some(s) = &self.unix {
            s.remove();
        }
        if let Some(k) = &self.keep {
            let _ = std::fs::remove_file(k);
        }
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// A TCP listening socket with the same deep backlog as the unix one (std's
/// `TcpListener` asks for only 128, too few for a cold-start burst).
fn bind_tcp(a: &SocketAddr) -> nix::Result<OwnedFd> {
    use nix::sys::socket::{
        bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
        SockaddrIn, SockaddrIn6,
    };
    let family = if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match a {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(*v4))?,
        SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(*v6))?,
    }
    listen(&fd, Backlog::new(65535).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

fn keep_link(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.bosun"))
}

/// Remembers the connected sockets seen on the listening address; `scan` says whether a
/// new one appeared since the last scan.
#[derive(Debug, Default)]
pub struct Activity {
    seen: HashSet<u64>,
}

impl Activity {
    pub fn scan(&mut self, addr: &Addr) -> bool {
        let now = match addr {
            Addr::Unix(p) => std::fs::read_to_string("/proc/net/unix")
                .map(|t| unix_connections(&t, &p.display().to_string()))
                .unwrap_or_default(),
            Addr::Tcp(a) => {
                let mut all = HashSet::new();
                for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
                    if let Ok(t) = std::fs::read_to_string(f) {
                        all.extend(tcp_connections(&t, a.port()));
                    }
                }
                all
            }
        };
        let new = now.iter().any(|i| !self.seen.contains(i));
        self.seen = now;
        new
    }
}

/// Inodes of connected sockets bound to `path` in `/proc/net/unix`:
/// `Num RefCount Protocol Flags Type St Inode Path`, St 03 = connected.
pub fn unix_connections(table: &str, path: &str) -> HashSet<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[5] == "03" && f[7] == path)
                .then(|| f[6].parse().ok())
                .flatten()
        })
        .collect()
}

/// Inodes of established connections whose local port is `port` in `/proc/net/tcp{,6}`:
/// `sl local rem st ... inode` (field 9), st 01 = established.
pub fn tcp_connections(table: &str, port: u16) -> HashSet<u64> {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 10 && f[3] == "01" && f[1].ends_with(&want))
                .then(|| f[9].parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_tables() {
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 100 /run/php/forum.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 101 /run/php/forum.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 102\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 103 /run/php/wiki.sock\n";
        assert_eq!(
            unix_connections(unix, "/run/php/forum.sock"),
            HashSet::from([101])
        );
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 200 1\n\
            1: 0100007F:2328 0100007F:D431 01 00000000:00000000 00:00000000 00000000 0 0 201 1\n\
            2: 0100007F:D431 0100007F:2328 01 00000000:00000000 00:00000000 00000000 0 0 202 1\n";
        assert_eq!(tcp_connections(tcp, 9000), HashSet::from([201]));
    }

    #[test]
    fn silent_connections_are_not_activity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let held = Held::bind(
            &Addr::Unix(path.clone()),
            HeldPerms {
                mode: 0o660,
                gid: None,
            },
        )
        .unwrap();
        let l = unsafe_listener(&held);
        let mut act = Activity::default();
        assert!(!act.scan(&held.addr), "nothing connected yet");
        let c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (_srv, _) = l.accept().unwrap();
        assert!(act.scan(&held.addr), "a new connection is activity");
        assert!(!act.scan(&held.addr), "the same open connection is not");
        drop(c);
        // Relinking restores a removed public name to the same socket.
        std::fs::remove_file(&path).unwrap();
        assert!(held.relink().unwrap());
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        held.remove();
        assert!(!path.exists() && !keep_link(&path).exists());
    }

    fn unsafe_listener(h: &Held) -> std::os::unix::net::UnixListener {
        std::os::unix::net::UnixListener::from(h.fd.try_clone().unwrap())
    }
}
