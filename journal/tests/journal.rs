//! The journal against real files: reopen, loss, damage, bounds.

use std::fs;
use std::path::Path;

use journal::{End, Journal, Options, Run, Start, Tally, LINES_PER_RUN, RUNS_PER_ACTION};
use proptest::prelude::*;

fn start(id: u64, action: &str, key: Option<&str>) -> Start {
    Start {
        id,
        action: action.into(),
        user: Some("forum".into()),
        key: key.map(Into::into),
        uid: 1000,
        start_ms: 1_796_428_080_000 + id as i64 * 1000,
    }
}

fn end(id: u64, exit: i32) -> End {
    End {
        end_ms: 1_796_428_080_000 + id as i64 * 1000 + 500,
        exit,
        secs: 0.5,
    }
}

/// Any digest: runs started with `Journal::start` have none, so their key answers any words.
const D: &str = "0123456789abcdef0123456789abcdef";

fn fast() -> Options {
    Options {
        fsync: false,
        ..Options::default()
    }
}

fn open(dir: &Path) -> (Journal, Vec<String>) {
    Journal::open(dir, "mysql")
}

fn file(dir: &Path) -> std::path::PathBuf {
    dir.join("mysql.journal")
}

/// One finished run (id 1, keyed), one lost (id 2), one finished with odd output (id 3).
fn three_runs(dir: &Path) -> Journal {
    let (mut j, w) = open(dir);
    assert!(w.is_empty(), "{w:?}");
    assert!(j.is_persistent());
    j.start(start(1, "nightly-backup", Some("nightly:1")))
        .unwrap();
    j.output(1, b"dumping");
    j.output(1, b"done");
    j.end(1, end(1, 0)).unwrap();
    j.start(start(2, "rotate-logs", None)).unwrap();
    j.output(2, b"not kept: never ended");
    j.start(start(3, "nightly-backup", Some("nightly:2")))
        .unwrap();
    j.output(3, b"back\\slash \xff\xfe tab\there\r");
    j.output(3, b"");
    j.end(3, end(3, 2)).unwrap();
    j
}

#[test]
fn round_trip_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let before = three_runs(tmp.path());
    let r1 = before.get(1).unwrap().clone();
    let r3 = before.get(3).unwrap().clone();
    drop(before);
    let (j, w) = open(tmp.path());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(j.get(1), Some(&r1));
    assert_eq!(j.get(3), Some(&r3));
    assert_eq!(r1.lines, vec![b"dumping".to_vec(), b"done".to_vec()]);
    assert_eq!(
        r3.lines,
        vec![b"back\\slash \xff\xfe tab\there\r".to_vec(), Vec::new()]
    );
    assert_eq!(r3.end, Some(end(3, 2)));
    assert_eq!(j.by_key("nightly:1", D).map(|r| r.id), Some(1));
    assert_eq!(j.by_key("nightly:2", D).map(|r| r.id), Some(3));
    assert!(j.by_key("nightly:3", D).is_none());
}

#[test]
fn unended_run_is_lost_and_stays_lost() {
    let tmp = tempfile::tempdir().unwrap();
    drop(three_runs(tmp.path()));
    for _ in 0..3 {
        let (mut j, w) = open(tmp.path());
        assert!(w.is_empty(), "{w:?}");
        let r2 = j.get(2).unwrap();
        assert!(r2.lost && r2.end.is_none() && !r2.is_running());
        assert!(r2.lines.is_empty());
        // an end for a lost run changes nothing
        j.end(2, end(2, 0)).unwrap();
        j.output(2, b"late");
        assert!(j.get(2).unwrap().lost);
    }
    // the loss is on disk, not only inferred
    let text = fs::read_to_string(file(tmp.path())).unwrap();
    assert!(text.lines().any(|l| l.ends_with(" L 2")), "{text}");
}

#[test]
fn ids_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let j = three_runs(tmp.path());
    assert_eq!(j.next_id(), 4);
    drop(j);
    let (mut j, _) = open(tmp.path());
    assert_eq!(j.next_id(), 4);
    j.start(start(9, "x", None)).unwrap();
    assert_eq!(j.next_id(), 10);
    drop(j);
    let (j, _) = open(tmp.path());
    assert_eq!(j.next_id(), 10);
    assert_eq!(Journal::in_memory().next_id(), 1);
}

#[test]
fn ids_never_reused_after_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        runs_per_action: 2,
        compact_min_bytes: 0,
        ..fast()
    };
    let (mut j, _) = Journal::open_with(tmp.path(), "mysql", opts.clone());
    for id in 1..=50 {
        j.start(start(id, "a", None)).unwrap();
        j.end(id, end(id, 0)).unwrap();
    }
    assert_eq!(j.next_id(), 51);
    drop(j);
    let (j, w) = Journal::open_with(tmp.path(), "mysql", opts.clone());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(j.next_id(), 51);
    assert_eq!(j.history(None, 100).len(), 2);
    drop(j);
    // the file was rewritten with the high-water mark first: even with the newest run's
    // records gone (a hand edit), its id is not handed out again
    let text = fs::read_to_string(file(tmp.path())).unwrap();
    assert!(text.lines().next().unwrap().ends_with(" N 51"), "{text}");
    let kept: String = text
        .lines()
        .filter(|l| !l.contains(" S 50 ") && !l.contains(" E 50 "))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(file(tmp.path()), kept).unwrap();
    let (mut j, w) = Journal::open_with(tmp.path(), "mysql", opts.clone());
    assert!(w.is_empty(), "{w:?}");
    assert!(j.get(50).is_none());
    assert_eq!(j.next_id(), 51);
    j.start(start(51, "a", None)).unwrap();
    assert_eq!(j.next_id(), 52);
    drop(j);
    let (j, _) = Journal::open_with(tmp.path(), "mysql", opts);
    assert_eq!(j.next_id(), 52);
}

fn cut_file(path: &Path, len: usize) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..len]).unwrap();
}

#[test]
fn torn_last_record_at_every_offset() {
    let tmp = tempfile::tempdir().unwrap();
    drop(three_runs(tmp.path()));
    // make the state settled (run 2 recorded lost), then append one more run's start
    let (mut j, _) = open(tmp.path());
    let before: Vec<Run> = j.history(None, 100).into_iter().cloned().collect();
    let base = fs::metadata(file(tmp.path())).unwrap().len() as usize;
    j.start(start(7, "nightly-backup", Some("k7"))).unwrap();
    drop(j);
    let whole = fs::read(file(tmp.path())).unwrap();
    assert_eq!(whole.last(), Some(&b'\n'));
    for cut in base..whole.len() {
        fs::write(file(tmp.path()), &whole[..cut]).unwrap();
        let (j, w) = open(tmp.path());
        let after: Vec<Run> = j.history(None, 100).into_iter().cloned().collect();
        if cut == base {
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(after, before);
        } else if cut == whole.len() - 1 {
            // only the newline is missing: the record is whole and kept
            assert!(w.is_empty(), "{w:?}");
            assert!(j.get(7).unwrap().lost);
        } else {
            assert_eq!(w.len(), 1, "cut {cut}: {w:?}");
            assert!(w[0].contains("torn last record skipped"), "{w:?}");
            assert_eq!(after, before, "cut {cut}");
            assert!(j.by_key("k7", D).is_none());
        }
        assert!(j.next_id() >= 4);
        drop(j);
        // the file is whole again: a second open warns of nothing
        let (_, w) = open(tmp.path());
        assert!(w.is_empty(), "cut {cut}, second open: {w:?}");
    }
    cut_file(&file(tmp.path()), 0);
    let (j, w) = open(tmp.path());
    assert!(w.is_empty() && j.history(None, 10).is_empty());
}

#[test]
fn damaged_middle_record_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    drop(three_runs(tmp.path()));
    let (j, _) = open(tmp.path());
    let before: Vec<Run> = j.history(None, 100).into_iter().cloned().collect();
    drop(j);
    let whole = fs::read(file(tmp.path())).unwrap();
    let text = String::from_utf8(whole.clone()).unwrap();
    // the record of run 2's start: flipping any byte of it loses run 2 only
    let line_start = text.find(" S 2 ").unwrap() - 8;
    let line_end = line_start + text[line_start..].find('\n').unwrap();
    for at in line_start..line_end {
        let mut bytes = whole.clone();
        bytes[at] ^= 0x01;
        fs::write(file(tmp.path()), &bytes).unwrap();
        let (j, w) = open(tmp.path());
        assert_eq!(w.len(), 1, "byte {at}: {w:?}");
        assert!(w[0].contains("damaged record skipped"), "{w:?}");
        let after: Vec<Run> = j.history(None, 100).into_iter().cloned().collect();
        let expected: Vec<Run> = before.iter().filter(|r| r.id != 2).cloned().collect();
        assert_eq!(after, expected, "byte {at}");
        drop(j);
        let (_, w) = open(tmp.path());
        assert!(w.is_empty(), "second open: {w:?}");
    }
}

#[test]
fn many_damaged_records_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open_with(tmp.path(), "mysql", fast());
    for id in 1..=10 {
        j.start(start(id, "a", None)).unwrap();
        j.end(id, end(id, 0)).unwrap();
    }
    drop(j);
    let text = fs::read_to_string(file(tmp.path())).unwrap();
    let bad: String = text
        .lines()
        .map(|l| {
            if l.contains(" E ") {
                format!("{l}x\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(file(tmp.path()), bad).unwrap();
    let (j, w) = Journal::open_with(tmp.path(), "mysql", fast());
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[3].contains("7 more damaged records skipped"), "{w:?}");
    assert!(j.history(None, 100).iter().all(|r| r.lost));
}

#[test]
fn unwritable_dir_gives_memory_and_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    fs::write(&not_a_dir, "x").unwrap();
    let (mut j, w) = open(&not_a_dir.join("state"));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("keeping the journal in memory"), "{w:?}");
    assert!(!j.is_persistent());
    // Not durable: a keyed start is refused and forgotten (it must not run, nor replay).
    let e = j.start(start(1, "a", Some("k"))).unwrap_err();
    assert!(e.to_string().contains("cannot be written"), "{e}");
    assert!(j.get(1).is_none() && j.by_key("k", D).is_none());
    // An unkeyed one is kept in memory, its write failing all the same.
    assert!(j.start(start(2, "a", None)).is_err());
    j.output(2, b"line");
    assert!(j.end(2, end(2, 0)).is_err());
    assert_eq!(j.get(2).unwrap().lines, vec![b"line".to_vec()]);
    assert_eq!(
        j.next_id(),
        3,
        "the refused start's id is not handed out again"
    );
    // a journal path that is a directory: unreadable
    fs::create_dir(tmp.path().join("mysql.journal")).unwrap();
    let (j, w) = open(tmp.path());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(!j.is_persistent());
}

#[test]
fn history_order_limit_filter_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open_with(tmp.path(), "mysql", fast());
    for id in 1..=6 {
        let action = if id % 2 == 0 { "even" } else { "odd" };
        j.start(start(id, action, None)).unwrap();
        if id != 6 {
            j.end(id, end(id, id as i32 - 1)).unwrap();
        }
    }
    let ids = |v: Vec<&Run>| v.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(j.history(None, 100)), vec![6, 5, 4, 3, 2, 1]);
    assert_eq!(ids(j.history(None, 2)), vec![6, 5]);
    assert_eq!(ids(j.history(Some("even"), 100)), vec![6, 4, 2]);
    assert_eq!(ids(j.history(Some("odd"), 1)), vec![5]);
    assert!(j.history(Some("none"), 100).is_empty());
    let r5 = j.get(5).unwrap();
    assert_eq!((r5.end.map(|e| e.exit), r5.uid), (Some(4), 1000));
    assert!(j.get(6).unwrap().is_running());
    let mut s = start(7, "odd", None);
    s.user = None;
    s.uid = 0;
    j.start(s).unwrap();
    j.end(
        7,
        End {
            end_ms: 0,
            exit: 137,
            secs: 12.3456,
        },
    )
    .unwrap();
    let r7 = j.get(7).unwrap();
    assert_eq!((r7.user.as_deref(), r7.uid), (None, 0));
    assert_eq!(r7.end.map(|e| (e.exit, e.secs)), Some((137, 12.3456)));
}

#[test]
fn output_keeps_the_last_lines() {
    let mut j = Journal::in_memory();
    // never written, so never durable: the write fails, the unkeyed run is kept
    j.start(start(1, "a", None)).unwrap_err();
    for i in 0..LINES_PER_RUN + 50 {
        j.output(1, format!("line {i}").as_bytes());
    }
    j.output(1, &vec![b'x'; journal::MAX_LINE_BYTES + 10]);
    j.end(1, end(1, 0)).unwrap_err();
    j.output(1, b"after the end");
    let r = j.get(1).unwrap();
    assert_eq!(r.lines.len(), LINES_PER_RUN);
    assert_eq!(r.lines[0], b"line 51");
    assert_eq!(r.lines[LINES_PER_RUN - 1].len(), journal::MAX_LINE_BYTES);
}

#[test]
fn compaction_keeps_last_runs_of_each_action_and_their_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        compact_min_bytes: 4096,
        ..fast()
    };
    let (mut j, _) = Journal::open_with(tmp.path(), "mysql", opts.clone());
    let mut id = 0;
    // a long-running run that must survive every compaction
    j.start(start(1_000_000, "slow", Some("slow-key"))).unwrap();
    for round in 0..3 * RUNS_PER_ACTION {
        for action in ["a", "b", "c"] {
            if action == "c" && round % 10 != 0 {
                continue;
            }
            id += 1;
            j.start(start(id, action, Some(&format!("k{id}")))).unwrap();
            j.output(id, format!("out {id}").as_bytes());
            j.end(id, end(id, 0)).unwrap();
        }
    }
    let check = |j: &Journal| {
        for action in ["a", "b"] {
            let h = j.history(Some(action), 1000);
            assert_eq!(h.len(), RUNS_PER_ACTION, "{action}");
            for r in &h {
                let key = format!("k{}", r.id);
                assert_eq!(j.by_key(&key, D).map(|r| r.id), Some(r.id));
                assert_eq!(r.lines, vec![format!("out {}", r.id).into_bytes()]);
            }
        }
        assert_eq!(j.history(Some("c"), 1000).len(), 30);
        assert!(j.get(1_000_000).is_some());
        assert_eq!(j.by_key("slow-key", D).map(|r| r.id), Some(1_000_000));
        assert!(j.by_key("k1", D).is_none(), "dropped with its run");
    };
    check(&j);
    let mem: Vec<Run> = j.history(None, 1000).into_iter().cloned().collect();
    drop(j);
    let (j, w) = Journal::open_with(tmp.path(), "mysql", opts);
    assert!(w.is_empty(), "{w:?}");
    check(&j);
    assert!(j.get(1_000_000).unwrap().lost);
    let disk: Vec<Run> = j.history(None, 1000).into_iter().cloned().collect();
    let mut expected = mem;
    expected[0].lost = true;
    assert_eq!(disk, expected);
}

#[test]
fn reopen_after_compaction_matches_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        compact_min_bytes: 2048,
        runs_per_action: 10,
        ..fast()
    };
    let (mut j, _) = Journal::open_with(tmp.path(), "mysql", opts.clone());
    for id in 1..=500 {
        j.start(start(
            id,
            ["a", "b"][id as usize % 2],
            Some(&format!("k{id}")),
        ))
        .unwrap();
        j.output(id, b"x");
        j.end(id, end(id, 0)).unwrap();
    }
    let mem: Vec<Run> = j.history(None, 1000).into_iter().cloned().collect();
    drop(j);
    let (j, w) = Journal::open_with(tmp.path(), "mysql", opts);
    assert!(w.is_empty(), "{w:?}");
    let disk: Vec<Run> = j.history(None, 1000).into_iter().cloned().collect();
    assert_eq!(disk, mem);
    assert_eq!(disk.len(), 20);
    assert_eq!(j.next_id(), 501);
}

#[test]
fn a_hundred_thousand_runs_stay_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open_with(tmp.path(), "mysql", fast());
    let mut max = 0;
    for id in 1..=100_000u64 {
        let action = ["nightly-backup", "rotate-logs", "vacuum"][id as usize % 3];
        j.start(start(id, action, Some(&format!("fire:{id}"))))
            .unwrap();
        j.output(id, b"a line of output, as a backup would print it");
        j.end(id, end(id, 0)).unwrap();
        if id % 1000 == 0 {
            max = max.max(fs::metadata(file(tmp.path())).unwrap().len());
        }
    }
    assert_eq!(j.history(None, usize::MAX).len(), 3 * RUNS_PER_ACTION);
    // kept: 300 runs of ~200 bytes; the file stays under twice that or the floor, with slack
    assert!(max <= 2 * Options::default().compact_min_bytes, "{max}");
    drop(j);
    let (j, w) = Journal::open_with(tmp.path(), "mysql", fast());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(j.next_id(), 100_001);
    assert_eq!(j.history(Some("vacuum"), 1)[0].id, 99_998);
}

#[test]
fn total_is_bounded_across_actions() {
    let opts = Options {
        max_runs: 50,
        ..fast()
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open_with(tmp.path(), "mysql", opts);
    for id in 1..=200 {
        j.start(start(id, &format!("action{id}"), None)).unwrap();
        j.end(id, end(id, 0)).unwrap();
    }
    let h = j.history(None, 1000);
    assert_eq!(h.len(), 50);
    assert_eq!(h.last().unwrap().id, 151);
}

#[test]
fn tallies_count_kept_and_dropped_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = three_runs(tmp.path());
    j.start(start(4, "rotate-logs", None)).unwrap();
    let t = j.tallies();
    assert_eq!(
        t["nightly-backup"],
        Tally {
            ok: 1,
            failed: 1,
            lost: 0,
            secs: 1.0,
            last_success_ms: Some(end(1, 0).end_ms),
        }
    );
    // running runs are not counted
    assert_eq!(t["rotate-logs"], Tally::default());
    drop(j);
    let (j, _) = open(tmp.path());
    assert_eq!(j.tallies()["rotate-logs"].lost, 2, "both were going");

    // runs dropped for the bounds still count, also across reopening and compaction
    for compact_min_bytes in [0, 1 << 20] {
        let opts = Options {
            runs_per_action: 10,
            compact_min_bytes,
            ..fast()
        };
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open_with(tmp.path(), "mysql", opts.clone());
        for id in 1..=30 {
            j.start(start(id, "vacuum", None)).unwrap();
            j.end(id, end(id, i32::from(id % 3 == 0))).unwrap();
        }
        assert_eq!(j.history(Some("vacuum"), 100).len(), 10);
        let want = Tally {
            ok: 20,
            failed: 10,
            lost: 0,
            secs: 15.0,
            last_success_ms: Some(end(29, 0).end_ms),
        };
        assert_eq!(j.tallies()["vacuum"], want);
        let text = fs::read_to_string(file(tmp.path())).unwrap();
        assert_eq!(
            text.contains(" T vacuum "),
            compact_min_bytes == 0,
            "the dropped runs' tally is written by a rewrite: {text}"
        );
        for _ in 0..2 {
            drop(j);
            let (again, w) = Journal::open_with(tmp.path(), "mysql", opts.clone());
            assert!(w.is_empty(), "{w:?}");
            j = again;
            assert_eq!(j.tallies()["vacuum"], want, "{compact_min_bytes}");
        }
        j.start(start(31, "vacuum", None)).unwrap();
        j.end(31, end(31, 0)).unwrap();
        drop(j);
        let (j, _) = Journal::open_with(tmp.path(), "mysql", opts);
        let t = j.tallies()["vacuum"];
        assert_eq!((t.ok, t.failed, t.secs), (21, 10, 15.5));
        assert_eq!(t.last_success_ms, Some(end(31, 0).end_ms));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the file holds, open neither panics nor fails, and the journal works after.
    #[test]
    fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(file(tmp.path()), &bytes).unwrap();
        let (mut j, _) = Journal::open_with(tmp.path(), "mysql", fast());
        let id = j.next_id();
        j.start(start(id, "a", None)).unwrap();
        j.end(id, end(id, 0)).unwrap();
        drop(j);
        let (j, w) = Journal::open_with(tmp.path(), "mysql", fast());
        prop_assert!(w.is_empty(), "{:?}", w);
        prop_assert!(j.get(id).is_some_and(|r| r.end.is_some()));
    }

    /// Records that look almost right: valid records with bytes flipped and lines cut.
    #[test]
    fn open_survives_mangled_records(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8), cut in any::<prop::sample::Index>()) {
        let tmp = tempfile::tempdir().unwrap();
        drop(three_runs(tmp.path()));
        let mut bytes = fs::read(file(tmp.path())).unwrap();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let n = cut.index(bytes.len() + 1);
        bytes.truncate(n);
        fs::write(file(tmp.path()), &bytes).unwrap();
        let (j, _) = open(tmp.path());
        prop_assert!(j.next_id() >= 1);
        drop(j);
        let (_, w) = open(tmp.path());
        prop_assert!(w.is_empty(), "{:?}", w);
    }

    /// Output lines of any bytes come back as they went in.
    #[test]
    fn any_output_round_trips(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20)) {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open_with(tmp.path(), "mysql", fast());
        j.start(start(1, "a", None)).unwrap();
        for l in &lines {
            j.output(1, l);
        }
        j.end(1, end(1, 0)).unwrap();
        drop(j);
        let (j, w) = Journal::open_with(tmp.path(), "mysql", fast());
        prop_assert!(w.is_empty());
        prop_assert_eq!(&j.get(1).unwrap().lines, &lines);
    }
}

/// Reopening often, with few runs in between, must not let the file outgrow its bound (the
/// bound comes from what is kept, not from the file's length at open).
#[test]
fn reopening_often_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        runs_per_action: 10,
        compact_min_bytes: 0,
        ..fast()
    };
    let mut id = 0;
    let mut max = 0;
    for _ in 0..100 {
        let (mut j, w) = Journal::open_with(tmp.path(), "mysql", opts.clone());
        assert!(w.is_empty(), "{w:?}");
        for _ in 0..15 {
            id += 1;
            j.start(start(id, ["a", "b"][id as usize % 2], None))
                .unwrap();
            j.end(id, end(id, 0)).unwrap();
        }
        max = max.max(fs::metadata(file(tmp.path())).unwrap().len());
    }
    // 20 runs kept, ~140 bytes each: twice that plus a run, never the ~200 KiB of all runs
    assert!(max < 8 * 1024, "{max}");
}

#[test]
fn an_overlong_line_is_skipped_unread() {
    let tmp = tempfile::tempdir().unwrap();
    drop(three_runs(tmp.path()));
    let mut bytes = fs::read(file(tmp.path())).unwrap();
    let keep = bytes.clone();
    bytes.extend(std::iter::repeat_n(b'a', 5 << 20));
    bytes.push(b'\n');
    bytes.extend_from_slice(&keep); // the same records again: harmless
    fs::write(file(tmp.path()), &bytes).unwrap();
    let (j, w) = open(tmp.path());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("damaged record skipped"), "{w:?}");
    assert_eq!(j.history(None, 10).len(), 3);
    drop(j);
    // and as a torn last line
    let mut bytes = keep.clone();
    bytes.extend(std::iter::repeat_n(b'a', 5 << 20));
    fs::write(file(tmp.path()), &bytes).unwrap();
    let (j, w) = open(tmp.path());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("torn last record skipped"), "{w:?}");
    assert_eq!(j.history(None, 10).len(), 3);
}

#[test]
fn a_journal_that_is_not_a_file_gives_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // A symlink is not followed (DESIGN.md section 9), whatever it points to.
    std::os::unix::fs::symlink("/dev/zero", file(tmp.path())).unwrap();
    let (j, w) = open(tmp.path());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("a symbolic link; not followed"), "{w:?}");
    assert!(!j.is_persistent());
    // Nor is a directory, or a fifo (which would block the open until someone writes).
    for make in ["mkdir", "mkfifo"] {
        let tmp = tempfile::tempdir().unwrap();
        let st = std::process::Command::new(make)
            .arg(file(tmp.path()))
            .status()
            .unwrap();
        assert!(st.success());
        let (j, w) = open(tmp.path());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("not a regular file"), "{make}: {w:?}");
        assert!(!j.is_persistent());
    }
}

/// Options that retry a failed append at once (no wait).
fn retry_at_once() -> Options {
    Options {
        retry_every: std::time::Duration::ZERO,
        ..Options::default()
    }
}

fn digest_start(id: u64, action: &str, key: &str) -> Start {
    Start {
        key: Some(key.into()),
        ..start(id, action, None)
    }
}

/// DESIGN.md section 2: the same key with other words is another run, never a replay.
#[test]
fn a_key_belongs_to_its_words() {
    let tmp = tempfile::tempdir().unwrap();
    let (noop, backup) = ("1".repeat(32), "2".repeat(32));
    {
        let (mut j, _) = open(tmp.path());
        j.start_with(digest_start(1, "noop", "K"), Some(noop.clone()))
            .unwrap();
        j.end(1, end(1, 0)).unwrap();
        assert_eq!(j.by_key("K", &noop).map(|r| r.id), Some(1));
        assert!(
            j.by_key("K", &backup).is_none(),
            "other words: not a replay"
        );
        j.start_with(digest_start(2, "backup", "K"), Some(backup.clone()))
            .unwrap();
        j.end(2, end(2, 0)).unwrap();
        assert_eq!(j.by_key("K", &noop).map(|r| r.id), Some(1));
        assert_eq!(j.by_key("K", &backup).map(|r| r.id), Some(2));
    }
    // Both kept across a reopen, and across a rewrite.
    for _ in 0..2 {
        let (mut j, w) = open(tmp.path());
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(j.by_key("K", &noop).map(|r| r.id), Some(1));
        assert_eq!(j.by_key("K", &backup).map(|r| r.id), Some(2));
        assert_eq!(j.get(2).unwrap().digest.as_deref(), Some(backup.as_str()));
        assert!(j.by_key("K", &"3".repeat(32)).is_none());
        // a run that never ends: lost at the next open, which rewrites the file
        let id = j.next_id();
        j.start(start(id, "z", None)).unwrap();
    }
    // A digest without a key means nothing.
    let (mut j, _) = open(tmp.path());
    j.start_with(start(3, "x", None), Some(noop.clone()))
        .unwrap();
    assert_eq!(j.get(3).unwrap().digest, None);
}

#[test]
fn a_start_written_before_digests_replays_for_any_words() {
    let tmp = tempfile::tempdir().unwrap();
    // written by the older listener: `S` without the digest field
    let (mut j, _) = open(tmp.path());
    j.start(start(1, "backup", Some("old"))).unwrap();
    j.end(1, end(1, 0)).unwrap();
    drop(j);
    let text = fs::read_to_string(file(tmp.path())).unwrap();
    assert!(text.contains(" S 1 ") && text.contains(" old\n"), "{text}");
    let (j, w) = open(tmp.path());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(j.by_key("old", D).map(|r| r.id), Some(1));
    assert_eq!(j.by_key("old", &"9".repeat(32)).map(|r| r.id), Some(1));
}

/// A tiny tmpfs, unmounted at drop: a disk that really fills.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        testkit::prereq::require_root("mount a tmpfs");
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills it to the last byte.
    fn fill(&self) {
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=1k", "count=100000"])
            .arg(format!("of={}", self.path().join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        // tmpfs also keeps a few bytes in small writes: fill what dd left
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.path().join("filler"))
            .unwrap();
        while std::io::Write::write(&mut f, b"x").is_ok() {}
    }

    fn free(&self) {
        fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

/// DESIGN.md section 2, "never run unrecorded": a full disk refuses keyed starts, keeps
/// unkeyed runs in memory, and once space is back the next write puts everything on disk,
/// without a reopen; no temporary is left behind.
#[test]
fn a_full_disk_refuses_keyed_starts_and_recovers_by_itself() {
    let fs_ = Tmpfs::mount("64k");
    let dir = fs_.path().join("state");
    let (mut j, w) = Journal::open_with(&dir, "mysql", retry_at_once());
    assert!(w.is_empty(), "{w:?}");
    j.start(start(1, "a", None)).unwrap();
    j.end(1, end(1, 0)).unwrap();
    fs_.fill();
    // the file's last page may still hold a few records: write until the disk says no
    let mut id = 2;
    while j.start(start(id, "a", None)).is_ok() {
        j.end(id, end(id, 0)).unwrap();
        id += 1;
        assert!(id < 1000, "the disk never filled");
    }
    assert!(!j.is_persistent());
    let e = j
        .start_with(digest_start(id + 1, "backup", "K"), Some(D.into()))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
    assert!(j.get(id + 1).is_none() && j.by_key("K", D).is_none());
    // unkeyed: kept in memory, its write fails
    let id = id + 2;
    assert!(j.start(start(id, "a", None)).is_err());
    j.output(id, b"kept in memory");
    assert!(j.end(id, end(id, 0)).is_err());
    assert_eq!(names(&dir), ["mysql.journal"], "no temporary left");
    fs_.free();
    // the next write gets through: everything memory has is on disk
    let kept = id;
    let id = id + 1;
    j.start_with(digest_start(id, "backup", "K"), Some(D.into()))
        .unwrap();
    assert!(j.is_persistent());
    j.end(id, end(id, 0)).unwrap();
    drop(j);
    let (j, w) = open(&dir);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(j.get(kept).unwrap().lines, vec![b"kept in memory".to_vec()]);
    assert_eq!(j.by_key("K", D).map(|r| r.id), Some(id));
    assert!(
        j.get(kept - 1).is_none(),
        "the refused keyed start is nowhere"
    );
    assert_eq!(j.next_id(), id + 1);
    assert_eq!(names(&dir), ["mysql.journal"]);
}

/// A full disk at open (the rewrite of a journal with a lost run fails): memory only, and
/// the file is used again once it can be, without a reopen.
#[test]
fn a_failed_rewrite_at_open_is_retried_at_later_writes() {
    let fs_ = Tmpfs::mount("64k");
    let dir = fs_.path().join("state");
    {
        let (mut j, _) = Journal::open_with(&dir, "mysql", retry_at_once());
        j.start(start(1, "slow", None)).unwrap(); // never ends: lost at the reopen
    }
    fs_.fill();
    let (mut j, w) = Journal::open_with(&dir, "mysql", retry_at_once());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("cannot write it"), "{w:?}");
    assert!(!j.is_persistent());
    assert!(j.get(1).unwrap().lost);
    assert!(j
        .start_with(digest_start(2, "b", "K"), Some(D.into()))
        .is_err());
    assert_eq!(names(&dir), ["mysql.journal"], "no temporary left");
    fs_.free();
    j.start_with(digest_start(3, "b", "K"), Some(D.into()))
        .unwrap();
    drop(j);
    let (j, w) = open(&dir);
    assert!(w.is_empty(), "{w:?}");
    assert!(j.get(1).unwrap().lost);
    assert_eq!(j.by_key("K", D).map(|r| r.id), Some(3));
    assert!(j.get(3).unwrap().lost, "never ended: lost at this reopen");
}

/// Retries are rate-limited: while failing, at most one try per `retry_every`.
#[test]
fn retries_wait_their_turn() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    fs::write(&not_a_dir, "x").unwrap();
    let dir = not_a_dir.join("state");
    let opts = Options {
        retry_every: std::time::Duration::from_secs(3600),
        ..Options::default()
    };
    let (mut j, _) = Journal::open_with(&dir, "mysql", opts);
    let (k, _) = Journal::open_with(&dir, "mysql", retry_at_once());
    fs::remove_file(&not_a_dir).unwrap();
    // the directory could be made now, but no retry is due
    assert!(j.start(start(1, "a", None)).is_err());
    assert!(!not_a_dir.exists());
    drop(j);
    let mut j = k;
    fs::write(&not_a_dir, "x").unwrap();
    assert!(j.start(start(1, "a", None)).is_err());
    fs::remove_file(&not_a_dir).unwrap();
    j.start(start(2, "a", Some("k"))).unwrap();
    assert!(j.is_persistent());
    assert!(file(&dir).is_file());
}

