#!/usr/bin/env bash
# Which capabilities each service needs, found by trying (docs/security.md, "Capabilities
# per service"): the stack of docker-compose.yaml is brought up once as it ships (it must
# work), then for each service and each capability of its cap_add, that service is
# recreated without that one capability, and the stack is tried:
#   - every container healthy (mysql from an empty data volume: the first start, with
#     mariadb-install-db and the imports, is the step that needs the most)
#   - a page of the forum and of the wiki (nginx -> php-fpm -> MariaDB)
#   - `forum nightly-backup` and `rotate-logs` (twice) of that service answer exit=0, and
#     its log says no `[emerg]` or `Permission denied` (nginx reopening its logs)
#   - php and nginx: the master killed with SIGKILL, its workers go and pages come back
#   - `docker stop` of that service ends with exit code 0 within its grace
# A capability without which one of these fails is needed; one without which all pass is
# not, and the script says so (exit 1), so that cap_add stays minimal.
# wiki is configured as php is (the same cap_add, the same image and setup) and is not tried
# on its own; the scheduler has none to take away.
#
# Env: COMPOSE ("docker compose"), E2E_BUILD=0 to use bosun:$BOSUN_TAG as it is (the
# default here; this script never builds), SERVICES_TO_TRY ("mysql php nginx").
# Runs as project bosuncaps on 127.0.0.1:18090, with a data directory of its own; cleans up.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$SECONDS
E2E_TAG=caps
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

read -r -a COMPOSE_CMD <<<"${COMPOSE:-docker compose}"
export COMPOSE_PROJECT_NAME=bosuncaps
export BOSUN_HTTP_PORT=18090 BOSUN_STATUS_PORT=18091
DATA=$(mktemp -d /tmp/bosun-caps.XXXXXX)
export BOSUN_DATA=$DATA
URL=http://127.0.0.1:$BOSUN_HTTP_PORT
FILE=$DATA.compose.yaml
SERVICES=(mysql php wiki nginx scheduler)

