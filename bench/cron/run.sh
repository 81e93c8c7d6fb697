#!/usr/bin/env bash
# bosun scheduler vs Debian's cron, side by side, on the same `* * * * *` work.
#
#   bench/cron/run.sh [MINUTES]          (default 10; run as root: it starts Debian's cron)
#
# Environment: IDLE_MINUTES (2), STRACE_MINUTES (2), LINES (10000), SCHEDULER_BIN (a built
# scheduler; default: cargo build --release -p scheduler), KEEP=1 keeps the work directory.
#
# What it measures:
#   1. lateness of each fire after the minute boundary (p50/p99/max), over MINUTES minutes:
#      cron: the job's own `date +%s.%N`; scheduler: the instant a socket peer (standing in
#      for a service's listener) has read the request line;
#   2. wake-ups and CPU time of each daemon (all its threads, /proc/PID/task/*/schedstat:
#      run-queue arrivals and ns on CPU) over the same window;
#   3. idle: both get a schedule that does not fire (`0 0 1 1 *`); wake-ups per minute over
#      IDLE_MINUTES, then syscalls per minute from `strace -c -f` over STRACE_MINUTES;
#   4. reload: time from an editor-style rename of schedule.cron to "schedule reloaded";
#   5. parse time and peak memory of `scheduler check` and `scheduler next` on a LINES-line
#      schedule (best of 5).
# Prints a markdown report on stdout; progress goes to stderr.
set -euo pipefail

MINUTES=${1:-${MINUTES:-10}}
IDLE_MINUTES=${IDLE_MINUTES:-2}
STRACE_MINUTES=${STRACE_MINUTES:-2}
LINES=${LINES:-10000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/bosun-bench.XXXXXX)
CRON_FILE=/etc/cron.d/bosun-bench
say() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || { say "run as root (Debian's cron runs system jobs only as root)"; exit 1; }

need=()
command -v cron >/dev/null || need+=(cron)
command -v strace >/dev/null || need+=(strace)
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
# In a container pam_loginuid cannot set the login uid and cron refuses to run jobs.
if grep -qE '^session\s+required\s+pam_loginuid.so' /etc/pam.d/cron 2>/dev/null; then
    say "making pam_loginuid optional for cron (container)"
    sed -i -E 's/^(session\s+)required(\s+pam_loginuid.so)/\1optional\2/' /etc/pam.d/cron
fi

BIN=${SCHEDULER_BIN:-}
if [ -z "$BIN" ]; then
    say "building the scheduler (release)"
    (cd "$ROOT" && cargo build --release -q -p scheduler >&2)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/scheduler
fi

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -f "$CRON_FILE"
    [ "${KEEP:-}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/run" "$WORK/conf"

# The service stand-in: answers like a listener and stamps each request as it is read.
cat > "$WORK/peer.py" <<'EOF'
import os, socket, sys, time
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
n = 0
with open(out, "a", buffering=1) as f:
    while True:
        c, _ = s.accept()
        line = c.makefile("rb").readline()
        f.write("%.6f\n" % time.time())
        n += 1
        c.sendall(b"accepted %d tick\ndone %d exit=0 secs=0.000\n" % (n, n))
        c.close()
EOF
python3 "$WORK/peer.py" "$WORK/run/bench-request.sock" "$WORK/sched.times" &
PIDS+=($!)

printf '* * * * * bench tick\n' > "$WORK/conf/schedule.cron"
printf '* * * * * root date +\\%%s.\\%%N >> %s/cron.times\n' "$WORK" > "$CRON_FILE"
chmod 0644 "$CRON_FILE"

BOSUN_RUN_DIR="$WORK/run" "$BIN" "$WORK/conf/schedule.cron" 2> "$WORK/sched.log" &
SCHED=$!
PIDS+=($SCHED)
cron -f 2> "$WORK/cron.log" &
CRON=$!
PIDS+=($CRON)
say "scheduler pid $SCHED, cron pid $CRON, work dir $WORK"

# Over all threads: run-queue arrivals (3rd schedstat field) and ns on CPU (1st field).
wakeups() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $3} END {printf "%.0f\n", s}'; }
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
sleep_to_half_minute() { sleep "$(python3 -c 'import time; t=time.time(); print(60 - t % 60 + 30)')"; }

