#!/usr/bin/env bash
# End-to-end test of the stack exactly as a user runs it: build the image, `up` the five
# services of docker-compose.yaml (+ docker-compose.test.yaml), and check from the host:
#
#   1. all five services become healthy, and PID 1 in each is the supervisor; both PHP
#      sites (php = the forum, wiki) hold their sockets with no php-fpm running yet
#   2. a page through nginx -> php-fpm -> MariaDB counts visits; nginx serves static files;
#      the wiki (Host: wiki.localhost) on demand: its first page starts its php-fpm, which
#      is gone again after the test override's 15 s idle while the forum keeps answering,
#      and a burst of 50 pages at once starts it again, once, every page served
#   3. the request socket from the host: ping/help/unknown action; `forum nightly-backup`
#      via socat answers `done ... exit=0`, and the dump restores into a fresh database
#      with identical CHECKSUM TABLE results; `scheduler send` as a client
#   3b. the trust boundaries from inside the containers (tests/e2e/boundaries.sh): sockets
#      each user can reach, read-only socket directories, MariaDB without unix_socket logins,
#      no-new-privileges and dropped capabilities, passwords on no command line, backups and
#      logs pruned by age, no signal from a forged pid file
#   4. the scheduler (a `* * * * *` line from the test override) delivers into nginx;
#      `scheduler status` shows it ok, and the failed `@reboot` line of the test schedule
#   4c. told when it fails: the test schedule's `@reboot nosuchsite mysql nightly-backup`
#      fails (exit 66) and, under ON_FAILURE=scheduler notify, the scheduler container's
#      log has the notify line; the scheduler is on its own network (mysql, php and wiki on
#      none), through which its webhook and healthchecks ping reach a receiver container on
#      that network (tests/e2e/hook.sh in tests/e2e/docker-compose.hook.yaml)
#   5. the forum's php-fpm master killed with SIGKILL: its workers go with it, the next
#      page starts php-fpm again (on demand), pages count on; nginx's master likewise: its
#      workers go, nginx is restarted and serves
#   6. a MariaDB container killed during a backup leaves no partial file under a final name,
#      and comes back; the next backup removes the leftover temp file
#   7. a backup into a full disk (mysql recreated with tests/e2e/docker-compose.enospc.yaml:
#      backups on a 4 MiB tmpfs, BACKUP_KEEP=1 and BACKUP_KEEP_DAYS=0, filled up for real): `done ... exit=N`, N
#      non-zero; the earlier backup byte-identical, no new or temp file; "No space left on
#      device" in the container log; once space is freed the next backup succeeds
#   9. (before 8) the forum in three replicas (`up --scale php=3`, tests/e2e/replicas.sh):
#      healthy, an instance and sockets each, pages spread over them, `php@each
#      rotate-logs` once in each and `php rotate-logs` once in all, idle stop per replica,
#      a killed replica comes back as its instance; then one replica again
#   8. `docker-compose stop` ends every container with exit code 0 within its grace
#      period, and MariaDB logs a clean shutdown
#
# Installs and starts the Docker engine when missing (scripts/docker-engine), makes the base
# images when absent (scripts/offline-images). Cleans up (down -v, the data dir) on any exit.
# Every wait polls for an event with a deadline.
#
# Env: COMPOSE ("docker-compose"; e.g. COMPOSE="docker compose"), COMPOSE_PROJECT_NAME
#      (bosune2e), BOSUN_DATA (./data; must not exist yet), BOSUN_HTTP_PORT (8080),
#      BOSUN_STATUS_PORT (8081), E2E_SHOTS=DIR to keep the status page's screenshots,
#      E2E_KEEP=1 to leave the stack up after the run, E2E_BUILD=0 to use the image as it is,
#      E2E_COMPOSE_FILE=FILE to add one more override (all for debugging). NOTIFY_URL,
#      HEALTHCHECKS_URL and NOTIFY_HOST are set by the test (the receiver, `hook`).
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$SECONDS

