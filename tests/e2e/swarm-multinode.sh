#!/usr/bin/env bash
# End-to-end test of the stack on a real two-node Docker Swarm, as README.md "Multi-node
# Swarm" designs it (deploy/swarm-multinode/docker-compose.multinode.yaml): two Docker
# engines, each in a container of its own (bosun-mn-node1, bosun-mn-node2) on a user network
# (bosun-mn-net), form one swarm; each node has its own /run and volumes, as real nodes do.
# The recipe: ../shared/OFFLINE-DOCKER.md, "A multi-node Docker Swarm on one machine".
#
#   1. the nodes: made, the image loaded into each (docker save | docker load), one swarm
#      (node1 the manager, labelled bosun.db=true, node2 a worker)
#   2. deployed: every task running and healthy on both nodes (mysql, scheduler-db,
#      mysqld-bridge on node1; mysqld-relay on node2; php replicas, a wiki, nginx and the
#      scheduler on each), each php replica is the instance of its task's slot and answers
#      on its own socket
#   2b. a forum page from each node's nginx (its own php replicas), counted in the one
#      database: node2's php through mysqld-relay and mysqld-bridge
#   3. `scheduler send php@each` in each node's scheduler: every php replica of every node
#      runs the action once (counted by the callback's own marks, per node)
#   4. a scheduled minute: each node's `php@each` line runs once in each of its node's
#      replicas, and the backup line (scheduler-db only) runs once in the whole swarm
#   5. node2's engine stopped and started again: its php tasks wait for it (not moved),
#      come back on it under the same slots, reclaim their instance sockets, and
#      `php@each` from node2's scheduler reaches each of them once
#
# Leaves nothing behind, also on failure or Ctrl-C: the node containers (with every task and
# swarm state inside them), the network, the temporary directory (the engines' storage and
# volumes), and the node image when this run built it. The host engine's own swarm state is never touched: every
# swarm command goes to a node's engine. Every wait polls with a deadline.
#
# Env: BOSUN_TAG (local): the image bosun:$BOSUN_TAG, built from this checkout unless
#      E2E_BUILD=0; E2E_PER_NODE (2): php replicas per node; E2E_KEEP=1 to leave the nodes
#      up (the script prints how to reach them).
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$SECONDS

export BOSUN_TAG=${BOSUN_TAG:-local}
# Published on each node's own address (host mode), so the usual ports: nothing on the host.
export BOSUN_HTTP_PORT=8080 BOSUN_STATUS_PORT=8081
PREFIX=bosun-mn
NET=$PREFIX-net
NODE_IMAGE=$PREFIX-node:local
STACK=$PREFIX
NODES=(1 2)
# Inside the nodes: each node's own data directory (run/, sockets/, backup/), at one path.
NODE_DATA=/srv/$PREFIX/data
PER_NODE=${E2E_PER_NODE:-2}
REPLICAS=$((PER_NODE * 2))
STACK_FILES=(-c docker-compose.yaml -c deploy/swarm-multinode/docker-compose.multinode.yaml)

E2E_TAG=multinode
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

# nd N ARGS...: the docker CLI against node N's engine (its socket, bind-mounted out).
nd() {
    local n=$1
    shift
    DOCKER_HOST=unix://$T/node$n/run/docker.sock docker "$@"
}
node_up() { nd "$1" info >/dev/null 2>&1; }
node_ip() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$PREFIX-node$1"; }

# cids N SERVICE: the running containers of the stack's SERVICE on node N.
cids() { nd "$1" ps -q -f "label=com.docker.swarm.service.name=${STACK}_$2" -f status=running; }
# slots N: the slots of the php tasks running on node N, sorted, one a line.
slots() {
    local c
    for c in $(cids "$1" php); do
        nd "$1" inspect -f '{{index .Config.Labels "com.docker.swarm.task.name"}}' "$c" | cut -d. -f2
    done | sort -n
}
# healthy N SERVICE COUNT: COUNT containers of SERVICE run on node N, all healthy.
healthy() {
    local c st n=0
    for c in $(cids "$1" "$2"); do
        st=$(nd "$1" inspect -f '{{.State.Health.Status}}' "$c") || return 1
        [ "$st" = healthy ] || return 1
        n=$((n + 1))
    done
    ((n == $3))
}
# expected N: what runs on node N, SERVICE:COUNT a line; node1 is the db node.
expected() {
    case $1 in
        1) printf '%s\n' mysql:1 scheduler-db:1 mysqld-bridge:1 ;;
        *) printf '%s\n' mysqld-relay:1 ;;
    esac
    printf '%s\n' "php:$PER_NODE" wiki:1 nginx:1 scheduler:1
}
node_healthy() {
    local e want list
    mapfile -t list < <(expected "$1")
    for e in "${list[@]}"; do
        healthy "$1" "${e%%:*}" "${e##*:}" || return 1
    done
    # and nothing else of the stack's runs there
    want=0
    for e in "${list[@]}"; do want=$((want + ${e##*:})); done
    [ "$(nd "$1" ps -q -f "label=com.docker.stack.namespace=$STACK" -f status=running | wc -l)" -eq "$want" ]
}
all_nodes_healthy() { node_healthy 1 && node_healthy 2; }

# sched N ARGS...: run ARGS in node N's scheduler container.
sched() {
    local n=$1 c
    shift
    c=$(cids "$n" scheduler | head -n 1)
    [ -n "$c" ] || return 1
    nd "$n" exec "$c" "$@"
}
# marks N USER: the e2e-mark lines of USER that node N's php replicas wrote ("<user>
# instance=<n> ..."), from the php-logs volume the node's replicas share.
marks() {
    awk -v u="$2" '$1 == u' "$T/node$1/lib/volumes/${STACK}_php-logs/_data/e2e-marks" 2>/dev/null
}
# instances_of N USER: the instances in USER's marks on node N, sorted, one a line.
instances_of() { marks "$1" "$2" | sed -n 's/.* instance=\([0-9]*\) .*/\1/p' | sort -n; }
# once_each N USER: the marks of USER on node N are exactly one per php replica there.
once_each() { [ "$(instances_of "$1" "$2")" = "$(slots "$1")" ]; }

cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM
    if ((FAILED > 0 || rc != 0)) && [ -n "${DEPLOYED:-}" ]; then
        log "tasks of the stack:"
        nd 1 stack ps "$STACK" --no-trunc --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' 2>&1 |
            sed 's/^/    /'
        local s
        for s in php scheduler scheduler-db; do
            log "logs of $s (last 30 lines):"
            nd 1 service logs --no-task-ids --tail 30 "${STACK}_$s" 2>&1 | sed 's/^/    /'
        done
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        log "E2E_KEEP=1: leaving the nodes up: DOCKER_HOST=unix://$T/node1/run/docker.sock docker node ls"
    else
        local n
        for n in "${NODES[@]}"; do docker rm -f -v "$PREFIX-node$n" >/dev/null 2>&1; done
        docker network rm "$NET" >/dev/null 2>&1
        [ -n "${BUILT_NODE_IMAGE:-}" ] && docker rmi "$NODE_IMAGE" >/dev/null 2>&1
        [ -n "${T:-}" ] && rm -rf "$T"
        if [ -n "$(docker ps -aq -f "name=^$PREFIX-node")" ] ||
            docker network inspect "$NET" >/dev/null 2>&1; then
            log "left behind: $(docker ps -a --format '{{.Names}}' -f "name=^$PREFIX-node" | tr '\n' ' ')"
            ((rc == 0)) && rc=1
        else
            log "removed the nodes, their network and $T"
        fi
    fi
    finish "swarm multi-node e2e" "$rc"
}

# quiet CMD...: run CMD, its output shown only when it fails (the legacy builder's
# deprecation notice on every build otherwise).
quiet() {
    local out
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

# ---- preparation ------------------------------------------------------------------------
need_engine_and_tools
if [ -n "$(docker ps -aq -f "name=^$PREFIX-node")" ] || docker network inspect "$NET" >/dev/null 2>&1; then
    log "$PREFIX-node* or $NET exist already (another run?): remove them first"
    exit 1
fi
T=$(mktemp -d "/tmp/$PREFIX.XXXXXX") || exit 1
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${E2E_BUILD:-1}" != 0 ]; then
    log "building the image (docker build -t bosun:$BOSUN_TAG .)"
    t=$SECONDS
    quiet docker build -q -t "bosun:$BOSUN_TAG" . || exit 1
    log "built in $((SECONDS - t))s"
fi
docker image inspect "bosun:$BOSUN_TAG" >/dev/null 2>&1 || {
    log "no image bosun:$BOSUN_TAG"
    exit 1
}
# A Docker engine in a container: Debian's docker.io on the image's base (the storage driver
# is chosen where the nodes start).
if ! docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
    log "building the node image $NODE_IMAGE (Debian's docker.io)"
    quiet docker build -q -t "$NODE_IMAGE" - <<'EOF' || exit 1
FROM debian:trixie-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io docker-cli iptables ca-certificates procps >/dev/null && rm -rf /var/lib/apt/lists/*
CMD ["dockerd", "--host=unix:///var/run/docker.sock", "--storage-driver=vfs"]
EOF
    BUILT_NODE_IMAGE=1
fi
if ! out=$(docker stack config "${STACK_FILES[@]}" 2>&1 >/dev/null); then
    log "this docker CLI ($(docker version -f '{{.Client.Version}}')) cannot read the stack files: ${out%%$'\n'*}"
    exit 1
fi

# The test's own files, mounted into both nodes at the same path: the schedules (written
# in check 4) and php's callbacks with one more action, e2e-mark, which appends
# "<user> instance=<n> host=<container> id=<run id>" to the node's php-logs volume.
mkdir -p "$T/conf/node" "$T/conf/db" "$T/conf/php" || exit 1
printf '# empty until check 4\n' >"$T/conf/node/schedule.cron"
printf '# empty until check 4\n' >"$T/conf/db/schedule.cron"
cat >"$T/conf/php/docker-callbacks.sh" <<'EOF'
# shellcheck shell=bash
source /usr/local/bin/docker-callbacks.sh
CB_e2e_mark() {
    printf '%s instance=%s host=%s id=%s\n' "${BOSUN_USER:--}" "${BOSUN_INSTANCE:-?}" \
        "$HOSTNAME" "$BOSUN_REQUEST_ID" >>/var/log/php/e2e-marks
}
EOF
cat >"$T/stack.test.yaml" <<EOF
services:
  php:
    environment:
      BOSUN_CALLBACKS: /e2e/docker-callbacks.sh
    volumes:
      - $T/conf/php:/e2e:ro
  scheduler:
    volumes:
      - $T/conf/node:/usr/local/schedule:ro
  scheduler-db:
    volumes:
      - $T/conf/db:/usr/local/schedule:ro
EOF
STACK_FILES+=(-c "$T/stack.test.yaml")

# ---- 1. two nodes, one swarm ------------------------------------------------------------
make_nodes() {
    local n t=$SECONDS
    docker network create "$NET" >/dev/null || return 1
    for n in "${NODES[@]}"; do
        mkdir -p "$T/node$n/run" "$T/node$n/lib"
        # As OFFLINE-DOCKER.md, and SYS_PTRACE: runc's `exec` joins a container's namespaces
        # through /proc/PID/ns, which needs it when PID 1 there is not dumpable (the
        # supervisor after setfsgid, the held socket's group): the health checks are execs.
        # The engine's /var/lib/docker on the host's own file system (not the container's
        # overlay), so that it runs overlay2: vfs copied the whole image for every container
        # and made a deploy take minutes. The checkout's service/ and deploy/ (the
        # personalities, the stack's schedules) and the test's files, at the same paths: the
        # bind sources of the stack.
        docker run -d --name "$PREFIX-node$n" --hostname "$PREFIX-node$n" --network "$NET" \
            -e DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1 \
            --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE \
            --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
            -v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns=host \
            -v "$T/node$n/run:/var/run/$PREFIX" -v "$T/node$n/lib:/var/lib/docker" \
            -v "$ROOT/service:$ROOT/service:ro" -v "$ROOT/deploy:$ROOT/deploy:ro" \
            -v "$T/conf:$T/conf:ro" \
            "$NODE_IMAGE" dockerd --host=unix:///var/run/docker.sock \
            --host="unix:///var/run/$PREFIX/docker.sock" --storage-driver=overlay2 >/dev/null || return 1
    done
    for n in "${NODES[@]}"; do
        wait_until 60 "node$n's engine" node_up "$n" || return 1
        # Swarm creates no bind source: the data directories of every node.
        docker exec "$PREFIX-node$n" mkdir -p "$NODE_DATA"/run/{mysql,php,wiki,nginx} \
            "$NODE_DATA"/sockets/{mysqld,forum,wiki} "$NODE_DATA/backup" || return 1
    done
    log "  two engines up in $((SECONDS - t))s ($(nd 1 version -f '{{.Server.Version}}'))"
    t=$SECONDS
    # Loaded in parallel: nothing can be pulled, and each node has its own image store.
    local pids=()
    for n in "${NODES[@]}"; do
        docker save "bosun:$BOSUN_TAG" | nd "$n" load -q >/dev/null &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || fail "docker load failed" || return 1; done
    log "  bosun:$BOSUN_TAG loaded into both in $((SECONDS - t))s"
    nd 1 swarm init --advertise-addr "$(node_ip 1)" >/dev/null || return 1
    nd 2 swarm join --token "$(nd 1 swarm join-token -q worker)" "$(node_ip 1):2377" >/dev/null || return 1
    nd 1 node update --label-add bosun.db=true "$PREFIX-node1" >/dev/null || return 1
    nd 1 node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}' | while IFS= read -r l; do log "  $l"; done
    [ "$(nd 1 node ls -q -f role=worker | wc -l)" -eq 1 ]
}
check "two engines in containers form one swarm (node1 manager and db node, node2 worker)" make_nodes
if ((FAILED > 0)); then exit 1; fi

# ---- 2. deployed and healthy on both nodes ----------------------------------------------
check_deploy() {
    local t=$SECONDS out rc n s
    out=$(BOSUN_DATA=$NODE_DATA BOSUN_PHP_REPLICAS=$REPLICAS BOSUN_PHP_MAX_PER_NODE=$PER_NODE \
        nd 1 stack deploy "${STACK_FILES[@]}" "$STACK" 2>&1)
    rc=$?
    DEPLOYED=1
    ((rc == 0)) || { log "  $out"; return 1; }
    # A minute or two on two shared cores; 10 minutes when the machine is busy.
    wait_until 600 "every task healthy on both nodes" all_nodes_healthy || return 1
    log "  all healthy $((SECONDS - t))s after deploy"
    for n in "${NODES[@]}"; do
        log "  node$n: $(nd "$n" ps -f "label=com.docker.stack.namespace=$STACK" --format '{{.Label "com.docker.swarm.service.name"}}' | sed "s/^${STACK}_//" | sort | tr '\n' ' ')"
    done
    # Each replica is its slot's instance, on its own socket, on its own node.
    for n in "${NODES[@]}"; do
        for s in $(slots "$n"); do
            out=$(sched "$n" scheduler send "php.$s" status 2>&1)
            grep -q "instance=$s\b" <<<"$out" ||
                fail "node$n: php.$s status says: $(tr '\n' '|' <<<"$out")" || return 1
        done
        log "  node$n: php instances $(slots "$n" | tr '\n' ' ')each answer on php.<n>-request.sock"
    done
    if [ "$(slots 1 | wc -l)" -ne "$PER_NODE" ] || [ "$(slots 2 | wc -l)" -ne "$PER_NODE" ]; then
        fail "php replicas per node: $(slots 1 | wc -l) and $(slots 2 | wc -l)"
    fi
}
check "stack deployed: every task healthy on both nodes, php instance = task slot" check_deploy
if ((FAILED > 0)); then
    log "the stack did not come up; no point in going on"
    exit 1
fi

# ---- 2b. the forum from each node ------------------------------------------------------------
visits() { curl -fsS --max-time 20 "http://$(node_ip "$1"):$BOSUN_HTTP_PORT/" | sed -n 's/.*id="visits">\([0-9]*\)<.*/\1/p'; }
page_up() { [ -n "$(visits "$1")" ]; }
check_pages() {
    local n v last=0 _
    for _ in 1 2; do
        for n in "${NODES[@]}"; do
            wait_until 60 "a forum page from node$n" page_up "$n" || return 1
            v=$(visits "$n")
            log "  node$n's nginx: forum visits $v"
            ((v > last)) || fail "the counter did not go up ($last, then $v): not one database" || return 1
            last=$v
        done
    done
}
check "a forum page from each node's nginx and php, counted in the one database" check_pages

# ---- 3. php@each from each node's scheduler ---------------------------------------------
check_each() {
    local n out rc
    for n in "${NODES[@]}"; do
        out=$(sched "$n" scheduler send --user "$1" php@each e2e-mark 2>&1)
        rc=$?
        log "  node$n: scheduler send --user $1 php@each e2e-mark: exit $rc: $(tr '\n' '|' <<<"$out")"
        ((rc == 0)) || return 1
    done
    for n in "${NODES[@]}"; do
        wait_until 30 "node$n's marks of $1, once per replica" once_each "$n" "$1" ||
            fail "node$n: replicas $(slots "$n" | tr '\n' ' '); marks of $1: $(instances_of "$n" "$1" | tr '\n' ' ')" ||
            return 1
        log "  node$n: $1 ran once in each of instances $(instances_of "$n" "$1" | tr '\n' ' ')"
    done
}
check "scheduler send php@each on each node: once in every replica of every node" check_each send

# ---- 4. a scheduled minute: per node and once in the swarm ------------------------------
backups() { docker exec "$PREFIX-node$1" sh -c "ls $NODE_DATA/backup/ 2>/dev/null" | grep -c '^forum-.*\.sql\.gz$'; }
backup_runs() {
    nd 1 exec "$(cids 1 scheduler-db)" scheduler send mysql history nightly-backup 2>/dev/null |
        grep -c ' nightly-backup user=forum '
}
fired() {
    once_each 1 sched && once_each 2 sched && [ "$(backup_runs)" -ge 1 ] &&
        nd 1 exec "$(cids 1 scheduler-db)" scheduler status /usr/local/schedule/schedule.cron 2>/dev/null |
        grep -q ' result=ok '
}
past() { [ "$(date +%s)" -ge "$1" ]; }
check_scheduled() {
    local at due hm before n
    before=$(backups 1)
    # The first whole minute at least 40 s away: time for both schedulers to read the files.
    at=$(( ($(date +%s) + 40 + 59) / 60 * 60 ))
    due=$(date -u -d "@$at" +%FT%TZ)
    hm=$(date -u -d "@$at" '+%-M %-H')
    # Written by rename into the watched directories, as an editor saves.
    printf 'CRON_TZ=UTC\n%s * * *  sched  php@each  e2e-mark\n' "$hm" >"$T/conf/node/.new" &&
        mv "$T/conf/node/.new" "$T/conf/node/schedule.cron" || return 1
    printf 'CRON_TZ=UTC\n%s * * *  forum  mysql  nightly-backup\n' "$hm" >"$T/conf/db/.new" &&
        mv "$T/conf/db/.new" "$T/conf/db/schedule.cron" || return 1
    log "  node schedule: '$hm * * * sched php@each e2e-mark'; scheduler-db: '$hm * * * forum mysql nightly-backup' (due $due)"
    wait_until $((at - $(date +%s) + 120)) "the fire at $due to run everywhere" fired || {
        for n in "${NODES[@]}"; do
            log "  node$n: scheduler status: $(sched "$n" scheduler status /usr/local/schedule/schedule.cron 2>&1 | tr '\n' '|')"
        done
        return 1
    }
    # A minute on: nothing ran twice (a second fire, a second scheduler).
    wait_until 90 "a minute after the fire" past $((at + 60))
    for n in "${NODES[@]}"; do
        once_each "$n" sched || fail "node$n: marks of sched: $(instances_of "$n" sched | tr '\n' ' ')" || return 1
        log "  node$n: the scheduled php@each ran once in each of instances $(instances_of "$n" sched | tr '\n' ' ')"
        log "  node$n's scheduler: $(sched "$n" scheduler status /usr/local/schedule/schedule.cron 2>&1 | tr '\n' '|')"
    done
    [ "$(backup_runs)" -eq 1 ] || fail "mysql ran nightly-backup for forum $(backup_runs) times" || return 1
    [ "$(backups 1)" -eq $((before + 1)) ] || fail "node1: $(backups 1) forum dumps, $before before" || return 1
    [ "$(backups 2)" -eq 0 ] || fail "node2 has $(backups 2) forum dumps" || return 1
    log "  the backup: once in mysql's journal, one new dump on node1, none on node2"
}
check "a scheduled minute: php@each once per replica on each node, the backup once in the swarm" check_scheduled

# ---- 5. node2's engine stopped and started ----------------------------------------------
node2_down() { [ "$(nd 1 node inspect -f '{{.Status.State}}' "$PREFIX-node2")" = down ]; }
node2_ready() { [ "$(nd 1 node inspect -f '{{.Status.State}}' "$PREFIX-node2")" = ready ]; }
check_restart() {
    local before after t=$SECONDS
    before=$(slots 2 | tr '\n' ' ')
    docker stop -t 30 "$PREFIX-node2" >/dev/null || return 1
    wait_until 90 "the manager to see node2 down" node2_down || return 1
    log "  node2 stopped; down for the manager $((SECONDS - t))s later"
    # Its replicas wait for it: node1 keeps its own PER_NODE, no more.
    [ "$(slots 1 | wc -l)" -eq "$PER_NODE" ] || fail "node1 runs $(slots 1 | wc -l) php replicas" || return 1
    docker start "$PREFIX-node2" >/dev/null || return 1
    wait_until 60 "node2's engine" node_up 2 || return 1
    wait_until 120 "the manager to see node2 ready" node2_ready || return 1
    wait_until 600 "every task healthy on both nodes again" all_nodes_healthy || return 1
    after=$(slots 2 | tr '\n' ' ')
    log "  node2 back, all healthy $((SECONDS - t))s after the stop; its php slots: before $before, after $after"
    [ "$before" = "$after" ] || fail "node2's slots changed" || return 1
    local s out
    for s in $after; do
        out=$(sched 2 scheduler send "php.$s" status 2>&1)
        grep -q "instance=$s\b" <<<"$out" || fail "php.$s status: $(tr '\n' '|' <<<"$out")" || return 1
    done
    out=$(sched 2 scheduler send --user after php@each e2e-mark 2>&1) ||
        fail "php@each after the restart: $(tr '\n' '|' <<<"$out")" || return 1
    wait_until 30 "node2's marks of after, once per replica" once_each 2 after ||
        fail "marks of after: $(instances_of 2 after | tr '\n' ' ')" || return 1
    log "  node2: instances $(instances_of 2 after | tr '\n' ' ')reclaimed, each ran php@each once"
}
check "node2's engine stopped and started: its tasks come back under their slots and reclaim their instances" check_restart
