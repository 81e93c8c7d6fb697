#!/usr/bin/env bash
# The report writer's cost in memory: bench/reports/memory.sh [ROUNDS] (default 5).
# The release scheduler daemon (the workspace's profile) on a 2-line schedule, without and
# with BOSUN_METRICS_FILE and BOSUN_STATUS_HTML (the writer thread), interleaved; RssAnon
# and VmRSS from /proc/PID/status once it has logged `started` (and, with the files, once
# both exist). Prints the medians in kB.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../../target-bench}"
cargo build --release -q --manifest-path ../../Cargo.toml -p scheduler
bin="$CARGO_TARGET_DIR/release/scheduler"
rounds=${1:-5}
t=$(mktemp -d /tmp/bosun-reports-memory.XXXXXX)
trap 'rm -rf "$t"' EXIT
printf '5 4 * * * forum mysql nightly-backup\n*/10 * * * * static git-pull\n' >"$t/s.cron"

# wait_for SECONDS CMD...: polls CMD every 20 ms until it succeeds; fails at the deadline.
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $end ] || { echo "memory.sh: timed out waiting for: $*" >&2; return 1; }
    sleep 0.02
  done
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# one MODE: prints "RssAnon VmRSS" of one daemon run.
one() {
  local mode=$1 dir="$t/run" pid
  rm -rf "$dir"; mkdir -p "$dir/state"
  local -a env=(BOSUN_STATE_DIR="$dir/state" BOSUN_RUN_DIR="$dir")
  [ "$mode" = files ] && env+=(BOSUN_METRICS_FILE="$dir/m.prom" BOSUN_STATUS_HTML="$dir/p.html")
  env "${env[@]}" "$bin" "$t/s.cron" 2>"$dir/log" &
  pid=$!
  wait_for 10 grep -q ' started ' "$dir/log"
  [ "$mode" = files ] && wait_for 10 test -s "$dir/m.prom" -a -s "$dir/p.html"
  awk '/^RssAnon:/ {a=$2} /^VmRSS:/ {v=$2} END {print a, v}' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for _ in $(seq "$rounds"); do
  for mode in none files; do echo "$mode $(one $mode)"; done
done >"$t/all"
echo "| scheduler daemon | RssAnon kB | VmRSS kB |"
echo "|---|---|---|"
for mode in none files; do
  a=$(awk -v m=$mode '$1 == m {print $2}' "$t/all" | median)
  v=$(awk -v m=$mode '$1 == m {print $3}' "$t/all" | median)
  echo "| $mode | $a | $v |"
done
