//! The byte proxy of on-demand proxy mode (DESIGN.md section 5, issue 6): moves bytes both
//! ways between accepted clients and the backend, inside the supervisor's single-threaded
//! event loop.
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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// Capacity asked for each pipe. systemd-socket-proxyd uses the same.
const PIPE_SIZE: libc::c_int = 256 * 1024;
/// Length asked of each splice into a pipe: more than any pipe holds, so the pipe's room
/// is the limit.
const SPLICE_LEN: usize = 1 << 20;
/// Empty pipes kept for reuse.
const POOL_MAX: usize = 32;
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

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A pipe, both ends non-blocking and close-on-exec.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is an array of two c_ints, which is what pipe2 writes.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
        // SAFETY: pipe2 succeeded, so both are open fds that nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Fewer, larger splices. Refused past the per-user pipe quota (EPERM): the default
        // size still works, so the result is ignored.
        // SAFETY: fcntl on an fd we own; F_SETPIPE_SZ takes an int.
        let _ = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
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
    ep: OwnedFd,
    /// eventfd, level-triggered in `ep`: readable while work is left over.
    wake: OwnedFd,
    woken: bool,
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    queue: VecDeque<(usize, u32)>,
    pool: Vec<Pipe>,
    events: Vec<libc::epoll_event>,
    bytes: u64,
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

