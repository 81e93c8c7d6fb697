//! The request line: never panics; a line that parses yields tokens that are free of
//! blanks and control bytes and re-join to a line that parses to the same request; a key
//! is always a valid key; `history`/`log` arguments check without panicking and a log id
//! reads back; a reply's line, read back and written again, is the same line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{valid_key, Query, Reply, Request};

fuzz_target!(|data: &[u8]| {
    let known = |a: &str| a.len() % 3 == 0; // any stable rule: some words are actions
    if let Ok(r) = Request::parse(data, known) {
        for t in r.user.iter().chain(std::iter::once(&r.action)).chain(r.args.iter()) {
            assert!(!t.is_empty() && !t.contains([' ', '\t']) && !t.chars().any(char::is_control));
        }
        if let Some(k) = &r.key {
            assert!(valid_key(k));
        }
        if let Some(Ok(Query::Log(id))) = r.query() {
            assert_eq!(r.args[0].parse::<u64>(), Ok(id));
        }
        assert_eq!(Request::parse(r.to_string().as_bytes(), known), Ok(r));
    }
    let text = String::from_utf8_lossy(data);
    let reply = Reply::parse(&text);
    if !text.contains(['\n', '\r']) {
        let line = reply.to_string();
        assert_eq!(Reply::parse(&line).to_string(), line);
    }
});
