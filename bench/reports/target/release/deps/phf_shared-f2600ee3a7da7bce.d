/work/main/bench/reports/target/release/deps/phf_shared-f2600ee3a7da7bce.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/phf_shared-0.12.1/src/lib.rs

/work/main/bench/reports/target/release/deps/libphf_shared-f2600ee3a7da7bce.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/phf_shared-0.12.1/src/lib.rs

/work/main/bench/reports/target/release/deps/libphf_shared-f2600ee3a7da7bce.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/phf_shared-0.12.1/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/phf_shared-0.12.1/src/lib.rs:
