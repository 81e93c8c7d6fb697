#!/usr/bin/env bash
# End-to-end test of the stack on a single-node Docker Swarm, as README.md "On Docker Swarm"
# runs it: build the image, `docker stack deploy -c docker-compose.yaml
# -c docker-compose.swarm.yaml` (+ docker-compose.test.yaml for a `* * * * *` schedule
# line), and check from the host:
#
#   1. every service has its tasks (php three, the others one), running and healthy, and
#      PID 1 in each is the supervisor;
#      the three network-less services of docker-compose.yaml are on the internal network
#      only, the scheduler on its own `outbound` network only
#   2. a page through nginx -> php-fpm -> MariaDB on 127.0.0.1:$BOSUN_HTTP_PORT counts
#      visits; the wiki (Host: wiki.localhost) answers too
#   3. `forum nightly-backup` with socat over the shared run dir answers `accepted` and
#      `done ... exit=0`, and the dump is a valid gzip file
#   4. the scheduler's `* * * * *` line delivers into nginx within the minute, and the
#      status page on 127.0.0.1:$BOSUN_STATUS_PORT shows that run ok
#   3b. the trust boundaries from inside the containers (tests/e2e/boundaries.sh), as in the
#      compose e2e but for no-new-privileges, which Swarm does not set
#   5. the mysql task's container killed: Swarm replaces it (restart_policy), the new task
#      is healthy and takes a backup
#
# Leaves the engine as it found it, also on failure: the stack removed (its containers,
# networks and volumes), the swarm left if this script joined it (with the docker_gwbridge
# network that joining made), the data directory removed. Every wait polls with a deadline.
# Uses its own stack name, port and data directory, so that it runs beside (or after) the
# compose e2e (tests/e2e/run.sh: project bosune2e, port 8080, ./data).
#
# Env: STACK (bosune2eswarm), BOSUN_HTTP_PORT (18080), BOSUN_STATUS_PORT (18081), BOSUN_DATA (a new temp directory;
#      must not exist if given), E2E_BUILD=0 to use bosun:$BOSUN_TAG as it is, E2E_KEEP=1
#      to leave the stack (and the swarm) up after the run.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$SECONDS

STACK=${STACK:-bosune2eswarm}
export BOSUN_HTTP_PORT=${BOSUN_HTTP_PORT:-18080}
export BOSUN_STATUS_PORT=${BOSUN_STATUS_PORT:-18081}
export BOSUN_TAG=${BOSUN_TAG:-local}
URL=http://127.0.0.1:$BOSUN_HTTP_PORT
SERVICES=(mysql php wiki nginx scheduler)
STACK_FILES=(-c docker-compose.yaml -c docker-compose.swarm.yaml -c docker-compose.test.yaml)

E2E_TAG=swarm
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

# cid SERVICE: the running container of the service's task (the newest, if two overlap).
cid() {
    docker ps -q -f "label=com.docker.swarm.service.name=${STACK}_$1" -f status=running 2>/dev/null |
        head -n 1
}


stack_containers() { docker ps -aq -f "label=com.docker.stack.namespace=$STACK"; }
stack_networks() { docker network ls -q -f "label=com.docker.stack.namespace=$STACK"; }
no_stack_left() { [ -z "$(stack_containers)" ] && [ -z "$(stack_networks)" ]; }

