#!/usr/bin/env bash
# bosun's on-demand socket (handoff and proxy) vs direct, systemd-socket-proxyd and socat,
# all in one run. Writes bench/ondemand/RESULTS.md.
#
#   bench/ondemand/run.sh                      # full run (about 5 minutes on 2 cores)
#   REPEAT=1 WRK_DURATION=3 BULK_MB=256 bench/ondemand/run.sh   # quick
#
# Needs: nginx (nginx-light), php-fpm8.2, socat, wrk, python3, systemd (for
# /lib/systemd/systemd-socket-proxyd): `apt-get install nginx-light php8.2-fpm socat wrk
# systemd` (bench.py checks each section's tools before it starts); the release supervisor
# (cargo build --release -p supervisor -p listener), or SUPERVISOR=path.
# Extra arguments go to bench.py run (e.g. --sections rps,burst).
set -euo pipefail
cd "$(dirname "$0")/../.."

SUPERVISOR=${SUPERVISOR:-$PWD/${CARGO_TARGET_DIR:-target}/release/supervisor}
if [[ ! -x $SUPERVISOR ]]; then
    nice cargo build --release -p supervisor -p listener
fi
for t in nginx php-fpm8.2 socat wrk python3 /lib/systemd/systemd-socket-proxyd; do
    command -v "$t" >/dev/null || { echo "run.sh: $t is missing" >&2; exit 2; }
done

# 5,000 burst clients plus the proxy's 5,000 backend connections.
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < 12000 )); then
    echo "run.sh: ulimit -n is $(ulimit -n); the burst needs about 12000" >&2
fi

TMP=$(mktemp -d /tmp/bench-ondemand.XXXXXX)
PY_PID=
cleanup() {
    if [[ -n $PY_PID ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PY_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$PY_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CMD="${0} $*"
ENVS=""
for v in REPEAT DATA_REPEAT WRK_DURATION WRK_CONNS BULK_MB LAT_N BURST_N COLD_N; do
    [[ -n ${!v:-} ]] && ENVS+="$v=${!v} "
done

timeout -k 30 "${DEADLINE:-1200}" nice python3 bench/ondemand/bench.py run \
    --supervisor "$SUPERVISOR" --tmp "$TMP" \
    --out bench/ondemand/RESULTS.md --command "${ENVS}${CMD}" \
    --repeat "${REPEAT:-3}" --data-repeat "${DATA_REPEAT:-7}" --wrk-duration "${WRK_DURATION:-10}" --wrk-conns "${WRK_CONNS:-32}" \
    --bulk-mb "${BULK_MB:-1024}" --lat-n "${LAT_N:-5000}" --burst-n "${BURST_N:-5000}" \
    --cold-n "${COLD_N:-5}" "$@" &
PY_PID=$!   # timeout(1): the whole run has a deadline (DEADLINE seconds)
rc=0
wait "$PY_PID" || rc=$?
exit "$rc"
