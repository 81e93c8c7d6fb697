//! The request socket's life: created before anything else starts, with its mode and
//! group set before it listens (so nobody can connect through a window of wrong
//! permissions), kept open for the container's whole life, removed on exit.
//!
//! A socket file left by a dead container is replaced; one that a live server answers on
//! is an error, because two supervisors on one socket would steal each other's requests.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chown, Gid};
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

/// A bound, listening unix socket and the identity of its file.
#[derive(Debug)]
pub struct BoundSocket {
    pub fd: OwnedFd,
    pub path: PathBuf,
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
}

/// Probes, binds with a restrictive umask, sets group and mode, then listens.
pub fn bind_unix(
    path: &Path,
    mode: u32,
    gid: Option<Gid>,
    backlog: i32,
) -> Result<BoundSocket, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(path, "while creating its directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::Taken(path.to_path_buf())),
            Err(_) => {
                std::fs::remove_file(path).map_err(io_err(path, "while removing a stale socket"))?
            }
        },
        Ok(_) => return Err(SocketError::NotSocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, "while checking for a stale socket")(e)),
    }
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io_err(path, "while creating the socket")(e.into()))?;
    let addr = UnixAddr::new(path).map_err(|e| io_err(path, "bad socket path")(e.into()))?;
    // The file is born 0600 and only then opened up to `mode`, after its group is set.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = bind(fd.as_raw_fd(), &addr);
    umask(old);
    bound.map_err(|e| io_err(path, "while binding the socket")(e.into()))?;
    if let Some(gid) = gid {
        chown(path, None, Some(gid))
            .map_err(|e| io_err(path, "while setting its group")(e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err(path, "while setting its mode"))?;
    listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| io_err(path, "while listening")(e.into()))?;
    let ino = std::fs::symlink_metadata(path)
        .map_err(io_err(path, "while reading it back"))?
        .ino();
    Ok(BoundSocket {
        fd,
        path: path.to_path_buf(),
        ino,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, "data").unwrap();
        assert!(matches!(
            bind_unix(&path, 0o660, None, 16),
            Err(SocketError::NotSocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }
}
