//! The status page (DESIGN.md section 7): `scheduler status --html` and the daemon's
//! `BOSUN_STATUS_HTML`. Pure: rows in, one HTML document out.
//!
//! One self-contained file: no script, no external resource (styles inline, symbols are
//! text), so it reads the same from a file, behind nginx, or saved in a ticket. One row per
//! schedule line in file order: its last result, last and next fire, and its recent runs as
//! a strip, one mark per run, oldest first. A result is never told by colour alone: each has
//! a symbol and a word (badge) or a symbol and a title (mark: time, result, exit code,
//! duration, and the run's id for `scheduler send SERVICE log ID`). A banner on top says
//! whether any line's last result failed. Light and dark follow the reader's system
//! (`prefers-color-scheme`). It asks the browser to reload it every minute (a meta
//! refresh, no script), as the daemon rewrites it after every outcome.
//!
//! Times are shown in each line's zone (the one its fires are computed in); the page's own
//! time is UTC.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::record::RunResult;
use crate::schedule::Entry;
use crate::summary::{Mark, Summary};

/// One schedule line as the page shows it.
pub struct Row<'a> {
    pub entry: &'a Entry,
    pub summary: &'a Summary,
    pub next: Option<DateTime<Utc>>,
}

impl<'a> Row<'a> {
    /// The row of `entry` as of `now`: its next fire is the first after `now`.
    pub fn at(entry: &'a Entry, summary: &'a Summary, now: DateTime<Utc>) -> Row<'a> {
        Row {
            entry,
            summary,
            next: entry.next_after(now),
        }
    }
}

/// Lines named in the banner before "and N more".
const BANNER_NAMES: usize = 5;

/// Class (one letter: there may be a mark per run of thousands of lines) and symbol.
fn look(result: RunResult) -> (&'static str, &'static str) {
    match result {
        RunResult::Ok => ("o", "\u{2713}"),      // ✓
        RunResult::Failed => ("f", "\u{2717}"),  // ✗
        RunResult::Missed => ("m", "!"),         // !
        RunResult::Refused => ("x", "\u{2298}"), // ⊘
        RunResult::Skipped => ("s", "\u{2013}"), // –
        RunResult::Running => ("r", "\u{2026}"), // …
    }
}

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--mute:#59636e;--line:#d1d9e0;\
--o:#1a7f37;--f:#cf222e;--m:#bc4c00;--x:#8250df;--s:#6e7781;--r:#0969da;--badbg:#ffebe9;--okbg:#dafbe1}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mute:#9198a1;--line:#3d444d;\
--o:#2ea043;--f:#da3633;--m:#bd561d;--x:#8957e5;--s:#656c76;--r:#1f6feb;--badbg:#3c1618;--okbg:#12261e}}\
body{margin:0;padding:1.25rem 1.5rem;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif}\
h1{font-size:1.3rem;margin:0 0 .2rem}\
.sub{color:var(--mute);margin:0 0 1rem}\
.banner{padding:.6rem .9rem;border-radius:6px;margin:0 0 1rem;font-weight:600;border:1px solid}\
.banner.bad{background:var(--badbg);border-color:var(--f);color:var(--fg)}\
.banner.good{background:var(--okbg);border-color:var(--o)}\
.banner ul{margin:.3rem 0 0;padding-left:1.2rem;font-weight:400}\
.wrap{overflow-x:auto}\
table{border-collapse:collapse;min-width:100%}\
th,td{text-align:left;padding:.4rem .7rem;border-bottom:1px solid var(--line);white-space:nowrap;vertical-align:middle}\
th{font-size:.8rem;font-weight:600;color:var(--mute);text-transform:uppercase;letter-spacing:.03em}\
tr.bad td:first-child{box-shadow:inset 3px 0 var(--f)}\
code{font:12.5px ui-monospace,'DejaVu Sans Mono',monospace}\
small,.mute{color:var(--mute)}\
.b{font-weight:600}\
.b.o{color:var(--o)}.b.f{color:var(--f)}.b.m{color:var(--m)}.b.x{color:var(--x)}.b.s{color:var(--s)}.b.r{color:var(--r)}\
ol{display:flex;gap:1px;list-style:none;margin:0;padding:0}\
ol li{width:11px;height:20px;line-height:20px;text-align:center;font-size:10px;font-weight:700;color:#fff;border-radius:2px;cursor:default}\
li.o{background:var(--o)}li.f{background:var(--f)}li.m{background:var(--m)}li.x{background:var(--x)}li.s{background:var(--s)}li.r{background:var(--r)}\
footer{margin-top:1rem;color:var(--mute);font-size:.85rem}\
";

/// `&`, `<`, `>`, `"` and `'` as references: safe in text and in quoted attributes.
fn esc(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `2026-12-04 04:05` in `zone`.
fn local(out: &mut String, t: DateTime<Utc>, zone: Tz) {
    let l = t.with_timezone(&zone);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}",
        l.year(),
        l.month(),
        l.day(),
        l.hour(),
        l.minute()
    );
}

