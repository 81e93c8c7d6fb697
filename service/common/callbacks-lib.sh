# shellcheck shell=bash
# Helpers for the services' docker-callbacks.sh, in the image at
# /usr/local/lib/bosun/callbacks-lib.sh (a service's own bin/ is mounted over /usr/local/bin).
# Defines no CB_ function: it adds no action.

# rotate_log_file FILE KEEP: FILE -> FILE.1 -> FILE.2.gz ... FILE.KEEP.gz (as logrotate
# with delaycompress: the daemon may write FILE.1 until it reopens its logs).
rotate_log_file() {
    local f=$1 keep=$2 i
    [ -s "$f" ] || return 0
    rm -f "$f.$keep.gz"
    for ((i = keep - 1; i >= 2; i--)); do
        [ -e "$f.$i.gz" ] && mv -f "$f.$i.gz" "$f.$((i + 1)).gz"
    done
    if [ -e "$f.1" ]; then
        gzip -f "$f.1" && mv -f "$f.1.gz" "$f.2.gz"
    fi
    mv -f "$f" "$f.1"
}

# rotate_php_fpm_logs: a PHP site's rotate-logs. Its pool's access logs; USR1 makes the
# php-fpm master (pid file /run/php/php-fpm-$BOSUN_SERVICE.pid, as its php-fpm.conf says)
# reopen them. When php-fpm is not running (stopped, or idle under on-demand start)
# renaming is all it takes.
rotate_php_fpm_logs() {
    local f pid
    for f in /var/log/php/*.log; do
        [ -e "$f" ] && rotate_log_file "$f" "${LOG_KEEP:-7}"
    done
    pid=$(cat "/run/php/php-fpm-$BOSUN_SERVICE.pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -USR1 "$pid" 2>/dev/null; then
        echo "logs rotated"
    else
        echo "logs rotated (php-fpm not running)"
    fi
}
