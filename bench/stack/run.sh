#!/usr/bin/env bash
# What the stack costs, and what bosun costs in it. Writes bench/stack/RESULTS.md.
#
#   image size                 docker image inspect
#   up -> all healthy          from `up -d` (image already built) until Docker reports every
#                              container healthy; and until the first page is served
#   idle memory per container  after the first page and a settle period, docker stats
#                              (cgroup usage less page cache) and the PSS of bosun's own
#                              processes (supervisor, listener, scheduler) in each container
#
# Three variants of the same stack, same image, same personalities:
#   bosun     docker-compose.yaml as shipped: supervisor PID 1 + listener in every container,
#             the scheduler daemon in its own
#   ondemand  + bench/stack/docker-compose.ondemand.yaml: the same, php-fpm started on the
#             first connection and stopped after 10 s idle
#   tini      + bench/stack/docker-compose.tini.yaml: Docker's tini (init: true) as PID 1, bash
#           sources the setup and execs the main process; no listener, no request sockets,
#           a `sleep infinity` in place of the scheduler
#
# Env: COMPOSE ("docker-compose"), RUNS (3, per variant), SETTLE (20, seconds of idle
#      before memory is read), BOSUN_HTTP_PORT (18080).
set -euo pipefail

cd "$(dirname "$0")/../.."
read -r -a COMPOSE_CMD <<<"${COMPOSE:-docker-compose}"
RUNS=${RUNS:-3}
SETTLE=${SETTLE:-20}
export BOSUN_HTTP_PORT=${BOSUN_HTTP_PORT:-18080}
SERVICES=(mysql php nginx scheduler)
OUT=bench/stack/RESULTS.md
WORK=$(mktemp -d /tmp/bosun-bench.XXXXXX)

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# dc VARIANT ARGS...: compose for one variant, its own project and data directory.
dc() {
    local v=$1
    shift
    local files=(-f docker-compose.yaml)
    [ "$v" = bosun ] || files+=(-f "bench/stack/docker-compose.$v.yaml")
    COMPOSE_PROJECT_NAME=bosunbench$v BOSUN_DATA=$WORK/data-$v "${COMPOSE_CMD[@]}" "${files[@]}" "$@"
}

CURRENT=
cleanup() {
    [ -n "$CURRENT" ] && dc "$CURRENT" down -v >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_until() { # SECONDS WHAT CMD...
    local end=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { log "timed out waiting for $what"; return 1; }
        sleep 0.2
    done
}

all_healthy() {
    local v=$1 s id
    for s in "${SERVICES[@]}"; do
        id=$(dc "$v" ps -q "$s") && [ -n "$id" ] || return 1
        [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] || return 1
    done
}
page_served() { curl -fsS --max-time 2 "http://127.0.0.1:$BOSUN_HTTP_PORT/" | grep -q 'id="visits"'; }

# mem_mib CONTAINER: docker stats' memory usage, in MiB.
mem_mib() {
    docker stats --no-stream --format '{{.MemUsage}}' "$1" | awk '{
        v = $1; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
        f = (u == "GiB") ? 1024 : (u == "MiB") ? 1 : (u == "KiB") ? 1 / 1024 : 1 / 1048576
        printf "%.1f", v * f }'
}
# bosun_pss_kib CONTAINER FIELD: the sum of smaps_rollup's FIELD (Pss, Pss_Anon) over the
# supervisor, listener and scheduler processes, in KiB.
bosun_pss_kib() {
    docker exec -e FIELD="$2" "$1" bash -c '
        t=0
        for p in /proc/[0-9]*; do
            c=$(tr "\0" " " <"$p/cmdline" 2>/dev/null) || continue
            case $c in /usr/local/sbin/supervisor*|/usr/local/sbin/listener*|/usr/local/sbin/scheduler*|listener*|scheduler*) ;; *) continue ;; esac
            k=$(awk -v f="$FIELD:" "\$1 == f { print \$2 }" "$p/smaps_rollup" 2>/dev/null) || continue
            t=$((t + ${k:-0}))
        done
        echo $t'
}
nprocs() { docker exec "$1" bash -c 'n=0; for p in /proc/[0-9]*; do [ -r "$p/cmdline" ] && n=$((n+1)); done; echo $((n - 1))'; }

command -v docker >/dev/null && docker info >/dev/null 2>&1 || scripts/docker-engine
if ! docker image inspect debian:trixie-slim >/dev/null 2>&1 || ! docker image inspect rust:1-slim-trixie >/dev/null 2>&1; then
    scripts/offline-images
fi
log "building the image"
dc bosun build >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; exit 1; }
IMAGE=bosun:${BOSUN_TAG:-local}
SIZE_MB=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f", $1 / 1e6 }')
BIN_KB=$(docker run --rm --entrypoint bash "$IMAGE" -c 'du -ck /usr/local/sbin/supervisor /usr/local/sbin/listener /usr/local/sbin/scheduler | tail -n 1 | cut -f1')
log "image $IMAGE: $SIZE_MB MB (bosun's binaries: $BIN_KB KiB)"

