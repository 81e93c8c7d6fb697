#!/usr/bin/env bash
# The scheduler's report files: bench/reports/run.sh [LINES] [RUNS] [ROUNDS]
# (defaults 10000 30 30). Builds with the shipped profile in its own workspace, prints the
# table, then the page's size gzipped (as nginx serves it with gzip on) and, for scale, the
# page of the shipped schedule's size.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../../target-bench}"
cargo build --release -q
out=$(BENCH_DIR="${BENCH_DIR:-/var/tmp}" "$CARGO_TARGET_DIR/release/reports-bench" "${1:-10000}" "${2:-30}" "${3:-30}")
printf '%s\n' "$out" | grep -v '^PAGE='
page=$(printf '%s\n' "$out" | sed -n 's/^PAGE=//p')
echo "page gzipped: $(gzip -c "$page" | wc -c) bytes"
rm -rf "$(dirname "$(dirname "$page")")"
