# shellcheck shell=bash
# nginx service: sourced by bash (as root) before nginx starts. Fails fast on a bad config.
mkdir -p /var/log/nginx
# The master (root) opens the logs, and root here has no DAC_OVERRIDE (docker-compose.yaml,
# cap_add): the package's logs, and those of a volume made before that, belong to www-data.
chown -R root:adm /var/log/nginx
# This container's own /run (${BOSUN_DATA}/run/nginx): a killed predecessor's pid file.
rm -f /run/nginx.pid
/usr/sbin/nginx -t -q -c /usr/local/conf/nginx.conf || { echo "nginx-setup: nginx.conf is invalid" >&2; exit 1; }
