//! Every transition of the core with a fake clock: instants are `t(ms)` after a fixed
//! start, pids are made up, and the effects are compared whole.

use super::*;
use proto::Builtin as Command;
use Signal::*;

const MAIN: i32 = 100;
const LISTENER: i32 = 200;

fn t0() -> Instant {
    thread_local!(static T0: Instant = Instant::now());
    T0.with(|t| *t)
}

fn t(ms: u64) -> Instant {
    t0() + Duration::from_millis(ms)
}

fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

fn policy(restart: Restart) -> Policy {
    Policy {
        service: "svc".into(),
        instance: None,
        restart,
        stop_signal: SIGTERM,
        stop_timeout: Duration::from_secs(8),
        ready: ReadyBy::Start,
        listener: ListenerStart::Boot,
        on_demand: None,
        allow_list: false,
    }
}

fn on_demand(proxy: bool) -> Policy {
    Policy {
        ready: ReadyBy::Probe,
        on_demand: Some(OnDemandPolicy {
            idle: Duration::from_secs(60),
            start_timeout: Duration::from_secs(5),
            proxy,
            handover: false,
        }),
        ..policy(Restart::No)
    }
}

/// Proxy mode with a unix `listen` and `backend`: the name is handed to the backend.
fn handover() -> Policy {
    let mut p = on_demand(true);
    if let Some(o) = &mut p.on_demand {
        o.handover = true;
    }
    p
}

/// A handover core whose backend was started by a client at `t(0)` and is ready at
/// `t(10)`: the held client went through and the name went to the backend.
fn handed_over() -> Core {
    let mut c = booted(handover());
    assert_eq!(
        c.handle(Event::Connection { pending: 1 }, t(0)),
        vec![Effect::SpawnMain]
    );
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0));
    assert_eq!(c.handle(Event::Tick, t(0)), vec![Effect::Probe]);
    assert_eq!(c.od_given(), Some(false), "not before ready");
    assert_eq!(
        c.handle(Event::ProbeResult(true), t(10)),
        vec![Effect::ConnectPending, Effect::GiveName]
    );
    c.handle(Event::Pending(0), t(10));
    assert_eq!(c.od_given(), Some(true));
    c
}

fn group(n: i32, s: Signal) -> Effect {
    Effect::Kill(Target::Group(pid(n)), s)
}

/// A core that has booted: main process `MAIN` and listener `LISTENER` running.
fn booted(p: Policy) -> Core {
    let mut c = Core::new(p, t(0));
    let on_demand = c.od.is_some();
    let e = c.handle(Event::Boot, t(0));
    if on_demand {
        assert_eq!(e, vec![Effect::SpawnListener { next_id: 1 }]);
    } else {
        assert_eq!(
            e,
            vec![Effect::SpawnMain, Effect::SpawnListener { next_id: 1 }]
        );
        assert_eq!(c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0)), vec![]);
    }
    assert_eq!(
        c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(0)),
        vec![]
    );
    c
}

fn exit_code(c: i32) -> Exit {
    Exit::Code(c)
}

#[test]
fn boot_starts_main_then_listener() {
    let c = booted(policy(Restart::No));
    assert_eq!(c.main_pid(), Some(pid(MAIN)));
    assert_eq!(c.listener_pid(), Some(pid(LISTENER)));
    assert!(c
        .status_line(t(3000))
        .starts_with("svc running pid=100 ready=yes restarts=0 uptime=3s"));
    assert_eq!(c.finished(false, t(1)), None);
}

#[test]
fn each_main_exit_against_each_restart_policy() {
    for (restart, exit, again) in [
        (Restart::No, exit_code(0), false),
        (Restart::No, exit_code(3), false),
        (Restart::No, Exit::Signal(9), false),
        (Restart::OnFailure, exit_code(0), false),
        (Restart::OnFailure, exit_code(3), true),
        (Restart::OnFailure, Exit::Signal(9), true),
        (Restart::Always, exit_code(0), true),
        (Restart::Always, exit_code(3), true),
        (Restart::Always, Exit::Signal(9), true),
    ] {
        let what = format!("{restart:?} {exit:?}");
        let mut c = booted(policy(restart));
        let e = c.handle(Event::Exited(pid(MAIN), exit), t(100));
        // What it left in its group gets TERM, whatever happens next.
        assert_eq!(
            e[0],
            Effect::Kill(Target::Leftovers(pid(MAIN)), SIGTERM),
            "{what}"
        );
        if again {
            assert_eq!(e.len(), 1, "{what}: {e:?}");
            assert!(c.status_line(t(100)).contains(" backoff "), "{what}");
            // The first backoff is 250 ms.
            assert_eq!(c.next_deadline(t(100)), Some(t(350)), "{what}");
            assert_eq!(c.handle(Event::Tick, t(349)), vec![], "{what}");
            assert_eq!(
                c.handle(Event::Tick, t(350)),
                vec![Effect::SpawnMain],
                "{what}"
            );
            assert!(!c.main_metrics().up, "{what}");
            c.handle(Event::MainSpawned(Ok(pid(MAIN + 1))), t(350));
            assert!(c.status_line(t(350)).contains("restarts=1"), "{what}");
            let m = c.main_metrics();
            assert!(
                m.up && m.restarts == 1 && m.on_demand_starts == 0,
                "{what}: {m:?}"
            );
        } else {
            // The container stops: the listener is told, then everything else.
            assert_eq!(&e[1..], &[group(LISTENER, SIGTERM)], "{what}");
            assert_eq!(
                c.handle(Event::Exited(pid(LISTENER), exit_code(0)), t(120)),
                vec![]
            );
            // Once both are down, whatever else is left gets TERM on the next turn.
            let e = c.handle(Event::Tick, t(120));
            assert_eq!(e, vec![Effect::Kill(Target::Others, SIGTERM)], "{what}");
            assert_eq!(c.finished(false, t(130)), None, "{what}: a child is left");
            assert_eq!(c.finished(true, t(130)), Some(exit.code()), "{what}");
        }
    }
}