say "settling to a half minute"
sleep_to_half_minute
T0=$(date +%s.%N)
W0s=$(wakeups $SCHED); W0c=$(wakeups $CRON); C0s=$(cpu_ns $SCHED); C0c=$(cpu_ns $CRON)
say "measuring $MINUTES minutes of * * * * *"
sleep $((MINUTES * 60))
T1=$(date +%s.%N)
W1s=$(wakeups $SCHED); W1c=$(wakeups $CRON); C1s=$(cpu_ns $SCHED); C1c=$(cpu_ns $CRON)

# Lateness in ms of the stamps inside [T0, T1].
late() {
    awk -v a="$T0" -v b="$T1" '$1 >= a && $1 <= b { printf "%.3f\n", ($1 - int($1 / 60) * 60) * 1000 }' "$1" | sort -n |
        awk '{v[NR] = $1} END {
            if (NR == 0) { print "| 0 | - | - | - |"; exit }
            p50 = v[int(NR * 0.50 + 0.999999)]; p99 = v[int(NR * 0.99 + 0.999999)];
            printf "| %d | %.1f | %.1f | %.1f |\n", NR, p50, p99, v[NR] }'
}

# The scheduler's own wake-up: its "request" log line's timestamp minus the due instant.
own_late() {
    python3 - "$WORK/sched.log" "$T0" "$T1" <<'PY' | sort -n | awk '{v[NR] = $1} END {
            if (NR == 0) { print "| 0 | - | - | - |"; exit }
            printf "| %d | %.1f | %.1f | %.1f |\n", NR, v[int(NR * 0.50 + 0.999999)], v[int(NR * 0.99 + 0.999999)], v[NR] }'
import datetime, re, sys
log, a, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ts = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
for line in open(log):
    m = re.match(r"(\S+)\s+INFO (?:\S+: )?request .* due=(\S+)", line)
    if m and a <= ts(m.group(1)) <= b:
        print("%.3f" % ((ts(m.group(1)) - ts(m.group(2))) * 1000))
PY
}

# Idle: a schedule that does not fire in the window.
say "idle phase"
T_EDIT=$(date +%s.%N)
printf '0 0 1 1 * bench tick\n' > "$WORK/conf/new.cron"
mv "$WORK/conf/new.cron" "$WORK/conf/schedule.cron"
printf '0 0 1 1 * root date +\\%%s.\\%%N >> %s/cron.times\n' "$WORK" > "$CRON_FILE.new"
chmod 0644 "$CRON_FILE.new"
mv "$CRON_FILE.new" "$CRON_FILE"
for _ in $(seq 50); do grep -q "schedule reloaded" "$WORK/sched.log" && break; sleep 0.1; done
RELOADED=$(grep -m1 "schedule reloaded" "$WORK/sched.log" | awk '{print $1}')
RELOAD_MS=$(python3 -c "import datetime,sys; t=datetime.datetime.fromisoformat(sys.argv[1].replace('Z','+00:00')).timestamp(); print('%.0f' % ((t - float(sys.argv[2])) * 1000))" "$RELOADED" "$T_EDIT" 2>/dev/null || echo "?")
sleep 70   # cron reads its files at the next minute; let both settle
sleep_to_half_minute
I0s=$(wakeups $SCHED); I0c=$(wakeups $CRON)
sleep $((IDLE_MINUTES * 60))
I1s=$(wakeups $SCHED); I1c=$(wakeups $CRON)

say "strace phase"
strace -c -f -p "$SCHED" -o "$WORK/strace.sched" &
S1=$!
strace -c -f -p "$CRON" -o "$WORK/strace.cron" &
S2=$!
sleep $((STRACE_MINUTES * 60))
kill -INT $S1 $S2
wait $S1 $S2 2>/dev/null || true
# strace -c writes nothing at all when the process made no syscall.
calls() { local n; n=$(awk '/total$/ {print $4}' "$1" | head -1); echo "${n:-0}"; }
SC_S=$(calls "$WORK/strace.sched"); SC_C=$(calls "$WORK/strace.cron")

