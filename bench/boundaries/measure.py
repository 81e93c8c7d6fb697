#!/usr/bin/env python3
"""Interleaved latencies of two stacks, side by side: the build before the trust
boundaries and the build with them. Each round asks each stack once per probe, in an
order that alternates, so that noise on the machine falls on both alike.

Probes: `ping` on nginx's request socket and `rotate-logs` on the scheduler's (a real
action whose callback does nothing: the listener, the journal's fsync'd start, bash; the
same callback before and after, so only bosun's side differs), from the host; the forum's
page (nginx -> php-fpm -> MariaDB) and a static file through nginx. Prints a markdown
table: medians, p90, and after/before.
"""
import argparse
import http.client
import socket
import statistics
import sys
import time


def request(path, line, deadline=30.0):
    t = time.perf_counter()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(deadline)
    s.connect(path)
    s.sendall(line.encode() + b"\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    dt = time.perf_counter() - t
    text = data.decode(errors="replace")
    if line == "ping":
        ok = text.strip() == "pong"
    else:
        ok = "exit=0" in text
    if not ok:
        raise SystemExit(f"unexpected reply to {line!r} on {path}: {text!r}")
    return dt


def page(port, path, want):
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    dt = time.perf_counter() - t
    if r.status != 200 or want.encode() not in body:
        raise SystemExit(f"GET {path} on {port}: {r.status} {body[:200]!r}")
    return dt


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True,
                    help="NGINX_SOCKET,SCHEDULER_SOCKET,PORT of the build before")
    ap.add_argument("--after", required=True,
                    help="NGINX_SOCKET,SCHEDULER_SOCKET,PORT of the build after")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--action-rounds", type=int, default=40)
    ap.add_argument("--static", default="/style.css")
    a = ap.parse_args()
    stacks = {}
    for name, spec in (("before", a.before), ("after", a.after)):
        sock, action_sock, port = spec.rsplit(",", 2)
        stacks[name] = (sock, int(port), action_sock)
    probes = {
        "ping (request socket)": lambda s: request(s[0], "ping"),
        "forum page (nginx, php-fpm, MariaDB)": lambda s: page(s[1], "/", 'id="visits"'),
        "static file (nginx)": lambda s: page(s[1], a.static, ""),
    }
    action = "trivial action (listener, journal, bash)"
    res = {(p, n): [] for p in list(probes) + [action] for n in stacks}
    # warm up: php-fpm started on demand, caches filled
    for s in stacks.values():
        for f in probes.values():
            for _ in range(5):
                f(s)
    order = list(stacks)
    for r in range(a.rounds):
        order.reverse()
        for name in order:
            for p, f in probes.items():
                res[(p, name)].append(f(stacks[name]))
            if r < a.action_rounds:
                res[(action, name)].append(request(stacks[name][2], "rotate-logs"))
    print("| probe | before p50 | after p50 | after/before | before p90 | after p90 | n |")
    print("|---|---|---|---|---|---|---|")
    for p in list(probes) + [action]:
        b, af = res[(p, "before")], res[(p, "after")]
        mb, ma = statistics.median(b) * 1e3, statistics.median(af) * 1e3
        print(f"| {p} | {mb:.2f} ms | {ma:.2f} ms | {ma / mb:.2f}x | "
              f"{pct(b, 90) * 1e3:.2f} ms | {pct(af, 90) * 1e3:.2f} ms | {len(b)} |")


if __name__ == "__main__":
    sys.exit(main())
