# shellcheck shell=bash
# mysql service: one-time setup, sourced by bash (as root) before mariadbd starts.
#
# On an empty data volume: mariadb-install-db, then a private setup server (its own socket,
# no networking, so nobody sees a half-imported database) imports conf/import/* in name
# order (*.sql, *.sql.gz piped to the client; *.sh sourced, with init_sql/sql_quote), and
# stops. A marker file makes a first start that failed midway refuse to go on, instead of
# starting on a half-imported datadir; empty the volume to retry.

MYSQL_CNF=/usr/local/conf/my.cnf
MYSQL_DATADIR=/var/lib/mysql
MYSQL_IMPORT_DIR=/usr/local/conf/import
MYSQL_SETUP_SOCKET=/run/mysqld/setup.sock

mysql_log() { printf 'mysql-setup: %s\n' "$*" >&2; }
mysql_die() { mysql_log "error: $*"; exit 1; }

# shellcheck disable=SC2120  # ARGS are for the import scripts
# init_sql [ARGS...] < SQL: run SQL against the setup server as root.
init_sql() { mariadb --no-defaults --protocol=socket --socket="$MYSQL_SETUP_SOCKET" -uroot "$@"; }
# sql_quote STRING: the string escaped for use inside '...' in SQL.
sql_quote() { local s=${1//\\/\\\\}; printf '%s' "${s//\'/\\\'}"; }

mysql_first_start() {
    local marker=$MYSQL_DATADIR/.bosun-init-incomplete pid f deadline
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

    mariadbd --defaults-file="$MYSQL_CNF" --user=mysql --skip-networking \
        --socket="$MYSQL_SETUP_SOCKET" --pid-file=/run/mysqld/setup.pid --skip-slow-query-log &
    pid=$!
    deadline=$((SECONDS + 120))
    until mariadb-admin --no-defaults --socket="$MYSQL_SETUP_SOCKET" -uroot ping >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || mysql_die "the setup server exited early"
        [ $SECONDS -lt $deadline ] || { kill "$pid"; mysql_die "the setup server did not answer within 120s"; }
        sleep 0.2
    done

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

    mariadb-admin --no-defaults --socket="$MYSQL_SETUP_SOCKET" -uroot shutdown ||
        mysql_die "could not stop the setup server"
    wait "$pid" || mysql_die "the setup server exited with an error"
    rm -f "$marker"
    mysql_log "first start done"
}

mkdir -p /run/mysqld /var/log/mysql /data/backup
chown mysql:mysql /run/mysqld /var/log/mysql "$MYSQL_DATADIR"
chmod 0755 /run/mysqld
# /run is shared and outlives this container: drop what a killed predecessor left behind.
rm -f /run/mysqld/mysqld.sock /run/mysqld/mysqld.pid "$MYSQL_SETUP_SOCKET" /run/mysqld/setup.pid
mysql_first_start
