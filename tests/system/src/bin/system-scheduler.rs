//! The scheduler, built with the system tests (see [`scheduler::cli`]).

fn main() -> std::process::ExitCode {
    scheduler::cli::main()
}