/// A directory that appears with a journal in it (a volume mounted late): what it holds is
/// read and kept beside what memory has, and its ids are not handed out again.
#[test]
fn a_journal_found_at_a_retry_is_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    drop(three_runs(other.path()));
    let dir = tmp.path().join("state");
    fs::write(&dir, "not yet").unwrap();
    let (mut j, w) = Journal::open_with(&dir, "mysql", retry_at_once());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(j.start(start(10, "a", None)).is_err());
    fs::remove_file(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::copy(file(other.path()), file(&dir)).unwrap();
    j.start(start(11, "a", None)).unwrap();
    assert!(j.get(1).is_some() && j.get(3).is_some() && j.get(10).is_some());
    assert!(j.get(2).unwrap().lost);
    drop(j);
    let (j, _) = open(&dir);
    assert_eq!(j.next_id(), 12);
    assert!(j.get(1).is_some() && j.get(10).is_some() && j.get(11).is_some());
}

/// DESIGN.md section 9: the state directory is made 0700; the journal and its temporaries
/// are never written through a planted symlink.
#[test]
fn planted_symlinks_are_not_followed() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let (j, _) = open(&dir);
    drop(j);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    let victim = tmp.path().join("victim");
    fs::write(&victim, "IMPORTANT").unwrap();
    // the journal itself
    fs::remove_file(file(&dir)).unwrap();
    symlink(&victim, file(&dir)).unwrap();
    let (mut j, w) = open(&dir);
    assert!(w[0].contains("not followed"), "{w:?}");
    assert!(j.start(start(1, "a", Some("k"))).is_err());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "IMPORTANT");
    // every temporary name a rewrite might use, and the old fixed one
    fs::remove_file(file(&dir)).unwrap();
    let mut planted = vec![".mysql.journal.tmp".to_string(), "mysql.journal.tmp".into()];
    for n in 0..50 {
        planted.push(format!(".mysql.journal.{}.{n}.tmp", std::process::id()));
    }
    for p in &planted {
        symlink(&victim, dir.join(p)).unwrap();
    }
    let (mut j, w) = open(&dir);
    assert!(w.is_empty(), "{w:?}");
    j.start(start(1, "slow", None)).unwrap();
    drop(j);
    // the lost run makes the next open rewrite the file
    let (mut j, w) = open(&dir);
    assert!(w.is_empty(), "{w:?}");
    assert!(j.get(1).unwrap().lost);
    j.start(start(2, "a", Some("k"))).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "IMPORTANT");
    assert!(!fs::symlink_metadata(file(&dir))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::read_to_string(file(&dir)).unwrap().contains(" L 1\n"));
}