cleanup() {
    local rc=$?
    # The engine must be left as found: a second Ctrl-C or TERM does not cut this short
    # (every wait in here has its deadline).
    trap - EXIT
    trap '' INT TERM
    if ((FAILED > 0 || rc != 0)) && [ -n "${DEPLOYED:-}" ]; then
        log "tasks of the stack:"
        docker stack ps "$STACK" --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' 2>&1 |
            sed 's/^/    /'
        log "logs of the stack (last 40 lines each):"
        local s
        for s in "${SERVICES[@]}"; do
            docker service logs --no-task-ids --tail 40 "${STACK}_$s" 2>&1 | sed 's/^/    /'
        done
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        log "E2E_KEEP=1: leaving the stack, the swarm and $DATA in place"
    else
        if [ -n "${DEPLOYED:-}" ]; then
            docker stack rm "$STACK" >/dev/null 2>&1
            # Tasks stop within their stop_grace_period (mysql: 45 s); networks go after them.
            wait_until 90 "the stack's containers and networks to go" no_stack_left ||
                log "  left behind: containers $(stack_containers | tr '\n' ' ') networks $(stack_networks | tr '\n' ' ')"
            local v
            v=$(docker volume ls -q -f "label=com.docker.stack.namespace=$STACK")
            # A volume stays busy for a moment after its container is removed.
            [ -z "$v" ] || wait_until 30 "the stack's volumes to be removed" docker volume rm $v ||
                log "  volumes left behind: $(tr '\n' ' ' <<<"$v")"
        fi
        if [ -n "${JOINED:-}" ]; then
            docker swarm leave --force >/dev/null 2>&1 || log "  could not leave the swarm"
            if [ -z "${HAD_GWBRIDGE:-}" ]; then
                wait_until 30 "docker_gwbridge to be removed" docker network rm docker_gwbridge ||
                    log "  docker_gwbridge left behind"
            fi
            log "left the swarm this script had joined"
        fi
        if [ -n "${CREATED_DATA:-}" ] && [ -d "$DATA" ]; then
            remove_data "$DATA" "bosun:$BOSUN_TAG"
        fi
    fi
    finish "swarm e2e" "$rc"
}

# ---- preparation ------------------------------------------------------------------------
need_engine_and_tools
log "engine $(docker version -f '{{.Server.Version}}'), CLI $(docker version -f '{{.Client.Version}}')"
if docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qx "$STACK"; then
    log "a stack named $STACK runs already: remove it (docker stack rm $STACK) or set STACK"
    exit 1
