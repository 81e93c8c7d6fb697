//! Fault injection against the real daemon firing at a real service (the supervisor with
//! its keyed listener, what ran counted by the callbacks): SIGKILL at random points across
//! 100 restarts, and a run left running by a killed scheduler. Each test states the
//! expected outcome and checks it; every wait for an event has a deadline.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use scheduler::state::StateStore;

use super::support::{previous_minute, setup, Daemon};

const SHORT: Duration = Duration::from_secs(10);
/// A `* * * * *` line fires within a minute of any instant; slack for a loaded machine.
const MINUTE: Duration = Duration::from_secs(70);

/// The `key=value` field of a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(&format!(" {key}="))
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The scheduler gets SIGKILL at random points during work, over many restarts with one
/// state directory, and no fire runs twice or is lost, counted by the callbacks' side
/// effects. Each round adds lines that are owed one catch-up run, starts
/// the daemon, and SIGKILLs it after a random delay (seeded; the seed is printed): before
/// it has read its state, while it catches up, in the middle of its deliveries, or (one in
/// four, at random) after it has caught up everything.
/// A last run, stopped by TERM, catches up whatever is left.
///
/// The target is a real service: the supervisor with its keyed listener, whose callbacks
/// each append a line to a count file. A relay in front of its socket records what the
/// daemon sends.
///
/// Every line is `M H * * *` for one minute D just before the test started, with its last
/// fire recorded a minute before D: D is the only fire any line has during the test (the
/// next is a day later), so "run twice" and "lost" are about that one fire.
///
/// Expected: after every kill, no callback has run twice, and every line recorded as fired
/// has reached the service; after the last run every line is recorded, its last run `ok`
/// with exit 0 in the record (runs left `running` are resumed), and every callback has run
/// exactly once. A line may be *sent* twice (a kill between its request and the
/// record, or a run left `running`): every send of a line carries its fire's one key, so the
/// service runs it once. Each run is up when killed, and the last one exits 0 on TERM.
#[test]
fn random_sigkills_across_restarts_lose_no_fire() {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::Timelike;

    use super::service::{counted, counting_callbacks, relay, Service};
    use super::support::drain_peer;
    use testkit::random::seeded;

    // `BOSUN_FAULT_ROUNDS` for a longer soak.
    let rounds: usize = std::env::var("BOSUN_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100);
    const LINES_PER_ROUND: usize = 4;
    /// Kill delays are drawn in [0, this): the daemon starts, reads its state and sends a
    /// round's catch-ups within about 10 ms (debug build, 2 cores).
    const KILL_WITHIN_US: u64 = 20_000;
    /// One daemon in this many is killed only after it has caught up every live line.
    const SETTLE_ONE_IN: u32 = 4;
    let began = Instant::now();
    let mut rng = seeded("random_sigkills_across_restarts_lose_no_fire");
    let (dir, file, run_dir) = setup("");
    let state = dir.path().join("state");
    let store = StateStore::open(&state).unwrap();
    let action = |round: usize, i: usize| format!("r{round}x{i}");
    let all: Vec<String> = (0..rounds)
        .flat_map(|r| (0..LINES_PER_ROUND).map(move |i| (r, i)))
        .map(|(r, i)| action(r, i))
        .collect();
    let count = dir.path().join("count");
    let service = Service::start(
        dir.path(),
        "owed",
        &counting_callbacks(&count, all.iter().map(String::as_str)),
        "r0x0",
    );
    let p = relay(dir.path(), "owed", service.socket.clone());
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
    ];
    let d = previous_minute();
    let before_d = d - chrono::Duration::minutes(1);
    let mut keys: BTreeMap<String, String> = BTreeMap::new(); // action -> state key
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    let mut kills = Vec::new(); // (us after start, requests sent)
                                // The lines in the schedule: a line is retired once it has run and its record shows
                                // `ok`, so that the daemon's start stays well within the kill window over 1,000 rounds
                                // (with every line kept, a start reads thousands of lines and state files, and late
                                // rounds would only ever kill it before it sends anything).
    let mut live: Vec<String> = Vec::new();
    let mut marker = 0;
    let tally = |got: Vec<String>, sent: &mut BTreeMap<String, usize>| -> usize {
        // An empty line: the daemon connected and died before writing its request.
        let got: Vec<String> = got.into_iter().filter(|l| !l.is_empty()).collect();
        for action in &got {
            *sent.entry(action.clone()).or_default() += 1;
        }
        got.len()
    };
    let fired = |key: &str| store.last(key).is_some_and(|t| t >= d);
    // The last run in the line's record: a run left `running` by a killed daemon is resumed
    // by a later one, and ends `ok` too.
    let last_result = |k: &str| {
        let runs = scheduler::record::read_file(&scheduler::record::path(&state, k))
            .unwrap()
            .runs;
        runs.last().map(|r| (r.result, r.exit))
    };
    let ok = Some((scheduler::record::RunResult::Ok, Some(0)));
    let never_twice = |round: &dyn std::fmt::Display| {
        let ran = counted(&count);
        let twice: Vec<_> = ran.iter().filter(|(_, &n)| n > 1).collect();
        assert!(twice.is_empty(), "{round}: run twice: {twice:?}");
        let unknown: Vec<_> = ran.keys().filter(|a| !all.contains(a)).collect();
        assert!(unknown.is_empty(), "{round}: unknown runs {unknown:?}");
    };
    let mut retired = 0;
    for round in 0..rounds {
        let ran = counted(&count);
        let before = live.len();
        live.retain(|a| {
            let k = &keys[a];
            !(fired(k) && last_result(k) == ok && ran.get(a) == Some(&1))
        });
        retired += before - live.len();
        let fresh: Vec<String> = (0..LINES_PER_ROUND).map(|i| action(round, i)).collect();
        live.extend(fresh.iter().cloned());
        let text: String = live
            .iter()
            .map(|a| format!("{} {} * * * owed {a}\n", d.minute(), d.hour()))
            .collect();
        std::fs::write(&file, &text).unwrap();
        let schedule = scheduler::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC)
            .unwrap_or_else(|e| panic!("{e}"));
        for e in schedule
            .entries
            .iter()
            .filter(|e| fresh.contains(&e.action))
        {
            store.record(&e.key(), before_d).unwrap();
            keys.insert(e.action.clone(), e.key());
        }
        let mut daemon = Daemon::start(&file, &envs);
        let started = Instant::now();
        if rng.u32(..SETTLE_ONE_IN) == 0 {
            // This one is killed once it has done all its work: every live line recorded
            // `ok`. Otherwise runs left `running` pile up, each start re-sends them all and
            // takes longer, and later kills would only ever land before any send.
            let deadline = Instant::now() + MINUTE;
            while !live
                .iter()
                .all(|a| fired(&keys[a]) && last_result(&keys[a]) == ok)
            {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the daemon did not catch up"
                );
                // The records are files written by another process: nothing to block on.
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            // The fault: SIGKILL at a random point (the delay is the point, not a wait).
            std::thread::sleep(Duration::from_micros(rng.u64(..KILL_WITHIN_US)));
        }
        let delay = started.elapsed();
        daemon.assert_up();
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        daemon.drain();
        marker += 1;
        let got = drain_peer(dir.path(), "owed", &p.requests, marker);
        let n = tally(got, &mut sent);
        let unexpected: Vec<_> = sent.keys().filter(|a| !keys.contains_key(*a)).collect();
        assert!(unexpected.is_empty(), "unexpected requests {unexpected:?}");
        never_twice(&format_args!("round {round}"));
        // Never lost: recorded means it reached the service.
        let recorded_unsent: Vec<_> = keys
            .iter()
            .filter(|(a, k)| fired(k) && !sent.contains_key(*a))
            .map(|(a, _)| a.clone())
            .collect();
        assert!(
            recorded_unsent.is_empty(),
            "round {round}: recorded as fired but never sent (lost): {recorded_unsent:?}; log:\n{}",
            daemon.seen.join("\n")
        );
        kills.push((delay.as_micros(), n));
    }
    // The last run catches up whatever is still owed; once every fire is recorded (the
    // record is written once the service answers), TERM stops the daemon with 0.
    let mut daemon = Daemon::start(&file, &envs);
    daemon.wait_for(&["started"], SHORT);
    let deadline = Instant::now() + MINUTE;
    while !keys.values().all(|k| fired(k) && last_result(k) == ok) {
        let behind: Vec<_> = keys
            .iter()
            .filter(|(_, k)| !fired(k) || last_result(k) != ok)
            .map(|(a, k)| (a, fired(k), last_result(k)))
            .collect();
        assert!(
            Instant::now() < deadline,
            "not every fire was recorded as ok: {behind:?}"
        );
        // The records are files written by another process: nothing to block on.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(daemon.stop(), 0);
    marker += 1;
    let got = drain_peer(dir.path(), "owed", &p.requests, marker);
    let last = tally(got, &mut sent);
    // Every run asked for has ended (its answer has ended): the count file is complete.
    p.wait_idle(MINUTE);
    never_twice(&"at the end");
    let ran = counted(&count);
    let lost: Vec<_> = keys.keys().filter(|a| !ran.contains_key(*a)).collect();
    let unsent: Vec<_> = keys.keys().filter(|a| !sent.contains_key(*a)).collect();
    let sends: usize = sent.values().sum();
    let twice = ran.values().filter(|&&n| n > 1).count();
    let after_sends = kills.iter().filter(|k| k.1 > 0).count();
    eprintln!(
        "kills (us after start, requests sent): {kills:?}; the last run sent {last}; \
         {retired} lines retired once run and recorded ok\n\
         soak: {rounds} rounds ({after_sends} kills after the daemon had sent requests), {} \
         fires, {sends} sends, {} sends were repeats, {} runs counted, {twice} run twice, {} \
         lost, {:.1} s",
        keys.len(),
        sends - sent.len(),
        ran.values().sum::<usize>(),
        lost.len(),
        began.elapsed().as_secs_f64(),
    );
    assert!(unsent.is_empty(), "lost: never sent: {unsent:?}");
    assert!(
        lost.is_empty(),
        "lost: never run: {lost:?}; service log:\n{}",
        service.stderr()
    );
    assert_eq!(ran.len(), keys.len());
    // Every send of a line carried its fire's one key.
    let mut fire_keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in p.raw.lock().unwrap().iter() {
        if let Some((key, action)) = line.strip_prefix('@').and_then(|l| l.split_once(' ')) {
            fire_keys
                .entry(action.to_string())
                .or_default()
                .insert(key.to_string());
        }
    }
    assert_eq!(fire_keys.len(), keys.len());
    let rekeyed: Vec<_> = fire_keys.iter().filter(|(_, k)| k.len() != 1).collect();
    assert!(rekeyed.is_empty(), "a fire sent with two keys: {rekeyed:?}");
    assert!(
        kills.iter().any(|k| k.1 == 0) && kills.iter().any(|k| k.1 > 0),
        "the kill points missed the deliveries: {kills:?}"
    );
}

