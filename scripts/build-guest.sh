#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Build the small Linux guest used by the end-to-end tests (docs/guest.md).
#
# Everything comes from Debian packages installed here: Debian's kernel
# (linux-image-amd64), a busybox initramfs (busybox-static) holding the
# agent from guest/ and the kernel modules the data disk needs, and an ext4
# data disk made with `mke2fs -d` (e2fsprogs) holding files of known content.
#
# The result is cached outside the checkout, keyed by the kernel package
# version, the busybox and e2fsprogs versions and a hash of guest/ and of this
# script:
#   ${S2E_BLOCK_CACHE:-~/.cache/s2e-block}/guest-<key>/
#       vmlinuz          the kernel (Debian's bzImage)
#       vmlinux          the same kernel uncompressed, booted through PVH
#                        (absent if it could not be extracted)
#       initrd.img       the initramfs (uncompressed newc cpio)
#       guest.raw.s2e    the base data disk: raw ext4, kept pristine
#                        (tests copy it with `cp -p`, never use it in place)
#       files.list       PATH SIZE SEED of the generated files on the disk
#       MANIFEST.sha256  their expected SHA-256 (also on the disk)
#       cmdline          the kernel command line the guest expects
#       info             versions and sizes
#       .complete        stamp: present only in a finished build
# A second run finds the stamp and returns at once.  A build happens in a
# temporary directory beside the target and is renamed into place, so an
# interrupted build never leaves a half-made cache entry.
#
# Usage: scripts/build-guest.sh [--force]
# Logs go to stderr; the last line on stdout is the cache directory.
set -euo pipefail

log() { echo "build-guest: $*" >&2; }
die() { echo "build-guest: error: $*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
GUEST="$SRC/guest"
DISK_MB=${S2E_GUEST_DISK_MB:-64}

FORCE=
case "${1:-}" in
    --force) FORCE=1 ;;
    '') ;;
    *) die "usage: $0 [--force]" ;;
esac

[ -d "$GUEST" ] || die "no guest/ directory at $GUEST"

# --- packages -----------------------------------------------------------------

pkg_version() { dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | awk '$1 == "ii" { print $2 }'; }

need_pkgs=()
for p in linux-image-amd64 busybox-static e2fsprogs cpio kmod xz-utils; do
    [ -n "$(pkg_version "$p")" ] || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages: ${need_pkgs[*]} (run as root or install them)"
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2; then
        log "install failed; updating the package lists and retrying"
        apt-get update >&2
        apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2
    fi
fi

# linux-image-amd64 is a metapackage: it depends on the real image package,
# linux-image-<release>.
KPKG=$(dpkg-query -W -f='${Depends}' linux-image-amd64 |
       tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1)
