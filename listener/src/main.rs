//! `listener`: see the library's documentation; this is only its entry point.

fn main() -> std::process::ExitCode {
    listener::main()
}
