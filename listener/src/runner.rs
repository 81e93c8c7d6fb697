//! Runs one action: a bash that sources the callbacks file and calls `CB_<action>`, in a
//! process group of its own so that a timeout or a shutdown reaches its whole tree.
//!
//! The function name and the request's tokens are passed as `$0` and positional parameters,
//! never spliced into the `-c` text, so `echo-args $(rm -rf /)` reaches the callback as
//! three literal words. Output is relayed line by line to the listener's stderr (the
//! container log), each line prefixed `[action#id] `, control bytes escaped.
//!
//! A run ends early three ways, each TERM to its process group, then KILL: its timeout
//! (the smaller of its action's and the request's `timeout=`; reported `exit=124`, as
//! timeout(1) does), `cancel ID` (reported with the exit it died of, 143 for TERM) and the
//! listener's shutdown.
//!
//! "Done" means the bash has exited; a background grandchild that outlives it keeps its
//! output relayed, but does not hold the request open.

use std::io::Write;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest output line relayed as one log line; longer ones are split.
const MAX_OUTPUT_LINE: usize = 8 * 1024;
/// After the bash exits, how long to wait for the rest of its output before reporting done.
const DRAIN: Duration = Duration::from_millis(200);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub id: u64,
    pub action: String,
    /// The bash function (`CB_rotate_logs`).
    pub function: String,
    pub user: Option<String>,
    pub args: Vec<String>,
    pub callbacks: PathBuf,
    pub service: String,
    pub timeout: Duration,
    /// Between TERM and KILL when the timeout expires.
    pub kill_grace: Duration,
    /// Also gets every output line (the journal keeps the last ones).
    pub sink: Option<LineSink>,
}

/// Where output lines go besides the container log.
#[derive(Clone)]
pub struct LineSink(std::sync::Arc<SinkFn>);

type SinkFn = dyn Fn(&[u8]) + Send + Sync;

impl LineSink {
    pub fn new(f: impl Fn(&[u8]) + Send + Sync + 'static) -> LineSink {
        LineSink(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSink")
    }
}

/// The exit recorded for an action that could not be started: the shell's "command not
/// found", as for a main process that cannot be run.
pub const EXIT_NOT_STARTED: i32 = common::exit::NOT_FOUND as i32;
/// The exit recorded for an action whose exit status could not be read.
pub const EXIT_LOST: i32 = 255;
/// The exit recorded for an action ended by its timeout, whatever it died of: timeout(1)'s.
pub const EXIT_TIMEOUT: i32 = 124;

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The exit code, or 128+N for death by signal N.
    pub exit: i32,
    pub secs: f64,
    /// Ended by its timeout.
    pub timed_out: bool,
    /// Ended by the listener's shutdown.
    pub stopped: bool,
    /// Ended by `cancel ID`.
    pub cancelled: bool,
}

/// A started action.
#[derive(Debug)]
pub struct Running {
    spec: Spec,
    child: Child,
    /// The process group (= the bash's pid).
    pub pgid: i32,
    started: Instant,
    pumps: Vec<JoinHandle<()>>,
}

