//! The journal file's records: one record a line, `<crc32 hex> <kind> <fields>`, so a torn
//! write damages at most the last line, a flipped byte at most its own line, and a reader
//! (or an operator with `less`) can resync at the next newline.
//!
//! Kinds:
//! - `N <next_id>`: the id high-water mark, written first by a rewrite, so ids of dropped
//!   runs are never handed out again;
//! - `S <id> <start_ms> <uid> <action> <user|-> <key|-> [<digest>]`: a run started; a keyed
//!   run has the digest of its words (`proto::Request::digest`), which binds the key to
//!   them. A start without one (written before digests) replays its key for any words;
//!   a reader older than the digest skips a start with one as damaged;
//! - `E <id> <end_ms> <exit> <secs>` then `\t<line>` for each kept output line: it ended;
//! - `L <id>`: it was found running when the journal was reopened, so it is lost;
//! - `T <action> <ok> <failed> <lost> <secs> <last_success_ms|->`: what the runs of an action
//!   that were dropped for the bounds counted, written by a rewrite, so the counters of
//!   `metrics` survive restarts (a reader older than this record skips it as damaged).
//!
//! Names are escaped so that they hold no blank (`\xHH`); output lines so that they hold no
//! newline, carriage return or tab (`\n`, `\r`, `\xHH`), and non-UTF-8 or other control bytes
//! become `\xHH` too, so the file stays text and every byte round-trips.

/// A parsed record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    NextId(u64),
    Start {
        id: u64,
        start_ms: i64,
        uid: u32,
        action: String,
        user: Option<String>,
        key: Option<String>,
        digest: Option<String>,
    },
    End {
        id: u64,
        end_ms: i64,
        exit: i32,
        secs: f64,
        lines: Vec<Vec<u8>>,
    },
    Lost(u64),
    Tally {
        action: String,
        tally: crate::Tally,
    },
}

impl Record {
    /// The run it is about (`None` for the id high-water mark).
    pub(crate) fn run_id(&self) -> Option<u64> {
        match self {
            Record::NextId(_) | Record::Tally { .. } => None,
            Record::Start { id, .. } | Record::End { id, .. } | Record::Lost(id) => Some(*id),
        }
    }
}

/// CRC-32 (IEEE 802.3, the zlib/`cksum -o 3` one), table-driven; the table is built at
/// compile time.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Appends `rec` as one line, newline included, to `out`.
pub(crate) fn encode(rec: &Record, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64);
    match rec {
        Record::NextId(n) => body.extend_from_slice(format!("N {n}").as_bytes()),
        Record::Start {
            id,
            start_ms,
            uid,
            action,
            user,
            key,
            digest,
        } => {
            body.extend_from_slice(format!("S {id} {start_ms} {uid} ").as_bytes());
            escape_name(Some(action), &mut body);
            body.push(b' ');
            escape_name(user.as_deref(), &mut body);
            body.push(b' ');
            escape_name(key.as_deref(), &mut body);
            if let Some(d) = digest {
                body.push(b' ');
                escape_name(Some(d), &mut body);
            }
        }
        Record::End {
            id,
            end_ms,
            exit,
            secs,
            lines,
        } => {
            // `{secs}` is the shortest text that parses back to the same f64.
            body.extend_from_slice(format!("E {id} {end_ms} {exit} {secs}").as_bytes());
            for line in lines {
                body.push(b'\t');
                escape_line(line, &mut body);
            }
        }
        Record::Lost(id) => body.extend_from_slice(format!("L {id}").as_bytes()),
        Record::Tally { action, tally: t } => {
            body.extend_from_slice(b"T ");
            escape_name(Some(action), &mut body);
            let last = t
                .last_success_ms
                .map_or_else(|| "-".to_string(), |ms| ms.to_string());
            body.extend_from_slice(
                format!(" {} {} {} {} {last}", t.ok, t.failed, t.lost, t.secs).as_bytes(),
            );
        }
    }
    frame(&body, out);
}

/// Appends `body` to `out` as one checksummed line, `<crc32, 8 hex digits> <body>\n`: the
/// framing of every record, here and in the scheduler's run record. `body` holds no
/// newline (its format escapes them).
pub fn frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{:08x} ", crc32(body)).as_bytes());
    out.extend_from_slice(body);
    out.push(b'\n');
}

/// The body of one framed line (without its newline), or `None` when its checksum does not
/// match it or it has none: a torn write, a flipped byte, another format.
pub fn unframe(line: &[u8]) -> Option<&[u8]> {
    if line.len() < 9 || line[8] != b' ' {
        return None;
    }
    let sum = std::str::from_utf8(&line[..8])
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u32::from_str_radix(s, 16).ok())?;
    let body = &line[9..];
    (crc32(body) == sum).then_some(body)
}

/// Why a line is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The checksum does not match its line (or there is none).
    Checksum,
    /// The checksum matches but the line does not read as a record (a writer of another
    /// version, or a hand edit that recomputed the checksum).
    Syntax,
}

/// Parses one line, without its newline.
pub(crate) fn decode(line: &[u8]) -> Result<Record, Damage> {
    let body = unframe(line).ok_or(Damage::Checksum)?;
    parse_body(body).ok_or(Damage::Syntax)
}

fn parse_body(body: &[u8]) -> Option<Record> {
    let mut parts = body.split(|&b| b == b'\t');
    let head = std::str::from_utf8(parts.next()?).ok()?;
    let mut f = head.split(' ');
    let kind = f.next()?;
    let rec = match kind {
        "N" => Record::NextId(f.next()?.parse().ok()?),
        "L" => Record::Lost(f.next()?.parse().ok()?),
        "S" => Record::Start {
            id: f.next()?.parse().ok()?,
            start_ms: f.next()?.parse().ok()?,
            uid: f.next()?.parse().ok()?,
            action: unescape_name(f.next()?)??,
            user: unescape_name(f.next()?)?,
            key: unescape_name(f.next()?)?,
            digest: match f.next() {
                None => None,
                Some(d) => Some(unescape_name(d)??),
            },
        },
        "E" => Record::End {
            id: f.next()?.parse().ok()?,
            end_ms: f.next()?.parse().ok()?,
            exit: f.next()?.parse().ok()?,
            secs: f.next()?.parse().ok()?,
            lines: parts.map(unescape_line).collect::<Option<_>>()?,
        },
        "T" => Record::Tally {
            action: unescape_name(f.next()?)??,
            tally: crate::Tally {
                ok: f.next()?.parse().ok()?,
                failed: f.next()?.parse().ok()?,
                lost: f.next()?.parse().ok()?,
                secs: f.next()?.parse().ok()?,
                last_success_ms: match f.next()? {
                    "-" => None,
                    ms => Some(ms.parse().ok()?),
                },
            },
        },
        _ => return None,
    };
    if f.next().is_some() {
        return None;
    }
    if !matches!(rec, Record::End { .. }) && body.contains(&b'\t') {
        return None;
    }
    Some(rec)
}

/// Escapes UTF-8 text except `\`, which becomes `\\`, and bytes `keep` refuses, which become
/// `\xHH`; every byte of an invalid UTF-8 sequence becomes `\xHH`.
fn escape(bytes: &[u8], keep: impl Fn(u8) -> bool, out: &mut Vec<u8>) {
    for chunk in bytes.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b if keep(b) => out.push(b),
                b => common::text::hex(b, out),
            }
        }
        for &b in chunk.invalid() {
            common::text::hex(b, out);
        }
    }
}

/// An output line: keeps blanks, escapes control bytes (tab among them: it separates lines).
fn escape_line(line: &[u8], out: &mut Vec<u8>) {
    escape(line, |b| b >= b' ' && b != 0x7f, out);
}

/// A name (action, user, key): a single token, `-` for none (`\x2d` for a name `-`, `\e` for
/// an empty one).
fn escape_name(name: Option<&str>, out: &mut Vec<u8>) {
    match name {
        None => out.push(b'-'),
        Some("-") => common::text::hex(b'-', out),
        Some("") => out.extend_from_slice(b"\\e"),
        Some(s) => escape(s.as_bytes(), |b| b > b' ' && b != 0x7f, out),
    }
}

/// The inverse of [`escape`]; `None` for a bad escape.
fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        match s.get(i + 1)? {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let h = std::str::from_utf8(s.get(i + 2..i + 4)?).ok()?;
                if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            _ => return None,
        }
        i += 2;
    }
    Some(out)
}

fn unescape_line(s: &[u8]) -> Option<Vec<u8>> {
    unescape(s)
}

