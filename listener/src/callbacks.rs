//! Which actions exist: the `CB_*` functions the callbacks file defines.
//!
//! bash is the only reliable parser of a bash file, so discovery sources the file in a
//! throw-away bash and asks it with `compgen -A function CB_`. The answer is cached under the
//! file's identity (inode, size, mtime) and re-checked with one `stat` per request, so an
//! edit takes effect on the next request without a restart and without a bash per request.
//! A file that does not source cleanly is remembered as broken with bash's own message.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::process::Command;
use tokio::sync::Mutex;

/// How long sourcing the file may take before it is declared broken.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the callbacks file offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// No file: no actions (not an error; a service may have none).
    Missing,
    /// Action name (`rotate-logs`) -> bash function (`CB_rotate_logs`).
    Actions(BTreeMap<String, String>),
    /// The file exists but bash could not source it: bash's message.
    Broken(String),
}

impl Known {
    /// True when `action` names a callback.
    pub fn has(&self, action: &str) -> bool {
        matches!(self, Known::Actions(m) if m.contains_key(action))
    }

    /// The bash function of `action`.
    pub fn function(&self, action: &str) -> Option<&str> {
        match self {
            Known::Actions(m) => m.get(action).map(String::as_str),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Option<SystemTime>,
}

/// The callbacks file and the cached result of its discovery.
#[derive(Debug)]
pub struct Callbacks {
    path: PathBuf,
    service: String,
    cache: Mutex<Option<(Option<Stamp>, std::sync::Arc<Known>)>>,
}

impl Callbacks {
    pub fn new(path: PathBuf, service: String) -> Callbacks {
        Callbacks {
            path,
            service,
            cache: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current actions, re-discovered when the file changed since the last look.
    /// Concurrent callers share one discovery (the lock is held across it).
    pub async fn known(&self) -> std::sync::Arc<Known> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => Ok(Some(Stamp {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime: m.modified().ok(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let mut cache = self.cache.lock().await;
        let stamp = match stamp {
            Ok(s) => s,
            Err(e) => {
                let known = std::sync::Arc::new(Known::Broken(format!("cannot read it: {e}")));
                *cache = None;
                return known;
            }
        };
        if let Some((cached, known)) = cache.as_ref() {
            if *cached == stamp {
                return known.clone();
            }
        }
        let known = std::sync::Arc::new(match stamp {
            None => Known::Missing,
            Some(_) => discover(&self.path, &self.service).await,
        });
        match &*known {
            Known::Broken(msg) => {
                tracing::error!(file = %self.path.display(), error = %msg, "callbacks file unusable")
            }
            Known::Actions(m) => {
                let actions: Vec<&str> = m.keys().map(String::as_str).collect();
                tracing::info!(file = %self.path.display(), actions = %actions.join(","), "callbacks loaded")
            }
            Known::Missing => {
                tracing::info!(file = %self.path.display(), "no callbacks file, no actions")
            }
        }
        *cache = Some((stamp, known.clone()));
        known
    }
}

/// Sources the file in the shell and lists its `CB_*` functions: bash's `compgen`; in
/// `/bin/sh` (no bash in the image), the `CB_` names written in the file that are
/// functions once it is sourced.
async fn discover(path: &Path, service: &str) -> Known {
    let mut cmd = Command::new(common::shell::shell());
    if common::shell::is_bash() {
        cmd.arg("-c")
            .arg(r#"source "$1" >/dev/null; echo "status $?"; compgen -A function CB_; echo end"#)
            .arg("bosun-discover")
            .arg(path);
    } else {
        let text = std::fs::read(path).unwrap_or_default();
        cmd.arg("-c")
            .arg(
                r#"f=$1; shift; . "$f" >/dev/null; echo "status $?"
for n in "$@"; do case $(type "$n" 2>/dev/null) in *function*) echo "$n";; esac; done
echo end"#,
            )
            .arg("bosun-discover")
            .arg(path)
            .args(cb_names(&text));
    }
    cmd.env("BOSUN_SERVICE", service)
        .env("BOSUN_CALLBACKS", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Known::Broken(format!("cannot run {}: {e}", common::shell::shell())),
    };
    let pgid = child.id().map(|p| p as i32);
    let out = match tokio::time::timeout(DISCOVERY_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Known::Broken(format!("cannot run {}: {e}", common::shell::shell())),
        Err(_) => {
            if let Some(pgid) = pgid {
                crate::runner::kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            return Known::Broken(format!(
                "sourcing it took longer than {}",
                common::duration::show(DISCOVERY_TIMEOUT)
            ));
        }
    };
    // The script prints `status N`, then the functions, then `end`; anything else means
    // the file took bash somewhere unexpected (an `exit` in it, say).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bash_says: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut lines = stdout.lines();
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("status "))
        .and_then(|s| s.parse::<i32>().ok());
    let functions: Vec<&str> = lines.by_ref().take_while(|l| *l != "end").collect();
    let ended = stdout.lines().any(|l| l == "end");
    let problem = match status {
        Some(0) if ended => None,
        Some(n) => Some(format!("sourcing it returned status {n}")),
        None => Some(format!("sourcing it ended bash ({})", out.status)),
    };
    if let Some(problem) = problem {
        return Known::Broken(if bash_says.is_empty() {
            problem
        } else {
            bash_says.join("; ")
        });
    }
    Known::Actions(
        functions
            .into_iter()
            .map(|f| (action_name(f), f.to_string()))
            .collect(),
    )
}

/// The distinct `CB_*` identifiers written in a callbacks file, in order.
fn cb_names(text: &[u8]) -> Vec<String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i + 3 < text.len() {
        if text[i..].starts_with(b"CB_") && (i == 0 || !word(text[i - 1])) {
            let end = text[i..]
                .iter()
                .position(|&b| !word(b))
                .map_or(text.len(), |n| i + n);
            let name = String::from_utf8_lossy(&text[i..end]).into_owned();
            if !out.contains(&name) {
                out.push(name);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// `CB_rotate_logs` -> `rotate-logs`.
pub fn action_name(function: &str) -> String {
    function
        .strip_prefix("CB_")
        .unwrap_or(function)
        .replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cb_names_in_a_file() {
        let text = b"CB_a() { :; }\n# CB_b is below\nCB_b () {\n  XCB_not; CB_a\n}\nfunction CB_c { :; }\n";
        assert_eq!(cb_names(text), ["CB_a", "CB_b", "CB_c"]);
        assert!(cb_names(b"").is_empty());
        assert_eq!(cb_names(b"CB_"), Vec::<String>::new());
    }

    #[test]
    fn names() {
        assert_eq!(action_name("CB_rotate_logs"), "rotate-logs");
        assert_eq!(
            proto::callback_function(&action_name("CB_nightly_backup")),
            "CB_nightly_backup"
        );
    }
}
