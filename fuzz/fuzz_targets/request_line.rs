//! The request line: never panics; a line that parses yields tokens that are free of
//! blanks and control bytes and re-join to a line that parses to the same request; a key
//! is always a valid key; `history`/`log` arguments check without panicking and a log id
//! reads back; a built-in's words check without panicking, and those `history`/`log`
//! accept are the ones their query accepts; the digest of a request is the digest of the
//! request it re-joins to; a reply's line, read back and written again, is the same line.
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
        if let Some(b) = r.builtin() {
            let words_ok = b.check_words(&r.args).is_ok();
            if let Some(q) = r.query() {
                // `log x` takes one word that is no id: words fine, query not
                assert!(words_ok || q.is_err());
            }
        }
        let again = Request::parse(r.to_string().as_bytes(), known);
        assert_eq!(again.as_ref().map(Request::digest), Ok(r.digest()));
        assert_eq!(again, Ok(r));
    }
    let text = String::from_utf8_lossy(data);
    let reply = Reply::parse(&text);
    if !text.contains(['\n', '\r']) {
        let line = reply.to_string();
        assert_eq!(Reply::parse(&line).to_string(), line);
    }
});