/// A `<time>` element: the local time shown, the instant in `datetime`.
fn time(out: &mut String, t: DateTime<Utc>, zone: Tz) {
    let _ = write!(
        out,
        "<time datetime=\"{}\">",
        common::time::rfc3339(t.timestamp_millis())
    );
    local(out, t, zone);
    out.push_str("</time>");
}

/// `exit=3 0.25s #17`, the parts there are, each after a space.
fn details(out: &mut String, m: &Mark) {
    if let Some(x) = m.exit {
        let _ = write!(out, " exit={x}");
    }
    if let Some(s) = m.secs {
        let _ = write!(out, " {s:.1}s");
    }
    if let Some(id) = m.id {
        let _ = write!(out, " #{id}");
    }
}

fn target(out: &mut String, e: &Entry) {
    esc(out, &e.service);
    out.push(' ');
    esc(out, &e.action);
}

/// The page of `rows` (schedule `file`), made at `now`.
pub fn render(file: &str, rows: &[Row], now: DateTime<Utc>) -> String {
    let marks: usize = rows.iter().map(|r| r.summary.recent.len()).sum();
    let mut body = String::with_capacity(rows.len() * 400 + marks * 64);
    for r in rows {
        row(&mut body, r);
    }
    let bad: Vec<&Row> = rows.iter().filter(|r| r.summary.is_bad()).collect();
    assemble(file, now, rows.len(), &bad, [body.as_str()])
}

/// The page around rows already drawn with [`row`] (a writer that keeps each line's row
/// redraws only the lines that changed): `total` lines, of which `bad` last failed.
pub fn assemble<'a>(
    file: &str,
    now: DateTime<Utc>,
    total: usize,
    bad: &[&Row],
    rows: impl IntoIterator<Item = &'a str> + Clone,
) -> String {
    let len: usize = rows.clone().into_iter().map(str::len).sum();
    let mut s = String::with_capacity(8192 + len);
    s.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"60\"><title>",
    );
    if bad.is_empty() {
        s.push_str("\u{2713} ");
    } else {
        let _ = write!(s, "\u{2717} {} failing \u{b7} ", bad.len());
    }
    s.push_str("bosun schedule</title><style>");
    s.push_str(STYLE);
    s.push_str("</style></head><body>\n<h1>bosun schedule</h1><p class=\"sub\"><code>");
    esc(&mut s, file);
    let at = common::time::rfc3339(now.timestamp_millis());
    let _ = writeln!(
        s,
        "</code> \u{b7} {total} lines \u{b7} as of <time datetime=\"{at}\">{at}</time></p>"
    );
    banner(&mut s, total, bad);
    s.push_str(
        "<div class=\"wrap\"><table><thead><tr><th>Result<th>Job<th>Recent runs <span class=\"mute\">(oldest \u{2192} newest)</span>\
<th>Last run<th>Next run<th>Schedule</tr></thead><tbody>\n",
    );
    for r in rows {
        s.push_str(r);
    }
    s.push_str(
        "</tbody></table></div>\n<footer>Each mark is one run; hover it for its time, \
exit code, duration and run id (<code>scheduler send SERVICE log ID</code> shows its output). \
\u{2713} ok \u{b7} \u{2717} failed \u{b7} ! missed \u{b7} \u{2298} refused \u{b7} \u{2013} skipped \
\u{b7} \u{2026} running. Times in each line's zone; a line's next run is as of its last \
outcome.</footer>\n</body></html>\n",
    );
    s
}