/// Starts the action's bash in its own process group.
pub fn spawn(spec: Spec) -> std::io::Result<Running> {
    // `.` is bash's `source` and also POSIX sh's: the same line for both shells.
    let mut cmd = Command::new(common::shell::shell());
    cmd.arg("-c")
        .arg(r#". "$BOSUN_CALLBACKS" && "$0" "$@""#)
        .arg(&spec.function)
        .args(&spec.args)
        .env("BOSUN_CALLBACKS", &spec.callbacks)
        .env("BOSUN_SERVICE", &spec.service)
        .env("BOSUN_ACTION", &spec.action)
        .env("BOSUN_REQUEST_ID", spec.id.to_string())
        .env("BOSUN_USER", spec.user.as_deref().unwrap_or(""))
        // The listener's own bookkeeping, meaningless to a callback.
        .env_remove("BOSUN_NEXT_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    let prefix = format!("[{}#{}] ", spec.action, spec.id);
    let mut pumps = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(relay(out, prefix.clone(), spec.sink.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(relay(err, prefix, spec.sink.clone())));
    }
    Ok(Running {
        spec,
        child,
        pgid,
        started,
        pumps,
    })
}

impl Running {
    /// Waits for the action to end, enforcing its timeout and `cancel` (TERM, then KILL
    /// after the grace) and the listener's shutdown (TERM at once, KILL after
    /// `stop_timeout`).
    pub async fn finish(
        mut self,
        shutdown: CancellationToken,
        stop_timeout: Duration,
        cancel: CancellationToken,
    ) -> Outcome {
        let deadline = tokio::time::Instant::from_std(self.started + self.spec.timeout);
        let mut timed_out = false;
        let mut stopped = false;
        let mut cancelled = false;
        let status = tokio::select! {
            st = self.child.wait() => Some(st),
            _ = tokio::time::sleep_until(deadline) => { timed_out = true; None }
            _ = shutdown.cancelled() => { stopped = true; None }
            _ = cancel.cancelled() => { cancelled = true; None }
        };
        let status = match status {
            Some(st) => {
                self.drain(DRAIN).await;
                st
            }
            None => {
                let grace = if timed_out {
                    tracing::warn!(
                        action = %self.spec.action,
                        id = self.spec.id,
                        timeout = %common::duration::show(self.spec.timeout),
                        "timed out, sending TERM"
                    );
                    self.spec.kill_grace
                } else if cancelled {
                    tracing::info!(action = %self.spec.action, id = self.spec.id, "cancelled, sending TERM");
                    self.spec.kill_grace
                } else {
                    stop_timeout
                };
                kill_group(self.pgid, Signal::SIGTERM);
                // Wait for the bash and everyone holding its output pipes (its tree).
                let ended = tokio::time::timeout(grace, async {
                    let st = self.child.wait().await;
                    for p in &mut self.pumps {
                        let _ = p.await;
                    }
                    st
                })
                .await;
                // KILL whatever is left of the group even when the bash is gone: a
                // grandchild that ignores TERM must not outlive its action.
                kill_group(self.pgid, Signal::SIGKILL);
                let st = match ended {
                    Ok(st) => st,
                    Err(_) => {
                        tracing::warn!(action = %self.spec.action, id = self.spec.id, "still running, sent KILL");
                        self.child.wait().await
                    }
                };
                self.drain(DRAIN).await;
                st
            }
        };
        let exit = match status {
            Ok(_) if timed_out => EXIT_TIMEOUT,
            Ok(st) => exit_code(st),
            Err(e) => {
                tracing::error!(action = %self.spec.action, id = self.spec.id, error = %e, "lost the action's exit status");
                EXIT_LOST
            }
        };
        Outcome {
            exit,
            secs: self.started.elapsed().as_secs_f64(),
            timed_out,
            stopped,
            cancelled,
        }
    }

    /// Lets the relays finish (EOF) for up to `limit`; they go on detached after that.
    async fn drain(&mut self, limit: Duration) {
        // A relay already awaited to its end must not be polled again.
        let mut pumps = std::mem::take(&mut self.pumps);
        pumps.retain(|p| !p.is_finished());
        let _ = tokio::time::timeout(limit, async {
            for p in pumps {
                let _ = p.await;
            }
        })
        .await;
    }
}

/// Exit code in the shell's convention: the code, or 128+N for death by signal N.
pub fn exit_code(st: ExitStatus) -> i32 {
    common::exit::Exit::from(st).code()
}

/// Signals a whole process group; a group that is already gone is not an error.
pub fn kill_group(pgid: i32, sig: Signal) {
    if pgid <= 1 {
        return;
    }
    match common::signal::signal_group(Pid::from_raw(pgid), sig) {
        Ok(()) => {}
        Err(e) => tracing::warn!(pgid, signal = %sig, error = %e, "cannot signal process group"),
    }
}

/// Copies `from` to stderr line by line with `prefix` in front of each line, and each line
/// to `sink`.
async fn relay(mut from: impl AsyncRead + Unpin, prefix: String, sink: Option<LineSink>) {
    let emit = |prefix: &str, line: &[u8]| {
        emit(prefix, line);
        if let Some(s) = &sink {
            (s.0)(line);
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            emit(&prefix, &pending[start..start + pos]);
            start += pos + 1;
        }
        while pending.len() - start >= MAX_OUTPUT_LINE {
            emit(&prefix, &pending[start..start + MAX_OUTPUT_LINE]);
            start += MAX_OUTPUT_LINE;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        emit(&prefix, &pending);
    }
}

/// One log line, written with one `write` so concurrent actions do not interleave; control
/// bytes and invalid UTF-8 escaped (`crate::text`), so output cannot steer a terminal or
/// forge a log line (the journal keeps the bytes as they were).
fn emit(prefix: &str, line: &[u8]) {
    let line = common::text::escape_output(line);
    let mut out = Vec::with_capacity(prefix.len() + line.len() + 1);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(&line);
    out.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&out);
}
