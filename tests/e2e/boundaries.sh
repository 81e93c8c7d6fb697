# shellcheck shell=bash
# The stack's trust boundaries (DESIGN.md section 9, docs/security.md), checked from inside
# the containers with `docker exec`. Sourced by tests/e2e/run.sh (compose) and swarm.sh once
# the stack is up and a page has been served; it uses their cid, request, URL, DATA and
# SERVICES, FORUM_DB_PASSWORD and WIKI_DB_PASSWORD (distinctive ones), and lib.sh's
# check/fail/log. BOUNDARIES_NNP=0: no-new-privileges is not expected (Swarm drops
# security_opt), only reported.
#
#   b1. docker inspect: no-new-privileges and CapDrop ALL on every container; inside, PID 1
#       has NoNewPrivs 1 and no capability beyond its service's cap_add
#   b2. the sockets a process can connect to, found and tried one by one: as www-data and as
#       the pool user (forum, wiki) in php and wiki, MariaDB's socket only (not the other
#       site's FastCGI socket, which is not even there, nor any request socket); the pools'
#       workers run as forum and wiki; the held FastCGI sockets are 0660 root:fcgi
#   b3. as root in php: MariaDB's socket and its directory cannot be removed, renamed or
#       added to (read-only mount); mysql's request socket is not there at all; as root in
#       the scheduler, mysql's request socket cannot be removed either
#   b4. MariaDB: `mariadb -uroot` (and -umysql) from php without a password is refused; no
#       account logs in by unix_socket; root's password file is 0600 root in mysql only
#   b5. the scheduler reaches every request socket (`scheduler send <svc> ping`, all five),
#       and the host through $DATA/run/<svc>-request.sock with socat
#   b6. the database passwords (the test's, distinctive) on no command line in any
#       container, and in no container's log
#   b7. backups pruned by age: last week's stay after more quick backups than BACKUP_KEEP;
#       the system databases are refused as targets, a name is matched exactly (no LIKE)
#   b8. nginx's rotate-logs, more times than LOG_KEEP: no generation younger than
#       LOG_KEEP_DAYS goes; an old one beyond LOG_KEEP does
#   b9. rotate-logs in php with a pid file saying -1: nothing signalled, the pid ignored
#   b10. an upgrade: mysql's volume set back to the old accounts (root and mysql@localhost
#       by unix_socket, no password file); after a restart the setup has migrated it

# in_ CONTAINER-SERVICE [docker exec options] -- CMD...: run in that service's container.
in_() {
    local s=$1
    shift
    local -a opts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    docker exec "${opts[@]}" "$(cid "$s")" "$@"
}

# restart_service SERVICE: its container restarted, as an operator would. swarm.sh defines
# its own before sourcing this file: a task's container restarted by `docker restart` races
# the replacement task Swarm starts for it (two supervisors, one exits 125), so there the
# service is updated with --force, which replaces the task, the old one stopped first.
if ! declare -F restart_service >/dev/null; then
    restart_service() { docker restart "$(cid "$1")" >/dev/null; }
fi

# ---- b1 -----------------------------------------------------------------------------------
# caps_of SERVICE: the cap_add list of docker-compose.yaml, as `docker inspect` shows it.
check_b1() {
    local s id opt drop add ok=0 st
    for s in "${SERVICES[@]}"; do
        id=$(cid "$s")
        opt=$(docker inspect -f '{{join .HostConfig.SecurityOpt " "}}' "$id")
        drop=$(docker inspect -f '{{join .HostConfig.CapDrop " "}}' "$id")
        add=$(docker inspect -f '{{join .HostConfig.CapAdd " "}}' "$id")
        st=$(docker exec "$id" awk '/^(NoNewPrivs|CapEff|CapBnd):/ {printf "%s %s ", $1, $2}' /proc/1/status)
        log "  $s: SecurityOpt [$opt] CapDrop [$drop] CapAdd [$add]; PID 1: $st"
        if [ "${BOUNDARIES_NNP:-1}" = 1 ]; then
            [[ " $opt " == *" no-new-privileges:true "* || " $opt " == *" no-new-privileges "* ]] ||
                fail "$s: no no-new-privileges" || ok=1
            [[ $st == *"NoNewPrivs: 1 "* ]] || fail "$s: PID 1 has NoNewPrivs 0" || ok=1
        fi
        [[ " $drop " == *" ALL "* || " $drop " == *" CAP_ALL "* ]] || fail "$s: capabilities not dropped" || ok=1
        # No capability in the bounding set beyond what cap_add names: count its bits.
        local bnd n want
        bnd=$(sed -n 's/.*CapBnd: \([0-9a-f]*\).*/\1/p' <<<"$st")
        n=$(python3 -c "print(bin(int('$bnd', 16)).count('1'))")
        want=$(wc -w <<<"$add")
        ((n == want)) || fail "$s: $n capabilities in the bounding set, cap_add names $want" || ok=1
    done
    return $ok
}
check "b1 docker inspect: no-new-privileges and CapDrop ALL on every container; PID 1's capabilities are cap_add's only" check_b1

# ---- b2 -----------------------------------------------------------------------------------
# sockets_in SERVICE: every unix socket in that container's socket directories.
sockets_in() { in_ "$1" -- find /run /sockets -type s 2>/dev/null | sort; }
# reachable SERVICE USER: the sockets USER can connect to there, one a line.
reachable() {
    local s=$1 u=$2 p
    for p in $(sockets_in "$s"); do
        if in_ "$s" -u "$u" -- socat -T2 -u /dev/null "UNIX-CLIENT:$p" 2>/dev/null; then
            echo "$p"
        fi
    done
}
check_b2() {
    local s u got ok=0 mode workers
    for s in php wiki; do
        log "  sockets in $s: $(sockets_in "$s" | tr '\n' ' ')"
        in_ "$s" -- test ! -e /sockets/forum -o "$s" = php || fail "the forum's socket directory is in $s" || ok=1
        in_ "$s" -- test ! -e /sockets/wiki -o "$s" = wiki || fail "the wiki's socket directory is in $s" || ok=1
        for u in www-data forum wiki; do
            got=$(reachable "$s" "$u" | tr '\n' ' ')
            log "  as $u in $s, connects to: ${got:-nothing}"
            [ "$got" = "/run/mysqld/mysqld.sock " ] ||
                fail "$u in $s reaches more (or less) than MariaDB's socket: '$got'" || ok=1
        done
    done
    # The held FastCGI sockets, as nginx sees them.
    for s in forum wiki; do
        mode=$(in_ nginx -- stat -c '%a %U:%G' "/sockets/$s/$s.1.sock")
        log "  /sockets/$s/$s.1.sock in nginx: $mode"
        [ "$mode" = "660 root:fcgi" ] || fail "$s.sock is $mode, not 660 root:fcgi" || ok=1
    done
    # nginx's workers are the ones who can: www-data, group fcgi.
    workers=$(in_ nginx -- ps -o user=,group=,args= -C nginx | grep 'worker process' | awk '{print $1 ":" $2}' | sort -u)
    log "  nginx workers: $workers"
    [ "$workers" = "www-data:fcgi" ] || fail "nginx's workers run as '$workers'" || ok=1
    # The pools' workers: as forum and wiki, each in its own container.
    for s in php:forum wiki:wiki; do
        curl -fsS --max-time 30 -H "Host: ${s#*:}.localhost" "$URL/" | grep -q 'id="visits"' ||
            fail "no page of ${s#*:}" || ok=1
        workers=$(in_ "${s%%:*}" -- ps -eo user=,args= | grep 'php-fpm: pool' | awk '{print $1}' | sort -u)
        log "  ${s%%:*}'s pool workers run as: $workers"
        [ "$workers" = "${s#*:}" ] || fail "${s%%:*}'s workers run as '$workers', not ${s#*:}" || ok=1
    done
    return $ok
}
check "b2 as www-data and as the pool users in php and wiki: MariaDB's socket only; FastCGI sockets 0660 root:fcgi, nginx's workers in fcgi, pools as forum and wiki" check_b2

# ---- b3 -----------------------------------------------------------------------------------
check_b3() {
    local ok=0 out
    for out in "rm -f /run/mysqld/mysqld.sock" "mv /run/mysqld/mysqld.sock /run/mysqld/x" \
        "mv /run/mysqld/mysqld.sock /tmp/x" "touch /run/mysqld/fake.sock" "rm -rf /run/mysqld/"; do
        if in_ php -- bash -c "$out" 2>/dev/null; then
            fail "as root in php, '$out' worked" || ok=1
        else
            log "  as root in php, '$out': $(in_ php -- bash -c "$out" 2>&1 | head -n 1)"
        fi
    done
    in_ php -- test -S /run/mysqld/mysqld.sock || fail "MariaDB's socket is gone from php" || ok=1
    if in_ php -- find /run /sockets /tmp /var -name '*-request.sock' -print 2>/dev/null | grep -vxqE '/run/php(\.[0-9]+)?-request\.sock'; then
        fail "another request socket is in php: $(in_ php -- find /run /sockets /tmp /var -name '*-request.sock' 2>/dev/null | tr '\n' ' ')" || ok=1
    fi
    in_ php -- test ! -e /run/mysql/mysql-request.sock || fail "mysql's request socket is in php" || ok=1
    # The scheduler reaches it, and cannot remove it.
    if in_ scheduler -- rm -f /run/mysql/mysql-request.sock 2>/dev/null; then
        fail "as root in the scheduler, rm of mysql's request socket worked" || ok=1
    fi
    log "  as root in the scheduler: $(in_ scheduler -- rm -f /run/mysql/mysql-request.sock 2>&1)"
    [ -S "$DATA/run/mysql/mysql-request.sock" ] || fail "mysql's request socket is gone" || ok=1
    return $ok
}
check "b3 as root in php: MariaDB's socket cannot be removed, renamed or replaced; no other request socket there; the scheduler cannot remove mysql's" check_b3

# ---- b4 -----------------------------------------------------------------------------------
check_b4() {
    local ok=0 u out
    for u in root mysql; do
        if out=$(in_ php -- mariadb --protocol=socket -u"$u" -e 'SELECT CURRENT_USER()' 2>&1); then
            fail "mariadb -u$u from php logged in: $out" || ok=1
        else
            log "  mariadb -u$u from php (root, no password): $out"
        fi
    done
    out=$(in_ mysql -- mariadb -N -B -e \
        "SELECT CONCAT(user, '@', host, ' ', priv) FROM mysql.global_priv WHERE priv LIKE '%unix_socket%' OR user = 'mysql'") ||
        fail "no query in mysql" || return 1
    [ -z "$out" ] || fail "accounts with unix_socket login (or mysql@localhost): $out" || ok=1
    out=$(in_ mysql -- mariadb -N -B -e "SELECT CONCAT(user, '@', host) FROM mysql.user ORDER BY 1" | tr '\n' ' ')
    log "  MariaDB's accounts: $out (none by unix_socket)"
    out=$(in_ mysql -- stat -c '%a %U:%G' /var/lib/mysql/.bosun-root.cnf /root/.my.cnf | tr '\n' ' ')
    [ "$out" = "600 root:root 600 root:root " ] || fail "root's password files: $out" || ok=1
    in_ php -- test ! -e /root/.my.cnf || fail "php has a /root/.my.cnf" || ok=1
    return $ok
}
check "b4 MariaDB: no login as root or mysql from php without a password, no unix_socket account, root's password 0600 in mysql only" check_b4

# ---- b5 -----------------------------------------------------------------------------------
check_b5() {
    local s r ok=0
    for s in "${SERVICES[@]}"; do
        r=$(in_ scheduler -- scheduler send "$s" ping 2>&1)
        [ "$r" = pong ] || fail "scheduler send $s ping: $r" || ok=1
        r=$(printf 'ping\n' | timeout 20 socat -t 10 - "UNIX-CONNECT:$DATA/run/$s-request.sock" 2>&1)
        [ "$r" = pong ] || fail "from the host, $DATA/run/$s-request.sock: $r" || ok=1
    done
    log "  links in $DATA/run: $(cd "$DATA/run" && for l in *-request.sock; do printf '%s -> %s  ' "$l" "$(readlink "$l" || echo '(socket)')"; done)"
    return $ok
}
check "b5 the scheduler and the host reach every request socket (ping, all five)" check_b5

# ---- b6 -----------------------------------------------------------------------------------
check_b6() {
    local s ok=0 pw
    for s in "${SERVICES[@]}"; do
        for pw in "$FORUM_DB_PASSWORD" "$WIKI_DB_PASSWORD"; do
            if in_ "$s" -- ps -eo args= | grep -qF -- "$pw"; then
                fail "a password is on a command line in $s: $(in_ "$s" -- ps -eo args= | grep -F -- "$pw" | head -n 1)" || ok=1
            fi
            if docker logs "$(cid "$s")" 2>&1 | grep -qF -- "$pw"; then
                fail "a password is in $s's log" || ok=1
            fi
        done
    done
    return $ok
}
check "b6 the database passwords on no command line and in no log" check_b6