#[test]
fn a_command_that_cannot_run_is_an_exit_with_its_code() {
    let mut c = Core::new(policy(Restart::No), t(0));
    c.handle(Event::Boot, t(0));
    let e = c.handle(Event::MainSpawned(Err(127)), t(0));
    assert_eq!(e, vec![]);
    c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(0));
    // The listener was started after the stop began: it is told at once.
    c.handle(Event::Exited(pid(LISTENER), exit_code(0)), t(5));
    assert_eq!(c.finished(true, t(5)), Some(127));
}

#[test]
fn signals_are_forwarded_as_tini_does() {
    let mut c = booted(policy(Restart::No));
    for s in [
        SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGPIPE, SIGALRM, SIGCONT, SIGURG, SIGPWR,
    ] {
        assert_eq!(
            c.handle(Event::Signal(s), t(1)),
            vec![group(MAIN, s)],
            "{s:?}"
        );
    }
    for s in [SIGCHLD, SIGTSTP, SIGTTIN, SIGTTOU] {
        assert_eq!(c.handle(Event::Signal(s), t(1)), vec![], "{s:?}");
    }
}

#[test]
fn a_stop_that_ends_early() {
    let mut c = booted(Policy {
        stop_signal: SIGQUIT,
        ..policy(Restart::Always)
    });
    // TERM becomes the stop signal; the listener gets TERM.
    let e = c.handle(Event::Signal(SIGTERM), t(10));
    assert_eq!(e, vec![group(LISTENER, SIGTERM), group(MAIN, SIGQUIT)]);
    assert_eq!(c.next_deadline(t(10)), Some(t(8010)));
    // No restart while stopping, whatever the policy.
    assert_eq!(
        c.handle(Event::Exited(pid(MAIN), Exit::Signal(3)), t(20)),
        vec![]
    );
    c.handle(Event::Exited(pid(LISTENER), exit_code(0)), t(30));
    assert_eq!(
        c.handle(Event::Tick, t(30)),
        vec![Effect::Kill(Target::Others, SIGTERM)]
    );
    assert_eq!(c.finished(true, t(30)), Some(131));
}

#[test]
fn a_stop_that_reaches_stop_timeout() {
    let mut c = booted(policy(Restart::No));
    c.handle(
        Event::Hold {
            id: 4,
            pgid: 300,
            action: "backup".into(),
        },
        t(5),
    );
    c.handle(Event::Signal(SIGINT), t(10));
    assert_eq!(c.handle(Event::Tick, t(8009)), vec![]);
    let e = c.handle(Event::Tick, t(8010));
    assert_eq!(
        e,
        vec![
            group(MAIN, SIGKILL),
            group(LISTENER, SIGKILL),
            group(300, SIGKILL),
            Effect::Kill(Target::Others, SIGKILL),
        ]
    );
    // KILLed once only.
    assert_eq!(c.handle(Event::Tick, t(8500)), vec![]);
    c.handle(Event::Exited(pid(MAIN), Exit::Signal(9)), t(8011));
    let e = c.handle(Event::Exited(pid(LISTENER), Exit::Signal(9)), t(8012));
    // The held request is answered when the listener is gone.
    assert!(
        matches!(&e[0], Effect::Answer { id: 4, line } if line.starts_with("error unavailable request 4 (backup): shutting down")),
        "{e:?}"
    );
    // A process stuck in D state does not keep the container forever.
    assert_eq!(c.finished(false, t(9000)), None);
    assert_eq!(c.finished(false, t(8010) + KILL_GRACE), Some(137));
}

#[test]
fn leftovers_get_term_then_kill_at_stop_timeout() {
    let mut c = booted(policy(Restart::Always));
    c.handle(Event::Exited(pid(MAIN), exit_code(1)), t(0));
    c.handle(Event::Tick, t(250));
    c.handle(Event::MainSpawned(Ok(pid(MAIN + 1))), t(250));
    assert_eq!(c.next_deadline(t(300)), Some(t(8000)));
    let e = c.handle(Event::Tick, t(8000));
    assert_eq!(e, vec![Effect::Kill(Target::Leftovers(pid(MAIN)), SIGKILL)]);
    assert_eq!(c.next_deadline(t(8001)), None);
}

#[test]
fn a_listener_crash_with_requests_held() {
    let mut c = booted(policy(Restart::No));
    for (id, pgid) in [(7, 301), (8, 302)] {
        c.handle(
            Event::Hold {
                id,
                pgid,
                action: "a".into(),
            },
            t(1),
        );
    }
    // One ends normally: its done line goes to its client.
    assert_eq!(
        c.handle(
            Event::Release {
                id: 7,
                reply: "done 7 exit=0 secs=0.1".into()
            },
            t(2)
        ),
        vec![Effect::Answer {
            id: 7,
            line: "done 7 exit=0 secs=0.1".into()
        }]
    );
    let e = c.handle(Event::Exited(pid(LISTENER), Exit::Signal(9)), t(3));
    assert_eq!(
        e,
        vec![
            Effect::Answer {
                id: 8,
                line: "error unavailable request 8 (a): listener crashed (137 (SIGKILL)); the action was stopped".into()
            },
            group(302, SIGTERM),
            Effect::Kill(Target::SessionGroups { sid: pid(LISTENER), except: vec![302] }, SIGTERM),
        ]
    );
    // Restarted after its backoff, numbering on from the last id it used.
    assert_eq!(c.next_deadline(t(3)), Some(t(103)));
    assert_eq!(
        c.handle(Event::Tick, t(103)),
        vec![Effect::SpawnListener { next_id: 9 }]
    );
    // The main process is untouched.
    assert_eq!(c.main_pid(), Some(pid(MAIN)));
}

#[test]
fn a_listener_that_closes_its_channel_is_killed() {
    let mut c = booted(policy(Restart::No));
    assert_eq!(
        c.handle(Event::ControlClosed, t(1)),
        vec![group(LISTENER, SIGKILL)]
    );
    assert!(!c.control_open());
}

#[test]
fn built_ins_on_the_main_process() {
    let mut c = booted(policy(Restart::No));
    let mut ask = |seq, cmd, ms| shown(c.handle(Event::Command { seq, cmd }, t(ms)));
    assert_eq!(ask(1, Command::Start, 1), ["reply 1 running pid=100"]);
    assert_eq!(
        ask(2, Command::Reload, 1),
        ["kill 100 SIGHUP", "reply 2 reloaded pid=100"]
    );
    // stop keeps the container up; its reply waits for the exit.
    assert_eq!(ask(3, Command::Stop, 1), ["kill 100 SIGTERM"]);
    let e = c.handle(Event::Exited(pid(MAIN), exit_code(0)), t(2));
    assert_eq!(
        shown(e),
        ["leftovers 100 SIGTERM", "reply 3 stopped exit=0"]
    );
    assert_eq!(c.finished(true, t(2)), None);
    assert!(c
        .status_line(t(2))
        .starts_with("svc stopped pid=- ready=no"));
    let mut ask = |seq, cmd, ms| shown(c.handle(Event::Command { seq, cmd }, t(ms)));
    assert_eq!(
        ask(4, Command::Reload, 3),
        ["reply 4 error unavailable the main process is not running"]
    );
    // restart from down starts it.
    assert_eq!(ask(5, Command::Restart, 3), ["spawn main"]);
    let e = c.handle(Event::MainSpawned(Ok(pid(101))), t(3));
    assert_eq!(shown(e), ["reply 5 restarted pid=101"]);
    // restart while up: stop, then start, then answer.
    let mut ask = |seq, cmd, ms| shown(c.handle(Event::Command { seq, cmd }, t(ms)));
    assert_eq!(ask(6, Command::Restart, 4), ["kill 101 SIGTERM"]);
    let e = c.handle(Event::Exited(pid(101), Exit::Signal(15)), t(5));
    assert_eq!(shown(e), ["leftovers 101 SIGTERM", "spawn main"]);
    let e = c.handle(Event::MainSpawned(Err(126)), t(5));
    assert_eq!(
        shown(e),
        ["reply 6 error unavailable restart failed with exit 126"]
    );
    // status never changes anything.
    let mut ask = |seq, cmd, ms| shown(c.handle(Event::Command { seq, cmd }, t(ms)));
    assert_eq!(
        ask(7, Command::Status, 5),
        ["reply 7 svc stopped pid=- ready=no restarts=1 last_exit=126"]
    );
    // While stopping, built-ins other than status are refused.
    c.handle(Event::Signal(SIGTERM), t(6));
    let e = c.handle(
        Event::Command {
            seq: 8,
            cmd: Command::Start,
        },
        t(6),
    );
    assert_eq!(
        shown(e),
        ["reply 8 error shutting-down the container is stopping"]
    );
}

/// Effects as short text, replies as the text the client reads.
fn shown(e: Vec<Effect>) -> Vec<String> {
    e.into_iter()
        .map(|e| match e {
            Effect::Reply { seq, answer } => format!("reply {seq} {answer}"),
            Effect::Kill(Target::Group(p), s) => format!("kill {p} {s:?}"),
            Effect::Kill(Target::Leftovers(p), s) => format!("leftovers {p} {s:?}"),
            Effect::SpawnMain => "spawn main".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn ready_probes_until_they_pass() {
    let mut c = booted(Policy {
        ready: ReadyBy::Probe,
        ..policy(Restart::No)
    });
    assert!(c.status_line(t(0)).contains(" starting "));
    assert_eq!(c.handle(Event::Tick, t(0)), vec![Effect::Probe]);
    c.handle(Event::ProbeResult(false), t(0));
    assert_eq!(c.next_deadline(t(0)), Some(t(50)));
    assert_eq!(c.handle(Event::Tick, t(50)), vec![Effect::Probe]);
    // An exec probe is a child: its exit decides.
    c.handle(Event::ProbeStarted(Some(pid(400))), t(50));
    assert_eq!(c.next_deadline(t(60)), None, "no probe while one runs");
    c.handle(Event::Exited(pid(400), exit_code(0)), t(70));
    assert!(
        c.status_line(t(70)).contains(" running ") && c.status_line(t(70)).contains("ready=yes")
    );
    assert_eq!(c.handle(Event::Tick, t(2000)), vec![]);
}

#[test]
fn on_demand_cold_start_handoff() {
    let mut c = booted(on_demand(false));
    assert_eq!(c.main_pid(), None);
    assert!(c.status_line(t(0)).starts_with("svc idle pid=-"));
    assert_eq!(c.main_metrics(), crate::metrics::MainMetrics::default());
    assert!(c.want_listen_poll(t(0)));
    assert_eq!(
        c.handle(Event::Connection { pending: 0 }, t(10)),
        vec![Effect::SpawnMain]
    );
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(10));
    // Probed every millisecond while a client waits; the start times out at 5 s.
    assert_eq!(c.handle(Event::Tick, t(10)), vec![Effect::Probe]);
    assert_eq!(c.handle(Event::ProbeResult(false), t(10)), vec![]);
    assert_eq!(c.next_deadline(t(10)), Some(t(11)));
    c.handle(Event::Tick, t(11));
    c.handle(Event::ProbeResult(true), t(11));
    assert!(c.status_line(t(11)).contains(" running "));
    assert_eq!(
        c.main_metrics(),
        crate::metrics::MainMetrics {
            up: true,
            restarts: 0,
            on_demand_starts: 1
        }
    );
    // Handoff: the main process accepts; the socket is polled at most once a second.
    c.handle(Event::Connection { pending: 0 }, t(20));
    assert!(!c.want_listen_poll(t(500)));
    assert!(c.want_listen_poll(t(1020)));
}

#[test]
fn on_demand_cold_start_proxy_holds_clients_until_ready() {
    let mut c = booted(on_demand(true));
    assert_eq!(
        c.handle(Event::Connection { pending: 3 }, t(10)),
        vec![Effect::SpawnMain]
    );
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(10));
    assert_eq!(c.handle(Event::Tick, t(10)), vec![Effect::Probe]);
    // More arrive while it starts: held too, nothing connects before ready.
    assert_eq!(c.handle(Event::Connection { pending: 5 }, t(10)), vec![]);
    assert_eq!(
        c.handle(Event::ProbeResult(true), t(12)),
        vec![Effect::ConnectPending]
    );
    // A full backlog (or no descriptor free): the rest are tried again soon, not in a
    // tight loop.
    c.handle(Event::Pending(2), t(12));
    assert_eq!(
        c.next_deadline(t(12)),
        Some(t(12) + super::ondemand::PENDING_RETRY)
    );
    assert_eq!(c.handle(Event::Tick, t(32)), vec![Effect::ConnectPending]);
    c.handle(Event::Pending(0), t(32));
    assert_eq!(c.od_pending(), Some(0));
}

#[test]
fn a_failed_start_closes_the_waiting_clients_and_backs_off() {
    // Not ready within start_timeout.
    let mut c = booted(on_demand(true));
    c.handle(Event::Connection { pending: 2 }, t(0));
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0));
    let e = c.handle(Event::Tick, t(5000));
    assert_eq!(
        e[e.len() - 2..],
        [Effect::CloseWaiting, group(MAIN, SIGTERM)]
    );
    let e = c.handle(Event::Exited(pid(MAIN), Exit::Signal(15)), t(5010));
    assert_eq!(e[1..], [Effect::Relink, Effect::CloseProxied]);
    // Not started again before the backoff (100 ms), then by the next connection.
    assert!(!c.want_listen_poll(t(5050)));
    assert!(c.want_listen_poll(t(5100)));
    assert_eq!(
        c.finished(true, t(5100)),
        None,
        "on demand, an exit is not the end"
    );

    // The command cannot run at all.
    let mut c = booted(on_demand(false));
    c.handle(Event::Connection { pending: 0 }, t(0));
    let e = c.handle(Event::MainSpawned(Err(127)), t(0));
    assert_eq!(e, vec![Effect::CloseWaiting]);
    assert!(!c.want_listen_poll(t(50)));

    // It exits before it is ready.
    let mut c = booted(on_demand(false));
    c.handle(Event::Connection { pending: 0 }, t(0));
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0));
    let e = c.handle(Event::Exited(pid(MAIN), exit_code(1)), t(10));
    assert_eq!(
        e,
        vec![
            Effect::Kill(Target::Leftovers(pid(MAIN)), SIGTERM),
            Effect::Relink,
            Effect::CloseWaiting
        ]
    );
}

#[test]
fn an_idle_stop_and_the_next_start() {
    // Proxy: traffic is proxied bytes.
    let mut c = booted(on_demand(true));
    c.handle(Event::Connection { pending: 1 }, t(0));
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0));
    c.handle(Event::Tick, t(0));
    c.handle(Event::ProbeResult(true), t(0));
    c.handle(Event::Pending(0), t(0));
    c.handle(Event::Traffic, t(30_000));
    assert_eq!(c.next_deadline(t(30_000)), Some(t(90_000)));
    assert_eq!(c.handle(Event::Tick, t(89_999)), vec![]);
    assert_eq!(c.handle(Event::Tick, t(90_000)), vec![group(MAIN, SIGTERM)]);
    // A client arriving while it stops starts it again once it has exited.
    c.handle(Event::Connection { pending: 1 }, t(90_001));
    let e = c.handle(Event::Exited(pid(MAIN), Exit::Signal(15)), t(90_002));
    assert_eq!(
        e,
        vec![
            Effect::Kill(Target::Leftovers(pid(MAIN)), SIGTERM),
            Effect::Relink,
            Effect::CloseProxied,
            Effect::SpawnMain
        ]
    );

    // Handoff: traffic is what a scan of the kernel's tables finds.
    let mut c = booted(on_demand(false));
    c.handle(Event::Connection { pending: 0 }, t(0));
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0));
    c.handle(Event::Tick, t(0));
    c.handle(Event::ProbeResult(true), t(0));
    // Scans every idle/4 (capped at 5 s); the stop decision waits for the answer.
    assert_eq!(c.handle(Event::Tick, t(5000)), vec![Effect::Scan]);
    assert_eq!(c.handle(Event::Traffic, t(5000)), vec![]);
    assert_eq!(c.handle(Event::Tick, t(65_000)), vec![Effect::Scan]);
    assert_eq!(
        c.handle(Event::Quiet, t(65_000)),
        vec![group(MAIN, SIGTERM)]
    );
    let e = c.handle(Event::Exited(pid(MAIN), Exit::Signal(15)), t(65_010));
    assert_eq!(e[1..], [Effect::Relink]);
    assert!(c.status_line(t(65_010)).starts_with("svc idle"));
    assert!(c.want_listen_poll(t(65_010)));
}

/// `listener_start = request`: boots with the main process alone.
fn lazy() -> Core {
    let mut c = Core::new(
        Policy {
            listener: ListenerStart::Request,
            ..policy(Restart::No)
        },
        t(0),
    );
    assert_eq!(c.handle(Event::Boot, t(0)), vec![Effect::SpawnMain]);
    assert_eq!(c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0)), vec![]);
    assert!(c.want_request_poll());
    c
}

