#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# s2e-block on another Debian release, as a new user of it would meet it:
# a fresh `debootstrap --variant=minbase SUITE` system (scripts/
# debian-chroot.sh) gets a copy of this checkout, then
#   1. the README's first command, scripts/main-job.sh: installs the
#      packages that release has, prepares the headers of its QEMU, builds,
#      and runs the main job on a real guest; it must end in PASS;
#   2. the unit and integration tests against that release's QEMU binaries.
# What the fresh system downloads and builds (apt archives, QEMU headers,
# the guest) is cached in ${S2E_BLOCK_CACHE}/chroot-SUITE/, so only the
# first run pays for it; the system itself is new every run.
#
# Usage: scripts/test-debian.sh [SUITE]      (default: trixie, Debian 13)
# The system is left in $S2E_DEBIAN_ROOT (default build-debian-SUITE/ in
# the checkout) for inspection; its test log is
#   build-debian-SUITE/root/s2e-block/build/meson-logs/testlog.json
# Exit status 0 only when both steps passed.  Needs root.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE="${1:-trixie}"
SYS="${S2E_DEBIAN_ROOT:-$ROOT/build-debian-$SUITE}"
CHROOT="$ROOT/scripts/debian-chroot.sh"
INSIDE=/root/s2e-block

step() { printf '\n== %s: %s\n' "$SUITE" "$*"; }

# The files of this checkout as git sees them (tracked, and untracked but
# not ignored), so build trees and caches stay behind.
copy_checkout() {
    mkdir -p "$SYS$INSIDE"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
            xargs -0 -r tar --no-recursion -cf - 2>/dev/null) |
            tar -C "$SYS$INSIDE" -xf -
    else
        tar -C "$ROOT" --exclude='./build*' -cf - . | tar -C "$SYS$INSIDE" -xf -
    fi
}

in_system() {
    "$CHROOT" run "$SYS" --cache "$SUITE" /bin/bash -c "cd $INSIDE && $*"
}

main() {
    local t0=$SECONDS rc=0
    step "fresh system"
    "$CHROOT" fresh "$SUITE" "$SYS" || { echo "FAILED: fresh $SUITE system"; return 1; }
    copy_checkout || { echo "FAILED: copying the checkout"; return 1; }

    step "the README's first command (scripts/main-job.sh)"
    in_system scripts/main-job.sh 2>&1 | tee "$SYS/main-job.log" | tail -n 25
    if [ "${PIPESTATUS[0]}" -ne 0 ] || ! tail -n 3 "$SYS/main-job.log" | grep -q '^PASS'; then
        echo "FAILED: main job on $SUITE (log: $SYS/main-job.log)"
        rc=1
    fi

    step "unit and integration tests against $SUITE's QEMU"
    if [ -f "$SYS$INSIDE/build/build.ninja" ]; then
        in_system "meson test -C build --print-errorlogs --suite unit --suite integration --suite fuzz" || rc=1
    else
        echo "FAILED: no build tree in the $SUITE system"
        rc=1
    fi
    step "done in $((SECONDS - t0)) s"
    return $rc
}

main "$@"
