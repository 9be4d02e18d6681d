#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Build QEMU from source with the s2e driver linked in (DESIGN.md §2,
# product 2): the same driver glue and QEMU-free core that make up the
# LD_PRELOAD plugin are compiled as part of QEMU's own block layer, and `s2e`
# is added to the BlockdevDriver QAPI enum so -blockdev driver=s2e,
# blockdev-add and qemu-storage-daemon --blockdev accept it too.
#
# Steps:
#   1. Find the QEMU source: --src DIR, or Debian's source of QEMU VERSION
#      (--version, fetched from whichever Debian suite serves it), by
#      default of the installed QEMU, as prepared by scripts/qemu-headers.sh
#      (fetched once, cached).  That tree is never modified: it is copied.
#   2. Collect s2e-block's sources (the core's lists in block/meson.build
#      and snapshot/meson.build, the glue's in block/qemu/meson.build) and
#      hash them.  The build is cached outside the
#      checkout, one per QEMU version:
#        ${S2E_BLOCK_CACHE:-~/.cache/s2e-block}/qemu-s2e-<qemu version>/
#      A run whose sources are already built there returns at once.
#   3. The first time (or when this script's patching changed): copy the
#      QEMU source there, add block/s2e/ to its block layer (block_ss, so
#      qemu-system-*, qemu-img, qemu-io, qemu-nbd and qemu-storage-daemon
#      all get the driver) and 's2e' + BlockdevOptionsS2E to
#      qapi/block-core.json.  Every time: bring block/s2e/ up to date with
#      s2e-block's sources, touching only the files that changed.
#   4. Configure a minimal x86_64-softmmu build with the tools (once), and
#      build qemu-system-x86_64, qemu-img and qemu-io with ninja (--all:
#      everything): after a change to s2e-block only its files recompile.
#
# Usage: scripts/build-qemu-s2e.sh [--version VERSION | --src DIR] [--jobs N]
#                                  [--all] [--force]
#   e.g. --version 1:10.2.2+ds-1 (a Debian source version of qemu)
#   prints the build directory (holding qemu-system-x86_64, qemu-img,
#   qemu-io) on its last line.
# Environment: S2E_BLOCK_CACHE (cache root), S2E_QEMU_FIRMWAREPATH
#   (colon-separated firmware directories, default Debian's).
set -euo pipefail

log() { echo "build-qemu-s2e: $*" >&2; }
die() { echo "build-qemu-s2e: error: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/build-qemu-s2e.sh"
CACHE_ROOT="${S2E_BLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s2e-block}"
SRC=""
VERSION=""
JOBS=""
ALL=0
FORCE=0

while [ $# -gt 0 ]; do
    case "$1" in
        --src) SRC="${2:?--src needs a directory}"; shift 2 ;;
        --src=*) SRC="${1#--src=}"; shift ;;
        --version) VERSION="${2:?--version needs a Debian version}"; shift 2 ;;
        --version=*) VERSION="${1#--version=}"; shift ;;
        --jobs|-j) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
        --all) ALL=1; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

[ -z "$SRC" ] || [ -z "$VERSION" ] || die "--src and --version exclude each other"
APT_SUITE="$ROOT/scripts/apt-suite.sh"
# shellcheck source=lib/qemu-source.sh
. "$ROOT/scripts/lib/qemu-source.sh"

# A pyenv shim may shadow the system python3 and meson.
export PATH="/usr/bin:/bin:$PATH"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# What a minimal x86_64-softmmu build needs beyond scripts/setup.sh's list.
missing=()
for c in meson ninja pkg-config cc flock; do
    command -v "$c" >/dev/null || missing+=("$c")
done
for p in glib-2.0 zlib pixman-1 libxxhash; do
    pkg-config --exists "$p" 2>/dev/null || missing+=("$p")
done
# x86_64-softmmu needs libfdt (microvm); Debian ships no .pc file for it.
echo '#include <libfdt.h>' | cc -E - >/dev/null 2>&1 || missing+=(libfdt)
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (Debian: apt-get install meson ninja-build pkg-config build-essential libglib2.0-dev zlib1g-dev libxxhash-dev libpixman-1-dev libfdt-dev)"

