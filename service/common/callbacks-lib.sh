# shellcheck shell=bash
# Helpers for the services' docker-callbacks.sh, in the image at
# /usr/local/lib/bosun/callbacks-lib.sh (a service's own bin/ is mounted over /usr/local/bin).
# Defines no CB_ function: it adds no action.

# rotate_log_file FILE KEEP [DAYS]: FILE -> FILE.1 -> FILE.2.gz -> FILE.3.gz ... (as logrotate
# with delaycompress: the daemon may write FILE.1 until it reopens its logs). Generations
# beyond KEEP are removed only once they are older than DAYS days (LOG_KEEP_DAYS, 7): asking
# for rotate-logs again and again (with a request in between, so that FILE is not empty)
# makes more generations, it cannot push last week's log out (docs/security.md).
rotate_log_file() {
    local f=$1 keep=$2 days=${3:-${LOG_KEEP_DAYS:-7}} i n
    [[ $keep =~ ^[1-9][0-9]*$ ]] || { echo "rotate_log_file: KEEP must be a positive number, not '$keep'" >&2; return 64; }
    [[ $days =~ ^[0-9]+$ ]] || { echo "rotate_log_file: DAYS must be a number, not '$days'" >&2; return 64; }
    [ -s "$f" ] || return 0
    # The highest generation there is, then every one up by one, the oldest first.
    n=1
    while [ -e "$f.$((n + 1)).gz" ]; do n=$((n + 1)); done
    for ((i = n; i >= 2; i--)); do
        [ -e "$f.$i.gz" ] && mv -f "$f.$i.gz" "$f.$((i + 1)).gz"
    done
    if [ -e "$f.1" ]; then
        gzip -f "$f.1" && mv -f "$f.1.gz" "$f.2.gz"
    fi
    mv -f "$f" "$f.1"
    # Past KEEP: only what was last written more than DAYS days ago (whole days, as find's
    # -mtime +N counts them), from the oldest down, stopping at the first one still young.
    for ((i = n + 1; i > keep; i--)); do
        [ -e "$f.$i.gz" ] || continue
        [ -n "$(find "$f.$i.gz" -maxdepth 0 -mmin +$((days * 1440)) -print)" ] || break
        rm -f -- "$f.$i.gz" && echo "pruned $f.$i.gz"
    done
}

# rotate_php_fpm_logs: a PHP site's rotate-logs, in this replica (BOSUN_INSTANCE; the
# replicas of a site share its /run and logs volume, so php-fpm.conf names their files after
# the instance). Its pool's access logs, /var/log/php/*.<instance>.log; USR1 makes its
# php-fpm master reopen them. Its pid file is /run/php-fpm.<instance>.pid, in the service's
# own /run (php-fpm.conf), which no other service can write; even so the pid is believed only
# when it is a plain positive number and names a running php-fpm (a stale file after a
# KILL, or a `-1`, must not signal anything else). When php-fpm is not running (stopped, or
# idle under on-demand start) renaming is all it takes.
rotate_php_fpm_logs() {
    local n=${BOSUN_INSTANCE:-} f pid comm pidfile
    [[ $n =~ ^[1-9][0-9]{0,3}$ ]] || { echo "rotate_php_fpm_logs: BOSUN_INSTANCE is '$n', not an instance number" >&2; return 64; }
    pidfile=/run/php-fpm.$n.pid
    for f in /var/log/php/*."$n".log; do
        [ -e "$f" ] && rotate_log_file "$f" "${LOG_KEEP:-7}"
    done
    pid=$(head -c 32 "$pidfile" 2>/dev/null)
    pid=${pid%$'\n'}
    if ! [[ $pid =~ ^[1-9][0-9]*$ ]]; then
        [ -z "$pid" ] || echo "ignoring $pidfile: not a process id" >&2
        echo "logs rotated (php-fpm not running)"
        return 0
    fi
    comm=$(cat "/proc/$pid/comm" 2>/dev/null)
    if [[ $comm == php-fpm* ]] && kill -USR1 "$pid" 2>/dev/null; then
        echo "logs rotated"
    else
        echo "logs rotated (php-fpm not running)"
    fi
}