dc() { "${COMPOSE_CMD[@]}" --project-directory "$ROOT" -f "$FILE" "$@"; }
cid() { dc ps -q "$1" 2>/dev/null; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    dc down -v --remove-orphans >/dev/null 2>&1
    remove_data "$DATA" "bosun:${BOSUN_TAG:-local}"
    rm -f "$FILE"
    finish "caps" "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# without SERVICE CAP: docker-compose.yaml with CAP taken out of SERVICE's cap_add ("" for
# none taken out), written to $FILE.
without() {
    python3 - "$1" "$2" "$FILE" <<'PY'
import re, sys
svc, cap, out = sys.argv[1:]
text = open("docker-compose.yaml").read()
# The service's block: from "  svc:" to the next top-level service.
m = re.search(r"(?ms)^  %s:\n.*?(?=^  [a-z]+:\n|^[a-z])" % re.escape(svc), text)
block = m.group(0)
def drop(mm):
    caps = [c.strip() for c in mm.group(1).split(",") if c.strip() != cap]
    return "cap_add: [%s]" % ", ".join(caps)
new = re.sub(r"cap_add: \[([^\]]*)\]", drop, block, count=1)
if cap:
    assert new != block, "no cap_add in " + svc
open(out, "w").write(text[: m.start()] + new + text[m.end():])
PY
}

request() { printf '%s\n' "$2" | timeout 60 socat -t 50 - "UNIX-CONNECT:$DATA/run/$1-request.sock"; }
page() { curl -fsS --max-time 20 "$@" "$URL/" | grep -q 'id="visits"'; }

# failure_in SERVICE: the first line of its container's log that says a start failed (the
# setup or the main process exiting non-zero), if any.
failure_in() {
    docker logs "$(cid "$1")" 2>&1 | grep -m1 -E 'exited child=main exit=[1-9]|setup script .* failed|\[emerg\]|mysql-setup: error'
}
# up_or_failed SERVICE: every container healthy, or SERVICE's start failed.
up_or_failed() { all_healthy || [ -n "$(failure_in "$1")" ]; }

# crash_recovers SERVICE (php or nginx): its master killed with SIGKILL, what was left of its
# process group (workers of another uid: the supervisor needs CAP_KILL to stop them) goes,
# and pages are served again (php on demand: the next page starts php-fpm; nginx restarted).
crash_recovers() {
    local s=$1 old pidfile=/run/php-fpm.1.pid end
    [ "$s" = nginx ] && pidfile=/run/nginx.pid
    old=$(docker exec "$(cid "$s")" cat "$pidfile" 2>/dev/null)
    [ -n "$old" ] || { echo "no pid file of $s's master"; return 1; }
    docker exec "$(cid "$s")" kill -KILL "$old" || { echo "kill of $s's master failed"; return 1; }
    end=$((SECONDS + 20))
    while docker exec "$(cid "$s")" ps -eo pgid= | awk -v g="$old" '$1 == g' | grep -q .; do
        ((SECONDS < end)) || { echo "$s's master killed: its workers stay"; return 1; }
        sleep 0.2
    done
    wait_until 60 "pages after $s's master was killed" page >/dev/null 2>&1 ||
        { echo "$s's master killed: no page after"; return 1; }
}

# works SERVICE: the checks above; says what failed.
works() {
    local s=$1 r id code f
    wait_until 150 "every container healthy, or $s failing" up_or_failed "$s" ||
        { echo "not healthy: $(dc ps 2>&1 | grep -v '(healthy)' | tail -n +2 | awk '{print $1}' | tr '\n' ' ')"; return 1; }
    f=$(failure_in "$s")
    if [ -n "$f" ]; then
        echo "start failed: $f"
        return 1
    fi
    page || { echo "no forum page"; return 1; }
    page -H 'Host: wiki.localhost' || { echo "no wiki page"; return 1; }
    r=$(request mysql 'forum nightly-backup')
    grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || { echo "backup: $(tr '\n' '|' <<<"$r")"; return 1; }
    if [ "$s" != mysql ]; then
        crash_recovers "$s" || return 1
        page || return 1    # something to rotate
    fi
    # Twice: the second finds logs the first made (owned by the daemon's worker user, left in
    # place when empty) and the daemon must reopen them.
    for _ in 1 2; do
        r=$(request "$s" 'rotate-logs')
        grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || { echo "rotate-logs: $(tr '\n' '|' <<<"$r")"; return 1; }
    done
    f=$(docker logs "$(cid "$s")" 2>&1 | grep -m1 -E '\[emerg\]|Permission denied')
    [ -z "$f" ] || { echo "after rotate-logs: $f"; return 1; }
    id=$(cid "$s")
    dc stop "$s" >/dev/null 2>&1
    code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
    [ "$code" = 0 ] || { echo "docker stop: exit code $code"; return 1; }
}

# fresh_mysql: mysql's container and data volume removed (a failed first start leaves a
# marker in the volume that stops every later start).
fresh_mysql() {
    dc rm -sf mysql >/dev/null 2>&1
    docker volume rm "${COMPOSE_PROJECT_NAME}_mysql-data" >/dev/null 2>&1
}

# try SERVICE CAP: recreate SERVICE without CAP (mysql: on an empty data volume), check.
try() {
    local s=$1 c=$2 why
    without "$s" "$c" || return 2
    [ "$s" != mysql ] || fresh_mysql
    dc up -d >/dev/null 2>&1 || { echo "up failed"; return 1; }
    why=$(works "$s") || { echo "$why"; return 1; }
    dc start "$s" >/dev/null 2>&1
}

need_engine_and_tools
docker image inspect "bosun:${BOSUN_TAG:-local}" >/dev/null 2>&1 || { log "no image bosun:${BOSUN_TAG:-local}"; exit 1; }
mkdir -p "$DATA/run" "$DATA/backup"

check_shipped() {
    local why
    without mysql "" || return 1
    dc up -d >/dev/null 2>&1 || return 1
    why=$(works nginx) || fail "$why" || return 1
    dc start nginx >/dev/null 2>&1
}
check "the stack as it ships works (healthy, pages, a backup, rotate-logs, stop)" check_shipped
((FAILED == 0)) || exit 1

for s in ${SERVICES_TO_TRY:-mysql php nginx}; do
    # Back to the stack as it ships (after mysql's trials, on a fresh data volume).
    if [ "$s" != mysql ]; then
        without mysql ""
        fresh_mysql
        dc up -d >/dev/null 2>&1
        wait_until 150 "the stack as it ships healthy again" all_healthy || { log "the stack does not come back"; exit 1; }
    fi
    caps=$(python3 -c "
import re, sys
t = open('docker-compose.yaml').read()
m = re.search(r'(?ms)^  $s:\n.*?cap_add: \[([^\]]*)\]', t)
print(' '.join(c.strip() for c in m.group(1).split(',')))")
    for c in $caps; do
        check_one() {
            local why
            if why=$(try "$1" "$2"); then
                fail "$1 works without $2: it is not needed"
            else
                log "  $1 without $2: $why"
            fi
        }
        check "$s needs $c" check_one "$s" "$c"
    done
done