say "parse phase ($LINES lines)"
python3 - "$WORK/big.cron" "$LINES" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
zones = ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo"]
with open(path, "w") as f:
    for i in range(n):
        if i % 1000 == 0:
            f.write("CRON_TZ=%s\n" % zones[(i // 1000) % len(zones)])
        exprs = ["%d %d * * *" % (i % 60, i % 24), "*/%d * * * *" % (i % 30 + 1),
                 "%d %d 1-15 jan-jun mon-fri" % (i % 60, i % 24), "@daily", "0 */2 */2 * 0,6"]
        user = "site%d " % (i % 7) if i % 3 == 0 else ""
        f.write("%s %ssvc%d action-%d\n" % (exprs[i % len(exprs)], user, i % 50, i))
EOF
best() {  # "<best wall ms of 5> <peak RSS KiB>" (RSS from /usr/bin/time: a python parent
          # would lend the child its own high-water mark across exec)
    local ms kib
    ms=$(python3 - "$@" <<'PY'
import subprocess, sys, time
walls = []
for _ in range(5):
    t = time.perf_counter()
    subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    walls.append((time.perf_counter() - t) * 1000)
print("%.1f" % min(walls))
PY
)
    kib=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1)
    echo "$ms $kib"
}
read -r P_S P_M <<< "$(best "$BIN" check "$WORK/big.cron")"
read -r N_S N_M <<< "$(best "$BIN" next "$WORK/big.cron" --count 5 --from 2026-11-22T00:00:00Z)"
printf '' > "$WORK/empty.cron"
read -r E_S E_M <<< "$(best "$BIN" check "$WORK/empty.cron")"

MIN_RUN=$(python3 -c "print('%.2f' % (($T1 - $T0) / 60))")
per_min() { python3 -c "print('%.2f' % (($2 - $1) / ($T1 - $T0) * 60))"; }
per_idle() { python3 -c "print('%.2f' % (($2 - $1) / ($IDLE_MINUTES)))"; }
cpu_ms() { python3 -c "print('%.2f' % (($2 - $1) / 1e6))"; }
per_strace() { [ -n "$1" ] && python3 -c "print('%.1f' % ($1 / $STRACE_MINUTES))" || echo "?"; }

cat <<EOF
## Results

Host: $(nproc) cores, kernel $(uname -r); Debian cron $(dpkg-query -W -f='${Version}' cron 2>/dev/null || echo "?") vs \`$($BIN --version)\` (release build).
Measured window: ${MIN_RUN} min of \`* * * * *\`; idle ${IDLE_MINUTES} min; strace ${STRACE_MINUTES} min.

### Lateness after the minute boundary (ms)

| daemon | fires | p50 | p99 | max |
|---|---|---|---|---|
| scheduler (request read by the service) $(late "$WORK/sched.times")
| scheduler (its own wake-up, from its log) $(own_late)
| Debian cron (job's first command) $(late "$WORK/cron.times")

### Cost

| daemon | wake-ups/min, firing every minute | wake-ups/min, idle | syscalls/min, idle (strace -c -f) | CPU time over the window |
|---|---|---|---|---|
| scheduler | $(per_min "$W0s" "$W1s") | $(per_idle "$I0s" "$I1s") | $(per_strace "$SC_S") | $(cpu_ms "$C0s" "$C1s") ms |
| Debian cron | $(per_min "$W0c" "$W1c") | $(per_idle "$I0c" "$I1c") | $(per_strace "$SC_C") | $(cpu_ms "$C0c" "$C1c") ms |

Wake-ups and CPU time are those of all the daemon's threads (/proc/PID/task/*/schedstat:
run-queue arrivals, ns on CPU); cron's figures exclude the children it forks per job.

### Reload

Editor-style rename of schedule.cron to the "schedule reloaded" log line: ${RELOAD_MS} ms
(cron: up to 60 s, it checks mtimes once a minute).

### Parse ($LINES-line schedule, best of 5, whole process)

| command | wall time | peak RSS |
|---|---|---|
| \`scheduler check\` on the $LINES-line file | ${P_S} ms | ${P_M} KiB |
| \`scheduler next --count 5\` on the same file | ${N_S} ms | ${N_M} KiB |
| \`scheduler check\` on an empty file (process baseline) | ${E_S} ms | ${E_M} KiB |
EOF
