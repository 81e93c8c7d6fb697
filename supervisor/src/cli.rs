//! The `supervisor` program's command line: reads it and runs the supervisor, `status` or
//! `--exec-as`. In the library so that a test crate's binary can be the supervisor too.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Role, ServiceFile, Settings, Sources};
use crate::{run, socket, spawn, EXIT_SETUP};
use clap::{Parser, Subcommand};

/// bosun's PID 1: runs the service's main process, reaps zombies, forwards signals, owns
/// the request socket and keeps the listener alive.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Exec the command after --, dropping privileges and setting LISTEN_PID as asked
    /// (used between the setup script and the main process).
    #[arg(long, hide = true)]
    exec_as: bool,
    #[arg(long, hide = true, value_name = "UID:GID", requires = "exec_as")]
    run_as: Option<String>,
    #[arg(long, hide = true, requires = "exec_as")]
    listen_pid: bool,
    /// The main process and its arguments (instead of `exec` in service.toml). Any bytes,
    /// not only UTF-8: they are passed on as they came.
    #[arg(last = true, value_parser = clap::value_parser!(OsString))]
    exec: Vec<OsString>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Exit 0 when the main process runs and is ready, 1 otherwise (for HEALTHCHECK).
    Status,
}

/// The `supervisor` program: parses the command line and runs what it asks for.
pub fn main() -> ExitCode {
    if common::version::print_if_asked() {
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                common::exit::USAGE
            } else {
                0
            });
        }
    };
    if cli.exec_as {
        return exec_as(cli.run_as.as_deref(), cli.listen_pid, &cli.exec);
    }
    let status = matches!(cli.command, Some(Cmd::Status));
    let role = if status {
        Role::Status
    } else {
        Role::Supervisor
    };
    let settings = match load(role, cli.exec) {
        Ok(s) => s,
        Err(code) => return ExitCode::from(code),
    };
    if status {
        let code = crate::status::run(&crate::instance::mine(&settings), Duration::from_secs(5));
        return ExitCode::from(code as u8);
    }
    supervise(settings)
}

/// The settings from `$BOSUN_CONFIG` (or the default file), the environment and the
/// command; every problem is printed, and the exit code its kind decides is returned.
fn load(role: Role, exec: Vec<OsString>) -> Result<Settings, u8> {
    let env = |k: &str| std::env::var(k).ok();
    let file = std::env::var_os("BOSUN_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let sources = Sources {
        file: ServiceFile::read(&file),
        env: &env,
        exec,
        role,
    };
    Settings::load(&sources).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("supervisor: {e}");
        }
        errs.exit_code()
    })
}

/// PID 1's whole life: the log, the descriptor limit, the signal mask, the sockets, then
/// the loop until it exits.
fn supervise(settings: Settings) -> ExitCode {
    common::log::init(settings.log_filter(), settings.log_format);
    // Many held and proxied clients need descriptors: the soft limit goes up to the hard
    // one (children get the one the supervisor was started with back).
    if let Some((before, now)) = common::rlimit::raise_nofile(u64::MAX) {
        if now > before {
            tracing::debug!(before, now, "raised the open-file limit");
        }
    }
    // Signals are blocked before anything else exists, so every child and thread
    // inherits a known mask (children reset it).
    let sigfd = match run::signal_fd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("supervisor: cannot set up signal handling: {e}");
            return ExitCode::from(EXIT_SETUP as u8);
        }
    };
    let (settings, sock) = match crate::instance::claim(&settings) {
        Ok((n, s)) => {
            common::log::set_instance(n);
            (settings.for_instance(n), s)
        }
        Err(e) => {
            eprintln!("supervisor: {e}");
            return ExitCode::from(EXIT_SETUP as u8);
        }
    };
    let held = match bind_held(&settings) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("supervisor: {e}");
            sock.remove();
            return ExitCode::from(EXIT_SETUP as u8);
        }
    };
    let code = run::Supervisor::new(settings, sock, held).run(sigfd);
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The on-demand socket, when the service has one.
fn bind_held(settings: &Settings) -> Result<Option<crate::ondemand::Held>, socket::SocketError> {
    let Some(od) = &settings.on_demand else {
        return Ok(None);
    };
    let perms = crate::ondemand::HeldPerms {
        mode: od.socket_mode,
        gid: od.socket_gid,
    };
    crate::ondemand::Held::bind(&od.listen, perms).map(Some)
}

/// `supervisor --exec-as [--run-as UID:GID] [--listen-pid] -- CMD...`: drop privileges,
/// set `LISTEN_PID` to this pid (which CMD keeps across exec), then become CMD.
fn exec_as(run_as: Option<&str>, listen_pid: bool, argv: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let Some((cmd, args)) = argv.split_first() else {
        eprintln!("supervisor: --exec-as needs a command after --");
        return ExitCode::from(common::exit::USAGE);
    };
    let mut command = std::process::Command::new(cmd);
    command.args(args);
    if listen_pid {
        command.env("LISTEN_PID", std::process::id().to_string());
    }
    if let Some(spec) = run_as {
        let r = match config::parse_run_as(spec) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("supervisor: --run-as: {e}");
                return ExitCode::from(EXIT_SETUP as u8);
            }
        };
        if let Err(e) = spawn::drop_privileges(&r) {
            eprintln!("supervisor: cannot switch to {spec}: {e}");
            return ExitCode::from(EXIT_SETUP as u8);
        }
    }
    // The signal state the supervisor was started with, not std's SIGPIPE reset.
    // SAFETY: restore_inherited makes only async-signal-safe calls.
    unsafe { command.pre_exec(spawn::restore_inherited) };
    let e = command.exec();
    eprintln!("supervisor: cannot run {}: {e}", cmd.to_string_lossy());
    ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
        common::exit::NOT_FOUND
    } else {
        common::exit::NOT_EXECUTABLE
    })
}