declare -A HEALTHY PAGE MEM PSS ANON PROCS
VARIANTS=(bosun ondemand tini)
for v in "${VARIANTS[@]}"; do
    for ((r = 1; r <= RUNS; r++)); do
        mkdir -p "$WORK/data-$v"
        CURRENT=$v
        t0=$(now)
        dc "$v" up -d >/dev/null 2>&1
        wait_until 120 "the first page ($v)" page_served
        page=$(elapsed "$t0")
        wait_until 120 "all healthy ($v)" all_healthy "$v"
        healthy=$(elapsed "$t0")
        log "$v run $r: first page after ${page}s, all healthy after ${healthy}s"
        HEALTHY[$v]+="$healthy "
        PAGE[$v]+="$page "
        # Idle: nothing more happens; settle, then read memory (a measurement, not a wait).
        sleep "$SETTLE"
        for s in "${SERVICES[@]}"; do
            id=$(dc "$v" ps -q "$s")
            MEM[$v.$s]+="$(mem_mib "$id") "
            PSS[$v.$s]+="$(bosun_pss_kib "$id" Pss) "
            ANON[$v.$s]+="$(bosun_pss_kib "$id" Pss_Anon) "
            PROCS[$v.$s]=$(nprocs "$id")
        done
        dc "$v" down -v >/dev/null 2>&1
        CURRENT=
        rm -rf "$WORK/data-$v"
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
sum() { awk '{ s += $1 } END { printf "%.1f", s }'; }
kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

for k in "${!MEM[@]}"; do
    MEM[$k]=$(median <<<"${MEM[$k]}")
    PSS[$k]=$(median <<<"${PSS[$k]}")
    ANON[$k]=$(median <<<"${ANON[$k]}")
done

{
    echo "# Stack benchmark"
    echo
    echo "Command: \`bench/stack/run.sh\` (RUNS=$RUNS, SETTLE=${SETTLE}s, ${COMPOSE_CMD[*]}), $(date -u +%Y-%m-%d), $(nproc) cores,"
    echo "Docker $(docker version -f '{{.Server.Version}}'), $(uname -r)."
    echo
    echo "## Image"
    echo
    echo "| image | size | bosun's three binaries |"
    echo "|---|---|---|"
    echo "| \`$IMAGE\` | $SIZE_MB MB | $BIN_KB KiB |"
    echo
    echo "## Start: \`up -d\` (image built, empty volumes, so MariaDB initialises and imports) until ..."
    echo
    echo "Medians of $RUNS runs; healthchecks every 5 s, and php waits for mysql, nginx for php"
    echo "(\`service_healthy\`), so \"all healthy\" is paced by the healthcheck interval."
    echo
    echo "| variant | first page served | all four healthy | runs (healthy) |"
    echo "|---|---|---|---|"
    for v in "${VARIANTS[@]}"; do
        echo "| $v | $(median <<<"${PAGE[$v]}") s | $(median <<<"${HEALTHY[$v]}") s | ${HEALTHY[$v]% } |"
    done
    echo
    echo "## Idle memory per container"
    echo
    echo "Medians of $RUNS runs, each read after the first page and ${SETTLE}s idle. \"memory\" is"
    echo "\`docker stats\` (cgroup usage less page cache), with the container's process count in"
    echo "brackets. \"bosun PSS\" is the proportional set size of supervisor + listener (+ the"
    echo "scheduler daemon) in that container, all of it and its anonymous part (the rest is the"
    echo "binaries' text, which docker stats counts as cache). \"bosun - tini\" is what bosun"
    echo "costs: the bosun column less the tini column."
    echo
    echo "| container | bosun | bosun PSS (anon) | bosun, php on demand | tini | bosun - tini |"
    echo "|---|---|---|---|---|---|"
    for s in "${SERVICES[@]}"; do
        d=$(awk -v a="${MEM[bosun.$s]}" -v b="${MEM[tini.$s]}" 'BEGIN { printf "%+.1f", a - b }')
        echo "| $s | ${MEM[bosun.$s]} MiB (${PROCS[bosun.$s]}) | $(kib2mib "${PSS[bosun.$s]}") ($(kib2mib "${ANON[bosun.$s]}")) MiB | ${MEM[ondemand.$s]} MiB (${PROCS[ondemand.$s]}) | ${MEM[tini.$s]} MiB (${PROCS[tini.$s]}) | $d MiB |"
    done
    declare -A T
    for v in "${VARIANTS[@]}"; do
        T[$v]=$(for s in "${SERVICES[@]}"; do echo "${MEM[$v.$s]}"; done | sum)
    done
    tp=$(for s in "${SERVICES[@]}"; do echo "${PSS[bosun.$s]}"; done | awk '{ s += $1 } END { print s }')
    ta=$(for s in "${SERVICES[@]}"; do echo "${ANON[bosun.$s]}"; done | awk '{ s += $1 } END { print s }')
    echo "| **stack** | **${T[bosun]} MiB** | **$(kib2mib "$tp") ($(kib2mib "$ta")) MiB** | **${T[ondemand]} MiB** | **${T[tini]} MiB** | **$(awk -v a="${T[bosun]}" -v b="${T[tini]}" 'BEGIN { printf "%+.1f", a - b }') MiB** |"
    echo
    echo "MariaDB's and php-fpm's own numbers move by a MiB or two between runs (buffer pool,"
    echo "php-fpm's on-demand workers, which exit after 60 s idle); bosun PSS is the steady part."
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
