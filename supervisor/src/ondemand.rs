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
//!
//! [`Frontend`] is the held socket with what only I/O knows of it (the clients accepted in
//! proxy mode, the proxy, the kernel-table scan); the loop carries out the core's
//! on-demand effects through it.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Gid;
use tracing::{error, info, warn};

use crate::accept::{accept_some, log_gate, Gate, Note};
use crate::proxy::Proxy;
use crate::socket::{bind_unix, connect_nonblocking, set_nonblocking, BoundSocket, SocketError};

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

    /// Makes the public name lead to the held socket again, atomically (a side link made
    /// from the socket's descriptor, renamed over the name): after a handover, the name
    /// led to the backend's socket. Returns whether it changed anything.
    pub fn take_name(&self) -> io::Result<bool> {
        let (Addr::Unix(path), Some(s)) = (&self.addr, &self.unix) else {
            return Ok(false);
        };
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == s.ino()) {
            return Ok(false);
        }
        let tmp = side_link(path, "take");
        let _ = std::fs::remove_file(&tmp);
        s.link_to(&tmp)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(true)
    }

    /// The held socket file's metadata (its mode and group decide who may connect).
    fn meta(&self) -> Option<std::fs::Metadata> {
        self.keep
            .as_ref()
            .and_then(|k| std::fs::symlink_metadata(k).ok())
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

/// A temporary name beside `path` for an atomic rename over it.
fn side_link(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.bosun-{what}"))
}

/// Why the listen name was not given to the backend.
#[derive(Debug)]
enum NotGiven {
    /// Not yet: its socket is missing or does not accept (tried again later).
    NotYet(String),
    /// Never for this backend (another filesystem, not a socket, narrower permissions).
    Never(String),
}

/// Whether the backend's socket admits exactly whom the held socket admits, so that
/// handing the name over neither locks clients out nor lets new ones in: connecting
/// takes write permission, so the group's and others' write bits must match, and the
/// group too when it may connect. The owner class is the supervisor's own; when it is
/// not root, the backend's socket must let it connect too.
pub fn same_access(held: (u32, u32, u32), backend: (u32, u32, u32)) -> bool {
    let ((hm, hu, hg), (bm, bu, bg)) = (held, backend);
    let others = hm & 0o002 == bm & 0o002;
    let group = hm & 0o020 == bm & 0o020 && (hm & 0o020 == 0 || hg == bg);
    let owner = hu == 0 || hm & 0o200 == 0 || (bu == hu && bm & 0o200 != 0);
    others && group && owner
}

/// Gives `listen`'s name to the backend's socket at `backend`: a hard link beside
/// `listen`, checked (a socket, as reachable as the held one, accepting), then renamed
/// over `listen`.
fn give(listen: &Path, backend: &Path, held: Option<&std::fs::Metadata>) -> Result<(), NotGiven> {
    let tmp = side_link(listen, "give");
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = std::fs::hard_link(backend, &tmp) {
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => {
                NotGiven::NotYet(format!("{}: no such socket", backend.display()))
            }
            _ => NotGiven::Never(format!(
                "cannot link {} beside {}: {e}",
                backend.display(),
                listen.display()
            )),
        });
    }
    let checked = (|| {
        let m = std::fs::symlink_metadata(&tmp)
            .map_err(|e| NotGiven::NotYet(format!("{}: {e}", tmp.display())))?;
        if !m.file_type().is_socket() {
            return Err(NotGiven::Never(format!(
                "{} is not a socket",
                backend.display()
            )));
        }
        let Some(h) = held else {
            return Err(NotGiven::NotYet(
                "the held socket's mode cannot be read".to_string(),
            ));
        };
        if !same_access((h.mode(), h.uid(), h.gid()), (m.mode(), m.uid(), m.gid())) {
            return Err(NotGiven::Never(format!(
                "{} (mode {:o}, gid {}) admits other clients than the held socket (mode {:o}, gid {}): give it the same mode and group",
                backend.display(),
                m.mode() & 0o777,
                m.gid(),
                h.mode() & 0o777,
                h.gid()
            )));
        }
        // A socket file left by a backend that died accepts nothing: never give the name
        // to it. (The very file to be renamed is tried, not the path, which may change.)
        match connect_nonblocking(&Addr::Unix(tmp.clone())) {
            Ok(_) => {}
            Err(e) => {
                return Err(NotGiven::NotYet(format!(
                    "{} does not accept: {e}",
                    backend.display()
                )))
            }
        }
        std::fs::rename(&tmp, listen)
            .map_err(|e| NotGiven::Never(format!("cannot rename over {}: {e}", listen.display())))
    })();
    if checked.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    checked
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

