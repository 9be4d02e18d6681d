#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Run every test of s2e-block and print the totals on the last line:
#   unit tests (CUnit), the fuzz corpus replay and the integration tests
#   against Debian's QEMU binaries (build/),
#   the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer
#   (build-asan/),
#   a short bounded libFuzzer session on the snapshot parser,
#   the QEMU glue compiled against every supported QEMU generation with gcc
#   and clang -Wthread-safety, warnings as errors (scripts/check-glue.sh),
#   QEMU built from Debian's source with s2e linked in (-blockdev
#   driver=s2e), for the installed QEMU and for $S2E_LINKED_VERSIONS,
#   and, as root, the README's first command and the tests inside a fresh
#   Debian 12 and a fresh Debian 13 system, against their own QEMU 7.2 and
#   10.0 (scripts/test-debian.sh).
# Sets everything up first (scripts/setup.sh), so it works on a fresh
# Debian 12 or 13 machine.  Exit status 0 only when nothing failed.
#
# Environment: S2E_LINKED_VERSIONS (default 1:10.2.2+ds-1), S2E_TEST_SUITES
# (Debian releases to test in a fresh system; default bookworm trixie, i.e.
# Debian 12 and 13 as a new user meets them; "" for none).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${S2E_BUILD_DIR:-$ROOT/build}
ASAN_BUILD=${S2E_ASAN_BUILD_DIR:-$ROOT/build-asan}
PASSED=0
FAILED=0
SKIPPED=0

step() { printf '\n== %s\n' "$*"; }

# Count the results of the last `meson test` run in build dir $1.
count_meson_results() {
    local log="$1/meson-logs/testlog.json" counts
    if [ ! -s "$log" ]; then
        FAILED=$((FAILED + 1))
        return
    fi
    counts=$(/usr/bin/python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(p, f, s)
PY
)
    set -- $counts
    PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); SKIPPED=$((SKIPPED + $3))
}

run_meson_tests() {
    local dir="$1"; shift
    rm -f "$dir/meson-logs/testlog.json"
    meson test -C "$dir" --print-errorlogs "$@"
    count_meson_results "$dir"
}

record() {  # record NAME COMMAND...: a single test outside meson
    local name="$1"; shift
    if "$@"; then
        PASSED=$((PASSED + 1))
    else
        echo "FAILED: $name"
        FAILED=$((FAILED + 1))
    fi
}

# Run a script printing "ok: ..." / "FAILED: ..." lines; one test each.
count_check_lines() {
    local out line
    out=$("$@" 2>&1)
    printf '%s\n' "$out"
    while IFS= read -r line; do
        case "$line" in
            ok:*) PASSED=$((PASSED + 1)) ;;
            FAILED:*) FAILED=$((FAILED + 1)) ;;
        esac
    done <<< "$out"
    grep -qE '^(ok|FAILED):' <<< "$out" || FAILED=$((FAILED + 1))
}

# test_linked_in VERSION: build QEMU VERSION (or the installed one) from
# Debian's source with s2e linked in, then run test_builtin.py against it.
test_linked_in() {
    local v="$1" qb args=()
    [ "$v" = installed ] || args=(--version "$v")
    if qb=$("$ROOT/scripts/build-qemu-s2e.sh" "${args[@]}" | tail -n 1) &&
       [ -x "$qb/qemu-system-x86_64" ]; then
        record "test_builtin ($v)" env S2E_QEMU_BUILTIN_DIR="$qb" \
            PYTHONPATH="$ROOT/python" \
            /usr/bin/python3 "$ROOT/tests/integration/test_builtin.py" -v
    else
        echo "FAILED: scripts/build-qemu-s2e.sh ${args[*]}"
        FAILED=$((FAILED + 1))
    fi
}

# test_in_fresh_debian SUITE: the main job (one test) and the meson tests
# inside a fresh system of that release; needs root for the chroot.
test_in_fresh_debian() {
    local suite="$1" sys="${S2E_DEBIAN_ROOT:-$ROOT/build-debian-$1}"
    if [ "$(id -u)" != 0 ]; then
        echo "SKIPPED: a fresh Debian $suite system needs root"
        SKIPPED=$((SKIPPED + 1))
        return
    fi
    rm -f "$sys/root/s2e-block/build/meson-logs/testlog.json"
    S2E_DEBIAN_ROOT="$sys" "$ROOT/scripts/test-debian.sh" "$suite" |
        tee "$BUILD/test-debian-$suite.log"
    # test-debian.sh judges the main job (exit status and PASS) and prints
    # a FAILED: line for it or for any step before it.
    if grep -q "^FAILED:" "$BUILD/test-debian-$suite.log"; then
        FAILED=$((FAILED + 1))
    else
        PASSED=$((PASSED + 1))
    fi
    count_meson_results "$sys/root/s2e-block/build"
}

main() {
    local t0=$SECONDS
    step "set-up and build"
    if ! "$ROOT/scripts/setup.sh"; then
        echo "set-up failed"
        echo "0 passed, 1 failed"
        exit 1
    fi

    step "unit, fuzz-corpus and integration tests"
    run_meson_tests "$BUILD"

    step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    if [ ! -f "$ASAN_BUILD/build.ninja" ]; then
        PATH="/usr/bin:$PATH" meson setup "$ASAN_BUILD" "$ROOT" -Dplugin=disabled \
            -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
    fi
    if ninja -C "$ASAN_BUILD" >/dev/null; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_meson_tests "$ASAN_BUILD" --suite unit --suite fuzz
    else
        echo "FAILED: sanitizer build"
        FAILED=$((FAILED + 1))
    fi

    if [ -x "$ROOT/scripts/fuzz-snapshot.sh" ]; then
        step "bounded fuzzing session on the snapshot parser"
        record fuzz-snapshot "$ROOT/scripts/fuzz-snapshot.sh"
    fi

    step "the QEMU glue against every supported QEMU, warnings as errors"
    count_check_lines "$ROOT/scripts/check-glue.sh"

    local v
    for v in installed ${S2E_LINKED_VERSIONS-1:10.2.2+ds-1}; do
        step "QEMU $v built from source with s2e linked in"
        test_linked_in "$v"
    done

    local suite
    for suite in ${S2E_TEST_SUITES-bookworm trixie}; do
        step "a fresh Debian $suite system: the README's first command and the tests"
        test_in_fresh_debian "$suite"
    done

    step "all tests done in $((SECONDS - t0)) s"
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    [ "$FAILED" -eq 0 ]
}

main "$@"
