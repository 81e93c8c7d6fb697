//! The listener, built with the system tests (see [`listener::main`]).

fn main() -> std::process::ExitCode {
    listener::main()
}