/// `Some(None)` for `-`, `Some(Some(name))` for a name, `None` when damaged.
fn unescape_name(s: &str) -> Option<Option<String>> {
    if s == "-" {
        return Some(None);
    }
    if s == "\\e" {
        return Some(Some(String::new()));
    }
    if s.is_empty() {
        return None;
    }
    String::from_utf8(unescape(s.as_bytes())?).ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_frame_holds_its_body_and_nothing_else() {
        let mut out = Vec::new();
        frame(b"r2\tsome\tfields", &mut out);
        let body = b"r2\tsome\tfields";
        let mut want = format!("{:08x} ", crc32(body)).into_bytes();
        want.extend_from_slice(body);
        want.push(b'\n');
        assert_eq!(out, want);
        let line = &out[..out.len() - 1];
        assert_eq!(unframe(line), Some(&b"r2\tsome\tfields"[..]));
        let mut flipped = line.to_vec();
        flipped[12] ^= 1;
        assert_eq!(unframe(&flipped), None);
        assert_eq!(unframe(&line[..line.len() - 1]), None, "torn");
        assert_eq!(unframe(b"r1\tno\tframe"), None);
        assert_eq!(unframe(b""), None);
    }

    #[test]
    fn start_record_reads_as_text() {
        let mut out = Vec::new();
        encode(
            &Record::Start {
                id: 7,
                start_ms: 1000,
                uid: 0,
                action: "nightly-backup".into(),
                user: Some("a b".into()),
                key: None,
                digest: None,
            },
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(" S 7 1000 0 nightly-backup a\\x20b -\n"),
            "{text}"
        );
    }

    #[test]
    fn a_start_with_a_digest_and_one_without() {
        let mut rec = Record::Start {
            id: 7,
            start_ms: 1000,
            uid: 0,
            action: "backup".into(),
            user: None,
            key: Some("k:1".into()),
            digest: Some("0123456789abcdef0123456789abcdef".into()),
        };
        let mut out = Vec::new();
        encode(&rec, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.ends_with(" S 7 1000 0 backup - k:1 0123456789abcdef0123456789abcdef\n"),
            "{text}"
        );
        assert_eq!(decode(&out[..out.len() - 1]), Ok(rec.clone()));
        // as written before digests: still read, without one
        if let Record::Start { digest, .. } = &mut rec {
            *digest = None;
        }
        let body = b"S 7 1000 0 backup - k:1";
        let line = format!("{:08x} {}", crc32(body), std::str::from_utf8(body).unwrap());
        assert_eq!(decode(line.as_bytes()), Ok(rec));
    }

    #[test]
    fn tally_record_round_trips() {
        for last_success_ms in [None, Some(1_796_428_080_500)] {
            let rec = Record::Tally {
                action: "nightly backup".into(),
                tally: crate::Tally {
                    ok: 3,
                    failed: 1,
                    lost: 2,
                    secs: 0.1 + 0.2,
                    last_success_ms,
                },
            };
            let mut out = Vec::new();
            encode(&rec, &mut out);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(
                text.contains(" T nightly\\x20backup 3 1 2 0.30000000000000004 "),
                "{text}"
            );
            assert_eq!(decode(&out[..out.len() - 1]), Ok(rec));
        }
    }

    #[test]
    fn end_record_escapes_lines() {
        let mut out = Vec::new();
        let lines = vec![b"a\\b\tc\r\n".to_vec(), vec![0xff, b'x', 0xc3], Vec::new()];
        encode(
            &Record::End {
                id: 1,
                end_ms: 2,
                exit: -1,
                secs: 0.1,
                lines: lines.clone(),
            },
            &mut out,
        );
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.ends_with(" E 1 2 -1 0.1\ta\\\\b\\x09c\\r\\n\t\\xffx\\xc3\t\n"),
            "{text}"
        );
        let rec = decode(&out[..out.len() - 1]).unwrap();
        assert_eq!(
            rec,
            Record::End {
                id: 1,
                end_ms: 2,
                exit: -1,
                secs: 0.1,
                lines
            }
        );
    }

    #[test]
    fn damage_is_told_apart() {
        assert_eq!(decode(b""), Err(Damage::Checksum));
        assert_eq!(decode(b"0000000g N 1"), Err(Damage::Checksum));
        let mut out = Vec::new();
        encode(&Record::NextId(5), &mut out);
        out.pop();
        assert_eq!(decode(&out), Ok(Record::NextId(5)));
        let last = out.len() - 1;
        out[last] = b'6';
        assert_eq!(decode(&out), Err(Damage::Checksum));
        let body = b"N x";
        let line = format!("{:08x} N x", crc32(body));
        assert_eq!(decode(line.as_bytes()), Err(Damage::Syntax));
    }

    fn name() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(any::<String>())
    }

    proptest! {
        #[test]
        fn records_round_trip(
            id in any::<u64>(), ms in any::<i64>(), uid in any::<u32>(), exit in any::<i32>(),
            secs in 0.0f64..1e9, action in any::<String>(),
            user in name(), key in name(), digest in name(),
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
        ) {
            for rec in [
                Record::Start { id, start_ms: ms, uid, action, user, key, digest },
                Record::End { id, end_ms: ms, exit, secs, lines },
                Record::Lost(id),
                Record::NextId(id),
            ] {
                let mut out = Vec::new();
                encode(&rec, &mut out);
                prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
                prop_assert_eq!(decode(&out[..out.len() - 1]), Ok(rec));
            }
        }

        #[test]
        fn decode_never_panics(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&line);
        }
    }
}
