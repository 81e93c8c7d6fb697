//! The listener's built-ins: the handlers of the [`By::Listener`](proto::By) rows of
//! `proto::Builtin::TABLE` (`ping`, `help`, `history`, `log`, `version`, and `cancel`,
//! whose wait for the run's end is the server's), and what the
//! listener adds to two answers of the supervisor (`status`: the running actions;
//! `metrics`: the journal's families).
//!
//! Each handler returns the reply lines; the server writes them. A new built-in the
//! listener answers is one arm of [`answer`] and its function here.

use std::path::Path;
use std::sync::Mutex;

use journal::{Journal, Run};
use proto::status::Action;
use proto::{Builtin, ErrorCode, Query, Reply, Request};

use crate::callbacks::Known;

/// At most this many runs in a `history` reply (DESIGN.md section 7).
pub const HISTORY_LINES: usize = 100;

/// What the handlers may look at.
pub struct Ctx<'a> {
    /// The actions of the callbacks file.
    pub known: &'a Known,
    /// Its path, for `help` to name a broken file.
    pub callbacks: &'a Path,
    pub journal: &'a Mutex<Journal>,
    /// The replica's instance, which `history` names.
    pub instance: u32,
}

impl Ctx<'_> {
    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The answer to a built-in the listener answers, its words already checked.
pub fn answer(b: Builtin, req: &Request, ctx: &Ctx<'_>) -> Vec<Reply> {
    match b {
        Builtin::Ping => vec![Reply::Text("pong".into())],
        Builtin::Help => help(ctx),
        Builtin::History | Builtin::Log => query(req, ctx),
        Builtin::Version => vec![Reply::Text(common::version::text())],
        // The table says the supervisor answers the others: never asked here.
        other => vec![Reply::error(
            ErrorCode::Unavailable,
            format!("{other} is not answered here"),
        )],
    }
}

/// `cancel ID`: switches off run `id` (its runner then sends TERM to its process group,
/// KILL after the grace) and returns it; the reply instead when the id is not a number or
/// names no running action (`error not-found`: unknown, or already ended).
pub fn cancel(
    req: &Request,
    runs: &std::collections::HashMap<u64, tokio_util::sync::CancellationToken>,
) -> Result<u64, Reply> {
    let id = match req.cancel_id() {
        Some(Ok(id)) => id,
        Some(Err(e)) => return Err(Reply::error(e.code(), e.to_string())),
        None => return Err(Reply::error(ErrorCode::BadRequest, "usage: cancel ID")),
    };
    match runs.get(&id) {
        Some(switch) => {
            tracing::info!(id, "cancel");
            switch.cancel();
            Ok(id)
        }
        None => Err(Reply::error(
            ErrorCode::NotFound,
            format!("no running action has id {id}"),
        )),
    }
}

/// The answer to `cancel ID` once the run has ended, as `stop` answers `stopped exit=N`.
pub fn cancelled(id: u64, exit: i32) -> Reply {
    Reply::Text(format!("cancelled id={id} exit={exit}"))
}

/// `help`: the built-ins, then the actions, one a line (or why the callbacks file is
/// unusable).
fn help(ctx: &Ctx<'_>) -> Vec<Reply> {
    let mut lines: Vec<String> = Builtin::names().map(str::to_string).collect();
    match ctx.known {
        Known::Actions(m) => {
            lines.extend(m.keys().filter(|a| Builtin::parse(a).is_none()).cloned())
        }
        Known::Missing => {}
        Known::Broken(msg) => lines.push(format!(
            "# callbacks file {} unusable: {msg}",
            ctx.callbacks.display()
        )),
    }
    lines.into_iter().map(Reply::Text).collect()
}

