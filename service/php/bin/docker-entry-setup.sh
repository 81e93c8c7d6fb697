# shellcheck shell=bash
# php service: sourced by bash (as root) before php-fpm starts, that is on every on-demand
# start (the socket itself is the supervisor's, bound before this runs).
mkdir -p /var/log/php
# This container's own /run (${BOSUN_DATA}/run/php; the scheduler sees it read-only): the
# pid file of a killed predecessor, or of a php-fpm KILLed by hand. The socket is the
# supervisor's (on_demand.listen in service.toml, in /sockets/forum), bound before this
# runs and held across idle stops: leave it be.
rm -f /run/php-fpm.pid
# Default for the demo; set FORUM_DB_PASSWORD in the environment (or .env) for real use.
export FORUM_DB_PASSWORD=${FORUM_DB_PASSWORD:-forum}
/usr/sbin/php-fpm --test --fpm-config /usr/local/conf/php-fpm.conf 2>&1 | grep -v 'test is successful' >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "php-setup: php-fpm.conf does not parse" >&2; exit 1; }
