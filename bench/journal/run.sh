#!/usr/bin/env bash
# The run journal's storage candidates: bench/journal/run.sh [RUNS] [TIMED]
# Builds (release, the workspace's profile) in its own workspace, so rusqlite and redb never
# enter bosun's lock file, prints the table, then the binary size each store adds.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../../target-bench}"
cargo build --release -q
bin="$CARGO_TARGET_DIR/release"
BENCH_DIR="${BENCH_DIR:-/var/tmp}" "$bin/bench" "${1:-100000}" "${2:-2000}"
none=$(stat -c %s "$bin/size_none")
echo
echo "| store | binary (stripped, LTO, opt s) | added |"
echo "|---|---|---|"
for s in none file sqlite redb; do
  n=$(stat -c %s "$bin/size_$s")
  echo "| $s | $((n / 1024)) KiB | +$(((n - none) / 1024)) KiB |"
done