# ---- b7 -----------------------------------------------------------------------------------
# ts_ago DAYS: a backup's time stamp, DAYS days ago.
ts_ago() { date -u -d "@$(($(date +%s) - $1 * 86400))" +%Y%m%dT%H%M%SZ; }
check_b7() {
    local ok=0 i r old young n
    old=$DATA/backup/forum-$(ts_ago 30).sql.gz
    young=$DATA/backup/forum-$(ts_ago 2).sql.gz
    : >"$old"
    : >"$young"
    # BACKUP_KEEP (7) + 2 backups, quick ones.
    for i in $(seq 9); do
        r=$(request 'forum nightly-backup') || return 1
        grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r" || fail "backup $i: $(tr '\n' '|' <<<"$r")" || return 1
        # Distinct names (a second apart).
        sleep 1
    done
    n=$(ls "$DATA"/backup/forum-*.sql.gz | wc -l)
    log "  after 9 quick backups: $n forum backups; $(basename "$young") $([ -e "$young" ] && echo kept || echo GONE), $(basename "$old") $([ -e "$old" ] && echo KEPT || echo pruned)"
    [ -e "$young" ] || fail "a backup of 2 days ago was pruned" || ok=1
    [ ! -e "$old" ] || fail "a backup of 30 days ago beyond the newest 7 was kept" || ok=1
    rm -f "$young"
    r=$(request 'nightly-backup mysql') || return 1
    log "  nightly-backup mysql: $(tr '\n' '|' <<<"$r")"
    grep -qE '^done [^ ]+ exit=77( |$)' <<<"$r" || fail "the mysql system database was not refused" || ok=1
    r=$(request 'nightly-backup f_rum') || return 1
    grep -qE '^done [^ ]+ exit=66( |$)' <<<"$r" || fail "f_rum matched a database: $(tr '\n' '|' <<<"$r")" || ok=1
    [ -z "$(ls "$DATA"/backup/mysql-* 2>/dev/null)" ] || fail "a dump of the mysql database exists" || ok=1
    return $ok
}
check "b7 backups pruned by age: last week's stay after 9 quick backups; system databases refused; exact names" check_b7

# ---- b8 -----------------------------------------------------------------------------------
# send_nginx ACTION: `scheduler send nginx ACTION`, asked again while the test schedule's own
# `* * * * * nginx rotate-logs` runs (error busy), for up to 30 s.
send_nginx() {
    local r end=$((SECONDS + 30))
    while :; do
        r=$(in_ scheduler -- scheduler send nginx "$1" 2>&1) && { printf '%s\n' "$r"; return 0; }
        [[ $r == *"error busy"* ]] && ((SECONDS < end)) || { printf '%s\n' "$r"; return 1; }
        sleep 0.5
    done
}
# nginx_gens: the generations of nginx's access log, highest first.
nginx_gens() { in_ nginx -- bash -c 'ls /var/log/nginx/ | sed -n "s/^access\.log\.\([0-9]*\)\(\.gz\)\{0,1\}$/\1/p" | sort -n | tr "\n" " "'; }
# logged_request: a request, then whether nginx's access.log has it (a request made before
# nginx has reopened its logs after a rotation is written to the generation just rotated).
logged_request() {
    curl -fsS --max-time 10 -o /dev/null "$URL/style.css" && in_ nginx -- test -s /var/log/nginx/access.log
}
check_b8() {
    local ok=0 i r gens top f old
    for i in $(seq 9); do
        wait_until 10 "a request in the reopened access log" logged_request || return 1
        r=$(send_nginx rotate-logs) || fail "rotate-logs: $r" || return 1
    done
    gens=$(nginx_gens)
    log "  after 9 rotations with a request between: access.log generations $gens"
    top=$(wc -w <<<"$gens")
    # LOG_KEEP is 7: pruning by count would leave 7 of the 9.
    ((top >= 9)) || fail "generations were pruned: $gens" || ok=1
    # The highest made old: the next rotation prunes it, and only it.
    top=$(awk '{print $NF}' <<<"$gens")
    # As the file's owner (www-data): root in nginx has no FOWNER to date another's file back.
    f=/var/log/nginx/access.log.$top.gz
    in_ nginx -u "$(in_ nginx -- stat -c %u "$f")" -- touch -d '30 days ago' "$f" || return 1
    wait_until 10 "a request in the reopened access log" logged_request || return 1
    r=$(send_nginx rotate-logs)
    # What the run printed: `log ID`.
    r=$(in_ scheduler -- scheduler send nginx log "$(sed -n 's/^accepted \([0-9]*\) .*/\1/p' <<<"$r")" 2>&1)
    log "  rotate-logs after making access.log.$top.gz 30 days old: $(grep 'pruned' <<<"$r" | tr '\n' ' ')"
    # The schedule's own `* * * * * nginx rotate-logs` may be the run that rotates it out
    # (ours then waits out its busy and finds nothing left to prune): what must hold is that
    # no generation that old is left, under any number.
    old=$(in_ nginx -- find /var/log/nginx -name 'access.log.*' -mtime +20)
    [ -z "$old" ] || fail "the old generation was not pruned: $old; our run's output: $r" || ok=1
    # Every younger generation is still there (the schedule's own rotation may add one).
    gens=$(nginx_gens)
    [ "$(seq -s ' ' 1 "$top") " = "$(cut -d' ' -f1-"$top" <<<"$gens") " ] || fail "a young generation went: $gens" || ok=1
    return $ok
}
check "b8 nginx rotate-logs 9 times: no young generation pruned; an old one beyond LOG_KEEP is" check_b8

# ---- b9 -----------------------------------------------------------------------------------
check_b9() {
    local ok=0 saved r n pidfile
    # This replica's pid file, and requests to it alone (php.N: on Swarm php has replicas).
    n=$(instance_of "$(cid php)") && [ -n "$n" ] || fail "php's supervisor names no instance" || return 1
    pidfile=/run/php-fpm.$n.pid
    saved=$(in_ php -- cat "$pidfile" 2>/dev/null)
    in_ php -- bash -c "echo -1 >$pidfile" || return 1
    r=$(in_ scheduler -- scheduler send "php.$n" rotate-logs 2>&1)
    log "  rotate-logs with a pid file of -1: $(tr '\n' '|' <<<"$r")"
    grep -qE '^done [^ ]+ exit=0' <<<"$r" || fail "rotate-logs failed" || ok=1
    grep -q "ignoring $pidfile: not a process id" < <(docker logs "$(cid php)" 2>&1) ||
        fail "no 'ignoring $pidfile' in php's log" || ok=1
    in_ php -- bash -c "echo 1 >$pidfile" || return 1
    r=$(in_ scheduler -- scheduler send "php.$n" rotate-logs 2>&1)
    grep -qE '^done [^ ]+ exit=0' <<<"$r" || fail "rotate-logs with pid 1 failed: $r" || ok=1
    [ "$(in_ scheduler -- scheduler send "php.$n" ping 2>&1)" = pong ] || fail "php's supervisor does not answer after it" || ok=1
    if [ -n "$saved" ]; then
        in_ php -- bash -c "echo $saved >$pidfile"
        # php-fpm was not told to reopen its log: once more, so that it does (its pages
        # would go on into the rotated file, which the replicas' checks count).
        in_ scheduler -- scheduler send "php.$n" rotate-logs >/dev/null 2>&1
    else
        in_ php -- rm -f "$pidfile"
    fi
    return $ok
}
check "b9 rotate-logs in php trusts no pid file: -1 and a pid that is not php-fpm's are not signalled" check_b9

# ---- b10 ----------------------------------------------------------------------------------
# An upgrade: the mysql volume made as before these boundaries (root and mysql@localhost by
# unix_socket, no password file), then mysql restarted: its setup migrates by itself.
check_b10() {
    local ok=0 out
    in_ mysql -- mariadb -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket;
        CREATE USER 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
        GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION;" || return 1
    in_ mysql -- rm -f /var/lib/mysql/.bosun-root.cnf /root/.my.cnf || return 1
    out=$(in_ php -- mariadb --protocol=socket -uroot -N -e 'SELECT CURRENT_USER()' 2>&1)
    log "  as before: root in php logs in as MariaDB root: $out"
    [ "$out" = "root@localhost" ] || fail "could not set up the old accounts: $out" || return 1
    restart_service mysql || return 1
    wait_until 180 "mysql healthy again" all_healthy || return 1
    log "  $(docker logs "$(cid mysql)" 2>&1 | grep -m1 'mysql-setup: root:')"
    if out=$(in_ php -- mariadb --protocol=socket -uroot -e 'SELECT 1' 2>&1); then
        fail "root in php still logs in after the upgrade" || ok=1
    else
        log "  after: root in php: $out"
    fi
    out=$(in_ mysql -- mariadb -N -B -e \
        "SELECT CONCAT(user, '@', host) FROM mysql.global_priv WHERE priv LIKE '%unix_socket%' OR user = 'mysql'") ||
        fail "no login as root in mysql after the upgrade: $out" || return 1
    [ -z "$out" ] || fail "left after the upgrade: $out" || ok=1
    in_ mysql -- test -s /var/lib/mysql/.bosun-root.cnf || fail "no password file after the upgrade" || ok=1
    [ -n "$(visits)" ] || fail "no forum page after the upgrade" || ok=1
    return $ok
}
check "b10 upgrade: a mysql volume with root and mysql@localhost by unix_socket is migrated on restart (password file, no unix_socket, pages served)" check_b10
