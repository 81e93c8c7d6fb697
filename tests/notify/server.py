#!/usr/bin/env python3
"""A webhook receiver for tests/notify/run.sh.

    server.py DIR [ADDRESS]

Binds ADDRESS (127.0.0.1) on a free port and writes the port to DIR/port once it listens.
Records request N (1, 2, ...) as DIR/req-N.json, written whole then renamed into place:
{"method", "path", "headers": {name: value}, "body_b64"}. Answers 500 while DIR/fail
exists, 200 "ok" otherwise (Slack's answer to a good webhook). While DIR/slow exists, a
request is recorded, DIR/held-N is made, and the answer waits until DIR/slow is removed
(at most 60 s): a delivery that hangs, for a look at the processes meanwhile. Runs until
killed.
"""
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
LOCK = threading.Lock()
COUNT = 0


class Handler(BaseHTTPRequestHandler):
    def record(self):
        global COUNT
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with LOCK:
            COUNT += 1
            name = os.path.join(DIR, f"req-{COUNT}.json")
            with open(name + ".tmp", "w") as f:
                json.dump(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body_b64": base64.b64encode(body).decode(),
                    },
                    f,
                )
            os.rename(name + ".tmp", name)
            n = COUNT
        slow = os.path.join(DIR, "slow")
        if os.path.exists(slow):
            open(os.path.join(DIR, f"held-{n}"), "w").close()
            end = time.monotonic() + 60
            while os.path.exists(slow) and time.monotonic() < end:
                time.sleep(0.05)
        failing = os.path.exists(os.path.join(DIR, "fail"))
        answer = b"broken\n" if failing else b"ok"
        self.send_response(500 if failing else 200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_HEAD = record

    def log_message(self, fmt, *args):
        sys.stderr.write("server: " + (fmt % args) + "\n")


server = ThreadingHTTPServer((sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", 0), Handler)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
server.serve_forever()
