#!/usr/bin/env bash
# Wall-clock steps against the real scheduler (issue 7: "the clock is stepped forward or
# back"). A time namespace cannot move CLOCK_REALTIME, and a step faked by libfaketime never
# reaches the kernel (TFD_TIMER_CANCEL_ON_SET cannot see it), so this boots a small VM with a clock of its own: Debian's cloud kernel, a
# busybox initramfs with the scheduler, supervisor, listener and bash, and
# tests/clock/guest.sh, which steps the clock with `date -s` and checks what the daemon did.
# Prints the guest's `clock: ok/FAIL` lines and `clock: N passed, M failed`; exit 0 only when
# every check passed.
#
#   tests/clock/run.sh            (after `cargo build --workspace --bins`)
#
# Needs qemu-system-x86_64, a static busybox and apt-get (the kernel is fetched once with
# `apt-get download` into target/clock/). Env: BIN_DIR (target/debug), CLOCK_KERNEL (a
# vmlinuz to use instead), CLOCK_ACCEL (tcg; kvm where nested KVM works).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=${BIN_DIR:-$root/target/debug}
work=$root/target/clock
mkdir -p "$work"

for c in qemu-system-x86_64 busybox gzip ldd; do
    command -v "$c" >/dev/null || {
        echo "clock: missing $c (apt-get install -y qemu-system-x86 busybox-static)" >&2
        exit 1
    }
done
for b in supervisor listener scheduler; do
    [ -x "$bin/$b" ] || { echo "clock: no $bin/$b; run cargo build --workspace --bins" >&2; exit 1; }
done

kernel=${CLOCK_KERNEL:-}
if [ -z "$kernel" ]; then
    kernel=$(ls "$work"/boot/vmlinuz-* 2>/dev/null | head -n1 || true)
fi
if [ -z "$kernel" ]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "clock: apt knows no linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
    (cd "$work" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
    deb=$(ls "$work"/"$pkg"_*.deb | head -n1)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
    rm -f "$deb"
    kernel=$(ls "$work"/boot/vmlinuz-* | head -n1)
fi

# The guest's root: busybox, the three programs with their shared libraries, bash.
rootfs=$work/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,proc,sys,dev,run,tmp,usr/local/conf}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for b in "$bin/supervisor" "$bin/listener" "$bin/scheduler" "$(command -v bash)"; do
    cp "$b" "$rootfs/bin/"
    for lib in $(ldd "$b" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
        cp -L --parents "$lib" "$rootfs/"
    done
done
cp tests/clock/guest.sh "$rootfs/bin/clock-test"
cat >"$rootfs/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
sh /bin/clock-test
poweroff -f
EOF
chmod +x "$rootfs/init" "$rootfs/bin/clock-test"
(cd "$rootfs" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initrd.gz"

out=$work/console.log
echo "clock: booting the test VM ($(basename "$kernel"), accel ${CLOCK_ACCEL:-tcg})"
# The guest powers off when done; the timeout only catches a hung guest.
timeout 300 qemu-system-x86_64 -machine "accel=${CLOCK_ACCEL:-tcg}" -m 512 -smp 1 \
    -nographic -no-reboot -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" </dev/null >"$out" 2>&1 || true
tr -d '\r' <"$out" | sed -n '/^clock: /,$p' | grep -v '^\[ *[0-9.]*\] '
summary=$(tr -d '\r' <"$out" | grep -E '^clock: [0-9]+ passed, [0-9]+ failed' || true)
if [ -z "$summary" ]; then
    echo "clock: the VM gave no result; console log: $out" >&2
    tail -n 40 "$out" >&2
    exit 1
fi
case $summary in
*" 0 failed") exit 0 ;;
*) exit 1 ;;
esac
