//! One request over a unix socket, as a client does it: the line, then every reply line
//! until the server closes. A server that refuses without reading (`error too-many`) may
//! close before the line is written (EPIPE) or with it unread (ECONNRESET after the
//! reply): neither is the reply, so both are left to the reply to tell.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::DEADLINE;

/// Connects, sends `line` (bytes as given), half-closes, and returns the reply lines.
pub fn request(sock: &Path, line: &[u8]) -> Vec<String> {
    let mut s = connect(sock);
    let _ = s.write_all(line);
    let _ = s.shutdown(Shutdown::Write);
    read_all(&mut s)
}

/// Connects, sends `line` and a newline, keeps its side open (as `nc` without `-N`), and
/// returns the reply lines.
pub fn ask(sock: &Path, line: &str) -> Vec<String> {
    let mut s = connect(sock);
    let _ = s.write_all(format!("{line}\n").as_bytes());
    read_all(&mut s)
}

/// Opens a connection, sends `line` and a newline, and returns the stream with the first
/// reply line read (an action's `accepted`).
pub fn start_action(sock: &Path, line: &str) -> (UnixStream, String) {
    let mut s = connect(sock);
    s.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("sending {line:?}: {e}"));
    let first = read_line(&mut s);
    (s, first)
}

/// Waits until a unix stream socket listens at `path`: its name appears at bind, before
/// listen, and a connect in between is refused. Read from /proc/net/unix (no connection is
/// made: on a held socket one would count as activity).
pub fn wait_listening(path: &Path, within: std::time::Duration) {
    let what = format!("a socket listening at {}", path.display());
    crate::wait_until(within, &what, || listening(path).then_some(()));
}

/// Whether /proc/net/unix has a listening socket (`__SO_ACCEPTCON`) bound to `path`.
pub fn listening(path: &Path) -> bool {
    const ACCEPTCON: u32 = 0x0001_0000;
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let name = path.to_string_lossy();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(7) == Some(&name.as_ref())
            && f.get(3)
                .and_then(|x| u32::from_str_radix(x, 16).ok())
                .is_some_and(|flags| flags & ACCEPTCON != 0)
    })
}

/// A connection whose reads time out at the kit's deadline.
pub fn connect(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", sock.display()));
    s.set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    s
}

/// Reads reply lines until the server closes (ECONNRESET counts as closing); panics at the
/// read deadline.
pub fn read_all(s: &mut UnixStream) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no reply within the deadline: {e}"),
        }
    }
    String::from_utf8(out)
        .expect("a reply in UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Reads exactly one line (without its newline).
pub fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading a reply line: {e}"),
        }
    }
    String::from_utf8(line).expect("a reply line in UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_request_gets_every_reply_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&c).read_line(&mut line).unwrap();
            c.write_all(format!("got {line}done\n").as_bytes()).unwrap();
        });
        assert!(listening(&path));
        assert_eq!(request(&path, b"ping\n"), ["got ping", "done"]);
        server.join().unwrap();
    }
}
