//! The control channel: hold/release around actions, forwarded built-ins.

use proto::control::Msg;

use crate::harness::*;

#[test]
fn hold_and_release_around_an_action() {
    let l = Listener::start(Opts::default()).ready();
    let lines = l.request(b"hello\n");
    assert_eq!(lines[0], "accepted 1 hello");
    let hold = l.wait_ctl("hold", |s| matches!(s.msg, Msg::Hold { .. }));
    match hold.msg {
        Msg::Hold { id, pgid, action } => {
            assert_eq!((id, action.as_str()), (1, "hello"));
            assert!(pgid > 1);
        }
        _ => unreachable!(),
    }
    assert!(
        hold.with_fd,
        "the client's connection rides along with hold"
    );
    // The `done` line rides with the release: the supervisor writes it (here the fake one;
    // `lines` above came through it).
    let rel = l.wait_ctl("release", |s| matches!(s.msg, Msg::Release { .. }));
    match rel.msg {
        Msg::Release { id, reply } => {
            assert_eq!(id, 1);
            assert!(reply.starts_with("done 1 exit=0 secs="), "{reply}");
            assert_eq!(lines[1], reply);
        }
        _ => unreachable!(),
    }
    assert!(!rel.with_fd);
}

#[test]
fn builtins_forwarded_to_the_supervisor() {
    let l = Listener::start(Opts::default()).ready();
    for cmd in ["start", "stop", "restart", "reload"] {
        assert_eq!(
            l.request(format!("{cmd}\n").as_bytes()),
            [format!("{cmd} ok")]
        );
    }
    assert_eq!(l.request(b"status\n"), ["main running pid=42"]);
    assert_eq!(l.request(b"forum restart\n"), ["restart ok"]);
    l.wait_ctl("cmd", |s| matches!(s.msg, Msg::Cmd { .. }));
}

#[test]
fn supervisor_gone_answers_unavailable() {
    let l = Listener::start(Opts::default().ctl(Ctl::Closed)).ready();
    for cmd in ["status", "stop"] {
        assert_eq!(
            l.request(format!("{cmd}\n").as_bytes()),
            ["error unavailable supervisor not answering"]
        );
    }
    // Everything else carries on.
    assert_eq!(l.request(b"ping\n"), ["pong"]);
    let lines = l.request(b"hello\n");
    assert!(lines[1].starts_with("done 1 exit=0"), "{lines:?}");
}
