/work/main/bench/reports/target/release/deps/is_terminal_polyfill-2e2380c69c0c8f9d.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/is_terminal_polyfill-1.70.2/src/lib.rs

/work/main/bench/reports/target/release/deps/libis_terminal_polyfill-2e2380c69c0c8f9d.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/is_terminal_polyfill-1.70.2/src/lib.rs

/work/main/bench/reports/target/release/deps/libis_terminal_polyfill-2e2380c69c0c8f9d.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/is_terminal_polyfill-1.70.2/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/is_terminal_polyfill-1.70.2/src/lib.rs:
