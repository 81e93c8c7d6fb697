# shellcheck shell=bash
# The forum (service `php`) in REPLICAS replicas (DESIGN.md section 10; README.md, "The
# stack"), checked from the host once they run: `--scale php=3` in tests/e2e/run.sh,
# `replicas: 3` in swarm.sh. Sourced; it uses the caller's php_cids (the running php
# containers, one id a line), cid, DATA, URL, lib.sh's check/fail/log/wait_until, and:
#   REPLICAS        how many replicas run (3)
#   REPLICAS_IDLE   the replicas' BOSUN_ON_DEMAND_IDLE in seconds, or empty: no idle check
#   REPLICAS_FRESH  1: the replicas have served no page yet (compose: just scaled), so
#                   none runs php-fpm; 0: pages came before (Swarm: sections 2-4)
#   REPLICAS_WHAT   how a killed replica comes back ("restart policy", "a new task")
#   replica_kill CONTAINER   kills one replica as a crash would
#
#   r1. every replica healthy, each with its own instance (1..REPLICAS, from `supervisor
#       status`), its own FastCGI socket and request socket; no php-fpm before a page
#       (REPLICAS_FRESH=1)
#   r2. pages through nginx spread over the replicas: every instance's own access log
#       (php-logs, shared) grows, by as many lines in all as pages were asked, and the
#       visit counter counts every page; each replica's php-fpm started on demand
#   r3. `scheduler send php@each rotate-logs`: each replica rotated its own access log once
#       (one generation more per instance); `scheduler send php rotate-logs`: one replica
#       did (one generation more in all)
#   r4. idle stop per replica: REPLICAS_IDLE s without a page, every replica's php-fpm is
#       gone and its socket held (skipped when REPLICAS_IDLE is empty)
#   r5. the replica holding php-request.sock killed (replica_kill): pages go on (nginx
#       skips its socket), `scheduler send php` still answers (another replica serves the
#       shared socket), and it comes back (REPLICAS_WHAT) with its instance number again

REPLICAS=${REPLICAS:-3}

# replica_of N: the running php container whose supervisor says instance=N.
replica_of() {
    local c
    for c in $(php_cids); do
        [ "$(instance_of "$c")" = "$1" ] && { echo "$c"; return 0; }
    done
    return 1
}
# replica_instances: the instances of the running php containers, sorted, one line.
replica_instances() {
    local c
    for c in $(php_cids); do instance_of "$c"; done | sort -n | tr '\n' ' '
}
want_instances() { seq -s ' ' 1 "$REPLICAS" | sed 's/$/ /'; }
# replicas_healthy: REPLICAS running php containers, all healthy, instances 1..REPLICAS.
replicas_healthy() {
    local c n=0
    for c in $(php_cids); do
        [ "$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null)" = healthy ] || return 1
        n=$((n + 1))
    done
    ((n == REPLICAS)) && [ "$(replica_instances)" = "$(want_instances)" ]
}
# in_php CMD...: run in any one php replica (they share /run and /var/log/php).
in_php() { docker exec "$(php_cids | head -n 1)" "$@"; }
# log_lines N: lines in instance N's current access log.
log_lines() { in_php sh -c "cat /var/log/php/forum-access.$1.log 2>/dev/null | wc -l"; }
# log_gens N: rotated generations of instance N's access log.
log_gens() { in_php sh -c "ls /var/log/php/forum-access.$1.log.* 2>/dev/null | wc -l"; }
# replica_state N: the state word of instance N's `supervisor status`.
replica_state() { docker exec "$(replica_of "$1")" /usr/local/sbin/supervisor status 2>/dev/null | awk '{print $2}'; }
replica_fpm() { docker exec "$(replica_of "$1")" pgrep php-fpm >/dev/null 2>&1; }
forum_visits() { curl -fsS --max-time 10 "$URL/" | sed -n 's/.*id="visits">\([0-9]*\)<.*/\1/p'; }
send() { docker exec "$(cid scheduler)" scheduler send "$@" 2>&1; }

