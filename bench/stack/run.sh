#!/usr/bin/env bash
# What the stack costs, and what bosun costs in it. Writes bench/stack/RESULTS.md.
#
#   image size                 docker image inspect
#   up -> all healthy          from `up -d` (image already built) until Docker reports every
#                              container healthy; and until the first (forum) page is served,
#                              which under on-demand php also starts the forum's php-fpm
#   idle memory per container  after the first page and a settle period, docker stats
#                              (cgroup usage less page cache) and the PSS of bosun's own
#                              processes (supervisor, listener, scheduler) in each container
#   the wiki's first page      after the memory reading: one page of the wiki (Host:
#                              wiki.localhost), never asked for before; under on-demand php
#                              this is the cold start of its php-fpm
#
# Three variants of the same stack, same image, same personalities:
#   bosun   docker-compose.yaml as shipped: supervisor PID 1 + listener in every container,
#           the scheduler daemon in its own; php (forum) and wiki on demand (php-fpm started
#           by the first request, stopped after 20 min idle: after the first forum page the
#           forum's php-fpm runs, the wiki's has not started yet)
#   always  + bench/stack/docker-compose.always.yaml: the same with on demand turned off
#           (empty BOSUN_ON_DEMAND_LISTEN): both php-fpm run from the start, as under tini
#   tini    + bench/stack/docker-compose.tini.yaml: Docker's tini (init: true) as PID 1, bash
#           sources the setup and execs the main process; no listener, no request sockets,
#           a `sleep infinity` in place of the scheduler, both php-fpm always on
# "always" against "tini" is what bosun itself costs (same processes otherwise); "bosun"
# against "tini" is that cost less what on demand saves.
#
# Env: COMPOSE ("docker-compose"), RUNS (3, per variant), SETTLE (20, seconds of idle
#      before memory is read), BOSUN_HTTP_PORT (18080), BUILD (1; 0 uses the image
#      bosun:$BOSUN_TAG as it is, without `docker-compose build`).
set -euo pipefail

cd "$(dirname "$0")/../.."
read -r -a COMPOSE_CMD <<<"${COMPOSE:-docker-compose}"
RUNS=${RUNS:-3}
SETTLE=${SETTLE:-20}
export BOSUN_HTTP_PORT=${BOSUN_HTTP_PORT:-18080}
BUILD=${BUILD:-1}
SERVICES=(mysql php wiki nginx scheduler)
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
# page_served [HOST]: the forum's page (or HOST's) comes back with its visit counter.
page_served() { curl -fsS --max-time 2 ${1:+-H "Host: $1"} "http://127.0.0.1:$BOSUN_HTTP_PORT/" | grep -q 'id="visits"'; }
# first_wiki_page: seconds for the wiki's first page (a cold php-fpm start under on demand).
first_wiki_page() {
    local t0 page
    t0=$(now)
    if ! page=$(curl -fsS --max-time 60 -H 'Host: wiki.localhost' "http://127.0.0.1:$BOSUN_HTTP_PORT/") ||
        ! grep -q 'id="visits"' <<<"$page"; then
        log "no wiki page"
        return 1
    fi
    awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'
}

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
IMAGE=bosun:${BOSUN_TAG:-local}
if [ "$BUILD" != 0 ]; then
    log "building the image"
    dc bosun build >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; exit 1; }
else
    docker image inspect "$IMAGE" >/dev/null 2>&1 || { log "no image $IMAGE (BUILD=0)"; exit 1; }
fi
CREATED=$(docker image inspect -f '{{.Created}}' "$IMAGE" | cut -c1-16 | tr T ' ')
SIZE_MB=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f", $1 / 1e6 }')
BIN_KB=$(docker run --rm --entrypoint bash "$IMAGE" -c 'du -ck /usr/local/sbin/supervisor /usr/local/sbin/listener /usr/local/sbin/scheduler | tail -n 1 | cut -f1')
log "image $IMAGE: $SIZE_MB MB (bosun's binaries: $BIN_KB KiB)"

declare -A HEALTHY PAGE WIKI MEM PSS ANON PROCS
VARIANTS=(bosun always tini)
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
        wiki=$(first_wiki_page)
        WIKI[$v]+="$wiki "
        log "$v run $r: the wiki's first page took ${wiki}s"
        dc "$v" down -v >/dev/null 2>&1
        CURRENT=
        rm -rf "$WORK/data-$v"
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
sum() { awk '{ s += $1 } END { printf "%.1f", s }'; }
kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

declare -A MEMRAW
for k in "${!MEM[@]}"; do
    MEMRAW[$k]=${MEM[$k]% }
    MEM[$k]=$(median <<<"${MEM[$k]}")
    PSS[$k]=$(median <<<"${PSS[$k]}")
    ANON[$k]=$(median <<<"${ANON[$k]}")
done

