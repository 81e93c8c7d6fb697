# shellcheck shell=bash
# Sourced by the benches that start a Python driver which itself starts inits (bench/pid1,
# bench/compare): `bench_workspace NAME` makes $tmp (a fresh directory, removed at exit) and
# arms the traps that stop the driver ($driver, when set: TERM, which makes it SIGKILL every
# init it started, then KILL after 5 s) on exit, INT, TERM and HUP.

bench_workspace() {
    tmp=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/bench-$1.XXXXXX")
    driver=
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$driver" ]] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$driver" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