# ---- 1. the QEMU source and its version ------------------------------------
if [ -z "$SRC" ]; then
    HDR=$("$ROOT/scripts/qemu-headers.sh" ${VERSION:+--version "$VERSION"} | tail -n1) ||
        die "scripts/qemu-headers.sh failed (use --src DIR for another QEMU tree)"
    SRC="$HDR/src"
    QVER=$(cat "$HDR/version")
else
    SRC=$(cd "$SRC" && pwd) || die "no such directory: $SRC"
    if [ -f "$SRC/debian/changelog" ] && command -v dpkg-parsechangelog >/dev/null; then
        QVER=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)
    else
        QVER=$(cat "$SRC/VERSION")
    fi
    # Two trees of the same version are still different trees.
    QVER="$QVER-$(printf '%s' "$SRC" | sha256sum | cut -c1-8)"
fi
[ -f "$SRC/configure" ] && [ -f "$SRC/qapi/block-core.json" ] &&
    [ -f "$SRC/block/meson.build" ] || die "$SRC is not a QEMU source tree"

# ---- 2. s2e-block's sources and the cache key ------------------------------
# The lists come from our own meson files so a new core file is picked up:
# NAME_sources = files(...) in block/ and snapshot/ (the QEMU-free core), and
# the files() of the plugin's shared_module in block/qemu/ (the glue).
# Headers are copied whole.
mapfile -t SOURCES < <("$PY" - "$ROOT" <<'PY'
import glob, os, re, sys
root = sys.argv[1]
out = []
def files_in(text, start):
    m = re.search(r"files\s*\((.*?)\)", text[start:], re.S)
    return re.findall(r"'([^']+)'", m.group(1)) if m else []
for sub in ("block", "snapshot", "block/qemu"):
    text = open(os.path.join(root, sub, "meson.build")).read()
    text = re.sub(r"#[^\n]*", "", text)
    for m in re.finditer(r"\w+_sources\s*=\s*(?=files)", text):
        out += [sub + "/" + f for f in files_in(text, m.end())]
    m = re.search(r"shared_module\s*\(\s*'block-s2e'\s*,", text)
    if m:
        out += [sub + "/" + f for f in files_in(text, m.end())]
for pat in ("include/s2e-block/*.h", "block/*.h", "block/qemu/*.h",
            "snapshot/*.h"):
    out += sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pat)))
seen = set()
for f in out:
    if f not in seen:
        seen.add(f)
        print(f)
PY
)
C_SOURCES=()
for f in "${SOURCES[@]}"; do
    [ -f "$ROOT/$f" ] || die "listed source $f is missing"
    case "$f" in *.c) C_SOURCES+=("$f") ;; esac
done
printf '%s\n' "${C_SOURCES[@]}" | grep -q '^block/qemu/block-s2e.c$' ||
    die "could not find the driver sources in block/qemu/meson.build"

# Snapshot the sources first, so the key always describes what is built
# even when the checkout changes while QEMU compiles.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
for f in "${SOURCES[@]}"; do
    mkdir -p "$STAGE/$(dirname "$f")"
    cp -p "$ROOT/$f" "$STAGE/$f"
done
HASH=$( (cd "$STAGE" && for f in "${SOURCES[@]}"; do
            printf '%s\0' "$f"; sha256sum < "$f"; done) | sha256sum | cut -c1-12)
# The patched tree depends on how this script patches it (the part between
# the "tree patch" markers below), not on the rest of the script.
PATCH_KEY=$(sed -n '/^# >>> tree patch/,/^# <<< tree patch/p' "$SELF" |
            sha256sum | cut -c1-12)
KEY="${QVER//[:\/]/_}"
DIR="$CACHE_ROOT/qemu-s2e-$KEY"
BUILD="$DIR/build"
STAMP="$DIR/.complete"      # holds the hash of the sources built

TARGETS=(qemu-system-x86_64 qemu-img qemu-io)
# Debian's source has no firmware blobs: use the installed ones (seabios,
# qemu-system-data), in Debian's own search order.
FIRMWARE="${S2E_QEMU_FIRMWAREPATH:-/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu}"

