/work/main/bench/reports/target/release/deps/scheduler-f7a5ed4ffbd67b4c.d: /work/main/scheduler/src/lib.rs /work/main/scheduler/src/cli.rs /work/main/scheduler/src/client.rs /work/main/scheduler/src/cron.rs /work/main/scheduler/src/daemon.rs /work/main/scheduler/src/metrics.rs /work/main/scheduler/src/outputs.rs /work/main/scheduler/src/page.rs /work/main/scheduler/src/plan.rs /work/main/scheduler/src/planner.rs /work/main/scheduler/src/record.rs /work/main/scheduler/src/schedule.rs /work/main/scheduler/src/state.rs /work/main/scheduler/src/status.rs /work/main/scheduler/src/summary.rs /work/main/scheduler/src/timer.rs

/work/main/bench/reports/target/release/deps/libscheduler-f7a5ed4ffbd67b4c.rlib: /work/main/scheduler/src/lib.rs /work/main/scheduler/src/cli.rs /work/main/scheduler/src/client.rs /work/main/scheduler/src/cron.rs /work/main/scheduler/src/daemon.rs /work/main/scheduler/src/metrics.rs /work/main/scheduler/src/outputs.rs /work/main/scheduler/src/page.rs /work/main/scheduler/src/plan.rs /work/main/scheduler/src/planner.rs /work/main/scheduler/src/record.rs /work/main/scheduler/src/schedule.rs /work/main/scheduler/src/state.rs /work/main/scheduler/src/status.rs /work/main/scheduler/src/summary.rs /work/main/scheduler/src/timer.rs

/work/main/bench/reports/target/release/deps/libscheduler-f7a5ed4ffbd67b4c.rmeta: /work/main/scheduler/src/lib.rs /work/main/scheduler/src/cli.rs /work/main/scheduler/src/client.rs /work/main/scheduler/src/cron.rs /work/main/scheduler/src/daemon.rs /work/main/scheduler/src/metrics.rs /work/main/scheduler/src/outputs.rs /work/main/scheduler/src/page.rs /work/main/scheduler/src/plan.rs /work/main/scheduler/src/planner.rs /work/main/scheduler/src/record.rs /work/main/scheduler/src/schedule.rs /work/main/scheduler/src/state.rs /work/main/scheduler/src/status.rs /work/main/scheduler/src/summary.rs /work/main/scheduler/src/timer.rs

/work/main/scheduler/src/lib.rs:
/work/main/scheduler/src/cli.rs:
/work/main/scheduler/src/client.rs:
/work/main/scheduler/src/cron.rs:
/work/main/scheduler/src/daemon.rs:
/work/main/scheduler/src/metrics.rs:
/work/main/scheduler/src/outputs.rs:
/work/main/scheduler/src/page.rs:
/work/main/scheduler/src/plan.rs:
/work/main/scheduler/src/planner.rs:
/work/main/scheduler/src/record.rs:
/work/main/scheduler/src/schedule.rs:
/work/main/scheduler/src/state.rs:
/work/main/scheduler/src/status.rs:
/work/main/scheduler/src/summary.rs:
/work/main/scheduler/src/timer.rs:

# env-dep:CARGO_PKG_VERSION=0.1.0
