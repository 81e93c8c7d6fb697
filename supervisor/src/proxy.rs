//! The byte proxy of on-demand proxy mode (DESIGN.md section 5): moves bytes both ways
//! between accepted clients and the backend, inside the supervisor's single-threaded event
//! loop.
//!
//! **In PID 1, through nix.** The proxy runs in the supervisor's own process rather than as
//! a re-executed child (`supervisor --proxy`): a child would cost a second process's
//! memory for every held site (against the goal of a supervisor as small as tini), and the
//! core would have to learn of traffic (its idle decision) and of the backend's exit over
//! a channel. What a child would protect against is a proxy bug taking PID 1 down; here
//! every syscall goes through nix's safe wrappers (epoll, eventfd, pipe2, splice, fcntl,
//! socket options), the one `unsafe` block left is a `FIONREAD` ioctl with a local `int`,
//! nothing indexes without a check, and every error closes only the connection concerned.
//!
//! **One epoll instance, edge-triggered.** Every socket is registered once, for
//! `EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`, and never modified again: no `epoll_ctl`
//! per read or write. The supervisor polls the epoll fd ([`Proxy::as_fd`]) beside its
//! signalfd and calls [`Proxy::run_ready`], which does all the work that is ready and
//! returns without blocking. Because events are edges, each socket side keeps two flags,
//! "may be readable" and "may be writable": an event sets them, and only `EAGAIN` clears
//! them. Nothing is lost between edges, and an idle connection costs no wake-ups.
//!
//! **splice(2) through a pipe per direction.** Bytes go socket → pipe → socket with
//! `splice`, so they never pass through user space (the kernel moves page references; this
//! is also how `systemd-socket-proxyd` does it). Small copy buffers are what made a tokio
//! proxy reach only 0.15x direct throughput; a pipe here holds 256 KiB (`F_SETPIPE_SZ`,
//! falling back to the default 64 KiB when the per-user pipe quota refuses), so each
//! splice moves up to 256 KiB. Pipes are taken from a small pool when a direction has data
//! and given back as soon as it is drained and its source has nothing more to read, so an
//! open but silent (keep-alive) connection holds only its two sockets, and a busy
//! request/response connection makes no pipe syscalls in steady state.
//!
//! What it costs (bench/ondemand/RESULTS.md, issue 21): about 0.13 s of CPU per GiB between
//! unix sockets (systemd-socket-proxyd: 0.14) and 0.45 s between loopback TCP sockets,
//! nearly all of it in the kernel's splice (a tenth of the bytes, the heads of the
//! sender's skbs, are copied even so), against 0.2 s for both ends of a direct unix
//! connection together: where CPU is short, a proxied transfer runs at about half the
//! direct rate, and only handoff mode has the direct data path.
//!
//! **Backpressure, per direction.** A direction reads its source only while its pipe has
//! room; when the destination returns `EAGAIN` the pipe fills and reading that source stops
//! until the destination's `EPOLLOUT` edge. A slow reader therefore stalls only its own
//! direction of its own connection. One subtlety: `splice` into a pipe returns `EAGAIN`
//! both when the socket is empty and when the pipe is full (pipe slots, not bytes, run
//! out), so `EAGAIN` with bytes still in the pipe does not clear "may be readable"; it is
//! cleared only by an `EAGAIN` into an empty pipe, which is unambiguous.
//!
//! **Fairness.** A connection is worked for at most 1 MiB per turn, then put back at the
//! end of a queue, and one `run_ready` call moves at most 32 MiB, so the event loop stays
//! responsive to signals. Work left over arms an eventfd registered in the same epoll
//! instance, so the epoll fd stays readable and the supervisor calls again.
//!
//! **Half-close.** When a source reaches EOF and its pipe has drained, the destination
//! gets `shutdown(SHUT_WR)`; the other direction keeps flowing. A connection is closed
//! when both directions are done. A read error (RST) closes it at once, abortively
//! (`SO_LINGER` 0) so the other peer sees a reset and not a clean end of a truncated
//! stream. A write error (the destination went away) ends that direction only, so a
//! backend that answers and closes without reading the whole request still gets its
//! answer to the client.
//!
//! **Backend connect.** [`Proxy::add`] takes a backend whose non-blocking connect may be
//! in progress; its first `EPOLLOUT` edge means connected, `EPOLLERR` (refused, reset)
//! closes the client.
//!
//! Every fd created here is close-on-exec and non-blocking; errors close the connection
//! concerned only; nothing here panics. `splice` to a socket whose peer is gone raises
//! `SIGPIPE` (there is no `MSG_NOSIGNAL` for splice): the supervisor blocks it and reads it
//! from its signalfd (where it is ignored), and Rust's runtime ignores it in tests.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag, SpliceFFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{getsockopt, setsockopt, sockopt, Shutdown};

/// Capacity asked for each pipe. systemd-socket-proxyd uses the same.
const PIPE_SIZE: libc::c_int = 256 * 1024;
/// Send buffer asked for each proxied unix socket: what the proxy may queue to a peer that
/// has not read yet, so how much one wake-up moves (the default is `net.core.wmem_default`,
/// about 208 KiB; the kernel caps the request at `net.core.wmem_max`). TCP sockets keep
/// the kernel's send-buffer autotuning, which a fixed size would turn off.
const UNIX_SNDBUF: usize = 1 << 20;
/// Length asked of each splice into a pipe: more than any pipe holds, so the pipe's room
/// is the limit.
const SPLICE_LEN: usize = 1 << 20;
/// Empty pipes kept for reuse.
const POOL_MAX: usize = 16;
/// Bytes one connection may move per turn before the next connection's turn.
const TURN_BUDGET: u64 = 1 << 20;
/// Bytes one `run_ready` call may move before returning (leftover work re-arms the epoll fd).
const RUN_BUDGET: u64 = 32 << 20;
/// Events taken per `epoll_wait`; more stay queued in the kernel and keep the fd readable.
const EVENTS: usize = 256;
/// epoll token of the self-wake eventfd; connection tokens never reach it (see `token`).
const WAKE: u64 = u64::MAX;
/// Highest slot index: index and side share the low 32 bits of a token.
const MAX_SLOTS: usize = (1 << 31) - 1;

const CLIENT: usize = 0;
const BACKEND: usize = 1;

fn token(gen: u32, idx: usize, side: usize) -> u64 {
    (u64::from(gen) << 32) | ((idx as u64) << 1) | side as u64
}

/// A pipe, both ends non-blocking and close-on-exec.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> nix::Result<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // Fewer, larger splices. Refused past the per-user pipe quota (EPERM): the default
        // size still works, so the result is ignored.
        let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Pipe { r, w })
    }
}

/// One direction of a connection: bytes from `src` to `dst` through `pipe`.
#[derive(Default)]
struct Dir {
    /// Held only while bytes are in flight.
    pipe: Option<Pipe>,
    /// Bytes in the pipe (spliced in, not yet out). The pipe is empty exactly when 0.
    pending: usize,
    /// The last splice into the pipe returned EAGAIN with bytes in it: probably full, so
    /// do not try again until some bytes have gone out.
    full: bool,
    /// The source reached EOF (or this direction was given up).
    eof: bool,
    /// Finished: EOF passed on with `shutdown(dst, SHUT_WR)`, or given up.
    done: bool,
}

struct Conn {
    socks: [OwnedFd; 2],
    /// When a byte last moved either way (or when it was added): for [`Proxy::close_idle`].
    last: std::time::Instant,
    /// Per side: may have bytes (or EOF) to read. Set by events, cleared by EAGAIN.
    rd: [bool; 2],
    /// Per side: may accept bytes. Set by events, cleared by EAGAIN.
    wr: [bool; 2],
    /// `dirs[CLIENT]` goes client → backend, `dirs[BACKEND]` backend → client.
    dirs: [Dir; 2],
    /// In the work queue already.
    queued: bool,
}

struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// Why a connection is closed before both directions are done.
struct Abort;

/// The proxy: an epoll instance and the connections in it. See the module docs.
pub struct Proxy {
    ep: Epoll,
    /// Level-triggered in `ep`: readable while work is left over.
    wake: EventFd,
    woken: bool,
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    queue: VecDeque<(usize, u32)>,
    pool: Vec<Pipe>,
    events: Vec<EpollEvent>,
    bytes: u64,
    /// TURN_BUDGET and RUN_BUDGET; fields so tests can make them tiny.
    turn_budget: u64,
    run_budget: u64,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("connections", &self.live)
            .field("bytes", &self.bytes)
            .field("pooled_pipes", &self.pool.len())
            .finish()
    }
}

/// Makes sure a socket handed to us is non-blocking and close-on-exec: one blocking call
/// would stall PID 1. Costs a syscall per flag when already so.
fn prepare(fd: &OwnedFd) -> nix::Result<()> {
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    if !fl.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    }
    let fdfl = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
    if !fdfl.contains(FdFlag::FD_CLOEXEC) {
        fcntl(fd, FcntlArg::F_SETFD(fdfl | FdFlag::FD_CLOEXEC))?;
    }
    Ok(())
}

/// Moves up to `len` bytes from `from` to `to` (one of them a pipe) inside the kernel.
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> nix::Result<usize> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        match nix::fcntl::splice(from, None, to, None, len, flags) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// The pending error of a socket (SO_ERROR), 0 if none.
fn so_error(fd: &OwnedFd) -> i32 {
    getsockopt(fd, sockopt::SocketError).unwrap_or_else(|e| e as i32)
}

/// Makes the coming close send RST (TCP) instead of FIN. Best effort.
fn set_abortive<F: AsFd>(fd: &F) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(fd, sockopt::Linger, &lg);
}

/// Whether a socket is a unix one.
fn is_unix(fd: &OwnedFd) -> bool {
    use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
    getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .is_ok_and(|a| a.family() == Some(AddressFamily::Unix))
}

/// Bytes in a pipe (FIONREAD); `None` on error.
fn pipe_len(p: &Pipe) -> Option<libc::c_int> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on an open pipe writes one int, to `n`, which outlives the call.
    let r = unsafe { libc::ioctl(p.r.as_raw_fd(), libc::FIONREAD, &mut n) };
    (r == 0).then_some(n)
}

/// Gives an empty pipe back to the pool (or closes it when the pool is full, or when it
/// is not empty). The kernel is asked too, so no byte can ever leak into another
/// connection even if the count were wrong.
fn release(pool: &mut Vec<Pipe>, dir: &mut Dir) {
    if let Some(p) = dir.pipe.take() {
        if dir.pending == 0 && pool.len() < POOL_MAX && pipe_len(&p) == Some(0) {
            pool.push(p);
        }
    }
    dir.pending = 0;
    dir.full = false;
}

/// What one step of a direction did.
enum Step {
    /// Nothing could move.
    Stuck,
    Moved,
    /// The direction is over (its destination is gone).
    Over,
}

/// Drains direction `d`'s pipe into its destination, as far as it takes bytes.
fn drain(
    dir: &mut Dir,
    dst: &OwnedFd,
    writable: &mut bool,
    budget: &mut u64,
    bytes: &mut u64,
) -> Step {
    if dir.pending == 0 || !*writable {
        return Step::Stuck;
    }
    let r = match &dir.pipe {
        Some(p) => splice(p.r.as_fd(), dst.as_fd(), dir.pending),
        None => Err(Errno::EBADF),
    };
    match r {
        Ok(n) if n > 0 => {
            let n = n.min(dir.pending);
            dir.pending -= n;
            dir.full = false;
            *bytes += n as u64;
            *budget = budget.saturating_sub(n as u64);
            Step::Moved
        }
        Ok(_) => Step::Stuck,
        Err(Errno::EAGAIN) => {
            *writable = false;
            Step::Stuck
        }
        // The destination is gone (EPIPE, ECONNRESET) or refuses: this direction is over;
        // drop what it holds and stop reading its source. The other direction may still
        // have a reply to deliver.
        Err(_) => {
            let _ = dir.pipe.take(); // not empty: closed, not pooled
            dir.pending = 0;
            dir.full = false;
            dir.eof = true;
            dir.done = true;
            Step::Over
        }
    }
}

