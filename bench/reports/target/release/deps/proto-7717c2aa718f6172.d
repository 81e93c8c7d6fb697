/work/main/bench/reports/target/release/deps/proto-7717c2aa718f6172.d: /work/main/proto/src/lib.rs /work/main/proto/src/builtin.rs /work/main/proto/src/control.rs /work/main/proto/src/metrics.rs /work/main/proto/src/reply.rs /work/main/proto/src/request.rs

/work/main/bench/reports/target/release/deps/libproto-7717c2aa718f6172.rlib: /work/main/proto/src/lib.rs /work/main/proto/src/builtin.rs /work/main/proto/src/control.rs /work/main/proto/src/metrics.rs /work/main/proto/src/reply.rs /work/main/proto/src/request.rs

/work/main/bench/reports/target/release/deps/libproto-7717c2aa718f6172.rmeta: /work/main/proto/src/lib.rs /work/main/proto/src/builtin.rs /work/main/proto/src/control.rs /work/main/proto/src/metrics.rs /work/main/proto/src/reply.rs /work/main/proto/src/request.rs

/work/main/proto/src/lib.rs:
/work/main/proto/src/builtin.rs:
/work/main/proto/src/control.rs:
/work/main/proto/src/metrics.rs:
/work/main/proto/src/reply.rs:
/work/main/proto/src/request.rs:
