/work/main/bench/reports/target/release/deps/notify_types-87a46639748146c0.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_full.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_mini.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/event.rs

/work/main/bench/reports/target/release/deps/libnotify_types-87a46639748146c0.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_full.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_mini.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/event.rs

/work/main/bench/reports/target/release/deps/libnotify_types-87a46639748146c0.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_full.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_mini.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/event.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_full.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/debouncer_mini.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-types-2.3.1/src/event.rs:
