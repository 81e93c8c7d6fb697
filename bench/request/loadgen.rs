//! Load generator for bench/request (std only; built with plain `rustc -O` by run.sh).
//!
//!   loadgen rtt SOCK N LINE            N sequential round trips of LINE (connect, send,
//!                                      read to EOF); prints percentiles in microseconds
//!   loadgen throughput SOCK CLIENTS SECS
//!                                      CLIENTS threads pinging back to back for SECS
//!   loadgen burst SOCK N               N threads released at once, one ping each
//!
//! Output: one `key=value ...` line, parsed by bench.py. A reply other than `pong` or an
//! I/O error counts as an error; nothing panics on a bad reply.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn once(sock: &str, line: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(line).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::with_capacity(64);
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    Ok(out)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(mut us: Vec<f64>) -> String {
    us.sort_by(|a, b| a.total_cmp(b));
    format!(
        "n={} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1}",
        us.len(),
        pct(&us, 0.5),
        pct(&us, 0.9),
        pct(&us, 0.99),
        us.last().copied().unwrap_or(f64::NAN)
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: loadgen rtt SOCK N LINE | throughput SOCK CLIENTS SECS | burst SOCK N";
    if args.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(64);
    }
    let sock = args[2].clone();
    let num = |s: &str| -> usize {
        s.parse().unwrap_or_else(|_| {
            eprintln!("{usage}");
            std::process::exit(64)
        })
    };
    match args[1].as_str() {
        "rtt" => {
            let n = num(&args[3]);
            let line = format!("{}\n", args.get(4).map(String::as_str).unwrap_or("ping"));
            let want = if line == "ping\n" { Some(&b"pong\n"[..]) } else { None };
            let mut us = Vec::with_capacity(n);
            let mut errors = 0;
            // A few warm-up rounds, not counted.
            for _ in 0..20 {
                let _ = once(&sock, line.as_bytes());
            }
            for _ in 0..n {
                let t = Instant::now();
                match once(&sock, line.as_bytes()) {
                    Ok(r) if want.is_none_or(|w| r == w) => {
                        us.push(t.elapsed().as_secs_f64() * 1e6)
                    }
                    _ => errors += 1,
                }
            }
            println!("rtt {} errors={errors}", summary(us));
        }
        "throughput" => {
            let clients = num(&args[3]);
            let secs = args.get(4).map(|s| num(s)).unwrap_or(5);
            let stop = Arc::new(AtomicBool::new(false));
            let ok = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let start = Arc::new(Barrier::new(clients + 1));
            let mut handles = Vec::new();
            for _ in 0..clients {
                let (sock, stop, ok, errors, start) = (
                    sock.clone(),
                    stop.clone(),
                    ok.clone(),
                    errors.clone(),
                    start.clone(),
                );
                handles.push(std::thread::spawn(move || {
                    let mut us = Vec::new();
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match once(&sock, b"ping\n") {
                            Ok(r) if r == b"pong\n" => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                us.push(t.elapsed().as_secs_f64() * 1e6);
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    us
                }));
            }
            start.wait();
            let t = Instant::now();
            std::thread::sleep(Duration::from_secs(secs as u64));
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.join().unwrap_or_default());
            }
            let el = t.elapsed().as_secs_f64();
            let n = ok.load(Ordering::Relaxed);
            println!(
                "throughput clients={clients} secs={el:.2} ok={n} per_sec={:.0} errors={} {}",
                n as f64 / el,
                errors.load(Ordering::Relaxed),
                summary(all)
            );
        }
        "burst" => {
            let n = num(&args[3]);
            let start = Arc::new(Barrier::new(n));
            let mut handles = Vec::new();
            let t = Instant::now();
            for _ in 0..n {
                let (sock, start) = (sock.clone(), start.clone());
                let h = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        start.wait();
                        let t = Instant::now();
                        let r = once(&sock, b"ping\n");
                        (r, t.elapsed().as_secs_f64() * 1e6)
                    });
                match h {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        eprintln!("cannot start thread: {e}");
                        std::process::exit(1);
                    }
                }
            }
            let mut ok = 0;
            let mut errors = 0;
            let mut first_error = String::new();
            let mut us = Vec::new();
            for h in handles {
                match h.join() {
                    Ok((Ok(r), t)) if r == b"pong\n" => {
                        ok += 1;
                        us.push(t);
                    }
                    Ok((r, _)) => {
                        errors += 1;
                        if first_error.is_empty() {
                            first_error = match r {
                                Ok(r) => String::from_utf8_lossy(&r).trim().to_string(),
                                Err(e) => e,
                            };
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            println!(
                "burst clients={n} ok={ok} errors={errors} wall_ms={:.1} {} first_error={:?}",
                t.elapsed().as_secs_f64() * 1e3,
                summary(us),
                first_error
            );
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(64);
        }
    }
}
