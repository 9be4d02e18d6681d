#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Compile the QEMU glue against every QEMU generation s2e-block supports,
# with warnings as errors:
#   gcc                      the compiler Debian builds QEMU with
#   clang -Wthread-safety    checks the block graph lock annotations (8.0+):
#                            every read of bs->file and every I/O on a child
#                            must hold the graph reader lock
# The headers of each version are prepared by scripts/qemu-headers.sh
# (cached).  Build trees are kept in build-check/ for quick re-runs.
#
# Usage: scripts/check-glue.sh [VERSION...]
#   VERSION: a Debian source version of qemu, or "installed".  Default:
#   installed and $S2E_GLUE_CHECK_VERSIONS (default: Debian 13's 10.0.13 and
#   sid's 10.2.2, the base of S2E's QEMU 10.2).
# Prints one line per check ("ok" or "FAILED") and exits non-zero if any
# check failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${S2E_GLUE_CHECK_DIR:-$ROOT/build-check}"
export PATH="/usr/bin:/bin:$PATH"

if [ $# -eq 0 ]; then
    set -- installed ${S2E_GLUE_CHECK_VERSIONS:-1:10.0.13+ds-0+deb13u1 1:10.2.2+ds-1}
fi

# check_one VERSION_DIR COMPILER EXTRA_CFLAGS
check_one() {
    local hdr="$1" compiler="$2" cflags="$3" ver dir
    ver=$(cat "$hdr/version")
    dir="$OUT/$compiler-${ver//[:~+]/_}"
    if [ ! -f "$dir/build.ninja" ]; then
        CC="$compiler" meson setup "$dir" "$ROOT" -Dplugin=enabled \
            -Dqemu_src="$hdr/src" -Dqemu_build="$hdr/build" \
            -Dqemu_version="$ver" -Dtests=false \
            -Dintegration_tests=disabled -Dwerror=true \
            -Dc_args="$cflags" >"$OUT/setup.log" 2>&1 ||
            { cat "$OUT/setup.log"; return 1; }
    fi
    # A tree set up before a meson.build changed must be regenerated first:
    # ninja -t query reads build.ninja as it is.
    ninja -C "$dir" build.ninja >"$dir/regen.log" 2>&1 ||
        { cat "$dir/regen.log"; return 1; }
    # Only the glue's objects: the core does not depend on QEMU.  They are
    # recompiled every time: a warning is printed only when a file
    # compiles, so an up-to-date object would hide it.
    local objs
    objs=$(ninja -C "$dir" -t query block/qemu/block-s2e.so |
           awk '/^  input:/ { f = 1; next } /^  outputs:/ { f = 0 }
                f && $1 ~ /block-s2e\.so\.p\/.*\.o$/ { print $1 }')
    [ -n "$objs" ] || { echo "no glue objects in $dir"; return 1; }
    (cd "$dir" && rm -f $objs)
    ninja -C "$dir" $objs >"$dir/check.log" 2>&1 ||
        { grep -E -A4 'error|warning' "$dir/check.log" | head -n 60; return 1; }
}

failed=0
mkdir -p "$OUT"
for v in "$@"; do
    if [ "$v" = installed ]; then
        hdr=$("$ROOT/scripts/qemu-headers.sh" | tail -n 1)
    else
        hdr=$("$ROOT/scripts/qemu-headers.sh" --version "$v" | tail -n 1)
    fi || { echo "FAILED: headers of QEMU $v"; failed=1; continue; }
    for c in "gcc:" "clang:-Wthread-safety"; do
        label="${c%%:*}${c#*:}"
        label="${label/clang-/clang -}, QEMU $(cat "$hdr/version")"
        if check_one "$hdr" "${c%%:*}" "${c#*:}"; then
            echo "ok: glue, $label"
        else
            echo "FAILED: glue, $label"
            failed=1
        fi
    done
done
exit $failed
