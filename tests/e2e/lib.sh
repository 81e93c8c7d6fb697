# shellcheck shell=bash
# Shared by the end-to-end scripts (run.sh, busybox.sh, swarm.sh, caps.sh, replicas.sh): sourced, not run.
# Set E2E_TAG (the log prefix) and START=$SECONDS before sourcing; PASSED, FAILED and
# FAILURES count the checks.
PASSED=0
FAILED=0
FAILURES=()

log() { printf '[%s %4ds] %s\n' "${E2E_TAG:-e2e}" $((SECONDS - START)) "$*"; }

# all_healthy: every service in SERVICES has a container (the caller's `cid SERVICE`) that
# Docker reports healthy.
all_healthy() {
    local s id st
    for s in "${SERVICES[@]}"; do
        id=$(cid "$s") && [ -n "$id" ] || return 1
        st=$(docker inspect -f '{{.State.Health.Status}}' "$id") || return 1
        [ "$st" = healthy ] || return 1
    done
}

# instance_of CONTAINER: the instance of the supervisor in that container (` instance=<n>` of
# `supervisor status`; DESIGN.md section 10), empty when it says none.
instance_of() {
    docker exec "$1" /usr/local/sbin/supervisor status 2>/dev/null | sed -n 's/.* instance=\([0-9]*\).*/\1/p' | head -n 1
}

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

# remove_data DIR IMAGE: remove a data directory made for the run; files in it belong to the
# containers' users, so they go as root in a container of IMAGE when this shell may not.
remove_data() {
    rm -rf "$1" 2>/dev/null || docker run --rm -v "$1:/d" "$2" find /d -mindepth 1 -delete
    rm -rf "$1"
}

# finish WHAT RC: the summary line, then exit with RC, or 1 when a check failed.
finish() {
    local rc=$2
    log "total time: $((SECONDS - START))s"
    echo "$1: $PASSED passed, $FAILED failed"
    ((FAILED == 0)) || printf '  failed: %s\n' "${FAILURES[@]}"
    if ((rc == 0 && FAILED > 0)); then rc=1; fi
    exit "$rc"
}

# need_engine_and_tools: a Docker engine that answers, and socat, curl and gzip.
need_engine_and_tools() {
    if ! docker info >/dev/null 2>&1; then
        log "no Docker engine answers: scripts/docker-engine"
        scripts/docker-engine || exit 1
    fi
    local tool
    for tool in socat curl gzip; do
        if ! command -v $tool >/dev/null; then
            log "$tool missing: installing"
            { apt-get update -qq && apt-get install -y -qq $tool; } >/dev/null || exit 1
        fi
    done
}