/// Descriptors kept free of proxied pairs, for the loop's own needs (spawning, the
/// control channel, the request socket's clients).
const FD_RESERVE: u64 = 32;
/// Descriptors one proxied pair may use: two sockets and, while bytes are in flight both
/// ways, two pipes (two ends each).
const FDS_PER_PAIR: u64 = 6;

/// `on_demand.max_connections`, lowered so that the pairs fit the descriptor limit.
fn pair_cap(max_connections: usize, nofile: u64) -> usize {
    let fit = nofile.saturating_sub(FD_RESERVE.min(nofile / 4)) / FDS_PER_PAIR;
    max_connections.min(usize::try_from(fit).unwrap_or(usize::MAX).max(1))
}

/// Proxy mode: the backend's address, the byte pump, and the clients accepted while the
/// backend starts.
#[derive(Debug)]
struct Proxied {
    backend: Addr,
    proxy: Proxy,
    /// Accepted clients waiting for the backend, and since when.
    waiting: Vec<(OwnedFd, Instant)>,
    /// Proxied pairs plus waiting clients, at most (`on_demand.max_connections`, lowered to
    /// fit the descriptor limit); more wait in the backlog.
    cap: usize,
    /// A waiting client waits for the backend this long at most.
    hold: Duration,
    /// Pairs silent this long are closed; checked at `next_sweep`.
    idle: Option<Duration>,
    next_sweep: Instant,
    /// The proxy's byte count when last looked at: a change is traffic.
    last_bytes: u64,
}

impl Proxied {
    /// How many more clients may be accepted now.
    fn room(&self) -> usize {
        self.cap
            .saturating_sub(self.proxy.len() + self.waiting.len())
    }

    fn sweep_interval(&self) -> Option<Duration> {
        self.idle
            .map(|i| (i / 4).clamp(Duration::from_millis(50), Duration::from_secs(30)))
    }
}

/// The held socket on the clients' side: in handoff mode the main process accepts on it;
/// in proxy mode the supervisor does, and pumps bytes to the backend.
#[derive(Debug)]
pub struct Frontend {
    pub held: Held,
    proxied: Option<Proxied>,
    /// Handoff mode: the connections seen in the kernel's tables.
    activity: Activity,
    /// Paused after an accept ran out of descriptors.
    gate: Gate,
    /// Handover: the listen name leads to the backend's socket.
    given: bool,
    /// Handover was put off ("not yet") since it last succeeded: said once at `info`.
    put_off: bool,
}

impl Frontend {
    /// The held socket, in proxy mode when `settings` name a backend.
    pub fn new(
        held: Held,
        settings: Option<&common::settings::OnDemand>,
        now: Instant,
    ) -> Frontend {
        let proxied = settings
            .and_then(|o| o.backend.clone().map(|b| (b, o)))
            .and_then(|(backend, o)| match Proxy::new() {
                Ok(proxy) => {
                    // Only the supervisor accepts on it in proxy mode.
                    set_nonblocking(held.fd.as_fd(), true);
                    let nofile = common::rlimit::nofile().map_or(1024, |(soft, _)| soft);
                    let cap = pair_cap(o.max_connections, nofile);
                    if cap < o.max_connections {
                        warn!(
                            max_connections = o.max_connections,
                            nofile,
                            cap,
                            "fewer proxied connections than on_demand.max_connections: the descriptor limit is lower"
                        );
                    }
                    Some(Proxied {
                        backend,
                        proxy,
                        waiting: Vec::new(),
                        cap,
                        hold: o.start_timeout,
                        idle: o.connection_idle,
                        next_sweep: now,
                        last_bytes: 0,
                    })
                }
                Err(e) => {
                    error!(error = %e, "cannot create the proxy");
                    None
                }
            });
        Frontend {
            held,
            proxied,
            activity: Activity::default(),
            gate: Gate::default(),
            given: false,
            put_off: false,
        }
    }