read -r -a COMPOSE_CMD <<<"${COMPOSE:-docker-compose}"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-bosune2e}
export BOSUN_DATA=${BOSUN_DATA:-./data}
export BOSUN_HTTP_PORT=${BOSUN_HTTP_PORT:-8080}
export BOSUN_STATUS_PORT=${BOSUN_STATUS_PORT:-8081}
case $BOSUN_DATA in
    /*) DATA=$BOSUN_DATA ;;
    *) DATA=$ROOT/${BOSUN_DATA#./} ;;
esac
URL=http://127.0.0.1:$BOSUN_HTTP_PORT
STATUS_URL=http://127.0.0.1:$BOSUN_STATUS_PORT
SERVICES=(mysql php wiki nginx scheduler)

E2E_TAG=e2e
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
COMPOSE_FILES=(-f docker-compose.yaml -f docker-compose.test.yaml -f tests/e2e/docker-compose.hook.yaml)
[ -n "${E2E_COMPOSE_FILE:-}" ] && COMPOSE_FILES+=(-f "$E2E_COMPOSE_FILE")
BUILD=(--build)
[ "${E2E_BUILD:-1}" = 0 ] && BUILD=()
dc() { "${COMPOSE_CMD[@]}" "${COMPOSE_FILES[@]}" "$@"; }
cid() { dc ps -q "$1" 2>/dev/null; }


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
    [ -n "${HOOK_DIR:-}" ] && rm -rf "$HOOK_DIR"
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        log "E2E_KEEP=1: leaving the stack and $DATA in place"
    else
        dc down -v --remove-orphans >/dev/null 2>&1
        if [ -n "${CREATED_DATA:-}" ] && [ -d "$DATA" ]; then
            remove_data "$DATA" "bosun:${BOSUN_TAG:-local}"
        fi
    fi
    finish "e2e" "$rc"
}

# ---- preparation ------------------------------------------------------------------------
need_engine_and_tools
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

# The webhook receiver for the scheduler's notifications (4c): a container of its own on
# the scheduler's network (tests/e2e/docker-compose.hook.yaml), so the webhook and the ping
# go over that network, and the test listens on nothing on the host. Requests land in
# HOOK_DIR.
HOOK_DIR=$(mktemp -d /tmp/bosun-e2e-hook.XXXXXX)
export E2E_HOOK_DIR=$HOOK_DIR
export NOTIFY_URL="http://hook:8080/hook"
export HEALTHCHECKS_URL="http://hook:8080/hc/e2e" NOTIFY_HOST=e2e
# Distinctive database passwords, so that the boundaries' check can look for them on command
# lines and in logs (tests/e2e/boundaries.sh, b6).
export FORUM_DB_PASSWORD="e2e-forum-pw-$RANDOM$RANDOM" WIKI_DB_PASSWORD="e2e-wiki-pw-$RANDOM$RANDOM"

# The commit the image's programs name in `version` (the build context has no .git).
BOSUN_COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
export BOSUN_COMMIT
if [ ${#BUILD[@]} -gt 0 ]; then
    log "building the image (${COMPOSE_CMD[*]} build)"
    t=$SECONDS
    dc build || exit 1
    log "built in $((SECONDS - t))s"
fi
log "image size $(docker image inspect -f '{{.Size}}' "bosun:${BOSUN_TAG:-local}" | awk '{printf "%.0f MB", $1/1e6}')"

# ---- 1. healthy, PID 1 ------------------------------------------------------------------
check_up() {
    local t=$SECONDS
    dc up -d "${BUILD[@]}" || return 1
    wait_until 240 "all five services healthy" all_healthy || {
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
check "all five services healthy after up" check_up
if ((FAILED > 0)); then
    log "the stack did not come up; no point in going on"
    exit 1
fi
check "PID 1 in every container is the supervisor" check_pid1

# status_of SERVICE: the state word of `supervisor status` (idle, starting, running, ...).
status_of() { docker exec "$(cid "$1")" /usr/local/sbin/supervisor status 2>/dev/null | awk '{print $2}'; }
# fpm_up SERVICE: whether a php-fpm process runs in that container.
fpm_up() { docker exec "$(cid "$1")" pgrep php-fpm >/dev/null 2>&1; }
check_sites_idle() {
    local s st ok=0
    for s in php wiki; do
        st=$(docker exec "$(cid "$s")" /usr/local/sbin/supervisor status 2>&1)
        log "  $s: $st"
        [[ $st == "$s idle "*"on_demand=held"* ]] || fail "$s is not idle holding its socket" || ok=1
        ! fpm_up "$s" || fail "php-fpm runs in $s before any page" || ok=1
    done
    # One replica each: instance 1 (the replicas' sockets: section 9).
    for s in forum wiki; do
        [ -S "$DATA/sockets/$s/$s.1.sock" ] || fail "no socket $DATA/sockets/$s/$s.1.sock" || ok=1
    done
    return $ok
}
check "both PHP sites on demand: sockets held, no php-fpm before the first page" check_sites_idle

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

# ---- 2b. the wiki on demand --------------------------------------------------------------
WIKI_IDLE=15    # BOSUN_ON_DEMAND_IDLE of wiki in docker-compose.test.yaml
WIKI_BURST=50   # pages at once into the sleeping wiki
wiki_visits() {
    curl -fsS --max-time 10 -H 'Host: wiki.localhost' "$URL/" |
        sed -n 's/.*id="visits">\([0-9]*\)<.*/\1/p'
}
# wiki_gone: the wiki's php-fpm has stopped; meanwhile the forum must keep answering
# (FORUM_MISSES counts pages it failed to serve while we waited).
FORUM_MISSES=0
wiki_gone() {
    [ -n "$(visits)" ] || FORUM_MISSES=$((FORUM_MISSES + 1))
    ! fpm_up wiki && [ "$(status_of wiki)" = idle ]
}
check_wiki_on_demand() {
    local a b t page out
    [ "$(status_of wiki)" = idle ] && ! fpm_up wiki || fail "the wiki's php-fpm runs before its first page" || return 1
    t=$(date +%s.%N)
    page=$(curl -fsS --max-time 30 -H 'Host: wiki.localhost' "$URL/") || fail "no wiki page" || return 1
    log "  first wiki page (cold start) in $(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')s"
    grep -q '<h1>wiki</h1>' <<<"$page" || fail "the page is not the wiki's: $(head -c 200 <<<"$page")" || return 1
    a=$(sed -n 's/.*id="visits">\([0-9]*\)<.*/\1/p' <<<"$page")
    fpm_up wiki && [ "$(status_of wiki)" = running ] || fail "no php-fpm running in wiki after its first page" || return 1
    log "  wiki after the first page: $(docker exec "$(cid wiki)" /usr/local/sbin/supervisor status)"
    b=$(wiki_visits)
    log "  wiki visits: $a then $b"
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" -eq $((a + 1)) ] || fail "the wiki's counter did not go up by one" || return 1
    # The forum is a different host name, site and php-fpm.
    [[ $(curl -fsS --max-time 10 "$URL/") == *'<h1>forum</h1>'* ]] || fail "the default site is not the forum" || return 1
    t=$SECONDS
    FORUM_MISSES=0
    wait_until $((WIKI_IDLE + 45)) "the wiki's php-fpm to stop after ${WIKI_IDLE}s idle" wiki_gone || return 1
    log "  wiki's php-fpm gone $((SECONDS - t))s after its last page (idle ${WIKI_IDLE}s): $(docker exec "$(cid wiki)" /usr/local/sbin/supervisor status)"
    ((FORUM_MISSES == 0)) || fail "the forum failed $FORUM_MISSES pages meanwhile" || return 1
    [ "$(status_of php)" = running ] && fpm_up php || fail "the forum's php-fpm stopped too" || return 1
    log "  forum meanwhile: $(docker exec "$(cid php)" /usr/local/sbin/supervisor status)"
    [ -S "$DATA/sockets/wiki/wiki.1.sock" ] || fail "the wiki's socket path is gone after php-fpm exited" || return 1
    # An action into the sleeping wiki does not wake it (the request socket is not the site's).
    out=$(docker exec "$(cid scheduler)" scheduler send wiki rotate-logs 2>&1) || fail "scheduler send wiki rotate-logs: $out" || return 1
    ! fpm_up wiki || fail "rotate-logs started the wiki's php-fpm" || return 1
    # The next pages start it again: a burst of WIKI_BURST at once into the sleeping wiki,
    # every one served (they wait in the socket's backlog), by one start of php-fpm.
    local before after codes n
    before=$(docker exec "$(cid wiki)" /usr/local/sbin/supervisor status | sed -n 's/.* restarts=\([0-9]*\).*/\1/p')
    codes=$(seq "$WIKI_BURST" | xargs -P "$WIKI_BURST" -I{} \
        curl -sS --max-time 30 -o /dev/null -w '%{http_code}\n' -H 'Host: wiki.localhost' "$URL/?n={}" 2>&1)
    n=$(grep -cx 200 <<<"$codes")
    b=$(wiki_visits)
    after=$(docker exec "$(cid wiki)" /usr/local/sbin/supervisor status | sed -n 's/.* restarts=\([0-9]*\).*/\1/p')
    log "  burst of $WIKI_BURST pages into the sleeping wiki: $n answered 200; visits now $b; starts of php-fpm: $((after - before))"
    log "  $(docker exec "$(cid wiki)" /usr/local/sbin/supervisor status)"
    ((n == WIKI_BURST)) || fail "not all served: $(sort <<<"$codes" | uniq -c | tr '\n' ' ')" || return 1
    [ -n "$b" ] && [ "$b" -eq $((a + 1 + WIKI_BURST + 1)) ] || fail "the counter is not $((a + WIKI_BURST + 2))" || return 1
    ((after - before == 1)) || fail "php-fpm was started $((after - before)) times" || return 1
    fpm_up wiki || fail "the wiki's php-fpm is not running after the burst"
}
check "the wiki on demand: its first page starts php-fpm, ${WIKI_IDLE}s idle stops it, the forum keeps answering, a cold burst is served" check_wiki_on_demand

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
    [[ $r == "error unknown-action"* ]] || fail "unknown action answered '$r'" || return 1
    r=$(request version) || return 1
    [ "$r" = "bosun $(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1) ($BOSUN_COMMIT)" ] ||
        fail "version answered '$r' (commit $BOSUN_COMMIT)"
}
check "mysql's request socket from the host: ping, help, unknown action, version" check_builtins

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

# ---- 3b. the trust boundaries, from inside the containers ---------------------------------
# shellcheck source=tests/e2e/boundaries.sh
. tests/e2e/boundaries.sh

# ---- 4. the scheduler delivers ---------------------------------------------------------
delivered() {
    # grep reads to the end (no -q): with pipefail, a grep that quits at the first match
    # fails the pipe when the log is still being written to it (SIGPIPE).
    dc logs --no-color nginx 2>/dev/null | grep 'logs rotated' >/dev/null &&
        dc logs --no-color scheduler 2>/dev/null | grep 'nginx' | grep 'exit=0' >/dev/null
}
check_scheduler() {
    # `* * * * * nginx rotate-logs`: at the latest one minute after the scheduler started.
    wait_until 90 "the scheduler's rotate-logs to show in nginx's log" delivered || return 1
    log "  nginx: $(dc logs --no-color nginx | grep 'logs rotated' | head -n 1)"
    log "  scheduler: $(dc logs --no-color scheduler | grep nginx | grep 'exit=0' | head -n 1)"
}
check "the scheduler's * * * * * line delivers into nginx within the minute" check_scheduler

# ---- 4b. did it run? the journal and the scheduler's record ---------------------------
# scheduler status: the `* * * * * nginx rotate-logs` line, ok, with its exit code.
# (Its exit code is 1: the test schedule's @reboot line failed on purpose; 4c.)
status_ok() {
    local out
    out=$(docker exec "$(cid scheduler)" scheduler status)
    grep -E ' nginx rotate-logs .* result=ok exit=0 ' <<<"$out"
}
check_history_status() {
    local r id out st
    r=$(request 'history nightly-backup') || fail "history: no answer" || return 1
    log "  history nightly-backup: $(tr '\n' '|' <<<"$r")"
    id=$(grep -E '^[0-9]+ [0-9T:-]+Z nightly-backup user=forum exit=0 secs=[0-9.]+ by=[0-9]+ instance=1$' <<<"$r" | head -n 1 | cut -d' ' -f1)
    [ -n "$id" ] || fail "the socat-requested backup is not in mysql's history" || return 1
    out=$(request "log $id") || fail "log $id: no answer" || return 1
    log "  log $id: $(tr '\n' '|' <<<"$out")"
    grep -q '^backup of forum: ' <<<"$out" || fail "log $id lacks the backup's output" || return 1
    # The same, asked from inside the stack.
    out=$(docker exec "$(cid scheduler)" scheduler send mysql log "$id") || fail "scheduler send mysql log $id" || return 1
    grep -q '^backup of forum: ' <<<"$out" || fail "scheduler send mysql log $id: $out" || return 1
    wait_until 90 "scheduler status to show nginx rotate-logs ok" status_ok || return 1
    st=0
    out=$(docker exec "$(cid scheduler)" scheduler status) || st=$?
    log "  scheduler status (exit $st):"
    while IFS= read -r l; do log "    $l"; done <<<"$out"
    # Exit 1: the test schedule's @reboot backup of a site with no database failed (4c).
    grep -qE ' mysql nightly-backup user=nosuchsite .* result=failed exit=66 ' <<<"$out" ||
        fail "scheduler status does not show the @reboot nosuchsite backup failed with exit 66" || return 1
    [ "$st" = 1 ] || fail "scheduler status exited $st, not 1 (a line's last result is failed)" || return 1
}
check "history and log of the socat-requested backup in mysql; scheduler status shows the scheduled runs, ok and failed" check_history_status