check_r1() {
    local n c ok=0
    wait_until 120 "$REPLICAS php replicas healthy, instances $(want_instances)" replicas_healthy ||
        fail "php replicas: instances '$(replica_instances)'" || return 1
    for n in $(seq "$REPLICAS"); do
        c=$(replica_of "$n")
        log "  $(docker inspect -f '{{.Name}}' "$c"): $(docker exec "$c" /usr/local/sbin/supervisor status 2>&1)"
        [ -S "$DATA/sockets/forum/forum.$n.sock" ] || fail "no FastCGI socket forum.$n.sock" || ok=1
        [ -S "$DATA/run/php/php.$n-request.sock" ] || fail "no request socket php.$n-request.sock" || ok=1
        [ "${REPLICAS_FRESH:-1}" = 0 ] || { [ "$(replica_state "$n")" = idle ] && ! replica_fpm "$n"; } ||
            fail "instance $n runs php-fpm before any page" || ok=1
    done
    [ -S "$DATA/run/php/php-request.sock" ] || fail "no shared php-request.sock" || ok=1
    return $ok
}

# every_log_written: each instance's current access log has a line (asks a page first).
every_log_written() {
    local n
    curl -fsS --max-time 10 -o /dev/null "$URL/" || return 1
    for n in $(seq "$REPLICAS"); do [ "$(log_lines "$n")" -gt 0 ] || return 1; done
}

PAGES=30
check_r2() {
    local n a b code ok=0 sum=0 served=0
    declare -A before
    for n in $(seq "$REPLICAS"); do before[$n]=$(log_lines "$n"); done
    a=$(forum_visits) && [ -n "$a" ] || fail "no visit counter" || return 1
    for n in $(seq "$PAGES"); do
        code=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$URL/?page=$n")
        [ "$code" = 200 ] || fail "page $n answered $code" || ok=1
    done
    b=$(forum_visits)
    log "  visits $a, $PAGES pages, then $b"
    [ -n "$b" ] && [ "$b" -eq $((a + PAGES + 1)) ] || fail "the counter is not $((a + PAGES + 1))" || ok=1
    for n in $(seq "$REPLICAS"); do
        local d=$(($(log_lines "$n") - before[$n]))
        log "  instance $n: $d pages in forum-access.$n.log; $(docker exec "$(replica_of "$n")" /usr/local/sbin/supervisor status)"
        sum=$((sum + d))
        ((d > 0)) && served=$((served + 1))
        [ "$(replica_state "$n")" = running ] && replica_fpm "$n" ||
            fail "instance $n: no php-fpm running after the pages" || ok=1
    done
    # The pages and the two counter reads; each one line in one instance's log.
    ((sum == PAGES + 2)) || fail "$sum lines in the access logs, not $((PAGES + 2))" || ok=1
    ((served == REPLICAS)) || fail "only $served of $REPLICAS replicas served pages" || ok=1
    return $ok
}

check_r3() {
    local n out rc d total=0 ok=0
    declare -A gens
    wait_until 30 "a page in every instance's access log" every_log_written || return 1
    for n in $(seq "$REPLICAS"); do gens[$n]=$(log_gens "$n"); done
    out=$(send php@each rotate-logs)
    rc=$?
    log "  scheduler send php@each rotate-logs -> exit $rc: $(tr '\n' '|' <<<"$out")"
    ((rc == 0)) || fail "php@each rotate-logs exited $rc" || ok=1
    for n in $(seq "$REPLICAS"); do
        d=$(($(log_gens "$n") - gens[$n]))
        log "  instance $n: $d rotation(s) of forum-access.$n.log"
        ((d == 1)) || fail "instance $n rotated its log $d times, not once" || ok=1
    done
    # Once more, to any one replica: every log written again first.
    wait_until 30 "a page in every instance's access log" every_log_written || return 1
    for n in $(seq "$REPLICAS"); do gens[$n]=$(log_gens "$n"); done
    out=$(send php rotate-logs)
    rc=$?
    log "  scheduler send php rotate-logs -> exit $rc: $(tr '\n' '|' <<<"$out")"
    ((rc == 0)) && grep -qE '^done [^ ]+ exit=0' <<<"$out" || fail "php rotate-logs: $out" || ok=1
    for n in $(seq "$REPLICAS"); do
        d=$(($(log_gens "$n") - gens[$n]))
        ((d == 0)) || log "  instance $n rotated its log ($d)"
        total=$((total + d))
    done
    ((total == 1)) || fail "$total rotations in all, not 1" || ok=1
    return $ok
}

all_idle() {
    local n
    for n in $(seq "$REPLICAS"); do
        [ "$(replica_state "$n")" = idle ] && ! replica_fpm "$n" || return 1
    done
}
check_r4() {
    local t=$SECONDS n
    wait_until $((REPLICAS_IDLE + 45)) "every replica's php-fpm to stop after ${REPLICAS_IDLE}s idle" all_idle || return 1
    log "  every replica idle $((SECONDS - t))s after the last page (idle ${REPLICAS_IDLE}s)"
    for n in $(seq "$REPLICAS"); do
        [ -S "$DATA/sockets/forum/forum.$n.sock" ] || fail "forum.$n.sock is gone after php-fpm stopped" || return 1
    done
    # And a page starts one again.
    [ -n "$(forum_visits)" ] || fail "no page after the idle stop"
}

# came_back N SINCE: a running php container with instance N, started after SINCE (epoch
# seconds), and all replicas healthy again.
came_back() {
    local c started
    c=$(replica_of "$1") || return 1
    started=$(date -d "$(docker inspect -f '{{.State.StartedAt}}' "$c")" +%s) || return 1
    ((started >= $2)) && replicas_healthy
}
php_pong() { [ "$(send php ping)" = pong ]; }
check_r5() {
    local n holder c since code ok=0 i served=0
    holder=$(stat -c %i "$DATA/run/php/php-request.sock" 2>/dev/null)
    for n in $(seq "$REPLICAS"); do
        [ "$(stat -c %i "$DATA/run/php/php.$n-request.sock" 2>/dev/null)" = "$holder" ] && break
    done
    [ "$(stat -c %i "$DATA/run/php/php.$n-request.sock" 2>/dev/null)" = "$holder" ] ||
        fail "php-request.sock is no instance's socket (inode $holder)" || return 1
    c=$(replica_of "$n")
    since=$(date +%s)
    replica_kill "$c" || return 1
    log "  killed $(docker inspect -f '{{.Name}}' "$c") (instance $n, the holder of php-request.sock)"
    # The others serve meanwhile: nginx skips the dead one's socket.
    for i in $(seq 10); do
        code=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$URL/?killed=$i")
        [ "$code" = 200 ] && served=$((served + 1))
    done
    log "  10 pages right after the kill: $served answered 200"
    ((served == 10)) || fail "pages failed after a replica was killed" || ok=1
    wait_until 60 "scheduler send php ping answered by a live replica" php_pong ||
        fail "php-request.sock: $(send php ping)" || ok=1
    wait_until 120 "instance $n back ($REPLICAS_WHAT) and every replica healthy" came_back "$n" "$since" ||
        fail "instances now: $(replica_instances)" || return 1
    log "  back: $(docker inspect -f '{{.Name}}' "$(replica_of "$n")"): $(docker exec "$(replica_of "$n")" /usr/local/sbin/supervisor status)"
    [ "$(send "php.$n" ping)" = pong ] || fail "php.$n ping: $(send "php.$n" ping)" || ok=1
    [ -n "$(forum_visits)" ] || fail "no page after it came back" || ok=1
    return $ok
}

check "r1 $REPLICAS php replicas: healthy, instances 1-$REPLICAS, a FastCGI and a request socket each$([ "${REPLICAS_FRESH:-1}" = 0 ] || echo ', idle')" check_r1
check "r2 $PAGES pages spread over the replicas (each one's access log), all counted; php-fpm started in each" check_r2
check "r3 scheduler send php@each rotate-logs: once in each replica; php rotate-logs: once in all" check_r3
if [ -n "${REPLICAS_IDLE:-}" ]; then
    check "r4 idle stop per replica after ${REPLICAS_IDLE}s, sockets held, a page starts php-fpm again" check_r4
fi
check "r5 the replica holding php-request.sock killed: pages go on, php answers, it comes back as the same instance" check_r5
