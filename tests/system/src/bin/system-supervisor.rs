//! The supervisor, built with the system tests (see [`supervisor::cli`]).

fn main() -> std::process::ExitCode {
    supervisor::cli::main()
}
