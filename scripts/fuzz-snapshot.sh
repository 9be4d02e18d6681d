#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Build the snapshot reader's libFuzzer target and run a bounded session.
#
#   scripts/fuzz-snapshot.sh [SECONDS] [libFuzzer options...]
#
# SECONDS defaults to 60 (for CI).  Needs clang with libFuzzer (Debian:
# clang, libclang-rt-14-dev).  The build directory (FUZZ_BUILD_DIR, default
# build-fuzz) is configured with ASan and UBSan.  Inputs the fuzzer finds
# accumulate in $FUZZ_BUILD_DIR/fuzz-corpus-snapshot (the committed seed
# corpus tests/fuzz/corpus/snapshot is only read); crash reproducers land
# in $FUZZ_BUILD_DIR/fuzz-artifacts/ and the script exits non-zero.
# Replay one with: $FUZZ_BUILD_DIR/tests/fuzz/fuzz-snapshot FILE
set -eu

cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
build=${FUZZ_BUILD_DIR:-build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=enabled -Dplugin=disabled \
        -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C "$build" tests/fuzz/fuzz-snapshot

corpus="$build/fuzz-corpus-snapshot"
artifacts="$build/fuzz-artifacts"
mkdir -p "$corpus" "$artifacts"

UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
exec "$build/tests/fuzz/fuzz-snapshot" \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -dict=tests/fuzz/snapshot.dict -artifact_prefix="$artifacts/" \
    -print_final_stats=1 "$@" "$corpus" tests/fuzz/corpus/snapshot
