/work/main/bench/reports/target/release/deps/notify-eba025f546276bf4.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/inotify.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/null.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/poll.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/config.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/error.rs

/work/main/bench/reports/target/release/deps/libnotify-eba025f546276bf4.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/inotify.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/null.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/poll.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/config.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/error.rs

/work/main/bench/reports/target/release/deps/libnotify-eba025f546276bf4.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/inotify.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/null.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/poll.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/config.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/error.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/inotify.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/null.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/poll.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/config.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/notify-8.2.2/src/error.rs:
