//! Request client for bench/journal/latency.py (std only; built with plain `rustc -O`).
//!
//!   client rtt SOCK N LINE          N sequential round trips of LINE (connect, send, read
//!                                   to EOF); prints each time in microseconds, one a line,
//!                                   then `errors=E last=REPLY`
//!   client fill SOCK N ACTION...    N runs spread over one thread per ACTION (each runs
//!                                   its own action back to back, so none is `busy`);
//!                                   prints `ok=N errors=E secs=S`
//!
//! A reply to an action counts as good when it ends with a `done ... exit=0` line.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn once(sock: &str, line: &[u8]) -> Result<String, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(line).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::with_capacity(128);
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn done_ok(reply: &str) -> bool {
    reply
        .lines()
        .last()
        .is_some_and(|l| l.starts_with("done ") && l.contains(" exit=0 "))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: client rtt SOCK N LINE | fill SOCK N ACTION...";
    if args.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(64);
    }
    let sock = args[2].clone();
    match args[1].as_str() {
        "rtt" => {
            let n: usize = args[3].parse().expect("N");
            let line = format!("{}\n", args.get(4).map(String::as_str).unwrap_or("ping"));
            let action = !matches!(line.split_whitespace().next(), Some("ping" | "history" | "log"));
            let mut errors = 0;
            let mut last = String::new();
            let mut out = String::with_capacity(n * 8);
            for _ in 0..n {
                let t = Instant::now();
                match once(&sock, line.as_bytes()) {
                    Ok(r) if !r.starts_with("error") && (!action || done_ok(&r)) => {
                        out.push_str(&format!("{:.1}\n", t.elapsed().as_secs_f64() * 1e6));
                        last = r;
                    }
                    Ok(r) => {
                        errors += 1;
                        last = r;
                    }
                    Err(e) => {
                        errors += 1;
                        last = e;
                    }
                }
            }
            print!("{out}");
            let last = last.lines().last().unwrap_or("").to_string();
            println!("errors={errors} last={last}");
        }
        "fill" => {
            let n: u64 = args[3].parse().expect("N");
            let actions: Vec<String> = args[4..].to_vec();
            let left = Arc::new(AtomicU64::new(n));
            let ok = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let t = Instant::now();
            let threads: Vec<_> = actions
                .into_iter()
                .map(|a| {
                    let (sock, left, ok, errors) =
                        (sock.clone(), left.clone(), ok.clone(), errors.clone());
                    std::thread::spawn(move || {
                        let line = format!("{a}\n");
                        loop {
                            // Take one run off the count; stop when none is left.
                            if left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                                .is_err()
                            {
                                break;
                            }
                            match once(&sock, line.as_bytes()) {
                                Ok(r) if done_ok(&r) => ok.fetch_add(1, Ordering::SeqCst),
                                Ok(r) => {
                                    if errors.load(Ordering::SeqCst) < 5 {
                                        eprintln!("fill: {a}: {}", r.trim_end());
                                    }
                                    errors.fetch_add(1, Ordering::SeqCst)
                                }
                                Err(e) => {
                                    if errors.load(Ordering::SeqCst) < 5 {
                                        eprintln!("fill: {a}: {e}");
                                    }
                                    errors.fetch_add(1, Ordering::SeqCst)
                                }
                            };
                        }
                    })
                })
                .collect();
            for th in threads {
                let _ = th.join();
            }
            println!(
                "ok={} errors={} secs={:.2}",
                ok.load(Ordering::SeqCst),
                errors.load(Ordering::SeqCst),
                t.elapsed().as_secs_f64()
            );
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(64);
        }
    }
}