/// A scheduler SIGKILLed between a run's `accepted` and its `done` leaves the run
/// `running` in its record. Expected: the next start asks again with the same key; the keyed
/// service runs nothing new and answers with that run's `done` once it ends, so `scheduler
/// status` shows `result=ok exit=0` for the line and the callback ran once (its count file
/// has one line).
///
/// The line is `M H * * *` for the minute just before the test, its last fire recorded a
/// minute earlier: the first start catches it up at once, and it fires no more during the
/// test.
#[test]
fn a_run_left_running_by_a_killed_scheduler_is_resumed() {
    use chrono::Timelike;
    use scheduler::record::{self, RunResult};

    use super::service::Service;

    let due = previous_minute();
    let text = format!("{} {} * * * slowsvc slow\n", due.minute(), due.hour());
    let (dir, file, _) = setup(&text);
    let state = dir.path().join("state");
    let line_key = scheduler::schedule::parse("f", text.as_bytes(), chrono_tz::Tz::UTC)
        .unwrap()
        .entries[0]
        .key();
    StateStore::open(&state)
        .unwrap()
        .record(&line_key, due - chrono::Duration::minutes(1))
        .unwrap();
    let count = dir.path().join("count");
    let callbacks = format!(
        "CB_slow() {{ sleep 2; echo x >> '{}'; }}\n",
        count.display()
    );
    let service = Service::start(dir.path(), "slowsvc", &callbacks, "slow");
    let run_dir = service
        .socket
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let envs = [
        ("BOSUN_RUN_DIR", run_dir.as_str()),
        ("BOSUN_STATE_DIR", state.to_str().unwrap()),
    ];
    let mut d = Daemon::start(&file, &envs);
    d.wait_for(&["request", "reason=catch-up"], SHORT);
    // `accepted` is logged after it is recorded.
    d.wait_for(&["accepted"], SHORT);
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let runs = record::read_file(&record::path(&state, &line_key))
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].result, RunResult::Running, "{runs:?}");
    assert!(
        !count.exists(),
        "the action ended before the kill: make it slower"
    );
    drop(d);

    let mut d = Daemon::start(&file, &envs);
    let line = d.wait_for(&["request", "reason=resume"], SHORT);
    assert_eq!(field(&line, "due"), rfc3339(due), "{line}");
    d.wait_for(&[" done", "exit=0"], SHORT);
    assert!(
        !d.seen.iter().any(|l| l.contains("catch-up")),
        "{}",
        d.seen.join("\n")
    );
    assert_eq!(d.stop(), 0);
    let o = super::support::bin()
        .arg("status")
        .arg(&file)
        .env("BOSUN_STATE_DIR", &state)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(" slowsvc slow ") && out.contains(" result=ok exit=0 "),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\n");
    // The service's journal agrees: one run, ended with 0.
    let history = service.request("history slow");
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.contains(" slow user=- exit=0 "), "{history}");
}