fn asked(conn: u64, builtin: Option<Command>) -> Event {
    Event::Asked { conn, builtin }
}

#[test]
fn a_lazy_listener_answers_ping_and_status_itself() {
    let mut c = lazy();
    assert_eq!(
        c.handle(asked(1, Some(Command::Ping)), t(1)),
        vec![Effect::Respond {
            conn: 1,
            line: "pong".into()
        }]
    );
    let e = c.handle(asked(2, Some(Command::Status)), t(2));
    assert_eq!(
        e,
        vec![Effect::Respond {
            conn: 2,
            line: c.status_line(t(2))
        }]
    );
    assert!(c.listener_pid().is_none());
}

#[test]
fn a_lazy_listener_answers_version_itself_as_the_table_says() {
    let mut c = lazy();
    assert!(Command::Version.row().without_listener);
    assert_eq!(
        c.handle(asked(1, Some(Command::Version)), t(1)),
        vec![Effect::Respond {
            conn: 1,
            line: common::version::text()
        }]
    );
    // A built-in the table keeps for a listener starts one, even when asked for directly.
    assert!(!Command::Help.row().without_listener);
    assert_eq!(
        c.handle(asked(2, Some(Command::Help)), t(2)),
        vec![Effect::SpawnListener { next_id: 1 }]
    );
}

#[test]
fn every_builtin_of_the_supervisor_is_answered() {
    for row in Command::TABLE {
        let mut c = booted(policy(Restart::No));
        let e = shown(c.handle(
            Event::Command {
                seq: 1,
                cmd: row.builtin,
            },
            t(1),
        ));
        if row.by == proto::By::Listener {
            assert!(e.is_empty(), "{}: {e:?}", row.name);
            continue;
        }
        // Answered at once, or once the main process has stopped (`stop`, `restart`).
        let e = if e.iter().any(|l| l.starts_with("reply 1 ")) {
            e
        } else {
            shown(c.handle(Event::Exited(pid(MAIN), Exit::Signal(15)), t(2)))
        };
        let e = if e.iter().any(|l| l.starts_with("reply 1 ")) {
            e
        } else {
            shown(c.handle(Event::MainSpawned(Ok(pid(MAIN + 1))), t(3)))
        };
        let reply = e.iter().find(|l| l.starts_with("reply 1 "));
        let reply = reply.unwrap_or_else(|| panic!("{}: no reply in {e:?}", row.name));
        assert!(!reply.contains("is not answered here"), "{reply}");
    }
}

#[test]
fn while_stopping_only_the_tables_rows_are_answered() {
    let mut c = booted(policy(Restart::No));
    c.handle(Event::Signal(SIGTERM), t(1));
    for (seq, cmd) in [(1, Command::Status), (2, Command::Metrics)] {
        let e = shown(c.handle(Event::Command { seq, cmd }, t(2)));
        assert!(!e[0].contains("shutting-down"), "{e:?}");
    }
    for (seq, cmd) in [(3, Command::Start), (4, Command::Reload)] {
        assert_eq!(
            shown(c.handle(Event::Command { seq, cmd }, t(2))),
            [format!(
                "reply {seq} error shutting-down the container is stopping"
            )]
        );
    }
    // The listener's built-ins are never answered here, stopping or not.
    assert_eq!(
        c.handle(
            Event::Command {
                seq: 5,
                cmd: Command::Version
            },
            t(3)
        ),
        vec![]
    );
}

#[test]
fn a_lazy_listener_starts_on_the_first_other_request_and_takes_every_waiting_client() {
    let mut c = lazy();
    assert_eq!(
        c.handle(asked(1, None), t(1)),
        vec![Effect::SpawnListener { next_id: 1 }]
    );
    assert!(!c.want_request_poll());
    // A second client while it starts waits too; no second spawn.
    assert_eq!(c.handle(asked(2, None), t(2)), vec![]);
    assert_eq!(
        c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(3)),
        vec![Effect::HandOn { conn: 1 }, Effect::HandOn { conn: 2 }]
    );
    // From now on the listener's own socket accept does the work.
    assert_eq!(c.listener_pid(), Some(pid(LISTENER)));
}

#[test]
fn a_lazy_listener_that_crashes_waits_for_the_next_request() {
    let mut c = lazy();
    c.handle(asked(1, None), t(1));
    c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(1));
    let e = c.handle(Event::Exited(pid(LISTENER), Exit::Signal(9)), t(2));
    assert!(e.contains(&Effect::Kill(
        Target::SessionGroups {
            sid: pid(LISTENER),
            except: vec![]
        },
        SIGTERM
    )));
    // After its backoff it is not started again until someone asks.
    let end = c.next_deadline(t(2)).expect("a backoff deadline");
    assert_eq!(c.handle(Event::Tick, end), vec![]);
    assert!(c.want_request_poll());
    assert_eq!(
        c.handle(asked(3, None), end),
        vec![Effect::SpawnListener { next_id: 1 }]
    );
}

#[test]
fn a_client_asking_during_the_backoff_restarts_the_listener_when_it_ends() {
    let mut c = lazy();
    c.handle(asked(1, None), t(1));
    c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(1));
    c.handle(Event::Exited(pid(LISTENER), Exit::Signal(9)), t(2));
    assert_eq!(c.handle(asked(2, None), t(3)), vec![]);
    let end = c.next_deadline(t(3)).expect("a backoff deadline");
    assert_eq!(
        c.handle(Event::Tick, end),
        vec![Effect::SpawnListener { next_id: 1 }]
    );
    assert_eq!(
        c.handle(Event::ListenerSpawned(Some(pid(LISTENER + 1))), end),
        vec![Effect::HandOn { conn: 2 }]
    );
}

