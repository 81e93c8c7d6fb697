#!/usr/bin/env bash
# End-to-end test of the stack exactly as a user runs it: build the image, `up` the four
# services of docker-compose.yaml (+ docker-compose.test.yaml), and check from the host:
#
#   1. all four services become healthy, and PID 1 in each is the supervisor
#   2. a page through nginx -> php-fpm -> MariaDB counts visits; nginx serves static files
#   3. the request socket from the host: ping/help/unknown action; `forum nightly-backup`
#      via socat answers `done ... exit=0`, and the dump restores into a fresh database
#      with identical CHECKSUM TABLE results; `scheduler send` as a client
#   4. the scheduler (a `* * * * *` line from the test override) delivers into nginx
#   5. php-fpm's master killed with SIGKILL: the supervisor starts it again, pages count on
#   6. a MariaDB container killed during a backup leaves no partial file under a final name,
#      and comes back; the next backup removes the leftover temp file
#   7. `docker-compose stop` ends every container with exit code 0 within its grace
#      period, and MariaDB logs a clean shutdown
#
# Installs and starts the Docker engine when missing (scripts/docker-engine), makes the base
# images when absent (scripts/offline-images). Cleans up (down -v, the data dir) on any exit.
# Every wait polls for an event with a deadline.
#
# Env: COMPOSE ("docker-compose"; e.g. COMPOSE="docker compose"), COMPOSE_PROJECT_NAME
#      (bosune2e), BOSUN_DATA (./data; must not exist yet), BOSUN_HTTP_PORT (8080),
#      E2E_KEEP=1 to leave the stack up after the run, E2E_BUILD=0 to use the image as it is,
#      E2E_COMPOSE_FILE=FILE to add one more override (all for debugging).
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$SECONDS

read -r -a COMPOSE_CMD <<<"${COMPOSE:-docker-compose}"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-bosune2e}
export BOSUN_DATA=${BOSUN_DATA:-./data}
export BOSUN_HTTP_PORT=${BOSUN_HTTP_PORT:-8080}
case $BOSUN_DATA in
    /*) DATA=$BOSUN_DATA ;;
    *) DATA=$ROOT/${BOSUN_DATA#./} ;;
esac
URL=http://127.0.0.1:$BOSUN_HTTP_PORT
SERVICES=(mysql php nginx scheduler)
PASSED=0
FAILED=0
FAILURES=()

log() { printf '[e2e %4ds] %s\n' $((SECONDS - START)) "$*"; }
COMPOSE_FILES=(-f docker-compose.yaml -f docker-compose.test.yaml)
[ -n "${E2E_COMPOSE_FILE:-}" ] && COMPOSE_FILES+=(-f "$E2E_COMPOSE_FILE")
BUILD=(--build)
[ "${E2E_BUILD:-1}" = 0 ] && BUILD=()
dc() { "${COMPOSE_CMD[@]}" "${COMPOSE_FILES[@]}" "$@"; }
cid() { dc ps -q "$1" 2>/dev/null; }

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

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((FAILED > 0 || rc != 0)); then
        log "logs of the stack (last 40 lines each):"
        local s
        for s in "${SERVICES[@]}"; do
            dc logs --no-color --tail 40 "$s" 2>&1 | sed 's/^/    /'
        done
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        log "E2E_KEEP=1: leaving the stack and $DATA in place"
    else
        dc down -v --remove-orphans >/dev/null 2>&1
        if [ -n "${CREATED_DATA:-}" ] && [ -d "$DATA" ]; then
            # Files in there belong to the containers' users; remove them as root in a container
            # when this shell is not allowed to.
            rm -rf "$DATA" 2>/dev/null ||
                docker run --rm -v "$DATA:/d" "bosun:${BOSUN_TAG:-local}" find /d -mindepth 1 -delete
            rm -rf "$DATA"
        fi
    fi
    log "total time: $((SECONDS - START))s"
    echo "e2e: $PASSED passed, $FAILED failed"
    ((FAILED == 0)) || printf '  failed: %s\n' "${FAILURES[@]}"
    if ((rc == 0 && FAILED > 0)); then rc=1; fi
    exit $rc
}

# ---- preparation ------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers: scripts/docker-engine"
    scripts/docker-engine || exit 1
fi
for tool in socat curl gzip; do
    if ! command -v $tool >/dev/null; then
        log "$tool missing: installing"
        { apt-get update -qq && apt-get install -y -qq $tool; } >/dev/null || exit 1
    fi
done
if ! docker image inspect debian:trixie-slim >/dev/null 2>&1 ||
    ! docker image inspect rust:1-slim-trixie >/dev/null 2>&1; then
    log "base images absent: scripts/offline-images"
    scripts/offline-images || exit 1
fi
if [ -e "$DATA" ]; then
    log "$DATA exists (a running stack?): move it away or set BOSUN_DATA to a new directory"
    exit 1
fi
mkdir -p "$DATA/run" "$DATA/backup" && CREATED_DATA=1
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ${#BUILD[@]} -gt 0 ]; then
    log "building the image (${COMPOSE_CMD[*]} build)"
    t=$SECONDS
    dc build || exit 1
    log "built in $((SECONDS - t))s"
fi
log "image size $(docker image inspect -f '{{.Size}}' "bosun:${BOSUN_TAG:-local}" | awk '{printf "%.0f MB", $1/1e6}')"

# ---- 1. healthy, PID 1 ------------------------------------------------------------------
all_healthy() {
    local s id st
    for s in "${SERVICES[@]}"; do
        id=$(cid "$s") && [ -n "$id" ] || return 1
        st=$(docker inspect -f '{{.State.Health.Status}}' "$id") || return 1
        [ "$st" = healthy ] || return 1
    done
}
check_up() {
    local t=$SECONDS
    dc up -d "${BUILD[@]}" || return 1
    wait_until 240 "all four services healthy" all_healthy || {
        dc ps
        return 1
    }
    log "  all healthy $((SECONDS - t))s after up"
}
check_pid1() {
    local s cmd ok=0
    for s in "${SERVICES[@]}"; do
        cmd=$(docker exec "$(cid "$s")" cat /proc/1/cmdline | tr '\0' ' ')
        log "  $s: PID 1 = $cmd"
        case $cmd in
            /usr/local/sbin/supervisor*) ;;
            *) ok=1 ;;
        esac
    done
    return $ok
}
check "all four services healthy after up" check_up
if ((FAILED > 0)); then
    log "the stack did not come up; no point in going on"
    exit 1
fi
check "PID 1 in every container is the supervisor" check_pid1

# ---- 2. nginx -> php-fpm -> MariaDB ----------------------------------------------------
visits() { curl -fsS --max-time 10 "$URL/" | sed -n 's/.*id="visits">\([0-9]*\)<.*/\1/p'; }
check_page() {
    local a b ctype
    a=$(visits) && [ -n "$a" ] || fail "no visit counter in the page" || return 1
    b=$(visits) && [ -n "$b" ] || fail "no visit counter in the second page" || return 1
    log "  visits: $a then $b"
    [ "$b" -eq $((a + 1)) ] || fail "the counter did not go up by one" || return 1
    ctype=$(curl -fsS --max-time 10 -o /dev/null -w '%{content_type}' "$URL/style.css") || return 1
    [[ $ctype == text/css* ]] || fail "style.css served as '$ctype', not by nginx as text/css"
}
check "a page through nginx, php-fpm and MariaDB counts visits" check_page

# ---- 3. requests from the host ---------------------------------------------------------
SOCK=$DATA/run/mysql-request.sock
# request LINE: send one request line to mysql's socket, print the reply lines.
request() { printf '%s\n' "$1" | timeout 120 socat -t 110 - "UNIX-CONNECT:$SOCK"; }
check_builtins() {
    local r
    r=$(request ping) || fail "ping: no answer" || return 1
    [ "$r" = pong ] || fail "ping answered '$r'" || return 1
    r=$(request help) || return 1
    grep -qx 'nightly-backup' <<<"$r" && grep -qx 'rotate-logs' <<<"$r" ||
        fail "help does not list the callbacks: $r" || return 1
    r=$(request 'no-such-action') || true
    [[ $r == "error unknown-action"* ]] || fail "unknown action answered '$r'"
}
check "mysql's request socket from the host: ping, help, unknown action" check_builtins