fn banner(s: &mut String, total: usize, bad: &[&Row]) {
    if bad.is_empty() {
        let _ = writeln!(
            s,
            "<p class=\"banner good\" role=\"status\">\u{2713} No line's last run failed ({total} lines).</p>"
        );
        return;
    }
    let _ = write!(
        s,
        "<div class=\"banner bad\" role=\"alert\">\u{2717} {} of {total} lines: the last run did not succeed<ul>",
        bad.len()
    );
    for r in bad.iter().take(BANNER_NAMES) {
        let e = r.entry;
        s.push_str("<li>");
        target(s, e);
        if let Some(m) = r.summary.last() {
            let _ = write!(s, ": {} at ", m.result.as_str());
            local(s, m.fire, e.options.zone);
            details(s, m);
        }
        s.push_str("</li>");
    }
    if bad.len() > BANNER_NAMES {
        let _ = write!(s, "<li>and {} more</li>", bad.len() - BANNER_NAMES);
    }
    s.push_str("</ul></div>\n");
}

/// One line's row (`<tr>...</tr>` and a newline), appended to `s`.
pub fn row(s: &mut String, r: &Row) {
    let (e, sum) = (r.entry, r.summary);
    s.push_str(if sum.is_bad() {
        "<tr class=\"bad\"><td>"
    } else {
        "<tr><td>"
    });
    match sum.last() {
        Some(m) => {
            let (class, symbol) = look(m.result);
            let _ = write!(
                s,
                "<span class=\"b {class}\">{symbol} {}</span>",
                m.result.as_str()
            );
            if let Some(x) = m.exit {
                let _ = write!(s, " <small>exit={x}</small>");
            }
        }
        None => s.push_str("<span class=\"mute\">never run</span>"),
    }
    s.push_str("<td>");
    target(s, e);
    if let Some(u) = &e.user {
        s.push_str(" <small>user=");
        esc(s, u);
        s.push_str("</small>");
    }
    let _ = write!(s, "<br><small>line {}</small><td>", e.line);
    if sum.recent.is_empty() {
        s.push_str("<span class=\"mute\">no runs yet</span>");
    } else {
        s.push_str("<ol>");
        for m in &sum.recent {
            let (class, symbol) = look(m.result);
            let _ = write!(s, "<li class=\"{class}\" title=\"");
            local(s, m.fire, e.options.zone);
            s.push(' ');
            s.push_str(m.result.as_str());
            details(s, m);
            let _ = write!(s, "\">{symbol}</li>");
        }
        s.push_str("</ol>");
    }
    s.push_str("<td>");
    match sum.last() {
        Some(m) => time(s, m.fire, e.options.zone),
        None => s.push_str("<span class=\"mute\">never</span>"),
    }
    s.push_str("<td>");
    match r.next {
        Some(t) => time(s, t, e.options.zone),
        None => s.push_str("<span class=\"mute\">\u{2013}</span>"),
    }
    s.push_str("<td><code>");
    esc(s, &e.when.to_string());
    s.push_str("</code><br><small>");
    esc(s, e.options.zone.name());
    s.push_str("</small>");
    s.push_str("</tr>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample_run as run;
    use crate::record::Run;

    const T: i64 = 1_764_821_100; // 2025-12-04T04:05:00Z

    fn page(text: &str, runs: &[Vec<Run>]) -> String {
        let schedule = crate::schedule::parse("f<", text.as_bytes(), Tz::UTC).unwrap();
        let sums: Vec<Summary> = runs.iter().map(Summary::from_runs).collect();
        let now = DateTime::from_timestamp(T + 3600, 0).unwrap();
        let rows: Vec<Row> = schedule
            .entries
            .iter()
            .zip(&sums)
            .map(|(entry, summary)| Row::at(entry, summary, now))
            .collect();
        render("/conf/f<.cron", &rows, now)
    }

    #[test]
    fn a_failed_last_run_raises_the_banner_and_every_mark_has_symbol_and_title() {
        let html = page(
            "5 4 * * * forum mysql nightly-backup\nCRON_TZ=Europe/London\n*/10 * * * * static git-pull\n@reboot web warm\n",
            &[
                vec![
                    run(T - 86400, RunResult::Ok, Some(0)),
                    run(T, RunResult::Failed, Some(3)),
                ],
                vec![
                    run(T - 600, RunResult::Missed, None),
                    run(T, RunResult::Refused, None),
                    run(T + 600, RunResult::Skipped, None),
                    run(T + 1200, RunResult::Running, None),
                ],
                vec![],
            ],
        );
        assert!(html.starts_with("<!DOCTYPE html>\n"), "{html}");
        assert!(html.contains("<title>\u{2717} 1 failing \u{b7} bosun schedule</title>"));
        assert!(html.contains("role=\"alert\">\u{2717} 1 of 3 lines"));
        assert!(
            html.contains(
                "<li>mysql nightly-backup: failed at 2025-12-04 04:05 exit=3 0.2s #7</li>"
            ),
            "{html}"
        );
        assert!(html.contains(
            "<li class=\"f\" title=\"2025-12-04 04:05 failed exit=3 0.2s #7\">\u{2717}</li>"
        ));
        assert!(html.contains(
            "<li class=\"o\" title=\"2025-12-03 04:05 ok exit=0 0.2s #7\">\u{2713}</li>"
        ));
        // The second line's times are London's (UTC+0 in December) and its strip holds
        // each kind of mark.
        for (class, symbol) in [
            ("m", "!"),
            ("x", "\u{2298}"),
            ("s", "\u{2013}"),
            ("r", "\u{2026}"),
        ] {
            assert!(
                html.contains(&format!("<li class=\"{class}\" title=\"")),
                "{class}"
            );
            assert!(html.contains(&format!("\">{symbol}</li>")), "{symbol}");
        }
        assert!(html.contains("<span class=\"b r\">\u{2026} running</span>"));
        assert!(html.contains("<code>*/10 * * * *</code><br><small>Europe/London</small>"));
        assert!(html.contains("<span class=\"mute\">no runs yet</span>"));
        assert!(html.contains("<span class=\"mute\">never run</span>"));
        // Escaped everywhere; nothing external, no script.
        assert!(html.contains("/conf/f&lt;.cron"));
        assert!(!html.contains("f<"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("src="));
        assert!(!html.contains("href="));
        assert_eq!(html.matches("<tr").count(), 4);
    }

    #[test]
    fn all_good_says_so_and_the_banner_lists_at_most_five() {
        let html = page("5 4 * * * a b\n", &[vec![run(T, RunResult::Ok, Some(0))]]);
        assert!(html.contains("banner good"));
        assert!(html.contains("<title>\u{2713} bosun schedule</title>"));
        let text: String = (0..7).map(|i| format!("{i} 4 * * * s{i} a\n")).collect();
        let runs: Vec<Vec<Run>> = (0..7)
            .map(|_| vec![run(T, RunResult::Failed, Some(1))])
            .collect();
        let html = page(&text, &runs);
        assert!(html.contains("\u{2717} 7 of 7 lines"));
        assert!(html.contains("<li>and 2 more</li>"));
        assert_eq!(html.matches("<tr class=\"bad\">").count(), 7);
    }
}