/// `history [ACTION]` (newest first, one run a line) and `log ID` (the run's output lines,
/// oldest first).
fn query(req: &Request, ctx: &Ctx<'_>) -> Vec<Reply> {
    let q = match req.query() {
        Some(Ok(q)) => q,
        Some(Err(e)) => return vec![Reply::error(e.code(), e.to_string())],
        None => return Vec::new(),
    };
    let j = ctx.journal();
    match q {
        Query::History(action) => j
            .history(action.as_deref(), HISTORY_LINES)
            .iter()
            .map(|r| Reply::Text(history_line(r, ctx.instance)))
            .collect(),
        Query::Log(id) => match j.get(id) {
            None => vec![Reply::error(
                ErrorCode::NotFound,
                format!("no run {id} in the journal"),
            )],
            // as the container log shows them: control bytes escaped
            Some(run) => run
                .lines
                .iter()
                .map(|l| {
                    let shown = common::text::escape_output(l);
                    Reply::Text(String::from_utf8_lossy(&shown).into_owned())
                })
                .collect(),
        },
    }
}

/// One run of `history` (DESIGN.md section 7):
/// `<id> <start RFC3339> <action> user=<user>|- exit=<code>|running|lost secs=<secs>|- by=<uid> instance=<n>`
/// (RFC 3339 in UTC with `Z`, second precision; secs with 3 decimals like the `done`
/// line's).
pub fn history_line(run: &Run, instance: u32) -> String {
    let (exit, secs) = match (run.end, run.lost) {
        (Some(e), _) => (e.exit.to_string(), format!("{:.3}", e.secs)),
        (None, true) => ("lost".to_string(), "-".to_string()),
        (None, false) => ("running".to_string(), "-".to_string()),
    };
    format!(
        "{} {} {} user={} exit={exit} secs={secs} by={} instance={instance}",
        run.id,
        common::time::rfc3339(run.start_ms),
        run.action,
        run.user.as_deref().unwrap_or("-"),
        run.uid
    )
}

/// `status`: the supervisor's part (`proto::Status`'s first line) as it sent it, then one
/// line per running action (its `action` lines). Should the supervisor refuse
/// (`error ...`), the action lines follow its line all the same.
pub fn status(from_supervisor: Vec<Reply>, actions: Vec<Action>) -> Vec<Reply> {
    let mut out = from_supervisor;
    out.extend(actions.iter().map(|a| Reply::Text(a.to_string())));
    out
}

/// `metrics`: the supervisor's families, then the journal's; the supervisor's refusal as
/// it is.
pub fn metrics(
    from_supervisor: Vec<Reply>,
    tallies: &std::collections::BTreeMap<String, journal::Tally>,
    instance: u32,
) -> Vec<Reply> {
    if is_refusal(&from_supervisor) {
        return from_supervisor;
    }
    let text = join(&from_supervisor);
    vec![Reply::Text(crate::metrics::reply(&text, tallies, instance))]
}

/// Whether an answer is a refusal (`error ...`) rather than what was asked for.
pub fn is_refusal(replies: &[Reply]) -> bool {
    matches!(replies.first(), Some(Reply::Error { .. }))
}

