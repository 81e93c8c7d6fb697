#!/usr/bin/env bash
# What the run journal costs bosun, with the real supervisor and listener, against the build
# before the journal, in one run (issue 12):
#
#   bench/journal/latency.sh [--build] [latency.py options...]
#
# --build: builds the supervisor and listener (release) of this checkout into
#   CARGO_TARGET_DIR (default: the repo's target/), and those of OLD_REV (default 190b659,
#   the last commit without the journal) in a temporary `git worktree add --detach`, into
#   OLD_TARGET (default /var/tmp/bosun-nojournal-target); the worktree is removed after.
#   Without --build, what is built there is measured.
# Env: BENCH_DIR (default /var/tmp): a real disk for the journal (not tmpfs, or the fsync
#   costs nothing); /dev/shm is the tmpfs variant.
# latency.py options: --rounds N --per-round N --runs N --old-runs N --chunk N --asks N
#   --reopens N (defaults 8, 500, 100000, = --runs, 10000, 200, 7).
# Run as root (or any user that can write BENCH_DIR and /dev/shm); takes about 10 minutes on
# 2 cores. Prints the tables and writes bench/journal/RESULTS.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmdline="${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }${OLD_TARGET:+OLD_TARGET=$OLD_TARGET }bench/journal/latency.sh${*:+ $*}"
old_rev=${OLD_REV:-190b659}
target=${CARGO_TARGET_DIR:-$repo/target}
old_target=${OLD_TARGET:-/var/tmp/bosun-nojournal-target}

if [[ "${1:-}" == "--build" ]]; then
    shift
    (cd "$repo" && cargo build --release -q -p supervisor -p listener --target-dir "$target")
    wt=$(mktemp -d "${TMPDIR:-/tmp}/bosun-nojournal.XXXXXX")
    rmdir "$wt"
    git -C "$repo" worktree add -q --detach "$wt" "$old_rev"
    trap 'git -C "$repo" worktree remove --force "$wt"' EXIT
    (cd "$wt" && cargo build --release -q -p supervisor -p listener --target-dir "$old_target")
    git -C "$repo" worktree remove --force "$wt"
    trap - EXIT
fi

for b in "$target/release" "$old_target/release"; do
    for p in supervisor listener; do
        [[ -x $b/$p ]] || { echo "bench: $b/$p not built; run with --build" >&2; exit 1; }
    done
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/bench-journal-client.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
rustc -O --edition 2021 -o "$scratch/client" "$here/client.rs"

python3 "$here/latency.py" --new "$target/release" --old "$old_target/release" \
    --old-label "$old_rev" --client "$scratch/client" --disk "${BENCH_DIR:-/var/tmp}" \
    --out "$here/RESULTS.md" --command "$cmdline" "$@"