# Run from the build directory, QEMU looks for its data only under
# build/qemu-bundle/<configured path>: link the firmware directories there
# so the binaries find bios-256k.bin without -L.
link_firmware() {
    local d
    IFS=: read -r -a dirs <<< "$FIRMWARE"
    for d in "${dirs[@]}"; do
        [ -d "$d" ] || continue
        mkdir -p "$BUILD/qemu-bundle$(dirname "$d")"
        ln -sfn "$d" "$BUILD/qemu-bundle$d"
    done
}
built() {
    [ "$(cat "$STAMP" 2>/dev/null)" = "$HASH" ] || return 1
    local t
    for t in "${TARGETS[@]}"; do [ -x "$BUILD/$t" ] || return 1; done
}

mkdir -p "$CACHE_ROOT"
if [ "$FORCE" = 0 ] && [ "$ALL" = 0 ] && built; then
    log "cached: $DIR"
    link_firmware
    echo "$BUILD"
    exit 0
fi

# One builder per key; a second one waits, then finds the stamp.
exec 9>"$CACHE_ROOT/.qemu-s2e-$KEY.lock"
flock 9
if [ "$FORCE" = 0 ] && [ "$ALL" = 0 ] && built; then
    echo "$BUILD"
    exit 0
fi

# ---- 3. the patched copy ---------------------------------------------------
T0=$SECONDS
S2E="$DIR/src/block/s2e"

