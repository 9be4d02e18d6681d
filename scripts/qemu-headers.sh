#!/bin/bash
# Prepare the QEMU headers the s2e plugin is compiled against.
#
# The plugin is loaded into Debian's own QEMU binaries, so it must see the
# exact struct layouts those binaries were built with: Debian's patches
# change internal headers between stable updates. This script therefore
# fetches Debian's source package for the installed QEMU version (never a
# copy committed here), runs a header-only configure whose options match
# Debian's build where layouts depend on them, and generates the few
# headers the block layer includes.
#
# The result is cached outside the checkout, keyed by version:
#   ${S2E_BLOCK_CACHE:-~/.cache/s2e-block}/qemu-<version>/{src,build}
# A second run finds the stamp file and returns at once.
#
# Usage: scripts/qemu-headers.sh [--print-dir]
#   prints the cache directory for this version on its last line.
set -euo pipefail

log() { echo "qemu-headers: $*" >&2; }
die() { echo "qemu-headers: error: $*" >&2; exit 1; }

installed_version() {
    dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null ||
        dpkg-query -W -f='${source:Version}' qemu-utils 2>/dev/null ||
        true
}

VER="${S2E_QEMU_VERSION:-$(installed_version)}"
[ -n "$VER" ] || die "no Debian QEMU package is installed (qemu-system-x86 or qemu-utils)"

CACHE_ROOT="${S2E_BLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s2e-block}"
# Epochs contain ':', awkward in paths.
DIR="$CACHE_ROOT/qemu-${VER//:/_}"
STAMP="$DIR/.complete"

if [ -f "$STAMP" ]; then
    echo "$DIR"
    exit 0
fi

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

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

fetch_source() {
    local work="$1"
    if ! have_deb_src; then
        as_root bash -c "$(declare -f have_deb_src add_deb_src log die); add_deb_src"
        as_root apt-get update -q >&2
    fi
    command -v dpkg-source >/dev/null || die "dpkg-dev is needed (apt-get install dpkg-dev)"
    log "fetching Debian source qemu=$VER"
    (cd "$work" && apt-get source -q "qemu=$VER" >&2) ||
        die "apt-get source qemu=$VER failed (is the version still in the archive?)"
    local src
    src=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'qemu-*' | head -n1)
    [ -n "$src" ] || die "apt-get source left no source directory"
    mv "$src" "$work/src"
    rm -f "$work"/qemu_* 2>/dev/null || true
}

# Options that change struct layouts or QAPI enums are chosen to match
# Debian's build (linux-aio, io_uring, replication, zstd); the rest are off.
configure_headers() {
    local work="$1"
    mkdir -p "$work/build"
    log "configuring header-only build"
    (
        cd "$work/build"
        # A pyenv shim may shadow the system python3 and meson.
        export PATH="/usr/bin:/bin:$PATH"
        ../src/configure \
            --disable-system --disable-user --enable-tools \
            --without-default-features --disable-docs \
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
    local work
    work=$(mktemp -d "$CACHE_ROOT/.qemu-tmp.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    fetch_source "$work"
    configure_headers "$work"
    echo "$VER" > "$work/version"
    rm -rf "$DIR"
    mv "$work" "$DIR"
    trap - EXIT
    touch "$STAMP"
    log "ready in $DIR"
    echo "$DIR"
}

main "$@"
