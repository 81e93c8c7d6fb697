//! Replica targets (DESIGN.md section 10) against real replicas: several supervisors of one
//! service sharing a run and a state directory, as `docker compose up --scale` gives them
//! (each PID 1 of its own namespace, with its real listener and its own journal), each
//! claiming its instance socket `php.<n>-request.sock`, one of them serving the shared
//! `php-request.sock`. What ran is counted by each replica's callbacks (a line in the
//! count file of its `$BOSUN_INSTANCE`), never by what the scheduler logs.
//!
//! - `@each` runs once in every replica, `scheduler send php@each` once more in each and
//!   says so by its exit code, `php.2` runs in that replica only, `php` once in total;
//! - the soak: random SIGKILLs of the scheduler and of replicas (restarted on their own
//!   journal) across many rounds of `@each` fires owed a catch-up: no fire runs twice in a
//!   replica, and none is lost: every (fire, instance) ends `ok` having run once, or
//!   `failed` because its replica was killed under it (`error lost`, the key never runs
//!   again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scheduler::record::{self, RunResult};
use scheduler::state::StateStore;

use super::support::{previous_minute, setup, Daemon};
use testkit::supervisor::{Bins, Builder, Mode, Sup};

const SHORT: Duration = Duration::from_secs(10);
const MINUTE: Duration = Duration::from_secs(70);
const SIGKILL: i32 = 9;

/// A supervisor of this build, with its listener.
fn sup(mode: Mode) -> Builder {
    Builder::new(
        Bins {
            supervisor: crate::SUPERVISOR,
            listener: Some(crate::LISTENER),
        },
        mode,
    )
}

/// The replicas of service `php`: instance sockets in `run`, journals in `root/svc-state`,
/// one callbacks file for all, a count file per instance in `root/count.<n>`.
struct Replicas {
    root: PathBuf,
    run: PathBuf,
    sups: BTreeMap<u32, Sup>,
}

impl Replicas {
    /// Starts instances `1..=n`; each callback of `actions` appends `<action> <id>` to its
    /// replica's count file.
    fn start(root: &Path, run: &Path, n: u32, actions: &[String]) -> Replicas {
        let mut text = format!(
            "count() {{ echo \"$BOSUN_ACTION $BOSUN_REQUEST_ID\" >> '{}/count.'\"$BOSUN_INSTANCE\"; }}\n",
            root.display()
        );
        for a in actions {
            text.push_str(&format!("CB_{}() {{ count; }}\n", a.replace('-', "_")));
        }
        std::fs::write(root.join("callbacks.sh"), text).unwrap();
        let mut r = Replicas {
            root: root.to_path_buf(),
            run: run.to_path_buf(),
            sups: BTreeMap::new(),
        };
        for i in 1..=n {
            r.up(i);
        }
        r
    }

    /// Instance `n`'s own request socket.
    fn socket(&self, n: u32) -> PathBuf {
        self.run.join(format!("php.{n}-request.sock"))
    }

    /// Starts instance `n` (again, on its own journal) and waits until it answers.
    fn up(&mut self, n: u32) {
        let s = sup(Mode::Pid1)
            .with_listener()
            .env("BOSUN_SERVICE", "php")
            .env("BOSUN_INSTANCE", &n.to_string())
            .env("BOSUN_RUN_DIR", self.run.to_str().unwrap())
            .env(
                "BOSUN_STATE_DIR",
                self.root.join("svc-state").to_str().unwrap(),
            )
            .env(
                "BOSUN_CALLBACKS",
                self.root.join("callbacks.sh").to_str().unwrap(),
            )
            .env("BOSUN_MAX_ACTIONS", "100000")
            .cmd(&["sleep", "100000"])
            .start();
        let sock = self.socket(n);
        testkit::wait_until(SHORT, "the replica's socket", || {
            testkit::socket::listening(&sock).then_some(())
        });
        self.sups.insert(n, s);
    }

    /// SIGKILLs replica `n`'s PID 1: the whole replica dies at once, its socket file left.
    fn kill(&mut self, n: u32) {
        if let Some(mut s) = self.sups.remove(&n) {
            s.signal(SIGKILL);
            s.wait(SHORT);
        }
    }

    /// How many times each action ran in replica `n`.
    fn counted(&self, n: u32) -> BTreeMap<String, usize> {
        super::service::counted(&self.root.join(format!("count.{n}")))
    }
}

