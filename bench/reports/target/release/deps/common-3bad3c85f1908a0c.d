/work/main/bench/reports/target/release/deps/common-3bad3c85f1908a0c.d: /work/main/common/src/lib.rs /work/main/common/src/duration.rs /work/main/common/src/exit.rs /work/main/common/src/log.rs /work/main/common/src/name.rs /work/main/common/src/passwd.rs /work/main/common/src/settings.rs /work/main/common/src/shell.rs /work/main/common/src/signal.rs /work/main/common/src/time.rs

/work/main/bench/reports/target/release/deps/libcommon-3bad3c85f1908a0c.rlib: /work/main/common/src/lib.rs /work/main/common/src/duration.rs /work/main/common/src/exit.rs /work/main/common/src/log.rs /work/main/common/src/name.rs /work/main/common/src/passwd.rs /work/main/common/src/settings.rs /work/main/common/src/shell.rs /work/main/common/src/signal.rs /work/main/common/src/time.rs

/work/main/bench/reports/target/release/deps/libcommon-3bad3c85f1908a0c.rmeta: /work/main/common/src/lib.rs /work/main/common/src/duration.rs /work/main/common/src/exit.rs /work/main/common/src/log.rs /work/main/common/src/name.rs /work/main/common/src/passwd.rs /work/main/common/src/settings.rs /work/main/common/src/shell.rs /work/main/common/src/signal.rs /work/main/common/src/time.rs

/work/main/common/src/lib.rs:
/work/main/common/src/duration.rs:
/work/main/common/src/exit.rs:
/work/main/common/src/log.rs:
/work/main/common/src/name.rs:
/work/main/common/src/passwd.rs:
/work/main/common/src/settings.rs:
/work/main/common/src/shell.rs:
/work/main/common/src/signal.rs:
/work/main/common/src/time.rs:
