#!/usr/bin/env bash
# bench/request: bosun's request socket side by side with supervisorctl and docker exec.
#
#   bench/request/run.sh [--install] [bench.py options...]
#
# Builds the listener (release) and a small std-only Rust load generator, then runs
# bench.py: ping round trip p50/p99, request -> trivial callback's first output line,
# `supervisorctl status` against a local supervisord, `docker exec CONTAINER true` when a
# Docker engine answers (skipped with a note otherwise), sustained ping throughput with 50
# clients, 1,000 clients at once, and the listener's memory; then, when the supervisor
# builds, ping / first-line latency and supervisor + listener PSS under the real supervisor
# (`BOSUN_SERVICE=bench BOSUN_RUN_DIR=DIR BOSUN_LISTENER=... supervisor -- sleep infinity`). Prints one table and writes
# bench/request/RESULTS.md with the exact command.
#
# --install: apt-get install socat supervisor first.
# Env: CARGO_TARGET_DIR (default: the repo's target/), BENCH_TMP (scratch parent).
# bench.py options: --ping-rounds N --action-rounds N --cli-rounds N --peer-rounds N
#   --throughput-secs N --burst N --docker-image IMAGE --out FILE
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmdline="${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }bench/request/run.sh${*:+ $*}"

if [[ "${1:-}" == "--install" ]]; then
    shift
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q || echo "bench: apt-get update failed" >&2
    timeout 900 apt-get install -y -q socat supervisor python3 \
        || echo "bench: apt-get install failed; missing peers are skipped" >&2
fi

target=${CARGO_TARGET_DIR:-$repo/target}
(cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -q -p listener)
# The supervisor too, to measure the pair the way containers run it; skipped if it fails.
sup=""
if (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -q -p supervisor); then
    sup=$target/release/supervisor
else
    echo "bench: supervisor did not build; measuring the listener standalone only" >&2
fi
listener=$target/release/listener
scratch=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/bench-request.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
rustc -O --edition 2021 -o "$scratch/loadgen" "$here/loadgen.rs"

sched=""
for s in "$target/release/scheduler" "$repo/target/release/scheduler"; do
    [[ -x $s ]] && { sched=$s; break; }
done

# Many clients at once need fds on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

python3 "$here/bench.py" --listener "$listener" --loadgen "$scratch/loadgen" \
    --scheduler "$sched" --supervisor "$sup" --out "$here/RESULTS.md" --command "$cmdline" "$@"
