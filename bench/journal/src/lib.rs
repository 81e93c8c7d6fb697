//! The three storage candidates for the run journal behind one small trait, each doing the
//! same work: a durable start record (the key must be on disk before the action runs), a
//! durable end record with the run's last lines, the same bound (the last 100 runs of each
//! action), and `history` (the newest 100 runs as DESIGN.md section 7 lines).

use std::path::Path;

use journal::{End, Journal, Options, Start};

pub trait Store {
    fn start(&mut self, s: Start);
    fn end(&mut self, id: u64, action: &str, end: End, lines: &[Vec<u8>]);
    fn history(&mut self, limit: usize) -> Vec<String>;
    /// Non-durable writes (fill phase) or durable ones.
    fn set_durable(&mut self, durable: bool);
}

fn line(
    id: u64,
    start_ms: i64,
    action: &str,
    user: Option<&str>,
    end: Option<(i32, f64)>,
    uid: u32,
) -> String {
    let (exit, secs) = match end {
        Some((e, s)) => (e.to_string(), format!("{s:.3}")),
        None => ("running".into(), "-".into()),
    };
    format!(
        "{id} {} {action} user={} exit={exit} secs={secs} by={uid}",
        journal::rfc3339(start_ms),
        user.unwrap_or("-")
    )
}

// ---- the append-only file (the journal crate) ----

pub struct FileStore(pub Journal);

impl FileStore {
    pub fn open(dir: &Path, durable: bool) -> FileStore {
        let opts = Options {
            fsync: durable,
            ..Options::default()
        };
        let (j, w) = Journal::open_with(dir, "bench", opts);
        assert!(w.is_empty(), "{w:?}");
        FileStore(j)
    }
}

impl Store for FileStore {
    fn start(&mut self, s: Start) {
        self.0.start(s).unwrap();
    }
    fn end(&mut self, id: u64, _action: &str, end: End, lines: &[Vec<u8>]) {
        for l in lines {
            self.0.output(id, l);
        }
        self.0.end(id, end).unwrap();
    }
    fn history(&mut self, limit: usize) -> Vec<String> {
        self.0
            .history(None, limit)
            .iter()
            .map(|r| {
                let end = r.end.map(|e| (e.exit, e.secs));
                line(r.id, r.start_ms, &r.action, r.user.as_deref(), end, r.uid)
            })
            .collect()
    }
    fn set_durable(&mut self, _durable: bool) {
        // reopen instead (the journal's fsync is an open option)
    }
}

// ---- SQLite through rusqlite (bundled), WAL ----

pub struct Sqlite(pub rusqlite::Connection);

impl Sqlite {
    pub fn open(dir: &Path) -> Sqlite {
        let c = rusqlite::Connection::open(dir.join("bench.sqlite")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS runs(
                id INTEGER PRIMARY KEY, action TEXT NOT NULL, user TEXT, key TEXT UNIQUE,
                uid INTEGER NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER, exit INTEGER,
                secs REAL, lost INTEGER NOT NULL DEFAULT 0, lines BLOB);
             CREATE INDEX IF NOT EXISTS runs_action ON runs(action, id);",
        )
        .unwrap();
        Sqlite(c)
    }
}

