//! The shell that sources the callbacks file and the setup script: `bash` when the image
//! has it, else `/bin/sh` (DESIGN.md section 8: an Alpine or busybox image has no bash).
//! The same `.` (source) and the same positional arguments either way; what a callback then
//! cannot use is bash's own syntax (arrays, `[[ ]]`, `local -a`, ...), as the README says.

use std::path::Path;
use std::sync::OnceLock;

use crate::settings::DEFAULT_PATH;

/// `bash`, or `/bin/sh` when no `bash` is on `PATH` (the default search path without one).
pub fn shell() -> &'static str {
    static SHELL: OnceLock<&'static str> = OnceLock::new();
    SHELL.get_or_init(|| {
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
        pick(path.split(':').any(|d| Path::new(d).join("bash").is_file()))
    })
}

/// Whether [`shell`] is bash (`compgen` and friends are there).
pub fn is_bash() -> bool {
    shell() == "bash"
}

fn pick(has_bash: bool) -> &'static str {
    if has_bash {
        "bash"
    } else {
        "/bin/sh"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_when_there() {
        assert_eq!(pick(true), "bash");
        assert_eq!(pick(false), "/bin/sh");
        // This machine has bash.
        assert!(is_bash());
    }
}
