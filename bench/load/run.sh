#!/usr/bin/env bash
# bench/load: 1,000 concurrent clients with mixed valid and invalid requests against one
# supervisor + listener (`supervisor -- sleep infinity`), for SECS seconds (default 60).
#
#   bench/load/run.sh [SECS] [load.py options: --clients N --max-actions N --conn-timeout S --seed N]
#
# Builds supervisor + listener (release), runs load.py under `nice`: it starts the
# supervisor, drives the clients, checks every reply, samples supervisor and listener
# memory (Pss from smaps_rollup, VmRSS) before, during, after and 5 s after, then checks
# the log: every `accepted <id>` a client saw has a `done` line with the same exit code
# and the action's two `[aN#id]` output lines. Prints a table and writes
# bench/load/RESULTS.md (+ results.json). Exit 0 only when nothing failed.
# Env: CARGO_TARGET_DIR (default: the repo's target/), BENCH_TMP (scratch parent),
# NO_BUILD=1 to use the binaries already built.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmdline="${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }bench/load/run.sh${*:+ $*}"
secs=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then secs=$1; shift; fi

target=${CARGO_TARGET_DIR:-$repo/target}
if [[ "${NO_BUILD:-}" != 1 ]]; then
    (cd "$repo" && CARGO_TARGET_DIR=$target timeout 1200 nice cargo build --release -q -p supervisor -p listener)
fi
sup=$target/release/supervisor
[[ -x $sup && -x $target/release/listener ]] || { echo "load: no $sup or listener" >&2; exit 2; }

scratch=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/bench-load.XXXXXX")
pypid=""
cleanup() {
    # load.py stops the supervisor itself (TERM, then KILL of its session); this catches
    # an interrupted run: the python process, then the supervisor's session, by pid.
    if [[ -n $pypid ]] && kill -0 "$pypid" 2>/dev/null; then
        kill -TERM "$pypid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pypid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pypid" 2>/dev/null || true
    fi
    if [[ -s $scratch/supervisor.pid ]]; then
        sp=$(cat "$scratch/supervisor.pid")
        if kill -0 "$sp" 2>/dev/null; then
            kill -TERM "$sp" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$sp" 2>/dev/null || break; sleep 0.1; done
            kill -KILL -- "-$sp" 2>/dev/null || true
        fi
    fi
    if [[ "${KEEP:-}" == 1 ]]; then echo "load: scratch kept in $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1,000 clients need fds on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

rc=0
nice -n 5 timeout --kill-after=10 $((secs + 180)) python3 "$here/load.py" --supervisor "$sup" \
    --dir "$scratch" --duration "$secs" --out "$here/RESULTS.md" --command "$cmdline" "$@" &
pypid=$!
wait "$pypid" || rc=$?
pypid=""
exit $rc