impl Store for Sqlite {
    fn start(&mut self, s: Start) {
        self.0
            .prepare_cached("INSERT INTO runs(id, action, user, key, uid, start_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap()
            .execute(rusqlite::params![s.id as i64, s.action, s.user, s.key, s.uid, s.start_ms])
            .unwrap();
    }
    fn end(&mut self, id: u64, action: &str, end: End, lines: &[Vec<u8>]) {
        let blob = lines.join(&b'\n');
        let tx = self.0.transaction().unwrap();
        tx.prepare_cached(
            "UPDATE runs SET end_ms = ?2, exit = ?3, secs = ?4, lines = ?5 WHERE id = ?1",
        )
        .unwrap()
        .execute(rusqlite::params![
            id as i64, end.end_ms, end.exit, end.secs, blob
        ])
        .unwrap();
        tx.prepare_cached(
            "DELETE FROM runs WHERE action = ?1 AND end_ms IS NOT NULL AND id < (
                SELECT id FROM runs WHERE action = ?1 ORDER BY id DESC LIMIT 1 OFFSET 99)",
        )
        .unwrap()
        .execute([action])
        .unwrap();
        tx.commit().unwrap();
    }
    fn history(&mut self, limit: usize) -> Vec<String> {
        let mut st = self
            .0
            .prepare_cached("SELECT id, start_ms, action, user, exit, secs, uid, end_ms FROM runs ORDER BY id DESC LIMIT ?1")
            .unwrap();
        st.query_map([limit as i64], |r| {
            let end_ms: Option<i64> = r.get(7)?;
            let end = match end_ms {
                Some(_) => Some((r.get::<_, i32>(4)?, r.get::<_, f64>(5)?)),
                None => None,
            };
            Ok(line(
                r.get::<_, i64>(0)? as u64,
                r.get(1)?,
                &r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?.as_deref(),
                end,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }
    fn set_durable(&mut self, durable: bool) {
        let mode = if durable { "FULL" } else { "OFF" };
        self.0
            .execute_batch(&format!("PRAGMA synchronous={mode};"))
            .unwrap();
    }
}

// ---- redb ----

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("runs");
const KEYS: TableDefinition<&str, u64> = TableDefinition::new("keys");
const BY_ACTION: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_action");

pub struct Redb {
    pub db: redb::Database,
    durable: bool,
    commits: u64,
}

/// A run as bytes: the text fields tab-separated, then the lines (the same information the
/// file journal stores).
fn encode_run(s: &Start, end: Option<End>, lines: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        s.id,
        s.action,
        s.user.as_deref().unwrap_or("-"),
        s.key.as_deref().unwrap_or("-"),
        s.uid,
        s.start_ms
    )
    .into_bytes();
    if let Some(e) = end {
        v.extend_from_slice(format!("\t{}\t{}\t{}", e.end_ms, e.exit, e.secs).as_bytes());
        for l in lines {
            v.push(b'\n');
            v.extend_from_slice(l);
        }
    }
    v
}

fn decode_run(v: &[u8]) -> (Start, Option<End>) {
    let head = v.split(|&b| b == b'\n').next().unwrap();
    let t = std::str::from_utf8(head).unwrap();
    let f: Vec<&str> = t.split('\t').collect();
    let opt = |s: &str| (s != "-").then(|| s.to_string());
    let s = Start {
        id: f[0].parse().unwrap(),
        action: f[1].into(),
        user: opt(f[2]),
        key: opt(f[3]),
        uid: f[4].parse().unwrap(),
        start_ms: f[5].parse().unwrap(),
    };
    let end = (f.len() > 6).then(|| End {
        end_ms: f[6].parse().unwrap(),
        exit: f[7].parse().unwrap(),
        secs: f[8].parse().unwrap(),
    });
    (s, end)
}

impl Redb {
    pub fn open(dir: &Path) -> Redb {
        let db = redb::Database::create(dir.join("bench.redb")).unwrap();
        Redb {
            db,
            durable: true,
            commits: 0,
        }
    }
    fn txn(&mut self) -> redb::WriteTransaction {
        let mut t = self.db.begin_write().unwrap();
        self.commits += 1;
        // A non-durable fill still needs a durable commit now and then, or redb never frees
        // the pages of older transactions.
        if !self.durable && !self.commits.is_multiple_of(100) {
            t.set_durability(Durability::None).unwrap();
        }
        t
    }
}

impl Store for Redb {
    fn start(&mut self, s: Start) {
        let t = self.txn();
        {
            let mut runs = t.open_table(RUNS).unwrap();
            runs.insert(s.id, encode_run(&s, None, &[]).as_slice())
                .unwrap();
            if let Some(k) = &s.key {
                t.open_table(KEYS)
                    .unwrap()
                    .insert(k.as_str(), s.id)
                    .unwrap();
            }
            t.open_table(BY_ACTION)
                .unwrap()
                .insert((s.action.as_str(), s.id), ())
                .unwrap();
        }
        t.commit().unwrap();
    }
    fn end(&mut self, id: u64, action: &str, end: End, lines: &[Vec<u8>]) {
        let t = self.txn();
        {
            let mut runs = t.open_table(RUNS).unwrap();
            let (s, _) = decode_run(runs.get(id).unwrap().unwrap().value());
            runs.insert(id, encode_run(&s, Some(end), lines).as_slice())
                .unwrap();
            let mut by_action = t.open_table(BY_ACTION).unwrap();
            let ids: Vec<u64> = by_action
                .range((action, 0)..=(action, u64::MAX))
                .unwrap()
                .map(|e| e.unwrap().0.value().1)
                .collect();
            let mut keys = t.open_table(KEYS).unwrap();
            for &old in &ids[..ids.len().saturating_sub(100)] {
                let (s, _) = decode_run(runs.remove(old).unwrap().unwrap().value());
                if let Some(k) = s.key {
                    keys.remove(k.as_str()).unwrap();
                }
                by_action.remove((action, old)).unwrap();
            }
        }
        t.commit().unwrap();
    }
    fn history(&mut self, limit: usize) -> Vec<String> {
        let t = self.db.begin_read().unwrap();
        let runs = t.open_table(RUNS).unwrap();
        runs.iter()
            .unwrap()
            .rev()
            .take(limit)
            .map(|e| {
                let (s, end) = decode_run(e.unwrap().1.value());
                line(
                    s.id,
                    s.start_ms,
                    &s.action,
                    s.user.as_deref(),
                    end.map(|e| (e.exit, e.secs)),
                    s.uid,
                )
            })
            .collect()
    }
    fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
        if durable {
            // one durable commit so the fill is on disk and its freed pages reusable
            self.db.begin_write().unwrap().commit().unwrap();
        }
    }
}

/// What the size_* binaries do with their store: one run recorded, `history` printed.
pub fn one_run(s: &mut dyn Store) {
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