[ -n "$KPKG" ] || die "cannot tell which kernel linux-image-amd64 depends on"
KVER_PKG=$(pkg_version "$KPKG")
[ -n "$KVER_PKG" ] || die "$KPKG is not installed"
KREL=${KPKG#linux-image-}
VMLINUZ=/boot/vmlinuz-$KREL
MODDIR=/lib/modules/$KREL
[ -r "$VMLINUZ" ] || die "cannot read $VMLINUZ"
[ -f "$MODDIR/modules.dep" ] || die "no $MODDIR/modules.dep"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "no $BUSYBOX"
BB_VER=$(pkg_version busybox-static)
E2_VER=$(pkg_version e2fsprogs)

# --- cache key ------------------------------------------------------------------

guest_hash=$(cd "$SRC" && find guest scripts/build-guest.sh -type f ! -name '*~' -print0 |
             LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
KEY=$(printf '%s\n' "$KPKG=$KVER_PKG" "busybox=$BB_VER" "e2fsprogs=$E2_VER" \
          "disk_mb=$DISK_MB" "$guest_hash" | sha256sum | cut -c1-16)

CACHE_ROOT="${S2E_BLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s2e-block}"
DIR="$CACHE_ROOT/guest-$KEY"
STAMP="$DIR/.complete"

if [ -f "$STAMP" ] && [ -z "$FORCE" ]; then
    echo "$DIR"
    exit 0
fi

log "building guest $KEY ($KPKG $KVER_PKG, busybox $BB_VER, e2fsprogs $E2_VER)"
start=$(date +%s.%N)
mkdir -p "$CACHE_ROOT"
TMP=$(mktemp -d "$CACHE_ROOT/.guest-$KEY.tmp.XXXXXX")
chmod 0755 "$TMP"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT

# --- the initramfs --------------------------------------------------------------

ROOT="$TMP/initramfs"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/s2e,lib/s2e,proc,sys,dev,tmp,run,mnt/data}
cp "$BUSYBOX" "$ROOT/bin/busybox"
# One symlink per applet, placed where busybox would put it.  No modprobe:
# the kernel's request_module() must not run a modprobe that cannot find
# anything; the modules are loaded explicitly by /init.
"$BUSYBOX" --list-full | while read -r applet; do
    case "$applet" in
        */modprobe|*/depmod) continue ;;
    esac
    [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done
[ -e "$ROOT/bin/sh" ] || ln -s busybox "$ROOT/bin/sh"
install -m 0755 "$GUEST/init" "$ROOT/init"
install -m 0755 "$GUEST/agent.sh" "$ROOT/bin/s2e-agent"
install -m 0644 "$GUEST/gen.awk" "$ROOT/lib/s2e/gen.awk"

# Kernel modules: each wanted module after its dependencies (modules.dep
# lists a module's full dependency set; resolve recursively for the order).
declare -A DEP=() BYNAME=() SEEN=()
while IFS= read -r line; do
    mod=${line%%:*}
    DEP[$mod]=${line#*:}
    base=$(basename "$mod"); base=${base%%.ko*}
    BYNAME[${base//-/_}]=$mod
done < "$MODDIR/modules.dep"
declare -A BUILTIN=()
if [ -f "$MODDIR/modules.builtin" ]; then
    while IFS= read -r mod; do
        base=$(basename "$mod"); base=${base%%.ko*}
        BUILTIN[${base//-/_}]=1
    done < "$MODDIR/modules.builtin"
fi
ORDER=()
visit() {
    local m=$1 d
    [ -n "${SEEN[$m]:-}" ] && return 0
    SEEN[$m]=1
    for d in ${DEP[$m]}; do
        visit "$d"
    done
    ORDER+=("$m")
}
declare -A OPTIONAL=()
while read -r name _; do
    case "$name" in ''|'#'*) continue ;; esac
    opt=
    if [ "${name#\?}" != "$name" ]; then
        opt=1
        name=${name#\?}
    fi
    key=${name//-/_}
    if [ -n "${BUILTIN[$key]:-}" ]; then
        log "module $name is built into $KREL"
        continue
    fi
    mod=${BYNAME[$key]:-}
    [ -n "$mod" ] || die "module $name not found in $MODDIR/modules.dep"
    [ -z "$opt" ] || OPTIONAL[$mod]=1
    visit "$mod"
done < "$GUEST/modules.list"

: > "$ROOT/etc/s2e/modules.load"
for mod in "${ORDER[@]}"; do
    src="$MODDIR/$mod"
    dst="$ROOT/lib/modules/$KREL/${mod%.ko*}.ko"
    mkdir -p "$(dirname "$dst")"
    case "$mod" in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" > "$dst" ;;
        *.ko.zst) zstd -qdc "$src" > "$dst" ;;
        *.ko.gz) gzip -dc "$src" > "$dst" ;;
        *) die "unknown module file type: $mod" ;;
    esac
    echo "${mod%.ko*}.ko${OPTIONAL[$mod]:+ optional}" >> "$ROOT/etc/s2e/modules.load"
done
log "modules: $(sed 's|.*/||; s|\.ko.*||' "$ROOT/etc/s2e/modules.load" | tr '\n' ' ')"

(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort |
     cpio --quiet -o -H newc --owner=0:0 --reproducible) > "$TMP/initrd.img"
rm -rf "$ROOT"
cp "$VMLINUZ" "$TMP/vmlinuz"

# The same kernel uncompressed (the ELF inside the bzImage).  QEMU boots it
# through its PVH entry point, which skips the in-guest decompression: under
# TCG that alone takes about 3 s of every boot.
extract_vmlinux() {
    local magic cmd pos
    for magic in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
        cmd=${magic%%:*}
        for pos in $(LC_ALL=C grep -obUaP "${magic#*:}" "$VMLINUZ" | cut -d: -f1 | head -n 5); do
            case "$cmd" in
                xz) tail -c +$((pos + 1)) "$VMLINUZ" | xz -dc --single-stream > "$TMP/vmlinux" 2>/dev/null ;;
                zstd) tail -c +$((pos + 1)) "$VMLINUZ" | zstd -qdc > "$TMP/vmlinux" 2>/dev/null ;;
                gzip) tail -c +$((pos + 1)) "$VMLINUZ" | gzip -dc > "$TMP/vmlinux" 2>/dev/null ;;
            esac
            if [ "$(head -c 4 "$TMP/vmlinux" 2>/dev/null | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
                return 0
            fi
        done
    done
    rm -f "$TMP/vmlinux"
    return 1
}
if extract_vmlinux; then
    log "extracted vmlinux ($(stat -c %s "$TMP/vmlinux") bytes) for PVH boot"
else
    log "cannot extract vmlinux from $VMLINUZ; guests will boot the bzImage"
fi

# --- the data disk --------------------------------------------------------------

DATA="$TMP/data"
mkdir -p "$DATA"
: > "$TMP/files.list"
while read -r path size seed _; do
    case "$path" in ''|'#'*) continue ;; esac
    mkdir -p "$(dirname "$DATA/$path")"
    LC_ALL=C "$BUSYBOX" awk -v size="$size" -v seed="$seed" -f "$GUEST/gen.awk" > "$DATA/$path"
    [ "$(stat -c %s "$DATA/$path")" = "$size" ] || die "generator made a wrong size for $path"
    echo "$path $size $seed" >> "$TMP/files.list"
done < "$GUEST/files.list"
cat > "$DATA/README.txt" <<'EOF'
s2e-block test guest data disk (scripts/build-guest.sh).
MANIFEST.sha256 lists the expected SHA-256 of every file; the guest agent's
`write` command keeps it up to date.
EOF
(cd "$DATA" && find . -type f | LC_ALL=C sort | xargs sha256sum) > "$TMP/MANIFEST.sha256"
cp "$TMP/MANIFEST.sha256" "$DATA/MANIFEST.sha256"
find "$DATA" -exec touch -h -d @1700000000 {} +

# Fixed UUID and hash seed, no lazy initialisation (so the guest's kernel
# does not zero inode tables in the background after mounting: the tests
# want a disk that changes only when they write).
E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -b 4096 -L s2e-guest \
    -U 5ab2e000-0000-4000-8000-000000000001 \
    -E lazy_itable_init=0,lazy_journal_init=0,hash_seed=5ab2e000-0000-4000-8000-000000000002 \
    -d "$DATA" "$TMP/guest.raw.s2e" "${DISK_MB}M" >&2
rm -rf "$DATA"
e2fsck -fn "$TMP/guest.raw.s2e" >/dev/null 2>&1 || die "e2fsck rejects the new image"
touch -d @1700000000 "$TMP/guest.raw.s2e"
chmod 0644 "$TMP/guest.raw.s2e"

echo "console=ttyS0 quiet loglevel=1 panic=-1" > "$TMP/cmdline"
{
    echo "key=$KEY"
    echo "kernel_package=$KPKG"
    echo "kernel_version=$KVER_PKG"
    echo "kernel_release=$KREL"
    echo "busybox_version=$BB_VER"
    echo "e2fsprogs_version=$E2_VER"
    echo "guest_hash=$guest_hash"
    echo "vmlinuz_bytes=$(stat -c %s "$TMP/vmlinuz")"
    echo "vmlinux_bytes=$(stat -c %s "$TMP/vmlinux" 2>/dev/null || echo 0)"
    echo "initrd_bytes=$(stat -c %s "$TMP/initrd.img")"
    echo "disk_bytes=$(stat -c %s "$TMP/guest.raw.s2e")"
    echo "disk_allocated_bytes=$(( $(stat -c %b "$TMP/guest.raw.s2e") * $(stat -c %B "$TMP/guest.raw.s2e") ))"
} > "$TMP/info"
touch "$TMP/.complete"

# Swap into place atomically: a concurrent build of the same key may have won.
if [ -e "$DIR" ]; then
    if [ -n "$FORCE" ] || [ ! -f "$STAMP" ]; then
        old="$CACHE_ROOT/.guest-$KEY.old.$$"
        mv "$DIR" "$old" && rm -rf "$old"
    fi
fi
if ! mv -T "$TMP" "$DIR" 2>/dev/null; then
    [ -f "$STAMP" ] || die "cannot move the build into $DIR"
    log "another build of $KEY finished first; using it"
fi
trap - EXIT
rm -rf "$TMP"

end=$(date +%s.%N)
log "built in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s: $DIR"
sed 's/^/build-guest:   /' "$DIR/info" >&2
echo "$DIR"