#[test]
fn clients_waiting_for_a_lazy_listener_are_told_when_the_container_stops() {
    let mut c = lazy();
    c.handle(asked(1, None), t(1));
    let e = c.handle(Event::Signal(SIGTERM), t(2));
    assert!(
        e.contains(&Effect::Respond {
            conn: 1,
            line: "error shutting-down the container is stopping".into()
        }),
        "{e:?}"
    );
    assert!(e.contains(&group(MAIN, SIGTERM)), "{e:?}");
    // A spawn under way is TERMed when its pid comes back.
    assert_eq!(
        c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(3)),
        vec![group(LISTENER, SIGTERM)]
    );
    // Late askers get the same answer.
    assert_eq!(
        c.handle(asked(2, Some(Command::Ping)), t(4)),
        vec![Effect::Respond {
            conn: 2,
            line: "error shutting-down the container is stopping".into()
        }]
    );
}

#[test]
fn an_idle_listener_exits_and_the_next_request_starts_one_at_once() {
    let mut c = lazy();
    c.handle(asked(1, None), t(1));
    c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(1));
    assert_eq!(
        c.handle(Event::ListenerIdle { next_id: 5 }, t(60_000)),
        vec![]
    );
    // Its control channel closing is not a fault, and its clean exit is not a crash: no
    // kill, no backoff, nothing stopped.
    assert_eq!(c.handle(Event::ControlClosed, t(60_001)), vec![]);
    assert_eq!(
        c.handle(Event::Exited(pid(LISTENER), exit_code(0)), t(60_002)),
        vec![]
    );
    assert!(c.want_request_poll());
    assert!(c.listener_pid().is_none());
    assert_eq!(
        c.handle(asked(2, Some(Command::Ping)), t(60_003)),
        vec![Effect::Respond {
            conn: 2,
            line: "pong".into()
        }]
    );
    // Request ids go on from where the idle listener stopped.
    assert_eq!(
        c.handle(asked(3, None), t(60_004)),
        vec![Effect::SpawnListener { next_id: 5 }]
    );
}

#[test]
fn a_listener_that_said_idle_but_fails_is_a_crash() {
    let mut c = lazy();
    c.handle(asked(1, None), t(1));
    c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(1));
    c.handle(Event::ListenerIdle { next_id: 1 }, t(2));
    // A client the supervisor sees meanwhile waits for the next listener.
    assert_eq!(c.handle(asked(2, None), t(3)), vec![]);
    let e = c.handle(Event::Exited(pid(LISTENER), Exit::Signal(9)), t(4));
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Kill(Target::SessionGroups { .. }, _))),
        "{e:?}"
    );
    let end = c.next_deadline(t(4)).expect("a backoff deadline");
    assert_eq!(
        c.handle(Event::Tick, end),
        vec![Effect::SpawnListener { next_id: 1 }]
    );
}

// ----- deadlines the loop used to keep: callers' line time, allow-list, upkeep ----------

#[test]
fn a_caller_slow_to_send_its_line_goes_to_the_listener_after_line_time() {
    let mut c = lazy();
    assert_eq!(c.request_room(), MAX_CALLERS);
    assert_eq!(c.handle(Event::Caller { conn: 1 }, t(10)), vec![]);
    assert_eq!(c.request_room(), MAX_CALLERS - 1);
    assert_eq!(c.next_deadline(t(10)), Some(t(10) + LINE_TIME));
    assert_eq!(c.handle(Event::Tick, t(500)), vec![], "not yet");
    assert_eq!(
        c.handle(Event::Tick, t(10) + LINE_TIME),
        vec![Effect::SpawnListener { next_id: 1 }],
        "passed on as a request for the listener"
    );
    assert_eq!(
        c.handle(Event::ListenerSpawned(Some(pid(LISTENER))), t(1_020)),
        vec![Effect::HandOn { conn: 1 }]
    );
    assert_eq!(c.request_room(), 0, "a listener runs: not polled");
}

#[test]
fn a_caller_that_sends_its_line_or_leaves_has_no_deadline() {
    let mut c = lazy();
    c.handle(Event::Caller { conn: 1 }, t(10));
    c.handle(Event::Caller { conn: 2 }, t(20));
    assert_eq!(
        c.handle(asked(1, Some(Command::Ping)), t(30)),
        vec![Effect::Respond {
            conn: 1,
            line: "pong".into()
        }]
    );
    assert_eq!(c.handle(Event::CallerGone { conn: 2 }, t(40)), vec![]);
    assert_eq!(c.next_deadline(t(40)), None);
    assert_eq!(c.handle(Event::Tick, t(5_000)), vec![], "nobody is late");
    assert_eq!(c.request_room(), MAX_CALLERS);
}

#[test]
fn no_more_callers_than_max_callers_are_read_at_once() {
    let mut c = lazy();
    for conn in 0..MAX_CALLERS as u64 {
        c.handle(Event::Caller { conn }, t(1));
    }
    assert_eq!(c.request_room(), 0, "the rest wait in the backlog");
    c.handle(asked(0, Some(Command::Ping)), t(2));
    assert_eq!(c.request_room(), 1);
}

#[test]
fn with_an_allow_list_even_ping_waits_for_the_listener() {
    let mut c = Core::new(
        Policy {
            listener: ListenerStart::Request,
            allow_list: true,
            ..policy(Restart::No)
        },
        t(0),
    );
    c.handle(Event::Boot, t(0));
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0));
    assert_eq!(
        c.handle(asked(1, Some(Command::Ping)), t(1)),
        vec![Effect::SpawnListener { next_id: 1 }],
        "only the listener applies the allow-list"
    );
}

