//! This replica's instance and its request sockets (DESIGN.md section 10).
//!
//! * **Claiming.** `BOSUN_INSTANCE` when set; else the lowest number `n` whose
//!   `<run_dir>/<service>.<n>-request.sock` nobody answers on (missing, or stale: left by a
//!   replica that died). Replicas share the run directory, so they claim under an
//!   exclusive `flock` of `<run_dir>/.<service>.claim`: two replicas starting at once never
//!   take one number, and a stale file is removed only by the one that then binds it. The
//!   lock dies with its holder, so a replica killed while claiming blocks nobody.
//! * **The shared name.** `<run_dir>/<service>-request.sock` is a hard link to the socket
//!   of one live replica, made from the socket's descriptor. Every replica checks it every
//!   few seconds ([`keep_shared`]): missing or stale (nobody answers), it links its own
//!   socket there (a new link renamed over the old name: never a moment without one).
//!   Clients that do not care which replica answers use it as before.
//! * **Which one is mine.** `supervisor status` (the health check, run in the container)
//!   must ask its own replica, not any one: [`mine`] picks the instance socket whose
//!   server is this PID namespace's process 1 (`SO_PEERCRED` gives the listening
//!   process's pid as seen from the caller: 1 in its own container, 0 in another's).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::settings::{Addr, Settings};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::socket::{bind_unix, connect_nonblocking, BoundSocket, SocketError};

/// How long a replica waits for another's claim (microseconds of work) before giving up.
const CLAIM_WAIT: Duration = Duration::from_secs(10);

/// The request socket's backlog.
const BACKLOG: i32 = 4096;

