#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Prepare the QEMU headers the s2e plugin is compiled against.
#
# The plugin is loaded into Debian's own QEMU binaries, so it must see the
# exact struct layouts those binaries were built with: Debian's patches
# change internal headers between stable updates. This script therefore
# fetches Debian's source package of that exact QEMU version (never a copy
# committed here), runs a header-only configure whose options match
# Debian's build where layouts depend on them, and generates the few
# headers the block layer includes.
#
# Which version: --version VER, else $S2E_QEMU_VERSION, else the installed
# qemu-system-x86 (or qemu-utils).  The installed version comes from the
# machine's own apt sources (a deb-src entry is derived from them once);
# any other version from the first Debian suite that serves it
# ($S2E_QEMU_SUITES, through scripts/apt-suite.sh, which leaves the
# machine's apt configuration alone).  A version whose suite serves only
# the upstream tarball (bookworm-backports' 10.0.2) is built from that
# tarball, with a warning.
#
# QEMU 8.0 and later configure with meson >= 1.5; where the distribution's
# meson is older (Debian 12), the one of its -backports suite is unpacked
# into the cache and used for this configure only.
#
# The result is cached outside the checkout, keyed by version:
#   ${S2E_BLOCK_CACHE:-~/.cache/s2e-block}/qemu-<version>/{src,build,version}
# A second run finds the stamp file and returns at once.
#
# Usage: scripts/qemu-headers.sh [--version VER] [--find]
#   prints the cache directory for this version on its last line.
#   --find only looks: it prints the directory if the headers are prepared
#   and exits 1 (saying which command prepares them) if not; it never
#   fetches, configures or touches the system (meson setup uses it).
set -euo pipefail

log() { echo "qemu-headers: $*" >&2; }
die() { echo "qemu-headers: error: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APT_SUITE="$ROOT/scripts/apt-suite.sh"
# shellcheck source=lib/qemu-source.sh
. "$ROOT/scripts/lib/qemu-source.sh"
SUITES="${S2E_QEMU_SUITES:-trixie bookworm-backports trixie-backports sid forky}"

installed_version() {
    dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null ||
        dpkg-query -W -f='${source:Version}' qemu-utils 2>/dev/null ||
        true
}

VER="${S2E_QEMU_VERSION:-}"
FIND_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --version) VER="${2:?--version needs a Debian version}"; shift 2 ;;
        --version=*) VER="${1#--version=}"; shift ;;
        --find) FIND_ONLY=1; shift ;;
        -h|--help) sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
INSTALLED=$(installed_version)
VER="${VER:-$INSTALLED}"
[ -n "$VER" ] || die "no Debian QEMU package is installed (qemu-system-x86 or qemu-utils); name one with --version"

CACHE_ROOT="${S2E_BLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s2e-block}"
# Epochs contain ':', awkward in paths.
DIR="$CACHE_ROOT/qemu-${VER//:/_}"
STAMP="$DIR/.complete"

if [ -f "$STAMP" ]; then
    echo "$DIR"
    exit 0
fi
if [ "$FIND_ONLY" = 1 ]; then
    echo "qemu-headers: the headers of QEMU $VER are not prepared; run" \
         "scripts/qemu-headers.sh$([ "$VER" = "$INSTALLED" ] || echo " --version $VER")" \
         "(or scripts/setup.sh), or give meson -Dqemu_src and -Dqemu_build" >&2
    exit 1
fi

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

have_deb_src() {
    grep -rhsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -q . && return 0
    grep -rhsE '^[[:space:]]*Types:.*deb-src' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -q . && return 0
    return 1
}

# Derive deb-src entries from the machine's own deb entries: same URIs,
# suites and components, so no archive address is written down here.
add_deb_src() {
    local out=/etc/apt/sources.list.d/s2e-block-deb-src.sources
    local f
    : > "$out.tmp"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case "$f" in *s2e-block-deb-src*) continue ;; esac
        awk 'BEGIN { RS=""; ORS="\n\n" }
             /(^|\n)Types:[^\n]*deb([ \t]|$|\n)/ && /(^|\n)URIs:[^\n]*debian/ {
                 gsub(/(^|\n)Types:[^\n]*/, "\nTypes: deb-src");
                 sub(/^\n/, ""); print }' "$f" >> "$out.tmp"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -nE 's/^[[:space:]]*deb[[:space:]]+((\[[^]]*\][[:space:]]+)?[^[:space:]]*debian[^[:space:]]*[[:space:]].*)$/deb-src \1/p' "$f" > "$out.list.tmp" || true
        if [ -s "$out.list.tmp" ]; then
            cat "$out.list.tmp" >> /etc/apt/sources.list.d/s2e-block-deb-src.list
        fi
        rm -f "$out.list.tmp"
    done
    if [ -s "$out.tmp" ]; then mv "$out.tmp" "$out"; else rm -f "$out.tmp"; fi
    have_deb_src || die "could not derive a deb-src entry from /etc/apt sources"
    log "added deb-src entries derived from the machine's apt sources"
}

