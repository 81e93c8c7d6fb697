//! The command line, exactly as DESIGN.md section 3 gives it: `scheduler [FILE]`,
//! `check`, `next` (file or `--expr`), `status`, `send`. Usage errors exit 64 with one line, not
//! clap's 2 and a screenful; `--help` and `--version` exit 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::client::{self, SendRequest, EXIT_USAGE};
use crate::cron::CronExpr;
use crate::daemon::{self, DaemonError};
use crate::schedule::{self, When};
use crate::status::instant;

/// The schedule file when none is given.
pub const DEFAULT_FILE: &str = "/usr/local/conf/schedule.cron";

#[derive(Debug, Parser)]
#[command(
    name = "scheduler",
    version,
    about = "bosun's scheduler: runs schedule.cron, and sends requests to service sockets",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// The schedule to run.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a schedule: prints nothing (exit 0) or every `FILE:LINE:COL: message` (exit 1).
    Check {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the upcoming requests of a schedule, or the fire times of one expression.
    Next {
        #[arg(value_name = "FILE", conflicts_with = "expr")]
        file: Option<PathBuf>,
        /// One expression instead of a file: five fields or a macro, quoted.
        #[arg(long, value_name = "EXPR", allow_hyphen_values = true)]
        expr: Option<String>,
        /// Zone of --expr (default: $TZ, else UTC).
        #[arg(long, value_name = "ZONE", requires = "expr")]
        tz: Option<String>,
        /// Start strictly after this instant (default: now).
        #[arg(long, value_name = "RFC3339")]
        from: Option<String>,
        /// How many to print.
        #[arg(long, value_name = "N", default_value_t = 5)]
        count: usize,
    },
    /// Every schedule line with its last run and next fire, from the record in
    /// $BOSUN_STATE_DIR: exit 1 when a line's last run failed, was missed or refused.
    Status {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// One JSON document for scripts, with each line's recent runs.
        #[arg(long, conflicts_with = "html")]
        json: bool,
        /// The status page: one self-contained HTML file (as BOSUN_STATUS_HTML).
        #[arg(long)]
        html: bool,
    },
    /// Send one request to <run_dir>/<SERVICE>-request.sock and print the replies.
    /// SERVICE may be a replica target: `php.2` (that instance), `php@each` (every live
    /// instance, in parallel, replies prefixed `php.<n>: `; exit 0 when all ended exit=0,
    /// 69 when none is live, else the first non-zero code in instance order).
    Send {
        /// Key the request (`@KEY`): the service runs a key once, and a repeat gets the
        /// first run's replies (1-64 of A-Z a-z 0-9 . _ : -).
        #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
        key: Option<String>,
        /// The user (site or tenant) the action runs for.
        #[arg(long, value_name = "U")]
        user: Option<String>,
        /// Return once the action is accepted.
        #[arg(long)]
        no_wait: bool,
        #[arg(value_name = "SERVICE")]
        service: String,
        #[arg(value_name = "ACTION")]
        action: String,
        #[arg(
            value_name = "ARG",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        args: Vec<String>,
    },
}

