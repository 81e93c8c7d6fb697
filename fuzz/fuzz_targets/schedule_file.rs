//! A whole schedule file: parsing never panics, errors carry positions inside the input,
//! and every parsed expression round-trips through its display.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scheduler::cron::CronExpr;
use scheduler::schedule::{parse, When};

fuzz_target!(|data: &[u8]| {
    match parse("fuzz.cron", data, chrono_tz::Tz::UTC) {
        Ok(s) => {
            for e in &s.entries {
                if let When::Cron(expr) = &e.when {
                    assert_eq!(CronExpr::parse(&expr.to_string()).as_ref(), Ok(expr));
                }
            }
        }
        Err(errs) => {
            let lines = data.split(|&b| b == b'\n').count();
            for e in &errs.errors {
                assert!(e.line >= 1 && e.line <= lines && e.col >= 1, "{e:?}");
            }
        }
    }
});
