# shellcheck shell=bash
# nginx service actions; see service/mysql/bin/docker-callbacks.sh for the calling convention.
# shellcheck source=service/common/callbacks-lib.sh
source /usr/local/lib/bosun/callbacks-lib.sh  # rotate_log_file

# rotate-logs: access and error logs; `nginx -s reopen` makes nginx reopen them.
CB_rotate_logs() {
    local f
    for f in /var/log/nginx/*.log; do
        [ -e "$f" ] && rotate_log_file "$f" "${LOG_KEEP:-7}"
    done
    /usr/sbin/nginx -c /usr/local/conf/nginx.conf -s reopen && echo "logs rotated"
}
