# shellcheck shell=bash
# scheduler service actions; see service/mysql/bin/docker-callbacks.sh for the convention.

# rotate-logs: the scheduler writes only to the container log, which Docker's log driver
# rotates (max-size/max-file in docker-compose.yaml); there is nothing to do here.
CB_rotate_logs() {
    echo "nothing to rotate: the scheduler logs to the container log"
}
