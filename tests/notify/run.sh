#!/usr/bin/env bash
# The stack's `notify` action (service/scheduler/bin/docker-callbacks.sh, the real file)
# against a real HTTP server on 127.0.0.1, with no Docker: the workspace's own binaries, a
# real supervisor (and listener) for a fake target service and one for the scheduler service,
# whose main process is the real scheduler daemon, as in the stack:
#
#   1. a scheduled run that fails (`@reboot target fail` under ON_FAILURE=scheduler notify)
#      is told: one JSON POST to NOTIFY_URL that parses, with the fields, the summary and the
#      run's real last 20 lines (quotes, backslashes, a tab, non-ASCII, a byte that is not
#      UTF-8, a line cut at 300 bytes, <!channel> escaped in `text` only), and a POST to
#      HEALTHCHECKS_URL/fail (its query string kept at the end) carrying the lines
#   2. a scheduled run that succeeds (ON_SUCCESS=, after an edit of the schedule and a
#      restart of the daemon, which fires @reboot again) pings HEALTHCHECKS_URL itself;
#      sent by hand: a run that printed nothing, a missed run (exit and id null)
#   3. a webhook answering 500: curl tries 3 times per URL and stops; notify exits 1, which
#      the scheduler logs; nothing notifies about the notification
#   4. nothing listening: notify exits 1 at once, saying why, never the URL
#   5. bad arguments: a one-line error, exit 64
#   and, while a delivery hangs (the server answers late), no URL nor its token on any
#   process's command line (`ps -eo args`, as root and as nobody), nor in the log
#
# Every wait polls for an event with a deadline. Needs python3, curl and iconv.
# Env: NOTIFY_KEEP=1 keeps the temp directory (logs, recorded requests).
# The assertions are python3 in single quotes: nothing in them is for bash to expand.
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
START=$SECONDS
E2E_TAG=notify
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

for tool in python3 curl iconv timeout; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt-get install -y python3 curl)"; exit 1; }
done