#[test]
fn memory_is_given_back_after_start_and_after_each_burst_of_activity() {
    let mut c = booted(policy(Restart::No));
    let first = t(0) + TRIM_AFTER;
    assert_eq!(c.next_wake(t(0)), Some(first));
    assert_eq!(c.next_deadline(t(0)), None, "not a supervision deadline");
    assert_eq!(c.handle(Event::Upkeep, t(1_000)), vec![]);
    assert_eq!(c.handle(Event::Upkeep, first), vec![Effect::ReleaseMemory]);
    assert_eq!(c.handle(Event::Upkeep, first), vec![], "once");
    // Activity schedules it again; more activity meanwhile does not push it back.
    c.handle(Event::Activity, t(2_100));
    c.handle(Event::Activity, t(2_500));
    assert_eq!(c.next_wake(t(2_500)), Some(t(2_100) + TRIM_AFTER));
    assert_eq!(
        c.handle(Event::Upkeep, t(2_100) + TRIM_AFTER),
        vec![Effect::ReleaseMemory]
    );
}

#[test]
fn the_socket_name_is_checked_every_name_check_but_not_while_stopping() {
    let mut c = booted(policy(Restart::No));
    c.handle(Event::Upkeep, t(0) + TRIM_AFTER);
    assert_eq!(c.next_wake(t(2_500)), Some(t(0) + NAME_CHECK));
    assert_eq!(
        c.handle(Event::Upkeep, t(0) + NAME_CHECK),
        vec![Effect::CheckSocketName]
    );
    assert_eq!(c.next_wake(t(5_000)), Some(t(0) + NAME_CHECK * 2));
    c.handle(Event::Signal(SIGTERM), t(6_000));
    assert_eq!(c.handle(Event::Upkeep, t(0) + NAME_CHECK * 2), vec![]);
}

#[test]
fn probe_intervals_double_to_their_cap() {
    let ms = Duration::from_millis;
    let got: Vec<_> = (0..8).map(|a| probe_interval(a, false)).collect();
    assert_eq!(
        got,
        [
            ms(50),
            ms(100),
            ms(200),
            ms(400),
            ms(800),
            ms(1000),
            ms(1000),
            ms(1000)
        ]
    );
    let got: Vec<_> = (0..4).map(|a| probe_interval(a, true)).collect();
    assert_eq!(
        got,
        [ms(1), ms(2), ms(2), ms(2)],
        "a client waits on demand"
    );
    assert_eq!(probe_interval(u32::MAX, false), ms(1000));
}

/// A handover core with no activity since ready, at its idle check at `at`: the name
/// has just come back to the held socket.
fn handed_over_at_idle_check(at: Instant) -> Core {
    let mut c = handed_over();
    c.handle(Event::Tick, t(10));
    c.handle(Event::Quiet, t(10));
    let idle_at = t(10) + Duration::from_secs(60);
    assert!(at >= idle_at);
    c.handle(Event::Tick, at);
    c.handle(Event::Quiet, at);
    assert_eq!(c.od_given(), Some(false));
    c
}

#[test]
fn handover_scans_for_activity_and_takes_the_name_back_before_the_idle_stop() {
    let mut c = handed_over();
    // The bytes no longer pass the supervisor: activity is what the kernel's table shows,
    // looked at once at once, then every idle/4 (capped at 5 s).
    assert_eq!(c.handle(Event::Tick, t(10)), vec![Effect::Scan]);
    assert_eq!(c.handle(Event::Traffic, t(10)), vec![]);
    assert_eq!(c.next_deadline(t(10)), Some(t(5010)));
    assert_eq!(c.handle(Event::Tick, t(5010)), vec![Effect::Scan]);
    assert_eq!(c.handle(Event::Traffic, t(5010)), vec![]);
    assert_eq!(c.handle(Event::Tick, t(65_000)), vec![Effect::Scan]);
    assert_eq!(c.handle(Event::Quiet, t(65_000)), vec![]);
    // Nothing seen for `idle`: short connections between two scans would go unseen, so
    // the name comes back to the held socket for one scan interval first ...
    assert_eq!(c.handle(Event::Tick, t(65_010)), vec![Effect::TakeName]);
    assert_eq!(c.od_given(), Some(false));
    assert_eq!(c.next_deadline(t(65_010)), Some(t(70_010)));
    // ... where a client is activity: the name goes over again.
    let mut busy = handed_over_at_idle_check(t(65_010));
    assert_eq!(
        busy.handle(Event::Connection { pending: 1 }, t(66_000)),
        vec![Effect::ConnectPending]
    );
    busy.handle(Event::Pending(0), t(66_000));
    assert_eq!(
        busy.handle(Event::Tick, t(70_010)),
        vec![Effect::GiveName, Effect::Scan]
    );
    // No client in the grace: the idle stop, the name already back.
    assert_eq!(c.handle(Event::Tick, t(70_009)), vec![]);
    assert_eq!(c.handle(Event::Tick, t(70_010)), vec![group(MAIN, SIGTERM)]);
    // Not taken twice when it exits; no scan while it is down.
    let e = c.handle(Event::Exited(pid(MAIN), Exit::Signal(15)), t(70_020));
    assert_eq!(
        e,
        vec![
            Effect::Kill(Target::Leftovers(pid(MAIN)), SIGTERM),
            Effect::Relink,
            Effect::CloseProxied
        ]
    );
    assert_eq!(c.handle(Event::Tick, t(75_020)), vec![]);
    // The next client starts it again, and the name goes over once it is ready.
    assert_eq!(
        c.handle(Event::Connection { pending: 1 }, t(80_000)),
        vec![Effect::SpawnMain]
    );
    c.handle(Event::MainSpawned(Ok(pid(MAIN + 1))), t(80_000));
    c.handle(Event::Tick, t(80_000));
    assert_eq!(
        c.handle(Event::ProbeResult(true), t(80_010)),
        vec![Effect::ConnectPending, Effect::GiveName]
    );
}

#[test]
fn handover_takes_the_name_back_before_a_stop_a_restart_an_exit_and_a_shutdown() {
    // `stop`: the name, then the signal.
    let mut c = handed_over();
    let e = c.handle(
        Event::Command {
            seq: 1,
            cmd: Command::Stop,
        },
        t(20),
    );
    assert_eq!(e, vec![Effect::TakeName, group(MAIN, SIGTERM)]);

    // `restart`: the same, and the name goes over again once the new one is ready.
    let mut c = handed_over();
    let e = c.handle(
        Event::Command {
            seq: 1,
            cmd: Command::Restart,
        },
        t(20),
    );
    assert_eq!(e, vec![Effect::TakeName, group(MAIN, SIGTERM)]);
    let e = c.handle(Event::Exited(pid(MAIN), Exit::Signal(15)), t(30));
    assert!(!e.contains(&Effect::TakeName), "{e:?}");
    assert_eq!(e.last(), Some(&Effect::SpawnMain));
    c.handle(Event::MainSpawned(Ok(pid(MAIN + 1))), t(30));
    c.handle(Event::Tick, t(30));
    let e = c.handle(Event::ProbeResult(true), t(40));
    assert_eq!(e, vec![Effect::GiveName]);

    // It dies by itself (kill -9): the name comes back before anything else.
    let mut c = handed_over();
    let e = c.handle(Event::Exited(pid(MAIN), Exit::Signal(9)), t(20));
    assert_eq!(e[0], Effect::TakeName, "{e:?}");
    assert_eq!(c.od_given(), Some(false));
    assert!(c.want_listen_poll(t(20_000)), "the held socket waits again");

    // The container stops: the name first, then the stop signal.
    let mut c = handed_over();
    let e = c.handle(Event::Signal(SIGTERM), t(20));
    assert_eq!(
        e,
        vec![
            Effect::TakeName,
            group(LISTENER, SIGTERM),
            group(MAIN, SIGTERM)
        ]
    );
    // Never given again while stopping, even when ready comes late.
    assert_eq!(c.handle(Event::Tick, t(6000)), vec![]);
}

#[test]
fn handover_retries_a_name_that_could_not_be_given() {
    let mut c = handed_over();
    assert_eq!(c.handle(Event::NameKept { again: true }, t(10)), vec![]);
    assert_eq!(c.od_given(), Some(false));
    // Proxying meanwhile (bytes are traffic, no scan); offered again a scan interval later.
    assert_eq!(c.handle(Event::Tick, t(10)), vec![]);
    assert_eq!(c.next_deadline(t(10)), Some(t(5010)));
    assert_eq!(
        c.handle(Event::Tick, t(5010)),
        vec![Effect::GiveName, Effect::Scan]
    );
    assert_eq!(c.od_given(), Some(true));
}

#[test]
fn proxy_mode_without_handover_never_gives_the_name() {
    // TCP `listen` or `backend`: the supervisor proxies for the backend's whole life.
    let mut c = booted(on_demand(true));
    c.handle(Event::Connection { pending: 1 }, t(0));
    c.handle(Event::MainSpawned(Ok(pid(MAIN))), t(0));
    c.handle(Event::Tick, t(0));
    assert_eq!(
        c.handle(Event::ProbeResult(true), t(10)),
        vec![Effect::ConnectPending]
    );
    c.handle(Event::Pending(0), t(10));
    for ms in [10, 5010, 30_000] {
        assert_eq!(c.handle(Event::Tick, t(ms)), vec![], "no give, no scan");
    }
    assert_eq!(c.od_given(), Some(false));
    let e = c.handle(Event::Signal(SIGTERM), t(30_010));
    assert_eq!(
        e,
        vec![group(LISTENER, SIGTERM), group(MAIN, SIGTERM)],
        "nothing to take back"
    );
}

#[test]
fn handover_refused_for_good_waits_for_the_next_start() {
    let mut c = handed_over();
    c.handle(Event::NameKept { again: false }, t(10));
    c.handle(Event::Tick, t(10));
    c.handle(Event::Traffic, t(10));
    assert_eq!(
        c.next_deadline(t(10)),
        Some(t(60_010)),
        "only the idle stop"
    );
    assert_eq!(c.handle(Event::Tick, t(30_000)), vec![]);
    // Idle stop (proxy mode's: nothing to take back), then a new start tries again.
    assert_eq!(c.handle(Event::Tick, t(60_010)), vec![group(MAIN, SIGTERM)]);
    c.handle(Event::Exited(pid(MAIN), Exit::Signal(15)), t(60_020));
    c.handle(Event::Connection { pending: 1 }, t(70_000));
    c.handle(Event::MainSpawned(Ok(pid(MAIN + 1))), t(70_000));
    c.handle(Event::Tick, t(70_000));
    assert_eq!(
        c.handle(Event::ProbeResult(true), t(70_010)),
        vec![Effect::ConnectPending, Effect::GiveName]
    );
}

#[test]
fn handover_a_reload_takes_the_name_back_and_gives_it_again_later() {
    let mut c = handed_over();
    let e = c.handle(
        Event::Command {
            seq: 1,
            cmd: Command::Reload,
        },
        t(20),
    );
    assert_eq!(e[..2], [Effect::TakeName, group(MAIN, SIGHUP)]);
    assert_eq!(c.od_given(), Some(false));
    // A scan interval later, checked again (the backend may have bound anew).
    assert_eq!(c.next_deadline(t(20)), Some(t(5020)));
    let e = c.handle(Event::Tick, t(5020));
    assert_eq!(e[0], Effect::GiveName, "{e:?}");
    // A signal passed on does the same.
    let e = c.handle(Event::Signal(SIGUSR1), t(6000));
    assert_eq!(e, vec![Effect::TakeName, group(MAIN, SIGUSR1)]);
}
