# shellcheck shell=bash
# mysql service: one-time setup, sourced by bash (as root) before mariadbd starts.
#
# On an empty data volume: mariadb-install-db, then a private setup server (its own socket
# in a directory only root and mysql of this container can enter, no networking, so nobody
# sees a half-imported database) imports conf/import/* in name order (*.sql, *.sql.gz piped
# to the client; *.sh sourced, with init_sql/sql_quote), and stops. A marker file makes a
# first start that failed midway refuse to go on, instead of starting on a half-imported
# datadir; empty the volume to retry.
#
# MariaDB's root (docs/security.md): /run/mysqld/mysqld.sock is shared with the php and wiki
# containers, whose root has uid 0 too, so no account may log in by its peer's uid there
# (unix_socket). root logs in with a random password kept in $MYSQL_ROOT_CNF, in the data
# volume that only this container mounts (0600 root), copied to /root/.my.cnf for this
# container's clients (the callbacks, `docker compose exec mysql mariadb`); mysql@localhost,
# which mariadb-install-db makes with unix_socket and every privilege, is dropped. Whenever
# that file is missing (the first start, a data volume made before this, a lost file), a
# private server with --skip-grant-tables sets a new password, so an upgrade migrates by
# itself and a crash halfway never locks root out.

MYSQL_CNF=/usr/local/conf/my.cnf
MYSQL_DATADIR=/var/lib/mysql
MYSQL_IMPORT_DIR=/usr/local/conf/import
MYSQL_ROOT_CNF=$MYSQL_DATADIR/.bosun-root.cnf
# The setup server's socket: a directory of this container alone (/tmp is not shared),
# made anew by mysql_setup_server.
MYSQL_SETUP_DIR=
MYSQL_SETUP_SOCKET=
MYSQL_SETUP_PID=

mysql_log() { printf 'mysql-setup: %s\n' "$*" >&2; }
mysql_die() { mysql_log "error: $*"; exit 1; }