/// The whole program; `main.rs` only calls this.
pub fn main() -> ExitCode {
    if common::version::print_if_asked() {
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    ExitCode::from(dispatch(cli))
}

fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // clap's first paragraph (the error and, for missing arguments, their names)
            // on one line; the usage block after it is left to --help.
            let text = e.render().to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.trim_start_matches("error: ");
            eprintln!("scheduler: {first} (see scheduler --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn dispatch(cli: Cli) -> u8 {
    let default = || PathBuf::from(DEFAULT_FILE);
    match cli.command {
        None => run_daemon(cli.file.unwrap_or_else(default)),
        Some(Command::Check { file }) => check(&file.unwrap_or_else(default)),
        Some(Command::Next {
            file,
            expr,
            tz,
            from,
            count,
        }) => {
            let from = match from.as_deref().map(DateTime::parse_from_rfc3339) {
                None => Utc::now(),
                Some(Ok(t)) => t.with_timezone(&Utc),
                Some(Err(e)) => {
                    eprintln!("scheduler: --from is not an RFC3339 instant ({e}), e.g. 2026-11-22T04:00:00+01:00");
                    return EXIT_USAGE;
                }
            };
            match expr {
                Some(expr) => next_expr(&expr, tz.as_deref(), from, count),
                None => next_file(&file.unwrap_or_else(default), from, count),
            }
        }
        Some(Command::Status { file, json, html }) => {
            let format = match (json, html) {
                (true, _) => crate::status::Format::Json,
                (_, true) => crate::status::Format::Html,
                _ => crate::status::Format::Text,
            };
            status(&file.unwrap_or_else(default), format)
        }
        Some(Command::Send {
            key,
            user,
            no_wait,
            service,
            action,
            args,
        }) => {
            let req = SendRequest {
                key,
                user,
                service,
                action,
                args,
                no_wait,
            };
            let run_dir =
                common::settings::scheduler::SchedulerEnv::run_dir(&|k| std::env::var(k).ok());
            client::send(
                &run_dir,
                &req,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
        }
    }
}

fn read_schedule(path: &Path) -> Result<schedule::Schedule, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    schedule::parse(
        &path.display().to_string(),
        &bytes,
        schedule::default_zone(),
    )
    .map_err(|e| e.to_string())
}

fn check(path: &Path) -> u8 {
    match read_schedule(path) {
        Ok(_) => 0,
        Err(text) => {
            println!("{text}");
            1
        }
    }
}

fn status(path: &Path, format: crate::status::Format) -> u8 {
    let env = |k: &str| std::env::var(k).ok();
    let Some(state_dir) = common::settings::scheduler::SchedulerEnv::state_dir(&env) else {
        eprintln!("scheduler status: BOSUN_STATE_DIR is not set: the record of runs lives there (set it as for the daemon)");
        return EXIT_USAGE;
    };
    let schedule = match read_schedule(path) {
        Ok(s) => s,
        Err(text) => {
            eprintln!("{text}");
            return 1;
        }
    };
    crate::status::status(
        &path.display().to_string(),
        &schedule,
        Path::new(&state_dir),
        Utc::now(),
        format,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

fn next_file(path: &Path, from: DateTime<Utc>, count: usize) -> u8 {
    let s = match read_schedule(path) {
        Ok(s) => s,
        Err(text) => {
            eprintln!("{text}");
            return 1;
        }
    };
    let mut all = Vec::new();
    for e in &s.entries {
        let When::Cron(expr) = &e.when else { continue };
        all.extend(
            crate::plan::fires(expr, &e.options.zone, from)
                .take(count)
                .map(|t| (t, e.line, e)),
        );
    }
    all.sort_by_key(|(t, line, _)| (*t, *line));
    let mut out = std::io::stdout().lock();
    for (t, _, e) in all.into_iter().take(count) {
        let _ = writeln!(out, "{} {}", instant(t, e.options.zone), e.target());
    }
    0
}

fn next_expr(expr: &str, tz: Option<&str>, from: DateTime<Utc>, count: usize) -> u8 {
    let zone = match tz {
        None => schedule::default_zone(),
        Some(name) => match schedule::parse_zone(name) {
            Ok(z) => z,
            Err(msg) => {
                eprintln!("--tz: {msg}");
                return 1;
            }
        },
    };
    let e = match CronExpr::parse(expr) {
        Ok(e) => e,
        Err(errs) => {
            for err in errs.0 {
                eprintln!("--expr:1:{}: {}", err.col + 1, err.message);
            }
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    for t in crate::plan::fires(&e, &zone, from).take(count) {
        let _ = writeln!(out, "{}", instant(t, zone));
    }
    0
}

/// The daemon's log, by the same rules as the supervisor's and the listener's: a bad
/// `BOSUN_LOG` or `BOSUN_LOG_FORMAT` is a usage error, one line each.
fn init_logging() -> Result<(), u8> {
    match common::log::from_lookup(|k| std::env::var(k).ok()) {
        Ok((filter, format)) => {
            common::log::init(filter, format);
            Ok(())
        }
        Err(errs) => {
            for e in errs {
                eprintln!("scheduler: {e}");
            }
            Err(EXIT_USAGE)
        }
    }
}

fn run_daemon(file: PathBuf) -> u8 {
    if let Err(code) = init_logging() {
        return code;
    }
    let config = match daemon::Config::from_env(file) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return 1;
        }
    };
    let result = rt.block_on(async {
        // HUP and USR1/USR2 would end the process by default. The supervisor forwards
        // them (a `reload` request is a HUP): edits are picked up by watching the file
        // already, so they are logged and otherwise ignored.
        for (kind, name) in [
            (tokio::signal::unix::SignalKind::hangup(), "HUP"),
            (tokio::signal::unix::SignalKind::user_defined1(), "USR1"),
            (tokio::signal::unix::SignalKind::user_defined2(), "USR2"),
        ] {
            if let Ok(mut sig) = tokio::signal::unix::signal(kind) {
                tokio::spawn(async move {
                    while sig.recv().await.is_some() {
                        tracing::debug!(signal = name, "ignored: edits are read as they happen");
                    }
                });
            }
        }
        // Installed now, not when the loop first polls `shutdown` (after loading the
        // schedule and catching up): a TERM during start-up would otherwise kill the
        // process (exit by signal) instead of stopping it (exit 0).
        use tokio::signal::unix::{signal, SignalKind};
        let (term, int) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let shutdown = async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!(signal = "TERM", "stopping"),
                        _ = int.recv() => tracing::info!(signal = "INT", "stopping"),
                    }
                }
                _ => {
                    tracing::error!("cannot install signal handlers; stop with KILL");
                    std::future::pending::<()>().await;
                }
            }
        };
        daemon::run(config, shutdown).await
    });
    match result {
        Ok(()) => 0,
        Err(DaemonError::Schedule(errors)) => {
            for line in errors.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!(
                errors = errors.errors.len(),
                "the schedule does not parse; not starting"
            );
            1
        }
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}
