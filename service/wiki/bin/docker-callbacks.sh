# shellcheck shell=bash
# wiki service actions; see service/mysql/bin/docker-callbacks.sh for the calling convention.
# shellcheck source=service/common/callbacks-lib.sh
source /usr/local/lib/bosun/callbacks-lib.sh

# rotate-logs: the pool's access logs (see rotate_php_fpm_logs).
CB_rotate_logs() { rotate_php_fpm_logs; }