fn epoll_add(ep: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: both are open fds; `ev` is a valid epoll_event that the kernel only reads.
    cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// Makes sure a socket handed to us is non-blocking and close-on-exec: one blocking call
/// would stall PID 1. Costs a syscall per flag when already so.
fn prepare(fd: &OwnedFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL on an open fd; takes no argument.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if fl & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL on an open fd with an int argument.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    }
    // SAFETY: F_GETFD on an open fd; takes no argument.
    let fdfl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    if fdfl & libc::FD_CLOEXEC == 0 {
        // SAFETY: F_SETFD on an open fd with an int argument.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, fdfl | libc::FD_CLOEXEC) })?;
    }
    Ok(())
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: plain fds (a socket and a pipe); null offsets, as pipes and sockets
        // require. The kernel touches no memory of ours.
        let n = unsafe {
            libc::splice(
                from,
                ptr::null_mut(),
                to,
                ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// The pending error of a socket (SO_ERROR), 0 if none.
fn so_error(fd: RawFd) -> libc::c_int {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes and `len` holds err's size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        err
    }
}

/// Makes the coming close send RST (TCP) instead of FIN. Best effort.
fn set_abortive(fd: RawFd) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `lg` is a valid linger struct, passed with its size; the kernel only reads it.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Gives an empty pipe back to the pool (or closes it when the pool is full).
fn release(pool: &mut Vec<Pipe>, dir: &mut Dir) {
    if let Some(p) = dir.pipe.take() {
        if dir.pending == 0 && pool.len() < POOL_MAX {
            pool.push(p);
        }
    }
    dir.pending = 0;
    dir.full = false;
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
        let mut progress = false;

        // Drain the pipe into the destination.
        if dir.pending > 0 && wr[dst] {
            let r = match &dir.pipe {
                Some(p) => splice(p.r.as_raw_fd(), socks[dst].as_raw_fd(), dir.pending),
                None => Err(io::Error::from_raw_os_error(libc::EBADF)),
            };
            match r {
                Ok(n) if n > 0 => {
                    let n = n.min(dir.pending);
                    dir.pending -= n;
                    dir.full = false;
                    *bytes += n as u64;
                    *budget = budget.saturating_sub(n as u64);
                    progress = true;
                }
                Err(e) if would_block(&e) => wr[dst] = false,
                // The destination is gone (EPIPE, ECONNRESET) or refuses: this direction
                // is over; drop what it holds and stop reading its source. The other
                // direction may still have a reply to deliver.
                _ => {
                    let _ = dir.pipe.take(); // not empty: closed, not pooled
                    dir.pending = 0;
                    dir.full = false;
                    dir.eof = true;
                    dir.done = true;
                    return Ok(false);
                }
            }
        }

        // Fill the pipe from the source.
        if !dir.eof && rd[src] && !dir.full {
            if dir.pipe.is_none() {
                dir.pipe = Some(match pool.pop() {
                    Some(p) => p,
                    None => Pipe::new().map_err(|_| Abort)?,
                });
            }
            let r = match &dir.pipe {
                Some(p) => splice(socks[src].as_raw_fd(), p.w.as_raw_fd(), SPLICE_LEN),
                None => Err(io::Error::from_raw_os_error(libc::EBADF)),
            };
            match r {
                Ok(0) => {
                    dir.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    dir.pending += n;
                    *budget = budget.saturating_sub(n as u64);
                    progress = true;
                }
                Err(e) if would_block(&e) => {
                    if dir.pending == 0 {
                        // Empty pipe: the socket is empty. Wait for its next edge.
                        rd[src] = false;
                    } else {
                        // Socket empty or pipe full; cannot tell. Retry once bytes left.
                        dir.full = true;
                    }
                }
                Err(_) => return Err(Abort), // RST or other read error
            }
        }

        if dir.pending == 0 {
            if dir.eof {
                // All of the source's bytes reached the destination: pass the EOF on.
                // An error means the destination is gone; nothing more to tell it.
                // SAFETY: shutdown on an open socket fd.
                let _ = unsafe { libc::shutdown(socks[dst].as_raw_fd(), libc::SHUT_WR) };
                dir.done = true;
            }
            if dir.eof || !rd[src] {
                release(pool, dir);
            }
        }

        if !progress {
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
        // SAFETY: epoll_create1 with a valid flag; returns a new fd or -1.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `ep` is a fresh fd that nothing else owns.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: eventfd with valid flags; returns a new fd or -1.
        let wake = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `wake` is a fresh fd that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        epoll_add(ep.as_raw_fd(), wake.as_raw_fd(), libc::EPOLLIN as u32, WAKE)?;
        Ok(Proxy {
            ep,
            wake,
            woken: false,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            queue: VecDeque::new(),
            pool: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            bytes: 0,
        })
    }

    /// The epoll fd: the supervisor polls it for POLLIN and calls [`Proxy::run_ready`] when
    /// readable.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.ep.as_fd()
    }

    /// Starts proxying between an accepted client and a freshly connected backend (both
    /// non-blocking; the backend connect may still be in progress: EINPROGRESS is fine).
    /// Bytes the client sent already are picked up at the next [`Proxy::run_ready`]. Made
    /// non-blocking and close-on-exec here if they are not. On error both are closed.
    pub fn add(&mut self, client: OwnedFd, backend: OwnedFd) -> io::Result<()> {
        prepare(&client)?;
        prepare(&backend)?;
        let idx = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(Slot { gen: 0, conn: None });
                self.slots.len() - 1
            }
            None => return Err(io::Error::from_raw_os_error(libc::EMFILE)),
        };
        let gen = self.slots[idx].gen;
        let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        let ep = self.ep.as_raw_fd();
        let r = epoll_add(ep, client.as_raw_fd(), ev, token(gen, idx, CLIENT)).and_then(|()| {
            epoll_add(ep, backend.as_raw_fd(), ev, token(gen, idx, BACKEND)).inspect_err(|_| {
                let mut dummy = libc::epoll_event { events: 0, u64: 0 };
                // SAFETY: both fds are open; DEL ignores the event (non-null for old kernels).
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, client.as_raw_fd(), &mut dummy) };
            })
        });
        if let Err(e) = r {
            self.free.push(idx);
            return Err(e);
        }
        self.slots[idx].conn = Some(Conn {
            socks: [client, backend],
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
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into `v`, an 8-byte buffer we own.
            let _ = unsafe {
                libc::read(
                    self.wake.as_raw_fd(),
                    (&mut v as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            self.woken = false;
        }

        // SAFETY: `events` has EVENTS initialized entries the kernel may overwrite;
        // timeout 0 never blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.ep.as_raw_fd(),
                self.events.as_mut_ptr(),
                EVENTS as libc::c_int,
                0,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(EVENTS);
        for i in 0..n {
            // Copies out of the (packed on x86_64) struct.
            let data = self.events[i].u64;
            let ev = self.events[i].events;
            if data == WAKE {
                continue;
            }
            let gen = (data >> 32) as u32;
            let idx = ((data & 0xffff_ffff) >> 1) as usize;
            let side = (data & 1) as usize;
            let Some(slot) = self.slots.get_mut(idx) else {
                continue;
            };
            if slot.gen != gen {
                continue;
            }
            let Some(c) = slot.conn.as_mut() else {
                continue;
            };
            if ev & libc::EPOLLERR as u32 != 0 && so_error(c.socks[side].as_raw_fd()) != 0 {
                // Refused, reset, timed out.
                self.close(idx, true);
                continue;
            }
            if ev & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0 {
                c.rd[side] = true;
            }
            if ev & (libc::EPOLLOUT | libc::EPOLLHUP) as u32 != 0 {
                c.wr[side] = true;
            }
            if !c.queued {
                c.queued = true;
                self.queue.push_back((idx, gen));
            }
        }

        let mut total = RUN_BUDGET;
        while total > 0 {
            let Some((idx, gen)) = self.queue.pop_front() else {
                break;
            };
            let Some(slot) = self.slots.get_mut(idx) else {
                continue;
            };
            if slot.gen != gen {
                continue;
            }
            let Some(c) = slot.conn.as_mut() else {
                continue;
            };
            c.queued = false;
            let mut budget = TURN_BUDGET.min(total);
            let before = budget;
            let turn = pump(c, &mut self.pool, &mut budget, &mut self.bytes);
            total -= before - budget;
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

        if !self.queue.is_empty() && !self.woken {
            let one: u64 = 1;
            // SAFETY: writes the 8 bytes of `one` to our eventfd.
            let r = unsafe {
                libc::write(
                    self.wake.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            self.woken = r == 8;
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
                set_abortive(s.as_raw_fd());
            }
        }
        for d in &mut c.dirs {
            release(&mut self.pool, d);
        }
        // Dropping `c` closes both sockets, which also takes them out of the epoll set.
    }
}
