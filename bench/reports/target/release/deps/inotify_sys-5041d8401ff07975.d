/work/main/bench/reports/target/release/deps/inotify_sys-5041d8401ff07975.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inotify-sys-0.1.8/src/lib.rs

/work/main/bench/reports/target/release/deps/libinotify_sys-5041d8401ff07975.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inotify-sys-0.1.8/src/lib.rs

/work/main/bench/reports/target/release/deps/libinotify_sys-5041d8401ff07975.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inotify-sys-0.1.8/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inotify-sys-0.1.8/src/lib.rs:
