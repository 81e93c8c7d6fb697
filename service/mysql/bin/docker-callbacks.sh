# shellcheck shell=bash
# mysql service actions; run as `bash -c 'source docker-callbacks.sh; CB_<action> "$@"'`
# with BOSUN_USER, BOSUN_ACTION, BOSUN_REQUEST_ID and BOSUN_SERVICE set.
# shellcheck source=service/common/callbacks-lib.sh
source /usr/local/lib/bosun/callbacks-lib.sh  # rotate_log_file
# The clients log in as MariaDB's root from /root/.my.cnf (docker-entry-setup.sh writes it).
export HOME=${HOME:-/root}

# nightly-backup [DB...]: one gzip'd mariadb-dump per database in $BACKUP_DIR (/data/backup),
# named <db>-<UTC YYYYmmddTHHMMSSZ>.sql.gz.
#   no args            every database but the system ones
#   DB...              those databases (exact names; never mysql, sys, performance_schema
#                      or information_schema: account hashes stay out of the backups)
#   user, no args      the database named like the user (`forum nightly-backup`), if any
# The user (BOSUN_USER) is a label chosen by whoever reaches the socket, not an identity
# (docs/security.md): it picks the default target, it grants and denies nothing.
# Pruning is by age: a backup goes only once it is older than $BACKUP_KEEP_DAYS (7) days
# AND not among its database's newest $BACKUP_KEEP (7). So however often a backup is
# asked for, last week's stay; and a site that stopped changing keeps its last 7.
# The dump is written to a hidden temp file, fsync'd, then renamed, and the directory
# fsync'd: a killed backup never leaves a partial file under a final name. Leftover temp
# files of a killed run are removed by the next run. Restore: see README.md, "The stack".
# The client logs in as MariaDB's root with the password in /root/.my.cnf (the setup's).
CB_nightly_backup() {
    local -
    set -o pipefail
    local dir=${BACKUP_DIR:-/data/backup} keep=${BACKUP_KEEP:-7} days=${BACKUP_KEEP_DAYS:-7}
    local db rc=0 ts final old i cutoff
    local -a dbs
    if ! [[ $keep =~ ^[1-9][0-9]*$ ]]; then
        echo "BACKUP_KEEP must be a positive number, not '$keep'" >&2; return 64
    fi
    if ! [[ $days =~ ^[0-9]+$ ]]; then
        echo "BACKUP_KEEP_DAYS must be a number of days, not '$days'" >&2; return 64
    fi
    if [ $# -gt 0 ]; then
        dbs=("$@")
    elif [ -n "${BOSUN_USER:-}" ]; then
        dbs=("$BOSUN_USER")
    else
        mapfile -t dbs < <(mariadb -N -B -e 'SHOW DATABASES' |
            grep -vxE 'information_schema|performance_schema|sys|mysql') ||
            { echo "cannot list the databases" >&2; return 1; }
    fi
    for db in "${dbs[@]}"; do
        if ! [[ $db =~ ^[A-Za-z0-9_]+$ ]]; then
            echo "not a database name: '$db'" >&2; return 64
        fi
        case ${db,,} in
            mysql | sys | performance_schema | information_schema)
                echo "refused: $db is a system database (accounts and server state), not backed up by this action" >&2
                return 77 ;;
        esac
        # An exact match (LIKE would take _ and % as wildcards); the name is checked above.
        if [ -z "$(mariadb -N -B -e "SHOW DATABASES WHERE \`Database\` = '$db'")" ]; then
            echo "no such database: $db" >&2; return 66
        fi
    done

    umask 077
    mkdir -p "$dir"
    rm -f "$dir"/.*.sql.gz.tmp.*
    _backup_tmp=
    trap 'rm -f "$_backup_tmp"; exit 143' TERM INT
    for db in "${dbs[@]}"; do
        ts=$(date -u +%Y%m%dT%H%M%SZ)
        final=$dir/$db-$ts.sql.gz
        _backup_tmp=$dir/.$db-$ts.sql.gz.tmp.$$
        if mariadb-dump --single-transaction --quick --routines --triggers --events \
                --hex-blob --default-character-set=utf8mb4 "$db" | gzip -6 >"$_backup_tmp" &&
            sync "$_backup_tmp" && mv -f "$_backup_tmp" "$final" && sync "$dir"; then
            echo "backup of $db: $final ($(stat -c %s "$final") bytes)"
        else
            echo "backup of $db failed" >&2
            rm -f "$_backup_tmp"
            rc=1
            continue
        fi
        # Prune: the names sort by time. Of this database's backups, all but the newest
        # $keep, and of those only the ones named before the cutoff ($days days ago).
        cutoff=$(date -u -d "@$(($(date +%s) - days * 86400))" +%Y%m%dT%H%M%SZ)
        shopt -s nullglob
        local -a all=("$dir/$db"-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.sql.gz)
        shopt -u nullglob
        for ((i = 0; i < ${#all[@]} - keep; i++)); do
            old=${all[i]}
            ts=${old##*/"$db"-}
            ts=${ts%.sql.gz}
            [[ $ts < $cutoff ]] || break
            rm -f -- "$old" && echo "pruned $old"
        done
    done
    _backup_tmp=
    return $rc
}

# rotate-logs: the slow query log (the error log is the container log); MariaDB reopens it.
CB_rotate_logs() {
    local f
    for f in /var/log/mysql/*.log; do
        [ -e "$f" ] && rotate_log_file "$f" "${LOG_KEEP:-7}"
    done
    mariadb-admin flush-logs && echo "logs rotated"
}
