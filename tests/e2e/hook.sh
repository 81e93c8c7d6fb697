#!/bin/bash
# The e2e's webhook receiver, one HTTP request per run: socat (in the `hook` container of
# docker-compose.test.yaml, on the scheduler's own network, not on the host) runs it with
# the connection on stdin and stdout. Records the request as /out/req-N.json (N = 1, 2, ...
# in arrival order), written whole then renamed, in tests/notify/server.py's format
# ({"method", "path", "headers": {}, "body_b64"}), and answers 200 "ok".
set -u
out=${HOOK_OUT:-/out}
IFS=' ' read -r method path _ || exit 0
len=0
while IFS= read -r line; do
    line=${line%$'\r'}
    [ -z "$line" ] && break
    case ${line,,} in
        content-length:*) len=${line#*:}; len=${len//[!0-9]/} ;;
    esac
done
# bash's read takes no more than the headers from a pipe: the body is what is left.
body=$(head -c "${len:-0}" | base64 -w0)
exec 9>"$out/.lock"
flock 9
n=$(( $(find "$out" -maxdepth 1 -name 'req-*.json' | wc -l) + 1 ))
printf '{"method":"%s","path":"%s","headers":{},"body_b64":"%s"}\n' \
    "${method//[^A-Z]/}" "${path//[\"\\]/}" "$body" >"$out/.req-$n"
mv "$out/.req-$n" "$out/req-$n.json"
flock -u 9
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'
