#!/bin/sh
# Runs inside the test VM (tests/clock/run.sh), as /init's test, under busybox sh. The VM has
# a clock of its own, so this steps the real CLOCK_REALTIME with `date -s` (what NTP or a
# suspend does) while the real scheduler runs and delivers into a real supervisor + listener.
#
# The schedule:   * * * * *  svc tick       and    30 10 * * *  svc daily
#
#   start      10:00:57  the 10:01 tick fires on time
#   forward    11:00:57  (+1 h) the jump swallowed 59 ticks and the 10:30 daily: each line
#                        runs once, at once (due = its first missed time), then 11:01 on time
#   back       11:00:55  (-5 s, just after 11:01 fired) 11:01 comes round again and must
#                        not fire twice; then 11:01:57 (+1 min) and 11:02 fires
#   days on    3 days later, 11:02:57: past the 24 h catch-up window, so each line logs
#                        its first swallowed fire as missed, and runs once for its first
#                        fire within the window; then 11:03 on time
#   far back   09:02:57 on the first day (-3 days): taken as a clock that was wrong:
#                        planning restarts, and 09:03 fires
#
# After each step the daemon must log `wall clock was set` (woken by the step itself through
# TFD_TIMER_CANCEL_ON_SET, not by its old deadline). At the end every request has its
# `done ... exit=0`, every callback ran once per request, no zombie is left, and TERM stops
# the scheduler with 0. Prints `clock: N passed, M failed`.
set -u
export PATH=/bin TZ=UTC
PASS=0
FAIL=0
SLOG=/tmp/scheduler.log
CBLOG=/tmp/callbacks.log
DAY=2026-06-01

ok() { echo "clock: ok   - $*"; PASS=$((PASS + 1)); }
bad() { echo "clock: FAIL - $*"; FAIL=$((FAIL + 1)); }
# Seconds since boot: deadlines must not move when the wall clock is stepped.
up() { cut -d. -f1 /proc/uptime; }

# matching PART...: the scheduler's log lines that contain every PART.
matching() {
    out=$(cat "$SLOG")
    for p in "$@"; do
        out=$(printf '%s\n' "$out" | grep -F -- "$p")
    done
    [ -n "$out" ] && printf '%s\n' "$out"
}
count() { matching "$@" | grep -c . ; }

# wait_count SECS N PART...: wait until at least N log lines contain every PART.
wait_count() {
    secs=$1 n=$2
    shift 2
    end=$(($(up) + secs))
    while [ "$(count "$@")" -lt "$n" ]; do
        if [ "$(up)" -ge "$end" ]; then
            return 1
        fi
        sleep 0.1
    done
}

