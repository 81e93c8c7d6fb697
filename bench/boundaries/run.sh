#!/usr/bin/env bash
# What the trust boundaries (issue 20, DESIGN.md section 9) cost: the stack as it was
# before them and the stack as it is, up side by side, measured in one interleaved run
# (bench/boundaries/measure.py): `ping` on nginx's request socket and a real action whose
# callback does nothing (the scheduler's `rotate-logs`: listener, journal, bash) from the
# host, the forum's page (nginx -> php-fpm -> MariaDB) and a static file through nginx.
#
#   bench/boundaries/run.sh [BEFORE_REV]      (default 6193fd8, the review's commit)
#
# Builds bosun:before from BEFORE_REV (a git worktree) unless that image exists, and
# bosun:local from this tree unless BUILD=0. Writes bench/boundaries/RESULTS.md.
# Env: COMPOSE ("docker-compose"), ROUNDS (200), ACTION_ROUNDS (100), BUILD (1).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BEFORE_REV=${1:-6193fd8}
read -r -a COMPOSE_CMD <<<"${COMPOSE:-docker-compose}"
ROUNDS=${ROUNDS:-200}
ACTION_ROUNDS=${ACTION_ROUNDS:-100}
WORK=$(mktemp -d /tmp/bosun-bound.XXXXXX)
log() { printf '[bench] %s\n' "$*" >&2; }

git worktree add -f "$WORK/before" "$BEFORE_REV" >/dev/null 2>&1
if ! docker image inspect bosun:before >/dev/null 2>&1; then
    log "building bosun:before from $BEFORE_REV"
    docker build -q -t bosun:before "$WORK/before" >/dev/null
fi
if [ "${BUILD:-1}" = 1 ]; then
    log "building bosun:local"
    docker build -q -t bosun:local . >/dev/null
fi

# dc NAME ARGS...: compose of one variant (its own tree, project, data dir and ports).
dc() {
    local v=$1 dir tag port
    shift
    case $v in
        before) dir=$WORK/before tag=before port=18180 ;;
        after) dir=$ROOT tag=local port=18190 ;;
    esac
    (cd "$dir" && COMPOSE_PROJECT_NAME=bosunbound$v BOSUN_TAG=$tag BOSUN_DATA=$WORK/data-$v \
        BOSUN_HTTP_PORT=$port BOSUN_STATUS_PORT=$((port + 1)) "${COMPOSE_CMD[@]}" "$@")
}
cleanup() {
    dc before down -v >/dev/null 2>&1 || true
    dc after down -v >/dev/null 2>&1 || true
    git worktree remove -f "$WORK/before" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

healthy() {
    local v=$1 s id
    for s in mysql php wiki nginx scheduler; do
        id=$(dc "$v" ps -q "$s") && [ -n "$id" ] || return 1
        [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] || return 1
    done
}
for v in before after; do
    log "starting $v"
    dc "$v" up -d --no-build >/dev/null 2>&1
done
end=$((SECONDS + 300))
for v in before after; do
    until healthy "$v"; do
        ((SECONDS < end)) || { log "timed out waiting for $v to be healthy"; exit 1; }
        sleep 1
    done
done
log "both healthy; measuring ($ROUNDS rounds)"
load=$(cut -d' ' -f1-3 /proc/loadavg)
table=$(python3 bench/boundaries/measure.py \
    --before "$WORK/data-before/run/nginx-request.sock,$WORK/data-before/run/scheduler-request.sock,18180" \
    --after "$WORK/data-after/run/nginx-request.sock,$WORK/data-after/run/scheduler-request.sock,18190" \
    --rounds "$ROUNDS" --action-rounds "$ACTION_ROUNDS")
echo "$table"
{
    echo "# What the trust boundaries cost"
    echo
    echo "\`bench/boundaries/run.sh $BEFORE_REV\` ($(date -u '+%Y-%m-%d %H:%M UTC'), load before the run: $load;"
    echo "before = $BEFORE_REV, after = $(git rev-parse --short HEAD); ${COMPOSE_CMD[*]}). Both stacks up at"
    echo "once; every round asks each once per probe, in alternating order; medians of $ROUNDS rounds"
    echo "($ACTION_ROUNDS for the action)."
    echo
    echo "$table"
} >bench/boundaries/RESULTS.md
