# shellcheck shell=bash
# mysql service actions; run as `bash -c 'source docker-callbacks.sh; CB_<action> "$@"'`
# with BOSUN_USER, BOSUN_ACTION, BOSUN_REQUEST_ID and BOSUN_SERVICE set.
# shellcheck source=service/common/callbacks-lib.sh
source /usr/local/lib/bosun/callbacks-lib.sh  # rotate_log_file

# nightly-backup [DB...]: one gzip'd mariadb-dump per database in $BACKUP_DIR (/data/backup),
# named <db>-<UTC YYYYmmddTHHMMSSZ>.sql.gz; keeps the newest $BACKUP_KEEP (7) per database.
#   no user, no args   every database but the system ones
#   no user, DB...     those databases
#   user (a site)      that site's database only (`forum nightly-backup`)
# The dump is written to a hidden temp file, fsync'd, then renamed, and the directory
# fsync'd: a killed backup never leaves a partial file under a final name. Leftover temp
# files of a killed run are removed by the next run. Restore: see README.md, "The stack".
CB_nightly_backup() {
    local -
    set -o pipefail
    local dir=${BACKUP_DIR:-/data/backup} keep=${BACKUP_KEEP:-7} db rc=0 ts final old i
    local -a dbs
    if ! [[ $keep =~ ^[1-9][0-9]*$ ]]; then
        echo "BACKUP_KEEP must be a positive number, not '$keep'" >&2; return 64
    fi
    if [ -n "${BOSUN_USER:-}" ]; then
        for db in "$@"; do
            if [ "$db" != "$BOSUN_USER" ]; then
                echo "denied: $BOSUN_USER may only back up its own database, not $db" >&2; return 77
            fi
        done
        dbs=("$BOSUN_USER")
    elif [ $# -gt 0 ]; then
        dbs=("$@")
    else
        mapfile -t dbs < <(mariadb -N -B -e 'SHOW DATABASES' |
            grep -vxE 'information_schema|performance_schema|sys|mysql') ||
            { echo "cannot list the databases" >&2; return 1; }
    fi
    for db in "${dbs[@]}"; do
        if ! [[ $db =~ ^[A-Za-z0-9_]+$ ]]; then
            echo "not a database name: '$db'" >&2; return 64
        fi
        if [ -z "$(mariadb -N -B -e "SHOW DATABASES LIKE '$db'")" ]; then
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
        # Prune: the names sort by time; keep the newest $keep of this database.
        shopt -s nullglob
        local -a all=("$dir/$db"-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.sql.gz)
        shopt -u nullglob
        for ((i = 0; i < ${#all[@]} - keep; i++)); do
            old=${all[i]}
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
