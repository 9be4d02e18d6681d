#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Set up s2e-block on Debian 12 and build it: installs the packages it needs
# (only those missing), prepares the QEMU headers for the installed QEMU
# (cached outside the checkout, see qemu-headers.sh) and builds into build/.
# Idempotent: a second run only rebuilds what changed.
#
# Environment: S2E_BUILD_DIR (default: build/ in the checkout).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${S2E_BUILD_DIR:-$ROOT/build}

PACKAGES=(
    # build
    gcc libc6-dev meson ninja-build pkg-config
    libglib2.0-dev zlib1g-dev libcunit1-dev
    # XXH3, the snapshot data checksum (header only: compiled in)
    libxxhash-dev
    # QEMU headers: Debian's source package and a header-only configure
    # (QEMU 8.0+ configures inside a python venv)
    dpkg-dev libaio-dev liburing-dev libzstd-dev python3-venv
    # the QEMU programs the plugin is loaded into
    qemu-system-x86 qemu-utils
    # QEMU built from source with s2e linked in (scripts/build-qemu-s2e.sh)
    libpixman-1-dev libfdt-dev
    # tests: python3 harness, nm/readelf, setpriv; clang/libFuzzer (the
    # metapackage pulls in the runtime matching the distribution's clang)
    python3 binutils util-linux clang libclang-rt-dev
)

step() { printf '\n== %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    step "installing ${missing[*]}"
    # Only what is listed (and its dependencies): recommends such as
    # QEMU's GUI and firmware for other machines are not needed here.
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

configure_build() {
    local qemu_dir="$1"
    if [ -f "$BUILD/build.ninja" ]; then
        # Reconfigure if the QEMU headers moved (e.g. QEMU was upgraded).
        meson configure "$BUILD" -Dqemu_src="$qemu_dir/src" \
            -Dqemu_build="$qemu_dir/build" -Dqemu_version="$(cat "$qemu_dir/version")" >/dev/null
        return 0
    fi
    step "configuring $BUILD"
    # A pyenv shim may shadow the system python3 that meson was built for.
    PATH="/usr/bin:$PATH" meson setup "$BUILD" "$ROOT" \
        -Dplugin=enabled \
        -Dqemu_src="$qemu_dir/src" -Dqemu_build="$qemu_dir/build" \
        -Dqemu_version="$(cat "$qemu_dir/version")" >&2
}

main() {
    local t0=$SECONDS qemu_dir
    install_packages
    step "QEMU headers for the installed QEMU"
    qemu_dir=$("$ROOT/scripts/qemu-headers.sh" | tail -n 1)
    echo "$qemu_dir" >&2
    configure_build "$qemu_dir"
    step "building"
    ninja -C "$BUILD" >&2
    step "set-up done in $((SECONDS - t0)) s: $BUILD/s2e-run, $BUILD/s2e-snapshot"
}

main "$@"
