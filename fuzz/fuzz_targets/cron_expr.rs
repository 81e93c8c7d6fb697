//! One expression: parsing never panics; what parses displays to text that parses the
//! same; the next fire, when there is one, is strictly later.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scheduler::cron::CronExpr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(e) = CronExpr::parse(text) {
        let shown = e.to_string();
        assert_eq!(CronExpr::parse(&shown).as_ref(), Ok(&e), "round trip of {text:?} via {shown:?}");
        let from = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        if let Some(next) = scheduler::plan::next_fire(&e, &chrono_tz::Europe::London, from) {
            assert!(next > from);
        }
    }
});