log "cargo build --bins"
cargo build -q --bins
BIN=$(cargo metadata -q --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug

T=$(mktemp -d /tmp/bosun-notify.XXXXXX)
mkdir -p "$T/run" "$T/http"
PIDS=()
SERVER_PID=
cleanup() {
    local rc=$? p end
    trap - EXIT INT TERM
    # TERM: each supervisor stops its main process and its listener; KILL after 10 s.
    for p in "${PIDS[@]}" $SERVER_PID; do kill -TERM "$p" 2>/dev/null || true; done
    end=$((SECONDS + 10))
    for p in "${PIDS[@]}" $SERVER_PID; do
        while kill -0 "$p" 2>/dev/null && ((SECONDS < end)); do sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if ((FAILED > 0 || rc != 0)); then
        for f in target.log scheduler.log server.log; do
            log "$f (last 40 lines):"
            tail -n 40 "$T/$f" 2>/dev/null | sed 's/^/    /'
        done
    fi
    if [ "${NOTIFY_KEEP:-0}" = 1 ]; then log "NOTIFY_KEEP=1: $T kept"; else rm -rf "$T"; fi
    finish "notify" "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the peers --------------------------------------------------------------------------
python3 tests/notify/server.py "$T/http" 2>"$T/server.log" &
SERVER_PID=$!
wait_until 10 "the HTTP server's port" test -s "$T/http/port"
PORT=$(cat "$T/http/port")
log "HTTP server on 127.0.0.1:$PORT"

# The target's actions. `fail`: 15 filler lines, then the awkward ones, exit 3; its last 20
# lines are "line 2" .. "line 15" and the six below.
cat >"$T/target.sh" <<'CALLBACKS'
CB_fail() {
    local i
    for i in $(seq 1 15); do echo "line $i"; done
    printf '%s\n' 'a "quoted" word and a back\slash' $'a\ttab' 'non-ASCII: é ✓' '<!channel> & more'
    printf 'x%.0s' $(seq 1 500); echo
    printf 'bad byte: \xff end\n'  # on stdout: its order against stderr lines is not defined
    return 3
}
CB_succeed() { echo 'all good: "fine"'; }
CB_quiet() { return 2; }
CALLBACKS

# service NAME LOGFILE [ENV=VALUE...] -- MAIN...: a supervisor for NAME, as in a container.
service() {
    local name=$1 logfile=$2
    shift 2
    local -a envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env BOSUN_SERVICE="$name" BOSUN_RUN_DIR="$T/run" BOSUN_STATE_DIR="$T/$name-state" \
        BOSUN_CONFIG="$T/none.toml" BOSUN_SETUP= BOSUN_LOG=info PATH="$BIN:$PATH" \
        "${envs[@]}" "$BIN/supervisor" -- "$@" >"$logfile" 2>&1 &
    PIDS+=($!)
}
# send ARGS...: `scheduler send ARGS`, as the stack's scheduler container would.
send() { BOSUN_RUN_DIR=$T/run timeout 60 "$BIN/scheduler" send "$@"; }
offers() { send "$1" help | grep -qx "$2"; }

service target "$T/target.log" BOSUN_CALLBACKS="$T/target.sh" -- sleep 100000
wait_until 30 "the target service to offer fail" offers target fail

HC_PATH=/hc/5f8a0b1e-uuid
cat >"$T/schedule.cron" <<'CRON'
ON_FAILURE=scheduler notify
@reboot target fail
CRON
service scheduler "$T/scheduler.log" BOSUN_CALLBACKS="$ROOT/service/scheduler/bin/docker-callbacks.sh" \
    NOTIFY_URL="http://127.0.0.1:$PORT/hook" HEALTHCHECKS_URL="http://127.0.0.1:$PORT$HC_PATH?create=1" \
    NOTIFY_HOST=testhost BOSUN_RETRY_WINDOW=20s -- "$BIN/scheduler" "$T/schedule.cron"

# ---- helpers ----------------------------------------------------------------------------
requests() { find "$T/http" -name 'req-*.json' | wc -l; }
at_least() { (($(requests) >= $1)); }
# logged N PATTERN: the scheduler container's log has at least N lines matching PATTERN.
logged() { (($(grep -cE -- "$2" "$T/scheduler.log") >= $1)); }
# verify SKIP PYTHON [ARG...]: run an assertion script over the recorded requests after the
# first SKIP (a list `new` of dicts, `body` decoded from base64, in arrival order; `reqs`
# has them all); it raises on a failed assertion. ARGs are sys.argv[2:].
verify() {
    local skip=$1 code=$2
    shift 2
    python3 - "$T/http" "$@" <<PY
import base64, glob, json, os, sys
d = sys.argv[1]
reqs = []
for n in sorted(int(os.path.basename(p)[4:-5]) for p in glob.glob(os.path.join(d, "req-*.json"))):
    r = json.load(open(os.path.join(d, f"req-{n}.json")))
    r["body"] = base64.b64decode(r["body_b64"])
    reqs.append(r)
new = reqs[$skip:]
$code
PY
}

# ---- 1. a scheduled failure ------------------------------------------------------------
check_failure_told() {
    wait_until 30 "the webhook and the healthchecks ping of the failed run" at_least 2 || return 1
    wait_until 10 "the scheduler to log the notification's outcome" \
        logged 1 'scheduler::daemon: done run=[0-9]+ service=scheduler id=[0-9]+ exit=0 ' || return 1
    grep -E '\[notify#[0-9]+\] notify: ' "$T/scheduler.log" | sed 's/^/    /'
    grep -qE '\[notify#[0-9]+\] notify: target fail user=- result=failed exit=3 id=[0-9]+$' "$T/scheduler.log" ||
        fail "no 'notify: target fail user=- result=failed exit=3 id=N' line in the log" || return 1
    verify 0 '
assert len(reqs) == 2, f"{len(reqs)} requests, not 2"
hook = [r for r in reqs if r["path"] == "/hook"]
hc = [r for r in reqs if r["path"] != "/hook"]
assert len(hook) == 1 and len(hc) == 1, [r["path"] for r in reqs]
h = hook[0]
assert h["method"] == "POST", h["method"]
assert h["headers"]["content-type"] == "application/json", h["headers"]
m = json.loads(h["body"].decode("utf-8"))  # strict: no raw control characters, valid UTF-8
want = {"service": "target", "action": "fail", "user": None, "result": "failed", "exit": 3, "host": "testhost"}
for k, v in want.items():
    assert m[k] == v, f"{k}: {m[k]!r}, not {v!r}"
assert isinstance(m["id"], int) and m["id"] > 0, m["id"]
lines = ["line %d" % i for i in range(2, 16)] + [
    "a \"quoted\" word and a back\\slash", "a\ttab", "non-ASCII: é ✓", "<!channel> & more",
    "x" * 300 + "…"]
# The byte that is not UTF-8: U+FFFD from a journal that replaces it, or the text \xff
# from one that escapes it (the listener escapes in a log reply what is not text).
bad = m["lines"][-1]
assert bad in ("bad byte: \ufffd end", "bad byte: \\xff end"), repr(bad)
assert m["lines"][:-1] == lines, "lines:\n" + "\n".join(map(repr, m["lines"]))
t = m["text"]
assert t.startswith("testhost: target fail FAILED with exit 3 (run %d)\n" % m["id"]), t
assert "```\nline 2\n" in t and t.endswith(bad + "\n```"), t
assert "&lt;!channel&gt; &amp; more" in t and "<!channel>" not in t, t
assert "a \"quoted\" word and a back\\slash\na\ttab\n" in t, t
p = hc[0]
assert p["method"] == "POST" and p["path"] == sys.argv[2] + "/fail?create=1", (p["method"], p["path"])
b = p["body"].decode("utf-8")
assert b.startswith("testhost: target fail FAILED with exit 3 (run %d)\nline 2\n" % m["id"]), b
assert b.endswith(bad + "\n"), b
print("    webhook:", json.dumps(m, ensure_ascii=False)[:300], "...")
print("    healthchecks:", p["method"], p["path"], len(p["body"]), "bytes")
' "$HC_PATH"
}
check "a scheduled failure is told: JSON to NOTIFY_URL with the run's real lines, a ping to HEALTHCHECKS_URL/fail" check_failure_told

# ---- 2. a scheduled success -------------------------------------------------------------
check_success_told() {
    local r
    # The edit is read about 100 ms after it, by inotify; the restart starts the daemon
    # again from the file, so the new @reboot fires either way.
    printf 'ON_SUCCESS=scheduler notify\n@reboot forum target succeed\n' >"$T/schedule.cron.new"
    mv "$T/schedule.cron.new" "$T/schedule.cron"
    r=$(send scheduler restart) || fail "restart: $r" || return 1
    log "  scheduler restart: $r"
    wait_until 30 "the ping of the successful run" at_least 4 || return 1
    wait_until 10 "the scheduler to log the second notification's outcome" \
        logged 2 'scheduler::daemon: done run=[0-9]+ service=scheduler id=[0-9]+ exit=0 ' || return 1
    grep -qE '\[notify#[0-9]+\] notify: target succeed user=forum result=ok exit=0 id=[0-9]+$' "$T/scheduler.log" ||
        fail "no 'notify: target succeed user=forum result=ok exit=0 id=N' line" || return 1
    verify 2 '
assert len(new) == 2, [r["path"] for r in new]
m = json.loads([r for r in new if r["path"] == "/hook"][0]["body"].decode("utf-8"))
assert (m["user"], m["result"], m["exit"], m["lines"]) == ("forum", "ok", 0, ["all good: \"fine\""]), m
assert m["text"].startswith("testhost: target succeed (user forum) ok (run %d)\n" % m["id"]), m["text"]
p = [r for r in new if r["path"] != "/hook"][0]
assert p["path"] == sys.argv[2] + "?create=1", p["path"]
print("    healthchecks:", p["method"], p["path"], "body", repr(p["body"].decode()))
' "$HC_PATH"
}
check "a scheduled success (ON_SUCCESS) pings HEALTHCHECKS_URL itself" check_success_told

# ---- 2b. a run that printed nothing ------------------------------------------------------
check_quiet() {
    local r id before out
    r=$(send target quiet) && fail "quiet exited 0" && return 1
    id=$(sed -n 's/^accepted \([0-9]*\) quiet$/\1/p' <<<"$r")
    [ -n "$id" ] || fail "no accepted line: $r" || return 1
    before=$(requests)
    out=$(send scheduler notify target quiet - failed 2 "$id") || fail "notify: $out" || return 1
    verify "$before" '
assert len(new) == 2, [r["path"] for r in new]
m = json.loads([r for r in new if r["path"] == "/hook"][0]["body"].decode("utf-8"))
assert m["lines"] == [] and m["text"] == "testhost: target quiet FAILED with exit 2 (run %s)\n(it printed nothing)" % sys.argv[2], m
print("    webhook text:", repr(m["text"]))
' "$id"
}
check "a run that printed nothing: no lines, and the text says so" check_quiet

# ---- 2c. a missed run: no exit code, no run id ----------------------------------------------
check_missed() {
    local before out
    before=$(requests)
    out=$(send scheduler notify target fail forum missed - -) || fail "notify: $out" || return 1
    verify "$before" '
assert sorted(r["path"] for r in new) == sorted(["/hook", sys.argv[2] + "/fail?create=1"]), [r["path"] for r in new]
m = json.loads([r for r in new if r["path"] == "/hook"][0]["body"].decode("utf-8"))
assert (m["user"], m["result"], m["exit"], m["id"], m["lines"]) == ("forum", "missed", None, None, []), m
assert m["text"].startswith("testhost: target fail (user forum) MISSED: not run"), m["text"]
print("    webhook text:", repr(m["text"]))
' "$HC_PATH"
}
check "a missed run: exit and id null, no lines, a ping to /fail" check_missed

# ---- 2d. the URLs on no command line ------------------------------------------------------
check_no_url_in_argv() {
    local before pid out rc=0 args curls
    before=$(requests)
    touch "$T/http/slow"
    send scheduler notify target fail forum missed - - >"$T/slow.out" 2>&1 &
    pid=$!
    wait_until 20 "the webhook delivery to hang in the server" \
        test -e "$T/http/held-$((before + 1))" || { rm -f "$T/http/slow"; return 1; }
    # The delivery is in flight: curl runs, waiting for the answer. What every local user
    # sees of it (ps reads /proc/PID/cmdline, readable by all), as root and as nobody:
    args=$(ps -eo args)
    curls=$(grep -c '^curl ' <<<"$args" || true)
    log "  processes while the delivery hangs: $curls curl ($(grep -m1 '^curl ' <<<"$args" | cut -c1-150))"
    if command -v setpriv >/dev/null; then
        args+=$'\n'$(setpriv --reuid=65534 --regid=65534 --clear-groups ps -eo args)
    fi
    rm -f "$T/http/slow"
    wait "$pid" || rc=$?
    ((curls >= 1)) || fail "no curl process while the delivery hung: the check saw nothing" || return 1
    ! grep -E "127\.0\.0\.1:$PORT|:$PORT/hook|$HC_PATH|5f8a0b1e" <<<"$args" ||
        fail "a URL or its token on a command line" || return 1
    ((rc == 0)) || fail "notify exited $rc: $(cat "$T/slow.out")" || return 1
    ! grep -qE "127\.0\.0\.1:$PORT|5f8a0b1e" "$T/scheduler.log" || fail "a URL is in the log" || return 1
    verify "$before" '
assert sorted(r["path"] for r in new) == sorted(["/hook", sys.argv[2] + "/fail?create=1"]), [r["path"] for r in new]
m = json.loads([r for r in new if r["path"] == "/hook"][0]["body"].decode("utf-8"))
assert (m["user"], m["result"]) == ("forum", "missed"), m
' "$HC_PATH"
}
check "a delivery in flight: neither URL nor its token on any command line (ps), nor in the log" check_no_url_in_argv

# ---- 3. a webhook that answers 500 ------------------------------------------------------
check_500() {
    local before after before_reqs
    before_reqs=$(requests)
    before=$(grep -cE '\[notify#[0-9]+\] notify: target fail user=- result=failed' "$T/scheduler.log" || true)
    touch "$T/http/fail"
    printf 'ON_FAILURE=scheduler notify\n@reboot target fail\n' >"$T/schedule.cron.new"
    mv "$T/schedule.cron.new" "$T/schedule.cron"
    send scheduler restart >/dev/null || return 1
    # curl: 3 attempts per URL (--retry 2), 1 s and 2 s apart.
    wait_until 60 "the scheduler to log that the notification failed" \
        logged 1 'scheduler::daemon: done: action failed run=[0-9]+ service=scheduler id=[0-9]+ exit=1 ' || return 1
    grep -E '\[notify#[0-9]+\] notify: .*not delivered' "$T/scheduler.log" | sed 's/^/    /'
    logged 1 '\[notify#[0-9]+\] notify: NOTIFY_URL: not delivered: HTTP 500: broken$' ||
        fail "no 'NOTIFY_URL: not delivered: HTTP 500: broken' line" || return 1
    logged 1 '\[notify#[0-9]+\] notify: HEALTHCHECKS_URL/fail: not delivered: HTTP 500: broken$' ||
        fail "no 'HEALTHCHECKS_URL/fail: not delivered' line" || return 1
    log "  scheduler: $(grep -E 'service=scheduler .*exit=1 .*' "$T/scheduler.log" | grep 'done: action failed' | tail -n 1)"
    # One notify run for the new failure (the daemon also tells the line's previous outcome
    # again at start, with that run's key: the service replays it and runs nothing), and
    # none about the failed notification: no request `notify scheduler notify ...`.
    after=$(grep -cE '\[notify#[0-9]+\] notify: target fail user=- result=failed' "$T/scheduler.log" || true)
    ((after == before + 1)) || fail "$((after - before)) notify runs, not 1" || return 1
    ! grep -E 'request="notify scheduler notify' "$T/scheduler.log" ||
        fail "a notification about a notification" || return 1
    ! grep -q "127.0.0.1:$PORT/" "$T/scheduler.log" || fail "a URL is in the log" || return 1
    verify "$before_reqs" '
paths = sorted(r["path"] for r in new)
assert paths == sorted(["/hook"] * 3 + [sys.argv[2] + "/fail?create=1"] * 3), paths
print("    requests:", paths)
' "$HC_PATH"
}
check "a webhook answering 500: 3 tries per URL, notify exits 1, logged, no notification of the notification" check_500

# ---- 4. nothing listening ---------------------------------------------------------------
check_refused() {
    local out rc=0 id t=$SECONDS
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    id=$(sed -nE 's/.*\[notify#[0-9]+\] notify: target fail user=- result=failed exit=3 id=([0-9]+)$/\1/p' "$T/scheduler.log" | tail -n 1)
    out=$(send scheduler notify target fail - failed 3 "$id") || rc=$?
    log "  scheduler send scheduler notify target fail - failed 3 $id -> exit $rc in $((SECONDS - t))s: $(tr '\n' '|' <<<"$out")"
    ((rc == 1)) || fail "exit $rc, not 1" || return 1
    logged 1 'notify: NOTIFY_URL: not delivered: curl: \(7\) Failed to connect' ||
        fail "no 'NOTIFY_URL: not delivered: curl: (7) Failed to connect ...' line" || return 1
    logged 1 'notify: HEALTHCHECKS_URL/fail: not delivered: curl: \(7\)' || return 1
    ! grep -q "127.0.0.1:$PORT/" "$T/scheduler.log" || fail "a URL is in the log"
}
check "nothing listening: notify exits 1 at once and says why" check_refused

# ---- 5. bad arguments -------------------------------------------------------------------
check_bad_args() {
    local out rc=0
    out=$(send scheduler notify target fail) || rc=$?
    ((rc == 64)) || fail "2 arguments: exit $rc, not 64: $out" || return 1
    logged 1 "notify: takes SERVICE ACTION USER RESULT EXIT ID \('-' where none\), not 2 argument\(s\)" || return 1
    rc=0
    out=$(send scheduler notify target fail - bogus 3 1) || rc=$?
    ((rc == 64)) || fail "RESULT bogus: exit $rc, not 64: $out" || return 1
    logged 1 "notify: RESULT is ok, failed, missed or refused, not 'bogus'" || return 1
    rc=0
    out=$(send scheduler notify ../etc fail - failed 3 1) || rc=$?
    ((rc == 64)) || fail "SERVICE ../etc: exit $rc, not 64: $out" || return 1
    grep -E '\[notify#[0-9]+\] notify: (takes|RESULT|SERVICE) ' "$T/scheduler.log" | sed 's/^/    /'
}
check "bad arguments: one line saying what is wrong, exit 64" check_bad_args
