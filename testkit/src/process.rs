//! A program under test: spawned with whatever of its stdout and stderr is piped pumped
//! into [`Lines`] on threads that are joined before the output is read as complete, and
//! waited for with a deadline.

use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lines::{pump, Lines};
use crate::wait::POLL;

/// A running (or exited) child and its output.
pub struct Proc {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    pumps: Vec<JoinHandle<()>>,
    exited: Option<ExitStatus>,
    /// The program, for messages.
    name: String,
}

impl Proc {
    /// Spawns `cmd` (its stdio as the caller set it); each piped output is pumped.
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::spawn_echo(cmd, None)
    }

    /// [`Proc::spawn`], also copying its stderr to the test's under `echo` (for debugging).
    pub fn spawn_echo(cmd: &mut Command, echo: Option<&str>) -> Proc {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {:?}: {e}", cmd.get_program()));
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let mut pumps = Vec::new();
        // An output that is not piped here has no end to wait for: it has ended for us.
        match child.stdout.take() {
            Some(o) => pumps.push(pump(o, stdout.clone(), None)),
            None => stdout.end(),
        }
        match child.stderr.take() {
            Some(e) => pumps.push(pump(e, stderr.clone(), echo.map(str::to_string))),
            None => stderr.end(),
        }
        Proc {
            child,
            stdout,
            stderr,
            pumps,
            exited: None,
            name: cmd.get_program().to_string_lossy().into_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its exit status if it has exited (reaped here).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `within` for it to exit.
    pub fn wait_within(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_child(&mut self.child, within);
        }
        self.exited
    }

    /// Waits up to `within` for it to exit; else kills it and panics with its stderr.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        match self.wait_within(within) {
            Some(st) => st,
            None => {
                self.kill();
                panic!(
                    "{} (pid {}) did not exit within {within:?}; stderr:\n{}",
                    self.name,
                    self.child.id(),
                    self.stderr.text()
                );
            }
        }
    }

    /// Waits for the end of its output and joins the pump threads, so that the output read
    /// after this is all of it. Panics if the output stays open past `within` (something
    /// that outlived the program holds it).
    pub fn join_output(&mut self, within: Duration) {
        for (name, l) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            assert!(
                l.wait_end(within),
                "the {name} of {} was still open after {within:?}:\n{}",
                self.name,
                l.text()
            );
        }
        for p in self.pumps.drain(..) {
            p.join().expect("an output pump panicked");
        }
    }

    /// Sends `sig` (ignoring a child that is already gone).
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), sig);
    }

    /// TERM, up to `grace` for it to exit, then KILL; its exit status.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        if let Some(st) = self.try_wait() {
            return st;
        }
        self.signal(Signal::SIGTERM);
        match self.wait_within(grace) {
            Some(st) => st,
            None => self.kill(),
        }
    }

    /// KILL and reap.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(st) = self.try_wait() {
            return st;
        }
        let _ = self.child.kill();
        let st = self.child.wait().expect("wait for a killed child");
        self.exited = Some(st);
        st
    }
}

impl Drop for Proc {
    /// Nothing a test started outlives it.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits up to `within` for `child` to exit; its status, or `None` if it still runs.
pub fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().ok().flatten() {
            return Some(st);
        }
        if Instant::now() >= end {
            return None;
        }
        // A child's exit offers no event to a thread that is not its waiter.
        std::thread::sleep(POLL);
    }
}

/// Runs a client program with `input` on stdin; returns its exit status and stdout, within
/// the kit's deadline (killed and a panic past it).
pub fn run_client(cmd: &mut Command, input: &[u8]) -> (ExitStatus, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let mut stdin = p.child.stdin.take().expect("a piped stdin");
    // A client that exits without reading all of its input is not an error here.
    let _ = stdin.write_all(input);
    drop(stdin);
    let st = p.wait(crate::DEADLINE);
    p.join_output(crate::DEADLINE);
    (st, p.stdout.text())
}

/// True when `pid` is gone or a zombie (dead, waiting for a reaper that is not us).
pub fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Waits until `pid` is dead (see [`dead`]), up to the kit's deadline.
pub fn wait_dead(pid: i32) {
    crate::wait_until(crate::DEADLINE, &format!("process {pid} to die"), || {
        dead(pid).then_some(())
    });
}

/// `unshare --mount --propagation private sh -c 'SETUP && exec "$@"' sh`: the command to
/// run follows as its arguments (add them with `.arg`s); it runs in a mount namespace of
/// its own, after `SETUP` (a shell line: a tmpfs mounted, a file bound over another).
pub fn private_mounts(setup: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("{setup} && exec \"$@\""))
        .arg("sh");
    c
}

/// Gives `to` the environment changes asked of `from` (variables set and removed), so that
/// a command wrapped in another (`unshare ... sh -c '...; exec "$@"' sh CMD...`) runs with
/// the environment CMD was given.
pub fn copy_env(from: &Command, to: &mut Command) {
    for (k, v) in from.get_envs() {
        match v {
            Some(v) => to.env(k, v),
            None => to.env_remove(k),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_of_the_output_is_read_once_joined() {
        let mut c = Command::new("sh");
        c.args(["-c", "seq 1 20000; echo end >&2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Proc::spawn(&mut c);
        assert!(p.wait(crate::DEADLINE).success());
        p.join_output(crate::DEADLINE);
        assert_eq!(p.stdout.lines().len(), 20000);
        assert_eq!(p.stderr.text(), "end\n");
    }

    #[test]
    fn an_output_not_piped_is_not_waited_for() {
        let mut c = Command::new("true");
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut p = Proc::spawn(&mut c);
        p.wait(crate::DEADLINE);
        p.join_output(std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_client_gets_its_input_and_gives_its_output() {
        let (st, out) = run_client(Command::new("tr").args(["a-z", "A-Z"]), b"hi\n");
        assert!(st.success());
        assert_eq!(out, "HI\n");
    }
}