fn send(run: &Path, args: &[&str]) -> (i32, String, String) {
    let o = super::support::bin()
        .arg("send")
        .args(args)
        .env("BOSUN_RUN_DIR", run)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Waits until replica `n` has counted `action` `times` times.
fn wait_count(r: &Replicas, n: u32, action: &str, times: usize) {
    testkit::wait_until(SHORT, &format!("{action} x{times} in php.{n}"), || {
        (r.counted(n).get(action).copied().unwrap_or(0) >= times).then_some(())
    });
}

/// Expected: `@reboot php@each rotate-logs` runs once in each of three replicas;
/// `scheduler send php@each rotate-logs` runs it once more in each, prints each one's
/// replies prefixed `php.<n>: ` and exits 0; `send php.2` runs it in replica 2 only;
/// `send php` once in total, in the replica serving the shared socket; with replica 3
/// killed, `send php@each` runs in 1 and 2 and says 3 is not live, exit 0; a callback that
/// fails in one replica makes `send php@each` exit with its code.
#[test]
fn each_runs_once_in_every_real_replica() {
    let (dir, file, run_dir) = setup("@reboot php@each rotate-logs\n");
    let run = PathBuf::from(&run_dir);
    let actions = ["rotate-logs".to_string(), "fail".to_string()];
    let mut r = Replicas::start(dir.path(), &run, 3, &actions);
    // `fail` fails in instance 2 only.
    let callbacks = std::fs::read_to_string(dir.path().join("callbacks.sh")).unwrap();
    std::fs::write(
        dir.path().join("callbacks.sh"),
        format!("{callbacks}CB_fail() {{ [ \"$BOSUN_INSTANCE\" != 2 ] || return 7; }}\n"),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut d = Daemon::start(
        &file,
        &[
            ("BOSUN_RUN_DIR", &run_dir),
            ("BOSUN_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    for n in 1..=3 {
        d.wait_for(&["done", &format!("service=php.{n} "), "exit=0"], SHORT);
        wait_count(&r, n, "rotate-logs", 1);
    }
    assert_eq!(d.stop(), 0);
    let (code, out, err) = send(&run, &["php@each", "rotate-logs"]);
    assert_eq!(code, 0, "{out}{err}");
    for n in 1..=3 {
        let mine: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&format!("php.{n}: ")))
            .collect();
        assert_eq!(mine.len(), 2, "{out}");
        assert!(mine[1].contains(" exit=0 "), "{out}");
    }
    let (code, _, err) = send(&run, &["php.2", "rotate-logs"]);
    assert_eq!(code, 0, "{err}");
    // `php`: the shared socket, a hard link to one live replica's.
    assert!(run.join("php-request.sock").exists());
    let (code, _, err) = send(&run, &["php", "rotate-logs"]);
    assert_eq!(code, 0, "{err}");
    let ran: Vec<usize> = (1..=3).map(|n| r.counted(n)["rotate-logs"]).collect();
    assert_eq!(ran.iter().sum::<usize>(), 3 + 3 + 1 + 1, "{ran:?}");
    assert_eq!(
        ran[1], 3,
        "php.2 ran the fire, send @each and send php.2: {ran:?}"
    );
    // A replica killed: not live, not counted.
    r.kill(3);
    let (code, out, err) = send(&run, &["php@each", "rotate-logs"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("php.3: not live"), "{err}");
    assert_eq!(r.counted(3)["rotate-logs"], ran[2]);
    // One failure: its code.
    let (code, out, err) = send(&run, &["php@each", "fail"]);
    assert_eq!(code, 7, "{out}{err}");
    assert!(
        out.contains("php.2: done ") && out.contains(" exit=7 "),
        "{out}"
    );
    // The scheduler's status: one line per instance.
    let o = super::support::bin()
        .arg("status")
        .arg(&file)
        .env("BOSUN_STATE_DIR", &state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines().all(|l| l.contains(" result=ok exit=0 ")),
        "{text}"
    );
}

/// The soak, with replicas: every round adds `@each` lines owed one catch-up run (their
/// only fire, a minute before the test), starts the scheduler and SIGKILLs it after a
/// random delay (seeded; the seed is printed), and in one round of three SIGKILLs a
/// random replica at a random point too, then starts it again on its own journal. A last
/// run catches up what is left.
///
/// Expected, counted by each replica's callbacks: after every round no action ran twice
/// in any replica; at the end every (line, instance) has a final record: `ok` and ran
/// exactly once there, or `failed` because its replica was killed under it (the service
/// answers its key `error lost`), and only replicas that were killed have such runs.
#[test]
fn random_sigkills_of_the_scheduler_and_replicas_run_each_fire_once_per_instance() {
    use chrono::Timelike;
    use testkit::random::seeded;

    let rounds: usize = std::env::var("BOSUN_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .map_or(30, |r: usize| r.div_ceil(3));
    const LINES_PER_ROUND: usize = 2;
    const REPLICAS: u32 = 3;
    const KILL_WITHIN_US: u64 = 30_000;
    let began = Instant::now();
    let mut rng = seeded("random_sigkills_of_the_scheduler_and_replicas");
    let (dir, file, run_dir) = setup("");
    let run = PathBuf::from(&run_dir);
    let state = dir.path().join("state");
    let store = StateStore::open(&state).unwrap();
    let action = |round: usize, i: usize| format!("e{round}x{i}");
    let all: Vec<String> = (0..rounds)
        .flat_map(|r| (0..LINES_PER_ROUND).map(move |i| action(r, i)))
        .collect();
    let mut replicas = Replicas::start(dir.path(), &run, REPLICAS, &all);
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
    ];
    let d = previous_minute();
    let mut keys: BTreeMap<String, String> = BTreeMap::new(); // action -> line key
    let mut text = String::new();
    let mut killed_replicas = std::collections::BTreeSet::new();
    let never_twice = |replicas: &Replicas, when: &dyn std::fmt::Display| {
        for n in 1..=REPLICAS {
            let twice: Vec<_> = replicas
                .counted(n)
                .into_iter()
                .filter(|(_, c)| *c > 1)
                .collect();
            assert!(twice.is_empty(), "{when}: run twice in php.{n}: {twice:?}");
        }
    };
    for round in 0..rounds {
        for i in 0..LINES_PER_ROUND {
            let a = action(round, i);
            let line = format!("{} {} * * * php@each {a}\n", d.minute(), d.hour());
            let e = &scheduler::schedule::parse("f", line.as_bytes(), chrono_tz::Tz::UTC)
                .unwrap()
                .entries[0];
            store
                .record(&e.key(), d - chrono::Duration::minutes(1))
                .unwrap();
            keys.insert(a, e.key());
            text.push_str(&line);
        }
        std::fs::write(&file, &text).unwrap();
        let mut daemon = Daemon::start(&file, &envs);
        let victim = (rng.u32(..3) == 0).then(|| rng.u32(1..=REPLICAS));
        std::thread::sleep(Duration::from_micros(rng.u64(..KILL_WITHIN_US)));
        if let Some(n) = victim {
            replicas.kill(n);
            killed_replicas.insert(n);
            std::thread::sleep(Duration::from_micros(rng.u64(..KILL_WITHIN_US)));
        }
        daemon.assert_up();
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        if let Some(n) = victim {
            replicas.up(n);
        }
        never_twice(&replicas, &format_args!("round {round}"));
    }
    // The last run: every (line, instance) gets a final record.
    let mut daemon = Daemon::start(&file, &envs);
    daemon.wait_for(&["started"], SHORT);
    let last = |k: &str| -> BTreeMap<String, (RunResult, Option<i32>)> {
        let runs = record::read_file(&record::path(&state, k)).unwrap().runs;
        runs.into_iter()
            .map(|r| (r.service.clone(), (r.result, r.exit)))
            .collect()
    };
    let settled = |k: &str| {
        let l = last(k);
        (1..=REPLICAS).all(|n| {
            l.get(&format!("php.{n}"))
                .is_some_and(|(r, _)| *r != RunResult::Running)
        })
    };
    let deadline = Instant::now() + MINUTE;
    while !keys
        .values()
        .all(|k| settled(k) && store.last(k).is_some_and(|t| t >= d))
    {
        assert!(
            Instant::now() < deadline,
            "not every (fire, instance) settled; log:\n{}",
            daemon.seen.join("\n")
        );
        // Records are files written by another process: nothing to block on.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(daemon.stop(), 0);
    never_twice(&replicas, &"at the end");
    let (mut ok, mut lost) = (0, 0);
    for (a, k) in &keys {
        let l = last(k);
        for n in 1..=REPLICAS {
            let ran = replicas.counted(n).get(a).copied().unwrap_or(0);
            match l[&format!("php.{n}")] {
                (RunResult::Ok, Some(0)) => {
                    assert_eq!(ran, 1, "{a} on php.{n}: ok but ran {ran} times");
                    ok += 1;
                }
                (RunResult::Failed, None) if killed_replicas.contains(&n) => {
                    // The replica's own journal says why: the run was cut by the kill.
                    let h = testkit::socket::ask(&replicas.socket(n), &format!("history {a}"));
                    assert!(
                        h.len() == 1 && h[0].contains(" exit=lost "),
                        "{a} on php.{n}: failed, history {h:?}"
                    );
                    lost += 1;
                }
                other => panic!("{a} on php.{n}: {other:?}, ran {ran} times"),
            }
        }
    }
    eprintln!(
        "soak with replicas: {rounds} rounds, {} lines x {REPLICAS} instances: {ok} ran once, \
         {lost} lost with a killed replica (error lost, never run again), 0 run twice; replicas \
         killed: {killed_replicas:?}; {:.1} s",
        keys.len(),
        began.elapsed().as_secs_f64()
    );
}