fi
if [ -n "${BOSUN_DATA:-}" ]; then
    case $BOSUN_DATA in
        /*) DATA=$BOSUN_DATA ;;
        *) DATA=$ROOT/${BOSUN_DATA#./} ;;
    esac
    if [ -e "$DATA" ]; then
        log "$DATA exists: move it away or set BOSUN_DATA to a new directory"
        exit 1
    fi
    mkdir -p "$DATA" || exit 1
else
    DATA=$(mktemp -d /tmp/bosun-swarm-e2e.XXXXXX) || exit 1
fi
CREATED_DATA=1
export BOSUN_DATA=$DATA
# Distinctive database passwords, looked for on command lines and in logs (boundaries.sh b6).
export FORUM_DB_PASSWORD="e2e-forum-pw-$RANDOM$RANDOM" WIKI_DB_PASSWORD="e2e-wiki-pw-$RANDOM$RANDOM"
trap cleanup EXIT
trap 'exit 130' INT TERM
# Unlike compose, Swarm does not create a missing bind source: the task fails instead.
# Root-owned, as README.md says: the containers' root has no DAC_OVERRIDE.
mkdir -p "$DATA"/run/{mysql,php,wiki,nginx} "$DATA"/sockets/{mysqld,forum,wiki} "$DATA/backup" || exit 1

if [ "${E2E_BUILD:-1}" != 0 ]; then
    if ! docker image inspect debian:trixie-slim >/dev/null 2>&1 ||
        ! docker image inspect rust:1-slim-trixie >/dev/null 2>&1; then
        log "base images absent: scripts/offline-images"
        scripts/offline-images || exit 1
    fi
    log "building the image (docker build -t bosun:$BOSUN_TAG .): stack deploy does not build"
    t=$SECONDS
    docker build -q -t "bosun:$BOSUN_TAG" . >/dev/null || exit 1
    log "built in $((SECONDS - t))s"
fi
docker image inspect "bosun:$BOSUN_TAG" >/dev/null 2>&1 || {
    log "no image bosun:$BOSUN_TAG"
    exit 1
}

# The Docker CLI must read a compose file without `version:` (28 does; Debian's 20.10
# answers "unsupported Compose file version: 1.0"). Asked before joining any swarm.
if ! out=$(docker stack config "${STACK_FILES[@]}" 2>&1 >/dev/null); then
    log "this docker CLI ($(command -v docker), $(docker version -f '{{.Client.Version}}')) cannot read the stack files (the 28 CLI can): ${out%%$'\n'*}"
    exit 1
fi

case $(docker info -f '{{.Swarm.LocalNodeState}}') in
    inactive)
        docker network inspect docker_gwbridge >/dev/null 2>&1 && HAD_GWBRIDGE=1
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null || exit 1
        JOINED=1
        log "joined: docker swarm init --advertise-addr 127.0.0.1 (left again at the end)"
        ;;
    active)
        [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] || {
            log "this engine is a swarm worker: run the test on a manager"
            exit 1
        }
        log "the engine is a swarm manager already: using it, not leaving it"
        ;;
    *)
        log "swarm state '$(docker info -f '{{.Swarm.LocalNodeState}}')': neither in a swarm nor out of one"
        exit 1
        ;;
esac

# ---- 1. deployed, healthy, PID 1 --------------------------------------------------------
check_deploy() {
    local t=$SECONDS out
    out=$(docker stack deploy "${STACK_FILES[@]}" "$STACK" 2>&1)
    local rc=$?
    DEPLOYED=1
    while IFS= read -r l; do log "  $l"; done <<<"$out"
    ((rc == 0)) || return 1
    wait_until 240 "a healthy task in every service" all_healthy || {
        docker stack ps "$STACK"
        return 1
    }
    log "  all healthy $((SECONDS - t))s after deploy"
    docker service ls -f "label=com.docker.stack.namespace=$STACK" --format '{{.Name}} {{.Replicas}}' |
        while IFS= read -r l; do log "  $l"; done
}
check_pid1() {
    local s cmd nets ok=0
    for s in "${SERVICES[@]}"; do
        cmd=$(docker exec "$(cid "$s")" cat /proc/1/cmdline | tr '\0' ' ')
        nets=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(cid "$s")")
        log "  $s: PID 1 = $cmd; networks: $nets"
        case $cmd in
            /usr/local/sbin/supervisor*) ;;
            *) ok=1 ;;
        esac
        case $s in
            nginx) ;;
            scheduler)
                [ "$nets" = "${STACK}_outbound " ] || fail "$s is not on ${STACK}_outbound alone" || ok=1 ;;
            *)
                [ "$nets" = "${STACK}_internal " ] || fail "$s is not on ${STACK}_internal alone" || ok=1 ;;
        esac
    done
    return $ok
}
check "docker stack deploy: a healthy task in every service" check_deploy
if ((FAILED > 0)); then
    log "the stack did not come up; no point in going on"
    exit 1
fi
check "PID 1 in every task is the supervisor; only nginx and the scheduler have a network out" check_pid1

# ---- 2. a page ---------------------------------------------------------------------------
visits() {
    curl -fsS --max-time 10 "$@" "$URL/" | sed -n 's/.*id="visits">\([0-9]*\)<.*/\1/p'
}
page_up() { [ -n "$(visits)" ]; }
check_page() {
    local a b w
    wait_until 30 "a page on $URL" page_up || return 1
    a=$(visits) && b=$(visits)
    log "  forum visits on $URL: $a then $b"
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" -eq $((a + 1)) ] || fail "the counter did not go up by one" || return 1
    w=$(visits -H 'Host: wiki.localhost')
    log "  wiki visits: $w"
    [ -n "$w" ] || fail "no wiki page"
}
check "a page through nginx, php-fpm and MariaDB on $URL counts visits" check_page

# ---- 3. a backup over the shared run dir --------------------------------------------------
SOCK=$DATA/run/mysql-request.sock
request() { printf '%s\n' "$1" | timeout 120 socat -t 110 - "UNIX-CONNECT:$SOCK"; }
check_backup() {
    local r f
    [ -S "$SOCK" ] || fail "no socket $SOCK" || return 1
    r=$(request 'forum nightly-backup') || fail "no answer" || return 1
    log "  echo forum nightly-backup | socat ... $SOCK: $(tr '\n' '|' <<<"$r")"
    grep -qE '^accepted [^ ]+ nightly-backup' <<<"$r" || fail "no 'accepted' line" || return 1
    grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || fail "no 'done ... exit=0' line" || return 1
    f=$(ls "$DATA"/backup/forum-*.sql.gz 2>/dev/null | tail -n 1)
    [ -n "$f" ] || fail "no forum-*.sql.gz in $DATA/backup" || return 1
    gzip -t "$f" || fail "$f is not a valid gzip file" || return 1
    log "  dump: $(basename "$f") ($(stat -c %s "$f") bytes)"
}
check "a backup requested with socat from the host: accepted, done exit=0, a valid dump" check_backup

