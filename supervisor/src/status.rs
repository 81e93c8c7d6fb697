//! `supervisor status`: the health check. It asks the running supervisor through the
//! request socket (`status`), so a healthy answer also proves the socket and listener work.

use std::path::Path;
use std::time::Duration;

use proto::client::{Connection, Deadlines};

/// Exit 0 when the main process runs and is ready, 1 otherwise; prints the state.
pub fn run(socket: &Path, timeout: Duration) -> i32 {
    let lines = match query(socket, timeout) {
        Ok(l) => l,
        Err(e) => {
            println!("unhealthy: {}: {e}", socket.display());
            return 1;
        }
    };
    for l in &lines {
        println!("{l}");
    }
    if lines.first().is_some_and(|l| healthy(l)) {
        0
    } else {
        1
    }
}

/// Healthy states: `running` with `ready=yes`, or an on-demand service holding its
/// socket (`idle`, `starting` on demand), which answers connections either way.
///
/// `line` is the first line of the answer (the main process's); the rule is
/// [`proto::Status::healthy`]'s, and anything that is not a status line (an `error` reply)
/// is unhealthy.
pub fn healthy(line: &str) -> bool {
    proto::Status::parse(line).is_some_and(|s| s.healthy())
}

/// Asks `status` through the one request client (`proto::client`), every line until the
/// service closes.
fn query(socket: &Path, timeout: Duration) -> std::io::Result<Vec<String>> {
    let deadlines = Deadlines {
        write: Some(timeout),
        read: Some(timeout),
    };
    let mut conn = Connection::open(socket, deadlines)?;
    conn.send(&proto::Request {
        key: None,
        user: None,
        action: proto::Builtin::Status.name().to_string(),
        args: Vec::new(),
        timeout: None,
    })?;
    let mut lines = Vec::new();
    while let Some(line) = conn.read_line()? {
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(std::io::Error::other("no answer"));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::healthy;

    #[test]
    fn health_rules() {
        assert!(healthy("mysql running pid=3 ready=yes restarts=0"));
        assert!(!healthy("mysql starting pid=3 ready=no restarts=0"));
        assert!(!healthy("mysql stopped pid=- ready=no restarts=0"));
        assert!(!healthy("error unavailable x"));
        assert!(healthy("php idle pid=- ready=no restarts=0 on_demand=held"));
    }
}
