#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A fresh Debian system of another release in a folder, for testing
# s2e-block as a new user of that release would (e.g. Debian 13 "trixie"
# with its QEMU 10.0) on this machine.
#
#   scripts/debian-chroot.sh fresh SUITE DIR
#       DIR becomes a fresh `debootstrap --variant=minbase SUITE` system
#       (from a tarball cached outside the checkout, keyed by suite; made
#       once, about 3 minutes), with the machine's DNS set-up.
#   scripts/debian-chroot.sh run DIR [--cache NAME] COMMAND [ARGS...]
#       runs COMMAND as root inside DIR, with /proc, /sys, /dev and
#       /dev/pts mounted in a private mount namespace (they disappear with
#       the command, whatever happens to it).  With --cache NAME, the
#       system's apt archive and root's ~/.cache/s2e-block persist in
#       ${S2E_BLOCK_CACHE}/chroot-NAME/ across fresh systems, so repeated
#       runs download and build what they need only once.
#   scripts/debian-chroot.sh remove DIR
#       deletes DIR (refusing while anything is mounted below it).
#
# The archive is the machine's own (scripts/apt-suite.sh --mirror).
# Needs root and debootstrap.
set -euo pipefail

log() { echo "debian-chroot: $*" >&2; }
die() { echo "debian-chroot: error: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT="${S2E_BLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s2e-block}"

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"

tarball_of() { echo "$CACHE_ROOT/chroot-$1.tar"; }

# Build the cached minbase tarball of SUITE once.
make_tarball() {
    local suite="$1" tarball mirror tmp
    tarball=$(tarball_of "$suite")
    [ -s "$tarball" ] && return 0
    command -v debootstrap >/dev/null ||
        die "debootstrap is needed (apt-get install debootstrap)"
    mirror=$("$ROOT/scripts/apt-suite.sh" --mirror)
    mkdir -p "$CACHE_ROOT"
    tmp=$(mktemp -d "$CACHE_ROOT/.chroot-$suite.XXXXXX")
    log "debootstrap --variant=minbase $suite (once; cached as $tarball)"
    if ! debootstrap --variant=minbase "$suite" "$tmp/root" "$mirror" \
            >"$tmp/debootstrap.log" 2>&1; then
        tail -n 20 "$tmp/debootstrap.log" >&2
        remove_tree "$tmp"
        die "debootstrap $suite failed"
    fi
    tar -C "$tmp/root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    remove_tree "$tmp"
}

remove_tree() {
    local dir="$1"
    [ -e "$dir" ] || return 0
    if findmnt -rn -o TARGET | grep -q "^$(realpath "$dir")/"; then
        die "something is still mounted below $dir; not removing it"
    fi
    rm -rf --one-file-system "$dir"
}

fresh() {
    local suite="$1" dir="$2"
    make_tarball "$suite"
    remove_tree "$dir"
    mkdir -p "$dir"
    tar -C "$dir" -xf "$(tarball_of "$suite")"
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
    log "fresh $suite system in $dir"
}

run() {
    local dir="$1"; shift
    local cache=""
    if [ "${1:-}" = --cache ]; then
        cache="$CACHE_ROOT/chroot-${2:?--cache needs a name}"; shift 2
    fi
    [ $# -ge 1 ] || die "run needs a command"
    [ -x "$dir/bin/sh" ] || die "$dir is not a Debian system (make it with: fresh SUITE DIR)"
    if [ -n "$cache" ]; then
        mkdir -p "$cache/apt-archives/partial" "$cache/s2e-block" \
                 "$dir/var/cache/apt/archives" "$dir/root/.cache/s2e-block"
    fi
    # Everything mounted here belongs to this namespace only.
    unshare --mount --propagation private -- /bin/bash -euc '
        dir=$1 cache=$2; shift 2
        mount -t proc proc "$dir/proc"
        mount -t sysfs sys "$dir/sys"
        mount --rbind /dev "$dir/dev"
        if [ -n "$cache" ]; then
            mount --bind "$cache/apt-archives" "$dir/var/cache/apt/archives"
            mount --bind "$cache/s2e-block" "$dir/root/.cache/s2e-block"
        fi
        exec chroot "$dir" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            LANG=C.UTF-8 "$@"
    ' debian-chroot "$dir" "$cache" "$@"
}

case "${1:-}" in
    fresh) [ $# -eq 3 ] || die "usage: fresh SUITE DIR"; fresh "$2" "$3" ;;
    run) [ $# -ge 3 ] || die "usage: run DIR [--cache NAME] COMMAND..."; shift; run "$@" ;;
    remove) [ $# -eq 2 ] || die "usage: remove DIR"; remove_tree "$2" ;;
    *) die "usage: debian-chroot.sh fresh SUITE DIR | run DIR [--cache NAME] COMMAND... | remove DIR" ;;
esac
