# SPDX-License-Identifier: GPL-2.0-or-later
#
# Sourced by scripts/qemu-headers.sh and scripts/build-qemu-s2e.sh: what a
# Debian QEMU source tree needs before its configure runs on this machine.
#
#   qemu_source_prepare SRC
#       disables pycotap where the tarball cannot provide it and puts a
#       meson new enough for SRC first in PATH (exported).
#   qemu_source_configure_options SRC
#       prints the configure options every build of SRC here needs.
#
# Expects log(), die(), $CACHE_ROOT and $APT_SUITE from the caller.

# Debian's +ds tarballs leave out python/wheels, so configure cannot
# install pycotap (a test-only dependency) offline; Debian's own packaging
# disables it.  Do the same where the source still asks for it.
disable_pycotap() {
    local deps="$1/pythondeps.toml"
    [ -f "$deps" ] || return 0
    if grep -qE '^pycotap[[:space:]]*=' "$deps" &&
       ! ls "$1"/python/wheels/pycotap-* >/dev/null 2>&1; then
        sed -i -E 's/^(pycotap[[:space:]]*=)/#\1/' "$deps"
        log "disabled the test-only pycotap dependency (no wheel in the source)"
    fi
}

# The minimum meson version the source asks for ("" when it names none).
meson_required() {
    local deps="$1/pythondeps.toml"
    [ -f "$deps" ] || return 0
    sed -nE 's/^meson[[:space:]]*=.*accepted[[:space:]]*=[[:space:]]*">=([0-9.]+)".*/\1/p' "$deps" | head -n1
}

meson_version_ok() {  # meson_version_ok NEED [MESON]
    local have
    have=$("${2:-meson}" --version 2>/dev/null) || return 1
    dpkg --compare-versions "$have" ge "$1"
}

# Make a meson >= $1 visible to configure: the system's, else the
# distribution's -backports meson unpacked into the cache (not installed).
ensure_meson() {
    local need="$1" suite dir deb
    [ -n "$need" ] || return 0
    meson_version_ok "$need" && return 0
    suite="$(. /etc/os-release && echo "$VERSION_CODENAME")-backports"
    dir="$CACHE_ROOT/meson-$suite"
    if ! meson_version_ok "$need" "$dir/usr/bin/meson" 2>/dev/null; then
        log "meson >= $need is needed; unpacking meson from $suite"
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        (cd "$dir.tmp" && "$APT_SUITE" "$suite" download meson) ||
            die "could not download meson from $suite"
        deb=$(find "$dir.tmp" -maxdepth 1 -name 'meson_*.deb' | head -n1)
        dpkg -x "$deb" "$dir.tmp" && rm -f "$deb"
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    export PATH="$dir/usr/bin:$PATH"
    export PYTHONPATH="$dir/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"
    meson_version_ok "$need" ||
        die "meson from $suite is older than $need"
}


qemu_source_prepare() {
    disable_pycotap "$1"
    ensure_meson "$(meson_required "$1")"
}

# The firmware blobs are not in Debian's source, so their installation is
# turned off where the tree offers it (Debian's own rules do the same).
qemu_source_configure_options() {
    if grep -q "'install_blobs'" "$1/meson_options.txt"; then
        echo --disable-install-blobs
    fi
}
