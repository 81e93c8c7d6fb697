/work/main/bench/reports/target/release/deps/reports_bench-9b739d1c3c25a06c.d: src/main.rs

/work/main/bench/reports/target/release/deps/reports_bench-9b739d1c3c25a06c: src/main.rs

src/main.rs:
