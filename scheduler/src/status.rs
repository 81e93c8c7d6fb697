//! `scheduler status [FILE] [--json|--html]`: every schedule line with its last run and next
//! fire, read from the record ([`crate::record`]) in `$BOSUN_STATE_DIR`; `--html` is the
//! status page ([`crate::page`]), the one the daemon keeps in `BOSUN_STATUS_HTML`.
//!
//! It only reads files the daemon appends to or renames over, so it runs beside a running
//! daemon (`docker compose exec scheduler scheduler status`). Lines are those of the file
//! as it is now, found in the record by their identity ([`crate::schedule::Entry::key`]),
//! not their number: a line moved by an edit keeps its history. The JSON form is written by
//! hand: one small document, no serde needed.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

use crate::page;
use crate::record::{self, Run};
use crate::schedule::{Entry, Schedule};
use crate::summary::Summary;
use common::text::json as js;

/// What `scheduler status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per schedule line (DESIGN.md section 3).
    Text,
    /// One JSON document with every recorded run.
    Json,
    /// The status page.
    Html,
}

/// One line of the report: a schedule line, or one instance of a `php@each` line (whose
/// entry then names the instance, `php.2`, [`crate::fanout::groups`]).
struct Line {
    entry: Entry,
    runs: Vec<Run>,
    next: Option<DateTime<Utc>>,
}

impl Line {
    fn last(&self) -> Option<&Run> {
        self.runs.last()
    }

    fn result(&self) -> &'static str {
        self.last().map_or("never", |r| r.result.as_str())
    }
}

/// An instant as the command line prints it: RFC 3339 in `zone`, to the second.
pub fn instant(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Prints the report of `schedule` (read from `file`) to `out`, reports damaged or
/// unreadable record files on `err`, and returns the exit code: 0 when no line's last run
/// is `failed`, `missed` or `refused`, 1 otherwise.
pub fn status(
    file: &str,
    schedule: &Schedule,
    state_dir: &Path,
    now: DateTime<Utc>,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let lines: Vec<Line> = schedule
        .entries
        .iter()
        .flat_map(|entry| {
            let path = record::path(state_dir, &entry.key());
            let runs = match record::read_file(&path) {
                Ok(read) => {
                    if read.damaged > 0 {
                        let _ = writeln!(
                            err,
                            "scheduler status: {}: {} damaged records skipped",
                            path.display(),
                            read.damaged
                        );
                    }
                    read.runs
                }
                Err(e) => {
                    let _ = writeln!(
                        err,
                        "scheduler status: {}: cannot read: {e}",
                        path.display()
                    );
                    Vec::new()
                }
            };
            let next = entry.next_after(now);
            crate::fanout::groups(&entry.service, runs)
                .into_iter()
                .map(move |(service, runs)| Line {
                    entry: Entry {
                        service,
                        ..entry.clone()
                    },
                    runs,
                    next,
                })
        })
        .collect();
    let bad = lines
        .iter()
        .any(|l| l.last().is_some_and(|r| r.result.is_bad()));
    let text = match format {
        Format::Text => to_text(file, &lines),
        Format::Json => to_json(file, &lines, now, !bad),
        Format::Html => to_html(file, &lines, now),
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    u8::from(bad)
}

fn to_text(file: &str, lines: &[Line]) -> String {
    let mut s = String::new();
    for l in lines {
        let e = &l.entry;
        let last = l.last();
        let _ = writeln!(
            s,
            "{file}:{} {} {} user={} last={} result={} exit={} next={}",
            e.line,
            e.service,
            e.action,
            e.user.as_deref().unwrap_or("-"),
            last.map_or("never".into(), |r| instant(r.fire, e.options.zone)),
            l.result(),
            last.and_then(|r| r.exit)
                .map_or("-".into(), |x| x.to_string()),
            l.next.map_or("-".into(), |t| instant(t, e.options.zone)),
        );
    }
    s
}

fn to_html(file: &str, lines: &[Line], now: DateTime<Utc>) -> String {
    let sums: Vec<Summary> = lines.iter().map(|l| Summary::from_runs(&l.runs)).collect();
    let rows: Vec<page::Row> = lines
        .iter()
        .zip(&sums)
        .map(|(l, summary)| page::Row::at(&l.entry, summary, now))
        .collect();
    page::render(file, &rows, now)
}

/// `null` or the value.
fn jopt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "null".to_string(), f)
}

