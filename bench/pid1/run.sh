#!/usr/bin/env bash
# bench/pid1: bosun's supervisor side by side with real init peers, in one run.
#
#   bench/pid1/run.sh [--install] [bench.py options...]
#   bench/pid1/run.sh [--build] --footprint [--rounds N] [--true-rounds N] [--true-runs N]
#
# Measures, for bosun's supervisor, tini, tini-static, dumb-init, catatonit, s6-svscan,
# runsvdir, supervisord and horust: memory (VmRSS, Pss) while supervising `sleep infinity`,
# the wall time of `INIT -- /bin/true`, the time PID 1 takes to reap a burst of 2,000
# orphans, exit codes, and the stop (TERM to PID 1) time and code. Prints one table and
# writes bench/pid1/RESULTS.md. A peer that is not installed is skipped with a note.
#
# Needs root (PID namespaces). Non-interactive. --install installs the Debian peers
# (apt-get) and horust (cargo install, slow) first.
#   BOSUN_SUPERVISOR  the supervisor binary (default /work/main/target/release/supervisor,
#                     else target/release/supervisor next to this repo)
#   BENCH_TMP         parent of the scratch directory (default: $TMPDIR or /tmp)
#   BENCH_TIMEOUT     seconds for the whole run (default 3600)
# bench.py options: --only NAME,... --orphans N --orphan-runs N --true-rounds N
#   --true-runs N --out FILE
#
# --footprint (issue 11): only the footprint, for several bosun builds side by side with
# tini, tini-static, dumb-init and catatonit: anonymous memory and Pss of the supervisor (+
# listener) just booted (no listener yet: listener_start = request) and after one request,
# and `-- /bin/true`; medians, ratios to tini; writes the footprint section of RESULTS.md
# and footprint.json. Which builds:
#   BOSUN_VARIANTS  "LABEL=DIR[:VAR=VAL,...];..." (DIR holds supervisor and listener; the
#                   variables are set for that variant), e.g.
#                   "bosun=target/release;boot=target/release:BOSUN_LISTENER_START=boot"
#                   (labels cannot hold `=`); a leading `+` adds to the default set
#   BOSUN_BIN_DIR   when BOSUN_VARIANTS is unset: this build (default target/release) as
#                   "bosun" and with BOSUN_LISTENER_START=boot, plus every build of
#                   build.sh found under target/ (static-pie, static, baseline)
# --build first runs build.sh (every variant it knows; a minute or two each on 2 cores).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

built=
if [[ "${1:-}" == "--build" ]]; then
    shift
    built="--build "
    "$here/build.sh" >/dev/null || exit 2
fi
if [[ "${1:-}" == "--install" ]]; then
    shift
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q || echo "bench: apt-get update failed" >&2
    timeout 900 apt-get install -y -q tini dumb-init catatonit s6 runit supervisor hyperfine \
        python3 || echo "bench: apt-get install failed; missing peers are skipped" >&2
    if ! command -v horust >/dev/null && command -v cargo >/dev/null; then
        CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} timeout 3600 cargo install horust \
            || echo "bench: cargo install horust failed; horust is skipped" >&2
    fi
fi
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

if [[ $(id -u) != 0 ]]; then
    echo "bench: needs root (it runs each init as PID 1 of a new PID namespace)" >&2
    exit 2
fi
py=$(command -v python3 || true)
[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
if [[ -z "$py" ]]; then
    echo "bench: python3 is required" >&2
    exit 2
fi
if [[ -z "${BOSUN_SUPERVISOR:-}" ]]; then
    BOSUN_SUPERVISOR=$repo/target/release/supervisor
    [[ -x "$BOSUN_SUPERVISOR" ]] || BOSUN_SUPERVISOR=/work/main/target/release/supervisor
fi
export BOSUN_SUPERVISOR
command -v hyperfine >/dev/null || echo "bench: no hyperfine; timing /bin/true with a Python loop" >&2

# shellcheck source=bench/driver.sh
. "$repo/bench/driver.sh"
bench_workspace pid1

cmd="${BOSUN_VARIANTS:+BOSUN_VARIANTS='$BOSUN_VARIANTS' }${BOSUN_BIN_DIR:+BOSUN_BIN_DIR=$BOSUN_BIN_DIR }bench/pid1/run.sh $built$*"
cmd=${cmd% }
cd "$repo"
# the driver runs in the background so that the traps above fire at once
# (a watchdog on the whole run: the driver's own waits all have deadlines too)
timeout -k 30 "${BENCH_TIMEOUT:-3600}" "$py" "$here/bench.py" --tmp "$tmp" --command "$cmd" "$@" \
    </dev/null &
driver=$!
set +e
wait "$driver"
rc=$?
set -e
driver=
exit "$rc"