check_backup_restore() {
    local r f t a b
    r=$(request 'forum nightly-backup') || fail "no answer" || return 1
    log "  reply: $(tr '\n' '|' <<<"$r")"
    grep -qE '^accepted [^ ]+ nightly-backup' <<<"$r" || fail "no 'accepted' line" || return 1
    grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || fail "no 'done ... exit=0' line" || return 1
    f=$(ls "$DATA"/backup/forum-*.sql.gz 2>/dev/null | tail -n 1)
    [ -n "$f" ] || fail "no forum-*.sql.gz in $DATA/backup" || return 1
    [ -z "$(ls "$DATA"/backup/wiki-*.sql.gz 2>/dev/null)" ] || fail "a site's backup dumped another database" || return 1
    log "  dump: $(basename "$f") ($(stat -c %s "$f") bytes)"
    gzip -t "$f" || fail "$f is not a valid gzip file" || return 1
    docker exec "$(cid mysql)" mariadb -e 'DROP DATABASE IF EXISTS forum_restore; CREATE DATABASE forum_restore' || return 1
    gzip -dc "$f" | docker exec -i "$(cid mysql)" mariadb forum_restore || fail "restore failed" || return 1
    t=$(docker exec "$(cid mysql)" mariadb -N -B -e \
        "SELECT GROUP_CONCAT(table_name ORDER BY table_name) FROM information_schema.tables WHERE table_schema='forum'")
    a=$(docker exec "$(cid mysql)" mariadb -N -B -D forum -e "CHECKSUM TABLE ${t//,/, }" | awk '{sub(/^forum\./,"",$1); print $1, $2}')
    b=$(docker exec "$(cid mysql)" mariadb -N -B -D forum_restore -e "CHECKSUM TABLE ${t//,/, }" | awk '{sub(/^forum_restore\./,"",$1); print $1, $2}')
    log "  CHECKSUM TABLE forum: $(tr '\n' ' ' <<<"$a")"
    log "  CHECKSUM TABLE forum_restore: $(tr '\n' ' ' <<<"$b")"
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "checksums differ"
}
check "forum nightly-backup via socat: done exit=0, and the dump restores identically" check_backup_restore

check_client() {
    local out rc
    out=$(docker exec "$(cid scheduler)" scheduler send php rotate-logs 2>&1)
    rc=$?
    log "  scheduler send php rotate-logs -> exit $rc: $(tr '\n' '|' <<<"$out")"
    ((rc == 0)) && grep -qE '^done [^ ]+ exit=0' <<<"$out" || return 1
    docker exec -i "$(cid scheduler)" scheduler check /dev/stdin <service/scheduler/conf/schedule.cron ||
        fail "the shipped schedule.cron does not pass 'scheduler check'"
}
check "scheduler send into php; the shipped schedule.cron passes scheduler check" check_client

# ---- 4. the scheduler delivers ---------------------------------------------------------
delivered() {
    dc logs --no-color nginx 2>/dev/null | grep -q 'logs rotated' &&
        dc logs --no-color scheduler 2>/dev/null | grep 'nginx' | grep -q 'exit=0'
}
check_scheduler() {
    # `* * * * * nginx rotate-logs`: at the latest one minute after the scheduler started.
    wait_until 90 "the scheduler's rotate-logs to show in nginx's log" delivered || return 1
    log "  nginx: $(dc logs --no-color nginx | grep 'logs rotated' | head -n 1)"
    log "  scheduler: $(dc logs --no-color scheduler | grep nginx | grep 'exit=0' | head -n 1)"
}
check "the scheduler's * * * * * line delivers into nginx within the minute" check_scheduler

# ---- 5. a crashed main process ------------------------------------------------------
fpm_pid() { docker exec "$(cid php)" cat /run/php/php-fpm-php.pid 2>/dev/null; }
fpm_restarted() { local p; p=$(fpm_pid) && [ -n "$p" ] && [ "$p" != "$1" ] && [ -n "$(visits)" ]; }
check_crash() {
    local old a b
    old=$(fpm_pid) && [ -n "$old" ] || fail "no php-fpm pid file" || return 1
    a=$(visits)
    docker exec "$(cid php)" kill -KILL "$old" || return 1
    wait_until 60 "php-fpm started again and serving" fpm_restarted "$old" || return 1
    b=$(visits)
    log "  php-fpm master $old killed; now $(fpm_pid); visits $a then $b"
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ] || fail "the counter did not go on"
}
check "php-fpm's master killed: the supervisor restarts it and pages count on" check_crash

