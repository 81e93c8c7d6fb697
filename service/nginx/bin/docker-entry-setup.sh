# shellcheck shell=bash
# nginx service: sourced by bash (as root) before nginx starts. Fails fast on a bad config.
mkdir -p /var/log/nginx
rm -f /run/nginx.pid
/usr/sbin/nginx -t -q -c /usr/local/conf/nginx.conf || { echo "nginx-setup: nginx.conf is invalid" >&2; exit 1; }
