# shellcheck shell=bash
# php service: sourced by bash (as root) before php-fpm starts.
mkdir -p /run/php /var/log/php
chmod 0755 /run/php
# /run is shared and outlives this container: a killed predecessor's pid file. Its stale
# sockets php-fpm replaces itself; and with on-demand start (on_demand.listen in
# service.toml) the socket is the supervisor's, held open across idle stops: leave it be.
rm -f /run/php/php-fpm-php.pid
# Default for the demo; set FORUM_DB_PASSWORD in the environment (or .env) for real use.
export FORUM_DB_PASSWORD=${FORUM_DB_PASSWORD:-forum}
/usr/sbin/php-fpm --test --fpm-config /usr/local/conf/php-fpm.conf 2>&1 | grep -v 'test is successful' >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "php-setup: php-fpm.conf does not parse" >&2; exit 1; }
