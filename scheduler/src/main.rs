//! `scheduler`: see [`scheduler::cli`]; everything lives in the library.

fn main() -> std::process::ExitCode {
    scheduler::cli::main()
}