# ---- 4c. told when it fails ----------------------------------------------------------
notify_line() {
    dc logs --no-color scheduler 2>/dev/null |
        grep -E '\[notify#[0-9]+\] notify: mysql nightly-backup user=nosuchsite result=failed exit=66 id=[0-9]+'
}
check_notified() {
    local s nets want ok=0
    # Networks: the scheduler on its own (compose names it <project>_outbound), nginx on
    # the project's default one, the others on none.
    for s in "${SERVICES[@]}"; do
        nets=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(cid "$s")")
        case $s in
            scheduler) want="${COMPOSE_PROJECT_NAME}_outbound " ;;
            nginx) want="${COMPOSE_PROJECT_NAME}_default " ;;
            *) want="none " ;;
        esac
        log "  $s: networks $nets"
        [ "$nets" = "$want" ] || fail "$s is on '$nets', not '$want'" || ok=1
    done
    wait_until 60 "the notify line of the failed @reboot backup in the scheduler's log" notify_line ||
        return 1
    dc logs --no-color scheduler | grep -E '\[notify#[0-9]+\] notify: ' | sed 's/^/    /'
    wait_until 30 "the webhook and the healthchecks ping at the receiver on the scheduler's network" \
        test -e "$HOOK_DIR/req-2.json" || return 1
    python3 - "$HOOK_DIR" <<'PY' || fail "the webhook or the ping is not as expected" || return 1
