//! The smallest program that opens the store at argv[1], records one run and prints
//! `history`: its size, less size_none's, is what the store adds to a binary.
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    journal_bench::one_run(&mut journal_bench::Sqlite::open(&dir));
}
