#!/usr/bin/env bash
# @each fan-out (issue 22): fire -> last done with 1, 3 and 10 real replicas, against
# sending to each in turn; the scheduler's memory with 10 instances x 100 lines.
#
#   bench/fanout/run.sh            (builds the release binaries first)
#
# Environment: BIN_DIR (a directory with release supervisor, listener, scheduler; default:
# cargo build --release), ROUNDS (5), INSTANCES (1,3,10), MEMORY (1; 0 skips the memory
# part, which waits for a minute boundary twice). Prints markdown tables on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN_DIR:-}
if [ -z "$BIN" ]; then
    echo "bench: building supervisor, listener, scheduler (release)" >&2
    (cd "$ROOT" && cargo build --release -q -p scheduler -p supervisor -p listener >&2)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
exec python3 "$ROOT/bench/fanout/bench.py" "$BIN"
