//! The request socket's life: created before anything else starts, born with its final
//! mode and group (so nobody can connect through a window of wrong permissions), kept
//! open for the container's whole life, removed on exit.
//!
//! A socket file left by a dead container is replaced; one that a live server answers on
//! is an error, because two supervisors on one socket would steal each other's requests.
//!
//! **No path race (security review L2).** Whoever can write the run directory could swap
//! the fresh socket file for a symlink between `bind` and a `chmod`/`chown` by path, and
//! make root change the mode of a file of their choosing. So nothing here changes a file
//! by its path: the socket is bound under a umask derived from its mode and with the
//! thread's filesystem gid set to its group (`setfsgid`, per thread), the way systemd
//! creates `SocketMode=` sockets, so it is born final. It is then opened `O_PATH |
//! O_NOFOLLOW`, checked to be a socket, and only if the directory changed what it got (a
//! default ACL, a set-group-id directory, an unprivileged supervisor that cannot take the
//! group) corrected through that descriptor, which cannot be redirected.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{Gid, Uid};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SocketError {
    #[error("{0}: a live server is already answering on this socket (another supervisor for the same service?)")]
    Taken(PathBuf),
    #[error("{0}: exists and is not a socket; refusing to replace it")]
    NotSocket(PathBuf),
    #[error("{path}: {what}: {err}")]
    Io {
        path: PathBuf,
        what: &'static str,
        err: io::Error,
    },
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |err| SocketError::Io {
        path: path.to_path_buf(),
        what,
        err,
    }
}

/// A bound unix socket (listening, for a stream socket) and the identity of its file.
#[derive(Debug)]
pub struct BoundSocket {
    pub fd: OwnedFd,
    pub path: PathBuf,
    /// The socket's file, opened `O_PATH`: what links to it are made from.
    file: OwnedFd,
    ino: u64,
}

impl BoundSocket {
    /// Removes the socket file, but only if it is still ours: a successor may already have
    /// replaced it.
    pub fn remove(&self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Checks that the socket's name still leads to this socket. (A removed name cannot
    /// be put back from the descriptor: the kernel refuses to link a file with no name
    /// left. The held on-demand socket keeps a spare link for that reason.)
    pub fn check_name(&self) -> NameCheck {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.ino() == self.ino => NameCheck::Ours,
            Ok(_) => NameCheck::Replaced,
            Err(e) if e.kind() == io::ErrorKind::NotFound => NameCheck::Removed,
            Err(e) => NameCheck::Failed(e),
        }
    }

    /// The socket file's inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Makes `to` another name of this very socket file: from the descriptor, never from
    /// a path someone could have replaced.
    pub fn link_to(&self, to: &Path) -> io::Result<()> {
        let from = CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
            .map_err(io::Error::other)?;
        let to = CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: two NUL-terminated paths that live for the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Sets or clears `O_NONBLOCK` on `fd` (best effort).
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let mut f = OFlag::from_bits_truncate(flags);
        f.set(OFlag::O_NONBLOCK, on);
        let _ = fcntl(fd, FcntlArg::F_SETFL(f));
    }
}

/// Starts a non-blocking connect to `addr` (the backend, a ready probe's address): the
/// socket is connected or connecting (`EINPROGRESS`: writable once it is done, `SO_ERROR`
/// says how). `Ok(None)`: a unix listener's backlog is full (`EAGAIN`), try again later.
pub fn connect_nonblocking(addr: &crate::config::Addr) -> nix::Result<Option<OwnedFd>> {
    use crate::config::Addr;
    use nix::sys::socket::{connect, SockaddrIn, SockaddrIn6};
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let (fd, res) = match addr {
        Addr::Unix(p) => {
            let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &UnixAddr::new(p)?);
            (fd, res)
        }
        Addr::Tcp(std::net::SocketAddr::V4(a)) => {
            let fd = socket(AddressFamily::Inet, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &SockaddrIn::from(*a));
            (fd, res)
        }
        Addr::Tcp(std::net::SocketAddr::V6(a)) => {
            let fd = socket(AddressFamily::Inet6, SockType::Stream, flags, None)?;
            let res = connect(fd.as_raw_fd(), &SockaddrIn6::from(*a));
            (fd, res)
        }
    };
    match res {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(Some(fd)),
        Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What [`BoundSocket::check_name`] found.
#[derive(Debug)]
pub enum NameCheck {
    /// The name leads to this socket.
    Ours,
    /// Nothing has the name any more.
    Removed,
    /// Another file has the name now (left alone: clients reach that one).
    Replaced,
    Failed(io::Error),
}

/// What a socket file must end up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    /// Permission bits (0777 at most).
    pub mode: u32,
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
}

