# Shared by the end-to-end scripts (run.sh, busybox.sh, swarm.sh): sourced, not run.
# Set E2E_TAG (the log prefix) and START=$SECONDS before sourcing; PASSED, FAILED and
# FAILURES count the checks.
PASSED=0
FAILED=0
FAILURES=()

log() { printf '[%s %4ds] %s\n' "${E2E_TAG:-e2e}" $((SECONDS - START)) "$*"; }

# wait_until SECONDS WHAT CMD...: poll CMD until it succeeds; fail after SECONDS.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            log "timed out after ${secs}s waiting for: $what"
            return 1
        fi
        sleep 0.5
    done
}

# check NAME FUNCTION: run one check, count it, keep going.
check() {
    local name=$1
    shift
    log "--- $name"
    if "$@"; then
        PASSED=$((PASSED + 1))
        log "ok: $name"
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$name")
        log "FAILED: $name"
    fi
}

fail() {
    log "  $*"
    return 1
}
