#!/usr/bin/env bash
# bench/pid1/build.sh: release builds of the supervisor and listener, one per variant, each
# in its own target directory, for `run.sh --footprint` to measure side by side.
#
#   bench/pid1/build.sh [VARIANT...]     (default: all below)
#
#   dynamic     `cargo build --release`                               -> target/release
#   static-pie  + RUSTFLAGS="-C target-feature=+crt-static"           -> target/static-pie/<triple>/release
#   static      + "-C relocation-model=static" (static, not PIE)      -> target/static/<triple>/release
#   baseline    commit $BASELINE_REV (default 3519c83, before the lazy listener and the
#               supervisor-core work) built in a temporary worktree  -> target/baseline/release
# A variant may also be HEAD or a commit with patches from patches/ applied, built the same
# way as the baseline (in_worktree): the way to measure a lever before it lands.
#
# Static builds pass --target explicitly so that RUSTFLAGS do not reach build scripts and
# proc macros (which cannot be linked with +crt-static). Only the two binaries a container
# runs as its init are built (`-p supervisor -p listener`). Prints `LABEL=DIR` per built
# variant on stdout (the form BOSUN_VARIANTS takes); a failed build is reported on stderr
# and left out.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
triple=$(rustc -vV | sed -n 's/^host: //p')
base_rev=${BASELINE_REV:-3519c83}
jobs=${CARGO_BUILD_JOBS:-2}
[[ $# -gt 0 ]] || set -- dynamic static-pie static baseline

build() { # label dir cargo-args...
    local label=$1 dir=$2
    shift 2
    echo "build: $label: cargo build --release -p supervisor -p listener $*" >&2
    if cargo build -q --release -j "$jobs" -p supervisor -p listener "$@" >&2 \
        && [[ -x "$dir/supervisor" && -x "$dir/listener" ]]; then
        echo "$label=$dir"
    else
        echo "build: $label failed" >&2
    fi
}

in_worktree() { # label rev "extra cargo args" patch... : rev (+ patches) in a temporary worktree
    local label=$1 rev=$2 wt p dir=$repo/target/$1/release
    local -a extra
    read -ra extra <<<"$3"
    shift 3
    [[ ${#extra[@]} -gt 0 ]] && dir=$repo/target/$label/$triple/release
    wt=$(mktemp -u "${TMPDIR:-/tmp}/bosun-$label.XXXXXX")
    if ! git worktree add -q --detach "$wt" "$rev" >&2; then
        echo "build: $label: git worktree add $wt $rev failed" >&2
        return
    fi
    for p in "$@"; do
        if ! git -C "$wt" apply "$here/patches/$p" >&2; then
            echo "build: $label: patches/$p does not apply to $rev; left out" >&2
            git worktree remove --force "$wt" >&2
            return
        fi
    done
    (cd "$wt" && build "$label" "$dir" --target-dir "$repo/target/$label" "${extra[@]}")
    git worktree remove --force "$wt" >&2 || echo "build: could not remove $wt" >&2
}

cd "$repo" || exit 2
for v in "$@"; do
    case $v in
    dynamic) build dynamic "$repo/target/release" ;;
    static-pie)
        RUSTFLAGS="-C target-feature=+crt-static" \
            build static-pie "$repo/target/static-pie/$triple/release" \
            --target "$triple" --target-dir "$repo/target/static-pie" ;;
    static)
        RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
            build static "$repo/target/static/$triple/release" \
            --target "$triple" --target-dir "$repo/target/static" ;;
    baseline) in_worktree baseline "$base_rev" "" ;;
    *) echo "build: unknown variant $v (dynamic, static-pie, static, baseline)" >&2 ;;
    esac
done