# ---- 6. a backup killed midway ---------------------------------------------------------
tmp_present() { compgen -G "$DATA/backup/.bulk-*.tmp.*" >/dev/null; }
check_killed_backup() {
    local id finals_before finals_after f bad=0 r
    id=$(cid mysql)
    # Enough rows that the dump takes a few seconds (about 60 MB of SQL).
    docker exec "$id" mariadb -e "CREATE DATABASE bulk; USE bulk;
        CREATE TABLE bulk.t (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB;
        INSERT INTO bulk.t SELECT seq, CONCAT(SHA2(seq, 512), SHA2(seq, 256)) FROM seq_1_to_300000;" ||
        return 1
    finals_before=$(cd "$DATA/backup" && ls -- *.sql.gz 2>/dev/null | sort)
    request 'nightly-backup bulk' >"$DATA/bulk-request.out" 2>&1 &
    wait_until 60 "the bulk backup's temp file" tmp_present || return 1
    docker kill "$id" >/dev/null || return 1
    log "  killed mysql while writing $(basename "$(compgen -G "$DATA/backup/.bulk-*.tmp.*" | head -n 1)")"
    wait
    finals_after=$(cd "$DATA/backup" && ls -- *.sql.gz 2>/dev/null | sort)
    if [ "$finals_after" != "$finals_before" ]; then
        log "  new files under a final name: $(comm -13 <(echo "$finals_before") <(echo "$finals_after") | tr '\n' ' ')"
        bad=1
    fi
    for f in "$DATA"/backup/*.sql.gz; do
        [ -e "$f" ] || continue
        if ! gzip -t "$f" 2>/dev/null || ! gzip -dc "$f" | tail -n 1 | grep -q '^-- Dump completed'; then
            log "  partial file under a final name: $f"
            bad=1
        fi
    done
    tmp_present || log "  (no temp file left behind either)"
    # The container comes back (restart policy, or start it), healthy; the next backup
    # clears the leftover temp file.
    docker start "$id" >/dev/null 2>&1
    wait_until 180 "mysql healthy again" all_healthy || return 1
    r=$(request 'forum nightly-backup') || return 1
    grep -qE '^done [^ ]+ exit=0' <<<"$r" || fail "backup after restart: $r" || return 1
    ! tmp_present || fail "the leftover temp file is still there after the next backup" || return 1
    return $bad
}
check "a MariaDB killed during a backup leaves no partial file under a final name" check_killed_backup

# ---- 7. stop -------------------------------------------------------------------------
check_stop() {
    local s id code since started finished secs ok=0
    declare -A ids graces=([mysql]=45 [php]=15 [nginx]=15 [scheduler]=12)
    for s in "${SERVICES[@]}"; do ids[$s]=$(cid "$s"); done
    since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    started=$(date +%s.%N)
    dc stop || return 1
    for s in "${SERVICES[@]}"; do
        id=${ids[$s]}
        code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
        finished=$(date -d "$(docker inspect -f '{{.State.FinishedAt}}' "$id")" +%s.%N)
        secs=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }')
        log "  $s: exit code $code, stopped ${secs}s after 'stop' (grace ${graces[$s]}s)"
        [ "$code" = 0 ] || ok=1
        awk -v s="$secs" -v g="${graces[$s]}" 'BEGIN { exit !(s < g) }' || ok=1
    done
    if docker logs --since "$since" "${ids[mysql]}" 2>&1 | grep -q 'mariadbd: Shutdown complete'; then
        log "  mysql: $(docker logs --since "$since" "${ids[mysql]}" 2>&1 | grep 'Shutdown complete' | tail -n 1)"
    else
        log "  MariaDB did not log 'Shutdown complete'"
        ok=1
    fi
    return $ok
}
check "docker-compose stop: every container exits 0 within its grace, MariaDB shuts down cleanly" check_stop
