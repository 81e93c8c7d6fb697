# shellcheck shell=bash
# php service actions; see service/mysql/bin/docker-callbacks.sh for the calling convention.
# shellcheck source=service/common/callbacks-lib.sh
source /usr/local/lib/bosun/callbacks-lib.sh

# rotate-logs: this replica's access log (see rotate_php_fpm_logs); the schedule asks every
# replica (`php@each`, `wiki@each` in schedule.cron).
CB_rotate_logs() { rotate_php_fpm_logs; }
