//! bosun's `listener`: serves `<service>-request.sock` for the supervisor.
//!
//! The supervisor starts it with fd 3 = the listening request socket and fd 4 = its end of
//! the control socketpair (`proto::control`), and stops it with SIGTERM. Each module is one
//! duty:
//!
//! * [`config`]: the `BOSUN_*` settings, validated all at once.
//! * [`callbacks`]: which actions exist (the `CB_*` functions of the callbacks file).
//! * [`server`]: the socket I/O: accept, read the line, write the replies, spawn, shutdown.
//! * [`admit`]: whether an action request runs, replays its key or is refused (busy,
//!   too-many, keys, limits), pure and unit-tested with a fake journal and clock.
//! * [`builtins`]: the listener's built-ins (`ping`, `help`, `history`, `log`, `version`)
//!   and what it adds to the supervisor's (`status`, `metrics`).
//! * [`runner`]: one action's process group, output relay, timeout.
//! * [`control`]: the channel to the supervisor (hold/release, forwarded built-ins).
//! * [`metrics`]: the journal's part of the `metrics` built-in.
//! * text from others (action output, bad requests) is made safe for the log by `common::text`.
//!
//! Its log is `common::log`'s, as the supervisor's and the scheduler's.
//!
//! [`main`] is the whole program; `src/main.rs` only calls it.

pub mod admit;
pub mod builtins;
pub mod callbacks;
pub mod config;
pub mod control;
pub mod metrics;
pub mod runner;
pub mod server;

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

use config::Config;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::stat::{fstat, SFlag};
use proto::control::{CONTROL_FD, LISTEN_FD};

/// Exit code for bad settings or a missing socket (the supervisor should not retry fast).
pub const EXIT_CONFIG: u8 = common::exit::LISTENER_CONFIG;

/// Runs the listener: reads the environment, takes fds 3 and 4, serves until SIGTERM or
/// SIGINT, and returns 0 once every running action has reported `done`. `--version`
/// (or `-V`) prints `common::version`'s line and returns 0.
pub fn main() -> ExitCode {
    if common::version::print_if_asked() {
        return ExitCode::SUCCESS;
    }
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    common::log::init(cfg.settings.log_filter(), cfg.settings.log_format);
    if let Some(n) = cfg.settings.instance {
        common::log::set_instance(n);
    }
    raise_fd_limit();
    let listen = match take_socket(LISTEN_FD) {
        Ok(fd) => fd,
        Err(why) => {
            eprintln!(
                "listener: fd {LISTEN_FD} {why}; the listener is started by the supervisor, \
                 with the request socket as fd {LISTEN_FD}"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let control = match take_socket(CONTROL_FD) {
        Ok(fd) => Some(fd),
        Err(why) => {
            tracing::warn!(
                fd = CONTROL_FD,
                problem = why,
                "no control socket: start/stop/restart/reload/status will answer unavailable"
            );
            None
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("listener: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = rt.block_on(async move {
        let std_listener = std::os::unix::net::UnixListener::from(listen);
        let listener = tokio::net::UnixListener::from_std(std_listener)?;
        let control = control::Control::new(control)?;
        let shutdown = shutdown_signal()?;
        server::serve(listener, control, cfg, shutdown).await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve");
            ExitCode::FAILURE
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT. Handlers are installed before it returns, so
/// a signal arriving at once is not lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "TERM",
            _ = int.recv() => "INT",
        };
        tracing::info!(signal = name, "received");
    })
}

/// Takes an inherited socket fd: checks it is a socket, makes it non-blocking and
/// close-on-exec (the actions must not inherit it).
fn take_socket(fd: RawFd) -> Result<OwnedFd, &'static str> {
    // SAFETY: only borrowed for the checks below; ownership is taken once they pass.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let st = fstat(borrowed).map_err(|_| "is not open")?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err("is not a socket");
    }
    let flags = fcntl(borrowed, FcntlArg::F_GETFL).map_err(|_| "is not usable")?;
    fcntl(
        borrowed,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|_| "cannot be made non-blocking")?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|_| "is not usable")?;
    // SAFETY: the fd was inherited for us alone (the supervisor's contract), is open (fstat
    // succeeded) and nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// 1,000 clients at once need more than the common soft limit of 1024 fds: the soft limit
/// is raised to the hard one, up to [`NOFILE_CAP`] (never lowered).
fn raise_fd_limit() {
    if let Some((before, now)) = common::rlimit::raise_nofile(NOFILE_CAP) {
        if now > before {
            tracing::debug!(before, now, "open-file limit raised");
        }
    }
}

/// How far the listener raises its soft `RLIMIT_NOFILE`: enough for [`server`]'s 1024
/// connections and far beyond, without taking a hard limit of millions.
const NOFILE_CAP: u64 = 65536;
