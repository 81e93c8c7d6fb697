//! `supervisor`: see [`supervisor::cli`]; everything lives in the library.

fn main() -> std::process::ExitCode {
    supervisor::cli::main()
}