/// Probes for a live server, binds the stream socket born with `mode` and `gid`, then
/// listens.
pub fn bind_unix(
    path: &Path,
    mode: u32,
    gid: Option<Gid>,
    backlog: i32,
) -> Result<BoundSocket, SocketError> {
    let perms = Perms {
        mode,
        uid: None,
        gid,
    };
    let s = bind_file(path, SockType::Stream, perms, true)?;
    listen(&s.fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| io_err(path, "while listening")(e.into()))?;
    Ok(s)
}

/// A datagram socket (the notify socket) with `perms`; a stale one is replaced.
pub fn bind_datagram(path: &Path, perms: Perms) -> Result<BoundSocket, SocketError> {
    bind_file(path, SockType::Datagram, perms, false)
}

fn bind_file(
    path: &Path,
    kind: SockType,
    perms: Perms,
    probe: bool,
) -> Result<BoundSocket, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(path, "while creating its directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if probe && UnixStream::connect(path).is_ok() {
                return Err(SocketError::Taken(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io_err(path, "while removing a stale socket"))?
        }
        Ok(_) => return Err(SocketError::NotSocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, "while checking for a stale socket")(e)),
    }
    let fd = socket(AddressFamily::Unix, kind, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| io_err(path, "while creating the socket")(e.into()))?;
    let addr = UnixAddr::new(path).map_err(|e| io_err(path, "bad socket path")(e.into()))?;
    // Born with the final mode and group. The umask is the process's (nothing else runs
    // yet when the supervisor binds); the filesystem gid is this thread's alone.
    let old_mask = umask(Mode::from_bits_truncate(!perms.mode & 0o777));
    let old_gid = perms.gid.map(nix::unistd::setfsgid);
    let bound = bind(fd.as_raw_fd(), &addr);
    if let Some(g) = old_gid {
        nix::unistd::setfsgid(g);
        // A change of the filesystem gid makes the kernel mark the process non-dumpable,
        // which makes its /proc entries root's and `docker exec` fail where the runtime
        // lacks CAP_SYS_PTRACE: it is the same process as before, so dumpable again.
        let _ = nix::sys::prctl::set_dumpable(true);
    }
    umask(old_mask);
    bound.map_err(|e| io_err(path, "while binding the socket")(e.into()))?;
    let file = match settle(path, perms) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    let ino = stat(&file)
        .map_err(io_err(path, "while reading it back"))?
        .st_ino;
    Ok(BoundSocket {
        fd,
        path: path.to_path_buf(),
        file,
        ino,
    })
}

