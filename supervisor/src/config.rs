//! The supervisor's settings: `common::settings`, the one type the supervisor and the
//! listener share (`conf/service.toml`, `BOSUN_<KEY>` overrides, `supervisor -- CMD ...`),
//! loaded and validated all at once before anything starts. The listener gets them from
//! [`Settings::to_env`] and reads them back with the same rules.
//!
//! What only the supervisor checks is here, as its [`Role`]: before it starts anything,
//! the main command, the setup script and the listener binary must exist.

use std::ffi::OsStr;
use std::path::PathBuf;

pub use common::settings::*;

/// Where `service.toml` is looked for unless `BOSUN_CONFIG` names another file.
pub const DEFAULT_CONFIG: &str = "/usr/local/conf/service.toml";

/// The request socket's path (`<run_dir>/<service>-request.sock`, the wire's rule; here,
/// not in `common`, which does not know the wire).
pub fn socket_path(s: &Settings) -> PathBuf {
    proto::request_socket_path(&s.run_dir, &s.service)
}

/// Who in the supervisor loads the settings, which decides what is checked beyond the
/// values themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The supervisor about to start: the main command, the setup script and the listener
    /// binary must exist.
    Supervisor,
    /// `supervisor status`: only what it needs to find the socket.
    Status,
}

impl Checks for Role {
    fn check(&self, s: &mut Settings, cx: &Context<'_>) -> Vec<Problem> {
        // Not a key of the file: where the binary is, set by the image or a test.
        s.listener = match (cx.env)("BOSUN_LISTENER") {
            Some(v) if v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("listener"))),
        };
        match self {
            Role::Supervisor => starting_checks(s, cx),
            Role::Status => Vec::new(),
        }
    }
}

/// What must exist before the supervisor starts anything: the main command, the setup
/// script when one is named, and the listener binary.
fn starting_checks(s: &Settings, cx: &Context<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match s.exec.first() {
        None => {
            let file = cx.file.unwrap_or(DEFAULT_CONFIG).to_string();
            problems.push(Problem::new(None, ProblemKind::NoMain { file }));
        }
        Some(cmd) => {
            if let Err(kind) = check_command(cmd, (cx.env)("PATH").as_deref()) {
                problems.push(Problem::new(None, kind));
            }
        }
    }
    if let (Some(setup), Some(at)) = (&s.setup, cx.origins.get("setup")) {
        if !setup.is_file() {
            let kind = ProblemKind::NoSetup(setup.display().to_string());
            problems.push(Problem::new(Some(at.clone()), kind));
        }
    }
    if let Some(l) = s.listener.as_ref().filter(|l| !l.is_file()) {
        problems.push(Problem::new(None, ProblemKind::NoListener(l.clone())));
    }
    problems
}

/// A command must exist and be executable before anything starts: `127`-style problems
/// are reported as settings errors, not as a crash loop. Without `PATH`, the default
/// search path is used, as for the spawn itself.
fn check_command(cmd: &OsStr, path: Option<&str>) -> Result<(), ProblemKind> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if cmd.as_bytes().contains(&b'/') {
        vec![PathBuf::from(cmd)]
    } else {
        std::env::split_paths(path.unwrap_or(DEFAULT_PATH))
            .map(|d| d.join(cmd))
            .collect()
    };
    match candidates.iter().find(|p| p.is_file()) {
        None => Err(ProblemKind::CommandNotFound(cmd.to_string_lossy().into())),
        Some(p) => match p.metadata() {
            Ok(m) if m.permissions().mode() & 0o111 != 0 => Ok(()),
            _ => Err(ProblemKind::CommandNotExecutable(p.clone())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::io::Write;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        // No listener binary in a unit test: `off` unless the test says otherwise.
        common::settings::env_of(&[pairs, &[("BOSUN_LISTENER", "off")]].concat())
    }

    fn load_with(toml: &str, env: &[(&str, &str)], exec: &[&str]) -> Result<Settings, Problems> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        let env = env_of(env);
        Settings::load(&Sources {
            file: ServiceFile::read(f.path()),
            env: &env,
            exec: exec.iter().map(OsString::from).collect(),
            role: Role::Supervisor,
        })
    }

    #[test]
    fn the_socket_is_the_wires() {
        let s = load_with("service = \"mysql\"\n", &[], &["true"]).unwrap();
        assert_eq!(socket_path(&s), PathBuf::from("/run/mysql-request.sock"));
    }

    #[test]
    fn command_checks() {
        assert!(
            check_command(OsStr::new("sh"), None).is_ok(),
            "found on the default PATH"
        );
        assert!(matches!(
            check_command(OsStr::new("sh"), Some("/nonexistent")),
            Err(ProblemKind::CommandNotFound(c)) if c == "sh"
        ));
        assert!(matches!(
            check_command(OsStr::new("/etc/passwd"), None),
            Err(ProblemKind::CommandNotExecutable(_))
        ));
    }

    #[test]
    fn every_problem_at_once_with_positions() {
        let e = load_with(
            "colour = 1\nshape = 2\nstop_timeout = \"8 parsecs\"\nrestart = \"sometimes\"\n[on_demand]\nbackend = \"localhost:9000\"\nlisen = 1\n",
            &[("BOSUN_STOP_SIGNAL", "TERMINATE"), ("BOSUN_READY", "http://x")],
            &["/no/such/cmd"],
        )
        .unwrap_err();
        let all = e.to_string();
        for needle in [
            ":1:1: unknown key `colour`",
            ":2:1: unknown key `shape`",
            ":3:16: stop_timeout: \"8 parsecs\" is not a duration",
            ":4:11: restart: \"sometimes\" is not a restart policy",
            ":6:11: on_demand.backend: \"localhost:9000\" is neither",
            ":7:1: unknown key `on_demand.lisen`",
            "no service name",
            "BOSUN_STOP_SIGNAL: \"TERMINATE\" is not a signal name",
            "BOSUN_READY: \"http://x\" is not a ready probe",
            "main command not found: \"/no/such/cmd\"",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(e.0.len(), 10, "{all}");
        assert_eq!(e.exit_code(), 127);
    }
}