/// Fills direction `d`'s pipe from its source, as far as it has bytes and the pipe room.
/// `Err`: a read error (RST), the connection must be closed abortively.
fn fill(
    dir: &mut Dir,
    src: &OwnedFd,
    readable: &mut bool,
    pool: &mut Vec<Pipe>,
    budget: &mut u64,
) -> Result<bool, Abort> {
    if dir.eof || !*readable || dir.full {
        return Ok(false);
    }
    if dir.pipe.is_none() {
        dir.pipe = Some(match pool.pop() {
            Some(p) => p,
            None => Pipe::new().map_err(|_| Abort)?,
        });
    }
    let r = match &dir.pipe {
        Some(p) => splice(src.as_fd(), p.w.as_fd(), SPLICE_LEN),
        None => Err(Errno::EBADF),
    };
    match r {
        Ok(0) => dir.eof = true,
        Ok(n) => {
            dir.pending += n;
            *budget = budget.saturating_sub(n as u64);
        }
        Err(Errno::EAGAIN) => {
            if dir.pending == 0 {
                // Empty pipe: the socket is empty. Wait for its next edge.
                *readable = false;
            } else {
                // Socket empty or pipe full; cannot tell. Retry once bytes left.
                dir.full = true;
            }
            return Ok(false);
        }
        Err(_) => return Err(Abort),
    }
    Ok(true)
}

/// Moves what can move in direction `d` of `c`. `Ok(true)`: stopped by the budget with
/// work possibly left. `Err`: the connection must be closed abortively.
fn pump_dir(
    c: &mut Conn,
    d: usize,
    pool: &mut Vec<Pipe>,
    budget: &mut u64,
    bytes: &mut u64,
) -> Result<bool, Abort> {
    let (src, dst) = (d, 1 - d);
    let Conn {
        socks,
        rd,
        wr,
        dirs,
        ..
    } = c;
    let dir = &mut dirs[d];
    loop {
        if dir.done {
            return Ok(false);
        }
        let drained = match drain(dir, &socks[dst], &mut wr[dst], budget, bytes) {
            Step::Over => return Ok(false),
            Step::Moved => true,
            Step::Stuck => false,
        };
        let filled = fill(dir, &socks[src], &mut rd[src], pool, budget)?;
        if dir.pending == 0 {
            if dir.eof {
                // All of the source's bytes reached the destination: pass the EOF on.
                // An error means the destination is gone; nothing more to tell it.
                let _ = nix::sys::socket::shutdown(socks[dst].as_raw_fd(), Shutdown::Write);
                dir.done = true;
            }
            if dir.eof || !rd[src] {
                release(pool, dir);
            }
        }
        if !(drained || filled) {
            return Ok(false);
        }
        if *budget == 0 {
            return Ok(true);
        }
    }
}

enum Turn {
    /// Both directions done: close gracefully.
    Done,
    /// Still open; `true` if stopped by the budget with work possibly left.
    Open(bool),
}

fn pump(
    c: &mut Conn,
    pool: &mut Vec<Pipe>,
    budget: &mut u64,
    bytes: &mut u64,
) -> Result<Turn, Abort> {
    let more0 = pump_dir(c, CLIENT, pool, budget, bytes)?;
    let more1 = pump_dir(c, BACKEND, pool, budget, bytes)?;
    if c.dirs[CLIENT].done && c.dirs[BACKEND].done {
        Ok(Turn::Done)
    } else {
        Ok(Turn::Open(more0 || more1))
    }
}