    /// Handover: gives the listen name to the ready backend's socket. Returns `None` when
    /// it was given, else whether it is worth another try later (the held socket keeps
    /// the name and proxies).
    pub fn give_name(&mut self) -> Option<bool> {
        let (Addr::Unix(listen), Some(Addr::Unix(backend))) =
            (&self.held.addr, self.proxied.as_ref().map(|p| &p.backend))
        else {
            return Some(false);
        };
        match give(listen, backend, self.held.meta().as_ref()) {
            Ok(()) => {
                info!(listen = %listen.display(), backend = %backend.display(), "gave the socket's name to the backend; new clients connect to it directly");
                self.given = true;
                self.put_off = false;
                // What is connected now is old news: only new connections are activity.
                self.activity.scan(&Addr::Unix(backend.clone()));
                None
            }
            Err(NotGiven::NotYet(why)) => {
                if !std::mem::replace(&mut self.put_off, true) {
                    info!(%why, "the backend is proxied until its socket can take the name");
                }
                Some(true)
            }
            Err(NotGiven::Never(why)) => {
                warn!(%why, "the backend is proxied: its socket cannot take the name");
                Some(false)
            }
        }
    }

    /// Handover: whether the name no longer leads to the backend's current socket (the
    /// backend bound its path anew, or removed it).
    pub fn name_stale(&self) -> bool {
        let (true, Addr::Unix(listen), Some(Addr::Unix(backend))) = (
            self.given,
            &self.held.addr,
            self.proxied.as_ref().map(|p| &p.backend),
        ) else {
            return false;
        };
        let ino = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.ino()).ok();
        ino(listen).is_none() || ino(listen) != ino(backend)
    }

    /// Handover: the listen name back to the held socket (before the main process stops,
    /// or once it has exited).
    pub fn take_name(&mut self) {
        if !std::mem::take(&mut self.given) {
            return;
        }
        let path = self.held.addr.key();
        match self.held.take_name() {
            Ok(_) => info!(path = %path, "took the socket's name back from the backend"),
            Err(e) => error!(path = %path, error = %e, "cannot take the socket's name back"),
        }
    }

    /// At the end: the held socket's names go, and a name still given to the backend
    /// (if it could not be taken back) too: nothing is left leading to a dead socket.
    pub fn remove(&mut self) {
        if self.given {
            self.take_name();
        }
        self.held.remove();
        if let Addr::Unix(p) = &self.held.addr {
            for what in ["give", "take"] {
                let _ = std::fs::remove_file(side_link(p, what));
            }
        }
    }

    pub fn mode(&self) -> &'static str {
        if self.proxied.is_some() {
            "proxy"
        } else {
            "handoff"
        }
    }

    /// Handoff mode: the held socket, to give to the main process.
    pub fn handoff(&self) -> Option<BorrowedFd<'_>> {
        self.proxied.is_none().then(|| self.held.fd.as_fd())
    }

    /// Whether the held socket is polled this turn, as far as I/O goes (the core has its say
    /// first): not while paused, nor in proxy mode while the cap is reached.
    pub fn pollable(&self, now: Instant) -> bool {
        self.gate.open(now) && self.proxied.as_ref().is_none_or(|p| p.room() > 0)
    }

    /// Proxy mode: the proxy's descriptor, to poll.
    pub fn proxy_fd(&self) -> Option<BorrowedFd<'_>> {
        self.proxied.as_ref().map(|p| p.proxy.as_fd())
    }

    /// What only I/O waits for: the end of an accept pause, the next idle sweep, the
    /// longest a waiting client may still wait.
    pub fn deadlines(&self, now: Instant) -> impl Iterator<Item = Instant> {
        let p = self.proxied.as_ref();
        let sweep = p
            .filter(|p| !p.proxy.is_empty() && p.idle.is_some())
            .map(|p| p.next_sweep);
        let held = p.and_then(|p| p.waiting.iter().map(|(_, since)| *since + p.hold).min());
        [self.gate.deadline(now), sweep, held].into_iter().flatten()
    }

    /// The held socket is readable: in proxy mode the clients are accepted (as many as there
    /// is room for); in handoff mode they wait in the backlog for the main process. Returns
    /// how many accepted clients wait.
    pub fn accept(&mut self, now: Instant) -> usize {
        let Some(p) = &mut self.proxied else { return 0 };
        let (accepted, err) = accept_some(self.held.fd.as_fd(), p.room());
        let note = match err {
            Some(_) => self.gate.failed(now),
            None if !accepted.is_empty() => self.gate.succeeded(),
            None => Note::Nothing,
        };
        log_gate(note, err, "the held socket");
        p.waiting.extend(accepted.into_iter().map(|fd| (fd, now)));
        p.waiting.len()
    }

    /// Proxy mode: moves the bytes that are ready.
    pub fn pump(&mut self) {
        if let Some(p) = &mut self.proxied {
            p.proxy.run_ready();
        }
    }

    /// Proxy mode: closes pairs idle too long (when it is time to look) and says whether
    /// bytes moved since the last call (traffic).
    pub fn observe(&mut self, now: Instant) -> bool {
        let Some(p) = &mut self.proxied else {
            return false;
        };
        if let (Some(idle), Some(every)) = (p.idle, p.sweep_interval()) {
            if now >= p.next_sweep {
                p.next_sweep = now + every;
                let closed = p.proxy.close_idle(idle, now);
                if closed > 0 {
                    info!(closed, idle = %common::duration::show(idle), "closed proxied connections with no traffic");
                }
            }
        }
        let bytes = p.proxy.bytes();
        std::mem::replace(&mut p.last_bytes, bytes) != bytes
    }

    /// Proxy mode: connects waiting clients to the backend; returns how many still wait.
    pub fn connect_waiting(&mut self, now: Instant) -> usize {
        let Some(p) = &mut self.proxied else { return 0 };
        let mut still = Vec::new();
        let mut expired = 0;
        let mut waiting = std::mem::take(&mut p.waiting).into_iter();
        for (client, since) in waiting.by_ref() {
            if now >= since + p.hold {
                expired += 1;
                continue;
            }
            match connect_nonblocking(&p.backend) {
                Ok(Some(b)) => {
                    if let Err(e) = p.proxy.add(client, b) {
                        warn!(error = %e, "cannot proxy a connection");
                    }
                }
                // The backend's backlog is full: try again on the next turn.
                Ok(None) => still.push((client, since)),
                // Out of descriptors: this client and the rest wait for some to free.
                Err(e) if crate::accept::is_exhaustion(e) => {
                    still.push((client, since));
                    break;
                }
                Err(e) => {
                    warn!(backend = %p.backend.key(), error = %e, "cannot reach the backend; closing a client")
                }
            }
        }
        still.extend(waiting);
        if expired > 0 {
            warn!(closed = expired, waited = %common::duration::show(p.hold), "closed clients that waited too long for the backend");
        }
        p.waiting = still;
        p.waiting.len()
    }

    /// Closes every client waiting for the main process: the accepted ones, and in handoff
    /// mode the kernel's backlog of the held socket.
    pub fn close_waiting(&mut self) {
        let closed = match &mut self.proxied {
            Some(p) => std::mem::take(&mut p.waiting).len(),
            None => self.close_backlog(),
        };
        if closed > 0 {
            info!(closed, "closed the clients waiting for the main process");
        }
    }

    /// Handoff: the clients wait in the kernel's backlog of the held socket, which the main
    /// process shares: never block on it. A few at a time, each closed at once: never more
    /// descriptors than that.
    fn close_backlog(&self) -> usize {
        let fd = self.held.fd.as_fd();
        set_nonblocking(fd, true);
        let mut closed = 0;
        loop {
            let (some, err) = accept_some(fd, 16);
            closed += some.len();
            if some.is_empty() || err.is_some() {
                break;
            }
        }
        set_nonblocking(fd, false);
        closed
    }

    /// Proxy mode: closes every proxied connection (the backend is gone).
    pub fn close_proxied(&mut self) {
        if let Some(p) = &mut self.proxied {
            p.proxy.close_all();
        }
    }

    /// Puts the held socket's public name back if the main process removed it.
    pub fn relink(&self) {
        let path = self.held.addr.key();
        match self.held.relink() {
            Ok(true) => {
                info!(path = %path, "restored the socket's name after the main process removed it")
            }
            Ok(false) => {}
            Err(e) => error!(path = %path, error = %e, "cannot restore the socket's name"),
        }
    }

    /// Handoff mode, and handover: whether a new connection appeared in the kernel's
    /// tables (on the backend's path while the name leads there).
    pub fn scan(&mut self) -> bool {
        match (&self.proxied, self.given) {
            (Some(p), true) => self.activity.scan(&p.backend),
            _ => self.activity.scan(&self.held.addr),
        }
    }
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

    #[test]
    fn handover_needs_a_backend_that_admits_the_same_clients() {
        // (mode, uid, gid): the held socket is root's, 0660, group 42 here.
        let held = (0o660, 0, 42);
        assert!(same_access(held, (0o660, 33, 42)), "same mode and group");
        assert!(
            same_access(held, (0o770, 33, 42)),
            "execute bits do not matter"
        );
        assert!(!same_access(held, (0o666, 33, 42)), "would let everyone in");
        assert!(
            !same_access(held, (0o600, 33, 42)),
            "would lock the group out"
        );
        assert!(!same_access(held, (0o660, 33, 7)), "another group");
        assert!(
            !same_access((0o666, 0, 42), (0o660, 33, 42)),
            "others locked out"
        );
        assert!(
            same_access((0o600, 0, 42), (0o600, 33, 7)),
            "only root connects"
        );
        // A supervisor that is not root must still reach it itself.
        assert!(!same_access((0o600, 1000, 42), (0o600, 33, 7)));
        assert!(same_access((0o600, 1000, 42), (0o600, 1000, 7)));
    }

    #[test]
    fn give_and_take_the_name_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let listen = dir.path().join("public.sock");
        let backend = dir.path().join("backend.sock");
        let held = Held::bind(
            &Addr::Unix(listen.clone()),
            HeldPerms {
                mode: 0o660,
                gid: None,
            },
        )
        .unwrap();
        // Not there yet, then a stale file of a dead backend: the name stays.
        assert!(matches!(
            give(&listen, &backend, held.meta().as_ref()),
            Err(NotGiven::NotYet(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode_660 = || std::fs::Permissions::from_mode(0o660);
        drop(std::os::unix::net::UnixListener::bind(&backend).unwrap());
        std::fs::set_permissions(&backend, mode_660()).unwrap();
        assert!(matches!(
            give(&listen, &backend, held.meta().as_ref()),
            Err(NotGiven::NotYet(_))
        ));
        std::fs::remove_file(&backend).unwrap();
        let b = std::os::unix::net::UnixListener::bind(&backend).unwrap();
        std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            matches!(
                give(&listen, &backend, held.meta().as_ref()),
                Err(NotGiven::Never(_))
            ),
            "its group could not connect"
        );
        std::fs::set_permissions(&backend, mode_660()).unwrap();
        give(&listen, &backend, held.meta().as_ref()).unwrap();
        let ino = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
        assert_eq!(ino(&listen), ino(&backend));
        assert!(!side_link(&listen, "give").exists());
        let _c = std::os::unix::net::UnixStream::connect(&listen).unwrap();
        b.accept().unwrap();
        assert!(held.take_name().unwrap());
        assert_eq!(ino(&listen), ino(&keep_link(&listen)));
        assert!(!held.take_name().unwrap(), "already ours");
        assert!(!side_link(&listen, "take").exists());
    }

    #[test]
    fn pairs_fit_the_descriptor_limit() {
        assert_eq!(pair_cap(1024, 1 << 20), 1024);
        assert_eq!(pair_cap(1024, 1024), (1024 - 32) / 6);
        assert_eq!(pair_cap(1024, 64), (64 - 16) / 6);
        assert_eq!(pair_cap(1024, 4), 1, "always at least one");
        assert_eq!(pair_cap(10, 1024), 10);
    }

    fn unsafe_listener(h: &Held) -> std::os::unix::net::UnixListener {
        std::os::unix::net::UnixListener::from(h.fd.try_clone().unwrap())
    }
}
