#!/usr/bin/env bash
# bosun in an image that is not ours (issue 14, DESIGN.md section 8): an image built FROM
# scratch holding only busybox (Debian's busybox-static) and the three binaries copied from
# bosun:local, the way README "Use bosun in your own image" tells a user to. No glibc, no
# bash, users only in /etc/passwd and /etc/group. Checks:
#   1. PID 1 is the supervisor; `ping` answers
#   2. an action with arguments runs in /bin/sh (no bash) with exit=0, its output in the log
#   3. run_as and socket_group by name, from /etc/passwd and /etc/group (no NSS): the main
#      process runs as that user, the request socket belongs to that group
#   4. the health check (`supervisor status`) makes the container healthy
#   5. `docker stop` ends it quickly with 143 (TERM forwarded, the main process's 128+15)
# BOSUN_IMAGE (bosun:local): the image the binaries are copied from; built from this
# checkout first when it is missing. Cleans up on any exit. Every wait polls for
# an event with a deadline.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
START=$SECONDS
SRC=${BOSUN_IMAGE:-bosun:local}   # where the binaries come from
IMAGE=bosun-busybox-e2e:local
NAME=bosun-busybox-e2e
E2E_TAG=busybox
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

BB=$(command -v busybox || true)
[ -n "$BB" ] || { log "busybox is not installed (apt-get install busybox-static)"; exit 1; }

CTX=$(mktemp -d)
RUN=$(mktemp -d)
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1
    docker rmi -f "$IMAGE" >/dev/null 2>&1
    rm -rf "$CTX" "$RUN"
}
trap cleanup EXIT

if ! docker image inspect "$SRC" >/dev/null 2>&1; then
    log "building $SRC"
    docker build -q -t "$SRC" . >/dev/null || { log "docker build failed"; exit 1; }
fi

cp "$BB" "$CTX/busybox"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$CTX/passwd"
printf 'root:x:0:\napp:x:1000:\nops:x:2000:\n' >"$CTX/group"
cat >"$CTX/docker-callbacks.sh" <<'EOF'
# POSIX sh: this image has no bash.
CB_greet() { echo "hello $1 and $2 from ${BOSUN_USER:-nobody}"; }
EOF
# The lines README "Use bosun in your own image" gives, on a busybox base.
cat >"$CTX/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY passwd group /etc/
RUN mkdir -p /run /tmp /home/app /usr/local/bin && chown app:app /home/app
COPY --from=BOSUN_IMAGE /usr/local/sbin/supervisor /usr/local/sbin/listener /usr/local/sbin/scheduler /usr/local/sbin/
COPY docker-callbacks.sh /usr/local/bin/
ENV PATH=/usr/local/sbin:/usr/local/bin:/bin
HEALTHCHECK --interval=1s --timeout=5s --retries=3 CMD ["/usr/local/sbin/supervisor", "status"]
STOPSIGNAL SIGTERM
CMD ["/usr/local/sbin/supervisor", "--", "sleep", "100000"]
EOF
sed -i "s|BOSUN_IMAGE|$SRC|" "$CTX/Dockerfile"
log "building $IMAGE (FROM scratch: busybox + bosun's binaries from $SRC)"
docker build -q -t "$IMAGE" "$CTX" >/dev/null || { log "docker build of the busybox image failed"; exit 1; }

docker run -d --name "$NAME" -v "$RUN:/run" \
    -e BOSUN_SERVICE=app -e BOSUN_RUN_AS=app -e BOSUN_SOCKET_GROUP=ops \
    -e BOSUN_STATE_DIR=/tmp/bosun "$IMAGE" >/dev/null || { log "docker run failed"; exit 1; }
SOCK=$RUN/app-request.sock
request() { printf '%s\n' "$1" | timeout 30 socat -t 20 - "UNIX-CONNECT:$SOCK"; }

check_pid1() {
    wait_until 20 "the request socket" test -S "$SOCK" || return 1
    local comm r
    comm=$(docker exec "$NAME" cat /proc/1/comm) || return 1
    log "  PID 1: $comm"
    [ "$comm" = supervisor ] || fail "PID 1 is $comm" || return 1
    r=$(request ping) || return 1
    [ "$r" = pong ] || fail "ping answered '$r'"
}
check "PID 1 is the supervisor; ping answers" check_pid1

check_action() {
    local r
    r=$(request 'greet a b') || return 1
    log "  reply: $(tr '\n' '|' <<<"$r")"
    grep -qx 'accepted [0-9]* greet' <<<"$r" || fail "no accepted line" || return 1
    grep -qE '^done [0-9]+ exit=0 ' <<<"$r" || fail "no done exit=0" || return 1
    wait_until 10 "the action's output in the log" sh -c "docker logs $NAME 2>&1 | grep -q 'hello a and b from nobody'" ||
        fail "no output line: $(docker logs "$NAME" 2>&1 | tail -n 5)" || return 1
    r=$(request 'history greet') || return 1
    log "  history greet: $r"
    grep -q ' greet user=- exit=0 ' <<<"$r" || fail "not in the journal"
}
check "an action with arguments runs in /bin/sh with exit=0; in the journal" check_action

check_names() {
    local uid gid
    uid=$(docker exec "$NAME" sh -c 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = sleep ] && awk "/^Uid:/{print \$2}" $p/status; done' | head -n 1)
    log "  main process uid: $uid"
    [ "$uid" = 1000 ] || fail "run_as=app gave uid '$uid'" || return 1
    gid=$(stat -c %g "$SOCK")
    log "  request socket gid: $gid"
    [ "$gid" = 2000 ] || fail "socket_group=ops gave gid '$gid'"
}
check "run_as and socket_group by name, from /etc/passwd and /etc/group" check_names

healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$NAME")" = healthy ]; }
check "the health check makes it healthy" wait_until 30 "healthy" healthy

check_stop() {
    local t0 t1 code
    t0=$(date +%s%N)
    docker stop -t 10 "$NAME" >/dev/null || return 1
    t1=$(date +%s%N)
    code=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
    log "  docker stop: exit $code after $(((t1 - t0) / 1000000)) ms"
    [ "$code" = 143 ] || fail "exit code $code, not 143" || return 1
    (((t1 - t0) / 1000000 < 5000)) || fail "stop took more than 5 s"
}
check "docker stop: 143, quickly" check_stop

log "busybox: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
