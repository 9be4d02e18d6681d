#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# apt-get for another Debian suite (trixie, sid, bookworm-backports, ...)
# without touching the machine's own apt configuration.
#
# The archive is the one the machine already uses: its URI is read from
# /etc/apt/sources.list{,.d/*} (the first deb entry of Debian's main
# archive), never written down here.  Lists and downloaded packages live
# in a private state directory under the cache, one per suite.
#
# Usage: scripts/apt-suite.sh SUITE update
#        scripts/apt-suite.sh SUITE source [--download-only] PKG=VERSION
#        scripts/apt-suite.sh SUITE download PKG[=VERSION]...
#        scripts/apt-suite.sh SUITE policy PKG        (apt-cache policy)
#        scripts/apt-suite.sh SUITE showsrc PKG       (apt-cache showsrc)
#        scripts/apt-suite.sh --mirror                (print the archive URI)
# Runs in the current directory (source and download write there).
# Environment: S2E_BLOCK_CACHE (cache root).
set -euo pipefail

die() { echo "apt-suite: error: $*" >&2; exit 1; }

# The URI of Debian's main archive in the machine's own sources: deb822
# .sources files first, then one-line .list entries.  Security and
# third-party archives are skipped (they do not carry other suites).
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'BEGIN { RS=""; FS="\n" }
            /(^|\n)Types:[^\n]*deb([ \t]|$|\n)/ && /(^|\n)Enabled: *no/ { next }
            /(^|\n)Types:[^\n]*deb([ \t]|$|\n)/ {
                for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) {
                    sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/)
                    for (j in u) if (u[j] ~ /debian\/?$/ && u[j] !~ /security/) { print u[j]; exit }
                }
            }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]*debian\/?)[[:space:]].*$/\2/p' "$f" |
              grep -v security | head -n1)
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    return 1
}

[ $# -ge 1 ] || die "usage: apt-suite.sh SUITE COMMAND ARGS... (see the header)"
if [ "$1" = --mirror ]; then
    debian_mirror || die "no Debian archive in the machine's apt sources"
    exit 0
fi
[ $# -ge 2 ] || die "usage: apt-suite.sh SUITE COMMAND ARGS..."
SUITE="$1"; CMD="$2"; shift 2
case "$SUITE" in *[!a-z0-9-]*|'') die "not a suite name: $SUITE" ;; esac

MIRROR=$(debian_mirror) || die "no Debian archive in the machine's apt sources"
CACHE_ROOT="${S2E_BLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s2e-block}"
STATE="$CACHE_ROOT/apt-$SUITE"
mkdir -p "$STATE/lists/partial" "$STATE/cache/archives/partial"
cat > "$STATE/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main
SRC

APT_OPTS=(
    -o "Dir::Etc::SourceList=$STATE/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$STATE/lists"
    -o "Dir::Cache=$STATE/cache"
    -o "Dir::State::status=$STATE/status"
    -o "APT::Get::List-Cleanup=0"
    # Frozen or archived suites carry expired Release files.
    -o "Acquire::Check-Valid-Until=false"
    -o "Debug::NoLocking=1"
)
# Downloads land in the caller's directories, which apt's sandbox user
# cannot always write to.
[ "$(id -u)" = 0 ] && APT_OPTS+=(-o "APT::Sandbox::User=root")
[ -f "$STATE/status" ] || : > "$STATE/status"

updated() { ls "$STATE/lists/"*_InRelease >/dev/null 2>&1 || ls "$STATE/lists/"*_Release >/dev/null 2>&1; }

case "$CMD" in
    update)
        apt-get -q "${APT_OPTS[@]}" update >&2 ;;
    source|download)
        updated || apt-get -q "${APT_OPTS[@]}" update >&2
        apt-get -q "${APT_OPTS[@]}" "$CMD" "$@" >&2 ;;
    policy|showsrc|madison)
        updated || apt-get -q "${APT_OPTS[@]}" update >&2
        apt-cache "${APT_OPTS[@]}" "$CMD" "$@" ;;
    *) die "unknown command: $CMD" ;;
esac