# ---- 3b. the trust boundaries, from inside the tasks' containers -------------------------
# The checks of the compose e2e (tests/e2e/boundaries.sh). Swarm drops security_opt
# (docker-compose.swarm.yaml), so no-new-privileges is reported there, not required.
BOUNDARIES_NNP=0
# restart_service SERVICE: Swarm's way (see boundaries.sh): the task replaced, old one first.
restart_service() { docker service update --quiet --force --no-resolve-image "${STACK}_$1" >/dev/null; }
# shellcheck source=tests/e2e/boundaries.sh
. tests/e2e/boundaries.sh

# ---- 4. the scheduler --------------------------------------------------------------------
delivered() {
    # grep reads to the end (no -q): with pipefail, a grep that quits at the first match
    # fails the pipe when the log is still being written to it (SIGPIPE).
    docker logs "$(cid nginx)" 2>&1 | grep 'logs rotated' >/dev/null &&
        docker logs "$(cid scheduler)" 2>&1 | grep 'nginx' | grep 'exit=0' >/dev/null
}
check_scheduler() {
    wait_until 90 "the scheduler's rotate-logs to show in nginx's log" delivered || return 1
    log "  nginx: $(docker logs "$(cid nginx)" 2>&1 | grep 'logs rotated' | head -n 1)"
    log "  scheduler: $(docker logs "$(cid scheduler)" 2>&1 | grep nginx | grep 'exit=0' | head -n 1)"
    wait_until 30 "the status page to show nginx rotate-logs ok" page_ok || return 1
    log "  status page on 127.0.0.1:$BOSUN_STATUS_PORT: $(curl -fsS --max-time 10 "http://127.0.0.1:$BOSUN_STATUS_PORT/" | grep -o '<title>[^<]*</title>')"
}
# The status page, served by nginx from the volume the scheduler writes it to.
page_ok() {
    curl -fsS --max-time 10 "http://127.0.0.1:$BOSUN_STATUS_PORT/" |
        grep -q '<span class="b o">[^<]*</span> <small>exit=0</small><td>nginx rotate-logs'
}
check "the scheduler's * * * * * line delivers into nginx within the minute; the status page shows it" check_scheduler

# ---- 6. the forum's replicas ---------------------------------------------------------------
REPLICAS=3 REPLICAS_IDLE="" REPLICAS_FRESH=0 REPLICAS_WHAT="a new task"
php_cids() { docker ps -q -f "label=com.docker.swarm.service.name=${STACK}_php" -f status=running; }
# Swarm replaces a task whose container is gone, docker kill included.
replica_kill() { docker kill "$1" >/dev/null; }
# shellcheck source=tests/e2e/replicas.sh
. tests/e2e/replicas.sh

# ---- 5. a killed task is replaced -------------------------------------------------------
replaced() { local id; id=$(cid mysql) && [ -n "$id" ] && [ "$id" != "$1" ]; }
check_replaced() {
    local old t r
    old=$(cid mysql)
    t=$SECONDS
    docker kill "$old" >/dev/null || return 1
    wait_until 60 "a new mysql task" replaced "$old" || return 1
    wait_until 180 "every service healthy again" all_healthy || return 1
    log "  mysql's container $old killed; task $(docker inspect -f '{{index .Config.Labels "com.docker.swarm.task.name"}}' "$(cid mysql)") healthy $((SECONDS - t))s later"
    r=$(request 'forum nightly-backup') || fail "no answer" || return 1
    grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || fail "backup from the new task: $(tr '\n' '|' <<<"$r")"
}
check "mysql's container killed: Swarm replaces the task, healthy, backups work" check_replaced