/// The lines as they go on the wire, without the last newline; nothing at all for none (no
/// runs in `history`, no output in `log`).
pub fn join(replies: &[Reply]) -> String {
    let lines: Vec<String> = replies.iter().map(Reply::to_string).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_with<T>(known: &Known, f: impl FnOnce(&Ctx<'_>) -> T) -> T {
        let dir = std::env::temp_dir().join(format!("bosun-builtins-{}", std::process::id()));
        let (journal, _) = Journal::open(&dir, "svc");
        let journal = Mutex::new(journal);
        let ctx = Ctx {
            known,
            callbacks: Path::new("/x/docker-callbacks.sh"),
            journal: &journal,
            instance: 1,
        };
        let out = f(&ctx);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    fn ask(line: &str, known: &Known) -> Vec<Reply> {
        let req = Request::parse(line.as_bytes(), |a| known.has(a)).unwrap();
        ctx_with(known, |ctx| answer(req.builtin().unwrap(), &req, ctx))
    }

    #[test]
    fn ping_and_version() {
        assert_eq!(ask("ping", &Known::Missing), [Reply::Text("pong".into())]);
        let v = join(&ask("version", &Known::Missing));
        assert_eq!(v, common::version::text());
        assert!(v.starts_with("bosun "), "{v}");
    }

    #[test]
    fn help_lists_every_builtin_then_the_actions() {
        let mut m = std::collections::BTreeMap::new();
        m.insert("backup".to_string(), "CB_backup".to_string());
        let lines = join(&ask("help", &Known::Actions(m)));
        let want: Vec<&str> = Builtin::names().chain(["backup"]).collect();
        assert_eq!(lines, want.join("\n"));
        assert!(lines.contains("\nversion\n"), "{lines}");
        let broken = join(&ask("help", &Known::Broken("syntax error".into())));
        assert!(
            broken.ends_with("\n# callbacks file /x/docker-callbacks.sh unusable: syntax error")
        );
    }

    #[test]
    fn log_of_an_unknown_run_is_not_found() {
        assert_eq!(
            join(&ask("log 9", &Known::Missing)),
            "error not-found no run 9 in the journal"
        );
        assert_eq!(ask("history", &Known::Missing), []);
    }

    #[test]
    fn cancel_switches_off_a_running_id_only() {
        use tokio_util::sync::CancellationToken;
        let parse = |l: &str| Request::parse(l.as_bytes(), |_| false).unwrap();
        let mut runs = std::collections::HashMap::new();
        let t = CancellationToken::new();
        runs.insert(4, t.clone());
        assert_eq!(cancel(&parse("cancel 4"), &runs), Ok(4));
        assert!(t.is_cancelled());
        assert_eq!(
            join(&[cancel(&parse("cancel 5"), &runs).unwrap_err()]),
            "error not-found no running action has id 5"
        );
        assert_eq!(
            join(&[cancel(&parse("cancel x"), &runs).unwrap_err()]),
            r#"error bad-request "x" is not a run id"#
        );
        assert_eq!(
            cancelled(4, 143),
            Reply::Text("cancelled id=4 exit=143".into())
        );
    }

    #[test]
    fn history_lines() {
        let mut run = Run {
            id: 5,
            action: "odd".into(),
            user: Some("forum".into()),
            key: None,
            digest: None,
            uid: 1000,
            start_ms: 1_796_428_085_000,
            end: Some(journal::End {
                end_ms: 0,
                exit: 4,
                secs: 0.5,
            }),
            lost: false,
            lines: Vec::new(),
        };
        assert_eq!(
            history_line(&run, 1),
            "5 2026-12-04T23:48:05Z odd user=forum exit=4 secs=0.500 by=1000 instance=1"
        );
        run.end = None;
        assert_eq!(
            history_line(&run, 2),
            "5 2026-12-04T23:48:05Z odd user=forum exit=running secs=- by=1000 instance=2"
        );
        run.lost = true;
        run.user = None;
        run.uid = 0;
        assert_eq!(
            history_line(&run, 1),
            "5 2026-12-04T23:48:05Z odd user=- exit=lost secs=- by=0 instance=1"
        );
        run.lost = false;
        run.end = Some(journal::End {
            end_ms: 0,
            exit: 137,
            secs: 12.3456,
        });
        assert!(history_line(&run, 1).ends_with(" exit=137 secs=12.346 by=0 instance=1"));
    }

    #[test]
    fn status_appends_actions_and_metrics_keep_a_refusal() {
        let sup = vec![Reply::Text("svc running pid=3 ready=yes restarts=0".into())];
        let actions = vec![Action {
            name: "a".into(),
            id: 1,
            user: None,
            secs: 0,
        }];
        let out = status(sup, actions.clone());
        assert_eq!(
            join(&out),
            "svc running pid=3 ready=yes restarts=0\naction a id=1 user=- secs=0"
        );
        let refused = vec![Reply::error(ErrorCode::Unavailable, "x")];
        assert_eq!(
            join(&status(refused, actions)),
            "error unavailable x\naction a id=1 user=- secs=0"
        );
        let refused = vec![Reply::error(
            ErrorCode::ShuttingDown,
            "the container is stopping",
        )];
        let tallies = Default::default();
        assert_eq!(metrics(refused.clone(), &tallies, 1), refused);
        let m = join(&metrics(
            vec![Reply::Text("bosun_main_up 1".into())],
            &tallies,
            1,
        ));
        assert!(
            m.starts_with("bosun_main_up 1\n# HELP bosun_actions_total "),
            "{m}"
        );
    }
}
