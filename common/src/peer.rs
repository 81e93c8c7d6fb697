//! Who is on the other end of a unix socket, beyond `SO_PEERCRED`'s uid and primary gid:
//! the supplementary groups (`SO_PEERGROUPS`, Linux 4.13 and later), so that `allow_gids`
//! admits a member of a group as the socket file's group permission does.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc;

/// The peer's supplementary groups as they were when it connected. An empty list on a
/// kernel without `SO_PEERGROUPS` (`ENOPROTOOPT`): the primary gid still counts.
pub fn groups(sock: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut buf: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..4 {
        let mut len = libc::socklen_t::try_from(buf.len() * std::mem::size_of::<libc::gid_t>())
            .unwrap_or(libc::socklen_t::MAX);
        // SAFETY: getsockopt writes at most `len` bytes into `buf`, which has room for them,
        // and sets `len` to what it wrote (or, with ERANGE, to what it needs).
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            buf.truncate(n);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if n > buf.len() => buf.resize(n, 0),
            Some(libc::ENOPROTOOPT) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_peers_groups_are_its_own() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mine: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        let mut got = groups(a.as_fd()).unwrap();
        let mut want = mine;
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