# due [DATE] HH:MM: a due time as the log gives it.
due() { if [ $# = 2 ]; then echo "due=$1T$2:00"; else echo "due=${DAY}T$1:00"; fi; }

# settle: wait until every request so far has its `done` (a line whose run is still going
# when its next fire comes is skipped by design; the steps below are not about that).
settle() {
    wait_count 20 "$(count " request ")" " done " || bad "a request got no done within 20 s"
}

# step [DATE] TIME: set the wall clock, then wait for the daemon to say it saw the step.
SETS=0
step() {
    settle
    if [ $# = 2 ]; then set -- "$1 $2"; else set -- "$DAY $1"; fi
    date -u -s "$1" >/dev/null
    SETS=$((SETS + 1))
    if wait_count 20 "$SETS" "wall clock was set"; then
        ok "clock set to $1: the daemon woke at once"
    else
        bad "clock set to $1: no 'wall clock was set' within 20 s"
    fi
}

# expect_requests N WHAT PART...: exactly N request lines with every PART, within 20 s.
expect_requests() {
    n=$1 what=$2
    shift 2
    wait_count 20 "$n" " request " "$@" || true
    got=$(count " request " "$@")
    if [ "$got" = "$n" ]; then
        ok "$what"
    else
        bad "$what: $got requests with $*, expected $n"
    fi
}

mkdir -p /usr/local/conf /run
cat >/usr/local/conf/schedule.cron <<'EOF'
* * * * *   svc tick
30 10 * * * svc daily
EOF
cat >/usr/local/conf/docker-callbacks.sh <<'EOF'
CB_tick() { echo "tick $BOSUN_REQUEST_ID $(date -u +%H:%M:%S)" >> /tmp/callbacks.log; }
CB_daily() { echo "daily $BOSUN_REQUEST_ID $(date -u +%H:%M:%S)" >> /tmp/callbacks.log; }
EOF
: >"$CBLOG"

date -u -s "$DAY 10:00:57" >/dev/null
BOSUN_SERVICE=svc BOSUN_SETUP= BOSUN_CALLBACKS=/usr/local/conf/docker-callbacks.sh \
    supervisor -- sleep 100000 >/tmp/supervisor.log 2>&1 &
SUP=$!
end=$(($(up) + 20))
while [ ! -S /run/svc-request.sock ] && [ "$(up)" -lt "$end" ]; do sleep 0.1; done
scheduler /usr/local/conf/schedule.cron >"$SLOG" 2>&1 &
SCHED=$!
if wait_count 20 1 "started" "entries=2"; then ok "scheduler started"; else bad "scheduler did not start"; fi

# On time.
expect_requests 1 "10:01 tick fires on time" "request=tick" "$(due 10:01)"

# Forward one hour.
step 11:00:57
expect_requests 1 "jump forward: the tick runs once for its 59 missed slots" "request=tick" "$(due 10:02)"
expect_requests 1 "jump forward: the daily 10:30 it jumped over runs once" "request=daily" "$(due 10:30)"
expect_requests 1 "after the jump: 11:01 tick fires on time" "request=tick" "$(due 11:01)"
late=$(count "late fire")
if [ "$late" = 2 ]; then ok "both late runs logged as late"; else bad "late fire logged $late times, expected 2"; fi

# Back five seconds, across the 11:01 fire that just happened.
step 11:00:55
end=$(($(up) + 30))
while [ "$(date -u +%H%M%S)" -lt 110104 ] && [ "$(up)" -lt "$end" ]; do sleep 0.1; done
step 11:01:57
expect_requests 1 "step back: 11:01 came round twice and fired once" "request=tick" "$(due 11:01)"
expect_requests 1 "then 11:02 fires on time" "request=tick" "$(due 11:02)"

# Three days on: beyond the catch-up window.
step 2026-06-04 11:02:57
for l in "line=1 service=svc action=tick $(due 11:03)" "line=2 service=svc action=daily $(due 2026-06-02 10:30)"; do
    # shellcheck disable=SC2086 # the words are the parts to match
    if wait_count 20 1 "missed: the clock jumped past it" $l; then ok "days on: missed logged ($l)"; else bad "days on: no missed line with $l"; fi
done
expect_requests 1 "days on: the tick runs once for its first fire in the window" "request=tick" "$(due 2026-06-03 11:03)"
expect_requests 1 "days on: the daily runs once, for today's 10:30" "request=daily" "$(due 2026-06-04 10:30)"
expect_requests 1 "days on: 11:03 fires on time" "request=tick" "$(due 2026-06-04 11:03)"
expect_requests 0 "days on: the missed fires did not run" "$(due 11:03)"
expect_requests 0 "days on: the missed daily did not run" "$(due 2026-06-02 10:30)"

# Back three days: a clock that was wrong.
step 09:02:57
if wait_count 20 1 "stepped back more than an hour"; then ok "far step back logged"; else bad "far step back not logged"; fi
expect_requests 1 "after the far step back, 09:03 fires" "request=tick" "$(due 09:03)"
expect_requests 2 "the daily ran twice in all (day 1, day 4)" "request=daily"

# Every request delivered and done, every callback run once.
requests=$(count " request ")
wait_count 20 "$requests" " done " "exit=0" || true
dones=$(count " done " "exit=0")
end=$(($(up) + 20))
while [ "$(grep -c . "$CBLOG")" -lt "$requests" ] && [ "$(up)" -lt "$end" ]; do sleep 0.1; done
runs=$(grep -c . "$CBLOG")
if [ "$dones" = "$requests" ] && [ "$runs" = "$requests" ]; then
    ok "all $requests requests done with exit=0, each callback ran once"
else
    bad "$requests requests, $dones done exit=0, $runs callback runs"
fi
if [ "$(count "missed")" = 2 ] && [ "$(count "skipped")" = 0 ]; then ok "nothing else missed, nothing skipped"; else bad "other missed/skipped lines in the log"; fi

zombies=$(grep -l '^[0-9]* ([^)]*) Z' /proc/[0-9]*/stat 2>/dev/null | grep -c .)
if [ "$zombies" = 0 ]; then ok "no zombies"; else bad "$zombies zombies"; fi

if kill -0 "$SUP" 2>/dev/null; then ok "supervisor still up"; else bad "supervisor gone"; fi
kill -TERM "$SCHED"
wait "$SCHED"
code=$?
if [ "$code" = 0 ]; then ok "scheduler exits 0 on TERM"; else bad "scheduler exited $code on TERM"; fi
kill -TERM "$SUP"
wait "$SUP"

if [ "$FAIL" != 0 ]; then
    echo "--- scheduler log"
    cat "$SLOG"
    echo "--- callbacks"
    cat "$CBLOG"
    echo "--- supervisor log"
    cat /tmp/supervisor.log
fi
echo "clock: $PASS passed, $FAIL failed"
