//! The time from one outcome to the scheduler's metrics file and status page both rewritten,
//! with a long schedule and a full history (issue 13: goal well under the 50 ms budget of a
//! fire's lateness), and the files' sizes.
//!
//! `reports-bench [LINES] [RUNS] [ROUNDS]` (defaults 10000 30 30), in `$BENCH_DIR`
//! (default /var/tmp): writes a schedule of LINES lines and a record of RUNS runs per line,
//! starts the daemon's real writer ([`scheduler::outputs::Outputs`]), then for each round
//! hands it one outcome and waits (spinning on `stat`) until both files have been renamed
//! over: that is what a reader of the files sees. Side by side, the same rewrite done the
//! way the daemon did it before (every line's record read from disk, then rendered and
//! written in the daemon's thread), and its parts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use scheduler::metrics::{self, Counts, Target};
use scheduler::outputs::{self, Outputs, Paths};
use scheduler::page::{self, Row};
use scheduler::record::{self, Run, RunResult};
use scheduler::schedule::{self, Entry, Schedule};
use scheduler::summary::Summary;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map_or(default, |a| a.parse().expect("a number"))
}

fn run_of(e: &Entry, fire: DateTime<Utc>, k: usize) -> Run {
    let failed = k % 7 == 3;
    Run {
        key: format!("bench:{}", fire.timestamp()),
        fire,
        at: fire + chrono::Duration::seconds(3),
        file: "schedule.cron".into(),
        line: e.line,
        service: e.service.clone(),
        action: e.action.clone(),
        user: e.user.clone(),
        result: if failed { RunResult::Failed } else { RunResult::Ok },
        exit: Some(i32::from(failed)),
        secs: Some(2.5 + k as f64),
        id: Some(1000 + k as u64),
    }
}

fn ino(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.ino())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// median, p90, max in ms.
fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.9), at(1.0))
}

/// The rewrite as the daemon did it before the writer thread: every record from disk.
fn rewrite_from_disk(
    state: &Path,
    schedule: &Schedule,
    paths: &Paths,
) -> (Duration, Duration, Duration, Duration) {
    let t0 = Instant::now();
    let sums: Vec<Summary> = schedule
        .entries
        .iter()
        .map(|e| Summary::from_runs(&record::read_file(&record::path(state, &e.key())).unwrap().runs))
        .collect();
    let t1 = Instant::now();
    let targets: Vec<Target> = schedule
        .entries
        .iter()
        .map(|e| outputs::target(&e.service, &e.action, e.user.as_deref()))
        .collect();
    let prom = metrics::render(&metrics::families(
        targets.iter().zip(&sums),
        &Counts::new(),
    ));
    let t2 = Instant::now();
    let now = Utc::now();
    let rows: Vec<Row> = schedule
        .entries
        .iter()
        .zip(&sums)
        .map(|(entry, summary)| Row::at(entry, summary, now))
        .collect();
    let html = page::render("schedule.cron", &rows, now);
    let t3 = Instant::now();
    outputs::write_report(paths.metrics.as_ref().unwrap(), &prom).unwrap();
    outputs::write_report(paths.page.as_ref().unwrap(), &html).unwrap();
    let t4 = Instant::now();
    (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
}

fn main() {
    let (lines, runs, rounds) = (arg(1, 10_000), arg(2, 30), arg(3, 30));
    let base = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));
    let dir = base.join(format!("bosun-reports-bench-{}", std::process::id()));
    let state = dir.join("state");
    let www = dir.join("www");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&www).unwrap();

    let mut text = String::from("CRON_TZ=Europe/Berlin\nON_FAILURE=scheduler notify\n");
    for i in 0..lines {
        let user = if i % 3 == 0 { "forum " } else { "" };
        text.push_str(&format!(
            "{} {} * * * {user}svc{} job-{i}\n",
            i % 60,
            (i / 60) % 24,
            i % 40
        ));
    }
    let schedule = schedule::parse("schedule.cron", text.as_bytes(), Tz::UTC).unwrap();
    let now = Utc::now();
    for e in &schedule.entries {
        let mut body = String::new();
        let last = e.next_after(now - chrono::Duration::days(1)).unwrap();
        for k in 0..runs {
            let fire = last - chrono::Duration::days((runs - 1 - k) as i64);
            body.push_str(&run_of(e, fire, k).encode());
        }
        std::fs::write(record::path(&state, &e.key()), body).unwrap();
    }
    let paths = Paths {
        metrics: Some(www.join("bosun.prom")),
        page: Some(www.join("status.html")),
    };
    let (prom, html) = (paths.metrics.clone().unwrap(), paths.page.clone().unwrap());

    // The daemon's writer.
    let t = Instant::now();
    let out = Outputs::start(paths.clone(), "schedule.cron".into(), &state, &schedule)
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ino(&prom).is_none() || ino(&html).is_none() {
        assert!(Instant::now() < deadline, "no files after 120 s");
        std::hint::spin_loop();
    }
    let start = t.elapsed();
    let mut writer = Vec::new();
    let mut send = Vec::new();
    for r in 0..rounds {
        let e = &schedule.entries[(r * 337) % lines];
        let run = run_of(e, now + chrono::Duration::minutes(r as i64 + 1), r);
        let before = (ino(&prom), ino(&html));
        let t0 = Instant::now();
        out.outcome(&e.key(), &run);
        send.push(t0.elapsed());
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let (p, h) = (ino(&prom), ino(&html));
            if p != before.0 && h != before.1 {
                break;
            }
            assert!(Instant::now() < deadline, "no rewrite within 30 s");
            std::hint::spin_loop();
        }
        writer.push(t0.elapsed());
        // Let the writer settle, as between two real outcomes.
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(out);
    let page_bytes = std::fs::metadata(&html).unwrap().len();
    let prom_bytes = std::fs::metadata(&prom).unwrap().len();

    // The same rewrite from disk, and its parts.
    let (mut read, mut rmetrics, mut rpage, mut write, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (a, b, c, d) = rewrite_from_disk(&state, &schedule, &paths);
        read.push(a);
        rmetrics.push(b);
        rpage.push(c);
        write.push(d);
        total.push(a + b + c + d);
    }

    println!(
        "{lines} lines x {runs} runs per line, {rounds} rounds, files in {}",
        base.display()
    );
    println!();
    println!("| | median | p90 | max |");
    println!("|---|---|---|---|");
    let row = |name: &str, v: Vec<Duration>| {
        let (m, p, x) = stats(v);
        println!("| {name} | {m:.2} ms | {p:.2} ms | {x:.2} ms |");
    };
    row("**outcome -> both files renamed over (the daemon's writer)**", writer.clone());
    row("daemon's cost: handing the outcome to the writer", send);
    row("the same rewrite, every record read from disk (before)", total.clone());
    row("  of which: reading the records", read);
    row("  of which: rendering the metrics", rmetrics);
    row("  of which: rendering the page", rpage);
    row("  of which: writing both files (rename, no fsync)", write);
    let (w, _, _) = stats(writer);
    let (b, _, _) = stats(total);
    println!();
    println!("ratio, from disk / writer: {:.2}x", b / w);
    println!(
        "start (read {lines} records, first write): {:.0} ms",
        ms(start)
    );
    println!(
        "page {} bytes ({:.1} MiB), metrics file {} bytes ({:.1} MiB)",
        page_bytes,
        page_bytes as f64 / 1048576.0,
        prom_bytes,
        prom_bytes as f64 / 1048576.0
    );
    println!("PAGE={}", html.display());
    let _ = std::fs::remove_dir_all(dir.join("state"));
}
