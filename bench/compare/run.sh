#!/usr/bin/env bash
# bench/compare: two checkouts of bosun, before and after a change, measured side by side
# in one run by bench/pid1's and bench/request's own probes; one markdown table per bench
# with the after/before ratio of each figure.
#
#   bench/compare/run.sh [--no-build] [--variant static-pie|dynamic] BEFORE_DIR AFTER_DIR \
#       [compare.py options...]
#
# Builds the supervisor and listener of each checkout in release mode with that
# checkout's own target directory (nothing shared between the two), the way
# bench/pid1/build.sh builds its variants:
#   static-pie (default, what the image ships): RUSTFLAGS="-C target-feature=+crt-static"
#              --target HOST --target-dir DIR/target/static-pie -> DIR/target/static-pie/HOST/release
#   dynamic    (bench/request's build): cargo build --release   -> DIR/target/release
# (BEFORE_TARGET / AFTER_TARGET override a target directory). Builds run under
# `nice -n ${BENCH_NICE:-10}`; the measurements do not. --no-build measures what is built.
#
# Then compare.py (bench/compare/compare.py), about 6 minutes on 2 cores:
#   bench/pid1: every build and installed peer (tini, tini-static, dumb-init, catatonit) as
#     PID 1 of its own PID namespace: anonymous memory and Pss booted / after a `ping` /
#     after an action (bench/pid1's footprint round, all inits at once); `-- /bin/true` as
#     PID 1 and not (its interleaved timer); 2,000 orphans reaped (its orphan program);
#     USR1 to PID 1 -> the main process has it; TERM to PID 1 -> exited; exit codes.
#   bench/request: both builds as `supervisor -- sleep infinity` with their listener, up at
#     once: `ping` round trips, a trivial action (request -> first log line, -> `done`),
#     50 clients' sustained `ping`, 1,000 clients at once (its loadgen); memory; and with
#     `listener_idle = 1s`, `ping` and the first action while no listener runs.
# Every round measures each build in turn, the order rotating; medians over rounds.
# compare.py options: --only pid1,request --rounds N (pid1) --request-rounds N
#   --true-rounds N --true-runs N --orphans N --signal-rounds N --signals N --pings N
#   --actions N --throughput-secs N --burst N --cold-rounds N
#   --out FILE (default bench/compare/RESULTS.md of the tree this script is in)
#
# Needs root for bench/pid1 (PID namespaces); python3, rustc. Non-interactive.
#   BENCH_TMP      parent of the scratch directory (default: $TMPDIR or /tmp)
#   BENCH_TIMEOUT  seconds for the measurements (default 1800)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmdline="bench/compare/run.sh $*"
build=1
variant=static-pie
while [[ $# -gt 0 ]]; do
    case $1 in
    --no-build) build=; shift ;;
    --variant) variant=${2:-}; shift 2 ;;
    *) break ;;
    esac
done
if [[ $# -lt 2 ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
shift 2
if [[ "$before" == "$after" ]]; then
    echo "bench/compare: BEFORE and AFTER are the same directory ($before)" >&2
    exit 2
fi
triple=$(rustc -vV | sed -n 's/^host: //p')

case $variant in
static-pie) sub=static-pie ;;
dynamic) sub= ;;
*) echo "bench/compare: unknown --variant $variant (static-pie, dynamic)" >&2; exit 2 ;;
esac
bindir() { # target-dir -> the directory the binaries land in
    if [[ $variant == static-pie ]]; then echo "$1/$triple/release"; else echo "$1/release"; fi
}

build_one() { # label checkout target-dir
    local label=$1 dir=$2 target=$3 t0=$SECONDS
    local -a flags=(--release -q -p supervisor -p listener --target-dir "$target")
    echo "bench/compare: building $label ($dir, $variant) in $target" >&2
    if [[ $variant == static-pie ]]; then
        (cd "$dir" && RUSTFLAGS="-C target-feature=+crt-static" \
            nice -n "${BENCH_NICE:-10}" cargo build "${flags[@]}" --target "$triple")
    else
        (cd "$dir" && nice -n "${BENCH_NICE:-10}" cargo build "${flags[@]}")
    fi
    echo "bench/compare: $label built in $((SECONDS - t0)) s" >&2
}

before_target=${BEFORE_TARGET:-$before/target${sub:+/$sub}}
after_target=${AFTER_TARGET:-$after/target${sub:+/$sub}}
if [[ -n $build ]]; then
    build_one before "$before" "$before_target"
    build_one after "$after" "$after_target"
fi
before_bin=$(bindir "$before_target")
after_bin=$(bindir "$after_target")
for d in "$before_bin" "$after_bin"; do
    for b in supervisor listener; do
        [[ -x $d/$b ]] || { echo "bench/compare: no $d/$b (build it, or drop --no-build)" >&2; exit 2; }
    done
done

describe() { # checkout -> "DIR at REV (subject), binaries built TIME"
    local rev subj
    rev=$(git -C "$1" describe --always --dirty 2>/dev/null || echo "?")
    subj=$(git -C "$1" log -1 --format=%s 2>/dev/null | cut -c1-80 || true)
    echo "\`$1\` at \`$rev\` ($subj), $variant, binaries \`$2\` built $(date -u -r "$2/supervisor" '+%H:%M UTC')"
}

py=$(command -v python3 || true)
[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
[[ -n $py ]] || { echo "bench/compare: python3 is required" >&2; exit 2; }
# shellcheck source=bench/driver.sh
. "$repo/bench/driver.sh"
bench_workspace compare

rustc -O --edition 2021 -o "$tmp/loadgen" "$repo/bench/request/loadgen.rs"
# many clients at once need fds on both sides
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cd "$here"
timeout -k 30 "${BENCH_TIMEOUT:-1800}" "$py" "$here/compare.py" \
    --before "$before_bin" --after "$after_bin" \
    --before-desc "$(describe "$before" "$before_bin")" \
    --after-desc "$(describe "$after" "$after_bin")" \
    --loadgen "$tmp/loadgen" --tmp "$tmp" --out "$here/RESULTS.md" --command "$cmdline" "$@" \
    </dev/null &
driver=$!
set +e
wait "$driver"
rc=$?
set -e
driver=
exit "$rc"
