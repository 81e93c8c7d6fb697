# shellcheck shell=bash
# php service: sourced by bash (as root) before php-fpm starts, that is on every on-demand
# start (the socket itself is the supervisor's, bound before this runs).
mkdir -p /var/log/php
# The instance of this replica (1, 2, ...), from the supervisor: php-fpm.conf names its
# socket, pid file and access log after it, for the replicas share /run and the logs.
if ! [[ ${BOSUN_INSTANCE:-} =~ ^[1-9][0-9]{0,3}$ ]]; then
    echo "php-setup: BOSUN_INSTANCE is '${BOSUN_INSTANCE:-}', not an instance number (1-9999): php-fpm.conf needs it, and the supervisor sets it (is the supervisor older than these files?)" >&2
    exit 1
fi
# This service's own /run (${BOSUN_DATA}/run/php, shared by its replicas; the scheduler sees
# it read-only): the pid file of this instance's killed predecessor, or of a php-fpm KILLed
# by hand; never another replica's. The socket is the supervisor's (on_demand.listen in
# service.toml, in /sockets/forum), bound before this runs and held across idle stops:
# leave it be.
rm -f "/run/php-fpm.$BOSUN_INSTANCE.pid"
# Default for the demo; set FORUM_DB_PASSWORD in the environment (or .env) for real use.
export FORUM_DB_PASSWORD=${FORUM_DB_PASSWORD:-forum}
/usr/sbin/php-fpm --test --fpm-config /usr/local/conf/php-fpm.conf 2>&1 | grep -v 'test is successful' >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "php-setup: php-fpm.conf does not parse" >&2; exit 1; }