fn to_json(file: &str, lines: &[Line], now: DateTime<Utc>, ok: bool) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"file\":{},\"now\":{},\"ok\":{ok},\"lines\":[",
        js(file),
        js(&common::time::rfc3339(now.timestamp_millis()))
    );
    for (i, l) in lines.iter().enumerate() {
        let e = &l.entry;
        let last = l.last();
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"file\":{},\"line\":{},\"service\":{},\"action\":{},\"user\":{},\"schedule\":{},\"zone\":{},\"last\":{},\"result\":{},\"exit\":{},\"next\":{},\"runs\":[",
            js(file),
            e.line,
            js(&e.service),
            js(&e.action),
            jopt(e.user.as_deref(), js),
            js(&e.when.to_string()),
            js(e.options.zone.name()),
            jopt(last, |r| js(&instant(r.fire, e.options.zone))),
            js(l.result()),
            jopt(last.and_then(|r| r.exit), |x| x.to_string()),
            jopt(l.next, |t| js(&instant(t, e.options.zone))),
        );
        for (j, r) in l.runs.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"fire\":{},\"recorded\":{},\"key\":{},\"line\":{},\"result\":{},\"exit\":{},\"secs\":{},\"id\":{}}}",
                js(&instant(r.fire, e.options.zone)),
                js(&instant(r.at, e.options.zone)),
                js(&r.key),
                r.line,
                js(r.result.as_str()),
                jopt(r.exit, |x| x.to_string()),
                jopt(r.secs.filter(|x| x.is_finite()), |x| format!("{x:.3}")),
                jopt(r.id, |x| x.to_string()),
            );
        }
        s.push_str("]}");
    }
    s.push_str("]}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Recorder, RunResult};

    /// Expected: an `@each` line is one report line per instance that ran (`php.<n>`),
    /// and the exit code looks at each.
    #[test]
    fn each_instance_has_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let schedule =
            crate::schedule::parse("f", b"0 * * * * php@each rotate\n", Tz::UTC).unwrap();
        let now = DateTime::from_timestamp(1_764_821_100, 0).unwrap();
        let report = || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = status(
                "f",
                &schedule,
                dir.path(),
                now,
                Format::Text,
                &mut out,
                &mut err,
            );
            (code, String::from_utf8(out).unwrap())
        };
        assert_eq!(
            report().1.lines().next().unwrap().split(' ').nth(1),
            Some("php@each")
        );
        let rec = Recorder::open(dir.path()).unwrap();
        let e = &schedule.entries[0];
        for (n, result, exit) in [(2, RunResult::Ok, 0), (1, RunResult::Failed, 3)] {
            let mut r = crate::record::sample_run(now.timestamp() - 60, result, Some(exit));
            r.key = format!("k:{n}");
            r.service = format!("php.{n}");
            rec.append(&e.key(), &r, |_, _| {}).unwrap();
        }
        let (code, text) = report();
        assert_eq!(code, 1);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("f:1 php.1 rotate user=- last="),
            "{text}"
        );
        assert!(lines[0].contains(" result=failed exit=3 "), "{text}");
        assert!(
            lines[1].starts_with("f:1 php.2 rotate user=- last="),
            "{text}"
        );
        assert!(lines[1].contains(" result=ok exit=0 "), "{text}");
    }

    #[test]
    fn report_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let text = "5 4 * * * forum mysql nightly-backup\n@reboot web warm-cache\n";
        let schedule = crate::schedule::parse("f", text.as_bytes(), Tz::UTC).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let report = |format| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = status("f", &schedule, dir.path(), now, format, &mut out, &mut err);
            assert!(err.is_empty());
            (code, String::from_utf8(out).unwrap())
        };
        assert_eq!(
            report(Format::Text),
            (
                0,
                "f:1 mysql nightly-backup user=forum last=never result=never exit=- next=2026-12-05T04:05:00+00:00\n\
                 f:2 web warm-cache user=- last=never result=never exit=- next=-\n"
                    .to_string()
            )
        );
        let rec = Recorder::open(dir.path()).unwrap();
        let e = &schedule.entries[0];
        let run = Run {
            key: "k\"1".into(),
            fire: now - chrono::Duration::hours(8),
            at: now,
            file: "f".into(),
            line: 1,
            service: "mysql".into(),
            action: "nightly-backup".into(),
            user: Some("forum".into()),
            result: RunResult::Failed,
            exit: Some(3),
            secs: Some(0.25),
            id: Some(7),
        };
        rec.append(&e.key(), &run, |_, _| {}).unwrap();
        let (code, text) = report(Format::Text);
        assert_eq!(code, 1);
        assert!(
            text.starts_with("f:1 mysql nightly-backup user=forum last=2026-12-04T04:00:00+00:00 result=failed exit=3 next="),
            "{text}"
        );
        let (code, json) = report(Format::Json);
        assert_eq!(code, 1);
        assert!(json.starts_with("{\"file\":\"f\",\"now\":\"2026-12-04T12:00:00Z\",\"ok\":false,\"lines\":[{\"file\":\"f\",\"line\":1,\"service\":\"mysql\",\"action\":\"nightly-backup\",\"user\":\"forum\",\"schedule\":\"5 4 * * *\""), "{json}");
        assert!(json.contains("\"runs\":[{\"fire\":\"2026-12-04T04:00:00+00:00\",\"recorded\":\"2026-12-04T12:00:00+00:00\",\"key\":\"k\\\"1\",\"line\":1,\"result\":\"failed\",\"exit\":3,\"secs\":0.250,\"id\":7}]"), "{json}");
        assert!(json.contains("\"user\":null"), "{json}");
        assert!(json.ends_with("\"runs\":[]}]}\n"), "{json}");
        let (code, html) = report(Format::Html);
        assert_eq!(code, 1);
        assert!(
            html.contains("<li class=\"f\" title=\"2026-12-04 04:00 failed exit=3 0.2s #7\">"),
            "{html}"
        );
        assert_eq!(js("a\u{1}\\\n"), "\"a\\u0001\\\\\\n\"");
    }
}