fn stat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: fstat fills the zeroed plain-data struct; the fd is open.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) == 0 {
            Ok(st)
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Opens the fresh socket file without following a symlink, checks that it is a socket,
/// and corrects owner, group and mode through the descriptor where they are not yet right.
fn settle(path: &Path, perms: Perms) -> Result<OwnedFd, SocketError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io_err(path, "bad socket path")(io::Error::other(e)))?;
    // SAFETY: a NUL-terminated path; O_PATH opens no file contents.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io_err(path, "while opening it")(io::Error::last_os_error()));
    }
    // SAFETY: open returned a new fd that nothing else owns.
    let file = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = stat(&file).map_err(io_err(path, "while reading it back"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io_err(path, "replaced while it was being created")(
            io::Error::other("not a socket any more"),
        ));
    }
    let want_uid = perms.uid.map(Uid::as_raw).filter(|&u| u != st.st_uid);
    let want_gid = perms.gid.map(Gid::as_raw).filter(|&g| g != st.st_gid);
    if want_uid.is_some() || want_gid.is_some() {
        let empty = c"";
        // SAFETY: fchownat on our O_PATH fd with an empty path (AT_EMPTY_PATH): the inode
        // the descriptor holds, whatever its name now points at.
        let rc = unsafe {
            libc::fchownat(
                file.as_raw_fd(),
                empty.as_ptr(),
                want_uid.unwrap_or(u32::MAX),
                want_gid.unwrap_or(u32::MAX),
                libc::AT_EMPTY_PATH,
            )
        };
        if rc != 0 {
            return Err(io_err(path, "while setting its owner and group")(
                io::Error::last_os_error(),
            ));
        }
    }
    // A chown by someone without CAP_FSETID, or an ACL, may have changed the bits.
    let st = stat(&file).map_err(io_err(path, "while reading it back"))?;
    if st.st_mode & 0o7777 != perms.mode {
        let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|e| io_err(path, "while setting its mode")(io::Error::other(e)))?;
        // SAFETY: chmod through the descriptor's /proc link (an O_PATH fd cannot be
        // fchmod'ed): it resolves to the inode the descriptor holds, not to a path.
        if unsafe { libc::chmod(proc_path.as_ptr(), perms.mode) } != 0 {
            return Err(io_err(path, "while setting its mode")(
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    #[test]
    fn mode_stale_and_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x-request.sock");
        let s = bind_unix(&path, 0o640, None, 16).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // While it is bound and listening, a second bind is refused.
        assert!(matches!(
            bind_unix(&path, 0o660, None, 16),
            Err(SocketError::Taken(_))
        ));
        drop(s); // closed but file left behind: stale
        let s2 = bind_unix(&path, 0o660, None, 16).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        s2.remove();
        assert!(!path.exists());
    }

    #[test]
    fn remove_spares_a_successor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.sock");
        let s = bind_unix(&path, 0o660, None, 16).unwrap();
        std::fs::remove_file(&path).unwrap();
        let _other = UnixListener::bind(&path).unwrap();
        s.remove();
        assert!(path.exists());
    }

    #[test]
    fn born_with_group_and_mode_also_in_a_setgid_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let gid = Gid::from_raw(65534);
        let _s = bind_unix(&path, 0o660, Some(gid), 16).unwrap();
        // Still dumpable after the filesystem gid went and came back (`docker exec`).
        assert!(nix::sys::prctl::get_dumpable().unwrap());
        let m = std::fs::symlink_metadata(&path).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(m.gid(), 65534);
        }
        assert_eq!(m.mode() & 0o7777, 0o660);
        // A set-group-id directory gives its own group: corrected through the descriptor.
        let sg = dir.path().join("sg");
        std::fs::create_dir(&sg).unwrap();
        std::fs::set_permissions(&sg, std::fs::Permissions::from_mode(0o2755)).unwrap();
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&sg, None, Some(Gid::from_raw(65534))).unwrap();
            let p2 = sg.join("h.sock");
            let _s2 = bind_unix(&p2, 0o600, Some(Gid::from_raw(0)), 16).unwrap();
            let m = std::fs::symlink_metadata(&p2).unwrap();
            assert_eq!((m.gid(), m.mode() & 0o7777), (0, 0o600));
        }
    }

    #[test]
    fn datagram_owned_by_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.sock");
        let perms = Perms {
            mode: 0o600,
            uid: Some(Uid::from_raw(65534)),
            gid: Some(Gid::from_raw(65534)),
        };
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let s = bind_datagram(&path, perms).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (65534, 65534, 0o600));
        // A stale one is replaced; a link to it made from the descriptor is the same file.
        drop(s);
        let s = bind_datagram(&path, perms).unwrap();
        let other = dir.path().join("other");
        s.link_to(&other).unwrap();
        assert_eq!(
            std::fs::symlink_metadata(&other).unwrap().ino(),
            std::fs::symlink_metadata(&path).unwrap().ino()
        );
    }

    #[test]
    fn not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, "data").unwrap();
        assert!(matches!(
            bind_unix(&path, 0o660, None, 16),
            Err(SocketError::NotSocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        // A symlink is not followed, wherever it points.
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            bind_unix(&link, 0o666, None, 16),
            Err(SocketError::NotSocket(_))
        ));
        let m = std::fs::metadata(&path).unwrap();
        assert_ne!(m.mode() & 0o777, 0o666);
    }
}