{
    echo "# Stack benchmark"
    echo
    echo "Command: \`bench/stack/run.sh\` (RUNS=$RUNS, SETTLE=${SETTLE}s, BUILD=$BUILD, ${COMPOSE_CMD[*]}), $(date -u '+%Y-%m-%d %H:%M') UTC,"
    echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end, Docker $(docker version -f '{{.Server.Version}}'), $(uname -r)."
    echo
    echo "Variants, same image and personalities: **bosun**, \`docker-compose.yaml\` as shipped (php"
    echo "and wiki on demand); **always**, the same with on demand off for both"
    echo "(\`docker-compose.always.yaml\`: empty \`BOSUN_ON_DEMAND_LISTEN\`, php-fpm runs from the"
    echo "start); **tini**, Docker's tini as PID 1, no supervisor, listener or scheduler daemon"
    echo "(\`docker-compose.tini.yaml\`), php-fpm always on."
    echo
    echo "## Image"
    echo
    echo "| image | size | bosun's three binaries |"
    echo "|---|---|---|"
    echo "| \`$IMAGE\` (built $CREATED UTC) | $SIZE_MB MB | $BIN_KB KiB |"
    echo
    echo "## Start: \`up -d\` (image built, empty volumes, so MariaDB initialises and imports) until ..."
    echo
    echo "Medians of $RUNS runs; healthchecks every 5 s, php and wiki wait for mysql, nginx for php"
    echo "and wiki (\`service_healthy\`), so \"all healthy\" is paced by the healthcheck interval."
    echo "\"first page\" is the forum's: under bosun (on demand) that request starts the forum's"
    echo "php-fpm, and php and wiki are healthy as soon as their supervisor holds the socket."
    echo "\"wiki's first page\" is read later (after the memory, the stack idle): the wiki's php-fpm"
    echo "cold start under on demand, its first request to a running php-fpm otherwise."
    echo
    echo "| variant | first page served | all five healthy | runs (healthy) | wiki's first page |"
    echo "|---|---|---|---|---|"
    for v in "${VARIANTS[@]}"; do
        w=$(median <<<"${WIKI[$v]}" | awk '{ printf "%.0f", $1 * 1000 }')
        echo "| $v | $(median <<<"${PAGE[$v]}") s | $(median <<<"${HEALTHY[$v]}") s | ${HEALTHY[$v]% } | $w ms |"
    done
    echo
    echo "## Idle memory per container"
    echo
    echo "Medians of $RUNS runs, each read after the first (forum) page and ${SETTLE}s idle, before the"
    echo "wiki's first page. So under bosun as shipped the forum's php-fpm runs (it would stop after"
    echo "20 min idle) and the wiki's has not started: its row is an idle on-demand site. \"memory\""
    echo "is \`docker stats\` (cgroup usage less page cache), with the container's process count in"
    echo "brackets. \"bosun PSS\" is the proportional set size of supervisor + listener (+ the"
    echo "scheduler daemon) in that container under \"always\", all of it and its anonymous part (the"
    echo "rest is the binaries' text, which docker stats counts as cache)."
    echo
    echo "Two differences, like with like: **always - tini** is what bosun itself costs, the same"
    echo "processes with and without supervisor, listener and scheduler daemon; **bosun - tini** is"
    echo "the stack as shipped against the always-on stack under tini, bosun's cost less what on"
    echo "demand saves (here: the wiki's php-fpm, never asked for)."
    echo
    echo "| container | bosun (on demand) | always | tini | bosun PSS (anon) | always - tini | bosun - tini |"
    echo "|---|---|---|---|---|---|---|"
    diff_mib() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", a - b }'; }
    for s in "${SERVICES[@]}"; do
        echo "| $s | ${MEM[bosun.$s]} MiB (${PROCS[bosun.$s]}) | ${MEM[always.$s]} MiB (${PROCS[always.$s]}) | ${MEM[tini.$s]} MiB (${PROCS[tini.$s]}) | $(kib2mib "${PSS[always.$s]}") ($(kib2mib "${ANON[always.$s]}")) MiB | $(diff_mib "${MEM[always.$s]}" "${MEM[tini.$s]}") MiB | $(diff_mib "${MEM[bosun.$s]}" "${MEM[tini.$s]}") MiB |"
    done
    declare -A T TP TA
    for v in "${VARIANTS[@]}"; do
        T[$v]=$(for s in "${SERVICES[@]}"; do echo "${MEM[$v.$s]}"; done | sum)
        TP[$v]=$(for s in "${SERVICES[@]}"; do echo "${PSS[$v.$s]}"; done | awk '{ s += $1 } END { print s }')
        TA[$v]=$(for s in "${SERVICES[@]}"; do echo "${ANON[$v.$s]}"; done | awk '{ s += $1 } END { print s }')
    done
    echo "| **stack** | **${T[bosun]} MiB** | **${T[always]} MiB** | **${T[tini]} MiB** | **$(kib2mib "${TP[always]}") ($(kib2mib "${TA[always]}")) MiB** | **$(diff_mib "${T[always]}" "${T[tini]}") MiB** | **$(diff_mib "${T[bosun]}" "${T[tini]}") MiB** |"
    echo
    echo "bosun's own PSS under \"bosun\" (on demand): $(kib2mib "${TP[bosun]}") ($(kib2mib "${TA[bosun]}")) MiB for the stack. MariaDB's and"
    echo "php-fpm's own numbers move by a few MiB between runs (MariaDB's buffer pool, php-fpm's"
    echo "\`pm = ondemand\` workers, which exit after 60 s idle; see the raw figures), so a few MiB"
    echo "in one row of a difference column are theirs, not bosun's; bosun PSS is the steady part."
    echo
    echo "Raw figures, in run order:"
    echo
    for v in "${VARIANTS[@]}"; do
        m=
        for s in "${SERVICES[@]}"; do m+="; $s ${MEMRAW[$v.$s]// /, } MiB"; done
        echo "- $v: first page ${PAGE[$v]% } s; wiki's first page ${WIKI[$v]% } s$m"
    done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
