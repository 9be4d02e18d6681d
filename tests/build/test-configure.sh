#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# `meson setup` has no side effects outside its build directory: without
# prepared QEMU headers it neither fetches sources nor touches apt; it
# says which command prepares them (plugin=auto: a warning, the plugin is
# skipped; plugin=enabled: an error).
#
# Usage: test-configure.sh SOURCE_ROOT
set -euo pipefail

SRC="$1"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Everything the old configure could have changed: apt's sources and the
# header cache (pointed at an empty directory, with a fake installed QEMU
# version so no cached headers match).
apt_state() {
    find /etc/apt/sources.list /etc/apt/sources.list.d -maxdepth 1 \
        -printf '%p %s %T@\n' 2>/dev/null | sort || true
}
before=$(apt_state)
mkdir "$TMP/cache"
export S2E_BLOCK_CACHE="$TMP/cache" S2E_QEMU_VERSION=1:0.0-s2e-test
export PATH="/usr/bin:$PATH"

meson setup "$TMP/auto" "$SRC" -Dplugin=auto >"$TMP/auto.log" 2>&1 ||
    { cat "$TMP/auto.log"; fail "plugin=auto must configure without the plugin"; }
grep -q "The plugin is not built: .*not prepared; run scripts/qemu-headers.sh --version 1:0.0-s2e-test" "$TMP/auto.log" ||
    { cat "$TMP/auto.log"; fail "plugin=auto: no message naming the command"; }

if meson setup "$TMP/enabled" "$SRC" -Dplugin=enabled >"$TMP/enabled.log" 2>&1; then
    fail "plugin=enabled must fail without headers"
fi
grep -q "not prepared; run scripts/qemu-headers.sh" "$TMP/enabled.log" ||
    { cat "$TMP/enabled.log"; fail "plugin=enabled: no message naming the command"; }

[ -z "$(ls -A "$TMP/cache")" ] || fail "configure wrote into the cache: $(ls -A "$TMP/cache")"
[ "$(apt_state)" = "$before" ] || fail "configure changed /etc/apt"
echo "ok: meson setup touched nothing outside its build directory"