/// Claims this replica's instance and binds its request socket, born with the settings'
/// mode and group. A given `BOSUN_INSTANCE` that a live replica holds is
/// [`SocketError::Taken`], as a second supervisor on one socket always was.
pub fn claim(s: &Settings) -> Result<(u32, BoundSocket), SocketError> {
    let io_err = |what: &'static str| {
        let path = s.run_dir.clone();
        move |err: io::Error| SocketError::Io { path, what, err }
    };
    std::fs::create_dir_all(&s.run_dir).map_err(io_err("while creating the run directory"))?;
    let _lock = lock(&s.run_dir.join(format!(".{}.claim", s.service)))
        .map_err(io_err("while locking the instance claim"))?;
    let bind = |n| bind_unix(&s.instance_socket(n), s.socket_mode, s.socket_gid, BACKLOG);
    if let Some(n) = s.instance {
        return bind(n).map(|b| (n, b));
    }
    for n in 1..=common::instance::MAX {
        match bind(n) {
            Ok(b) => return Ok((n, b)),
            Err(SocketError::Taken(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io_err("while claiming an instance")(io::Error::other(
        format!("all {} instances are taken", common::instance::MAX),
    )))
}

/// An exclusive lock of `path` (created 0600, no symlink followed), waited for at most
/// [`CLAIM_WAIT`].
fn lock(path: &Path) -> io::Result<Flock<File>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let end = Instant::now() + CLAIM_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < end => {
                file = f;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
}

/// What [`keep_shared`] found or did.
#[derive(Debug)]
pub enum Shared {
    /// The shared name leads to this replica.
    Ours,
    /// Another live replica serves it.
    Other,
    /// It was missing or stale; it leads to this replica now.
    Took,
    /// Something that is not a socket has the name: left alone.
    NotSocket,
    Failed(io::Error),
}

/// Whether a unix socket at `path` has a live server: a connect that is not refused (a
/// full backlog, `EAGAIN`, is a busy live server). Never blocks. A live server gets a
/// `ping`, answered quietly, so that the probe is not logged as an empty request.
pub fn answers(path: &Path) -> bool {
    match connect_nonblocking(&Addr::Unix(path.to_path_buf())) {
        Ok(Some(fd)) => {
            use nix::sys::socket::{send, MsgFlags};
            let _ = send(
                fd.as_raw_fd(),
                b"ping\n",
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            );
            true
        }
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Makes `shared` lead to `sock` when it leads nowhere live; `n` names the temporary link.
pub fn keep_shared(sock: &BoundSocket, shared: &Path, n: u32) -> Shared {
    match std::fs::symlink_metadata(shared) {
        Ok(m) if m.ino() == sock.ino() => return Shared::Ours,
        Ok(m) if !m.file_type().is_socket() => return Shared::NotSocket,
        Ok(_) if answers(shared) => return Shared::Other,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Shared::Failed(e),
    }
    let mut tmp = shared.as_os_str().to_owned();
    tmp.push(format!(".{n}.tmp"));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let made = sock
        .link_to(&tmp)
        .and_then(|()| std::fs::rename(&tmp, shared));
    match made {
        Ok(()) => Shared::Took,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Shared::Failed(e)
        }
    }
}

/// Removes `shared` when it leads to `sock` (at exit: another replica takes it over).
pub fn release_shared(sock: &BoundSocket, shared: &Path) {
    if std::fs::symlink_metadata(shared).is_ok_and(|m| m.ino() == sock.ino()) {
        let _ = std::fs::remove_file(shared);
    }
}

/// The request socket `supervisor status` asks: `BOSUN_INSTANCE`'s when it is set; else the
/// instance socket served by this PID namespace's process 1 (the container's own
/// supervisor); else the shared name (a supervisor that is not PID 1, as in tests).
pub fn mine(s: &Settings) -> PathBuf {
    if let Some(n) = s.instance {
        return s.instance_socket(n);
    }
    let served_by_pid1 = |p: &Path| {
        std::os::unix::net::UnixStream::connect(p).is_ok_and(|c| {
            nix::sys::socket::getsockopt(&c, nix::sys::socket::sockopt::PeerCredentials)
                .is_ok_and(|cred| cred.pid() == 1)
        })
    };
    common::instance::list(&s.run_dir, &s.service)
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| served_by_pid1(p))
        .unwrap_or_else(|| crate::config::socket_path(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn settings(dir: &Path) -> Settings {
        use crate::config::{Role, ServiceFile, Sources};
        let env = common::settings::env_of(&[
            ("BOSUN_SERVICE", "svc"),
            ("BOSUN_RUN_DIR", dir.to_str().unwrap()),
            ("BOSUN_LISTENER", "off"),
        ]);
        Settings::load(&Sources {
            file: ServiceFile::read(&dir.join("none.toml")),
            env: &env,
            exec: vec!["true".into()],
            role: Role::Status,
        })
        .unwrap()
    }

    #[test]
    fn lowest_free_then_stale_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        let (a, sa) = claim(&s).unwrap();
        let (b, sb) = claim(&s).unwrap();
        let (c, _sc) = claim(&s).unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        // 2 dies without removing its file: the next claim takes 2 over.
        drop(sb);
        assert!(d.path().join("svc.2-request.sock").exists());
        let (again, _s2) = claim(&s).unwrap();
        assert_eq!(again, 2);
        // A given instance that a live replica holds is refused.
        let mut fixed = s.clone();
        fixed.instance = Some(1);
        assert!(matches!(claim(&fixed), Err(SocketError::Taken(_))));
        drop(sa);
        assert_eq!(claim(&fixed).unwrap().0, 1);
    }

    #[test]
    fn shared_name_follows_a_live_replica() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        let shared = crate::config::socket_path(&s);
        let (_, one) = claim(&s).unwrap();
        let (_, two) = claim(&s).unwrap();
        assert!(matches!(keep_shared(&one, &shared, 1), Shared::Took));
        assert!(matches!(keep_shared(&one, &shared, 1), Shared::Ours));
        assert!(matches!(keep_shared(&two, &shared, 2), Shared::Other));
        // One goes without cleaning up: its name is stale and two takes it.
        drop(one);
        assert!(matches!(keep_shared(&two, &shared, 2), Shared::Took));
        assert_eq!(std::fs::symlink_metadata(&shared).unwrap().ino(), two.ino());
        // A client of the shared name reaches two's socket.
        assert!(std::os::unix::net::UnixStream::connect(&shared).is_ok());
        release_shared(&two, &shared);
        assert!(!shared.exists());
        // Not a socket: left alone.
        std::fs::write(&shared, "x").unwrap();
        assert!(matches!(keep_shared(&two, &shared, 2), Shared::NotSocket));
        assert_eq!(std::fs::read_to_string(&shared).unwrap(), "x");
    }

    #[test]
    fn answers_tells_live_from_stale() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.sock");
        assert!(!answers(&p));
        let l = UnixListener::bind(&p).unwrap();
        assert!(answers(&p));
        drop(l);
        assert!(!answers(&p));
    }

    #[test]
    fn racing_claims_take_distinct_numbers() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        let got: Vec<(u32, BoundSocket)> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8).map(|_| sc.spawn(|| claim(&s).unwrap())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ns: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
        ns.sort();
        assert_eq!(ns, (1..=8).collect::<Vec<_>>());
    }
}
