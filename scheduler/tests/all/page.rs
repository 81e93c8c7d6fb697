//! `BOSUN_STATUS_HTML` with the real daemon against socket peers that succeed, fail,
//! refuse, are absent or hold the run: the page gets a row per line and a mark per run of
//! each kind, and a banner; `scheduler status --html` draws the same page from the record;
//! a page that cannot be written is logged once and the schedule runs on, and is written
//! again once it can be. (The page in a real browser: tests/e2e/run.sh.)

use std::process::Stdio;
use std::time::Duration;

use crate::support::{bin, peer, recv, wait_file, Answer, Daemon};

const SHORT: Duration = Duration::from_secs(10);

/// The page without its own time (`as of ...`), which differs between two renderings.
fn timeless(page: &str) -> String {
    let start = page.find(" as of ").expect("as of");
    let end = start + page[start..].find("</p>").unwrap();
    format!("{}{}", &page[..start], &page[end..])
}

#[test]
fn the_page_shows_each_result_and_matches_status_html() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(
        &file,
        "@reboot forum mysql nightly-backup\n@reboot static git-pull\n@reboot web busy-job\n\
         @reboot gone away\n@reboot php long\n0 0 1 1 * static never\n",
    )
    .unwrap();
    let mysql = peer(dir.path(), "mysql", Answer::Done(0));
    let st = peer(dir.path(), "static", Answer::Done(3));
    let web = peer(dir.path(), "web", Answer::Busy);
    let php = peer(dir.path(), "php", Answer::Hold);
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let html = www.join("status.html");
    let state = dir.path().join("state");
    let run_dir = dir.path().to_str().unwrap();
    let d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", run_dir),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
            ("BOSUN_STATUS_HTML", html.to_str().unwrap()),
            ("BOSUN_RETRY_WINDOW", "1s"),
        ],
    );
    for p in [&mysql, &st, &web, &php] {
        recv(&p.requests, SHORT);
    }
    let page = wait_file(&html, SHORT, |t| {
        [
            "\u{2713}</li>",
            "\u{2717}</li>",
            "\u{2298}</li>",
            "!</li>",
            "\u{2026}</li>",
        ]
        .iter()
        .all(|m| t.contains(m))
    });
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.ends_with("</html>\n"));
    assert_eq!(page.matches("<tr").count(), 7, "{page}");
    assert!(
        page.contains("role=\"alert\">\u{2717} 3 of 6 lines"),
        "{page}"
    );
    for (class, result) in [
        ("o", "ok exit=0"),
        ("f", "failed exit=3"),
        ("x", "refused"),
        ("m", "missed"),
        ("r", "running"),
    ] {
        assert_eq!(
            page.matches(&format!("<li class=\"{class}\" title=\""))
                .count(),
            1,
            "{class}: {page}"
        );
        assert!(page.contains(&format!(" {result}")), "{result}: {page}");
    }
    assert!(page.contains("<span class=\"mute\">no runs yet</span>"));
    assert!(page.contains("<span class=\"b f\">\u{2717} failed</span> <small>exit=3</small>"));
    // Only the page in its directory: the temporary was renamed over it.
    assert_eq!(std::fs::read_dir(&www).unwrap().count(), 1);

    // The command line reads the record and draws the same page.
    let out = bin()
        .args(["status", "--html"])
        .arg(&file)
        .env("BOSUN_STATE_DIR", &state)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let cli = String::from_utf8(out.stdout).unwrap();
    assert_eq!(timeless(&cli), timeless(&page));
    let out = bin()
        .args(["status", "--html", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(d.stop(), 0);
}

#[test]
fn an_unwritable_page_is_logged_once_the_schedule_runs_on_and_it_is_written_when_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.cron");
    std::fs::write(&file, "@reboot mysql a\n").unwrap();
    let mysql = peer(dir.path(), "mysql", Answer::Done(0));
    let state = dir.path().join("state");
    let www = dir.path().join("www");
    let html = www.join("status.html");
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", dir.path().to_str().unwrap()),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
            ("BOSUN_STATUS_HTML", html.to_str().unwrap()),
        ],
    );
    recv(&mysql.requests, SHORT);
    d.wait_for(&["cannot write the status page", "status.html"], SHORT);
    d.wait_for(&["done", "service=mysql", "exit=0"], SHORT);
    // The directory appears (a volume mounted late); the next rewrite (here: a reload)
    // writes the page.
    std::fs::create_dir(&www).unwrap();
    std::fs::write(&file, "@reboot mysql a\n* * * * * mysql b\n").unwrap();
    d.wait_for(&["schedule reloaded"], SHORT);
    d.wait_for(&["the status page is written again"], SHORT);
    wait_file(&html, SHORT, |t| t.contains("2 lines"));
    let said = d
        .seen
        .iter()
        .filter(|l| l.contains("cannot write the status page"))
        .count();
    assert_eq!(said, 1, "{:?}", d.seen);
    assert_eq!(d.stop(), 0);
}
