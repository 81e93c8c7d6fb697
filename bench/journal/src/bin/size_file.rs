//! The smallest program that opens the store at argv[1], records one run and prints
//! `history`: its size, less size_none's, is what the store adds to a binary.
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let mut s = journal_bench::FileStore::open(&dir, true);
    run(&mut s);
}

fn run(s: &mut dyn journal_bench::Store) {
    s.start(journal::Start {
        id: 1,
        action: "a".into(),
        user: None,
        key: Some("k".into()),
        uid: 0,
        start_ms: 0,
    });
    s.end(
        1,
        "a",
        journal::End {
            end_ms: 1,
            exit: 0,
            secs: 0.001,
        },
        &[b"out".to_vec()],
    );
    for l in s.history(100) {
        println!("{l}");
    }
}
