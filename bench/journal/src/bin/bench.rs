//! `bench [RUNS] [TIMED]`: fills each candidate with RUNS runs (3 actions, a key and an output
//! line each, non-durable writes: only the end state is measured), then times TIMED durable
//! runs (start + end, each durable), `history` of 100, reopening, the size on disk, and the
//! anonymous memory of a fresh process that opens the filled store and does 100 runs.
//! `BENCH_DIR` (default the system temp dir) is where the stores go: use a real disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use journal::{End, Start};
use journal_bench::{FileStore, Redb, Sqlite, Store};

const ACTIONS: [&str; 3] = ["nightly-backup", "rotate-logs", "vacuum"];

fn open(cand: &str, dir: &Path, durable: bool) -> Box<dyn Store> {
    let mut s: Box<dyn Store> = match cand {
        "file" => Box::new(FileStore::open(dir, durable)),
        // the same file without fsync: survives a killed container, not a host crash
        "file-nosync" => Box::new(FileStore::open(dir, false)),
        "sqlite" => Box::new(Sqlite::open(dir)),
        "redb" => Box::new(Redb::open(dir)),
        _ => panic!("unknown candidate {cand}"),
    };
    s.set_durable(durable);
    s
}

/// One run; the time its start and its end took.
fn one_run(s: &mut dyn Store, id: u64) -> (Duration, Duration) {
    let action = ACTIONS[id as usize % 3];
    let t = Instant::now();
    s.start(Start {
        id,
        action: action.into(),
        user: Some("forum".into()),
        key: Some(format!("nightly:{}", 1_764_821_100 + id)),
        uid: 1000,
        start_ms: 1_764_821_100_000 + id as i64 * 1000,
    });
    let started = t.elapsed();
    let t = Instant::now();
    s.end(
        id,
        action,
        End {
            end_ms: 1_764_821_100_000 + id as i64 * 1000 + 250,
            exit: 0,
            secs: 0.25,
        },
        &[b"mysqldump: 42 tables, 18.3 MB written to /backup".to_vec()],
    );
    (started, t.elapsed())
}

fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("rss") {
        // child: the memory a process pays for the store, opened on a filled one
        let (cand, dir) = (&args[2], PathBuf::from(&args[3]));
        let before = status_kb("RssAnon:");
        if cand != "none" {
            let mut s = open(cand, &dir, true);
            let base: u64 = args[4].parse().unwrap();
            for id in base..base + 100 {
                one_run(s.as_mut(), id);
            }
            std::hint::black_box(s.history(100));
            println!("{} {}", status_kb("RssAnon:") - before, status_kb("VmHWM:"));
            return;
        }
        println!("0 {}", status_kb("VmHWM:"));
        return;
    }
    let runs: u64 = args.get(1).map_or(100_000, |a| a.parse().unwrap());
    let timed: u64 = args.get(2).map_or(1000, |a| a.parse().unwrap());
    let root = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let none = Command::new(&args[0])
        .args(["rss", "none", "/"])
        .output()
        .unwrap();
    let base_hwm: u64 = String::from_utf8_lossy(&none.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    println!(
        "runs filled: {runs}, durable runs timed: {timed}, dir: {}",
        root.display()
    );
    println!("| store | per run (start+end, durable) p50 / p99 / mean | start p50 / p99 | end p50 / p99 | size after {runs} runs | `history` 100, median | reopen | anon memory (RssAnon grown / peak RSS over a bare process) |");
    println!("|---|---|---|---|---|---|---|---|");
    for cand in ["file", "sqlite", "redb", "file-nosync"] {
        let dir = root.join(format!("journal-bench-{}-{cand}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fill = Instant::now();
        {
            let mut s = open(cand, &dir, false);
            for id in 1..=runs {
                one_run(s.as_mut(), id);
            }
        }
        let fill = fill.elapsed();
        let t = Instant::now();
        let mut s = open(cand, &dir, true);
        let reopen = t.elapsed();
        let (mut lat, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for id in runs + 1..=runs + timed {
            let (a, b) = one_run(s.as_mut(), id);
            lat.push(a + b);
            starts.push(a);
            ends.push(b);
        }
        let mean = lat.iter().sum::<Duration>().as_secs_f64() * 1e3 / lat.len() as f64;
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        let (s50, s99) = (pct(&mut starts, 0.5), pct(&mut starts, 0.99));
        let (e50, e99) = (pct(&mut ends, 0.5), pct(&mut ends, 0.99));
        let mut h = Vec::new();
        for _ in 0..1000 {
            let t = Instant::now();
            let lines = s.history(100);
            h.push(t.elapsed());
            assert_eq!(lines.len(), 100);
        }
        let hist = pct(&mut h, 0.5);
        drop(s);
        let size = du(&dir);
        let out = Command::new(&args[0])
            .args([
                "rss",
                cand,
                dir.to_str().unwrap(),
                &(runs + timed + 1).to_string(),
            ])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        let mut f = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        let (anon, hwm) = (f.next().unwrap(), f.next().unwrap());
        println!(
            "| {cand} | {p50:.3} / {p99:.3} / {mean:.3} ms | {s50:.3} / {s99:.3} ms | {e50:.3} / {e99:.3} ms | {:.1} KiB | {:.1} µs | {:.1} ms | +{anon} KiB / +{} KiB |",
            size as f64 / 1024.0,
            hist * 1e3,
            reopen.as_secs_f64() * 1e3,
            hwm.saturating_sub(base_hwm),
        );
        eprintln!(
            "{cand}: fill of {runs} non-durable runs took {:.1} s",
            fill.as_secs_f64()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