# shellcheck disable=SC2120  # ARGS are for the import scripts
# init_sql [ARGS...] < SQL: run SQL against the setup server as root (unix_socket there:
# only this container's root reaches that socket).
init_sql() { mariadb --no-defaults --protocol=socket --socket="$MYSQL_SETUP_SOCKET" -uroot "$@"; }
# sql_quote STRING: the string escaped for use inside '...' in SQL.
sql_quote() { local s=${1//\\/\\\\}; printf '%s' "${s//\'/\\\'}"; }

# mysql_setup_server [ARGS...]: start a private mariadbd (no networking, a socket in a
# fresh 0700 directory) and wait until it answers.
mysql_setup_server() {
    local deadline
    MYSQL_SETUP_DIR=$(mktemp -d /tmp/mysql-setup.XXXXXX) || mysql_die "cannot make a directory for the setup server"
    chown mysql:mysql "$MYSQL_SETUP_DIR"
    MYSQL_SETUP_SOCKET=$MYSQL_SETUP_DIR/setup.sock
    mariadbd --defaults-file="$MYSQL_CNF" --user=mysql --skip-networking \
        --socket="$MYSQL_SETUP_SOCKET" --pid-file="$MYSQL_SETUP_DIR/setup.pid" --skip-slow-query-log "$@" &
    MYSQL_SETUP_PID=$!
    deadline=$((SECONDS + 120))
    until [ -S "$MYSQL_SETUP_SOCKET" ] &&
        mariadb-admin --no-defaults --socket="$MYSQL_SETUP_SOCKET" -uroot ping 2>&1 | grep -q 'is alive\|Access denied'; do
        kill -0 "$MYSQL_SETUP_PID" 2>/dev/null || mysql_die "the setup server exited early"
        [ $SECONDS -lt $deadline ] || { kill "$MYSQL_SETUP_PID"; mysql_die "the setup server did not answer within 120s"; }
        sleep 0.2
    done
}

# mysql_setup_server_stop: TERM (MariaDB's clean shutdown; needs no login), then wait.
mysql_setup_server_stop() {
    kill -TERM "$MYSQL_SETUP_PID" 2>/dev/null || mysql_die "the setup server is gone"
    wait "$MYSQL_SETUP_PID" || mysql_die "the setup server exited with an error"
    rm -rf "$MYSQL_SETUP_DIR"
}

# mysql_root_password: when $MYSQL_ROOT_CNF is missing, give root a new random password
# (password login only, no unix_socket) and drop mysql@localhost, on a private server that
# skips the grant tables until FLUSH PRIVILEGES (so it works whatever root's login was);
# then keep the password in $MYSQL_ROOT_CNF. Every start: /root/.my.cnf from it.
mysql_root_password() {
    local pw tmp
    if [ ! -s "$MYSQL_ROOT_CNF" ]; then
        mysql_log "root: a new random password, login by password only (no unix_socket); dropping mysql@localhost"
        pw=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40)
        [ ${#pw} = 40 ] || mysql_die "could not make a password"
        tmp=$MYSQL_ROOT_CNF.tmp.$$
        (umask 077 && printf '[client]\nuser=root\npassword=%s\n' "$pw" >"$tmp") ||
            mysql_die "cannot write $tmp"
        mysql_setup_server --skip-grant-tables
        init_sql <<SQL || { rm -f "$tmp"; mysql_die "could not set root's password"; }
FLUSH PRIVILEGES;
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('$pw');
DROP USER IF EXISTS 'mysql'@'localhost';
SQL
        mysql_setup_server_stop
        sync "$tmp" && mv -f "$tmp" "$MYSQL_ROOT_CNF" && sync "$MYSQL_DATADIR" ||
            mysql_die "cannot write $MYSQL_ROOT_CNF"
    fi
    chown root:root "$MYSQL_ROOT_CNF" && chmod 0600 "$MYSQL_ROOT_CNF" || mysql_die "cannot set $MYSQL_ROOT_CNF to 0600 root"
    install -m 0600 -o root -g root "$MYSQL_ROOT_CNF" /root/.my.cnf || mysql_die "cannot write /root/.my.cnf"
}

mysql_first_start() {
    local marker=$MYSQL_DATADIR/.bosun-init-incomplete f
    if [ -e "$marker" ]; then
        mysql_die "an earlier first start stopped during setup ($marker exists); remove the mysql data volume (docker-compose down -v) and start again"
    fi
    [ -d "$MYSQL_DATADIR/mysql" ] && return 0
    if [ -n "$(find "$MYSQL_DATADIR" -mindepth 1 -maxdepth 1 ! -name lost+found -print -quit)" ]; then
        mysql_die "$MYSQL_DATADIR is neither empty nor a MariaDB data directory"
    fi
    mysql_log "empty data directory: initialising"
    : >"$marker"
    mariadb-install-db --defaults-file="$MYSQL_CNF" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db >/tmp/install-db.log 2>&1 ||
        { cat /tmp/install-db.log >&2; mysql_die "mariadb-install-db failed"; }

    mysql_setup_server

    shopt -s nullglob
    # shellcheck disable=SC1090
    for f in "$MYSQL_IMPORT_DIR"/*; do
        case $f in
            *.sql)    mysql_log "importing $f"; init_sql <"$f" || mysql_die "import of $f failed" ;;
            *.sql.gz) mysql_log "importing $f"; gzip -dc "$f" | init_sql || mysql_die "import of $f failed" ;;
            *.sh)     mysql_log "running $f"; ( source "$f" ) || mysql_die "$f failed" ;;
            *)        mysql_log "ignoring $f (not .sql, .sql.gz or .sh)" ;;
        esac
    done
    shopt -u nullglob

    mysql_setup_server_stop
    rm -f "$marker"
    mysql_log "first start done"
}

mkdir -p /run/mysqld /var/log/mysql /data/backup
chown mysql:mysql /run/mysqld /var/log/mysql "$MYSQL_DATADIR"
chmod 0755 /run/mysqld
# /run/mysqld outlives this container (${BOSUN_DATA}/sockets/mysqld): drop what a killed
# predecessor left behind.
rm -f /run/mysqld/mysqld.sock /run/mysqld/mysqld.pid
mysql_first_start
mysql_root_password