# Bring block/s2e/ to exactly $SOURCES, rewriting only what differs, so
# ninja recompiles only the changed files.
sync_s2e_sources() {
    local f rel
    mkdir -p "$S2E"
    for f in "${SOURCES[@]}"; do
        if ! cmp -s "$STAGE/$f" "$S2E/$f"; then
            mkdir -p "$S2E/$(dirname "$f")"
            cp "$STAGE/$f" "$S2E/$f"
        fi
    done
    while IFS= read -r -d '' f; do
        rel=${f#"$S2E"/}
        [ "$rel" = meson.build ] && continue
        printf '%s\n' "${SOURCES[@]}" | grep -qxF "$rel" || rm -f "$f"
    done < <(find "$S2E" -type f -print0)
    s2e_meson_build > "$S2E/meson.build.new"
    if cmp -s "$S2E/meson.build.new" "$S2E/meson.build"; then
        rm -f "$S2E/meson.build.new"
    else
        mv "$S2E/meson.build.new" "$S2E/meson.build"
    fi
}

s2e_meson_build() {
    echo "# Added by s2e-block's scripts/build-qemu-s2e.sh: the s2e driver"
    echo "# glue and its QEMU-free core, compiled into QEMU's block layer."
    echo "# Without S2E_QEMU_PLUGIN the glue registers with block_init()"
    echo "# and type_init() like every built-in driver."
    echo "block_ss.add(declare_dependency(include_directories: include_directories('include', 'block')),"
    echo "             glib, zlib, files("
    for f in "${C_SOURCES[@]}"; do echo "  '$f',"; done
    echo "))"
}

# >>> tree patch
if [ "$FORCE" = 1 ] || [ "$(cat "$DIR/.patched" 2>/dev/null)" != "$QVER $PATCH_KEY" ]; then
    rm -rf "$DIR"
    mkdir -p "$DIR"
    touch "$DIR/.layout"
    log "copying $SRC"
    cp -a "$SRC" "$DIR/src"
    rm -rf "$DIR/src/.pc"   # quilt state of the Debian tree: not needed
    sync_s2e_sources
    printf '\n# s2e-block: the s2e format driver\nsubdir('"'"'s2e'"'"')\n' \
        >> "$DIR/src/block/meson.build"

    "$PY" - "$DIR/src/qapi/block-core.json" <<'PY' || die "patching qapi/block-core.json failed"
import sys
path = sys.argv[1]
text = open(path).read()

def once(old, new):
    global text
    n = text.count(old)
    if n != 1:
        sys.exit("qapi/block-core.json: expected one %r, found %d" % (old, n))
    text = text.replace(old, new)

# BlockdevDriver: the enum value and its doc line, anchored on the last
# member's doc line (10.x adds a Features: section after the members).
once("# @snapshot-access: Since 7.0\n#\n",
     "# @snapshot-access: Since 7.0\n# @s2e: s2e-block's multi-path copy-on-write format\n#\n")
once("'ssh', 'throttle', 'vdi', 'vhdx',",
     "'s2e', 'ssh', 'throttle', 'vdi', 'vhdx',")
# The options struct, next to the other generic formats.
once("##\n# @BlockdevOptionsLUKS:\n",
     "##\n# @BlockdevOptionsS2E:\n#\n"
     "# Driver specific block device options for s2e-block's format: the\n"
     "# base image is the file child, never written; writes go to an\n"
     "# in-memory overlay, savevm/loadvm use snapshot files IMAGE.NAME.\n#\n"
     "# @snapshot-dir: the directory holding the snapshot files (default:\n"
     "#                the directory of the base image)\n#\n"
     "# Since: 7.2\n##\n"
     "{ 'struct': 'BlockdevOptionsS2E',\n"
     "  'base': 'BlockdevOptionsGenericFormat',\n"
     "  'data': { '*snapshot-dir': 'str' } }\n\n"
     "##\n# @BlockdevOptionsLUKS:\n")
# The BlockdevOptions union branch.
once("      'snapshot-access': 'BlockdevOptionsGenericFormat',\n      'ssh':",
     "      's2e':        'BlockdevOptionsS2E',\n"
     "      'snapshot-access': 'BlockdevOptionsGenericFormat',\n      'ssh':")
open(path, "w").write(text)
PY
    echo "$QVER $PATCH_KEY" > "$DIR/.patched"
fi
# <<< tree patch
rm -f "$STAMP"
sync_s2e_sources
qemu_source_prepare "$DIR/src"

# ---- 4. configure and build ------------------------------------------------
if [ ! -f "$BUILD/build.ninja" ]; then
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    log "configuring (log: $DIR/configure.log)"
    read -r -a EXTRA <<< "$(qemu_source_configure_options "$DIR/src")"
    (cd "$BUILD" && ../src/configure "${EXTRA[@]}" \
        --target-list=x86_64-softmmu --enable-tools \
        --without-default-features --disable-docs \
        --firmwarepath="$FIRMWARE" \
        --disable-werror >"$DIR/configure.log" 2>&1) ||
        { tail -n 30 "$DIR/configure.log" >&2; die "configure failed"; }
fi

NINJA_ARGS=()
[ -n "$JOBS" ] && NINJA_ARGS+=(-j "$JOBS")
if [ "$ALL" = 1 ]; then WHAT=(); else WHAT=("${TARGETS[@]}"); fi
log "building ${WHAT[*]:-everything} (log: $DIR/ninja.log)"
ninja -C "$BUILD" "${NINJA_ARGS[@]}" "${WHAT[@]}" >"$DIR/ninja.log" 2>&1 ||
    { grep -E -A5 'error:|FAILED' "$DIR/ninja.log" | head -n 60 >&2
      die "build failed (log: $DIR/ninja.log)"; }
if grep -q 'block/s2e/.*warning:' "$DIR/ninja.log"; then
    log "warnings in the s2e sources:"
    grep -A3 'block/s2e/.*warning:' "$DIR/ninja.log" | head -n 40 >&2
fi
"$BUILD/qemu-img" --help | grep -qw s2e ||
    die "qemu-img does not list the s2e format"
link_firmware
echo "$HASH" > "$STAMP"
log "built in $((SECONDS - T0)) s: $BUILD"

# ---- keep the cache bounded ------------------------------------------------
# Earlier versions of this script kept one build per source hash
# (qemu-s2e-<version>-<hash>, no .layout file): remove those.
mapfile -t OLD < <(for d in "$CACHE_ROOT"/qemu-s2e-*/; do
                       [ -e "$d.layout" ] || echo "${d%/}"; done)
for d in "${OLD[@]}"; do
    [ -d "$d" ] || continue
    k=${d##*/qemu-s2e-}
    # Skip a build another run holds the lock of.
    if exec 8>"$CACHE_ROOT/.qemu-s2e-$k.lock" && flock -n 8; then
        log "removing old build $d"
        rm -rf "$d"
        rm -f "$CACHE_ROOT/.qemu-s2e-$k.lock"
        flock -u 8
    fi
done

echo "$BUILD"