import base64, json, os, sys
d = sys.argv[1]
reqs = [json.load(open(os.path.join(d, f))) for f in sorted(os.listdir(d)) if f.startswith("req-")]
paths = sorted(r["path"] for r in reqs)
assert paths == ["/hc/e2e/fail", "/hook"], paths
hook = [r for r in reqs if r["path"] == "/hook"][0]
m = json.loads(base64.b64decode(hook["body_b64"]).decode("utf-8"))
want = {"service": "mysql", "action": "nightly-backup", "user": "nosuchsite", "result": "failed", "exit": 66, "host": "e2e"}
assert {k: m[k] for k in want} == want, m
assert "no such database: nosuchsite" in m["lines"], m["lines"]
assert m["text"].startswith("e2e: mysql nightly-backup (user nosuchsite) FAILED with exit 66"), m["text"]
print("    webhook:", json.dumps(m)[:240])
PY
    return $ok
}
check "told when it fails: the notify line, and the webhook and healthchecks ping over the scheduler's own network" check_notified

# ---- 4d. the status page, in a real browser ---------------------------------------------
# nginx serves the scheduler's page (BOSUN_STATUS_HTML) and metrics on a port of their own,
# on 127.0.0.1 only. The page is read by headless Chromium with scripts off (the DOM it
# builds) and drawn light and dark; the metrics by a real parser of the format.
page_has_both() {
    local p
    p=$(curl -fsS "$STATUS_URL/") || return 1
    grep -q 'nightly-backup: failed at ' <<<"$p" && grep -q '<li class="o" title="[^"]* ok exit=0' <<<"$p"
}
# first_pixel PNG: the top-left pixel's "R G B" (the first pixel of the first row is the
# same whatever the row's PNG filter), with nothing but Python's zlib.
first_pixel() {
    python3 - "$1" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, width = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        width = struct.unpack(">I", body[:4])[0]
    if kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
assert width > 0
print(raw[1], raw[2], raw[3])
PY
}
check_status_page() {
    local ctype dom shots light dark out prof probe
    command -v chromium >/dev/null || fail "chromium is missing (apt-get install -y chromium)" || return 1
    # Scripts off: a profile of its own whose content setting blocks JavaScript (headless
    # Chromium prints nothing with --blink-settings=scriptEnabled=false). Checked first.
    prof=$(mktemp -d /tmp/bosun-e2e-chromium.XXXXXX)
    mkdir -p "$prof/Default"
    echo '{"profile":{"default_content_setting_values":{"javascript":2}}}' >"$prof/Default/Preferences"
    local -a chrome=(timeout 60 chromium --headless --no-sandbox --disable-gpu
        --disable-background-networking --user-data-dir="$prof")
    probe=$("${chrome[@]}" --dump-dom 'data:text/html,<p>x</p><script>document.write("on")</script>' 2>/dev/null)
    [[ $probe == *'<p>x</p>'* && $probe != *'</script>on'* ]] ||
        fail "could not turn scripts off in chromium: $probe" || return 1
    wait_until 60 "the status page to show the failed and the ok runs" page_has_both || return 1
    # A port of its own, not the sites': the sites' port has no such page (the forum
    # answers every path).
    ! curl -s "$URL/index.html" "$URL/metrics" | grep -q 'bosun schedule\|bosun_schedule_' ||
        fail "the sites' port serves the status page or its metrics" || return 1
    ctype=$(curl -fsS -o /dev/null -w '%{content_type}' "$STATUS_URL/")
    log "  $STATUS_URL/: $ctype, $(curl -fsS "$STATUS_URL/" | wc -c) bytes, gzip $(curl -fsS -H 'Accept-Encoding: gzip' "$STATUS_URL/" | wc -c) bytes"
    dom=$("${chrome[@]}" --dump-dom "$STATUS_URL/" 2>/dev/null) ||
        fail "chromium --dump-dom failed" || return 1
    DOM=$dom python3 - <<'PY' || fail "the page chromium built is not as expected" || return 1
import os
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.marks, self.alert, self.scripts, self.external = 0, [], False, 0, []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and self.in_body:
            self.rows += 1
        if tag == "tbody":
            self.in_body = True
        if tag == "li" and "title" in a:
            self.marks.append((a.get("class"), a["title"]))
        if a.get("role") == "alert":
            self.alert = True
        if tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            if k in a:
                self.external.append(a[k])
    in_body = False
dom = os.environ["DOM"]
p = P()
p.feed(dom)
assert p.rows == 2, f"{p.rows} rows, the test schedule has 2 lines"
assert p.alert, "no banner for the failed line"
assert p.scripts == 0 and not p.external, (p.scripts, p.external)
kinds = {c for c, _ in p.marks}
assert {"o", "f"} <= kinds, p.marks
failed = [t for c, t in p.marks if c == "f"]
assert any(" failed exit=66 " in t + " " for t in failed), failed
print(f"    DOM: {p.rows} rows, {len(p.marks)} marks {sorted(kinds)}, banner; e.g. {failed[0]!r}")
PY
    shots=${E2E_SHOTS:-$(mktemp -d /tmp/bosun-e2e-shots.XXXXXX)}
    mkdir -p "$shots"
    light=$shots/status-light.png dark=$shots/status-dark.png
    "${chrome[@]}" --hide-scrollbars --window-size=1100,420 --screenshot="$light" "$STATUS_URL/" >/dev/null 2>&1
    "${chrome[@]}" --force-dark-mode --blink-settings=preferredColorScheme=0 \
        --hide-scrollbars --window-size=1100,420 --screenshot="$dark" "$STATUS_URL/" >/dev/null 2>&1
    rm -rf "$prof"
    [ -s "$light" ] && [ -s "$dark" ] || fail "no screenshots" || return 1
    out="$(first_pixel "$light") / $(first_pixel "$dark")"
    log "  screenshots $light, $dark: background $out (light / dark)"
    [ "$out" = "255 255 255 / 13 17 23" ] || fail "the page is not drawn light and dark: $out" || return 1
    [ -n "${E2E_SHOTS:-}" ] || rm -rf "$shots"
    # The schedule's metrics beside it, read by a real parser of the format.
    curl -fsS "$STATUS_URL/metrics" | python3 -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
got = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        got[(s.name, s.labels.get("user"), s.labels.get("action"), s.labels.get("result"))] = s.value
assert got[("bosun_schedule_last_exit_code", "nosuchsite", "nightly-backup", None)] == 66, got
assert got[("bosun_schedule_runs_total", "", "rotate-logs", "ok")] >= 1, got
print("    /metrics:", len(got), "samples; last_exit_code{user=nosuchsite} 66")
' | while IFS= read -r l; do log "$l"; done
    [ "${PIPESTATUS[1]}" = 0 ] || fail "/metrics is not as expected" || return 1
}
check "the status page on its own 127.0.0.1 port: the failed line's banner and marks in headless Chromium (scripts off), light and dark; its metrics parse" check_status_page

