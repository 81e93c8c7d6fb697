//! `/proc/<pid>/stat`: any bytes (a short read, a command name with `)`, spaces, newlines
//! or bytes that are not UTF-8) are parsed without a panic; a line that parses still
//! parses the same after anything is appended to the command name's end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use supervisor::procfs::parse_stat;

fuzz_target!(|data: &[u8]| {
    let Some(stat) = parse_stat(data) else { return };
    // The fields are read after the last `)`: a name that grows by a `)` and any bytes
    // before the fields reads the same.
    let close = data.iter().rposition(|&b| b == b')').expect("parsed: has a `)`");
    let mut longer = data[..close].to_vec();
    longer.extend_from_slice(b") x\xff");
    longer.extend_from_slice(&data[close..]);
    assert_eq!(parse_stat(&longer), Some(stat));
});