# The installed version: from the machine's own archive.
fetch_installed_source() {
    local work="$1"
    if ! have_deb_src; then
        as_root bash -c "$(declare -f have_deb_src add_deb_src log die); add_deb_src"
        as_root apt-get update -q >&2
    fi
    log "fetching Debian source qemu=$VER"
    (cd "$work" && apt-get source -q "qemu=$VER" >&2)
}

# The first suite in $SUITES whose source index lists qemu $VER.
suite_serving() {
    local s
    for s in $SUITES; do
        if "$APT_SUITE" "$s" showsrc qemu 2>/dev/null |
                grep -qxF "Version: $VER"; then
            echo "$s"
            return 0
        fi
    done
    return 1
}

# Another version: from the suite serving it, or its upstream tarball when
# the suite serves no Debian packaging for it.
fetch_suite_source() {
    local work="$1" suite
    suite=$(suite_serving) ||
        die "no Debian suite of '$SUITES' serves qemu $VER (apt-cache showsrc qemu in those suites lists the versions)"
    log "fetching Debian source qemu=$VER from $suite"
    if (cd "$work" && "$APT_SUITE" "$suite" source "qemu=$VER"); then
        return 0
    fi
    log "warning: $suite serves no Debian packaging for qemu $VER;" \
        "using its upstream tarball without Debian's patches"
    (cd "$work" && "$APT_SUITE" "$suite" source --tar-only "qemu=$VER") ||
        die "could not download qemu $VER from $suite"
    local tarball
    tarball=$(find "$work" -maxdepth 1 -name 'qemu_*.orig.tar.*' | head -n1)
    [ -n "$tarball" ] || die "no upstream tarball of qemu $VER was downloaded"
    tar -C "$work" -xf "$tarball"
    echo upstream-only > "$work/packaging"
}

fetch_source() {
    local work="$1"
    command -v dpkg-source >/dev/null || die "dpkg-dev is needed (apt-get install dpkg-dev)"
    # The machine's own archive may serve only part of a backported
    # version's source (bookworm-backports' 10.0.2): then ask the suites.
    if [ "$VER" != "$INSTALLED" ] || ! fetch_installed_source "$work"; then
        rm -rf "${work:?}"/qemu*
        fetch_suite_source "$work"
    fi
    local src
    src=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'qemu-*' | head -n1)
    [ -n "$src" ] || die "no QEMU source directory was unpacked"
    mv "$src" "$work/src"
    rm -f "$work"/qemu_* 2>/dev/null || true
}

# Options that change struct layouts or QAPI enums are chosen to match
# Debian's build (linux-aio, io_uring, replication, zstd); the rest are off.
configure_headers() {
    local work="$1" extra
    mkdir -p "$work/build"
    read -r -a extra <<< "$(qemu_source_configure_options "$work/src")"
    log "configuring header-only build of QEMU $VER"
    (
        cd "$work/build"
        ../src/configure \
            --disable-system --disable-user --enable-tools \
            --without-default-features --disable-docs "${extra[@]}" \
            --enable-linux-aio --enable-linux-io-uring \
            --enable-replication --enable-zstd >"$work/configure.log" 2>&1 ||
            { tail -n 30 "$work/configure.log" >&2; exit 1; }
        ninja qapi/qapi-types-block-core.h trace/trace-root.h \
            trace/trace-block.h config-poison.h qemu-version.h \
            qapi/qapi-builtin-types.h qapi/qapi-types-qom.h \
            >"$work/ninja.log" 2>&1 ||
            { tail -n 30 "$work/ninja.log" >&2; exit 1; }
    ) || die "header generation failed (logs in $work)"
}

main() {
    mkdir -p "$CACHE_ROOT"
    local work t0=$SECONDS
    work=$(mktemp -d "$CACHE_ROOT/.qemu-tmp.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # A pyenv shim may shadow the system python3 and meson.
    export PATH="/usr/bin:/bin:$PATH"
    fetch_source "$work"
    qemu_source_prepare "$work/src"
    configure_headers "$work"
    echo "$VER" > "$work/version"
    rm -rf "$DIR"
    mv "$work" "$DIR"
    trap - EXIT
    touch "$STAMP"
    log "ready in $DIR ($((SECONDS - t0)) s)"
    echo "$DIR"
}

main "$@"