# ---- 5. a crashed main process ------------------------------------------------------
# On demand, a php-fpm that dies is not restarted at once: the supervisor holds the socket
# again and the next connection starts it (after a backoff of 100 ms).
fpm_pid() { docker exec "$(cid php)" cat /run/php-fpm.1.pid 2>/dev/null; }
# A page first: it is what starts php-fpm again (SIGKILL leaves the old pid file behind).
fpm_restarted() { local p; [ -n "$(visits)" ] && p=$(fpm_pid) && [ -n "$p" ] && [ "$p" != "$1" ]; }
# left_of_group PGID [SERVICE]: processes still in the killed master's process group (its
# workers), in php or SERVICE.
left_of_group() { docker exec "$(cid "${2:-php}")" ps -eo pgid=,pid=,args= | awk -v g="$1" '$1 == g'; }
no_orphans() { [ -z "$(left_of_group "$1" "${2:-php}")" ]; }
check_crash() {
    local old a b
    a=$(visits)
    old=$(fpm_pid) && [ -n "$old" ] || fail "no php-fpm pid file" || return 1
    docker exec "$(cid php)" kill -KILL "$old" || return 1
    wait_until 10 "the killed master's workers to go too" no_orphans "$old" ||
        fail "left behind: $(left_of_group "$old" | tr '\n' '|')" || return 1
    wait_until 60 "php-fpm started again and serving" fpm_restarted "$old" || return 1
    b=$(visits)
    log "  php-fpm master $old killed; now $(fpm_pid); visits $a then $b"
    log "  $(docker exec "$(cid php)" /usr/local/sbin/supervisor status)"
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ] || fail "the counter did not go on"
}
check "php-fpm's master killed: its workers go, the next page starts it again, pages count on" check_crash

# nginx is not on demand: a master that dies is restarted (restart = "on-failure") once its
# workers, which run as www-data, are gone. The supervisor (root) can signal them only with
# CAP_KILL: without it the orphaned worker keeps ports 80 and 8081 and every restart fails
# to bind, so this is also what keeps KILL in nginx's cap_add (tests/e2e/caps.sh).
nginx_pid() { docker exec "$(cid nginx)" cat /run/nginx.pid 2>/dev/null; }
nginx_restarted() { local p; p=$(nginx_pid) && [ -n "$p" ] && [ "$p" != "$1" ] && [ -n "$(visits)" ]; }
check_nginx_crash() {
    local old
    old=$(nginx_pid) && [ -n "$old" ] || fail "no nginx pid file" || return 1
    docker exec "$(cid nginx)" kill -KILL "$old" || return 1
    wait_until 20 "the killed nginx master's workers to go" no_orphans "$old" nginx ||
        fail "left behind: $(left_of_group "$old" nginx | tr '\n' '|')" || return 1
    wait_until 60 "nginx started again and serving" nginx_restarted "$old" || return 1
    log "  nginx master $old killed; now $(nginx_pid); $(docker exec "$(cid nginx)" /usr/local/sbin/supervisor status)"
}
check "nginx's master killed: its workers (www-data) go, nginx is restarted, pages are served" check_nginx_crash