impl Proxy {
    /// A proxy with no connections: an epoll fd and an eventfd, both close-on-exec.
    pub fn new() -> io::Result<Proxy> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        ep.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        Ok(Proxy {
            ep,
            wake,
            woken: false,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            queue: VecDeque::new(),
            pool: Vec::new(),
            events: vec![EpollEvent::empty(); EVENTS],
            bytes: 0,
            turn_budget: TURN_BUDGET,
            run_budget: RUN_BUDGET,
        })
    }

    /// The epoll fd: the supervisor polls it for POLLIN and calls [`Proxy::run_ready`] when
    /// readable.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.ep.0.as_fd()
    }

    /// Starts proxying between an accepted client and a freshly connected backend (both
    /// non-blocking; the backend connect may still be in progress: EINPROGRESS is fine).
    /// Bytes the client sent already are picked up at the next [`Proxy::run_ready`]. Made
    /// non-blocking and close-on-exec here if they are not. On error both are closed.
    pub fn add(&mut self, client: OwnedFd, backend: OwnedFd) -> io::Result<()> {
        prepare(&client)?;
        prepare(&backend)?;
        for s in [&client, &backend].into_iter().filter(|s| is_unix(s)) {
            let _ = setsockopt(s, sockopt::SndBuf, &UNIX_SNDBUF);
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(Slot { gen: 0, conn: None });
                self.slots.len() - 1
            }
            None => return Err(io::Error::from_raw_os_error(libc::EMFILE)),
        };
        let gen = self.slots[idx].gen;
        let ev = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        let ep = &self.ep;
        let r = ep
            .add(&client, EpollEvent::new(ev, token(gen, idx, CLIENT)))
            .and_then(|()| {
                ep.add(&backend, EpollEvent::new(ev, token(gen, idx, BACKEND)))
                    .inspect_err(|_| {
                        let _ = ep.delete(&client);
                    })
            });
        if let Err(e) = r {
            self.free.push(idx);
            return Err(e.into());
        }
        self.slots[idx].conn = Some(Conn {
            socks: [client, backend],
            last: std::time::Instant::now(),
            rd: [false; 2],
            wr: [false; 2],
            dirs: [Dir::default(), Dir::default()],
            queued: false,
        });
        self.live += 1;
        Ok(())
    }

    /// Does all the work that is ready, without blocking, up to a budget; if work is left
    /// the epoll fd stays readable, so the caller just polls and calls again.
    pub fn run_ready(&mut self) {
        if self.woken {
            let _ = self.wake.read();
            self.woken = false;
        }
        self.take_events();
        self.work_queue();
        if !self.queue.is_empty() && !self.woken {
            self.woken = self.wake.write(1).is_ok();
        }
    }

    /// Reads the ready events (never blocking) into the connections' flags and queues them.
    fn take_events(&mut self) {
        let n = self
            .ep
            .wait(&mut self.events, EpollTimeout::ZERO)
            .unwrap_or(0);
        for i in 0..n.min(EVENTS) {
            let (data, ev) = (self.events[i].data(), self.events[i].events());
            if data == WAKE {
                continue;
            }
            let gen = (data >> 32) as u32;
            let idx = ((data & 0xffff_ffff) >> 1) as usize;
            let side = (data & 1) as usize;
            let Some(slot) = self.slots.get_mut(idx).filter(|s| s.gen == gen) else {
                continue;
            };
            let Some(c) = slot.conn.as_mut() else {
                continue;
            };
            if ev.contains(EpollFlags::EPOLLERR) && so_error(&c.socks[side]) != 0 {
                // Refused, reset, timed out.
                self.close(idx, true);
                continue;
            }
            if ev.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP) {
                c.rd[side] = true;
            }
            if ev.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLHUP) {
                c.wr[side] = true;
            }
            if !c.queued {
                c.queued = true;
                self.queue.push_back((idx, gen));
            }
        }
    }

    /// Pumps the queued connections in turn, each up to its turn's budget, all up to the
    /// call's.
    fn work_queue(&mut self) {
        let mut total = self.run_budget;
        // Read once per call, and only when some bytes moved.
        let mut now: Option<std::time::Instant> = None;
        while total > 0 {
            let Some((idx, gen)) = self.queue.pop_front() else {
                break;
            };
            let Some(slot) = self.slots.get_mut(idx).filter(|s| s.gen == gen) else {
                continue;
            };
            let Some(c) = slot.conn.as_mut() else {
                continue;
            };
            c.queued = false;
            let mut budget = self.turn_budget.min(total);
            let before = budget;
            let moved = self.bytes;
            let turn = pump(c, &mut self.pool, &mut budget, &mut self.bytes);
            total -= before - budget;
            if self.bytes != moved {
                c.last = *now.get_or_insert_with(std::time::Instant::now);
            }
            match turn {
                Ok(Turn::Open(false)) => {}
                Ok(Turn::Open(true)) => {
                    c.queued = true;
                    self.queue.push_back((idx, gen));
                }
                Ok(Turn::Done) => self.close(idx, false),
                Err(Abort) => self.close(idx, true),
            }
        }
    }

    /// Total bytes moved in both directions since creation (delivered to the destination).
    /// Open but silent connections add nothing.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.live
    }

    /// No open connections.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Closes every connection at once (container stop deadline, backend died),
    /// abortively: TCP peers see a reset, not a clean end of a cut-off stream. Also empties
    /// the pipe pool.
    pub fn close_all(&mut self) {
        for idx in 0..self.slots.len() {
            if self.slots[idx].conn.is_some() {
                self.close(idx, true);
            }
        }
        self.queue.clear();
        self.pool.clear();
    }

    /// Closes, abortively, every connection that has moved no byte either way since
    /// `now - idle` (a silent keep-alive, a client or backend that went away without a
    /// word); returns how many.
    pub fn close_idle(&mut self, idle: std::time::Duration, now: std::time::Instant) -> usize {
        let mut closed = 0;
        for idx in 0..self.slots.len() {
            let stale = self.slots[idx]
                .conn
                .as_ref()
                .is_some_and(|c| now.saturating_duration_since(c.last) >= idle);
            if stale {
                self.close(idx, true);
                closed += 1;
            }
        }
        closed
    }

    fn close(&mut self, idx: usize, abort: bool) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(mut c) = slot.conn.take() else {
            return;
        };
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(idx);
        self.live -= 1;
        if abort {
            for s in &c.socks {
                set_abortive(s);
            }
        }
        for d in &mut c.dirs {
            release(&mut self.pool, d);
        }
        // Dropping `c` closes both sockets, which also takes them out of the epoll set.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    /// Every blocking socket call in the tests gives up after this.
    const IO_TIMEOUT: Duration = Duration::from_secs(60);

    /// A thread that polls the proxy's fd and runs it, as the supervisor's loop does.
    struct Driver {
        proxy: Arc<Mutex<Proxy>>,
        stop: Arc<AtomicBool>,
        /// Returns what the driver thread used.
        thread: Option<JoinHandle<Usage>>,
    }

    impl Driver {
        fn new() -> Driver {
            let proxy = Proxy::new().expect("proxy");
            let fd = proxy.as_fd().as_raw_fd();
            let proxy = Arc::new(Mutex::new(proxy));
            let stop = Arc::new(AtomicBool::new(false));
            let (p, s) = (proxy.clone(), stop.clone());
            let driver = thread::Builder::new().name("proxy-driver".into());
            let thread = driver
                .spawn(move || {
                    while !s.load(Ordering::Relaxed) {
                        let mut pfd = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; `fd` stays open as long as the proxy.
                        // Runs only when readable, as the supervisor does: work left over must
                        // keep the fd readable.
                        if unsafe { libc::poll(&mut pfd, 1, 20) } > 0 {
                            p.lock().unwrap().run_ready();
                        }
                    }
                    Usage::of_thread()
                })
                .expect("driver thread");
            Driver {
                proxy,
                stop,
                thread: Some(thread),
            }
        }

        fn add(&self, client: OwnedFd, backend: OwnedFd) {
            self.proxy
                .lock()
                .unwrap()
                .add(client, backend)
                .expect("add");
        }

        fn len(&self) -> usize {
            self.proxy.lock().unwrap().len()
        }

        fn bytes(&self) -> u64 {
            self.proxy.lock().unwrap().bytes()
        }

        /// Waits (with a deadline) until `f` holds of the proxy.
        fn wait_for(&self, what: &str, f: impl Fn(&Proxy) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !f(&self.proxy.lock().unwrap()) {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}: {:?}",
                    self.proxy
                );
                thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// What a proxy used: CPU time (user + system) and wake-ups (voluntary context
    /// switches: each one a return from a blocking wait).
    #[derive(Debug, Clone, Copy, Default)]
    struct Usage {
        cpu: Duration,
        wakeups: u64,
    }

    impl fmt::Display for Usage {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "cpu {:.3} s, {} wake-ups",
                self.cpu.as_secs_f64(),
                self.wakeups
            )
        }
    }

    impl Usage {
        /// Of the calling thread.
        fn of_thread() -> Usage {
            // SAFETY: an all-zero rusage is valid; getrusage fills it.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `ru` is a valid rusage for the kernel to write.
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
            let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
            Usage {
                cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
                wakeups: ru.ru_nvcsw as u64,
            }
        }

        /// Of a running process, from /proc.
        fn of_process(pid: u32) -> Usage {
            // utime and stime, fields 14 and 15 of /proc/PID/stat, in clock ticks.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let wakeups = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            Usage {
                cpu: Duration::from_millis(ticks * 1000 / hz),
                wakeups,
            }
        }
    }

    impl Driver {
        /// Stops the driver thread; returns what it used.
        fn finish(mut self) -> Usage {
            self.stop.store(true, Ordering::Relaxed);
            self.thread
                .take()
                .map(|t| t.join().unwrap())
                .unwrap_or_default()
        }
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn timeouts<S: AsFd>(s: &S) {
        let s = s.as_fd().try_clone_to_owned().unwrap();
        let s = UnixOrTcp::from(s);
        s.set_timeouts();
    }

    /// Sets SO_RCVTIMEO/SO_SNDTIMEO on any socket (std only offers it per type).
    struct UnixOrTcp(OwnedFd);
    impl From<OwnedFd> for UnixOrTcp {
        fn from(fd: OwnedFd) -> Self {
            UnixOrTcp(fd)
        }
    }
    impl UnixOrTcp {
        fn set_timeouts(&self) {
            // Works for TCP and unix alike: the options are SOL_SOCKET ones.
            let s = UnixStream::from(self.0.try_clone().unwrap());
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        }
    }

    /// (the client program's end, the proxy's client end, the proxy's backend end, the
    /// backend program's end), over unix socket pairs.
    fn unix_conn() -> (UnixStream, OwnedFd, OwnedFd, UnixStream) {
        let (app, pc) = UnixStream::pair().unwrap();
        let (pb, back) = UnixStream::pair().unwrap();
        pc.set_nonblocking(true).unwrap();
        pb.set_nonblocking(true).unwrap();
        timeouts(&app);
        timeouts(&back);
        (app, pc.into(), pb.into(), back)
    }

    /// A non-blocking connect to `addr`, usually still in progress when it returns.
    fn connect_nb(addr: SocketAddr) -> OwnedFd {
        crate::socket::connect_nonblocking(&crate::config::Addr::Tcp(addr))
            .expect("connect")
            .expect("a TCP connect is never EAGAIN")
    }

    /// As `unix_conn`, over TCP on 127.0.0.1, with the backend connect in progress.
    fn tcp_conn(
        front: &TcpListener,
        back: &TcpListener,
    ) -> (TcpStream, OwnedFd, OwnedFd, TcpStream) {
        let app = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        let (pc, _) = front.accept().unwrap();
        pc.set_nonblocking(true).unwrap();
        let pb = connect_nb(back.local_addr().unwrap());
        let (bk, _) = back.accept().unwrap();
        timeouts(&app);
        timeouts(&bk);
        (app, pc.into(), pb, bk)
    }

    fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    /// Deterministic pseudo-random bytes: word `i` of stream `seed` is splitmix64(seed, i).
    fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
        assert!(offset & 7 == 0 && buf.len() & 7 == 0);
        for (k, w) in buf.chunks_exact_mut(8).enumerate() {
            let mut z =
                seed.wrapping_add((offset / 8 + k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            w.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
    }

    const CHUNK: usize = 1 << 20;

    /// Writes `len` bytes of stream `seed`, then half-closes. Returns a checksum.
    fn send_stream<W: Write + AsFd>(mut w: W, seed: u64, len: u64) -> u64 {
        let mut buf = vec![0u8; CHUNK];
        let mut off = 0;
        let mut sum = 0u64;
        while off < len {
            let n = CHUNK.min((len - off) as usize);
            fill(seed, off, &mut buf[..n]);
            sum = checksum(sum, &buf[..n]);
            w.write_all(&buf[..n]).expect("write");
            off += n as u64;
        }
        shutdown_write(&w);
        sum
    }

    fn shutdown_write<S: AsFd>(s: &S) {
        // SAFETY: shutdown on an open socket.
        unsafe { libc::shutdown(s.as_fd().as_raw_fd(), libc::SHUT_WR) };
    }

    /// Reads to EOF, checks byte by byte that it is exactly `len` bytes of stream `seed`,
    /// returns the checksum.
    fn recv_stream<R: Read>(mut r: R, seed: u64, len: u64) -> u64 {
        let mut buf = vec![0u8; CHUNK];
        let mut want = vec![0u8; CHUNK];
        let mut off = 0u64;
        let mut sum = 0u64;
        loop {
            // Fill the chunk, so chunks line up with the generator's words.
            let mut got = 0;
            while got < CHUNK {
                let n = r.read(&mut buf[got..]).expect("read");
                if n == 0 {
                    break;
                }
                got += n;
            }
            if got == 0 {
                break;
            }
            assert!(off + got as u64 <= len, "more bytes than sent");
            fill(seed, off, &mut want[..got.next_multiple_of(8)]);
            assert!(
                buf[..got] == want[..got],
                "bytes differ in the chunk at {off}"
            );
            sum = checksum(sum, &buf[..got]);
            off += got as u64;
            if got < CHUNK {
                break;
            }
        }
        assert_eq!(off, len, "bytes received");
        sum
    }

    fn checksum(mut h: u64, b: &[u8]) -> u64 {
        // FNV-1a over 8-byte words (fast enough unoptimised), then the tail.
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x100_0000_01b3);
        }
        for &x in words.remainder() {
            h = (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    /// Sends `len` bytes each way at once and checks both arrive exactly.
    fn both_ways<S>(client: S, backend: S, len: u64)
    where
        S: Read + Write + AsFd + Send + Sync + 'static,
        for<'a> &'a S: Read + Write,
    {
        let client = Arc::new(client);
        let backend = Arc::new(backend);
        let threads = [
            {
                let s = client.clone();
                thread::spawn(move || send_stream(&*s, 1, len))
            },
            {
                let s = backend.clone();
                thread::spawn(move || recv_stream(&*s, 1, len))
            },
            {
                let s = backend.clone();
                thread::spawn(move || send_stream(&*s, 2, len))
            },
            {
                let s = client.clone();
                thread::spawn(move || recv_stream(&*s, 2, len))
            },
        ];
        let [a, b, c, d] = threads.map(|t| t.join().expect("transfer thread"));
        assert_eq!(a, b, "checksum client -> backend");
        assert_eq!(c, d, "checksum backend -> client");
    }

    #[test]
    fn transfer_64mib_both_ways_unix() {
        let drv = Driver::new();
        let (app, pc, pb, back) = unix_conn();
        drv.add(pc, pb);
        both_ways(app, back, 64 << 20);
        drv.wait_for("close", |p| p.is_empty());
        assert_eq!(drv.bytes(), 2 * (64 << 20));
    }

    #[test]
    fn tiny_budgets_still_complete() {
        // Every turn and every run_ready call stops early: the work queue and the eventfd
        // that keeps the epoll fd readable carry the rest.
        let drv = Driver::new();
        {
            let mut p = drv.proxy.lock().unwrap();
            // One splice per run_ready call.
            p.turn_budget = 1;
            p.run_budget = 1;
        }
        // No outside events after the first: 64 KiB already sent, read by nobody yet.
        let (app, pc, pb, back) = unix_conn();
        let mut data = vec![0u8; 64 << 10];
        fill(9, 0, &mut data);
        (&app).write_all(&data).unwrap();
        shutdown_write(&app);
        drv.add(pc, pb);
        drv.wait_for("moved without new events", |p| p.bytes() == 64 << 10);
        let mut got = Vec::new();
        (&back).read_to_end(&mut got).unwrap();
        assert!(got == data);
        drop((app, back));
        drv.wait_for("close", |p| p.is_empty());
        let before = drv.bytes();
        {
            let mut p = drv.proxy.lock().unwrap();
            p.turn_budget = 4096;
            p.run_budget = 16384;
        }

        let mut pairs = Vec::new();
        for _ in 0..3 {
            let (app, pc, pb, back) = unix_conn();
            drv.add(pc, pb);
            pairs.push(thread::spawn(move || both_ways(app, back, 4 << 20)));
        }
        for t in pairs {
            t.join().unwrap();
        }
        drv.wait_for("close", |p| p.is_empty());
        assert_eq!(drv.bytes() - before, 3 * 2 * (4 << 20));
    }

    #[test]
    fn transfer_64mib_both_ways_tcp() {
        let drv = Driver::new();
        let (front, backl) = (listener(), listener());
        let (app, pc, pb, back) = tcp_conn(&front, &backl);
        drv.add(pc, pb);
        both_ways(app, back, 64 << 20);
        drv.wait_for("close", |p| p.is_empty());
        assert_eq!(drv.bytes(), 2 * (64 << 20));
    }

    fn half_close(
        mut app: impl Read + Write + AsFd,
        mut back: impl Read + Write + Send + 'static,
        drv: &Driver,
    ) {
        let request = b"GET / HTTP/1.0\r\n\r\n".repeat(1000);
        app.write_all(&request).unwrap();
        shutdown_write(&app);
        let mut got = Vec::new();
        back.read_to_end(&mut got).expect("backend reads to EOF");
        assert_eq!(got, request);
        // The reply flows after the client's EOF, and is larger than any buffer on the way.
        let mut reply = vec![0u8; 3 << 20];
        fill(7, 0, &mut reply);
        let w = thread::spawn(move || {
            back.write_all(&reply).unwrap();
            drop(back);
            reply
        });
        let mut got = Vec::new();
        app.read_to_end(&mut got).expect("client reads to EOF");
        let reply = w.join().unwrap();
        assert!(
            got == reply,
            "reply differs ({} of {} bytes)",
            got.len(),
            reply.len()
        );
        drv.wait_for("close", |p| p.is_empty());
    }

    #[test]
    fn half_close_unix() {
        let drv = Driver::new();
        let (app, pc, pb, back) = unix_conn();
        drv.add(pc, pb);
        half_close(app, back, &drv);
    }

    #[test]
    fn half_close_tcp() {
        let drv = Driver::new();
        let (front, backl) = (listener(), listener());
        let (app, pc, pb, back) = tcp_conn(&front, &backl);
        drv.add(pc, pb);
        half_close(app, back, &drv);
    }

    #[test]
    fn slow_reader_does_not_hold_others_up() {
        let drv = Driver::new();
        // A: the backend sends 16 MiB to a client that reads nothing for now.
        let (slow_app, pc, pb, slow_back) = unix_conn();
        drv.add(pc, pb);
        let slow_len = 16u64 << 20;
        let slow_writer = thread::spawn(move || send_stream(slow_back, 3, slow_len));
        // Wait until A is stuck: its pipe and both socket buffers full.
        let mut last = 0;
        loop {
            thread::sleep(Duration::from_millis(100));
            let b = drv.bytes();
            if b == last && b > 0 {
                break;
            }
            last = b;
        }
        assert!(
            !slow_writer.is_finished(),
            "slow connection should be stalled"
        );

        // B: a full 16 MiB exchange completes meanwhile.
        let t0 = Instant::now();
        let (app, pc, pb, back) = unix_conn();
        drv.add(pc, pb);
        both_ways(app, back, 16 << 20);
        drv.wait_for("B closed", |p| p.len() == 1);
        assert!(t0.elapsed() < Duration::from_secs(20));
        assert!(!slow_writer.is_finished(), "slow connection still stalled");

        // A then completes, byte-exact.
        let got = recv_stream(&slow_app, 3, slow_len);
        assert_eq!(got, slow_writer.join().unwrap());
        shutdown_write(&slow_app);
        drv.wait_for("A closed", |p| p.is_empty());
    }

    /// The client end sees EOF or a reset within the deadline.
    fn expect_closed(mut s: impl Read) {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("expected EOF or reset, got {e}"),
            }
        }
    }

    #[test]
    fn backend_refused_closes_client() {
        let drv = Driver::new();
        let front = listener();
        let dead = listener().local_addr().unwrap(); // the listener is dropped: refused
        let app = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        timeouts(&app);
        let (pc, _) = front.accept().unwrap();
        pc.set_nonblocking(true).unwrap();
        drv.add(pc.into(), connect_nb(dead));
        // The proxy may have closed it already (the refusal can come first): then the
        // write fails, which is the same outcome.
        let _ = (&app).write_all(b"hello");
        expect_closed(&app);
        drv.wait_for("close", |p| p.is_empty());
    }

    #[test]
    fn backend_reset_closes_client() {
        let drv = Driver::new();
        let (front, backl) = (listener(), listener());
        let (app, pc, pb, back) = tcp_conn(&front, &backl);
        drv.add(pc, pb);
        (&app).write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        (&back).read_exact(&mut buf).unwrap();
        set_abortive(&back);
        drop(back);
        expect_closed(&app);
        drv.wait_for("close", |p| p.is_empty());
    }

    #[test]
    fn client_gone_closes_backend() {
        let drv = Driver::new();
        let (app, pc, pb, back) = unix_conn();
        drv.add(pc, pb);
        drop(app);
        expect_closed(&back); // EOF passed on
                              // The backend's answer finds the client gone: the connection closes, and the
                              // backend's socket with it.
        (&back).write_all(b"late reply").unwrap();
        drv.wait_for("close", |p| p.is_empty());
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = (&back).write_all(b"more") {
                err = Some(e);
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert!(err.is_some(), "backend socket should be closed");
    }

    #[test]
    fn connections_500_concurrent() {
        const N: usize = 500;
        let drv = Driver::new();
        let (front, backl) = (listener(), listener());
        let mut conns = Vec::new();
        for _ in 0..N {
            let (app, pc, pb, back) = tcp_conn(&front, &backl);
            drv.add(pc, pb);
            conns.push((app, back));
        }
        assert_eq!(drv.len(), N);
        let msg = |i: usize, what: &str| format!("{what} {i} ").repeat(300).into_bytes();
        for (i, (app, _)) in conns.iter().enumerate() {
            (&*app).write_all(&msg(i, "request")).unwrap();
            shutdown_write(app);
        }
        for (i, (_, back)) in conns.iter_mut().enumerate() {
            let mut got = Vec::new();
            back.read_to_end(&mut got).unwrap();
            assert!(got == msg(i, "request"), "request {i}");
            back.write_all(&msg(i, "reply")).unwrap();
            back.shutdown(Shutdown::Both).unwrap();
        }
        for (i, (app, _)) in conns.iter_mut().enumerate() {
            let mut got = Vec::new();
            app.read_to_end(&mut got).unwrap();
            assert!(got == msg(i, "reply"), "reply {i}");
        }
        drv.wait_for("all closed", |p| p.is_empty());
        let total: usize = (0..N)
            .map(|i| msg(i, "request").len() + msg(i, "reply").len())
            .sum();
        assert_eq!(drv.bytes(), total as u64);
    }

    #[test]
    fn close_all_closes_everything() {
        let drv = Driver::new();
        let mut conns = Vec::new();
        for i in 0..10 {
            let (app, pc, pb, back) = unix_conn();
            drv.add(pc, pb);
            if i % 2 == 0 {
                // Some with bytes stuck in flight.
                let mut b = &back;
                b.write_all(&[1u8; 100_000]).unwrap();
            }
            conns.push((app, back));
        }
        drv.wait_for("bytes moving", |p| p.bytes() > 0);
        drv.proxy.lock().unwrap().close_all();
        assert_eq!(drv.len(), 0);
        for (app, back) in conns {
            expect_closed(&app);
            expect_closed(&back);
        }
        // Usable again afterwards.
        let (app, pc, pb, back) = unix_conn();
        drv.add(pc, pb);
        half_close(app, back, &drv);
    }

    #[test]
    fn idle_connections_are_closed_busy_ones_kept() {
        let drv = Driver::new();
        let (idle_app, pc, pb, idle_back) = unix_conn();
        drv.add(pc, pb);
        let (app, pc, pb, back) = unix_conn();
        drv.add(pc, pb);
        let t0 = Instant::now();
        // One byte through the second connection after t0: it is busy, the first is not.
        (&app).write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        (&back).read_exact(&mut one).unwrap();
        let closed = drv
            .proxy
            .lock()
            .unwrap()
            .close_idle(Duration::from_millis(1), t0 + Duration::from_millis(1));
        assert_eq!((closed, drv.len()), (1, 1));
        expect_closed(&idle_app);
        expect_closed(&idle_back);
        // Nothing is idle for a long timeout.
        let closed = drv
            .proxy
            .lock()
            .unwrap()
            .close_idle(Duration::from_secs(600), Instant::now());
        assert_eq!(closed, 0);
        half_close(app, back, &drv);
    }

    #[test]
    fn silent_connection_adds_no_bytes() {
        let drv = Driver::new();
        let (app, pc, pb, back) = unix_conn();
        drv.add(pc, pb);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(drv.bytes(), 0);
        assert_eq!(drv.len(), 1);
        // An idle connection holds no pipe.
        assert!(drv.proxy.lock().unwrap().slots[0]
            .conn
            .as_ref()
            .unwrap()
            .dirs
            .iter()
            .all(|d| d.pipe.is_none()));
        (&app).write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        (&back).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        drv.wait_for("count", |p| p.bytes() == 4);
    }

    #[test]
    fn fds_are_cloexec() {
        let p = Proxy::new().unwrap();
        for fd in [p.ep.0.as_raw_fd(), p.wake.as_fd().as_raw_fd()] {
            // SAFETY: F_GETFD on an open fd.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(fl & libc::FD_CLOEXEC != 0);
        }
        let pipe = Pipe::new().unwrap();
        for fd in [pipe.r.as_raw_fd(), pipe.w.as_raw_fd()] {
            // SAFETY: F_GETFD on an open fd.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(fl & libc::FD_CLOEXEC != 0);
        }
    }

    /// Moves `len` bytes one way from `w` to `r`; returns MB/s and the CPU time the two
    /// ends (the writing and the reading thread) used.
    fn one_way<S>(w: S, r: S, len: u64) -> (f64, Duration)
    where
        S: Send + 'static,
        for<'a> &'a S: Read + Write,
    {
        let t0 = Instant::now();
        let reader0 = Usage::of_thread().cpu;
        let writer = thread::spawn(move || {
            let buf = vec![0x5au8; CHUNK];
            let mut left = len;
            while left > 0 {
                let n = CHUNK.min(left as usize);
                (&w).write_all(&buf[..n]).unwrap();
                left -= n as u64;
            }
            drop(w);
            Usage::of_thread().cpu
        });
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            let n = (&r).read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        let rate = len as f64 / t0.elapsed().as_secs_f64() / 1e6;
        let ends = writer.join().unwrap() + (Usage::of_thread().cpu - reader0);
        assert_eq!(got, len);
        (rate, ends)
    }

    /// Runs `transfer` through systemd-socket-proxyd, which inherits `listening` as fd 3
    /// and connects to `backend` (a unix path or host:port): its result and the proxy's
    /// usage, or None when it is not installed.
    fn socket_proxyd<T>(
        listening: BorrowedFd<'_>,
        backend: &str,
        transfer: impl FnOnce() -> T,
    ) -> Option<(T, Usage)> {
        use std::os::unix::process::CommandExt;
        let bin = "/lib/systemd/systemd-socket-proxyd";
        if !std::path::Path::new(bin).exists() {
            return None;
        }
        let lfd = listening.as_raw_fd();
        let script = format!(
            "import os; os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; \
             os.execv('{bin}', ['{bin}', '{backend}'])"
        );
        let mut cmd = std::process::Command::new("python3");
        cmd.args(["-c", &script]);
        // SAFETY: only dup2 and fcntl, which are async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                let r = if lfd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(lfd, 3)
                };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let mut child = cmd.spawn().unwrap();
        // Its usage from when python has exec'd it: the proxy's own.
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = Instant::now() + IO_TIMEOUT;
        while !std::fs::read_to_string(&comm).is_ok_and(|c| c.starts_with("systemd")) {
            assert!(
                Instant::now() < deadline,
                "systemd-socket-proxyd did not start"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let before = Usage::of_process(child.id());
        let r = transfer();
        let after = Usage::of_process(child.id());
        let usage = Usage {
            cpu: after.cpu.saturating_sub(before.cpu),
            wakeups: after.wakeups - before.wakeups,
        };
        let _ = child.kill();
        let _ = child.wait();
        Some((r, usage))
    }

    /// `cargo test --release -p supervisor --lib proxy::tests::throughput -- --ignored --nocapture`
    /// (PROXY_BENCH_ROUNDS=N for more rounds, PROXY_BENCH_ONLY=unix or tcp for one family,
    /// PROXY_BENCH_MIB=N to move N MiB per transfer instead of 1024).
    /// Each round runs direct, bosun's proxy and systemd-socket-proxyd back to back (1 GiB
    /// one way each by default); prints MB/s per round and, at the end, the medians of the ratios and
    /// of the proxies' CPU seconds and wake-ups per GiB, which stay meaningful on a loaded
    /// machine where wall-clock rates do not.
    #[test]
    #[ignore]
    fn throughput() {
        let mib: u64 = std::env::var("PROXY_BENCH_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let len = mib << 20;
        let per_gib = 1024.0 / mib as f64;
        let rounds = std::env::var("PROXY_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2);
        let only = std::env::var("PROXY_BENCH_ONLY").unwrap_or_default();
        let mut rows: std::collections::BTreeMap<&str, Vec<(f64, Usage)>> = Default::default();
        // What the ratio would be if the CPU were the only limit (all threads on one CPU):
        // the ends' CPU direct over the ends' CPU proxied plus the proxy's.
        let mut ceilings: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        let ceiling = |ends_d: Duration, ends_p: Duration, proxy: Usage| {
            ends_d.as_secs_f64() / (ends_p + proxy.cpu).as_secs_f64()
        };
        for round in 0..rounds {
            let mut line = format!("round {round}:");
            if only != "tcp" {
                let (a, b) = UnixStream::pair().unwrap();
                let (direct, ends_d) = one_way(a, b, len);

                let drv = Driver::new();
                let (app, pc, pb, back) = unix_conn();
                drv.add(pc, pb);
                let (proxied, ends_p) = one_way(app, back, len);
                let bosun = drv.finish();
                rows.entry("unix, bosun")
                    .or_default()
                    .push((proxied / direct, bosun));
                ceilings
                    .entry("unix, bosun")
                    .or_default()
                    .push(ceiling(ends_d, ends_p, bosun));

                let dir = tempfile::tempdir().unwrap();
                let (fp, bp) = (dir.path().join("front"), dir.path().join("back"));
                let front = std::os::unix::net::UnixListener::bind(&fp).unwrap();
                let backl = std::os::unix::net::UnixListener::bind(&bp).unwrap();
                timeouts(&backl); // accept gives up too, should proxyd not connect
                let proxyd = socket_proxyd(front.as_fd(), &bp.display().to_string(), || {
                    let app = UnixStream::connect(&fp).unwrap();
                    let (back, _) = backl.accept().unwrap();
                    one_way(app, back, len).0
                });
                line += &format!(
                    " unix direct {direct:.0} MB/s (ends cpu {:.3} s), bosun {proxied:.0} ({:.2}x, {}, ends cpu {:.3} s)",
                    ends_d.as_secs_f64(),
                    proxied / direct,
                    bosun,
                    ends_p.as_secs_f64()
                );
                if let Some((r, u)) = proxyd {
                    rows.entry("unix, systemd-socket-proxyd")
                        .or_default()
                        .push((r / direct, u));
                    line += &format!(", proxyd {r:.0} ({:.2}x, {u})", r / direct);
                }
            }
            if only != "unix" {
                let l = listener();
                let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
                let (b, _) = l.accept().unwrap();
                let (direct, ends_d) = one_way(a, b, len);

                let drv = Driver::new();
                let (front, backl) = (listener(), listener());
                let (app, pc, pb, back) = tcp_conn(&front, &backl);
                drv.add(pc, pb);
                let (proxied, ends_p) = one_way(app, back, len);
                let bosun = drv.finish();
                rows.entry("tcp, bosun")
                    .or_default()
                    .push((proxied / direct, bosun));
                ceilings
                    .entry("tcp, bosun")
                    .or_default()
                    .push(ceiling(ends_d, ends_p, bosun));

                let (front, backl) = (listener(), listener());
                timeouts(&backl); // accept gives up too, should proxyd not connect
                let proxyd = socket_proxyd(
                    front.as_fd(),
                    &backl.local_addr().unwrap().to_string(),
                    || {
                        let app = TcpStream::connect(front.local_addr().unwrap()).unwrap();
                        let (back, _) = backl.accept().unwrap();
                        one_way(app, back, len).0
                    },
                );
                line += &format!(
                    " | tcp direct {direct:.0} MB/s (ends cpu {:.3} s), bosun {proxied:.0} ({:.2}x, {}, ends cpu {:.3} s)",
                    ends_d.as_secs_f64(),
                    proxied / direct,
                    bosun,
                    ends_p.as_secs_f64()
                );
                if let Some((r, u)) = proxyd {
                    rows.entry("tcp, systemd-socket-proxyd")
                        .or_default()
                        .push((r / direct, u));
                    line += &format!(", proxyd {r:.0} ({:.2}x, {u})", r / direct);
                }
            }
            println!("{line}");
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        for (what, v) in ceilings {
            let (c, lo, hi) = median(v);
            println!("median: {what}: CPU-bound ceiling {c:.2}x direct ({lo:.2}-{hi:.2})");
        }
        for (what, v) in rows {
            let (r, lo, hi) = median(v.iter().map(|(r, _)| *r).collect());
            let (cpu, ..) = median(
                v.iter()
                    .map(|(_, u)| u.cpu.as_secs_f64() * per_gib)
                    .collect(),
            );
            let (wake, ..) = median(v.iter().map(|(_, u)| u.wakeups as f64 * per_gib).collect());
            println!(
                "median of {}: {what}: {r:.2}x direct ({lo:.2}-{hi:.2}), proxy cpu {cpu:.3} s/GiB, {wake:.0} wake-ups/GiB",
                v.len()
            );
        }
    }
}
