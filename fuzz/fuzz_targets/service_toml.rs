//! `service.toml`: any text is checked without a panic, and every error is one line that
//! names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for e in supervisor::config::check_text("service.toml", text) {
        assert!(e.starts_with("service.toml"), "{e}");
        assert!(!e.contains('\n'), "{e:?}");
    }
});