# ---- 6. a backup killed midway ---------------------------------------------------------
tmp_present() { compgen -G "$DATA/backup/.bulk-*.tmp.*" >/dev/null; }
check_killed_backup() {
    local id finals_before finals_after f bad=0 r bulk
    id=$(cid mysql)
    # Enough rows that the dump takes a few seconds (about 60 MB of SQL).
    docker exec "$id" mariadb -e "CREATE DATABASE bulk; USE bulk;
        CREATE TABLE bulk.t (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB;
        INSERT INTO bulk.t SELECT seq, CONCAT(SHA2(seq, 512), SHA2(seq, 256)) FROM seq_1_to_300000;" ||
        return 1
    finals_before=$(cd "$DATA/backup" && ls -- *.sql.gz 2>/dev/null | sort)
    request 'nightly-backup bulk' >"$DATA/bulk-request.out" 2>&1 &
    bulk=$!
    wait_until 60 "the bulk backup's temp file" tmp_present || return 1
    docker kill "$id" >/dev/null || return 1
    log "  killed mysql while writing $(basename "$(compgen -G "$DATA/backup/.bulk-*.tmp.*" | head -n 1)")"
    # That request only, not every background job of the script.
    wait "$bulk"
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

# ---- 7. a backup into a full disk ------------------------------------------------------
# mysql alone is recreated with one more override: BACKUP_DIR is a 4 MiB tmpfs (a real
# filesystem that really fills up, not the host's disk) and BACKUP_KEEP=1 with
# BACKUP_KEEP_DAYS=0 (pruning by count alone; a rotation that
# ran before the new dump was safe would delete the only good backup). It stays so for the
# rest of the run: `stop` and `down` do not look at the configuration.
ENOSPC_OVERRIDE=tests/e2e/docker-compose.enospc.yaml
SMALL=/data/backup-small    # BACKUP_DIR in that override
# in_mysql SCRIPT: run a bash script inside mysql's container.
in_mysql() { docker exec "$(cid mysql)" bash -c "$1"; }
small_mounted() { in_mysql "grep -q ' $SMALL tmpfs ' /proc/mounts"; }
# small_files: every file in the backup dir with its SHA-256, temp files included.
small_files() { in_mysql "cd $SMALL && find . -mindepth 1 -exec sha256sum -- {} + | sort -k 2"; }
# valid_dump FILE: a complete gzip'd dump (valid gzip, mariadb-dump's last line).
valid_dump() { in_mysql "gzip -t '$1' && gzip -dc '$1' | tail -n 1 | grep -q '^-- Dump completed'"; }
check_full_disk() {
    local r n before after since id logs f t
    t=$SECONDS
    dc -f "$ENOSPC_OVERRIDE" up -d --no-deps mysql || return 1
    wait_until 180 "mysql healthy again with its backups on a small tmpfs" all_healthy || return 1
    small_mounted || fail "no tmpfs at $SMALL in the recreated mysql" || return 1
    id=$(cid mysql)
    log "  mysql recreated with $ENOSPC_OVERRIDE, healthy in $((SECONDS - t))s: $(in_mysql "df -h --output=size,avail $SMALL | tail -n 1")"
    # A good backup first.
    r=$(request 'forum nightly-backup') || fail "no answer" || return 1
    grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || fail "first backup: $(tr '\n' '|' <<<"$r")" || return 1
    before=$(small_files)
    f=$(awk '$2 ~ /^\.\/forum-.*\.sql\.gz$/ {print substr($2, 3)}' <<<"$before")
    [ "$(wc -l <<<"$before")" = 1 ] && [ -n "$f" ] && valid_dump "$SMALL/$f" ||
        fail "not exactly one valid forum backup: $(tr '\n' '|' <<<"$before")" || return 1
    log "  good backup: $f"
    # Fill the filesystem (dd ends with ENOSPC), so that not even the gzip header fits.
    in_mysql "dd if=/dev/zero of=$SMALL/filler bs=64k 2>/dev/null; [ \"\$(stat -f -c %a $SMALL)\" = 0 ]" ||
        fail "could not fill $SMALL" || return 1
    before=$(small_files)
    log "  $SMALL filled: $(in_mysql "df -h --output=size,used,avail $SMALL | tail -n 1")"
    since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
    r=$(request 'forum nightly-backup') || fail "no answer" || return 1
    log "  reply: $(tr '\n' '|' <<<"$r")"
    n=$(sed -nE 's/^done [^ ]+ exit=([0-9]+)( .*)?$/\1/p' <<<"$r")
    [ -n "$n" ] || fail "no 'done ... exit=N' line" || return 1
    ((n != 0)) || fail "a backup into a full disk answered exit=0" || return 1
    after=$(small_files)
    [ "$after" = "$before" ] ||
        fail "the backup dir changed: before $(tr '\n' '|' <<<"$before") after $(tr '\n' '|' <<<"$after")" || return 1
    log "  the earlier backup is byte-identical; no new or temp file"
    logs=$(docker logs --since "$since" "$id" 2>&1)
    grep -q 'No space left on device' <<<"$logs" ||
        fail "no 'No space left on device' in mysql's log: $(tail -n 5 <<<"$logs" | tr '\n' '|')" || return 1
    log "  mysql: $(grep 'No space left on device' <<<"$logs" | head -n 1)"
    # Space again: the next backup succeeds, and only then is the old one rotated out.
    in_mysql "rm -f $SMALL/filler" || return 1
    since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
    r=$(request 'forum nightly-backup') || fail "no answer" || return 1
    grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || fail "backup after freeing space: $(tr '\n' '|' <<<"$r")" || return 1
    after=$(small_files)
    f=$(docker logs --since "$since" "$id" 2>&1 | sed -n "s|.*backup of forum: $SMALL/\([^ ]*\) (.*|\1|p" | tail -n 1)
    [ -n "$f" ] && [ "$(wc -l <<<"$after")" = 1 ] && grep -q " \./$f\$" <<<"$after" && valid_dump "$SMALL/$f" ||
        fail "after freeing space: not exactly the new valid backup '$f': $(tr '\n' '|' <<<"$after")" || return 1
    log "  after freeing space: $f (BACKUP_KEEP=1, BACKUP_KEEP_DAYS=0 rotated the earlier one out)"
}
check "a backup into a full disk fails with exit=N, N non-zero, and keeps the earlier backup intact" check_full_disk

# ---- 9. replicas -----------------------------------------------------------------------
# The forum scaled to three (tests/e2e/replicas.sh says what is checked), recreated with
# one more override: BOSUN_ON_DEMAND_IDLE=10s, so that each replica's idle stop is seen.
# Back to one replica afterwards, for the stop below.
SCALE_OVERRIDE=tests/e2e/docker-compose.scale.yaml
REPLICAS=3 REPLICAS_IDLE=10 REPLICAS_FRESH=1 REPLICAS_WHAT="restart policy"
php_cids() {
    docker ps -q -f "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        -f label=com.docker.compose.service=php -f status=running
}
# A crash: the supervisor (PID 1) killed from the host. Not `docker kill`: Docker (28) counts
# that as a stop by hand, and no restart policy brings the container back.
replica_kill() { kill -KILL "$(docker inspect -f '{{.State.Pid}}' "$1")"; }
one_php() { [ "$(php_cids | wc -l)" = 1 ] && all_healthy; }
t=$SECONDS
if dc -f "$SCALE_OVERRIDE" up -d --no-deps --scale php=$REPLICAS php; then
    log "  --scale php=$REPLICAS: up in $((SECONDS - t))s"
    # shellcheck source=tests/e2e/replicas.sh
    . tests/e2e/replicas.sh
else
    check "--scale php=$REPLICAS" false
fi
scale_down() {
    dc -f "$SCALE_OVERRIDE" up -d --no-deps --scale php=1 php || return 1
    wait_until 60 "one php replica, every service healthy" one_php || return 1
    log "  php: $(docker exec "$(cid php)" /usr/local/sbin/supervisor status)"
}
check "--scale php=1 again: one replica, healthy" scale_down

# ---- 8. stop -------------------------------------------------------------------------
check_stop() {
    local s id code since started finished secs ok=0
    declare -A ids graces=([mysql]=45 [php]=15 [wiki]=15 [nginx]=15 [scheduler]=12)
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
    # The log driver may still be writing the container's last lines when `stop` returns.
    shutdown_logged() { docker logs --since "$since" "${ids[mysql]}" 2>&1 | grep 'mariadbd: Shutdown complete' >/dev/null; }
    if wait_until 10 "MariaDB's 'Shutdown complete' in its log" shutdown_logged; then
        log "  mysql: $(docker logs --since "$since" "${ids[mysql]}" 2>&1 | grep 'Shutdown complete' | tail -n 1)"
    else
        log "  MariaDB did not log 'Shutdown complete'"
        ok=1
    fi
    return $ok
}
check "docker-compose stop: every container exits 0 within its grace, MariaDB shuts down cleanly" check_stop
